// tests/cpp/support/expect_corrupt.hpp
#pragma once

#include "keel/common/error.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace keel::testing {

//! The message of the Corrupt error `fn` throws (a test failure, and "", when it throws none or
//! another kind): tampered files must be refused as Corrupt, naming what is wrong.
inline std::string corrupt_message(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const keel::Error& e) {
        EXPECT_EQ(e.kind(), keel::ErrorKind::Corrupt) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "expected Corrupt";
    return "";
}

} // namespace keel::testing

// tests/cpp/support/expect_error.hpp
// What a call that must fail threw: one way for every test to catch a keel::Error, check its kind and
// read its message (each check a test failure, not a crash, when the call throws nothing).
#pragma once

#include "keel/common/error.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace keel::testing {

//! The keel::Error `fn` throws; a test failure, and an Internal error without a message, when it
//! throws none.
inline keel::Error thrown_error(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const keel::Error& e) {
        return e;
    }
    ADD_FAILURE() << "expected a keel::Error";
    return keel::Error(keel::ErrorKind::Internal, "");
}

//! The message of the error `fn` throws, after checking that its kind is `expected` (a test failure,
//! and "", when it throws none).
inline std::string error_message(keel::ErrorKind expected, const std::function<void()>& fn) {
    try {
        fn();
    } catch (const keel::Error& e) {
        EXPECT_EQ(e.kind(), expected) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "expected a keel::Error";
    return "";
}

//! The message of the Corrupt error `fn` throws: tampered files must be refused as Corrupt, naming
//! what is wrong.
inline std::string corrupt_message(const std::function<void()>& fn) {
    return error_message(keel::ErrorKind::Corrupt, fn);
}

} // namespace keel::testing

// tests/cpp/support/temp_dir.hpp
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace keel::testing {

//! An empty temporary folder (a workspace, say), removed with everything in it when the test ends.
struct TempDir {
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("keel-test-" + std::to_string(::getpid()) + "-" +
                                  std::to_string(reinterpret_cast<uintptr_t>(this)));
    TempDir() { std::filesystem::create_directories(path); }
    ~TempDir() { std::filesystem::remove_all(path); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

} // namespace keel::testing

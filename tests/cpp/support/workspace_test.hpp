// tests/cpp/support/workspace_test.hpp
#pragma once

#include "keel/storage/workspace.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

namespace keel::testing {

//! A fixture owning a fresh workspace in a temporary folder. Derive from it and declare the module
//! objects the tests use (`Registry reg{*ws};`): they go before the workspace, and the workspace
//! closes before its folder is removed.
struct WorkspaceTest : ::testing::Test {
    TempDir tmp;
    const std::filesystem::path dir = tmp.path;
    std::shared_ptr<storage::Workspace> ws = storage::Workspace::open(dir);
};

} // namespace keel::testing

// tests/cpp/support/workspace_test.hpp
#pragma once

#include "keel/storage/workspace.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

namespace keel::testing {

//! The PostgreSQL server the module tests run against a second time (CTest's pg.* entries start one
//! through tests/servers/with_servers.py --postgres); "" when they run on SQLite.
inline std::string test_pg_url() {
    const char* url = std::getenv("KEEL_TEST_PG_URL");
    return url ? url : "";
}

//! The workspace of a test folder: SQLite in `dir`, or, under KEEL_TEST_PG_URL, a schema of its own
//! on that server (named after the folder, so another process opening the same folder reaches the
//! same schema) with its files in `dir`. A folder opened for the first time starts empty.
inline std::shared_ptr<storage::Workspace> open_workspace(const std::filesystem::path& dir) {
    const std::string url = test_pg_url();
    if (url.empty()) return storage::Workspace::open(dir);
    char schema[32];
    std::snprintf(schema, sizeof schema, "t_%016zx", std::hash<std::string>{}(std::filesystem::absolute(dir).string()));
    const std::string location = url + (url.find('?') == std::string::npos ? "?" : "&") + "schema=" + schema;
    const auto marker = dir / ".keel-test-schema";
    if (!std::filesystem::exists(marker)) {  // a schema left by an earlier run under a reused pid goes
        std::filesystem::create_directories(dir);
        storage::Workspace::open(location, dir)->db().exec(std::string("DROP SCHEMA ") + schema + " CASCADE");
        // And the dropped workspace's claim on `dir` (a new workspace refuses a claimed location).
        std::filesystem::remove(dir / "keel-workspace");
        std::ofstream(marker) << schema << '\n';
    }
    return storage::Workspace::open(location, dir);
}

//! A fixture owning a fresh workspace in a temporary folder. Derive from it and declare the module
//! objects the tests use (`Registry reg{*ws};`): they go before the workspace, and the workspace
//! closes before its folder is removed.
struct WorkspaceTest : ::testing::Test {
    TempDir tmp;
    const std::filesystem::path dir = tmp.path;
    std::shared_ptr<storage::Workspace> ws = open_workspace(dir);
    //! Another handle on the same workspace (its own connection), as another process would open it.
    std::shared_ptr<storage::Workspace> open_again() const { return open_workspace(dir); }
    bool on_postgres() const { return ws->db().dialect() == storage::Dialect::Postgres; }
};

} // namespace keel::testing

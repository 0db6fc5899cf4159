// core/storage/backends.hpp
// The backends' constructors, for db.cpp and workspace.cpp only (modules see the Backend interface).
#pragma once

#include "keel/storage/sql_backend.hpp"

#include <memory>
#include <string>

namespace keel::storage {

//! SQLite at `path`, created if missing: WAL, foreign keys, a 60 s busy timeout, Keel's application id.
std::unique_ptr<Backend> open_sqlite(const std::string& path);

} // namespace keel::storage

// core/storage/backends.hpp
// The backends' constructors, for db.cpp and workspace.cpp only (modules see the Backend interface).
#pragma once

#include "keel/storage/db.hpp"
#include "keel/storage/sql_backend.hpp"

#include <memory>
#include <string>

namespace keel::storage {

//! SQLite at `path`, created if missing: WAL, foreign keys, a 60 s busy timeout, Keel's application id.
std::unique_ptr<Backend> open_sqlite(const std::string& path);

//! PostgreSQL at `url` (postgresql://user[:password]@host[:port]/db[?schema=NAME&...]): libpq's
//! parameters pass through, `schema` names the schema the workspace lives in (created if missing,
//! set as search_path), `artifacts` is the Workspace's. Connecting fails within connect_timeout
//! (5 s unless the URL says otherwise) with an error naming what to fix.
std::unique_ptr<Backend> open_postgres(const std::string& url);
//! The connection pool a PostgreSQL URL asks for: `pool_size` (default kDefaultPgPoolSize),
//! `pool_timeout` (seconds a caller waits for a free connection, default 30) and `pool_idle`
//! (seconds before an idle connection beyond the first closes, default 60).
PoolOptions postgres_pool_options(const std::string& url);
constexpr size_t kDefaultPgPoolSize = 4;
//! The metadata of a team workspace: a pool of connections to PostgreSQL at `url` (the first
//! opened now, so a bad URL fails here).
std::unique_ptr<Db> open_postgres_db(const std::string& url);
bool is_postgres_url(std::string_view location);

} // namespace keel::storage

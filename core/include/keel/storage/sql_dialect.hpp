// core/include/keel/storage/sql_dialect.hpp
#pragma once

#include "keel/storage/sql_backend.hpp"

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace keel::storage {

//! A schema step written once in the neutral form (SQLite's spelling, which SQLite runs as is) for
//! `dialect`. For PostgreSQL: INTEGER -> BIGINT, REAL -> DOUBLE PRECISION, BLOB -> BYTEA, TEXT ->
//! TEXT COLLATE "C" (bytewise order and comparison, as in SQLite), an auto-assigned key
//! (`INTEGER PRIMARY KEY [AUTOINCREMENT]` ending its column) -> a BIGINT identity, `WITHOUT ROWID`
//! dropped. Quoted text and identifiers are left alone. Nothing else is rewritten: a step must
//! otherwise be SQL both engines accept.
//! Where the engines must take different paths to one schema (SQLite rebuilds a table to drop a
//! constraint that PostgreSQL drops in place, without rewriting the table under the migration's
//! lock), a step holds PostgreSQL's form after a line `-- postgresql:`; the text before it is
//! SQLite's, and each engine runs only its own.
inline constexpr std::string_view kPostgresForm = "\n-- postgresql:\n";
std::string translate_schema(std::string_view step, Dialect dialect);

//! `?` placeholders as `$1`, `$2`, ... (PostgreSQL's), outside quoted text and comments; `count`
//! receives how many there were.
std::string number_placeholders(std::string_view sql, int& count);

//! "`column` is one of a bound list of integers", one statement whatever the list's length; bind
//! the list as integer_list() writes it.
std::string in_integer_list(Dialect dialect, std::string_view column);
//! The bound text in_integer_list() reads: a JSON array on SQLite, an array literal on PostgreSQL.
std::string integer_list(Dialect dialect, std::span<const int64_t> values);

//! The statement that refreshes the planner's statistics of `tables` after a bulk load ("" where
//! there is nothing to do). PostgreSQL plans from statistics that autovacuum refreshes only about a
//! minute after 10% of a table changed: a search right after importing 100,000 runs was planned as
//! if the tables were empty (125 ms instead of 7). SQLite keeps no statistics unless asked and plans
//! these queries well without them.
std::string analyze_tables(Dialect dialect, std::initializer_list<std::string_view> tables);

//! MLflow's LIKE (case-sensitive) and ILIKE (case-insensitive) for one backend: `op` follows the
//! column and holds one `?` for `pattern`. SQLite's LIKE ignores ASCII case, so LIKE becomes GLOB
//! with the pattern translated; PostgreSQL's LIKE and ILIKE are used with backslash escapes off, as
//! SQLite's LIKE has none.
struct LikeMatch {
    std::string op;
    std::string pattern;
};
LikeMatch like_match(Dialect dialect, std::string_view like_pattern, bool case_sensitive);

} // namespace keel::storage

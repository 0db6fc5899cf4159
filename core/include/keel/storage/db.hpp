// core/include/keel/storage/db.hpp
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace keel::storage {

class Db;

namespace detail {
//! One entry of the Db's statement cache; `users` counts the live Stmt handles borrowing it, and an
//! entry in use is never finalized.
struct CachedStmt {
    std::string sql;
    sqlite3_stmt* stmt = nullptr;
    int users = 0;
};
} // namespace detail

//! A prepared statement borrowed from the Db's cache (or, when its SQL is already in use further up
//! the stack, a private one finalized with the handle). Binds are 1-based like SQLite's; the
//! statement is reset and its bindings cleared when the handle goes out of scope.
class Stmt {
public:
    Stmt(Db& db, sqlite3_stmt* stmt, detail::CachedStmt* cached) : db_(&db), stmt_(stmt), cached_(cached) {}
    Stmt(Stmt&& other) noexcept : db_(other.db_), stmt_(other.stmt_), cached_(other.cached_) {
        other.stmt_ = nullptr;
        other.cached_ = nullptr;
    }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    ~Stmt();

    Stmt& bind(int index, int64_t value);
    Stmt& bind(int index, int value) { return bind(index, int64_t(value)); }
    Stmt& bind(int index, double value);
    Stmt& bind(int index, std::string_view value);
    Stmt& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
    Stmt& bind(int index, const std::string& value) { return bind(index, std::string_view(value)); }
    Stmt& bind(int index, std::nullptr_t);
    Stmt& bind_blob(int index, const void* data, size_t size);
    template <typename T>
    Stmt& bind(int index, const std::optional<T>& value) {
        return value ? bind(index, *value) : bind(index, nullptr);
    }
    //! bind_all(a, b, c) binds parameters 1, 2, 3.
    template <typename... Args>
    Stmt& bind_all(const Args&... args) {
        int index = 0;
        (bind(++index, args), ...);
        return *this;
    }

    //! Advances to the next row; false when done.
    bool step();
    //! Runs a statement that returns no rows.
    void run();

    bool is_null(int col) const;
    int64_t int64(int col) const;
    double real(int col) const;
    std::string text(int col) const;
    std::optional<std::string> opt_text(int col) const;
    std::optional<int64_t> opt_int64(int col) const;
    std::optional<double> opt_real(int col) const;
    std::string blob(int col) const;

private:
    Db* db_;
    sqlite3_stmt* stmt_;
    detail::CachedStmt* cached_; //!< null: a private statement this handle finalizes
};

//! One module's tables: an ordered list of forward migrations. The module's version is the number
//! of steps applied; a workspace written by a newer Keel is refused rather than misread.
struct ModuleSchema {
    std::string module;
    std::vector<std::string> steps;
};

//! A SQLite connection set up for Keel: WAL, foreign keys, busy timeout, a statement cache and one
//! mutex that every caller holds while it uses the connection (a Workspace may be shared by threads).
class Db {
public:
    explicit Db(const std::string& path);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    //! Holds the connection for the calling thread; re-entrant.
    std::unique_lock<std::recursive_mutex> lock() { return std::unique_lock(mutex_); }

    //! A prepared statement from a least-recently-used cache of kStatementCacheSize statements
    //! (every distinct search is its own SQL, so an unbounded cache grew without end). Statements
    //! still borrowed are never evicted. Caller must hold lock().
    Stmt prepare(std::string_view sql);
    static constexpr size_t kStatementCacheSize = 256;
    //! Statements currently cached (for tests and diagnostics).
    size_t cached_statements() const { return lru_.size(); }
    //! Runs one or more statements without results. Caller must hold lock().
    void exec(std::string_view sql);
    int64_t last_insert_rowid() const;
    int changes() const;
    const std::string& path() const { return path_; }

    //! Changes whenever any connection, this one or another process's, commits a write: a cheap
    //! test (no table read) of whether cached state may be stale.
    uint64_t change_token();
    //! change_token() as read at most `max_age` ago, for checks on every request of a hot path: a
    //! commit through this connection is seen at once, another connection's within `max_age`,
    //! without a read transaction (and its file lock) per call. While another thread holds the
    //! connection (a long write), the last token answers for up to 100 ms instead of waiting.
    //! Thread-safe.
    uint64_t recent_change_token(std::chrono::microseconds max_age);
    //! Whether a transaction is open on this connection: its writes do not move change_token()
    //! until it commits, so a cache checked by the token must read through while this is true.
    bool in_transaction();

    //! Applies the module's missing migrations in one write transaction (idempotent, multi-process safe).
    void ensure_schema(const ModuleSchema& schema);

    //! Runs `action` once the outermost open transaction commits (at once when none is open), and
    //! drops it when that transaction rolls back: for work outside the database that must happen
    //! only if the change lands, such as removing files the committed rows no longer name (an outer
    //! transaction, like keel.defs' apply, may still roll back after an inner one "commits").
    //! Caller must hold lock(). An action's exception is swallowed: the commit has happened.
    void after_commit(std::function<void()> action);

    //! Throws keel::Error for a failed SQLite call, naming the extended code and what was running.
    [[noreturn]] void fail(int rc, std::string_view what) const;
    sqlite3* handle() const { return db_; }

private:
    friend class Stmt;
    friend class Transaction;
    std::string path_;
    sqlite3* db_ = nullptr;
    std::recursive_mutex mutex_;
    void evict_unused();
    std::list<detail::CachedStmt> lru_; //!< most recently used first
    std::unordered_map<std::string_view, std::list<detail::CachedStmt>::iterator> cache_; //!< keys view lru_'s sql
    std::unordered_map<std::string, size_t> schema_versions_;
    std::vector<std::function<void()>> after_commit_;  //!< run by the outermost Transaction's commit
    std::atomic<uint64_t> local_commits_{0};  //!< write transactions this connection committed
    // recent_change_token(): the last token read, when, and this connection's commits then.
    std::atomic<uint64_t> recent_token_{0}, recent_local_{~uint64_t(0)};
    std::atomic<int64_t> recent_at_us_{0};
};

//! BEGIN IMMEDIATE ... COMMIT, rolled back by the destructor unless commit() ran. Holds the Db's
//! lock for its whole life. Nested transactions become no-ops inside the outer one.
class Transaction {
public:
    explicit Transaction(Db& db);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();

private:
    Db& db_;
    std::unique_lock<std::recursive_mutex> lock_;
    bool owner_ = false;
    bool done_ = false;
};

} // namespace keel::storage

// core/include/keel/storage/db.hpp
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "keel/storage/sql_backend.hpp"

namespace keel::storage {

class Db;

namespace detail {
struct Conn;
//! One entry of the Db's statement cache; `users` counts the live Stmt handles borrowing it, and an
//! entry in use is never dropped.
struct CachedStmt {
    std::string sql;
    std::unique_ptr<Cursor> cursor;
    int users = 0;
};
} // namespace detail

//! The calling thread's hold on one of the Db's connections (Db::lock()): re-entrant per thread, so
//! nested calls and a Transaction in the same thread use the same connection; the connection goes
//! back to the pool when the thread's outermost lease ends. Ends on the thread that took it.
class Lease {
public:
    Lease() = default;
    explicit Lease(Db* db) : db_(db) {}
    Lease(Lease&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { unlock(); }
    //! Ends the hold early (the connection returns to the pool if this was the outermost lease).
    void unlock() noexcept;
    bool owns_lock() const { return db_ != nullptr; }
    explicit operator bool() const { return owns_lock(); }

private:
    Db* db_ = nullptr;
};

//! How many connections a Db keeps and how long a caller waits for one. SQLite keeps one connection
//! (size 1) and waits as long as it takes, as a mutex would; PostgreSQL's come from the URL
//! (`?pool_size=N&pool_timeout=SECONDS`).
struct PoolOptions {
    size_t size = 1;  //!< most connections open at once; the first opens with the Db, others when needed
    //! How long a caller waits for a connection when all are leased before Unavailable; 0: no bound.
    std::chrono::milliseconds wait{0};
    //! An idle connection beyond the first is closed after this long unused.
    std::chrono::milliseconds idle{60'000};
};

//! A prepared statement borrowed from the Db's cache (or, when its SQL is already in use further up
//! the stack, a private one dropped with the handle). Binds are 1-based; the statement is reset and
//! its bindings cleared when the handle goes out of scope. SQL uses `?` placeholders whatever the
//! backend.
class Stmt {
public:
    Stmt(Cursor* cursor, detail::CachedStmt* cached, Lease lease = {})
        : cursor_(cursor), cached_(cached), lease_(std::move(lease)) {}
    Stmt(Stmt&& other) noexcept : cursor_(other.cursor_), cached_(other.cached_), lease_(std::move(other.lease_)) {
        other.cursor_ = nullptr;
        other.cached_ = nullptr;
    }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    ~Stmt();

    Stmt& bind(int index, int64_t value) { return cursor_->bind_int64(index, value), *this; }
    Stmt& bind(int index, int value) { return bind(index, int64_t(value)); }
    Stmt& bind(int index, double value) { return cursor_->bind_double(index, value), *this; }
    Stmt& bind(int index, std::string_view value) { return cursor_->bind_text(index, value), *this; }
    Stmt& bind(int index, const char* value) { return bind(index, std::string_view(value)); }
    Stmt& bind(int index, const std::string& value) { return bind(index, std::string_view(value)); }
    Stmt& bind(int index, std::nullptr_t) { return cursor_->bind_null(index), *this; }
    Stmt& bind_blob(int index, const void* data, size_t size) { return cursor_->bind_blob(index, data, size), *this; }
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
    bool step() { return cursor_->step(); }
    //! Runs a statement that returns no rows.
    void run() {
        while (step()) {
        }
    }
    //! Runs a statement that returns no rows when nothing after it needs its outcome at once
    //! (`affected()` is not set): on PostgreSQL, inside a write transaction, it travels with the
    //! statements after it and its error surfaces at the next one that waits or at commit. The
    //! transaction's all-or-nothing is unchanged; use run() where the next step depends on it.
    void queue() { cursor_->queue(); }
    //! Runs the statement now and keeps its rows for step() to read later, also after the
    //! transaction commits: on PostgreSQL, inside a write transaction, it travels with the statements
    //! after it and its rows arrive with the next wait (the commit's, say) instead of costing one of
    //! their own. Hold the handle until the rows are read.
    void defer() { cursor_->defer(); }
    //! Runs an `INSERT ... RETURNING id` and gives the id (both backends' way to learn a new key).
    int64_t insert_id();
    //! Rows the statement inserted, updated or deleted (after run()).
    int64_t affected() const { return cursor_->affected(); }

    bool is_null(int col) const { return cursor_->is_null(col); }
    int64_t int64(int col) const { return cursor_->int64(col); }
    double real(int col) const { return cursor_->real(col); }
    std::string text(int col) const { return cursor_->text(col); }
    std::optional<std::string> opt_text(int col) const;
    std::optional<int64_t> opt_int64(int col) const;
    std::optional<double> opt_real(int col) const;
    std::string blob(int col) const { return cursor_->blob(col); }

private:
    Cursor* cursor_;
    detail::CachedStmt* cached_; //!< null: a private statement this handle owns
    Lease lease_;  //!< set when prepared by a thread holding no lease: the connection stays ours till the end
};

//! One module's tables: an ordered list of forward migrations. The module's version is the number
//! of steps applied; a workspace written by a newer Keel is refused rather than misread.
struct ModuleSchema {
    std::string module;
    std::vector<std::string> steps;
};

//! Where one module's tables stand in a workspace against this Keel (Db::schema_status).
struct SchemaStatus {
    std::string module;
    size_t version = 0;  //!< steps the workspace has applied (0: the module's tables are not there yet)
    size_t known = 0;    //!< steps this Keel knows; 0 for a module only a newer Keel has
    //! The steps migrate() would apply, translated for the backend; empty when up to date or newer.
    std::vector<std::string> pending;
    bool newer() const { return version > known; }
};

//! The metadata connections every module goes through: a facade over `Backend`s (SQLite for a
//! workspace directory: one connection; PostgreSQL for a team workspace: a bounded pool) with a
//! statement cache per connection, schema migrations and a change token. A thread leases one
//! connection for as long as it holds lock() (re-entrant), so threads on different connections run
//! at once; with one connection (SQLite) lock() is a mutex, as it always was.
class Db {
public:
    //! SQLite at `path` (created if missing): WAL, foreign keys, busy timeout.
    explicit Db(const std::string& path);
    //! One connection that is never replaced (the backend reconnects by itself if it can).
    explicit Db(std::unique_ptr<Backend> backend);
    //! A pool: `connect` opens a connection (the first one now, so a bad location fails here; the
    //! others when callers need them). A connection found broken when its lease ends is dropped,
    //! and the next lease opens a new one.
    Db(std::function<std::unique_ptr<Backend>()> connect, PoolOptions options);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    //! Leases a connection to the calling thread (re-entrant). Waits while all are leased, up to
    //! the pool's wait bound, then Unavailable naming the pool size.
    Lease lock();

    //! A prepared statement from the connection's least-recently-used cache of kStatementCacheSize
    //! statements (every distinct search is its own SQL, so an unbounded cache grew without end).
    //! Statements still borrowed are never evicted. Runs on the calling thread's leased connection
    //! (a thread holding none leases one for the statement's life).
    Stmt prepare(std::string_view sql);
    static constexpr size_t kStatementCacheSize = 256;
    //! Statements cached on the connection the calling thread gets (for tests and diagnostics).
    size_t cached_statements();
    //! Runs one or more statements without results, on the calling thread's connection.
    void exec(std::string_view sql);
    //! Where the metadata lives: the SQLite file, or the PostgreSQL URL without its password.
    const std::string& path() const { return location_; }
    Dialect dialect() const { return dialect_; }
    //! The calling thread's connection; the caller must hold lock().
    Backend& backend();

    //! The pool's bounds, and the connections open now (leased or idle).
    const PoolOptions& pool() const { return options_; }
    size_t open_connections();

    //! Changes whenever any connection, of this pool or another process's, commits a write (on
    //! PostgreSQL, one not marked Unannounced: no cache reads those): a cheap
    //! test (no table read) of whether cached state may be stale. Read it before the state it
    //! guards: a commit between the two only makes the next check read again.
    uint64_t change_token();
    //! change_token() as read at most `max_age` ago, for checks on every request of a hot path: a
    //! commit through this Db (any of its connections) is seen at once, another process's within
    //! `max_age`, without a read transaction (and its file lock) per call. While every connection is
    //! held by other threads (a long write), the last token answers for up to 100 ms instead of
    //! waiting. Thread-safe.
    uint64_t recent_change_token(std::chrono::microseconds max_age);
    //! Whether a transaction is open on the calling thread's connection: its writes do not move
    //! change_token() until it commits, so a cache checked by the token must read through while
    //! this is true. Other threads' connections never see those writes before the commit.
    bool in_transaction();

    //! Applies the module's missing migrations in one write transaction (idempotent, multi-process
    //! safe). Steps are written once in the neutral form and translated for the backend
    //! (sql_dialect.hpp).
    void ensure_schema(const ModuleSchema& schema);

    //! Each of `schemas` as the workspace has it (read-only: nothing is applied), then any module
    //! the workspace records that `schemas` does not name (written by a newer Keel: known = 0).
    std::vector<SchemaStatus> schema_status(const std::vector<const ModuleSchema*>& schemas);
    //! Applies every pending step of `schemas`, one transaction per module (ensure_schema), and
    //! returns the status as it was before. Refuses, before applying anything, a workspace where a
    //! module is newer than this Keel (Corrupt naming both versions: upgrade Keel).
    std::vector<SchemaStatus> migrate(const std::vector<const ModuleSchema*>& schemas);
    //! Corrupt naming the module and both versions when `status` holds a module newer than this Keel.
    void check_not_newer(const std::vector<SchemaStatus>& status);

    //! Runs `action` once the outermost open transaction of the calling thread's connection commits
    //! (at once when none is open), and drops it when that transaction rolls back: for work outside
    //! the database that must happen only if the change lands, such as removing files the committed
    //! rows no longer name (an outer transaction, like keel.defs' apply, may still roll back after an
    //! inner one "commits"). An action's exception is swallowed: the commit has happened.
    void after_commit(std::function<void()> action);

    //! Whether the workspace's database has a table of that name (in the workspace's schema).
    bool has_table(const std::string& name);

private:
    friend class Transaction;
    friend class Lease;
    //! The calling thread's leased connection, or null.
    detail::Conn* held();
    //! Leases a connection to this thread (`wait`: as lock(); otherwise null when none is free).
    detail::Conn* acquire(bool wait);
    //! Ends one level of the calling thread's lease; the outermost returns the connection.
    void release() noexcept;
    //! Opens a connection for a slot already counted in open_ (outside pool_mu_).
    detail::Conn* open_connection();
    //! Moves idle connections unused past options_.idle (beyond the first) into `out`, to close.
    void take_expired(std::vector<std::unique_ptr<detail::Conn>>& out);

    std::function<std::unique_ptr<Backend>()> connect_;  //!< empty: one connection (SQLite), leased below
    PoolOptions options_;
    // One connection: a re-entrant mutex that knows its owner (a recursive_mutex cannot tell), as
    // cheap as the mutex the embedded workspace always had.
    std::mutex single_mu_;
    std::atomic<std::thread::id> owner_{};
    int depth_ = 0;  //!< the owner's nesting; only the owner touches it
    std::string location_;
    Dialect dialect_ = Dialect::Sqlite;
    std::mutex pool_mu_;  //!< guards conns_, idle_, open_
    std::condition_variable pool_cv_;  //!< a connection went back to the pool, or a slot freed
    std::vector<std::unique_ptr<detail::Conn>> conns_;  //!< every open connection
    std::vector<detail::Conn*> idle_;  //!< not leased; the most recently used last
    size_t open_ = 0;  //!< conns_ plus connections being opened
    std::mutex schema_mu_;  //!< guards schema_versions_
    std::unordered_map<std::string, size_t> schema_versions_;  //!< committed module versions
    std::atomic<uint64_t> local_commits_{0};  //!< write transactions this Db's connections committed
    // recent_change_token(): the last token read, when, and this Db's commits then.
    std::atomic<uint64_t> recent_token_{0}, recent_local_{~uint64_t(0)};
    std::atomic<int64_t> recent_at_us_{0};
};

//! Inserts `rows` rows through multi-row statements `head (?, ..), (?, ..) tail` of 500, 32 and then
//! 1 rows: a batch is a few statements rather than one per row, and only three SQL texts are ever
//! cached. `bind(st, index, row)` binds row `row`'s `columns` values from parameter `index` on;
//! `bind_tail(st, index)` the parameters `tail` has after the rows. With `on_row`, each statement's
//! result rows are read (an INSERT ... RETURNING); without, the statements are queued. Caller holds
//! a Transaction.
void insert_rows(Db& db, std::string_view head, int columns, size_t rows,
                 const std::function<void(Stmt&, int, size_t)>& bind, std::string_view tail = {},
                 const std::function<void(Stmt&)>& on_row = {},
                 const std::function<void(Stmt&, int)>& bind_tail = {});

//! Inserts `rows` rows into `table`'s `columns` (plain lower-case names, quoted here): on PostgreSQL
//! from kCopyMinRows rows on as one binary COPY, else through insert_rows' multi-row INSERTs (SQLite
//! always), so a module has one code path for both. `write(w, row)` adds row `row`'s values in the
//! order of `columns`. No ON CONFLICT, no RETURNING: for rows that are new. Caller holds a
//! Transaction; a failure throws naming the table and the transaction rolls back whole.
void copy_rows(Db& db, std::string_view table, const std::vector<std::string>& columns, size_t rows,
               const RowSource& write);
//! Below this many rows copy_rows queues INSERTs: a COPY cannot travel in libpq's pipeline, so it
//! waits for what is queued before it and costs round trips of its own (bench/README.md).
inline constexpr size_t kCopyMinRows = 2'000;

//! Rows of one piece of work (a version's tags, its lineage) as `head row, row, ... tail`: up to
//! kFewRows rows a statement of exactly that many (so two tags are one statement, not two, for at
//! most kFewRows cached texts per head). `row` is one row's SQL with its `params` placeholders,
//! e.g. "((SELECT id FROM t WHERE ref = ?), ?)": a lookup per row rather than a join with a VALUES
//! list, which PostgreSQL's generic plan may answer with a scan of the whole table. `bind(st,
//! index, row)` binds a row's parameters from `index` on, `bind_tail(st, index)` those of `tail`.
//! Queued. Caller holds a Transaction.
constexpr size_t kFewRows = 8;
void insert_few_rows(Db& db, std::string_view head, std::string_view row, int params, size_t rows,
                     const std::function<void(Stmt&, int, size_t)>& bind, std::string_view tail = {},
                     const std::function<void(Stmt&, int)>& bind_tail = {});

//! A write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: BEGIN and the workspace's advisory
//! lock), rolled back by the destructor unless commit() ran. Holds the thread's lease on one of the
//! Db's connections for its whole life. Nested transactions become no-ops inside the outer one.
//! `Unannounced` marks writes no cache depends on (run and metric logging): on PostgreSQL their
//! commit leaves other connections' change tokens where they were (one UPDATE of the shared
//! keel_changes row less per commit). A nested announced transaction announces the outer one.
class Transaction {
public:
    enum Announce { Announced, Unannounced };
    explicit Transaction(Db& db, Announce announce = Announced);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();

private:
    Db& db_;
    Lease lock_;
    detail::Conn* conn_;
    bool owner_ = false;
    bool done_ = false;
};

} // namespace keel::storage

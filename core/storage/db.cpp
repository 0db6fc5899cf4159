// core/storage/db.cpp
#include "keel/storage/db.hpp"

#include "keel/common/error.hpp"

#include <sqlite3.h>

namespace keel::storage {

namespace {
// 'KEEL' in ASCII: marks keel.db so another program's SQLite file is refused, not misread.
constexpr int kApplicationId = 0x4b45454c;
} // namespace

// ---------------------------------------------------------------------------------------- Stmt

Stmt::~Stmt() {
    if (!stmt_) return;
    if (cached_) {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
        --cached_->users;
    } else {
        sqlite3_finalize(stmt_);
    }
}

Stmt& Stmt::bind(int index, int64_t value) {
    if (int rc = sqlite3_bind_int64(stmt_, index, value); rc != SQLITE_OK) db_->fail(rc, "bind");
    return *this;
}
Stmt& Stmt::bind(int index, double value) {
    if (int rc = sqlite3_bind_double(stmt_, index, value); rc != SQLITE_OK) db_->fail(rc, "bind");
    return *this;
}
Stmt& Stmt::bind(int index, std::string_view value) {
    int rc = sqlite3_bind_text(stmt_, index, value.data(), int(value.size()), SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) db_->fail(rc, "bind");
    return *this;
}
Stmt& Stmt::bind(int index, std::nullptr_t) {
    if (int rc = sqlite3_bind_null(stmt_, index); rc != SQLITE_OK) db_->fail(rc, "bind");
    return *this;
}
Stmt& Stmt::bind_blob(int index, const void* data, size_t size) {
    int rc = sqlite3_bind_blob64(stmt_, index, data, size, SQLITE_TRANSIENT);
    if (rc != SQLITE_OK) db_->fail(rc, "bind");
    return *this;
}

bool Stmt::step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    db_->fail(rc, sqlite3_sql(stmt_));
}

void Stmt::run() {
    while (step()) {
    }
}

bool Stmt::is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
int64_t Stmt::int64(int col) const { return sqlite3_column_int64(stmt_, col); }
double Stmt::real(int col) const { return sqlite3_column_double(stmt_, col); }
std::string Stmt::text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, size_t(sqlite3_column_bytes(stmt_, col))) : std::string();
}
std::optional<std::string> Stmt::opt_text(int col) const {
    if (is_null(col)) return std::nullopt;
    return text(col);
}
std::optional<int64_t> Stmt::opt_int64(int col) const {
    if (is_null(col)) return std::nullopt;
    return int64(col);
}
std::optional<double> Stmt::opt_real(int col) const {
    if (is_null(col)) return std::nullopt;
    return real(col);
}
std::string Stmt::blob(int col) const {
    auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string(p, size_t(sqlite3_column_bytes(stmt_, col))) : std::string();
}

// ------------------------------------------------------------------------------------------ Db

Db::Db(const std::string& path) : path_(path) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr); rc != SQLITE_OK) {
        std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw_error(ErrorKind::InvalidArgument, "cannot open workspace database '{}': {}", path, msg);
    }
    sqlite3_extended_result_codes(db_, 1);
    // Writers from several processes queue up instead of failing with SQLITE_BUSY.
    sqlite3_busy_timeout(db_, 60'000);
    try {
        auto guard = lock();
        {
            auto st = prepare("PRAGMA application_id");
            st.step();
            int64_t app = st.int64(0);
            if (app != 0 && app != kApplicationId)
                throw_error(ErrorKind::Corrupt,
                            "'{}' is a SQLite database of another application (application_id {}), "
                            "not a Keel workspace: open a different path",
                            path, app);
        }
        // WAL: readers never block the writer. synchronous=NORMAL keeps every committed transaction
        // across a process crash (kill -9); only an OS crash may lose the last few commits.
        // Checkpoints run on the committing caller's thread and fsync keel.db; every 10,000 pages
        // (~40 MB of WAL) instead of SQLite's 1,000 keeps them off most per-call writes.
        exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
             "PRAGMA wal_autocheckpoint=10000;");
        exec("PRAGMA application_id=" + std::to_string(kApplicationId));
    } catch (...) {
        for (auto& c : lru_) sqlite3_finalize(c.stmt);
        cache_.clear();
        lru_.clear();
        sqlite3_close(db_);
        db_ = nullptr;
        throw;
    }
}

Db::~Db() {
    for (auto& c : lru_) sqlite3_finalize(c.stmt);
    if (db_) sqlite3_close(db_);
}

Stmt Db::prepare(std::string_view sql) {
    if (auto it = cache_.find(sql); it != cache_.end()) {
        auto node = it->second;
        if (node->users == 0) {
            lru_.splice(lru_.begin(), lru_, node);
            ++node->users;
            return Stmt(*this, node->stmt, &*node);
        }
        // The same SQL is being stepped further up the stack: resetting it here would derail that
        // caller, so this one gets a private statement.
        sqlite3_stmt* st = nullptr;
        int rc = sqlite3_prepare_v3(db_, sql.data(), int(sql.size()), 0, &st, nullptr);
        if (rc != SQLITE_OK) fail(rc, sql);
        return Stmt(*this, st, nullptr);
    }
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), int(sql.size()), SQLITE_PREPARE_PERSISTENT, &st, nullptr);
    if (rc != SQLITE_OK) fail(rc, sql);
    lru_.push_front({std::string(sql), st, 1});
    cache_.emplace(lru_.front().sql, lru_.begin());
    evict_unused();
    return Stmt(*this, st, &lru_.front());
}

void Db::evict_unused() {
    // Oldest first; a statement someone still holds stays until a later call finds it free.
    for (auto it = lru_.end(); lru_.size() > kStatementCacheSize && it != lru_.begin();) {
        --it;
        if (it->users > 0) continue;
        cache_.erase(std::string_view(it->sql));
        sqlite3_finalize(it->stmt);
        it = lru_.erase(it);
    }
}

void Db::exec(std::string_view sql) {
    std::string text(sql);
    char* err = nullptr;
    int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        throw_error(rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? ErrorKind::Corrupt : ErrorKind::Internal,
                    "SQLite error {} ({}) running '{}'", rc, msg, text.substr(0, 200));
    }
}

int64_t Db::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
int Db::changes() const { return sqlite3_changes(db_); }

void Db::fail(int rc, std::string_view what) const {
    int primary = rc & 0xFF;
    ErrorKind kind = ErrorKind::Internal;
    if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) kind = ErrorKind::Corrupt;
    else if (primary == SQLITE_CONSTRAINT) kind = ErrorKind::Conflict;
    else if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) kind = ErrorKind::Conflict;
    else if (primary == SQLITE_TOOBIG) kind = ErrorKind::InvalidArgument; // a value or statement past SQLite's limits
    else if (primary == SQLITE_READONLY || primary == SQLITE_PERM || primary == SQLITE_AUTH)
        kind = ErrorKind::PermissionDenied;
    throw_error(kind, "SQLite error {} ({}: {}) running '{}'", rc, sqlite3_errstr(rc),
                db_ ? sqlite3_errmsg(db_) : "", std::string(what).substr(0, 200));
}

uint64_t Db::change_token() {
    auto guard = lock();
    auto st = prepare("PRAGMA data_version");
    uint64_t other = st.step() ? uint64_t(st.int64(0)) : 0;
    return (other << 32) ^ local_commits_.load();
}

bool Db::in_transaction() {
    auto guard = lock();
    return !sqlite3_get_autocommit(db_);
}

namespace {
// How stale recent_change_token() may answer while another thread writes through the connection.
constexpr std::chrono::microseconds kBusyTokenAge{100'000};
} // namespace

uint64_t Db::recent_change_token(std::chrono::microseconds max_age) {
    const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now().time_since_epoch()).count();
    const uint64_t local = local_commits_.load(std::memory_order_acquire);
    if (local == recent_local_.load(std::memory_order_acquire) &&
        now - recent_at_us_.load(std::memory_order_acquire) < max_age.count())
        return recent_token_.load(std::memory_order_acquire);
    // A write holding this connection (an assignment log flush) would make every request due for a
    // check queue behind it: while the last token is recent, answer with it and check after.
    std::unique_lock busy(mutex_, std::try_to_lock);
    if (!busy && now - recent_at_us_.load(std::memory_order_acquire) < kBusyTokenAge.count())
        return recent_token_.load(std::memory_order_acquire);
    // Racing readers may store in either order: a token read earlier can stand for at most max_age.
    const uint64_t token = change_token();
    recent_token_.store(token, std::memory_order_release);
    recent_at_us_.store(now, std::memory_order_release);
    recent_local_.store(local, std::memory_order_release);
    return token;
}

void Db::ensure_schema(const ModuleSchema& schema) {
    auto guard = lock();
    if (auto it = schema_versions_.find(schema.module);
        it != schema_versions_.end() && it->second == schema.steps.size())
        return;
    Transaction tx(*this);
    exec("CREATE TABLE IF NOT EXISTS keel_schema (module TEXT PRIMARY KEY, version INTEGER NOT NULL)");
    size_t version = 0;
    {
        auto st = prepare("SELECT version FROM keel_schema WHERE module = ?");
        st.bind(1, schema.module);
        if (st.step()) version = size_t(st.int64(0));
    }
    if (version > schema.steps.size())
        throw_error(ErrorKind::Corrupt,
                    "workspace '{}' has '{}' tables at schema version {}, but this Keel knows only up "
                    "to version {}: upgrade Keel to open it",
                    path_, schema.module, version, schema.steps.size());
    for (size_t i = version; i < schema.steps.size(); ++i) exec(schema.steps[i]);
    if (version < schema.steps.size()) {
        auto st = prepare("INSERT INTO keel_schema(module, version) VALUES(?, ?) "
                          "ON CONFLICT(module) DO UPDATE SET version = excluded.version");
        st.bind_all(schema.module, int64_t(schema.steps.size())).run();
    }
    tx.commit();
    schema_versions_[schema.module] = schema.steps.size();
}

void Db::after_commit(std::function<void()> action) {
    if (!sqlite3_get_autocommit(db_)) {
        after_commit_.push_back(std::move(action));
        return;
    }
    try {
        action();
    } catch (...) {
        // As after a commit: the change has landed.
    }
}

// --------------------------------------------------------------------------------- Transaction

Transaction::Transaction(Db& db) : db_(db), lock_(db.lock()) {
    if (sqlite3_get_autocommit(db_.handle())) {
        db_.exec("BEGIN IMMEDIATE");
        owner_ = true;
    }
}

Transaction::~Transaction() {
    if (owner_ && !done_) {
        // Migrations applied inside the rolled-back transaction are undone too: check again. Work
        // promised for its commit does not happen.
        db_.schema_versions_.clear();
        db_.after_commit_.clear();
        try {
            db_.exec("ROLLBACK");
        } catch (...) {
            // The connection rolls back by itself when a statement fails hard; nothing else to do.
        }
    }
}

void Transaction::commit() {
    if (owner_ && !done_) {
        db_.exec("COMMIT");
        ++db_.local_commits_;
        done_ = true;
        auto actions = std::move(db_.after_commit_);
        db_.after_commit_.clear();
        for (auto& action : actions) {
            try {
                action();
            } catch (...) {
                // Committed already: a file left behind is only an orphan, not a wrong answer.
            }
        }
    }
    done_ = true;
}

} // namespace keel::storage

// core/storage/sqlite_backend.cpp
// The embedded backend: one SQLite connection in WAL mode.
#include "backends.hpp"

#include "keel/common/error.hpp"

#include <sqlite3.h>

#include <vector>

namespace keel::storage {

namespace {

// 'KEEL' in ASCII: marks keel.db so another program's SQLite file is refused, not misread.
constexpr int kApplicationId = 0x4b45454c;

// Throws keel::Error for a failed SQLite call, naming the extended code and what was running.
[[noreturn]] void fail(sqlite3* db, int rc, std::string_view what) {
    int primary = rc & 0xFF;
    ErrorKind kind = ErrorKind::Internal;
    if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) kind = ErrorKind::Corrupt;
    else if (primary == SQLITE_CONSTRAINT) kind = ErrorKind::Conflict;
    else if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) kind = ErrorKind::Conflict;
    else if (primary == SQLITE_TOOBIG) kind = ErrorKind::InvalidArgument; // a value or statement past SQLite's limits
    else if (primary == SQLITE_READONLY || primary == SQLITE_PERM || primary == SQLITE_AUTH)
        kind = ErrorKind::PermissionDenied;
    throw_error(kind, "SQLite error {} ({}: {}) running '{}'", rc, sqlite3_errstr(rc), db ? sqlite3_errmsg(db) : "",
                std::string(what).substr(0, 200));
}

class SqliteCursor final : public Cursor {
public:
    SqliteCursor(sqlite3* db, sqlite3_stmt* st) : db_(db), st_(st) {}
    ~SqliteCursor() override {
        drop_kept();
        sqlite3_finalize(st_);
    }

    void bind_int64(int index, int64_t value) override { check(sqlite3_bind_int64(st_, index, value)); }
    void bind_double(int index, double value) override { check(sqlite3_bind_double(st_, index, value)); }
    void bind_text(int index, std::string_view value) override {
        check(sqlite3_bind_text64(st_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    }
    void bind_blob(int index, const void* data, size_t size) override {
        check(sqlite3_bind_blob64(st_, index, data, size, SQLITE_TRANSIENT));
    }
    void bind_null(int index) override { check(sqlite3_bind_null(st_, index)); }

    bool step() override {
        if (kept_) return ++row_ < kept_rows_.size();
        int rc = sqlite3_step(st_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) {
            affected_ = sqlite3_stmt_readonly(st_) ? 0 : sqlite3_changes64(db_);
            return false;
        }
        fail(db_, rc, sqlite3_sql(st_));
    }
    void reset() override {
        drop_kept();
        sqlite3_reset(st_);
        sqlite3_clear_bindings(st_);
    }
    // Runs to the end now and keeps copies of the rows: a write statement left mid-way would make
    // COMMIT fail ("SQL statements in progress").
    void defer() override {
        drop_kept();
        const int columns = sqlite3_column_count(st_);
        while (step()) {
            auto& row = kept_rows_.emplace_back();
            for (int c = 0; c < columns; ++c) row.push_back(sqlite3_value_dup(sqlite3_column_value(st_, c)));
        }
        sqlite3_reset(st_);
        kept_ = true;
        row_ = size_t(-1);
    }
    int64_t affected() const override { return affected_; }

    bool is_null(int col) const override {
        return kept_ ? sqlite3_value_type(kept(col)) == SQLITE_NULL : sqlite3_column_type(st_, col) == SQLITE_NULL;
    }
    int64_t int64(int col) const override {
        return kept_ ? sqlite3_value_int64(kept(col)) : sqlite3_column_int64(st_, col);
    }
    double real(int col) const override {
        return kept_ ? sqlite3_value_double(kept(col)) : sqlite3_column_double(st_, col);
    }
    std::string text(int col) const override {
        if (kept_) return bytes(sqlite3_value_text(kept(col)), sqlite3_value_bytes(kept(col)));
        return bytes(sqlite3_column_text(st_, col), sqlite3_column_bytes(st_, col));
    }
    std::string blob(int col) const override {
        if (kept_) return bytes(sqlite3_value_blob(kept(col)), sqlite3_value_bytes(kept(col)));
        return bytes(sqlite3_column_blob(st_, col), sqlite3_column_bytes(st_, col));
    }

private:
    void check(int rc) {
        if (rc != SQLITE_OK) fail(db_, rc, "bind");
    }
    static std::string bytes(const void* p, int size) {
        return p ? std::string(static_cast<const char*>(p), size_t(size)) : std::string();
    }
    sqlite3_value* kept(int col) const { return kept_rows_.at(row_).at(size_t(col)); }
    void drop_kept() {
        for (auto& row : kept_rows_)
            for (auto* v : row) sqlite3_value_free(v);
        kept_rows_.clear();
        kept_ = false;
    }
    sqlite3* db_;
    sqlite3_stmt* st_;
    int64_t affected_ = 0;
    bool kept_ = false;  //!< defer() ran: the rows below are read instead of the statement's
    std::vector<std::vector<sqlite3_value*>> kept_rows_;
    size_t row_ = 0;
};

class SqliteBackend final : public Backend {
public:
    explicit SqliteBackend(const std::string& path) : path_(path) {
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
        if (int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr); rc != SQLITE_OK) {
            std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
            sqlite3_close(db_);
            throw_error(ErrorKind::InvalidArgument, "cannot open workspace database '{}': {}", path, msg);
        }
        sqlite3_extended_result_codes(db_, 1);
        // Writers from several processes queue up instead of failing with SQLITE_BUSY.
        sqlite3_busy_timeout(db_, 60'000);
        try {
            {
                SqliteCursor st(db_, compile("PRAGMA application_id", 0));
                st.step();
                int64_t app = st.int64(0);
                if (app != 0 && app != kApplicationId)
                    throw_error(ErrorKind::Corrupt,
                                "'{}' is a SQLite database of another application (application_id {}), "
                                "not a Keel workspace: open a different path",
                                path, app);
            }
            // WAL: readers never block the writer. synchronous=NORMAL keeps every committed
            // transaction across a process crash (kill -9); only an OS crash may lose the last few
            // commits. Checkpoints run on the committing caller's thread and fsync keel.db; every
            // 10,000 pages (~40 MB of WAL) instead of SQLite's 1,000 keeps them off most per-call writes.
            exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
                 "PRAGMA wal_autocheckpoint=10000;");
            exec("PRAGMA application_id=" + std::to_string(kApplicationId));
            data_version_ = std::make_unique<SqliteCursor>(db_, compile("PRAGMA data_version", SQLITE_PREPARE_PERSISTENT));
        } catch (...) {
            sqlite3_close(db_);
            throw;
        }
    }
    ~SqliteBackend() override {
        data_version_.reset();
        sqlite3_close(db_);  // the Db dropped its cursors first
    }

    Dialect dialect() const override { return Dialect::Sqlite; }
    const std::string& location() const override { return path_; }

    std::unique_ptr<Cursor> prepare(std::string_view sql, bool persistent) override {
        return std::make_unique<SqliteCursor>(db_, compile(sql, persistent ? SQLITE_PREPARE_PERSISTENT : 0));
    }

    void exec(std::string_view sql) override {
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

    void begin_write() override { exec("BEGIN IMMEDIATE"); }
    void commit(bool) override { exec("COMMIT"); }  // SQLite's data_version moves on every commit
    void rollback() noexcept override {
        try {
            exec("ROLLBACK");
        } catch (...) {
            // The connection rolls back by itself when a statement fails hard; nothing else to do.
        }
    }
    bool in_transaction() const override { return !sqlite3_get_autocommit(db_); }
    void begin_read_snapshot() override {
        // A deferred transaction takes its snapshot at its first read: read at once.
        exec("BEGIN DEFERRED; SELECT COUNT(*) FROM sqlite_master");
    }

    uint64_t others_change_token() override {
        uint64_t version = data_version_->step() ? uint64_t(data_version_->int64(0)) : 0;
        data_version_->reset();  // a statement left on its row would hold a read transaction open
        return version;
    }

private:
    sqlite3_stmt* compile(std::string_view sql, unsigned flags) {
        sqlite3_stmt* st = nullptr;
        int rc = sqlite3_prepare_v3(db_, sql.data(), int(sql.size()), flags, &st, nullptr);
        if (rc != SQLITE_OK) fail(db_, rc, sql);
        return st;
    }

    std::string path_;
    sqlite3* db_ = nullptr;
    std::unique_ptr<SqliteCursor> data_version_;
};

} // namespace

std::unique_ptr<Backend> open_sqlite(const std::string& path) { return std::make_unique<SqliteBackend>(path); }

} // namespace keel::storage

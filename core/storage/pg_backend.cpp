// core/storage/pg_backend.cpp
// The team backend: one libpq connection to PostgreSQL per Db, statements prepared once per
// connection, write transactions serialized per workspace by an advisory lock. A write transaction
// runs in libpq's pipeline mode: BEGIN, the lock, every queued statement, the change bump and
// COMMIT go out together and the client waits once (at commit, or at a statement whose rows it
// reads), so a log_metric is one round trip instead of five.
#include "backends.hpp"

#include "keel/common/error.hpp"
#include "keel/storage/sql_dialect.hpp"

#include <libpq-fe.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <unordered_set>
#include <vector>

namespace keel::storage {

namespace {

// 'KEEL' in ASCII: the first key of every advisory lock Keel takes (the second is the workspace's).
constexpr int kLockClass = 0x4b45454c;
constexpr int kByteaOid = 17;
constexpr int kBoolOid = 16;
// Commands a pipeline may hold unread before the client reads their results: bounds what the
// server buffers for us, so neither side blocks on a full socket while the other writes.
constexpr size_t kMaxUnread = 256;

std::string trimmed(const char* message) {
    std::string s = message ? message : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    for (auto& c : s)
        if (c == '\n') c = ' ';
    return s;
}

class PgBackend;

class PgCursor final : public Cursor {
public:
    PgCursor(PgBackend& backend, std::string_view sql, bool persistent);
    ~PgCursor() override;

    void bind_int64(int index, int64_t value) override { set(index, std::to_string(value), 0); }
    void bind_double(int index, double value) override {
        if (std::isnan(value)) return set(index, "NaN", 0);
        if (std::isinf(value)) return set(index, value > 0 ? "Infinity" : "-Infinity", 0);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.17g", value);
        set(index, buf, 0);
    }
    void bind_text(int index, std::string_view value) override;
    void bind_blob(int index, const void* data, size_t size) override {
        set(index, std::string(static_cast<const char*>(data), size), 1);
    }
    void bind_null(int index) override {
        slot(index);
        null_[size_t(index - 1)] = true;
    }

    bool step() override;
    void queue() override;
    void defer() override;
    //! The result of a deferred run, read by the backend with the pipeline's others.
    void take(PGresult* result) {
        deferred_ = false;
        use(result);
    }
    void reset() override {
        forget_deferred();
        if (result_) PQclear(result_);
        result_ = nullptr;
        row_ = -1;
        for (size_t i = 0; i < values_.size(); ++i) {
            values_[i].clear();
            null_[i] = true;
            formats_[i] = 0;
        }
    }
    int64_t affected() const override { return affected_; }

    bool is_null(int col) const override { return PQgetisnull(result_, row_, col); }
    int64_t int64(int col) const override {
        if (is_null(col)) return 0;
        const char* v = PQgetvalue(result_, row_, col);
        if (PQftype(result_, col) == kBoolOid) return v[0] == 't';
        return std::strtoll(v, nullptr, 10);
    }
    double real(int col) const override {
        if (is_null(col)) return 0;
        const char* v = PQgetvalue(result_, row_, col);
        if (PQftype(result_, col) == kBoolOid) return v[0] == 't';
        return std::strtod(v, nullptr);  // "NaN", "Infinity", "-Infinity" too
    }
    std::string text(int col) const override {
        if (is_null(col)) return {};
        if (PQftype(result_, col) == kByteaOid) return blob(col);
        return std::string(PQgetvalue(result_, row_, col), size_t(PQgetlength(result_, row_, col)));
    }
    std::string blob(int col) const override;

private:
    void slot(int index);
    void use(PGresult* result) {
        if (result_) PQclear(result_);
        result_ = result;
        row_ = -1;
        const char* tuples = PQcmdTuples(result_);
        affected_ = tuples && *tuples ? std::strtoll(tuples, nullptr, 10) : 0;
    }
    void forget_deferred() noexcept;
    //! Sends the statement (preparing it first on a connection that lacks it); waits for its result
    //! unless `queued`. A `deferred` statement's result is kept for this cursor when it is read.
    PGresult* send(bool queued, bool deferred = false);
    void set(int index, std::string value, int format) {
        slot(index);
        values_[size_t(index - 1)] = std::move(value);
        null_[size_t(index - 1)] = false;
        formats_[size_t(index - 1)] = format;
    }

    PgBackend& backend_;
    std::string sql_;   //!< with $n placeholders
    std::string name_;  //!< the server-side statement's name; empty: run unnamed each time
    int params_ = 0;
    std::vector<std::string> values_;
    std::vector<char> null_;
    std::vector<int> formats_;
    PGresult* result_ = nullptr;
    int row_ = -1;
    int64_t affected_ = 0;
    bool deferred_ = false;  //!< sent in the pipeline by defer(); its result not read yet
};

//! The parts of a Keel PostgreSQL URL: what libpq gets, and what Keel keeps for itself.
struct PgUrl {
    std::string conninfo;   //!< the URL without Keel's parameters, connect_timeout defaulted
    std::string schema;     //!< `schema=`: the workspace's tables live in this schema (search_path)
    std::string shown;      //!< postgresql://user@host:port/db[?schema=..] without the password
    std::string host_port;  //!< for "cannot reach" messages
    std::string database;
    std::string user;
    PoolOptions pool{kDefaultPgPoolSize, std::chrono::milliseconds(30'000), std::chrono::milliseconds(60'000)};
    //! `prepared=off`: every statement unnamed (planned each time), for PgBouncer's transaction mode.
    bool prepared = true;
};

// `?pool_size=N`, `?pool_timeout=SECONDS`, `?pool_idle=SECONDS`: Keel's, not libpq's.
bool parse_pool_parameter(const std::string& key, const std::string& value, PoolOptions& pool) {
    if (key != "pool_size" && key != "pool_timeout" && key != "pool_idle") return false;
    char* end = nullptr;
    const double number = std::strtod(value.c_str(), &end);
    const bool whole = key != "pool_size" || number == std::floor(number);
    if (value.empty() || *end || !(number > 0) || number > 1e6 || !whole)
        throw_error(ErrorKind::InvalidArgument,
                    "{}={} in the workspace URL is not a {}: e.g. ?pool_size=8 (connections per process), "
                    "?pool_timeout=30 (seconds to wait for one), ?pool_idle=60 (seconds before an idle one closes)",
                    key, value, key == "pool_size" ? "positive whole number" : "positive number of seconds");
    if (key == "pool_size") pool.size = size_t(number);
    else if (key == "pool_timeout") pool.wait = std::chrono::milliseconds(int64_t(number * 1000));
    else pool.idle = std::chrono::milliseconds(int64_t(number * 1000));
    return true;
}

// "postgresql://user:secret@host/db" as "postgresql://user:***@host/db", for messages.
std::string without_password(std::string url) {
    auto scheme = url.find("://"), at = url.find('@');
    if (scheme == std::string::npos || at == std::string::npos) return url;
    auto colon = url.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at) url.replace(colon + 1, at - colon - 1, "***");
    return url;
}

bool valid_schema_name(std::string_view s) {
    if (s.empty() || s.size() > 63) return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
    return !std::isdigit(static_cast<unsigned char>(s[0]));
}

PgUrl parse_url(const std::string& url) {
    PgUrl out;
    std::string base = url, query;
    if (auto q = url.find('?'); q != std::string::npos) {
        base = url.substr(0, q);
        query = url.substr(q + 1);
    }
    std::string kept;
    bool has_timeout = false;
    size_t start = 0;
    while (start <= query.size() && !query.empty()) {
        size_t amp = query.find('&', start);
        std::string part = query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
        start = amp == std::string::npos ? query.size() + 1 : amp + 1;
        if (part.empty()) continue;
        std::string key = part.substr(0, part.find('='));
        std::string value = part.find('=') == std::string::npos ? "" : part.substr(part.find('=') + 1);
        if (key == "schema") {
            if (!valid_schema_name(value))
                throw_error(ErrorKind::InvalidArgument,
                            "schema '{}' in the workspace URL is not a plain name: use letters, digits and '_' "
                            "(at most 63, not starting with a digit), e.g. ?schema=team_a",
                            value);
            out.schema = value;
            continue;
        }
        if (key == "artifacts") continue;  // the workspace's files: Workspace reads it
        if (parse_pool_parameter(key, value, out.pool)) continue;
        if (key == "prepared") {
            if (value != "on" && value != "off")
                throw_error(ErrorKind::InvalidArgument,
                            "prepared={} in the workspace URL is neither on nor off: ?prepared=off runs every "
                            "statement unnamed (for PgBouncer's transaction mode)",
                            value);
            out.prepared = value == "on";
            continue;
        }
        if (key == "connect_timeout") has_timeout = true;
        kept += (kept.empty() ? "" : "&") + part;
    }
    // A server that does not answer fails in seconds instead of the OS's minutes.
    if (!has_timeout) kept += std::string(kept.empty() ? "" : "&") + "connect_timeout=5";
    out.conninfo = base + "?" + kept;

    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(out.conninfo.c_str(), &err);
    if (!opts) {
        std::string msg = err ? trimmed(err) : "out of memory";
        PQfreemem(err);
        throw_error(ErrorKind::InvalidArgument,
                    "workspace URL '{}' is malformed ({}): expected postgresql://user[:password]@host[:port]/database"
                    "[?schema=NAME&artifacts=DIR]",
                    without_password(url), msg);
    }
    std::string host = "localhost", port = "5432";
    for (auto* o = opts; o->keyword; ++o) {
        if (!o->val) continue;
        std::string_view k = o->keyword;
        if (k == "host" || k == "hostaddr") host = o->val;
        else if (k == "port") port = o->val;
        else if (k == "dbname") out.database = o->val;
        else if (k == "user") out.user = o->val;
    }
    PQconninfoFree(opts);
    out.host_port = host + ":" + port;
    out.shown = "postgresql://" + (out.user.empty() ? "" : out.user + "@") + out.host_port + "/" + out.database +
                (out.schema.empty() ? "" : "?schema=" + out.schema);
    return out;
}

// One COPY's data in PostgreSQL's binary format: a header, then per row the field count and each
// field as a 32-bit length (-1: NULL) and its bytes as the type's send function writes them (int8
// and float8 big-endian, text as UTF-8). No escaping, exact doubles; the server checks that each
// field fits its column's type, so every integer column must be BIGINT (translate_schema makes
// INTEGER one) and every real DOUBLE PRECISION.
class CopyEncoder final : public RowWriter {
public:
    explicit CopyEncoder(size_t columns) : columns_(columns) {
        static constexpr char kSignature[] = "PGCOPY\n\377\r\n";
        data_.append(kSignature, sizeof kSignature);  // its 11 bytes with the closing NUL
        be(uint32_t(0));  // flags
        be(uint32_t(0));  // header extension length
    }
    void begin_row() {
        be(uint16_t(columns_));
        fields_ = 0;
    }
    //! The number of values the last row held.
    size_t fields() const { return fields_; }
    void end() { be(uint16_t(0xffff)); }
    std::string& data() { return data_; }

protected:
    void put_int64(int64_t value) override {
        field(8);
        be(uint64_t(value));
    }
    void put_double(double value) override {
        field(8);
        be(std::bit_cast<uint64_t>(value));
    }
    void put_text(std::string_view value) override {
        if (value.find('\0') != std::string_view::npos)
            throw_error(ErrorKind::InvalidArgument,
                        "a text value holds a NUL byte, which PostgreSQL text cannot store: remove it (or store the "
                        "bytes as an artifact)");
        if (value.size() > 0x3fffffff)
            throw_error(ErrorKind::InvalidArgument, "a text value of {} bytes is over PostgreSQL's 1 GB", value.size());
        field(uint32_t(value.size()));
        data_.append(value);
    }
    void put_null() override {
        ++fields_;
        be(uint32_t(0xffffffff));
    }

private:
    void field(uint32_t size) {
        ++fields_;
        be(size);
    }
    template <typename T>
    void be(T value) {
        value = byteswap(value);
        data_.append(reinterpret_cast<const char*>(&value), sizeof value);
    }
    template <typename T>
    static T byteswap(T v) {
        if constexpr (std::endian::native == std::endian::big) return v;
        else if constexpr (sizeof(T) == 2) return T(__builtin_bswap16(v));
        else if constexpr (sizeof(T) == 4) return T(__builtin_bswap32(v));
        else return T(__builtin_bswap64(v));
    }

    size_t columns_;
    size_t fields_ = 0;
    std::string data_;
};

class PgBackend final : public Backend {
public:
    explicit PgBackend(const std::string& url) : url_(parse_url(url)) {
        connect();
    }
    ~PgBackend() override {
        if (conn_) PQfinish(conn_);
    }

    Dialect dialect() const override { return Dialect::Postgres; }
    const std::string& location() const override { return url_.shown; }

    std::unique_ptr<Cursor> prepare(std::string_view sql, bool persistent) override {
        return std::make_unique<PgCursor>(*this, sql, persistent);
    }

    void exec(std::string_view sql) override {
        ensure_connected();
        if (pipeline_) {
            // Several statements in one string cannot go through a pipeline: read what is in
            // flight, run them plainly, go on pipelined (the open transaction spans both modes).
            collect(true, false);
            leave_pipeline();
            struct Reenter {
                PgBackend& b;
                ~Reenter() { b.enter_pipeline(); }
            } reenter{*this};
            run_plain(sql);
            return;
        }
        run_plain(sql);
    }

    void begin_write() override {
        ensure_connected();
        // One writer at a time per workspace (the schema), as BEGIN IMMEDIATE gives on SQLite:
        // readers are never blocked, and every statement after the lock (READ COMMITTED takes a
        // snapshot per statement) sees every transaction committed before it. Nothing waits here:
        // the server runs what follows only once it holds the lock.
        tx_open_ = true;
        try {
            enter_pipeline();
            send_text("BEGIN");
            send_prepared("keel_lock",
                          "SELECT pg_advisory_xact_lock(" + std::to_string(kLockClass) + ", " + std::to_string(key_) + ")");
        } catch (...) {
            rollback();
            throw;
        }
    }
    void commit(bool announce) override {
        // The generation other connections' change tokens read, bumped in the same transaction.
        // After a failed statement the server skips the rest of the pipeline, COMMIT included, and
        // collect() throws that statement's error: rollback() then ends the transaction.
        try {
            if (announce) send_prepared("keel_bump", "UPDATE keel_changes SET n = n + 1 WHERE id = 1");
            send_text("COMMIT");
            collect(true, false);
        } catch (...) {
            leave_pipeline();
            throw;
        }
        leave_pipeline();
        tx_open_ = false;
    }
    void rollback() noexcept override {
        tx_open_ = false;
        if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {  // a lost connection rolled back
            pipeline_ = false;
            pending_.clear();
            return;
        }
        if (pipeline_) {
            try {
                send_text("ROLLBACK");  // skipped by the server if a statement before it failed
                collect(true, false);
            } catch (...) {
            }
            leave_pipeline();
        }
        if (conn_ && PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
            PGresult* r = PQexec(conn_, "ROLLBACK");
            PQclear(r);
        }
    }
    bool in_transaction() const override { return tx_open_; }
    bool broken() const override { return !conn_ || PQstatus(conn_) != CONNECTION_OK; }
    void closing() noexcept override { closing_ = true; }
    void begin_read_snapshot() override {
        ensure_connected();
        tx_open_ = true;  // a lost connection must not let reads go on outside the snapshot
        try {
            // The snapshot is taken by the first statement after BEGIN: take it now.
            run_plain("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1");
        } catch (...) {
            rollback();
            throw;
        }
    }

    uint64_t others_change_token() override {
        ensure_connected();
        static constexpr const char* kSql = "SELECT n FROM keel_changes WHERE id = 1";
        PGresult* r;
        if (pipeline_) {
            send_text(kSql);
            r = collect(false, true);
        } else {
            r = PQexec(conn_, kSql);
            check(r, kSql);
        }
        uint64_t n = PQntuples(r) ? std::strtoull(PQgetvalue(r, 0, 0), nullptr, 10) : 0;
        PQclear(r);
        return n;
    }

    bool copy_rows(std::string_view table, const std::vector<std::string>& columns, size_t rows,
                   const RowSource& write) override {
        std::string sql = "COPY \"" + std::string(table) + "\" (";
        for (size_t c = 0; c < columns.size(); ++c) sql += (c ? ", \"" : "\"") + columns[c] + "\"";
        sql += ") FROM STDIN (FORMAT binary)";
        ensure_connected();
        // COPY cannot run in a pipeline: what is queued is read first (a failure there is thrown as at
        // any wait, naming its own statement), then the COPY runs plainly in the same transaction.
        const bool pipelined = pipeline_;
        if (pipelined) {
            collect(true, false);
            leave_pipeline();
        }
        try {
            copy(sql, columns.size(), rows, write, pipelined);
        } catch (const Error& e) {
            throw_error(e.kind(), "copying {} rows into '{}' failed, so the transaction wrote nothing: {}", rows, table,
                        e.what());
        }
        return true;
    }

    bool pipelined() const { return pipeline_; }

    //! Sends a statement's Prepare unless this connection has it (in a pipeline, without waiting).
    void ensure_prepared(const std::string& name, const std::string& sql, int params) {
        if (prepared_.contains(name)) return;
        if (pipeline_) {
            sent(PQsendPrepare(conn_, name.c_str(), sql.c_str(), params, nullptr), sql, name);
        } else {
            PGresult* p = PQprepare(conn_, name.c_str(), sql.c_str(), params, nullptr);
            check(p, sql);
            PQclear(p);
        }
        prepared_.insert(name);
    }

    //! Records a command sent in the pipeline (`ok`: libpq's answer to the send); `prepares`
    //! names the statement when the command is its Prepare.
    void sent(int ok, std::string_view sql, std::string prepares = {}) {
        if (!ok) check(nullptr, sql);  // throws: the connection failed
        pending_.push_back({std::string(sql), std::move(prepares)});
    }
    //! The command sent last is a deferred statement's: its result goes to `cursor` when read.
    void deliver_last_to(PgCursor* cursor) { pending_.back().into = cursor; }
    //! A deferred statement's cursor is reset or gone before its result was read: drop it then.
    void forget(PgCursor* cursor) noexcept {
        for (auto& p : pending_)
            if (p.into == cursor) p.into = nullptr;
    }
    //! After a queued command: reads the results in flight when too many are unread.
    void limit_unread() {
        if (pending_.size() >= kMaxUnread) collect(false, false);
    }

    //! Reads the results of every command in flight, in order (after a Sync when `sync`: the
    //! pipeline's end). Returns the last command's result when `keep_last` (the caller clears it);
    //! throws the first failure, naming its statement, once every result has been read.
    PGresult* collect(bool sync, bool keep_last) {
        if (sync ? !PQpipelineSync(conn_) : (!PQsendFlushRequest(conn_) || PQflush(conn_) != 0)) {
            pending_.clear();
            check(nullptr, "sending the pipeline");
        }
        PGresult* failed = nullptr;
        std::string failed_sql;
        bool any_failed = false, lost = false;
        PGresult* last = nullptr;
        while (!pending_.empty()) {
            Pending p = std::move(pending_.front());
            pending_.pop_front();
            PGresult* r = lost ? nullptr : PQgetResult(conn_);
            if (!r) lost = true;
            else
                while (PGresult* end = PQgetResult(conn_)) PQclear(end);  // each command's results end with a null
            auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
            bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
            if (!ok && !p.prepares.empty()) prepared_.erase(p.prepares);
            if (!ok && status != PGRES_PIPELINE_ABORTED && !any_failed) {
                any_failed = true;
                failed = r;
                failed_sql = std::move(p.sql);
                if (PQstatus(conn_) != CONNECTION_OK) lost = true;
                continue;
            }
            if (p.into && ok) {
                p.into->take(r);
                continue;
            }
            if (keep_last && ok && pending_.empty()) {
                last = r;
                continue;
            }
            if (r) PQclear(r);
        }
        if (sync && !lost) {
            PGresult* r = PQgetResult(conn_);  // PGRES_PIPELINE_SYNC
            if (r) PQclear(r);
        }
        if (any_failed || lost) {
            if (last) PQclear(last);
            check(failed, failed_sql.empty() ? "a pipelined statement" : failed_sql);
            throw_error(ErrorKind::Internal, "PostgreSQL returned no result for '{}'", failed_sql.substr(0, 200));
        }
        return last;
    }

    //! Forgets a server-side statement (its cursor is gone) and frees it on the server. Never throws.
    void release_statement(const std::string& name) noexcept {
        if (!prepared_.erase(name) || closing_ || !conn_ || PQstatus(conn_) != CONNECTION_OK) return;
        try {
            if (pipeline_) send_text("DEALLOCATE " + name);
            else if (PQtransactionStatus(conn_) != PQTRANS_INERROR) PQclear(PQexec(conn_, ("DEALLOCATE " + name).c_str()));
        } catch (...) {
        }
    }

    PGconn* conn() { return conn_; }
    //! False with `?prepared=off`: no statement is named, so none outlives its transaction.
    bool names_statements() const { return url_.prepared; }
    uint64_t next_statement() { return ++statements_; }

    //! Reconnects after a lost connection (the server restarted): the caller's statement runs on
    //! the new one. Inside a transaction it cannot: the transaction is gone.
    void ensure_connected() {
        if (conn_ && PQstatus(conn_) == CONNECTION_OK) return;
        // The transaction died with the connection: its statements must not go on outside it.
        if (tx_open_)
            throw_error(ErrorKind::Unavailable,
                        "lost the connection to PostgreSQL at {} during a transaction, which was rolled back: retry "
                        "the call (the next one reconnects)",
                        url_.host_port);
        connect();
    }

    //! Throws for a failed result (and clears it), naming the SQLSTATE and the statement.
    void check(PGresult* r, std::string_view sql) {
        auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return;
        std::string state = r && PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : "";
        std::string msg = trimmed(r ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
        if (msg.empty()) msg = trimmed(PQerrorMessage(conn_));
        PQclear(r);
        if (PQstatus(conn_) != CONNECTION_OK || state.starts_with("08") || state == "57P01" || state == "57P02" ||
            state == "57P03")
            throw_error(ErrorKind::Unavailable,
                        "lost the connection to PostgreSQL at {} ({}) running '{}': the call may not have completed; "
                        "retry it (the next call reconnects)",
                        url_.host_port, msg, std::string(sql).substr(0, 200));
        ErrorKind kind = ErrorKind::Internal;
        if (state.starts_with("23") || state == "40001" || state == "40P01" || state == "55P03") kind = ErrorKind::Conflict;
        else if (state.starts_with("22") || state == "54000") kind = ErrorKind::InvalidArgument;
        else if (state == "42501") kind = ErrorKind::PermissionDenied;
        throw_error(kind, "PostgreSQL error {} ({}) running '{}'", state, msg, std::string(sql).substr(0, 200));
    }

private:
    struct Pending {
        std::string sql;       //!< for messages
        std::string prepares;  //!< non-empty: the command is the Prepare of this statement
        PgCursor* into = nullptr;  //!< a deferred statement's cursor, which takes the result
    };

    // Runs copy_rows' COPY on a connection out of pipeline mode; the pipeline resumes after it when
    // it was on.
    void copy(const std::string& sql, size_t columns, size_t rows, const RowSource& write, bool pipelined) {
        struct Reenter {
            PgBackend& b;
            bool on;
            ~Reenter() {
                try {
                    if (on) b.enter_pipeline();
                } catch (...) {
                    // Left plain: rollback() ends the transaction either way.
                }
            }
        } reenter{*this, pipelined};
        PGresult* r = PQexec(conn_, sql.c_str());
        if (PQresultStatus(r) != PGRES_COPY_IN) {
            check(r, sql);  // throws for a failure
            PQclear(r);
            throw_error(ErrorKind::Internal, "PostgreSQL did not start '{}'", sql);
        }
        PQclear(r);
        // Sent in pieces of about a megabyte: the whole batch is never held twice.
        constexpr size_t kChunk = 1 << 20;
        CopyEncoder encoder(columns);
        try {
            for (size_t row = 0; row < rows; ++row) {
                encoder.begin_row();
                write(encoder, row);
                if (encoder.fields() != columns)
                    throw_error(ErrorKind::Internal, "row {} has {} values for {} columns", row, encoder.fields(),
                                columns);
                if (encoder.data().size() >= kChunk) put_copy_data(encoder.data(), sql);
            }
            encoder.end();
            put_copy_data(encoder.data(), sql);
        } catch (...) {
            // The server ends the COPY with an error, which aborts the transaction: nothing lands.
            if (PQstatus(conn_) == CONNECTION_OK && PQputCopyEnd(conn_, "the client stopped the COPY") == 1)
                while (PGresult* end = PQgetResult(conn_)) PQclear(end);
            throw;
        }
        if (PQputCopyEnd(conn_, nullptr) != 1) check(nullptr, sql);
        PGresult* result = PQgetResult(conn_);
        while (PGresult* end = PQgetResult(conn_)) PQclear(end);
        check(result, sql);
        PQclear(result);
    }
    void put_copy_data(std::string& data, const std::string& sql) {
        if (PQputCopyData(conn_, data.data(), int(data.size())) != 1) check(nullptr, sql);
        data.clear();
    }

    void run_plain(std::string_view sql) {
        PGresult* r = PQexec(conn_, std::string(sql).c_str());
        check(r, sql);
        PQclear(r);
    }
    void send_text(const std::string& sql) {
        sent(PQsendQueryParams(conn_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0), sql);
    }
    //! Statements of every transaction, prepared once per connection rather than planned each time.
    void send_prepared(const std::string& name, const std::string& sql) {
        if (!url_.prepared) return send_text(sql);
        ensure_prepared(name, sql, 0);
        sent(PQsendQueryPrepared(conn_, name.c_str(), 0, nullptr, nullptr, nullptr, 0), sql);
    }
    void enter_pipeline() {
        if (pipeline_ || !conn_ || PQstatus(conn_) != CONNECTION_OK) return;
        if (!PQenterPipelineMode(conn_))
            throw_error(ErrorKind::Internal, "libpq refused pipeline mode on the connection to {} ({})", url_.host_port,
                        trimmed(PQerrorMessage(conn_)));
        pipeline_ = true;
    }
    void leave_pipeline() noexcept {
        if (pipeline_ && conn_ && PQstatus(conn_) == CONNECTION_OK) PQexitPipelineMode(conn_);
        pipeline_ = false;
        pending_.clear();
    }

    void connect() {
        if (conn_) PQfinish(conn_);
        pipeline_ = false;
        pending_.clear();
        prepared_.clear();  // statements live and die with their connection
        conn_ = PQconnectdb(url_.conninfo.c_str());
        if (PQstatus(conn_) != CONNECTION_OK) {
            std::string msg = trimmed(PQerrorMessage(conn_));
            PQfinish(conn_);
            conn_ = nullptr;
            fail_connect(msg);
        }
        PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);  // IF NOT EXISTS notices
        try {
            setup();
        } catch (...) {
            PQfinish(conn_);
            conn_ = nullptr;
            throw;
        }
    }

    [[noreturn]] void fail_connect(const std::string& msg) {
        const std::string where = fmt::format("PostgreSQL at {}", url_.host_port);
        if (msg.find("password authentication failed") != std::string::npos ||
            msg.find("no password supplied") != std::string::npos ||
            (msg.find("role") != std::string::npos && msg.find("does not exist") != std::string::npos) ||
            msg.find("no pg_hba.conf entry") != std::string::npos)
            throw_error(ErrorKind::PermissionDenied,
                        "{} refused user '{}' ({}): check the user and password in the workspace URL", where,
                        url_.user, msg);
        if (msg.find("database") != std::string::npos && msg.find("does not exist") != std::string::npos)
            throw_error(ErrorKind::NotFound, "{} has no database '{}' ({}): create it (createdb {}) or fix the URL",
                        where, url_.database, msg, url_.database);
        throw_error(ErrorKind::Unavailable,
                    "cannot reach {} ({}): check the host and port in the workspace URL and that the server is "
                    "running; retry when it is",
                    where, msg);
    }

    // The session: the workspace's schema (created once, under a lock so two first opens do not
    // race), its advisory lock key, and the change generation other machines' tokens read.
    void setup() {
        // Keel's statements are index lookups and searches that stop at a page of runs: starting
        // parallel workers (10+ ms here) costs more than such a query takes; the planner chose them
        // for a top-100 search of 100,000 runs that took 4 ms alone and 16-24 ms with one or two.
        exec("SET max_parallel_workers_per_gather = 0");
        if (!url_.schema.empty()) {
            char* ident = PQescapeIdentifier(conn_, url_.schema.c_str(), url_.schema.size());
            std::string quoted = ident;
            PQfreemem(ident);
            exec("BEGIN; SELECT pg_advisory_xact_lock(" + std::to_string(kLockClass) +
                 ", 0); CREATE SCHEMA IF NOT EXISTS " + quoted + "; COMMIT");
            exec("SET search_path TO " + quoted);
        }
        PGresult* r = PQexec(conn_, "SELECT hashtext(current_schema())");
        check(r, "SELECT hashtext(current_schema())");
        if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0)) {
            PQclear(r);
            throw_error(ErrorKind::InvalidArgument,
                        "the PostgreSQL session of {} has no schema to write to: set ?schema=NAME in the URL",
                        url_.shown);
        }
        key_ = std::atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        // A failure here drops the connection (connect()), and the open transaction with it.
        exec("BEGIN; SELECT pg_advisory_xact_lock(" + std::to_string(kLockClass) + ", " + std::to_string(key_) + "); " +
             translate_schema("CREATE TABLE IF NOT EXISTS keel_changes (id INTEGER PRIMARY KEY CHECK (id = 1), "
                              "n INTEGER NOT NULL); INSERT INTO keel_changes (id, n) VALUES (1, 0) "
                              "ON CONFLICT (id) DO NOTHING; COMMIT",
                              Dialect::Postgres));
    }

    PgUrl url_;
    PGconn* conn_ = nullptr;
    int key_ = 0;
    bool tx_open_ = false;  //!< between begin_write and commit/rollback, whatever the connection's state
    bool closing_ = false;  //!< closing(): statements are dropped without a DEALLOCATE each
    bool pipeline_ = false;  //!< in libpq's pipeline mode (a write transaction is open)
    std::deque<Pending> pending_;  //!< commands sent in the pipeline whose results are unread
    std::unordered_set<std::string> prepared_;  //!< statements this connection has (or has been sent)
    uint64_t statements_ = 0;  //!< names server-side statements
};

PgCursor::PgCursor(PgBackend& backend, std::string_view sql, bool persistent)
    : backend_(backend) {
    sql_ = number_placeholders(sql, params_);
    if (persistent && backend_.names_statements()) name_ = "k" + std::to_string(backend_.next_statement());
    values_.resize(size_t(params_));
    null_.assign(size_t(params_), true);
    formats_.assign(size_t(params_), 0);
}

PgCursor::~PgCursor() {
    forget_deferred();
    if (result_) PQclear(result_);
    if (!name_.empty()) backend_.release_statement(name_);
}

void PgCursor::slot(int index) {
    if (index < 1 || index > params_)
        throw_error(ErrorKind::Internal, "bind index {} is out of range: the statement has {} parameters ('{}')", index,
                    params_, sql_.substr(0, 200));
}

void PgCursor::bind_text(int index, std::string_view value) {
    // Text goes in PostgreSQL's text format (so the server converts it to whatever type the column
    // is), which ends at a NUL byte: refuse one rather than store a truncated value.
    if (value.find('\0') != std::string_view::npos)
        throw_error(ErrorKind::InvalidArgument,
                    "a text value holds a NUL byte, which PostgreSQL text cannot store: remove it (or store the "
                    "bytes as an artifact)");
    set(index, std::string(value), 0);
}

PGresult* PgCursor::send(bool queued, bool deferred) {
    std::vector<const char*> values(static_cast<size_t>(params_));
    std::vector<int> lengths(static_cast<size_t>(params_));
    for (size_t i = 0; i < size_t(params_); ++i) {
        values[i] = null_[i] ? nullptr : values_[i].c_str();
        lengths[i] = int(values_[i].size());
    }
    backend_.ensure_connected();
    PGconn* conn = backend_.conn();
    if (!name_.empty()) backend_.ensure_prepared(name_, sql_, params_);
    if (!backend_.pipelined()) {
        PGresult* r = name_.empty()
                          ? PQexecParams(conn, sql_.c_str(), params_, nullptr, values.data(), lengths.data(),
                                         formats_.data(), 0)
                          : PQexecPrepared(conn, name_.c_str(), params_, values.data(), lengths.data(), formats_.data(), 0);
        backend_.check(r, sql_);
        return r;
    }
    // libpq copies the parameters into its buffer here, so they may go out of scope at once.
    int ok = name_.empty() ? PQsendQueryParams(conn, sql_.c_str(), params_, nullptr, values.data(), lengths.data(),
                                               formats_.data(), 0)
                           : PQsendQueryPrepared(conn, name_.c_str(), params_, values.data(), lengths.data(),
                                                 formats_.data(), 0);
    backend_.sent(ok, sql_);
    if (!queued) return backend_.collect(false, true);
    if (deferred) {
        backend_.deliver_last_to(this);
        deferred_ = true;
    }
    backend_.limit_unread();
    return nullptr;
}

bool PgCursor::step() {
    if (!result_ && deferred_) {
        // Sent, not read yet: read what is in flight (its result comes with it).
        if (backend_.pipelined()) backend_.collect(false, false);
        if (!result_)
            throw_error(ErrorKind::Internal, "the result of '{}' was lost with its transaction", sql_.substr(0, 200));
    }
    if (!result_) use(send(false));
    return ++row_ < PQntuples(result_);
}

void PgCursor::defer() {
    forget_deferred();
    if (result_) PQclear(result_);
    result_ = nullptr;
    if (!backend_.pipelined()) return use(send(false));
    send(true, true);
}

void PgCursor::forget_deferred() noexcept {
    if (deferred_) backend_.forget(this);
    deferred_ = false;
}

void PgCursor::queue() {
    if (!backend_.pipelined()) return Cursor::queue();
    if (result_) PQclear(result_);
    result_ = nullptr;
    send(true);
}

std::string PgCursor::blob(int col) const {
    if (is_null(col)) return {};
    const char* v = PQgetvalue(result_, row_, col);
    if (PQftype(result_, col) != kByteaOid) return std::string(v, size_t(PQgetlength(result_, row_, col)));
    size_t n = 0;
    unsigned char* bytes = PQunescapeBytea(reinterpret_cast<const unsigned char*>(v), &n);
    if (!bytes) throw_error(ErrorKind::Internal, "cannot decode a bytea value from PostgreSQL");
    std::string out(reinterpret_cast<const char*>(bytes), n);
    PQfreemem(bytes);
    return out;
}

} // namespace

std::unique_ptr<Backend> open_postgres(const std::string& url) { return std::make_unique<PgBackend>(url); }

PoolOptions postgres_pool_options(const std::string& url) { return parse_url(url).pool; }

std::unique_ptr<Db> open_postgres_db(const std::string& url) {
    return std::make_unique<Db>([url] { return open_postgres(url); }, postgres_pool_options(url));
}

bool is_postgres_url(std::string_view location) {
    return location.starts_with("postgresql://") || location.starts_with("postgres://");
}

} // namespace keel::storage

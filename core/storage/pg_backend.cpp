// core/storage/pg_backend.cpp
// The team backend: one libpq connection to PostgreSQL per Db, statements prepared once per
// connection, write transactions serialized per workspace by an advisory lock.
#include "backends.hpp"

#include "keel/common/error.hpp"
#include "keel/storage/sql_dialect.hpp"

#include <libpq-fe.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace keel::storage {

namespace {

// 'KEEL' in ASCII: the first key of every advisory lock Keel takes (the second is the workspace's).
constexpr int kLockClass = 0x4b45454c;
constexpr int kByteaOid = 17;
constexpr int kBoolOid = 16;

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
    void reset() override {
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
    void set(int index, std::string value, int format) {
        slot(index);
        values_[size_t(index - 1)] = std::move(value);
        null_[size_t(index - 1)] = false;
        formats_[size_t(index - 1)] = format;
    }

    PgBackend& backend_;
    std::string sql_;   //!< with $n placeholders
    std::string name_;  //!< the server-side statement's name; empty: run unnamed each time
    uint64_t prepared_on_ = 0;  //!< the connection (PgBackend::epoch_) it was prepared on; 0: not yet
    int params_ = 0;
    std::vector<std::string> values_;
    std::vector<char> null_;
    std::vector<int> formats_;
    PGresult* result_ = nullptr;
    int row_ = -1;
    int64_t affected_ = 0;
};

//! The parts of a Keel PostgreSQL URL: what libpq gets, and what Keel keeps for itself.
struct PgUrl {
    std::string conninfo;   //!< the URL without Keel's parameters, connect_timeout defaulted
    std::string schema;     //!< `schema=`: the workspace's tables live in this schema (search_path)
    std::string shown;      //!< postgresql://user@host:port/db[?schema=..] without the password
    std::string host_port;  //!< for "cannot reach" messages
    std::string database;
    std::string user;
};

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
        PGresult* r = PQexec(conn_, std::string(sql).c_str());
        check(r, sql);
        PQclear(r);
    }

    void begin_write() override {
        ensure_connected();
        // One writer at a time per workspace (the schema), as BEGIN IMMEDIATE gives on SQLite:
        // readers are never blocked, and every statement after the lock (READ COMMITTED takes a
        // snapshot per statement) sees every transaction committed before it.
        tx_open_ = true;
        try {
            exec("BEGIN; SELECT pg_advisory_xact_lock(" + std::to_string(kLockClass) + ", " + std::to_string(key_) +
                 ")");
        } catch (...) {
            rollback();
            throw;
        }
    }
    void commit() override {
        // The generation other connections' change tokens read, bumped in the same transaction.
        exec("UPDATE keel_changes SET n = n + 1 WHERE id = 1; COMMIT");
        tx_open_ = false;
    }
    void rollback() noexcept override {
        tx_open_ = false;
        if (!conn_ || PQstatus(conn_) != CONNECTION_OK) return;  // a lost connection rolled back
        PGresult* r = PQexec(conn_, "ROLLBACK");
        PQclear(r);
    }
    bool in_transaction() const override { return tx_open_; }

    uint64_t others_change_token() override {
        ensure_connected();
        PGresult* r = PQexec(conn_, "SELECT n FROM keel_changes WHERE id = 1");
        check(r, "SELECT n FROM keel_changes");
        uint64_t n = PQntuples(r) ? std::strtoull(PQgetvalue(r, 0, 0), nullptr, 10) : 0;
        PQclear(r);
        return n;
    }

    PGconn* conn() { return conn_; }
    uint64_t epoch() const { return epoch_; }
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
    void connect() {
        if (conn_) PQfinish(conn_);
        conn_ = PQconnectdb(url_.conninfo.c_str());
        if (PQstatus(conn_) != CONNECTION_OK) {
            std::string msg = trimmed(PQerrorMessage(conn_));
            PQfinish(conn_);
            conn_ = nullptr;
            fail_connect(msg);
        }
        PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);  // IF NOT EXISTS notices
        ++epoch_;
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
    uint64_t epoch_ = 0;       //!< connections made: statements prepared on an earlier one are gone
    uint64_t statements_ = 0;  //!< names server-side statements
};

PgCursor::PgCursor(PgBackend& backend, std::string_view sql, bool persistent)
    : backend_(backend) {
    sql_ = number_placeholders(sql, params_);
    if (persistent) name_ = "k" + std::to_string(backend_.next_statement());
    values_.resize(size_t(params_));
    null_.assign(size_t(params_), true);
    formats_.assign(size_t(params_), 0);
}

PgCursor::~PgCursor() {
    if (result_) PQclear(result_);
    // Statements are per connection: free this one if its connection is still the live one.
    if (!name_.empty() && prepared_on_ == backend_.epoch() && backend_.conn() &&
        PQstatus(backend_.conn()) == CONNECTION_OK && PQtransactionStatus(backend_.conn()) != PQTRANS_INERROR) {
        PGresult* r = PQexec(backend_.conn(), ("DEALLOCATE " + name_).c_str());
        PQclear(r);
    }
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

bool PgCursor::step() {
    if (!result_) {
        std::vector<const char*> values(static_cast<size_t>(params_));
        std::vector<int> lengths(static_cast<size_t>(params_));
        for (size_t i = 0; i < size_t(params_); ++i) {
            values[i] = null_[i] ? nullptr : values_[i].c_str();
            lengths[i] = int(values_[i].size());
        }
        backend_.ensure_connected();
        PGconn* conn = backend_.conn();
        PGresult* r;
        if (name_.empty()) {
            r = PQexecParams(conn, sql_.c_str(), params_, nullptr, values.data(), lengths.data(), formats_.data(), 0);
        } else {
            if (prepared_on_ != backend_.epoch()) {
                PGresult* p = PQprepare(conn, name_.c_str(), sql_.c_str(), params_, nullptr);
                backend_.check(p, sql_);
                PQclear(p);
                prepared_on_ = backend_.epoch();
            }
            r = PQexecPrepared(conn, name_.c_str(), params_, values.data(), lengths.data(), formats_.data(), 0);
        }
        backend_.check(r, sql_);
        result_ = r;
        row_ = -1;
        const char* tuples = PQcmdTuples(r);
        affected_ = tuples && *tuples ? std::strtoll(tuples, nullptr, 10) : 0;
    }
    return ++row_ < PQntuples(result_);
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

bool is_postgres_url(std::string_view location) {
    return location.starts_with("postgresql://") || location.starts_with("postgres://");
}

} // namespace keel::storage

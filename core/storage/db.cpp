// core/storage/db.cpp
#include "keel/storage/db.hpp"

#include "backends.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/sql_dialect.hpp"

#include <algorithm>

namespace keel::storage {

// ---------------------------------------------------------------------------------------- Stmt

Stmt::~Stmt() {
    if (!cursor_) return;
    if (cached_) {
        cursor_->reset();
        --cached_->users;
    } else {
        delete cursor_;
    }
}

int64_t Stmt::insert_id() {
    if (!step() || is_null(0)) throw_error(ErrorKind::Internal, "an INSERT ... RETURNING id returned no id");
    int64_t id = int64(0);
    run();  // to its end: a statement left mid-way would hold SQLite's COMMIT back
    return id;
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

// ---------------------------------------------------------------------------------------- Conn

namespace detail {

//! One connection of the pool with what belongs to it rather than to the Db: prepared statements
//! live and die with their connection, and so does an open transaction's after-commit work.
struct Conn {
    explicit Conn(std::unique_ptr<Backend> b) : backend(std::move(b)) {}
    ~Conn() {
        // Statements belong to the connection: drop them before it closes (the server frees them
        // with the session, so not one by one).
        if (backend) backend->closing();
        cache.clear();
        lru.clear();
        backend.reset();
    }

    Stmt prepare(std::string_view sql, Lease lease);
    void evict_unused();

    std::unique_ptr<Backend> backend;
    std::list<CachedStmt> lru;  //!< most recently used first
    std::unordered_map<std::string_view, std::list<CachedStmt>::iterator> cache;  //!< keys view lru's sql
    std::vector<std::function<void()>> after_commit;  //!< run by the outermost Transaction's commit
    //! Module versions migrated inside the open transaction: other connections cannot see those
    //! tables before it commits, so they reach the Db's shared map only then.
    std::unordered_map<std::string, size_t> applied;
    bool announce = true;  //!< whether the open transaction's commit moves other connections' tokens
    std::chrono::steady_clock::time_point idle_since;
};

Stmt Conn::prepare(std::string_view sql, Lease lease) {
    if (auto it = cache.find(sql); it != cache.end()) {
        auto node = it->second;
        if (node->users == 0) {
            lru.splice(lru.begin(), lru, node);
            ++node->users;
            return Stmt(node->cursor.get(), &*node, std::move(lease));
        }
        // The same SQL is being stepped further up the stack: resetting it here would derail that
        // caller, so this one gets a private statement.
        return Stmt(backend->prepare(sql, false).release(), nullptr, std::move(lease));
    }
    auto cursor = backend->prepare(sql, true);
    lru.push_front({std::string(sql), std::move(cursor), 1});
    cache.emplace(lru.front().sql, lru.begin());
    evict_unused();
    return Stmt(lru.front().cursor.get(), &lru.front(), std::move(lease));
}

void Conn::evict_unused() {
    // Oldest first; a statement someone still holds stays until a later call finds it free.
    for (auto it = lru.end(); lru.size() > Db::kStatementCacheSize && it != lru.begin();) {
        --it;
        if (it->users > 0) continue;
        cache.erase(std::string_view(it->sql));
        it = lru.erase(it);
    }
}

} // namespace detail

// --------------------------------------------------------------------------------------- Lease

namespace {

// The connections the calling thread holds, one per Db, with how deeply (lock() is re-entrant).
// An entry exists only while its lease does, so it never outlives its Db.
struct Held {
    const Db* db;
    detail::Conn* conn;
    int depth;
};
thread_local std::vector<Held> t_held;

Held* find_held(const Db* db) {
    for (auto& h : t_held)
        if (h.db == db) return &h;
    return nullptr;
}

// Takes `c` out of `conns` (to be closed by the caller, outside the pool's mutex).
std::unique_ptr<detail::Conn> take(std::vector<std::unique_ptr<detail::Conn>>& conns, detail::Conn* c) {
    auto it = std::find_if(conns.begin(), conns.end(), [&](const auto& p) { return p.get() == c; });
    if (it == conns.end()) return nullptr;
    auto out = std::move(*it);
    conns.erase(it);
    return out;
}

} // namespace

Lease& Lease::operator=(Lease&& other) noexcept {
    if (this != &other) {
        unlock();
        db_ = other.db_;
        other.db_ = nullptr;
    }
    return *this;
}

void Lease::unlock() noexcept {
    if (!db_) return;
    Db* db = db_;
    db_ = nullptr;
    db->release();
}

// ------------------------------------------------------------------------------------------ Db

Db::Db(const std::string& path) : Db(open_sqlite(path)) {}

Db::Db(std::unique_ptr<Backend> backend) {
    location_ = backend->location();
    dialect_ = backend->dialect();
    conns_.push_back(std::make_unique<detail::Conn>(std::move(backend)));
    idle_.push_back(conns_.back().get());
    open_ = 1;
}

Db::Db(std::function<std::unique_ptr<Backend>()> connect, PoolOptions options)
    : connect_(std::move(connect)), options_(options) {
    if (options_.size == 0) options_.size = 1;
    auto first = connect_();
    location_ = first->location();
    dialect_ = first->dialect();
    conns_.push_back(std::make_unique<detail::Conn>(std::move(first)));
    conns_.back()->idle_since = std::chrono::steady_clock::now();
    idle_.push_back(conns_.back().get());
    open_ = 1;
}

Db::~Db() {
    idle_.clear();
    conns_.clear();
}

detail::Conn* Db::held() {
    if (!connect_) return owner_.load(std::memory_order_relaxed) == std::this_thread::get_id() ? conns_[0].get() : nullptr;
    Held* h = find_held(this);
    return h ? h->conn : nullptr;
}

Lease Db::lock() {
    if (!connect_) {
        // Only this thread can have stored its own id, so a relaxed read of the owner suffices.
        const auto me = std::this_thread::get_id();
        if (owner_.load(std::memory_order_relaxed) == me) {
            ++depth_;
            return Lease(this);
        }
        single_mu_.lock();
        owner_.store(me, std::memory_order_relaxed);
        depth_ = 1;
        return Lease(this);
    }
    if (Held* h = find_held(this)) {
        ++h->depth;
        return Lease(this);
    }
    acquire(true);
    return Lease(this);
}

detail::Conn* Db::acquire(bool wait) {
    if (!connect_) {  // recent_change_token's try (lock() takes the single connection itself)
        if (!single_mu_.try_lock()) return nullptr;
        owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
        depth_ = 1;
        return conns_[0].get();
    }
    std::vector<std::unique_ptr<detail::Conn>> expired;  // closed after the mutex is released
    detail::Conn* conn = nullptr;
    {
        std::unique_lock lk(pool_mu_);
        take_expired(expired);
        const auto deadline = std::chrono::steady_clock::now() + options_.wait;
        for (;;) {
            if (!idle_.empty()) {
                conn = idle_.back();  // the most recently used: the others age out when load drops
                idle_.pop_back();
                break;
            }
            if (open_ < options_.size) {
                ++open_;  // this slot is ours; the connection opens below, without the mutex
                break;
            }
            if (!wait) return nullptr;
            if (options_.wait.count() == 0) {
                pool_cv_.wait(lk);
            } else if (pool_cv_.wait_until(lk, deadline) == std::cv_status::timeout && idle_.empty() &&
                       open_ >= options_.size) {
                throw_error(ErrorKind::Unavailable,
                            "all {} connections of the pool to {} stayed in use for {} ms: retry, shorten long "
                            "transactions, or raise the pool size (?pool_size=N in the workspace URL; its server "
                            "must allow that many connections per process)",
                            options_.size, location_, options_.wait.count());
            }
        }
    }
    if (!conn) conn = open_connection();
    t_held.push_back({this, conn, 1});
    return conn;
}

detail::Conn* Db::open_connection() {
    std::unique_ptr<detail::Conn> conn;
    try {
        conn = std::make_unique<detail::Conn>(connect_());
    } catch (...) {
        {
            std::lock_guard lk(pool_mu_);
            --open_;
        }
        pool_cv_.notify_one();
        throw;
    }
    detail::Conn* c = conn.get();
    std::lock_guard lk(pool_mu_);
    conns_.push_back(std::move(conn));
    return c;
}

void Db::release() noexcept {
    if (!connect_) {
        if (--depth_ > 0) return;
        owner_.store(std::thread::id(), std::memory_order_relaxed);
        single_mu_.unlock();
        return;
    }
    Held* h = find_held(this);
    if (!h || --h->depth > 0) return;
    detail::Conn* conn = h->conn;
    *h = t_held.back();
    t_held.pop_back();
    std::vector<std::unique_ptr<detail::Conn>> closing;  // closed after the mutex is released
    bool dropped = false;
    {
        std::lock_guard lk(pool_mu_);
        if (conn->backend->broken()) {
            // Lost (a server restart): the next lease opens a new connection. The idle ones most
            // likely went with it; reopening them costs less than one more failed call each.
            dropped = true;
            closing.push_back(take(conns_, conn));
            for (detail::Conn* idle : idle_) closing.push_back(take(conns_, idle));
            open_ -= 1 + idle_.size();
            idle_.clear();
        } else {
            conn->idle_since = std::chrono::steady_clock::now();
            idle_.push_back(conn);
        }
        take_expired(closing);
    }
    if (dropped) pool_cv_.notify_all();
    else pool_cv_.notify_one();
}

void Db::take_expired(std::vector<std::unique_ptr<detail::Conn>>& out) {
    if (idle_.size() <= 1) return;
    const auto now = std::chrono::steady_clock::now();
    // idle_ is oldest first: the front has waited longest.
    while (idle_.size() > 1 && now - idle_.front()->idle_since >= options_.idle) {
        out.push_back(take(conns_, idle_.front()));
        idle_.erase(idle_.begin());
        --open_;
    }
}

size_t Db::open_connections() {
    std::lock_guard lk(pool_mu_);
    return conns_.size();
}

Stmt Db::prepare(std::string_view sql) {
    if (detail::Conn* c = held()) return c->prepare(sql, {});
    Lease lease = lock();
    return held()->prepare(sql, std::move(lease));
}

size_t Db::cached_statements() {
    auto guard = lock();
    return held()->lru.size();
}

void Db::exec(std::string_view sql) {
    auto guard = lock();
    held()->backend->exec(sql);
}

Backend& Db::backend() {
    if (detail::Conn* c = held()) return *c->backend;
    throw_error(ErrorKind::Internal, "Db::backend() was called by a thread that holds no connection: take Db::lock() first");
}

uint64_t Db::change_token() {
    auto guard = lock();
    return (held()->backend->others_change_token() << 32) ^ local_commits_.load();
}

bool Db::in_transaction() {
    // A thread without a lease has no transaction: one ends before its connection is given back.
    detail::Conn* c = held();
    return c && c->backend->in_transaction();
}

namespace {
// How stale recent_change_token() may answer while other threads hold every connection.
constexpr std::chrono::microseconds kBusyTokenAge{100'000};
} // namespace

uint64_t Db::recent_change_token(std::chrono::microseconds max_age) {
    const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now().time_since_epoch()).count();
    const uint64_t local = local_commits_.load(std::memory_order_acquire);
    if (local == recent_local_.load(std::memory_order_acquire) &&
        now - recent_at_us_.load(std::memory_order_acquire) < max_age.count())
        return recent_token_.load(std::memory_order_acquire);
    // A write holding the connections (an assignment log flush) would make every request due for a
    // check queue behind it: while the last token is recent, answer with it and check after.
    Lease busy;
    if (held()) busy = lock();
    else if (acquire(false)) busy = Lease(this);
    if (!busy && now - recent_at_us_.load(std::memory_order_acquire) < kBusyTokenAge.count())
        return recent_token_.load(std::memory_order_acquire);
    // Racing readers may store in either order: a token read earlier can stand for at most max_age.
    const uint64_t token = change_token();
    recent_token_.store(token, std::memory_order_release);
    recent_at_us_.store(now, std::memory_order_release);
    recent_local_.store(local, std::memory_order_release);
    return token;
}

namespace {

std::string newer_message(const std::string& where, const std::string& module, size_t version, size_t known) {
    return fmt::format("workspace '{}' has '{}' tables at schema version {}, but this Keel knows only up to version "
                       "{}: upgrade Keel (pip install -U keel) to open it",
                       where, module, version, known);
}

} // namespace

void Db::ensure_schema(const ModuleSchema& schema) {
    {
        std::lock_guard lk(schema_mu_);
        if (auto it = schema_versions_.find(schema.module);
            it != schema_versions_.end() && it->second == schema.steps.size())
            return;
    }
    auto guard = lock();
    detail::Conn& conn = *held();
    if (auto it = conn.applied.find(schema.module); it != conn.applied.end() && it->second == schema.steps.size())
        return;
    // Inside a caller's transaction what this reads or applies is not committed yet: other
    // connections learn of it when that transaction commits.
    const bool outermost = !conn.backend->in_transaction();
    Transaction tx(*this);
    exec("CREATE TABLE IF NOT EXISTS keel_schema (module TEXT PRIMARY KEY, version INTEGER NOT NULL)");
    size_t version = 0;
    {
        auto st = prepare("SELECT version FROM keel_schema WHERE module = ?");
        st.bind(1, schema.module);
        if (st.step()) version = size_t(st.int64(0));
    }
    if (version > schema.steps.size())
        throw_error(ErrorKind::Corrupt, "{}", newer_message(path(), schema.module, version, schema.steps.size()));
    for (size_t i = version; i < schema.steps.size(); ++i) exec(translate_schema(schema.steps[i], dialect()));
    if (version < schema.steps.size()) {
        auto st = prepare("INSERT INTO keel_schema(module, version) VALUES(?, ?) "
                          "ON CONFLICT(module) DO UPDATE SET version = excluded.version");
        st.bind_all(schema.module, int64_t(schema.steps.size())).run();
    }
    tx.commit();
    if (outermost) {
        std::lock_guard lk(schema_mu_);
        schema_versions_[schema.module] = schema.steps.size();
    } else {
        conn.applied[schema.module] = schema.steps.size();
    }
}

std::vector<SchemaStatus> Db::schema_status(const std::vector<const ModuleSchema*>& schemas) {
    auto guard = lock();
    std::unordered_map<std::string, size_t> recorded;
    std::vector<std::string> order;
    if (has_table("keel_schema")) {
        auto st = prepare("SELECT module, version FROM keel_schema ORDER BY module");
        while (st.step()) {
            order.push_back(st.text(0));
            recorded[order.back()] = size_t(st.int64(1));
        }
    }
    std::vector<SchemaStatus> out;
    for (const ModuleSchema* schema : schemas) {
        SchemaStatus s{schema->module, 0, schema->steps.size(), {}};
        if (auto it = recorded.find(schema->module); it != recorded.end()) {
            s.version = it->second;
            recorded.erase(it);
        }
        for (size_t i = s.version; i < s.known; ++i) s.pending.push_back(translate_schema(schema->steps[i], dialect()));
        out.push_back(std::move(s));
    }
    for (const auto& module : order)
        if (auto it = recorded.find(module); it != recorded.end()) out.push_back({module, it->second, 0, {}});
    return out;
}

std::vector<SchemaStatus> Db::migrate(const std::vector<const ModuleSchema*>& schemas) {
    auto before = schema_status(schemas);
    check_not_newer(before);
    for (const ModuleSchema* schema : schemas) ensure_schema(*schema);
    return before;
}

void Db::check_not_newer(const std::vector<SchemaStatus>& status) {
    for (const auto& s : status)
        if (s.newer() && s.known > 0)
            throw_error(ErrorKind::Corrupt, "{}", newer_message(path(), s.module, s.version, s.known));
}

bool Db::has_table(const std::string& name) {
    auto guard = lock();
    auto st = prepare(dialect() == Dialect::Sqlite
                          ? "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
                          : "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                            "AND table_name = ?");
    st.bind(1, name);
    return st.step();
}

void Db::after_commit(std::function<void()> action) {
    if (detail::Conn* c = held(); c && c->backend->in_transaction()) {
        c->after_commit.push_back(std::move(action));
        return;
    }
    try {
        action();
    } catch (...) {
        // As after a commit: the change has landed.
    }
}

void insert_rows(Db& db, std::string_view head, int columns, size_t rows,
                 const std::function<void(Stmt&, int, size_t)>& bind, std::string_view tail,
                 const std::function<void(Stmt&)>& on_row, const std::function<void(Stmt&, int)>& bind_tail) {
    // 500 rows of up to 60 values stay under SQLite's 32,766 bound values and PostgreSQL's 65,535.
    const size_t most = std::max<size_t>(1, std::min<size_t>(500, size_t(30'000 / std::max(columns, 1))));
    std::string row = "(";
    for (int c = 0; c < columns; ++c) row += c ? ", ?" : "?";
    row += ")";
    size_t done = 0;
    for (size_t size : {most, std::min<size_t>(most, 32), size_t(1)}) {
        if (rows - done < size) continue;
        std::string sql(head);
        for (size_t r = 0; r < size; ++r) sql += (r ? ", " : " ") + row;
        sql += " ";
        sql += tail;
        for (; rows - done >= size; done += size) {
            auto st = db.prepare(sql);  // a cache hit after the first
            for (size_t r = 0; r < size; ++r) bind(st, int(r) * columns + 1, done + r);
            if (bind_tail) bind_tail(st, int(size) * columns + 1);
            if (!on_row) {
                st.queue();
                continue;
            }
            while (st.step()) on_row(st);
        }
    }
}

namespace {

// Names go into SQL unescaped (quoted), so only plain ones: they come from modules, never users.
void check_name(std::string_view what, std::string_view name) {
    bool ok = !name.empty() && !(name[0] >= '0' && name[0] <= '9');
    for (char c : name) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    if (!ok) throw_error(ErrorKind::Internal, "copy_rows: {} '{}' is not a plain lower-case name", what, name);
}

// copy_rows' INSERT path: a row's values become the statement's parameters from `index` on.
class BindWriter final : public RowWriter {
public:
    BindWriter(Stmt& st, int index) : st_(st), index_(index) {}
    int next() const { return index_; }

protected:
    void put_int64(int64_t value) override { st_.bind(index_++, value); }
    void put_double(double value) override { st_.bind(index_++, value); }
    void put_text(std::string_view value) override { st_.bind(index_++, value); }
    void put_null() override { st_.bind(index_++, nullptr); }

private:
    Stmt& st_;
    int index_;
};

} // namespace

void copy_rows(Db& db, std::string_view table, const std::vector<std::string>& columns, size_t rows,
               const RowSource& write) {
    check_name("table", table);
    for (const auto& c : columns) check_name("column", c);
    if (rows == 0) return;
    if (rows >= kCopyMinRows && db.backend().copy_rows(table, columns, rows, write)) return;
    std::string head = fmt::format("INSERT INTO \"{}\"(", table);
    for (size_t c = 0; c < columns.size(); ++c) head += fmt::format("{}\"{}\"", c ? ", " : "", columns[c]);
    head += ") VALUES";
    const int width = int(columns.size());
    insert_rows(db, head, width, rows, [&](Stmt& st, int at, size_t row) {
        BindWriter w(st, at);
        write(w, row);
        if (w.next() != at + width)
            throw_error(ErrorKind::Internal, "copy_rows into '{}': row {} has {} values for {} columns", table, row,
                        w.next() - at, width);
    });
}

void insert_few_rows(Db& db, std::string_view head, std::string_view row, int params, size_t rows,
                     const std::function<void(Stmt&, int, size_t)>& bind, std::string_view tail,
                     const std::function<void(Stmt&, int)>& bind_tail) {
    for (size_t done = 0; done < rows;) {
        const size_t size = std::min(rows - done, kFewRows);
        std::string sql(head);
        for (size_t r = 0; r < size; ++r) (sql += r ? ", " : " ") += row;
        sql += " ";
        sql += tail;
        auto st = db.prepare(sql);
        for (size_t r = 0; r < size; ++r) bind(st, int(r) * params + 1, done + r);
        if (bind_tail) bind_tail(st, int(size) * params + 1);
        st.queue();
        done += size;
    }
}

// --------------------------------------------------------------------------------- Transaction

Transaction::Transaction(Db& db, Announce announce) : db_(db), lock_(db.lock()), conn_(db.held()) {
    if (!conn_->backend->in_transaction()) {
        conn_->backend->begin_write();
        owner_ = true;
        conn_->announce = false;
    }
    conn_->announce = conn_->announce || announce == Announced;
}

Transaction::~Transaction() {
    if (owner_ && !done_) {
        // Migrations applied inside the rolled-back transaction are undone too: check again. Work
        // promised for its commit does not happen.
        conn_->applied.clear();
        conn_->after_commit.clear();
        conn_->backend->rollback();
    }
}

void Transaction::commit() {
    if (owner_ && !done_) {
        conn_->backend->commit(conn_->announce);
        ++db_.local_commits_;
        done_ = true;
        if (!conn_->applied.empty()) {
            std::lock_guard lk(db_.schema_mu_);
            for (auto& [module, version] : conn_->applied) db_.schema_versions_[module] = version;
            conn_->applied.clear();
        }
        auto actions = std::move(conn_->after_commit);
        conn_->after_commit.clear();
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

// core/storage/db.cpp
#include "keel/storage/db.hpp"

#include "backends.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/sql_dialect.hpp"

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

// ------------------------------------------------------------------------------------------ Db

Db::Db(const std::string& path) : Db(open_sqlite(path)) {}

Db::Db(std::unique_ptr<Backend> backend) : backend_(std::move(backend)) {}

Db::~Db() {
    // Statements belong to the connection: drop them before it closes.
    cache_.clear();
    lru_.clear();
    backend_.reset();
}

Stmt Db::prepare(std::string_view sql) {
    if (auto it = cache_.find(sql); it != cache_.end()) {
        auto node = it->second;
        if (node->users == 0) {
            lru_.splice(lru_.begin(), lru_, node);
            ++node->users;
            return Stmt(node->cursor.get(), &*node);
        }
        // The same SQL is being stepped further up the stack: resetting it here would derail that
        // caller, so this one gets a private statement.
        return Stmt(backend_->prepare(sql, false).release(), nullptr);
    }
    auto cursor = backend_->prepare(sql, true);
    lru_.push_front({std::string(sql), std::move(cursor), 1});
    cache_.emplace(lru_.front().sql, lru_.begin());
    evict_unused();
    return Stmt(lru_.front().cursor.get(), &lru_.front());
}

void Db::evict_unused() {
    // Oldest first; a statement someone still holds stays until a later call finds it free.
    for (auto it = lru_.end(); lru_.size() > kStatementCacheSize && it != lru_.begin();) {
        --it;
        if (it->users > 0) continue;
        cache_.erase(std::string_view(it->sql));
        it = lru_.erase(it);
    }
}

void Db::exec(std::string_view sql) { backend_->exec(sql); }

uint64_t Db::change_token() {
    auto guard = lock();
    return (backend_->others_change_token() << 32) ^ local_commits_.load();
}

bool Db::in_transaction() {
    auto guard = lock();
    return backend_->in_transaction();
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

namespace {

std::string newer_message(const std::string& where, const std::string& module, size_t version, size_t known) {
    return fmt::format("workspace '{}' has '{}' tables at schema version {}, but this Keel knows only up to version "
                       "{}: upgrade Keel (pip install -U keel) to open it",
                       where, module, version, known);
}

} // namespace

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
        throw_error(ErrorKind::Corrupt, "{}", newer_message(path(), schema.module, version, schema.steps.size()));
    for (size_t i = version; i < schema.steps.size(); ++i) exec(translate_schema(schema.steps[i], dialect()));
    if (version < schema.steps.size()) {
        auto st = prepare("INSERT INTO keel_schema(module, version) VALUES(?, ?) "
                          "ON CONFLICT(module) DO UPDATE SET version = excluded.version");
        st.bind_all(schema.module, int64_t(schema.steps.size())).run();
    }
    tx.commit();
    schema_versions_[schema.module] = schema.steps.size();
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
    if (backend_->in_transaction()) {
        after_commit_.push_back(std::move(action));
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

Transaction::Transaction(Db& db) : db_(db), lock_(db.lock()) {
    if (!db_.backend_->in_transaction()) {
        db_.backend_->begin_write();
        owner_ = true;
    }
}

Transaction::~Transaction() {
    if (owner_ && !done_) {
        // Migrations applied inside the rolled-back transaction are undone too: check again. Work
        // promised for its commit does not happen.
        db_.schema_versions_.clear();
        db_.after_commit_.clear();
        db_.backend_->rollback();
    }
}

void Transaction::commit() {
    if (owner_ && !done_) {
        db_.backend_->commit();
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

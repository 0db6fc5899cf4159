// core/tracking/tracker.cpp
#include "keel/tracking/tracker.hpp"

#include "artifact_paths.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/sql_dialect.hpp"
#include "keel/storage/workspace.hpp"
#include "process.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <unordered_map>

namespace fs = std::filesystem;

namespace keel::tracking {

namespace {

// Runs are referenced by an integer row id inside the store (compact keys for the big tables) and
// by their 32-hex id outside it. Latest metric values live apart from the history so that search
// reads one row per (run, key) however long the history is.
const storage::ModuleSchema kSchema{"tracking", {R"(
CREATE TABLE tracking_experiments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL);
CREATE TABLE tracking_runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    experiment_id INTEGER NOT NULL REFERENCES tracking_experiments(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time INTEGER NOT NULL,
    end_time INTEGER,
    "user" TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    git_commit TEXT NOT NULL DEFAULT '',
    git_dirty INTEGER,
    parent_id INTEGER REFERENCES tracking_runs(id),
    error TEXT);
CREATE INDEX tracking_runs_experiment ON tracking_runs(experiment_id, start_time);
CREATE INDEX tracking_runs_start ON tracking_runs(start_time);
CREATE INDEX tracking_runs_parent ON tracking_runs(parent_id);
CREATE TABLE tracking_params (
    run INTEGER NOT NULL REFERENCES tracking_runs(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run, key)) WITHOUT ROWID;
CREATE INDEX tracking_params_key ON tracking_params(key, value);
CREATE TABLE tracking_tags (
    run INTEGER NOT NULL REFERENCES tracking_runs(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run, key)) WITHOUT ROWID;
CREATE INDEX tracking_tags_key ON tracking_tags(key, value);
CREATE TABLE tracking_metrics (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES tracking_runs(id),
    key TEXT NOT NULL,
    step INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    value REAL);
CREATE INDEX tracking_metrics_history ON tracking_metrics(run, key, step);
CREATE TABLE tracking_latest_metrics (
    run INTEGER NOT NULL REFERENCES tracking_runs(id),
    key TEXT NOT NULL,
    step INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (run, key)) WITHOUT ROWID;
CREATE INDEX tracking_latest_metrics_key ON tracking_latest_metrics(key, value);
CREATE TABLE tracking_artifacts (
    run INTEGER NOT NULL REFERENCES tracking_runs(id),
    path TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run, path)) WITHOUT ROWID;
)",
// 2: the history becomes one clustered b-tree keyed (run, key, step, timestamp, seq) instead of a
// rowid table plus an index: one page less to write per logged point. `seq` orders points logged
// at the same step and millisecond (insertion order within a process).
R"(
CREATE TABLE tracking_metric_points (
    run INTEGER NOT NULL REFERENCES tracking_runs(id),
    key TEXT NOT NULL,
    step INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (run, key, step, timestamp, seq)) WITHOUT ROWID;
INSERT INTO tracking_metric_points(run, key, step, timestamp, seq, value)
    SELECT run, key, step, timestamp, id, value FROM tracking_metrics;
DROP TABLE tracking_metrics;
)",
// 3: the process running each run (host, pid, its start time, a heartbeat), so runs whose process
// died can be found and closed (Tracker::stale_runs, `keel runs close-stale`).
R"(
CREATE TABLE tracking_run_processes (
    run INTEGER PRIMARY KEY REFERENCES tracking_runs(id),
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_start INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL);
)",
// 4: the history without its foreign key on the run. Every writer resolves the run in its own
// transaction (run_pk) and runs are never removed, so the key guarded nothing, while PostgreSQL ran
// it as a query per point: half of a bulk load's time (100,000 points by COPY: 1.2-1.6 s with it,
// 0.64-0.80 s without, same server, alternating). The latest values keep theirs (a row per key).
// SQLite rebuilds the table; PostgreSQL drops the constraint in place (no rewrite of a team's whole
// history under the migration's lock).
R"(
CREATE TABLE tracking_metric_points_v4 (
    run INTEGER NOT NULL,
    key TEXT NOT NULL,
    step INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (run, key, step, timestamp, seq)) WITHOUT ROWID;
INSERT INTO tracking_metric_points_v4(run, key, step, timestamp, seq, value)
    SELECT run, key, step, timestamp, seq, value FROM tracking_metric_points;
DROP TABLE tracking_metric_points;
ALTER TABLE tracking_metric_points_v4 RENAME TO tracking_metric_points;
-- postgresql:
ALTER TABLE tracking_metric_points DROP CONSTRAINT IF EXISTS tracking_metric_points_run_fkey;
)",
// 5: params, tags and latest metrics carry their run's experiment, indexed (experiment, key, value):
// a search within an experiment reads that experiment's rows, not every run's in the workspace (an
// experiment of 10,000 runs beside one of 100,000 searched in 24 ms before, 7 ms after, PostgreSQL).
// The (key, value) indexes stay for searches over every experiment. Runs never change experiment.
// On PostgreSQL the column has no default: a writer that forgot it fails instead of hiding its rows.
R"(
ALTER TABLE tracking_params ADD COLUMN experiment INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tracking_tags ADD COLUMN experiment INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tracking_latest_metrics ADD COLUMN experiment INTEGER NOT NULL DEFAULT 0;
UPDATE tracking_params SET experiment = (SELECT r.experiment_id FROM tracking_runs r WHERE r.id = run);
UPDATE tracking_tags SET experiment = (SELECT r.experiment_id FROM tracking_runs r WHERE r.id = run);
UPDATE tracking_latest_metrics SET experiment = (SELECT r.experiment_id FROM tracking_runs r WHERE r.id = run);
CREATE INDEX tracking_params_experiment ON tracking_params(experiment, key, value);
CREATE INDEX tracking_tags_experiment ON tracking_tags(experiment, key, value);
CREATE INDEX tracking_latest_metrics_experiment ON tracking_latest_metrics(experiment, key, value);
-- postgresql:
ALTER TABLE tracking_params ADD COLUMN experiment INTEGER;
ALTER TABLE tracking_tags ADD COLUMN experiment INTEGER;
ALTER TABLE tracking_latest_metrics ADD COLUMN experiment INTEGER;
UPDATE tracking_params t SET experiment = r.experiment_id FROM tracking_runs r WHERE r.id = t.run;
UPDATE tracking_tags t SET experiment = r.experiment_id FROM tracking_runs r WHERE r.id = t.run;
UPDATE tracking_latest_metrics t SET experiment = r.experiment_id FROM tracking_runs r WHERE r.id = t.run;
ALTER TABLE tracking_params ALTER COLUMN experiment SET NOT NULL;
ALTER TABLE tracking_tags ALTER COLUMN experiment SET NOT NULL;
ALTER TABLE tracking_latest_metrics ALTER COLUMN experiment SET NOT NULL;
CREATE INDEX tracking_params_experiment ON tracking_params(experiment, key, value);
CREATE INDEX tracking_tags_experiment ON tracking_tags(experiment, key, value);
CREATE INDEX tracking_latest_metrics_experiment ON tracking_latest_metrics(experiment, key, value);
)"}};

// A per-process, strictly increasing sequence for metric points (nanoseconds since the epoch, bumped
// past the last one handed out), so points logged at the same step and millisecond keep their order.
int64_t next_seq() {
    static std::atomic<int64_t> last{0};
    int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    int64_t prev = last.load(std::memory_order_relaxed);
    int64_t next;
    do {
        next = std::max(now, prev + 1);
    } while (!last.compare_exchange_weak(prev, next, std::memory_order_relaxed));
    return next;
}

// log_runs refreshes the planner's statistics after a batch of at least this many runs.
constexpr size_t kAnalyzeAfterRuns = 5'000;

const std::vector<std::string> kPointColumns{"run", "key", "step", "timestamp", "seq", "value"};
constexpr const char* kInsertPoint =
    "INSERT INTO tracking_metric_points(run, key, step, timestamp, seq, value) VALUES(?, ?, ?, ?, ?, ?)";
// MLflow's rule for the latest value: the highest step wins, then the latest timestamp.
constexpr const char* kUpsertLatest =
    "INSERT INTO tracking_latest_metrics(run, experiment, key, step, timestamp, value) VALUES(?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(run, key) DO UPDATE SET step = excluded.step, timestamp = excluded.timestamp, "
    "value = excluded.value WHERE excluded.step > tracking_latest_metrics.step OR "
    "(excluded.step = tracking_latest_metrics.step AND excluded.timestamp >= tracking_latest_metrics.timestamp)";

constexpr const char* kSelectInfo =
    "SELECT r.run_id, r.name, e.name, r.status, r.start_time, r.end_time, r.\"user\", r.source, r.git_commit, "
    "r.git_dirty, p.run_id, r.error, r.id FROM tracking_runs r "
    "JOIN tracking_experiments e ON e.id = r.experiment_id "
    "LEFT JOIN tracking_runs p ON p.id = r.parent_id ";

RunInfo read_info(storage::Stmt& st) {
    RunInfo info;
    info.id = st.text(0);
    info.name = st.text(1);
    info.experiment = st.text(2);
    info.status = st.text(3);
    info.start_time = st.int64(4);
    info.end_time = st.opt_int64(5);
    info.user = st.text(6);
    info.source = st.text(7);
    info.git_commit = st.text(8);
    if (auto d = st.opt_int64(9)) info.git_dirty = *d != 0;
    info.parent_id = st.opt_text(10);
    info.error = st.opt_text(11);
    return info;
}

// NaN is stored as NULL (SQLite turns a bound NaN into NULL anyway); NULL reads back as NaN.
void bind_value(storage::Stmt& st, int index, double value) {
    if (std::isnan(value)) st.bind(index, nullptr);
    else st.bind(index, value);
}
void add_value(storage::RowWriter& w, double value) {
    if (std::isnan(value)) w.add(nullptr);
    else w.add(value);
}
double read_value(const storage::Stmt& st, int col) {
    return st.is_null(col) ? std::nan("") : st.real(col);
}

void check_key(std::string_view what, std::string_view key) {
    if (key.empty()) throw_error(ErrorKind::InvalidArgument, "{} key is empty: give it a name", what);
    if (key.size() > 250)
        throw_error(ErrorKind::InvalidArgument, "{} key '{}...' is {} characters long: the limit is 250", what,
                    key.substr(0, 40), key.size());
}

// A readable default name for a run, e.g. "brisk-otter-42".
std::string generated_name() {
    static constexpr const char* kAdj[] = {"brisk", "calm", "bold", "keen", "swift", "quiet", "bright", "lucky",
                                           "eager", "gentle", "merry", "sly", "proud", "witty", "sunny", "wild"};
    static constexpr const char* kNoun[] = {"otter", "falcon", "lynx", "heron", "badger", "whale", "fox", "owl",
                                            "panda", "raven", "tiger", "koala", "bison", "crane", "gecko", "moth"};
    thread_local std::mt19937 gen{std::random_device{}()};
    return fmt::format("{}-{}-{}", kAdj[gen() % 16], kNoun[gen() % 16], gen() % 1000);
}

} // namespace

const storage::ModuleSchema& Tracker::schema() { return kSchema; }

const std::vector<storage::ObjectRefs>& Tracker::object_refs() {
    static const std::vector<storage::ObjectRefs> refs{
        {"tracking_artifacts", storage::ObjectRefs::Kind::ArtifactDigest, "SELECT DISTINCT digest FROM tracking_artifacts"}};
    return refs;
}

Tracker::Tracker(storage::Workspace& ws) : ws_(ws) { ws_.db().ensure_schema(kSchema); }

int64_t Tracker::experiment_pk(std::string_view name, bool create) {
    {
        std::lock_guard lk(run_keys_mu_);
        if (auto it = experiment_pks_.find(std::string(name)); it != experiment_pks_.end()) return it->second;
    }
    auto& db = ws_.db();
    {
        auto st = db.prepare("SELECT id FROM tracking_experiments WHERE name = ?");
        st.bind(1, name);
        if (st.step()) return st.int64(0);
    }
    if (!create) throw_error(ErrorKind::NotFound, "experiment '{}' not found: start a run in it to create it", name);
    if (name.empty()) throw_error(ErrorKind::InvalidArgument, "experiment name is empty: give the experiment a name");
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    db.prepare("INSERT INTO tracking_experiments(name, created_at, created_by) VALUES(?, ?, ?) "
               "ON CONFLICT(name) DO NOTHING")
        .bind_all(name, now_ms(), ws_.user())
        .run();
    lineage::Graph(ws_).upsert_node("experiment:" + std::string(name), {.owner = ws_.user()});
    auto st = db.prepare("SELECT id FROM tracking_experiments WHERE name = ?");
    st.bind(1, name);
    st.step();
    int64_t id = st.int64(0);
    tx.commit();
    return id;
}

void Tracker::ensure_experiment(std::string_view name) {
    auto guard = ws_.db().lock();
    experiment_pk(name, true);
}

std::vector<Experiment> Tracker::experiments() {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT e.name, e.created_at, e.created_by, "
                         "(SELECT count(*) FROM tracking_runs r WHERE r.experiment_id = e.id) "
                         "FROM tracking_experiments e ORDER BY e.id");
    std::vector<Experiment> out;
    while (st.step()) out.push_back({st.text(0), st.int64(1), st.text(2), st.int64(3)});
    return out;
}

std::string Tracker::run_exists_sql(int param) {
    return fmt::format("EXISTS (SELECT 1 FROM tracking_runs WHERE run_id = ?{})", param);
}

Tracker::RunKey Tracker::run_key(std::string_view run_id) {
    std::string key(run_id);
    {
        std::lock_guard lk(run_keys_mu_);
        if (auto it = run_keys_.find(key); it != run_keys_.end()) return it->second;
    }
    auto st = ws_.db().prepare("SELECT id, experiment_id FROM tracking_runs WHERE run_id = ?");
    st.bind(1, run_id);
    if (!st.step())
        throw_error(ErrorKind::NotFound, "run '{}' not found: check the id (ws.runs.search() lists runs)", run_id);
    RunKey found{st.int64(0), st.int64(1)};
    std::lock_guard lk(run_keys_mu_);
    run_keys_.emplace(std::move(key), found);
    return found;
}

RunInfo Tracker::start_run(const NewRun& spec) {
    auto& db = ws_.db();
    // Ids are remembered only when this call's transaction is the outermost: then they are committed
    // when it returns (an outer one may still roll back), and runs and experiments are never removed.
    const bool nested = db.in_transaction();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    int64_t exp = experiment_pk(spec.experiment, true);
    std::optional<int64_t> parent;
    if (spec.parent_id) parent = run_pk(*spec.parent_id);
    std::string id = random_hex_id();
    std::string name = spec.name.empty() ? generated_name() : spec.name;
    int64_t start = spec.start_time.value_or(now_ms());
    // Everything goes out at once and the transaction waits only at commit: the new row's key is
    // read after it, and the rows that need it name the run by its id.
    auto insert = db.prepare("INSERT INTO tracking_runs(run_id, experiment_id, name, status, start_time, \"user\", "
                             "source, git_commit, git_dirty, parent_id) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id");
    insert.bind_all(id, exp, name, kRunning, start, ws_.user(), spec.source, spec.git_commit,
                    spec.git_dirty ? std::optional<int64_t>(*spec.git_dirty) : std::nullopt, parent);
    insert.defer();
    for (const auto& [k, v] : spec.tags) {
        check_key("tag", k);
        db.prepare("INSERT INTO tracking_tags(run, experiment, key, value) SELECT id, experiment_id, ?, ? FROM "
                   "tracking_runs WHERE run_id = ?")
            .bind_all(k, v, id)
            .queue();
    }
    RunProcess process = spec.process.value_or(RunProcess{});
    if (!spec.process) {
        auto self = detail::this_process();
        process = RunProcess{self.host, self.pid, self.start, start};
    }
    if (!process.host.empty())
        db.prepare("INSERT INTO tracking_run_processes(run, host, pid, process_start, heartbeat_at) "
                   "SELECT id, ?, ?, ?, ? FROM tracking_runs WHERE run_id = ?")
            .bind_all(process.host, process.pid, process.process_start,
                      process.heartbeat_at ? process.heartbeat_at : start, id)
            .queue();
    std::vector<lineage::EdgeRef> edges{{"experiment:" + spec.experiment, "contains", "run:" + id}};
    if (spec.parent_id) edges.push_back({"run:" + *spec.parent_id, "contains", "run:" + id});
    lineage::Graph(ws_).record({}, edges);
    tx.commit();
    const int64_t pk = insert.insert_id();
    if (!nested) {
        std::lock_guard lk(run_keys_mu_);
        run_keys_.emplace(id, RunKey{pk, exp});
        experiment_pks_.emplace(spec.experiment, exp);
    }
    RunInfo info;
    info.id = id;
    info.name = name;
    info.experiment = spec.experiment;
    info.status = std::string(kRunning);
    info.start_time = start;
    info.user = ws_.user();
    info.source = spec.source;
    info.git_commit = spec.git_commit;
    info.git_dirty = spec.git_dirty;
    info.parent_id = spec.parent_id;
    return info;
}

std::vector<std::string> Tracker::log_runs(std::string_view experiment, const RunBatch& batch) {
    const size_t n = batch.names.size();
    if (batch.status != kFinished && batch.status != kFailed && batch.status != kKilled)
        throw_error(ErrorKind::InvalidArgument, "cannot log runs with status '{}': use FINISHED, FAILED or KILLED",
                    batch.status);
    auto check_column = [&](std::string_view what, const std::string& key, size_t size) {
        check_key(what, key);
        if (size != n)
            throw_error(ErrorKind::InvalidArgument,
                        "{} '{}' has {} values for {} runs: give one value per run (in the order of names)", what, key,
                        size, n);
    };
    for (const auto& [k, v] : batch.params) check_column("param", k, v.size());
    for (const auto& [k, v] : batch.tags) check_column("tag", k, v.size());
    for (const auto& [k, v] : batch.metrics) check_column("metric", k, v.size());
    std::vector<std::string> ids(n), names(n);
    for (size_t i = 0; i < n; ++i) {
        ids[i] = random_hex_id();
        names[i] = batch.names[i].empty() ? generated_name() : batch.names[i];
    }
    if (n == 0) return ids;
    auto& db = ws_.db();
    const int64_t start = batch.start_time.value_or(now_ms()), end = batch.end_time.value_or(now_ms());
    const bool nested = db.in_transaction();  // as in start_run: remember ids only once committed
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    const int64_t exp = experiment_pk(experiment, true);
    // The runs first, reading back each one's row id (by run id: RETURNING's order is not promised).
    std::unordered_map<std::string_view, size_t> index;
    for (size_t i = 0; i < n; ++i) index.emplace(ids[i], i);
    std::vector<int64_t> pks(n, 0);
    storage::insert_rows(
        db, "INSERT INTO tracking_runs(run_id, experiment_id, name, status, start_time, end_time, \"user\") VALUES", 7,
        n,
        [&](storage::Stmt& st, int at, size_t i) {
            st.bind(at, ids[i]).bind(at + 1, exp).bind(at + 2, names[i]).bind(at + 3, batch.status)
                .bind(at + 4, start).bind(at + 5, end).bind(at + 6, ws_.user());
        },
        "RETURNING id, run_id", [&](storage::Stmt& st) { pks[index.at(st.text(1))] = st.int64(0); });
    // Every other row is new (the runs are): bulk loads, COPY on PostgreSQL for a big batch.
    auto pairs = [&](const char* table, const auto& columns) {
        for (const auto& column : columns)  // (not a structured binding: clang 14 cannot capture those)
            storage::copy_rows(db, table, {"run", "experiment", "key", "value"}, n,
                               [&](storage::RowWriter& w, size_t i) {
                                   w.add(pks[i]).add(exp).add(column.first).add(column.second[i]);
                               });
    };
    pairs("tracking_params", batch.params);
    pairs("tracking_tags", batch.tags);
    for (const auto& metric : batch.metrics) {
        const auto& key = metric.first;
        const auto& values = metric.second;
        storage::copy_rows(db, "tracking_metric_points", kPointColumns, n, [&](storage::RowWriter& w, size_t i) {
            w.add(pks[i]).add(key).add(batch.step).add(end).add(next_seq());
            add_value(w, values[i]);
        });
        storage::copy_rows(db, "tracking_latest_metrics", {"run", "experiment", "key", "step", "timestamp", "value"},
                           n, [&](storage::RowWriter& w, size_t i) {
                               w.add(pks[i]).add(exp).add(key).add(batch.step).add(end);
                               add_value(w, values[i]);
                           });
    }
    std::vector<std::string> refs;
    refs.reserve(n);
    for (const auto& id : ids) refs.push_back("run:" + id);
    lineage::Graph(ws_).add_edges("experiment:" + std::string(experiment), "contains", refs);
    tx.commit();
    if (!nested) {
        std::lock_guard lk(run_keys_mu_);
        for (size_t i = 0; i < n; ++i) run_keys_.emplace(ids[i], RunKey{pks[i], exp});
        experiment_pks_.emplace(experiment, exp);
    }
    // A big import changes the tables faster than the server's own statistics follow: refresh them
    // so that the next search is planned for the tables as they now are. Outside the transaction,
    // and only when the batch alone is big enough to mislead the planner.
    if (n >= kAnalyzeAfterRuns && !db.backend().in_transaction())
        if (auto sql = storage::analyze_tables(db.dialect(), {"tracking_runs", "tracking_params", "tracking_tags",
                                                              "tracking_latest_metrics", "lineage_nodes",
                                                              "lineage_edges"});
            !sql.empty()) {
            auto guard = db.lock();
            db.exec(sql);
        }
    return ids;
}

RunInfo Tracker::end_run(std::string_view run_id, std::string_view status, std::optional<std::string> error,
                         std::optional<int64_t> end_time) {
    if (status != kFinished && status != kFailed && status != kKilled)
        throw_error(ErrorKind::InvalidArgument, "cannot end run '{}' with status '{}': use FINISHED, FAILED or KILLED",
                    run_id, status);
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    int64_t pk = run_pk(run_id);
    // The run as it now stands comes back from the update itself (kSelectInfo's columns), delivered
    // with the commit: one statement and one wait.
    auto st = db.prepare(
        "UPDATE tracking_runs SET status = ?, end_time = ?, error = ? WHERE id = ? RETURNING run_id, name, "
        "(SELECT e.name FROM tracking_experiments e WHERE e.id = tracking_runs.experiment_id), status, start_time, "
        "end_time, \"user\", source, git_commit, git_dirty, "
        "(SELECT p.run_id FROM tracking_runs p WHERE p.id = tracking_runs.parent_id), error, id");
    st.bind_all(status, end_time.value_or(now_ms()), error, pk).defer();
    tx.commit();
    if (!st.step())
        throw_error(ErrorKind::NotFound, "run '{}' not found: check the id (ws.runs.search() lists runs)", run_id);
    return read_info(st);
}

RunInfo Tracker::get_info(std::string_view run_id) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare(std::string(kSelectInfo) + "WHERE r.run_id = ?");
    st.bind(1, run_id);
    if (!st.step())
        throw_error(ErrorKind::NotFound, "run '{}' not found: check the id (ws.runs.search() lists runs)", run_id);
    return read_info(st);
}

Run Tracker::get_run(std::string_view run_id) {
    auto& db = ws_.db();
    auto guard = db.lock();
    std::vector<Run> runs(1);
    runs[0].info = get_info(run_id);
    load_data(runs, {run_pk(run_id)});
    return std::move(runs[0]);
}

void Tracker::load_data(std::vector<Run>& runs, const std::vector<int64_t>& pks) {
    if (runs.empty()) return;
    auto& db = ws_.db();
    std::unordered_map<int64_t, Run*> by_pk;
    for (size_t i = 0; i < runs.size(); ++i) by_pk[pks[i]] = &runs[i];
    // One query per table for the whole page, the ids bound as one list.
    const std::string ids = storage::integer_list(db.dialect(), pks);
    const std::string of_page = storage::in_integer_list(db.dialect(), "run");
    for (const char* table : {"tracking_params", "tracking_tags"}) {
        bool params = std::string_view(table) == "tracking_params";
        auto st = db.prepare(fmt::format("SELECT run, key, value FROM {} WHERE {}", table, of_page));
        st.bind(1, ids);
        while (st.step()) {
            Run* r = by_pk.at(st.int64(0));
            (params ? r->params : r->tags)[st.text(1)] = st.text(2);
        }
    }
    auto st = db.prepare(fmt::format("SELECT run, key, value FROM tracking_latest_metrics WHERE {}", of_page));
    st.bind(1, ids);
    while (st.step()) by_pk.at(st.int64(0))->metrics[st.text(1)] = read_value(st, 2);
}

void Tracker::log_param(std::string_view run_id, std::string_view key, std::string_view value) {
    log_params(run_id, {{std::string(key), std::string(value)}});
}

void Tracker::log_params(std::string_view run_id, const std::vector<std::pair<std::string, std::string>>& params) {
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    const RunKey run = run_key(run_id);
    for (const auto& [k, v] : params) check_key("param", k);
    if (params.empty()) return;
    // Every insert queued, then one read checks that each key holds the value given: a key logged
    // before with another value is a Conflict and the transaction rolls back whole.
    std::string keys;
    for (const auto& [k, v] : params) {
        db.prepare("INSERT INTO tracking_params(run, experiment, key, value) VALUES(?, ?, ?, ?) "
                   "ON CONFLICT(run, key) DO NOTHING")
            .bind_all(run.pk, run.experiment, k, v)
            .queue();
        keys += keys.empty() ? "?" : ", ?";
    }
    std::map<std::string, std::string> stored;
    {
        auto st = db.prepare("SELECT key, value FROM tracking_params WHERE run = ? AND key IN (" + keys + ")");
        int index = 1;
        st.bind(index, run.pk);
        for (const auto& p : params) st.bind(++index, p.first);
        while (st.step()) stored[st.text(0)] = st.text(1);
    }
    for (const auto& [k, v] : params) {
        const std::string& previous = stored[k];
        if (previous != v)
            throw_error(ErrorKind::Conflict,
                        "param '{}' of run '{}' is already '{}'; cannot change it to '{}': params are "
                        "immutable, log the new value under another key or in a new run",
                        k, run_id, previous, v);
    }
    tx.commit();
}

void Tracker::insert_point(RunKey run, std::string_view key, double value, int64_t step, int64_t timestamp) {
    auto& db = ws_.db();
    {
        auto st = db.prepare(kInsertPoint);
        st.bind(1, run.pk).bind(2, key).bind(3, step).bind(4, timestamp).bind(5, next_seq());
        bind_value(st, 6, value);
        st.queue();  // nothing reads it: on PostgreSQL it travels with the commit
    }
    auto st = db.prepare(kUpsertLatest);
    st.bind(1, run.pk).bind(2, run.experiment).bind(3, key).bind(4, step).bind(5, timestamp);
    bind_value(st, 6, value);
    st.queue();
}

void Tracker::log_metric(std::string_view run_id, std::string_view key, double value, int64_t step,
                         std::optional<int64_t> timestamp) {
    check_key("metric", key);
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    insert_point(run_key(run_id), key, value, step, timestamp ? *timestamp : now_ms());
    tx.commit();
}

void Tracker::log_metrics(std::string_view run_id, std::span<const std::string> keys, std::span<const double> values,
                          std::span<const int64_t> steps, std::span<const int64_t> timestamps) {
    size_t n = values.size();
    if (keys.size() != 1 && keys.size() != n)
        throw_error(ErrorKind::InvalidArgument, "log_metrics got {} keys for {} values: give one key, or one per value",
                    keys.size(), n);
    if (!steps.empty() && steps.size() != n)
        throw_error(ErrorKind::InvalidArgument, "log_metrics got {} steps for {} values: give none or one per value",
                    steps.size(), n);
    if (!timestamps.empty() && timestamps.size() != n)
        throw_error(ErrorKind::InvalidArgument,
                    "log_metrics got {} timestamps for {} values: give none or one per value", timestamps.size(), n);
    for (const auto& k : keys) check_key("metric", k);
    if (n == 0) return;
    auto& db = ws_.db();
    int64_t now = now_ms();
    auto key_of = [&](size_t i) -> const std::string& { return keys.size() == 1 ? keys[0] : keys[i]; };
    auto step_of = [&](size_t i) { return steps.empty() ? int64_t(0) : steps[i]; };
    auto ts_of = [&](size_t i) { return timestamps.empty() ? now : timestamps[i]; };
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    const RunKey run = run_key(run_id);
    // The history in bulk: a COPY on PostgreSQL for a big batch, multi-row INSERTs otherwise (a
    // statement per point made 100,000 points take seconds on PostgreSQL).
    storage::copy_rows(db, "tracking_metric_points", kPointColumns, n, [&](storage::RowWriter& w, size_t j) {
        w.add(run.pk).add(key_of(j)).add(step_of(j)).add(ts_of(j)).add(next_seq());
        add_value(w, values[j]);
    });
    // The latest value: only each key's winning point (highest step, then latest timestamp, the
    // later one on a tie, as upserting every point in order would leave it).
    std::map<std::string_view, size_t> best;
    for (size_t j = 0; j < n; ++j) {
        auto [it, fresh] = best.try_emplace(key_of(j), j);
        size_t b = it->second;
        if (!fresh && (step_of(j) > step_of(b) || (step_of(j) == step_of(b) && ts_of(j) >= ts_of(b)))) it->second = j;
    }
    for (const auto& [key, j] : best) {
        auto latest = db.prepare(kUpsertLatest);
        latest.bind(1, run.pk).bind(2, run.experiment).bind(3, key).bind(4, step_of(j)).bind(5, ts_of(j));
        bind_value(latest, 6, values[j]);
        latest.queue();
    }
    tx.commit();
}

std::vector<MetricPoint> Tracker::metric_history(std::string_view run_id, std::string_view key) {
    auto& db = ws_.db();
    auto guard = db.lock();
    int64_t pk = run_pk(run_id);
    auto st = db.prepare("SELECT step, value, timestamp FROM tracking_metric_points WHERE run = ? AND key = ? "
                         "ORDER BY step, timestamp, seq");
    st.bind_all(pk, key);
    std::vector<MetricPoint> out;
    while (st.step()) out.push_back({st.int64(0), read_value(st, 1), st.int64(2)});
    return out;
}

void Tracker::set_tag(std::string_view run_id, std::string_view key, std::string_view value) {
    set_tags(run_id, {{std::string(key), std::string(value)}});
}

void Tracker::set_tags(std::string_view run_id, const std::vector<std::pair<std::string, std::string>>& tags) {
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    const RunKey run = run_key(run_id);
    for (const auto& [k, v] : tags) {
        check_key("tag", k);
        db.prepare("INSERT INTO tracking_tags(run, experiment, key, value) VALUES(?, ?, ?, ?) "
                   "ON CONFLICT(run, key) DO UPDATE SET value = excluded.value")
            .bind_all(run.pk, run.experiment, k, v)
            .queue();
    }
    tx.commit();
}

void Tracker::delete_tag(std::string_view run_id, std::string_view key) {
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    int64_t pk = run_pk(run_id);
    auto st = db.prepare("DELETE FROM tracking_tags WHERE run = ? AND key = ?");
    st.bind_all(pk, key).run();
    if (st.affected() == 0)
        throw_error(ErrorKind::NotFound, "run '{}' has no tag '{}' to delete", run_id, key);
    tx.commit();
}

std::vector<ArtifactEntry> Tracker::log_artifact(std::string_view run_id, const fs::path& local,
                                                 std::string_view artifact_path) {
    // Collect (recorded path, file) first, refusing anything unsafe before storing a byte; store
    // blobs outside the transaction (content-addressed, so a crash leaves at worst an unreferenced
    // blob), then record them all in one transaction.
    auto files = artifact_paths::collect(local, artifact_path);
    {
        auto guard = ws_.db().lock();
        run_pk(run_id); // NotFound before storing anything
    }
    std::vector<ArtifactEntry> out;
    for (const auto& f : files) {
        std::string digest = ws_.artifacts().put_file(f.source);
        out.push_back({f.path, digest, ws_.artifacts().size(digest)});
    }
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    int64_t pk = run_pk(run_id);
    lineage::Graph graph(ws_);
    int64_t now = now_ms();
    for (const auto& e : out) {
        db.prepare("INSERT INTO tracking_artifacts(run, path, digest, size, created_at) VALUES(?, ?, ?, ?, ?) "
                   "ON CONFLICT(run, path) DO UPDATE SET digest = excluded.digest, size = excluded.size, "
                   "created_at = excluded.created_at")
            .bind_all(pk, e.path, e.digest, e.size, now)
            .run();
        graph.add_edge("artifact:" + e.digest, "logged_by", "run:" + std::string(run_id));
    }
    tx.commit();
    return out;
}

std::string Tracker::log_input(std::string_view run_id, std::string_view ref) {
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    run_pk(run_id); // NotFound before anything is written
    std::string input = lineage::Ref::parse(ref).str();
    lineage::Graph(ws_).add_edge(input, "consumed", "run:" + std::string(run_id));
    tx.commit();
    return input;
}

std::vector<ArtifactEntry> Tracker::artifacts(std::string_view run_id) {
    auto& db = ws_.db();
    auto guard = db.lock();
    int64_t pk = run_pk(run_id);
    auto st = db.prepare("SELECT path, digest, size FROM tracking_artifacts WHERE run = ? ORDER BY path");
    st.bind(1, pk);
    std::vector<ArtifactEntry> out;
    while (st.step()) out.push_back({st.text(0), st.text(1), st.int64(2)});
    return out;
}

std::vector<fs::path> Tracker::download_artifacts(std::string_view run_id, const fs::path& dest,
                                                  std::string_view prefix) {
    auto entries = artifacts(run_id);
    std::string pre(prefix);
    while (!pre.empty() && pre.back() == '/') pre.pop_back();
    std::vector<ArtifactEntry> chosen;
    for (auto& e : entries) {
        if (!pre.empty() && e.path != pre && e.path.rfind(pre + "/", 0) != 0) continue;
        // Checked again at write time: a path recorded by an older Keel (or edited in keel.db) must
        // not steer a download outside dest. Refused before anything is written.
        if (!artifact_paths::is_safe_recorded(e.path))
            throw_error(ErrorKind::Corrupt,
                        "run '{}' records the artifact path '{}', which would leave the download folder; Keel "
                        "refuses to download it. Download the other artifacts with a path prefix, or log the file "
                        "again",
                        run_id, e.path);
        chosen.push_back(std::move(e));
    }
    if (chosen.empty() && !pre.empty())
        throw_error(ErrorKind::NotFound, "run '{}' has no artifact under '{}'", run_id, pre);
    std::error_code ec;
    fs::create_directories(dest, ec);
    fs::path root = fs::canonical(dest, ec);
    if (ec || !fs::is_directory(root))
        throw_error(ErrorKind::InvalidArgument, "cannot download artifacts to '{}': it is not a folder Keel can create",
                    dest.string());
    std::vector<fs::path> out;
    for (const auto& e : chosen) {
        fs::path target = artifact_paths::download_target(root, e.path);
        ws_.artifacts().copy_to(e.digest, target);
        out.push_back(target);
    }
    return out;
}

} // namespace keel::tracking

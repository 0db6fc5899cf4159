// core/include/keel/tracking/tracker.hpp
#pragma once

#include "keel/storage/object_refs.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace keel::storage {
class Workspace;
struct ModuleSchema;
}

namespace keel::tracking {

//! Run states. A run starts RUNNING and ends in one of the other three.
inline constexpr std::string_view kRunning = "RUNNING";
inline constexpr std::string_view kFinished = "FINISHED";
inline constexpr std::string_view kFailed = "FAILED";
inline constexpr std::string_view kKilled = "KILLED";

struct Experiment {
    std::string name;
    int64_t created_at = 0;
    std::string created_by;
    int64_t run_count = 0;
};

//! A run's attributes (everything but its params, metrics and tags).
struct RunInfo {
    std::string id; //!< 32 lowercase hex characters
    std::string name;
    std::string experiment;
    std::string status;
    int64_t start_time = 0; //!< ms since the epoch
    std::optional<int64_t> end_time;
    std::string user;
    std::string source;     //!< the file that started the run, when known
    std::string git_commit; //!< empty outside a git checkout
    std::optional<bool> git_dirty;
    std::optional<std::string> parent_id;
    std::optional<std::string> error; //!< why a FAILED run failed
};

//! The process running a run, recorded when the run starts, so that a run whose process died
//! (kill -9, a lost machine) can be told from one still working.
struct RunProcess {
    std::string host;
    int64_t pid = 0;
    int64_t process_start = 0; //!< clock ticks since boot (Linux), 0 when unknown; tells a reused pid apart
    int64_t heartbeat_at = 0;  //!< ms since the epoch: the last sign of life (start, then heartbeat())
};

//! A RUNNING run whose process is gone, and how we know.
struct StaleRun {
    RunInfo info;
    RunProcess process;
    std::string reason; //!< e.g. "process 4242 on host-a has exited"
};

//! A run with its params, latest metric values and tags.
struct Run {
    RunInfo info;
    std::map<std::string, std::string> params;
    std::map<std::string, double> metrics; //!< latest value per key (max step, then max timestamp)
    std::map<std::string, std::string> tags;
};

//! What start_run needs; unset fields get defaults (a generated name, the workspace user, now).
struct NewRun {
    std::string experiment = "Default";
    std::string name;
    std::optional<std::string> parent_id;
    std::map<std::string, std::string> tags;
    std::string source;
    std::string git_commit;
    std::optional<bool> git_dirty;
    std::optional<int64_t> start_time;
    //! Who runs it; unset: this process, as seen by this host. Not recorded when `host` is empty.
    std::optional<RunProcess> process;
};

struct MetricPoint {
    int64_t step = 0;
    double value = 0;
    int64_t timestamp = 0;
};

//! One stored artifact file of a run.
struct ArtifactEntry {
    std::string path; //!< relative path inside the run, '/'-separated
    std::string digest;
    int64_t size = 0;
};

//! log_runs(): many ended runs in columns, one entry per run in each (a sweep's results, runs
//! brought over from another tracker). Metrics are logged at `step`; times default to now.
struct RunBatch {
    std::vector<std::string> names;  //!< empty names get a generated one
    std::vector<std::pair<std::string, std::vector<std::string>>> params, tags;  //!< key, value per run
    std::vector<std::pair<std::string, std::vector<double>>> metrics;            //!< key, value per run
    int64_t step = 0;
    std::optional<int64_t> start_time, end_time;
    std::string status = "FINISHED";  //!< FINISHED, FAILED or KILLED
};

//! search(): which runs, in what order, how many.
struct SearchQuery {
    std::vector<std::string> experiments; //!< empty: every experiment
    std::string filter;                   //!< see filter.hpp for the grammar
    std::vector<std::string> order_by;    //!< "metrics.auc DESC", "start_time", "params.lr ASC"
    int64_t max_results = 1000;
    int64_t offset = 0;
};

//! Experiments, runs, params, metrics, tags and artifacts in a workspace's metadata store.
//!
//! Every write is one SQLite transaction, so a process killed at any point leaves every write that
//! returned, and several processes may log to the same workspace at once. Metric points keep their
//! full history in one table and the latest value per (run, key) in another, updated in the same
//! transaction; search reads only the latter, so its cost does not grow with history length. NaN is
//! stored as NULL in the value column (SQLite's REAL cannot hold it); ±inf is stored as is.
class Tracker {
public:
    explicit Tracker(storage::Workspace& ws);
    //! Its tables' migrations, applied when it is constructed (`keel admin migrate` lists them).
    static const storage::ModuleSchema& schema();
    //! Where this module's rows name objects (`keel admin gc` keeps those).
    static const std::vector<storage::ObjectRefs>& object_refs();
    //! An SQL condition, true when the run whose id is bound at parameter `?N` exists: another
    //! module's write can check a run without a read of its own (a wait on PostgreSQL). Runs are
    //! never removed, so what it finds holds until that write commits.
    static std::string run_exists_sql(int param);

    //! Creates the experiment if it does not exist yet.
    void ensure_experiment(std::string_view name);
    std::vector<Experiment> experiments();

    //! Starts a RUNNING run (creating its experiment on first use). NotFound for an unknown parent.
    RunInfo start_run(const NewRun& spec);
    //! Records ended runs in bulk: each as start_run + log_params + log_metrics + end_run would leave
    //! it (its lineage edge from the experiment included), in one transaction of multi-row
    //! statements. Returns the new run ids in order. InvalidArgument (nothing written) for a column
    //! whose length differs from names', a bad key or status.
    std::vector<std::string> log_runs(std::string_view experiment, const RunBatch& batch);
    //! Ends a run: status FINISHED, FAILED (with `error`) or KILLED. InvalidArgument for other states.
    RunInfo end_run(std::string_view run_id, std::string_view status, std::optional<std::string> error = {},
                    std::optional<int64_t> end_time = {});
    //! NotFound naming the id.
    Run get_run(std::string_view run_id);
    RunInfo get_info(std::string_view run_id);

    //! Params are immutable: the same value again is a no-op, another value a Conflict.
    void log_param(std::string_view run_id, std::string_view key, std::string_view value);
    void log_params(std::string_view run_id, const std::vector<std::pair<std::string, std::string>>& params);

    //! One point; timestamp defaults to now.
    void log_metric(std::string_view run_id, std::string_view key, double value, int64_t step = 0,
                    std::optional<int64_t> timestamp = {});
    //! Many points in one transaction. `keys` holds one key for all points or one per point;
    //! `steps` and `timestamps` may be empty (0 / now) or one per point.
    void log_metrics(std::string_view run_id, std::span<const std::string> keys, std::span<const double> values,
                     std::span<const int64_t> steps = {}, std::span<const int64_t> timestamps = {});
    //! Every point of one metric, ordered by step then timestamp. Empty when never logged.
    std::vector<MetricPoint> metric_history(std::string_view run_id, std::string_view key);

    void set_tag(std::string_view run_id, std::string_view key, std::string_view value);
    void set_tags(std::string_view run_id, const std::vector<std::pair<std::string, std::string>>& tags);
    void delete_tag(std::string_view run_id, std::string_view key);

    //! Records that the run consumed `ref` (a training set, a feature view, a dataset, any lineage
    //! ref): the edge `<ref> -consumed-> run:<id>`, in one transaction with the run checked to exist.
    //! Returns the input's canonical ref. NotFound for an unknown run; InvalidArgument for a ref that
    //! is malformed or a model alias (resolve it to its version first).
    std::string log_input(std::string_view run_id, std::string_view ref);

    //! Stores a file, or every file under a directory, in the artifact store and records it under
    //! `artifact_path/<file or directory name>/...`. Returns the entries recorded.
    std::vector<ArtifactEntry> log_artifact(std::string_view run_id, const std::filesystem::path& local,
                                            std::string_view artifact_path = {});
    std::vector<ArtifactEntry> artifacts(std::string_view run_id);
    //! Copies the run's artifacts (those under `prefix`, or all) to dest/<path>, each verified
    //! against its digest first. Returns the files written.
    std::vector<std::filesystem::path> download_artifacts(std::string_view run_id,
                                                          const std::filesystem::path& dest,
                                                          std::string_view prefix = {});

    //! Runs matching the query with their params, latest metrics and tags (fetched for the whole
    //! page in three batched queries). InvalidArgument for a malformed filter or order_by.
    std::vector<Run> search(const SearchQuery& query);

    // ---- stale runs (stale.cpp)
    //! Marks the runs' processes alive now. Ids of runs that are unknown or recorded without a
    //! process are skipped: a heartbeat never fails the work it accompanies.
    void heartbeat(std::span<const std::string> run_ids);
    //! The process recorded for a run; nullopt when none was. NotFound for an unknown run.
    std::optional<RunProcess> run_process(std::string_view run_id);
    //! RUNNING runs whose process is gone: on this host, its pid no longer exists or now belongs to
    //! another process; on another host (where pids cannot be checked), no heartbeat for longer than
    //! `heartbeat_timeout_ms`. Runs recorded without a process are not judged. Oldest first.
    std::vector<StaleRun> stale_runs(int64_t heartbeat_timeout_ms);
    //! Ends each stale run KILLED, its end time the last sign of life and the reason as its error.
    //! A run that ended by itself meanwhile is left as it is. Returns the runs closed.
    std::vector<StaleRun> close_stale_runs(int64_t heartbeat_timeout_ms);

private:
    //! A run's row id and its experiment's (params, tags and latest metrics carry both).
    struct RunKey {
        int64_t pk;
        int64_t experiment;
    };
    RunKey run_key(std::string_view run_id);
    int64_t run_pk(std::string_view run_id) { return run_key(run_id).pk; }
    int64_t experiment_pk(std::string_view name, bool create);
    void insert_point(RunKey run, std::string_view key, double value, int64_t step, int64_t timestamp);
    void load_data(std::vector<Run>& runs, const std::vector<int64_t>& pks);
    storage::Workspace& ws_;
    //! Guards run_keys_ and experiment_pks_: threads on different connections of a pool use one Tracker at once.
    std::mutex run_keys_mu_;
    std::unordered_map<std::string, RunKey> run_keys_; //!< run id -> its keys (never change)
    std::unordered_map<std::string, int64_t> experiment_pks_; //!< name -> row id (never removed)
};

} // namespace keel::tracking

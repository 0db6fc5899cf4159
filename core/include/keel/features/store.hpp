// core/include/keel/features/store.hpp
#pragma once

#include "keel/features/schema.hpp"
#include "keel/features/segment.hpp"
#include "keel/features/table.hpp"
#include "keel/storage/object_refs.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace keel::storage {
class Workspace;
struct ModuleSchema;
}

namespace keel::features {

class OnlineReader;

//! A feature view's catalog entry: its definition plus freshness and size.
struct ViewInfo {
    ViewSpec spec;
    int64_t rows = 0;      //!< rows ingested into the current version (before de-duplication)
    int64_t segments = 0;  //!< segment files of the current version
    std::optional<int64_t> last_event_ms;
    std::optional<int64_t> last_ingest_ms;
    std::optional<int64_t> materialized_end_ms;  //!< online store holds values up to this time
    std::string online;  //!< where its online readers read: the Redis URL, '' for the local snapshot (or none)
};

//! Selects rows of a view. Without as_of, every de-duplicated row (one per key and event time, the
//! latest created wins) with start <= event < end; with as_of, the latest row per key with
//! event <= as_of. `keys`, when set, keeps only rows whose join keys match one of its rows.
struct ReadOptions {
    std::optional<int64_t> start_ms;
    std::optional<int64_t> end_ms;
    std::optional<int64_t> as_of_ms;
    const BatchView* keys = nullptr;
    bool include_created = true;
    std::optional<int64_t> version;  //!< default: the latest
};

//! One requested feature: "view:column" resolved.
struct FeatureRef {
    std::string view;
    std::string column;
    //! Parses "view:column"; throws InvalidArgument otherwise.
    static FeatureRef parse(std::string_view text);
};

//! What a training set was built from, recorded so it can be rebuilt identically later.
struct TrainingSetRecord {
    std::string id;
    std::vector<std::string> features;                 //!< "view:column"
    std::map<std::string, int64_t> view_versions;      //!< view -> version used
    std::map<std::string, int64_t> segment_cutoffs;    //!< view -> last segment id included
    std::string timestamp_column;
    std::string labels_digest;  //!< artifact holding the label frame (written by the caller)
    int64_t label_rows = 0;
    std::optional<int64_t> min_ts_ms, max_ts_ms;
    int64_t created_at_ms = 0;
    std::string created_by;
};

//! A named, stored list of features that training sets and endpoints are built from (Feast calls it
//! a feature service). Each change is a new revision; the revisions are kept.
struct TrainingSpec {
    std::string name;
    std::vector<std::string> features;  //!< "view:column", each in a live view
    std::string description;
    std::string owner;
    std::map<std::string, std::string> tags;
    int64_t revision = 0;       //!< set by define_training_spec
    int64_t created_at_ms = 0;  //!< when this revision was written
    std::string created_by;
};

//! A built training set: its record and one column per feature, in label row order.
struct TrainingSet {
    TrainingSetRecord record;
    Table features;
};

struct MaterializeResult {
    std::string view;
    int64_t version = 0;
    int64_t end_ms = 0;
    int64_t entities = 0;       //!< entities in the online snapshot
    int64_t changed = 0;        //!< candidate rows read since the previous materialization
    int64_t snapshot_id = 0;
    std::string online;         //!< '' (the local snapshot) or the Redis URL readers read
    int64_t written = 0;        //!< entities written to Redis (all of them on a full write)
};

//! The feature store of one workspace: entities, versioned feature views, immutable offline
//! segments under <workspace>/features/, point-in-time training sets, the online store and the PII
//! grants. Safe to share between threads; several processes may use the same workspace.
class FeatureStore {
public:
    explicit FeatureStore(std::shared_ptr<storage::Workspace> ws);
    //! Its tables' migrations, applied when it is constructed (`keel admin migrate` lists them).
    static const storage::ModuleSchema& schema();
    //! Where this module's rows name objects (`keel admin gc` keeps those).
    static const std::vector<storage::ObjectRefs>& object_refs();
    ~FeatureStore();

    storage::Workspace& workspace() { return *ws_; }

    // --- definitions -------------------------------------------------------------------------
    //! Creates or updates an entity (its join keys cannot change once views use it).
    EntitySpec define_entity(const EntitySpec& spec);
    EntitySpec entity(const std::string& name);
    std::vector<EntitySpec> entities();

    //! Creates a view, updates it in place (compatible change) or starts a new version
    //! (incompatible change). Returns the stored definition.
    ViewSpec define_view(const ViewSpec& spec);
    //! The latest (or a given) version of a view; NotFound names the known views.
    ViewSpec view(const std::string& name, std::optional<int64_t> version = std::nullopt);
    //! The latest (or a given) version of a view, retired or not: what rebuilding a recorded
    //! training set reads. NotFound only when the view or version never existed.
    ViewSpec recorded_view(const std::string& name, int64_t version);
    //! Live views only (retired ones are left out).
    std::vector<ViewInfo> list();
    ViewInfo info(const std::string& name);
    //! Takes a view out of the catalog, keeping its offline data so recorded training sets still
    //! rebuild identically: view() (any version), ingest, materialize and online reads then refuse it
    //! (NotFound saying who retired it and when), list() leaves it out, and its online snapshots are
    //! dropped so no stale value is served. define_view() of the name brings it back. NotFound naming
    //! the live views when `name` is unknown or already retired.
    void retire_view(const std::string& name);
    //! Deletes an entity. InvalidArgument naming them while live views use it (retire them first);
    //! NotFound naming the known entities when there is none. Retired views that used it keep their
    //! join keys (recorded with each view version), so their training sets still rebuild.
    void remove_entity(const std::string& name);

    // --- training specs (feature services) -----------------------------------------------------
    //! Validates (name rule, at least one feature, no duplicates, each "view:column" in a live view)
    //! and stores the spec: an unchanged definition returns the current revision, a changed one is
    //! written as revision + 1. Returns what is stored.
    TrainingSpec define_training_spec(const TrainingSpec& spec);
    //! The current revision; NotFound naming the known specs.
    TrainingSpec training_spec(const std::string& name);
    //! The current revision of every spec not removed, by name.
    std::vector<TrainingSpec> training_specs();
    //! Stops listing and serving the spec; its revisions are kept, and defining it again continues
    //! their numbers. NotFound naming the known specs.
    void remove_training_spec(const std::string& name);

    // --- offline store ----------------------------------------------------------------------
    //! Validates the batch against the view, then writes one sorted segment and registers it in one
    //! transaction. All or nothing: on any error (or a crash) the store is as before.
    //! Returns the new segment's id.
    int64_t ingest(const std::string& view, const BatchView& batch);
    //! Reads a view (join keys, event time, created time, features); PII masked per the role.
    Table read(const std::string& view, const ReadOptions& options = {});

    // --- point-in-time training sets --------------------------------------------------------
    //! For each label row (join keys + timestamp column), the latest value of each feature with
    //! event time <= the label's time and within the view's TTL; nulls otherwise. Records the set.
    TrainingSet training_set(const BatchView& labels, const std::vector<std::string>& features,
                             const std::string& timestamp_column, const std::string& labels_digest);
    //! The recorded training set `id` (NotFound otherwise).
    TrainingSetRecord training_set_record(const std::string& id);
    //! Rebuilds a recorded training set from its labels: the same segments, the same result.
    TrainingSet rebuild_training_set(const std::string& id, const BatchView& labels);

    // --- engines: what a Spark or Dask job's driver and partitions call (core/features/partitions.cpp)
    //! What a training set of `features` reads if built now: the live views' versions and last segment
    //! ids (`features`, `view_versions` and `segment_cutoffs` set). An engine's driver reads it once,
    //! so every partition joins against one consistent snapshot, whatever is ingested meanwhile.
    TrainingSetRecord snapshot(const std::vector<std::string>& features);
    //! The point-in-time join of `labels` against `at` (its features, view versions and segment
    //! cutoffs), recorded nowhere: what each partition of an engine's training set runs. Equal, row
    //! for row, to the join training_set() runs on the same labels and snapshot.
    Table join_at(const BatchView& labels, const TrainingSetRecord& at);
    //! Records a training set built elsewhere (an engine's partitions, against `record`'s snapshot),
    //! with its lineage: sets its id, created_at_ms and created_by as training_set() does.
    TrainingSetRecord record_training_set(TrainingSetRecord record);
    //! Increasing key boundaries that split the rows of a view version's segments (ids up to
    //! `cutoff`) into at most `parts` ranges of about equal size, as opaque bytes for read_range.
    std::vector<std::string> key_splits(const std::string& view, int64_t version, int64_t cutoff, size_t parts);
    //! read() of the segments up to `cutoff` and the keys in [lo, hi) (a missing bound is open),
    //! sorted by key and time: consecutive ranges of key_splits concatenate to the whole read().
    Table read_range(const std::string& view, int64_t version, int64_t cutoff, const std::optional<std::string>& lo,
                     const std::optional<std::string>& hi, std::optional<int64_t> start_ms = std::nullopt,
                     std::optional<int64_t> end_ms = std::nullopt);

    // --- online store -----------------------------------------------------------------------
    //! Writes the latest value per entity with event time <= end (default: now) to the online store,
    //! reading only rows that arrived since the previous materialization. Readers switch atomically.
    //! `online`: "redis://host:port/db" writes the values to Redis too (only the entities that
    //! changed, pipelined, keys expiring after the view's TTL) and every reader of the view reads them
    //! there; "local" (or "") goes back to the local snapshot; unset keeps the view's current store.
    MaterializeResult materialize(const std::string& view, std::optional<int64_t> end_ms = std::nullopt,
                                  const std::optional<std::string>& online = std::nullopt);
    //! Checks that materialize(view, end, online) could reach its target now: "local"/"" always,
    //! "redis://..." when the server answers (InvalidArgument for a bad URL, Unavailable when it is
    //! down). For callers that write data before they materialize it (prediction tables), so an
    //! outage fails them before anything is written.
    static void check_online(const std::string& online);
    //! Online values for the given keys (one column per join key of `keys`): for each feature
    //! its value, plus "<view>__event_timestamp", "<view>__age_ms" and "<view>__stale" columns.
    //! What the catalog says is read is kept between calls while the workspace's change token
    //! stays (any commit, in any process, moves it), so a repeated call reads no table.
    Table get_online(const std::vector<std::string>& features, const BatchView& keys,
                     std::optional<int64_t> now_ms = std::nullopt);
    //! The join keys get_online needs for `features`: each view's, in order, each name once.
    std::vector<ColumnSpec> online_keys(const std::vector<std::string>& features);
    //! A compiled reader for numeric features of int64-keyed views (see keel/features/online.hpp).
    std::shared_ptr<OnlineReader> online_reader(const std::vector<std::string>& features);

    // --- access -------------------------------------------------------------------------------
    void grant(const std::string& role, const std::string& view, const std::vector<std::string>& columns);
    void revoke(const std::string& role, const std::string& view, const std::vector<std::string>& columns);
    //! True when `role` may read `view`.`column` unmasked (always true for non-PII columns).
    bool can_read(const std::string& role, const std::string& view, const std::string& column);
    //! Grants as (role, view, column) rows.
    std::vector<std::array<std::string, 3>> grants();

    //! The masked form of a PII string value (salted sha256, "pii:" + 16 hex characters).
    std::string mask_string(std::string_view value);

    //! Opens (and caches) the segment file registered under `id`.
    std::shared_ptr<const Segment> segment(int64_t id);

    struct Impl;
    Impl& impl() { return *impl_; }

private:
    void grants_changed(); //!< after a grant or revoke: readers in this process mask or check again
    std::shared_ptr<storage::Workspace> ws_;
    std::unique_ptr<Impl> impl_;
};

} // namespace keel::features

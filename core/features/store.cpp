// core/features/store.cpp
#include "keel/features/store.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/common/names.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"
#include "store_impl.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace keel::features {

namespace {

const storage::ModuleSchema kSchema{
    "features",
    {R"sql(
CREATE TABLE features_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE features_entities(
  name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);
CREATE TABLE features_entity_keys(
  entity TEXT NOT NULL REFERENCES features_entities(name), position INTEGER NOT NULL,
  name TEXT NOT NULL, dtype TEXT NOT NULL, PRIMARY KEY(entity, position));
CREATE TABLE features_views(
  name TEXT NOT NULL, version INTEGER NOT NULL, entities TEXT NOT NULL, ttl_ms INTEGER NOT NULL,
  owner TEXT NOT NULL, description TEXT NOT NULL, tags TEXT NOT NULL, event_column TEXT NOT NULL,
  created_column TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  created_by TEXT NOT NULL, PRIMARY KEY(name, version));
CREATE TABLE features_columns(
  view TEXT NOT NULL, version INTEGER NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL,
  dtype TEXT NOT NULL, dim INTEGER NOT NULL, pii INTEGER NOT NULL, PRIMARY KEY(view, version, position));
CREATE TABLE features_segments(
  id INTEGER PRIMARY KEY AUTOINCREMENT, view TEXT NOT NULL, version INTEGER NOT NULL, file TEXT NOT NULL,
  rows INTEGER NOT NULL, min_event_ms INTEGER, max_event_ms INTEGER, created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL);
CREATE INDEX features_segments_view ON features_segments(view, version, id);
CREATE TABLE features_online(
  id INTEGER PRIMARY KEY AUTOINCREMENT, view TEXT NOT NULL, version INTEGER NOT NULL, file TEXT NOT NULL,
  end_ms INTEGER NOT NULL, max_segment_id INTEGER NOT NULL, entities INTEGER NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE features_grants(
  role TEXT NOT NULL, view TEXT NOT NULL, column_name TEXT NOT NULL, granted_by TEXT NOT NULL,
  granted_at INTEGER NOT NULL, PRIMARY KEY(role, view, column_name));
CREATE TABLE features_training_sets(
  id TEXT PRIMARY KEY, features TEXT NOT NULL, view_versions TEXT NOT NULL, segment_cutoffs TEXT NOT NULL,
  timestamp_column TEXT NOT NULL, labels_digest TEXT NOT NULL, label_rows INTEGER NOT NULL,
  min_ts_ms INTEGER, max_ts_ms INTEGER, created_at INTEGER NOT NULL, created_by TEXT NOT NULL);
)sql", R"sql(
ALTER TABLE features_views ADD COLUMN retired_at INTEGER;
ALTER TABLE features_views ADD COLUMN retired_by TEXT;
ALTER TABLE features_views ADD COLUMN join_keys TEXT NOT NULL DEFAULT '';
CREATE TABLE features_training_specs(
  name TEXT NOT NULL, revision INTEGER NOT NULL, features TEXT NOT NULL, description TEXT NOT NULL,
  owner TEXT NOT NULL, tags TEXT NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL,
  removed_at INTEGER, removed_by TEXT, PRIMARY KEY(name, revision));
)sql", R"sql(
ALTER TABLE features_online ADD COLUMN online TEXT NOT NULL DEFAULT '';
ALTER TABLE features_online ADD COLUMN online_seq INTEGER NOT NULL DEFAULT 0;
)sql"}};
// Step 3: where a materialization's readers read ('' the local snapshot, else a Redis URL) and
// which Redis materialization it is (keel:<view>:v<version>:current, core/features/redis_online.hpp).
// Step 2: a retired view keeps its rows with retired_at/retired_by set (on every version of the
// name; NULL while live). join_keys records each version's key columns ("name\tdtype" lines) so a
// version still reads after its entity is removed ('' in rows written before: read from the
// entities). A training spec has one row per revision; removed_at set on its newest row hides it.

std::string join_lines(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& s : items) {
        if (!out.empty()) out += '\n';
        out += s;
    }
    return out;
}

using detail::decode_tags;
using detail::split_lines;
using detail::encode_keys;
using detail::encode_tags;

std::vector<ColumnSpec> decode_keys(const std::string& text) {
    std::vector<ColumnSpec> out;
    for (const auto& line : split_lines(text)) {
        auto tab = line.find('\t');
        if (tab == std::string::npos) throw_error(ErrorKind::Corrupt, "stored join key '{}' has no type", line);
        out.push_back({line.substr(0, tab), parse_dtype(line.substr(tab + 1))});
    }
    return out;
}

// Entities, views and columns follow the one rule for user-given names (keel/common/names.hpp).
void check_name(const std::string& name, const char* what) {
    const bool entity_or_view = std::string_view(what) == "entity" || std::string_view(what) == "feature view";
    keel::check_name(name, what, entity_or_view ? "player_activity" : "spend_30d");
}

int64_t first_invalid(const ColumnView& col, size_t rows) {
    if (!col.valid) return -1;
    for (size_t i = 0; i < rows; ++i)
        if (!col.valid[i]) return int64_t(i);
    return -1;
}

// The first column of every row `sql` returns. The lock is held only while reading: callers then
// read each name's record, which takes it again.
std::vector<std::string> first_column(storage::Db& db, const char* sql) {
    auto guard = db.lock();
    std::vector<std::string> out;
    auto st = db.prepare(sql);
    while (st.step()) out.push_back(st.text(0));
    return out;
}

} // namespace

namespace detail {

std::string encode_keys(const std::vector<ColumnSpec>& keys) {
    std::string out;
    for (const auto& k : keys) out += k.name + '\t' + std::string(dtype_name(k.dtype)) + '\n';
    return out;
}

std::string encode_tags(const std::map<std::string, std::string>& tags) {
    std::string out;
    for (const auto& [k, v] : tags) out += k + '\t' + v + '\n';
    return out;
}

std::map<std::string, std::string> decode_tags(const std::string& text) {
    std::map<std::string, std::string> out;
    for (const auto& line : split_lines(text)) {
        auto tab = line.find('\t');
        out[line.substr(0, tab)] = tab == std::string::npos ? "" : line.substr(tab + 1);
    }
    return out;
}

} // namespace detail

FeatureRef FeatureRef::parse(std::string_view text) {
    auto colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size() ||
        text.find(':', colon + 1) != std::string_view::npos)
        throw_error(ErrorKind::InvalidArgument, "feature '{}' is not of the form 'view:column'", text);
    return {std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
}

const storage::ModuleSchema& FeatureStore::schema() { return kSchema; }

const std::vector<storage::ObjectRefs>& FeatureStore::object_refs() {
    using Kind = storage::ObjectRefs::Kind;
    // Offline segments (prediction tables' too: they are views) and the online snapshots kept.
    static const std::vector<storage::ObjectRefs> refs{
        {"features_segments", Kind::FeatureFile, "SELECT file FROM features_segments"},
        {"features_online", Kind::FeatureFile, "SELECT file FROM features_online"}};
    return refs;
}

FeatureStore::FeatureStore(std::shared_ptr<storage::Workspace> ws) : ws_(std::move(ws)), impl_(std::make_unique<Impl>()) {
    auto& db = ws_->db();
    db.ensure_schema(kSchema);
    storage::Transaction tx(db);
    {
        auto st = db.prepare("SELECT value FROM features_meta WHERE key = 'pii_salt'");
        if (st.step()) impl_->salt = st.text(0);
    }
    if (impl_->salt.empty()) {
        impl_->salt = random_hex_id();
        db.prepare("INSERT INTO features_meta(key, value) VALUES('pii_salt', ?)").bind_all(impl_->salt).run();
    }
    // The workspace's own part of its Redis keys, so that workspaces sharing a Redis never meet.
    {
        auto st = db.prepare("SELECT value FROM features_meta WHERE key = 'online_namespace'");
        if (st.step()) impl_->online_namespace = st.text(0);
    }
    if (impl_->online_namespace.empty()) {
        impl_->online_namespace = random_hex_id().substr(0, 12);
        db.prepare("INSERT INTO features_meta(key, value) VALUES('online_namespace', ?)")
            .bind_all(impl_->online_namespace)
            .run();
    }
    tx.commit();
}

FeatureStore::~FeatureStore() = default;

// ---------------------------------------------------------------------------------------------
// Definitions

EntitySpec FeatureStore::define_entity(const EntitySpec& spec) {
    check_name(spec.name, "entity");
    if (spec.join_keys.empty())
        throw_error(ErrorKind::InvalidArgument, "entity '{}' needs at least one join key", spec.name);
    for (const auto& k : spec.join_keys) {
        check_name(k.name, "join key");
        if (k.dtype != DType::Int64 && k.dtype != DType::String)
            throw_error(ErrorKind::InvalidArgument, "join key '{}' of entity '{}' has type {}: use int64 or string",
                        k.name, spec.name, dtype_name(k.dtype));
    }
    auto& db = ws_->db();
    storage::Transaction tx(db);
    std::vector<ColumnSpec> existing;
    {
        auto st = db.prepare("SELECT name, dtype FROM features_entity_keys WHERE entity = ? ORDER BY position");
        st.bind_all(spec.name);
        while (st.step()) existing.push_back({st.text(0), parse_dtype(st.text(1))});
    }
    if (!existing.empty()) {
        bool same = existing.size() == spec.join_keys.size();
        for (size_t i = 0; same && i < existing.size(); ++i)
            same = existing[i].name == spec.join_keys[i].name && existing[i].dtype == spec.join_keys[i].dtype;
        if (!same)
            throw_error(ErrorKind::Conflict,
                        "entity '{}' already exists with other join keys: pick a new entity name", spec.name);
        db.prepare("UPDATE features_entities SET description = ? WHERE name = ?").bind_all(spec.description, spec.name).run();
    } else {
        db.prepare("INSERT INTO features_entities(name, description, created_at) VALUES(?, ?, ?)")
            .bind_all(spec.name, spec.description, now_ms())
            .run();
        for (size_t i = 0; i < spec.join_keys.size(); ++i)
            db.prepare("INSERT INTO features_entity_keys(entity, position, name, dtype) VALUES(?, ?, ?, ?)")
                .bind_all(spec.name, int64_t(i), spec.join_keys[i].name, std::string(dtype_name(spec.join_keys[i].dtype)))
                .run();
    }
    tx.commit();
    return entity(spec.name);
}

EntitySpec FeatureStore::entity(const std::string& name) {
    auto& db = ws_->db();
    auto guard = db.lock();
    EntitySpec e;
    {
        auto st = db.prepare("SELECT name, description FROM features_entities WHERE name = ?");
        st.bind_all(name);
        if (!st.step()) {
            std::vector<std::string> known;
            auto all = db.prepare("SELECT name FROM features_entities ORDER BY name");
            while (all.step()) known.push_back(all.text(0));
            throw_error(ErrorKind::NotFound, "entity '{}' not found (known: {}): define it with ws.features.entity()",
                        name, known.empty() ? "none" : fmt::format("{}", fmt::join(known, ", ")));
        }
        e.name = st.text(0);
        e.description = st.text(1);
    }
    auto st = db.prepare("SELECT name, dtype FROM features_entity_keys WHERE entity = ? ORDER BY position");
    st.bind_all(name);
    while (st.step()) e.join_keys.push_back({st.text(0), parse_dtype(st.text(1))});
    return e;
}

std::vector<EntitySpec> FeatureStore::entities() {
    std::vector<EntitySpec> out;
    for (const auto& n : first_column(ws_->db(), "SELECT name FROM features_entities ORDER BY name"))
        out.push_back(entity(n));
    return out;
}

namespace {

// The longest vector column a view may declare (MAX_VECTOR_DIM in python/keel/features.py).
constexpr uint32_t kMaxVectorDim = 65536;

// Why `next` cannot keep reading `prev`'s data, or "" when the change is compatible.
std::string incompatibility(const ViewSpec& prev, const ViewSpec& next) {
    if (prev.entities != next.entities) return "its entities changed";
    // An entity removed and defined again with other keys: the stored rows have the old ones.
    if (prev.join_keys != next.join_keys) return "its entities' join keys changed";
    if (prev.event_column != next.event_column) return "its event timestamp column changed";
    if (prev.created_column != next.created_column) return "its created timestamp column changed";
    for (const auto& old : prev.features) {
        const ColumnSpec* now = next.feature(old.name);
        if (!now) return fmt::format("column '{}' was removed", old.name);
        if (now->dtype != old.dtype || now->dim != old.dim)
            return fmt::format("column '{}' changed type from {} to {}", old.name, dtype_name(old.dtype),
                               dtype_name(now->dtype));
    }
    return "";
}

} // namespace

ViewSpec FeatureStore::define_view(const ViewSpec& input) {
    check_name(input.name, "feature view");
    if (input.entities.empty())
        throw_error(ErrorKind::InvalidArgument, "feature view '{}' needs at least one entity", input.name);
    if (input.features.empty())
        throw_error(ErrorKind::InvalidArgument, "feature view '{}' has an empty schema: give it columns", input.name);
    if (input.ttl_ms < 0) throw_error(ErrorKind::InvalidArgument, "ttl of feature view '{}' is negative", input.name);
    ViewSpec spec = input;
    spec.join_keys.clear();
    std::set<std::string> names;
    for (const auto& en : spec.entities) {
        EntitySpec e = entity(en);
        for (const auto& k : e.join_keys) {
            if (!names.insert(k.name).second)
                throw_error(ErrorKind::InvalidArgument, "join key '{}' appears twice in feature view '{}'", k.name,
                            spec.name);
            spec.join_keys.push_back(k);
        }
    }
    for (const std::string& n : {spec.event_column, spec.created_column}) {
        check_name(n, "timestamp column");
        if (!names.insert(n).second)
            throw_error(ErrorKind::InvalidArgument, "column '{}' is used twice in feature view '{}'", n, spec.name);
    }
    for (auto& c : spec.features) {
        check_name(c.name, "column");
        if (!names.insert(c.name).second)
            throw_error(ErrorKind::InvalidArgument,
                        "column '{}' appears twice in feature view '{}' (or clashes with a join key or timestamp)",
                        c.name, spec.name);
        if (c.dtype == DType::Vector && c.dim == 0)
            throw_error(ErrorKind::InvalidArgument, "vector column '{}' needs a length (dim > 0)", c.name);
        // A row of one vector is dim * 4 bytes in every block: past this, ingest would ask for
        // gigabytes per row.
        if (c.dtype == DType::Vector && c.dim > kMaxVectorDim)
            throw_error(ErrorKind::InvalidArgument, "vector column '{}' has length {}: the limit is {} (store a longer "
                        "embedding reduced, or as an artifact)", c.name, c.dim, kMaxVectorDim);
        if (c.dtype != DType::Vector) c.dim = 0;
    }

    auto& db = ws_->db();
    storage::Transaction tx(db);
    std::optional<ViewSpec> prev;  // the latest version, retired or not: defining it again brings it back
    {
        auto st = db.prepare("SELECT MAX(version) FROM features_views WHERE name = ?");
        st.bind_all(spec.name);
        if (st.step() && !st.is_null(0)) prev = detail::load_view(*this, spec.name, st.int64(0), true);
    }
    auto write_columns = [&](int64_t version) {
        db.prepare("DELETE FROM features_columns WHERE view = ? AND version = ?").bind_all(spec.name, version).run();
        for (size_t i = 0; i < spec.features.size(); ++i) {
            const auto& c = spec.features[i];
            db.prepare("INSERT INTO features_columns(view, version, position, name, dtype, dim, pii) "
                       "VALUES(?, ?, ?, ?, ?, ?, ?)")
                .bind_all(spec.name, version, int64_t(i), c.name, std::string(dtype_name(c.dtype)), int64_t(c.dim),
                          int64_t(c.pii))
                .run();
        }
    };
    int64_t now = now_ms();
    if (prev && incompatibility(*prev, spec).empty()) {
        spec.version = prev->version;
        // Compatible: keep the column order of the stored version, new columns at the end.
        std::vector<ColumnSpec> ordered;
        for (const auto& old : prev->features) ordered.push_back(*spec.feature(old.name));
        for (const auto& c : spec.features)
            if (!prev->feature(c.name)) ordered.push_back(c);
        spec.features = ordered;
        db.prepare("UPDATE features_views SET ttl_ms = ?, owner = ?, description = ?, tags = ?, updated_at = ?, "
                   "join_keys = ? WHERE name = ? AND version = ?")
            .bind_all(spec.ttl_ms, spec.owner, spec.description, encode_tags(spec.tags), now,
                      encode_keys(spec.join_keys), spec.name, spec.version)
            .run();
        write_columns(spec.version);
    } else {
        spec.version = prev ? prev->version + 1 : 1;
        db.prepare("INSERT INTO features_views(name, version, entities, ttl_ms, owner, description, tags, "
                   "event_column, created_column, created_at, updated_at, created_by, join_keys) "
                   "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind_all(spec.name, spec.version, join_lines(spec.entities), spec.ttl_ms, spec.owner, spec.description,
                      encode_tags(spec.tags), spec.event_column, spec.created_column, now, now, ws_->user(),
                      encode_keys(spec.join_keys))
            .run();
        write_columns(spec.version);
    }
    // A retired view is live again, with every version it had.
    db.prepare("UPDATE features_views SET retired_at = NULL, retired_by = NULL WHERE name = ? AND retired_at IS NOT NULL")
        .bind_all(spec.name)
        .run();
    tx.commit();
    std::map<std::string, std::string> tags = spec.tags;
    tags["version"] = std::to_string(spec.version);
    tags["state"] = "live";
    detail::lineage_node(*this, "feature_view:" + spec.name, spec.owner, spec.description, tags);
    return spec;
}

ViewSpec FeatureStore::view(const std::string& name, std::optional<int64_t> version) {
    return detail::load_view(*this, name, version, false);
}

ViewSpec FeatureStore::recorded_view(const std::string& name, int64_t version) {
    return detail::load_view(*this, name, version, true);
}

namespace detail {

std::string Retirement::text() const { return fmt::format("{} at {}", by, utc_text(at_ms)); }

std::optional<Retirement> retirement(FeatureStore& store, const std::string& name) {
    auto& db = store.workspace().db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT retired_by, retired_at FROM features_views WHERE name = ? AND retired_at IS NOT NULL "
                         "ORDER BY version DESC LIMIT 1");
    st.bind_all(name);
    if (!st.step()) return std::nullopt;
    return Retirement{st.text(0), st.int64(1)};
}

std::string live_view_names(FeatureStore& store) {
    auto names = first_column(store.workspace().db(),
                              "SELECT DISTINCT name FROM features_views WHERE retired_at IS NULL ORDER BY name");
    return names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
}

ViewSpec load_view(FeatureStore& store, const std::string& name, std::optional<int64_t> version,
                   bool include_retired) {
    auto& db = store.workspace().db();
    auto guard = db.lock();
    if (!include_retired)
        if (auto r = retirement(store, name))
            throw_error(ErrorKind::NotFound, "feature view '{}' was retired by {}; define it again to bring it back",
                        name, r->text());
    ViewSpec v;
    std::string keys;
    {
        constexpr const char* kColumns = "SELECT name, version, entities, ttl_ms, owner, description, tags, "
                                         "event_column, created_column, join_keys FROM features_views WHERE name = ? ";
        auto st = version ? db.prepare(std::string(kColumns) + "AND version = ?")
                          : db.prepare(std::string(kColumns) + "ORDER BY version DESC LIMIT 1");
        st.bind(1, name);
        if (version) st.bind(2, *version);
        if (!st.step()) {
            if (version)
                throw_error(ErrorKind::NotFound, "feature view '{}' has no version {}", name, *version);
            throw_error(ErrorKind::NotFound, "feature view '{}' not found (known: {})", name, live_view_names(store));
        }
        v.name = st.text(0);
        v.version = st.int64(1);
        v.entities = split_lines(st.text(2));
        v.ttl_ms = st.int64(3);
        v.owner = st.text(4);
        v.description = st.text(5);
        v.tags = decode_tags(st.text(6));
        v.event_column = st.text(7);
        v.created_column = st.text(8);
        keys = st.text(9);
    }
    {
        auto st = db.prepare("SELECT name, dtype, dim, pii FROM features_columns WHERE view = ? AND version = ? "
                             "ORDER BY position");
        st.bind_all(v.name, v.version);
        while (st.step())
            v.features.push_back({st.text(0), parse_dtype(st.text(1)), uint32_t(st.int64(2)), st.int64(3) != 0});
    }
    if (!keys.empty()) {
        v.join_keys = decode_keys(keys);
    } else {  // written before versions recorded their keys
        for (const auto& en : v.entities) {
            auto e = store.entity(en);
            v.join_keys.insert(v.join_keys.end(), e.join_keys.begin(), e.join_keys.end());
        }
    }
    return v;
}

} // namespace detail

ViewInfo FeatureStore::info(const std::string& name) {
    ViewInfo info;
    info.spec = view(name);
    auto& db = ws_->db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT COUNT(*), COALESCE(SUM(rows), 0), MAX(max_event_ms), MAX(created_at) "
                         "FROM features_segments WHERE view = ? AND version = ?");
    st.bind_all(name, info.spec.version);
    if (st.step()) {
        info.segments = st.int64(0);
        info.rows = st.int64(1);
        info.last_event_ms = st.opt_int64(2);
        info.last_ingest_ms = st.opt_int64(3);
    }
    auto on = db.prepare("SELECT end_ms, online FROM features_online WHERE view = ? AND version = ? "
                         "ORDER BY id DESC LIMIT 1");
    on.bind_all(name, info.spec.version);
    if (on.step()) {
        info.materialized_end_ms = on.int64(0);
        info.online = on.text(1);
    }
    return info;
}

std::vector<ViewInfo> FeatureStore::list() {
    std::vector<ViewInfo> out;
    for (const auto& n :
         first_column(ws_->db(), "SELECT DISTINCT name FROM features_views WHERE retired_at IS NULL ORDER BY name")) {
        try {
            out.push_back(info(n));
        } catch (const Error& e) {
            if (e.kind() != ErrorKind::NotFound) throw;  // retired by another process meanwhile
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Segments and keys

std::shared_ptr<const Segment> FeatureStore::segment(int64_t id) {
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->segments.find(id);
        if (it != impl_->segments.end()) return it->second;
    }
    std::string file;
    {
        auto guard = ws_->db().lock();
        auto st = ws_->db().prepare("SELECT file FROM features_segments WHERE id = ?");
        st.bind_all(id);
        if (!st.step()) throw_error(ErrorKind::NotFound, "feature segment {} not found", id);
        file = st.text(0);
    }
    auto seg = detail::open_segment_file(*ws_, file);
    std::lock_guard lock(impl_->mu);
    return impl_->segments.emplace(id, seg).first->second;
}

namespace detail {

std::vector<SegRef> list_segments(FeatureStore& store, const ViewSpec& spec, std::optional<int64_t> max_id) {
    std::vector<int64_t> ids;
    {
        auto& db = store.workspace().db();
        auto guard = db.lock();
        auto st = db.prepare("SELECT id FROM features_segments WHERE view = ? AND version = ? AND id <= ? ORDER BY id");
        st.bind_all(spec.name, spec.version, max_id.value_or(INT64_MAX));
        while (st.step()) ids.push_back(st.int64(0));
    }
    std::vector<SegRef> out;
    for (int64_t id : ids) {
        out.push_back({id, store.segment(id)});
        check_segment_columns(*out.back().seg, spec);
    }
    return out;
}

void check_segment_columns(const Segment& seg, const ViewSpec& spec) {
    std::vector<ColumnSpec> required = spec.join_keys;
    required.push_back({spec.event_column, DType::Timestamp});
    required.push_back({spec.created_column, DType::Timestamp});
    seg.check_columns(required, spec.features);
}

int64_t max_segment_id(FeatureStore& store, const ViewSpec& spec) {
    auto& db = store.workspace().db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT COALESCE(MAX(id), 0) FROM features_segments WHERE view = ? AND version = ?");
    st.bind_all(spec.name, spec.version);
    st.step();
    return st.int64(0);
}

namespace {

void encode_part(std::string& out, const ColumnView& col, size_t row) {
    if (col.dtype == DType::Int64) {
        uint64_t v = uint64_t(static_cast<const int64_t*>(col.values)[row]) ^ (uint64_t(1) << 63);
        out += 'i';
        for (int s = 56; s >= 0; s -= 8) out += char((v >> s) & 0xff);
    } else {
        int64_t a = col.offsets[row], b = col.offsets[row + 1];
        uint32_t len = uint32_t(b - a);
        out += 's';
        for (int s = 24; s >= 0; s -= 8) out += char((len >> s) & 0xff);
        out.append(static_cast<const char*>(col.values) + a, size_t(b - a));
    }
}

RowKeys keys_of(const ViewSpec& spec, const BatchView& batch, const char* what) {
    RowKeys keys;
    std::vector<const ColumnView*> cols;
    for (const auto& k : spec.join_keys) {
        const ColumnView* c = batch.find(k.name);
        if (!c)
            throw_error(ErrorKind::InvalidArgument, "{} lack the join key column '{}' of feature view '{}'", what,
                        k.name, spec.name);
        if (c->dtype != k.dtype)
            throw_error(ErrorKind::InvalidArgument, "join key '{}' in {} has type {}, feature view '{}' expects {}",
                        k.name, what, dtype_name(c->dtype), spec.name, dtype_name(k.dtype));
        cols.push_back(c);
    }
    bool any_null = false;
    for (auto* c : cols) any_null |= first_invalid(*c, batch.rows) >= 0;
    if (any_null) {
        keys.valid.assign(batch.rows, 1);
        for (auto* c : cols)
            if (c->valid)
                for (size_t i = 0; i < batch.rows; ++i) keys.valid[i] &= c->valid[i] ? 1 : 0;
    }
    if (spec.int_key()) {
        keys.is_int = true;
        keys.ints = static_cast<const int64_t*>(cols[0]->values);
        return keys;
    }
    keys.owned.resize(batch.rows);
    for (size_t i = 0; i < batch.rows; ++i)
        for (auto* c : cols) encode_part(keys.owned[i], *c, i);
    keys.strs = &keys.owned;
    return keys;
}

} // namespace

RowKeys batch_keys(const ViewSpec& spec, const BatchView& batch, const char* what) { return keys_of(spec, batch, what); }

RowKeys segment_keys(FeatureStore& store, const ViewSpec& spec, int64_t seg_id, const Segment& seg) {
    if (spec.int_key()) return keys_of(spec, seg.batch(), "segment");
    auto& impl = store.impl();
    {
        std::lock_guard lock(impl.mu);
        auto it = impl.encoded_keys.find(seg_id);
        if (it != impl.encoded_keys.end()) {
            RowKeys keys;
            keys.hold = it->second;
            keys.strs = it->second.get();
            return keys;
        }
    }
    RowKeys built = keys_of(spec, seg.batch(), "segment");
    auto shared = std::make_shared<const std::vector<std::string>>(std::move(built.owned));
    std::lock_guard lock(impl.mu);
    impl.encoded_keys[seg_id] = shared;
    RowKeys keys;
    keys.hold = shared;
    keys.strs = shared.get();
    return keys;
}

} // namespace detail
std::vector<std::string> detail::split_lines(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) out.push_back(line);
    return out;
}

} // namespace keel::features

// core/features/training_specs.cpp: training specs (Feast's feature services): a named list of
// "view:column" features that training sets and endpoints are built from, one row per revision in
// features_training_specs. A removed spec keeps its rows (removed_at set on the newest), so defining
// it again continues its revision numbers.
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/common/names.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"
#include "store_impl.hpp"

#include <set>
#include <sstream>

namespace keel::features {

namespace {

constexpr const char* kSelect =
    "SELECT name, revision, features, description, owner, tags, created_at, created_by, removed_at, removed_by "
    "FROM features_training_specs ";

struct Row {
    TrainingSpec spec;
    std::optional<int64_t> removed_at;
    std::string removed_by;
};

Row read_row(storage::Stmt& st) {
    Row r;
    r.spec.name = st.text(0);
    r.spec.revision = st.int64(1);
    r.spec.features = detail::split_lines(st.text(2));
    r.spec.description = st.text(3);
    r.spec.owner = st.text(4);
    r.spec.tags = detail::decode_tags(st.text(5));
    r.spec.created_at_ms = st.int64(6);
    r.spec.created_by = st.text(7);
    r.removed_at = st.opt_int64(8);
    if (r.removed_at) r.removed_by = st.text(9);
    return r;
}

// The newest revision of `name`, removed or not.
std::optional<Row> newest(storage::Db& db, const std::string& name) {
    auto guard = db.lock();
    auto st = db.prepare(std::string(kSelect) + "WHERE name = ? ORDER BY revision DESC LIMIT 1");
    st.bind_all(name);
    if (!st.step()) return std::nullopt;
    return read_row(st);
}

std::string known_specs(storage::Db& db) {
    auto guard = db.lock();
    auto st = db.prepare("SELECT name FROM features_training_specs s WHERE removed_at IS NULL AND revision = "
                         "(SELECT MAX(revision) FROM features_training_specs WHERE name = s.name) ORDER BY name");
    std::vector<std::string> names;
    while (st.step()) names.push_back(st.text(0));
    return names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
}

std::string joined_lines(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& s : items) out += s + '\n';
    return out;
}

// NotFound naming the feature and what exists instead, unless `feature` is a column of a live view.
void check_feature(FeatureStore& store, const std::string& spec_name, const std::string& feature) {
    FeatureRef ref = FeatureRef::parse(feature);
    ViewSpec view;
    try {
        view = store.view(ref.view);
    } catch (const Error& e) {
        if (e.kind() != ErrorKind::NotFound) throw;
        throw_error(ErrorKind::NotFound, "training spec '{}': feature '{}': {}", spec_name, feature, e.what());
    }
    if (view.feature(ref.column)) return;
    std::vector<std::string> columns;
    for (const auto& c : view.features) columns.push_back(c.name);
    throw_error(ErrorKind::NotFound, "training spec '{}': feature '{}': feature view '{}' has no column '{}' (its "
                "columns: {})", spec_name, feature, ref.view, ref.column, fmt::join(columns, ", "));
}

} // namespace

TrainingSpec FeatureStore::define_training_spec(const TrainingSpec& input) {
    keel::check_name(input.name, "training spec", "churn_features");
    if (input.features.empty())
        throw_error(ErrorKind::InvalidArgument,
                    "training spec '{}' needs at least one feature (\"view:column\")", input.name);
    std::set<std::string> seen;
    for (const auto& f : input.features) {
        if (!seen.insert(f).second)
            throw_error(ErrorKind::InvalidArgument, "feature '{}' appears twice in training spec '{}'", f, input.name);
        check_feature(*this, input.name, f);
    }
    auto& db = ws_->db();
    storage::Transaction tx(db);
    auto cur = newest(db, input.name);
    if (cur && !cur->removed_at && cur->spec.features == input.features &&
        cur->spec.description == input.description && cur->spec.owner == input.owner && cur->spec.tags == input.tags)
        return cur->spec;  // unchanged: no new revision
    TrainingSpec out = input;
    out.revision = cur ? cur->spec.revision + 1 : 1;
    out.created_at_ms = now_ms();
    out.created_by = ws_->user();
    db.prepare("INSERT INTO features_training_specs(name, revision, features, description, owner, tags, created_at, "
               "created_by) VALUES(?, ?, ?, ?, ?, ?, ?, ?)")
        .bind_all(out.name, out.revision, joined_lines(out.features), out.description, out.owner,
                  detail::encode_tags(out.tags), out.created_at_ms, out.created_by)
        .run();
    tx.commit();
    return out;
}

TrainingSpec FeatureStore::training_spec(const std::string& name) {
    auto& db = ws_->db();
    auto cur = newest(db, name);
    if (!cur)
        throw_error(ErrorKind::NotFound, "training spec '{}' not found (known: {}): define it with "
                    "ws.features.training_spec('{}', features=[...])", name, known_specs(db), name);
    if (cur->removed_at)
        throw_error(ErrorKind::NotFound, "training spec '{}' was removed by {} at {} (known: {}): define it again "
                    "to bring it back", name, cur->removed_by, utc_text(*cur->removed_at), known_specs(db));
    return cur->spec;
}

std::vector<TrainingSpec> FeatureStore::training_specs() {
    auto& db = ws_->db();
    auto guard = db.lock();
    auto st = db.prepare(std::string(kSelect) + "s WHERE removed_at IS NULL AND revision = (SELECT MAX(revision) FROM "
                         "features_training_specs WHERE name = s.name) ORDER BY name");
    std::vector<TrainingSpec> out;
    while (st.step()) out.push_back(read_row(st).spec);
    return out;
}

void FeatureStore::remove_training_spec(const std::string& name) {
    auto& db = ws_->db();
    storage::Transaction tx(db);
    TrainingSpec cur = training_spec(name);  // NotFound naming the known specs
    db.prepare("UPDATE features_training_specs SET removed_at = ?, removed_by = ? WHERE name = ? AND revision = ?")
        .bind_all(now_ms(), ws_->user(), name, cur.revision)
        .run();
    tx.commit();
}

} // namespace keel::features

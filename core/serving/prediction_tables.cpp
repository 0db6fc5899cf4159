// core/serving/prediction_tables.cpp
#include "keel/serving/prediction_tables.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/common/names.hpp"
#include "keel/registry/registry.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"

#include <algorithm>

namespace keel::serving {

namespace {

const storage::ModuleSchema kSchema{"prediction_tables", {R"(
CREATE TABLE serving_prediction_tables (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    model TEXT NOT NULL,
    view TEXT NOT NULL,
    score INTEGER NOT NULL,
    items INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    written_at INTEGER NOT NULL,
    written_by TEXT NOT NULL,
    PRIMARY KEY (name, version));
)"}};

constexpr const char* kColumns = "name, version, model, view, score, items, rows, written_at, written_by";
constexpr const char* kTableTag = "predictions.table";

PredictionTable read(storage::Stmt& st) {
    PredictionTable t;
    t.name = st.text(0);
    t.version = st.int64(1);
    t.model = st.text(2);
    t.view = st.text(3);
    t.score = st.int64(4) != 0;
    t.items = int(st.int64(5));
    t.rows = st.int64(6);
    t.written_at = st.int64(7);
    t.written_by = st.text(8);
    return t;
}

std::string listed(const std::vector<PredictionTable>& versions) {
    std::string out;
    for (const auto& t : versions) out += (out.empty() ? "" : ", ") + t.model + "/" + std::to_string(t.version);
    return out.empty() ? "none" : out;
}

} // namespace

std::vector<std::string> PredictionTable::features() const {
    std::vector<std::string> out;
    if (score) out.push_back(view + ":prediction");
    for (int i = 1; i <= items; ++i) out.push_back(view + ":item_" + std::to_string(i));
    return out;
}

const storage::ModuleSchema& PredictionTables::schema() { return kSchema; }

PredictionTables::PredictionTables(storage::Workspace& ws) : ws_(ws) { ws_.db().ensure_schema(kSchema); }

std::string PredictionTables::view_name(std::string_view name, int64_t version) {
    check_name(name, "prediction table", "player_recs");
    return fmt::format("{}.v{}", name, version);
}

void PredictionTables::record(const PredictionTable& t) {
    check_name(t.name, "prediction table", "player_recs");
    if (!t.score && t.items <= 0)
        throw_error(ErrorKind::InvalidArgument, "prediction table '{}' holds neither a 'prediction' column nor "
                    "'items': give one or both", t.name);
    auto& db = ws_.db();
    storage::Transaction tx(db);
    if (auto owner = model_of(t.name); owner && *owner != t.model)
        throw_error(ErrorKind::InvalidArgument, "prediction table '{}' holds predictions of model '{}', not '{}': "
                    "write {}'s predictions to a table of their own", t.name, *owner, t.model, t.model);
    db.prepare(fmt::format("INSERT INTO serving_prediction_tables ({}) VALUES (?,?,?,?,?,?,?,?,?) "
                           "ON CONFLICT(name, version) DO UPDATE SET model = excluded.model, view = excluded.view, "
                           "score = excluded.score, items = excluded.items, rows = excluded.rows, "
                           "written_at = excluded.written_at, written_by = excluded.written_by",
                           kColumns))
        .bind_all(t.name, t.version, t.model, t.view, int64_t(t.score), int64_t(t.items), t.rows, t.written_at,
                  t.written_by)
        .run();
    storage::bump_generation(db);  // endpoints serving "predictions:<name>@alias" look again
    tx.commit();
}

std::optional<std::string> PredictionTables::model_of(std::string_view name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT model FROM serving_prediction_tables WHERE name = ? LIMIT 1");
    st.bind_all(std::string(name));
    if (!st.step()) return std::nullopt;
    return st.text(0);
}

std::vector<PredictionTable> PredictionTables::versions(std::string_view name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare(fmt::format("SELECT {} FROM serving_prediction_tables WHERE name = ? ORDER BY version", kColumns));
    st.bind_all(std::string(name));
    std::vector<PredictionTable> out;
    while (st.step()) out.push_back(read(st));
    return out;
}

std::vector<std::string> PredictionTables::names() {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT DISTINCT name FROM serving_prediction_tables ORDER BY name");
    std::vector<std::string> out;
    while (st.step()) out.push_back(st.text(0));
    return out;
}

std::pair<std::string_view, std::string_view> PredictionTables::split_ref(std::string_view model_ref) {
    const std::string_view ref = model_ref.substr(is_ref(model_ref) ? kPredictionsPrefix.size() : 0);
    const size_t cut = std::min(ref.find_first_of("/@"), ref.size());
    return {ref.substr(0, cut), ref.substr(cut)};
}

registry::ModelVersion PredictionTables::resolve(registry::Registry& registry, std::string_view model_ref) {
    const auto [table_name, selector] = split_ref(model_ref);
    const std::string name(table_name);
    const auto written = versions(name);
    if (written.empty())
        throw_error(ErrorKind::NotFound, "no predictions were written to table '{}' (variant '{}'): write them with "
                    "ws.predictions.write('{}', model_ref, frame)", name, model_ref, name);
    const std::string& model = written.front().model;
    // The version that serves: the newest written, or the one the ref names through the model.
    const PredictionTable* table = &written.back();
    if (!selector.empty()) {
        const auto mv = registry.resolve(model + std::string(selector));
        table = nullptr;
        for (const auto& t : written)
            if (t.version == mv.version) table = &t;
        if (!table)
            throw_error(ErrorKind::NotFound, "{}{} is version {} of '{}', which wrote no predictions to table '{}' "
                        "(written by: {}): run its batch job and ws.predictions.write('{}', '{}', frame)",
                        model, selector, mv.version, model, name, listed(written), name, mv.ref());
    }
    registry::ModelVersion served = registry.version(model, table->version);
    served.flavour = std::string(kPredictionsFlavour);
    served.digest.clear();  // nothing to load: the values are online features
    std::string signature = R"({"inputs": [)";
    const auto names = table->features();
    for (size_t i = 0; i < names.size(); ++i) signature += fmt::format(R"({}{{"name": "{}"}})", i ? ", " : "", names[i]);
    served.signature = signature + "]}";
    served.tags[kTableTag] = name;
    return served;
}

PredictionTable PredictionTables::table_of(const registry::ModelVersion& served) {
    auto it = served.tags.find(kTableTag);
    if (served.flavour != kPredictionsFlavour || it == served.tags.end())
        throw_error(ErrorKind::Internal, "model {} is not a prediction table's", served.ref());
    for (auto& t : versions(it->second))
        if (t.version == served.version) return t;
    throw_error(ErrorKind::NotFound, "table '{}' holds no predictions of {}", it->second, served.ref());
}

} // namespace keel::serving

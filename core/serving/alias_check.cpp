// core/serving/alias_check.cpp
#include "keel/serving/alias_check.hpp"

#include "keel/common/error.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/definition_check.hpp"
#include "keel/serving/endpoint_definition.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/serving/prediction_tables.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"

#include <optional>

namespace keel::serving {

namespace {

// check_alias_move over the endpoints named; `target`: the version's record when already read.
void check_endpoints(storage::Workspace& ws, registry::Registry& registry, std::string_view model,
                     std::string_view alias, int64_t version, const std::vector<std::string>& endpoints,
                     std::optional<registry::ModelVersion> target) {
    EndpointStore store(ws);
    PredictionTables tables(ws);
    const std::string moved = fmt::format("{}@{}", model, alias), selector_moved = fmt::format("@{}", alias);
    for (const auto& name : endpoints) {
        const EndpointDefinition d = store.current(name).definition;
        // A variant follows the alias directly ("churn@champion") or through the prediction table
        // its versions write ("predictions:player_recs@champion").
        auto follows = [&](const EndpointVariant& v) {
            if (v.model == moved) return true;
            if (!PredictionTables::is_ref(v.model)) return false;
            const auto [table, selector] = PredictionTables::split_ref(v.model);
            return selector == selector_moved && tables.model_of(table) == model;
        };
        bool serves = false;
        for (const auto& v : d.variants) serves |= follows(v);
        if (!serves) continue;
        if (!target) target = registry.version(model, version);
        std::vector<ServedModel> models;
        for (const auto& v : d.variants) {
            if (!follows(v)) {
                models.push_back(served_model(resolve_variant(ws, registry, v.model)));
            } else if (v.model == moved) {
                models.push_back(served_model(*target));
            } else {  // the table must hold the new version's predictions before the alias moves
                const auto table = PredictionTables::split_ref(v.model).first;
                try {
                    models.push_back(served_model(
                        tables.resolve(registry, fmt::format("{}{}/{}", kPredictionsPrefix, table, version))));
                } catch (const Error& e) {
                    if (e.kind() != ErrorKind::NotFound) throw;
                    throw_error(ErrorKind::Conflict, "moving {} to version {} would break endpoint '{}': {}", moved,
                                version, name, e.what());
                }
            }
        }
        try {
            plan_inputs(name, d, models);
        } catch (const Error& err) {
            if (err.kind() != ErrorKind::InvalidArgument) throw;
            try {  // blame the move only when the endpoint can feed what the alias points at today
                check_models(ws, registry, name, d);
            } catch (const Error& today) {
                if (today.kind() == ErrorKind::InvalidArgument || today.kind() == ErrorKind::NotFound) continue;
                throw;
            }
            throw_error(ErrorKind::Conflict,
                        "moving {} to version {} would break endpoint '{}': {}. Change the endpoint first "
                        "(features=/inputs=), or serve the new version under another alias",
                        moved, version, name, err.what());
        }
    }
}

} // namespace

void check_alias_move(storage::Workspace& ws, std::string_view model, std::string_view alias, int64_t version) {
    registry::Registry registry(ws);
    // One state for the whole check, as move_alias has; rolled back (it writes nothing).
    storage::Transaction tx(ws.db(), storage::Transaction::Unannounced);
    check_endpoints(ws, registry, model, alias, version, EndpointStore(ws).names(), std::nullopt);
}

registry::ModelVersion move_alias(storage::Workspace& ws, registry::Registry& registry, std::string_view model,
                                  std::string_view alias, int64_t version) {
    storage::Transaction tx(ws.db());
    auto endpoints = EndpointStore(ws).query_names();  // arrives with the registry's read: one wait for both
    auto moved = registry.set_alias(model, alias, version, [&](const registry::ModelVersion& target) {
        check_endpoints(ws, registry, model, alias, version, EndpointStore::names(endpoints), target);
    });
    tx.commit();
    return moved;
}

} // namespace keel::serving

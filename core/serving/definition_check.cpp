// core/serving/definition_check.cpp
#include "keel/serving/definition_check.hpp"

#include "json_value.hpp"

#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/plugins/router.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/endpoint_definition.hpp"
#include "keel/serving/input_plan.hpp"
#include "keel/serving/prediction_tables.hpp"

#include <fmt/ranges.h>

#include <algorithm>

namespace keel::serving {

namespace {

bool numeric(features::DType t) { return t != features::DType::String && t != features::DType::Vector; }

std::vector<std::string> column_names(const features::ViewSpec& view) {
    std::vector<std::string> out;
    for (const auto& c : view.features) out.push_back(c.name);
    return out;
}

} // namespace

void expand_features(features::FeatureStore& store, EndpointDefinition& definition) {
    std::vector<std::string> out;
    for (const auto& f : definition.features) {
        auto colon = f.find(':');
        if (colon == std::string::npos) {  // a bare view: every numeric feature, in schema order
            auto view = store.view(f);
            size_t before = out.size();
            for (const auto& c : view.features)
                if (numeric(c.dtype)) out.push_back(f + ":" + c.name);
            if (out.size() == before)
                throw_error(ErrorKind::InvalidArgument, "feature view '{}' has no numeric feature to serve (columns: {})",
                            f, fmt::join(column_names(view), ", "));
            continue;
        }
        auto ref = features::FeatureRef::parse(f);
        auto view = store.view(ref.view);
        if (!view.feature(ref.column))
            throw_error(ErrorKind::InvalidArgument, "features= names '{}', but view '{}' has no feature '{}' (features: {})",
                        f, ref.view, ref.column, fmt::join(column_names(view), ", "));
        out.push_back(f);
    }
    definition.features = std::move(out);
}

std::string entity_key(features::FeatureStore& store, const EndpointDefinition& definition,
                       const std::vector<std::string>& features) {
    if (!definition.key.empty()) return definition.key;
    if (!features.empty()) {
        const auto& first = features.front();
        auto view = store.view(first.substr(0, first.find(':')));
        if (!view.join_keys.empty()) return view.join_keys.front().name;
    }
    return "user_id";
}

std::vector<std::string> model_input_names(const registry::ModelVersion& version) {
    if (version.signature.empty()) return {};
    auto sig = detail::parse_json(version.signature, fmt::format("the signature of model {}", version.ref()));
    const plugins::Value* inputs = sig.find("inputs");
    if (!inputs || !inputs->is_array()) return {};
    std::vector<std::string> out;
    for (const auto& col : inputs->array()) {
        const plugins::Value* name = col.find("name");
        if (name && name->is_string()) out.push_back(name->str());
        else if (name && std::holds_alternative<int64_t>(name->data)) out.push_back(std::to_string(std::get<int64_t>(name->data)));
        else out.emplace_back();  // unnamed: the plan asks for signature=
    }
    return out;
}

std::shared_ptr<const InputPlan> plan_inputs(std::string_view endpoint, const EndpointDefinition& definition,
                                             const std::vector<ServedModel>& models) {
    if (models.size() != definition.variants.size())
        throw_error(ErrorKind::InvalidArgument, "endpoint '{}' has {} variants but {} models were given", endpoint,
                    definition.variants.size(), models.size());
    InputSpec spec{std::string(endpoint), definition.features, definition.inputs, definition.on_missing,
                   definition.defaults};
    for (const auto& m : models)
        if (m.table)
            for (const auto& f : m.names)
                if (std::find(spec.features.begin(), spec.features.end(), f) == spec.features.end())
                    spec.features.push_back(f);
    std::vector<ModelInputs> variants;
    for (size_t i = 0; i < models.size(); ++i) {
        const auto& v = definition.variants[i];
        variants.push_back({v.name, models[i].ref, models[i].names, definition.declared(v), models[i].table});
    }
    return std::make_shared<const InputPlan>(std::move(spec), std::move(variants));
}

ServedModel served_model(const registry::ModelVersion& version) {
    return {version.ref(), model_input_names(version), version.flavour == kPredictionsFlavour};
}

registry::ModelVersion resolve_variant(storage::Workspace& ws, registry::Registry& registry, std::string_view ref) {
    if (PredictionTables::is_ref(ref)) return PredictionTables(ws).resolve(registry, ref);
    return registry.resolve(ref);
}

std::vector<registry::ModelVersion> resolve_variants(storage::Workspace& ws, registry::Registry& registry,
                                                     const EndpointDefinition& definition) {
    std::vector<registry::ModelVersion> out;
    for (const auto& v : definition.variants) out.push_back(resolve_variant(ws, registry, v.model));
    return out;
}

std::vector<registry::ModelVersion> check_models(storage::Workspace& ws, registry::Registry& registry,
                                                 std::string_view endpoint, const EndpointDefinition& definition) {
    auto versions = resolve_variants(ws, registry, definition);
    std::vector<ServedModel> models;
    for (const auto& mv : versions) models.push_back(served_model(mv));
    plan_inputs(endpoint, definition, models);
    return versions;
}

std::vector<registry::ModelVersion> check_definition(storage::Workspace& ws, std::string_view endpoint,
                                                     const EndpointDefinition& definition) {
    plugins::RouterConfig config;
    config.plugin = definition.routing;
    for (const auto& v : definition.variants) config.variants.push_back({v.name, v.weight});
    config.default_variant = definition.default_variant;
    config.config = definition.config;
    config.name = std::string(endpoint);
    plugins::Router router(std::move(config));  // loads the plugin: a plugin that does not load is refused now
    registry::Registry registry(ws);
    return check_models(ws, registry, endpoint, definition);
}

} // namespace keel::serving

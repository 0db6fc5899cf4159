// core/include/keel/serving/definition_check.hpp
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace keel::storage {
class Workspace;
}
namespace keel::features {
class FeatureStore;
}
namespace keel::registry {
class Registry;
struct ModelVersion;
}

namespace keel::serving {

class InputPlan;
struct EndpointDefinition;

//! Replaces each bare view name in `definition.features` by every numeric feature of the view
//! ("view:column", in schema order) and checks that each "view:column" names a feature of its view.
//! NotFound naming an unknown view; InvalidArgument for an unknown column or a view with no numeric
//! feature.
void expand_features(features::FeatureStore& store, EndpointDefinition& definition);

//! The request field an endpoint's entity key (and sticky routing key) is read from: `key=` when
//! given, else the first join key of the first view it reads online (`features`: the served ones,
//! InputSpec::features, which add the prediction tables' views), else "user_id".
std::string entity_key(features::FeatureStore& store, const EndpointDefinition& definition,
                       const std::vector<std::string>& features);

//! The input names a model version's signature declares (`{"inputs": [{"name": ...}, ...]}`), in
//! order; empty when the version has no signature or it lists no inputs.
std::vector<std::string> model_input_names(const registry::ModelVersion& version);

//! One variant's model as served: its resolved ref ("churn/3") and its input names. A prediction
//! table's inputs are its own online features ("player_recs.v3:prediction"), which the endpoint
//! reads beside the definition's.
struct ServedModel {
    std::string ref;
    std::vector<std::string> names;
    bool table = false;
};
//! The ServedModel of a resolved version (a prediction table's when its flavour says so).
ServedModel served_model(const registry::ModelVersion& version);

//! The input plan of `definition` with `models[i]` serving variant i: InvalidArgument naming the
//! endpoint, variant, model and the missing and extra inputs when a model cannot be fed. Its
//! spec().features are the definition's followed by the prediction tables' (each once).
std::shared_ptr<const InputPlan> plan_inputs(std::string_view endpoint, const EndpointDefinition& definition,
                                             const std::vector<ServedModel>& models);

//! One variant's model ref resolved now: an alias to the version it points at, a prediction table
//! ref ("predictions:player_recs@champion") to the version that wrote the table's values served.
//! NotFound naming a ref that does not resolve.
registry::ModelVersion resolve_variant(storage::Workspace& ws, registry::Registry& registry, std::string_view ref);
//! resolve_variant() of every variant, in variant order.
std::vector<registry::ModelVersion> resolve_variants(storage::Workspace& ws, registry::Registry& registry,
                                                     const EndpointDefinition& definition);

//! The models resolve now and `definition`'s features and request fields feed every one of them.
//! Returns the versions served.
std::vector<registry::ModelVersion> check_models(storage::Workspace& ws, registry::Registry& registry,
                                                 std::string_view endpoint, const EndpointDefinition& definition);

//! Everything a definition must pass before it is saved: the routing plugin loads with these
//! variants, default and config (PluginError / InvalidArgument), and check_models(). `definition`'s
//! features must already be expanded. Returns the versions served.
std::vector<registry::ModelVersion> check_definition(storage::Workspace& ws, std::string_view endpoint,
                                                     const EndpointDefinition& definition);

} // namespace keel::serving

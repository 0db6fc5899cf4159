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
//! given, else the first join key of the first view it reads online, else "user_id".
std::string entity_key(features::FeatureStore& store, const EndpointDefinition& definition);

//! The input names a model version's signature declares (`{"inputs": [{"name": ...}, ...]}`), in
//! order; empty when the version has no signature or it lists no inputs.
std::vector<std::string> model_input_names(const registry::ModelVersion& version);

//! One variant's model as served: its resolved ref ("churn/3") and its input names.
struct ServedModel {
    std::string ref;
    std::vector<std::string> names;
};

//! The input plan of `definition` with `models[i]` serving variant i: InvalidArgument naming the
//! endpoint, variant, model and the missing and extra inputs when a model cannot be fed.
std::shared_ptr<const InputPlan> plan_inputs(std::string_view endpoint, const EndpointDefinition& definition,
                                             const std::vector<ServedModel>& models);

//! Every variant's model ref resolved now (an alias to the version it points at), in variant order.
//! NotFound naming a ref that does not resolve.
std::vector<registry::ModelVersion> resolve_variants(registry::Registry& registry,
                                                     const EndpointDefinition& definition);

//! The models resolve now and `definition`'s features and request fields feed every one of them.
//! Returns the versions served.
std::vector<registry::ModelVersion> check_models(registry::Registry& registry, std::string_view endpoint,
                                                 const EndpointDefinition& definition);

//! Everything a definition must pass before it is saved: the routing plugin loads with these
//! variants, default and config (PluginError / InvalidArgument), and check_models(). `definition`'s
//! features must already be expanded. Returns the versions served.
std::vector<registry::ModelVersion> check_definition(storage::Workspace& ws, std::string_view endpoint,
                                                     const EndpointDefinition& definition);

} // namespace keel::serving

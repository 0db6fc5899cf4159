// core/include/keel/serving/endpoint_definition.hpp
#pragma once

#include "keel/plugins/value.hpp"
#include "keel/serving/on_missing.hpp"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::serving {

//! One variant of an endpoint: a name, the model ref it serves (an alias ref follows the alias), its
//! routing weight and, for a model fitted without column names, the names of its inputs in order.
struct EndpointVariant {
    std::string name;
    std::string model;                   //!< "churn@champion", "churn/3", "churn"
    double weight = 1.0;
    std::vector<std::string> signature;  //!< empty: the endpoint's signature, else the model's own names
    bool operator==(const EndpointVariant&) const = default;
};

//! What an endpoint is: the routing plugin and its variants, the online features and request fields
//! its models read, and what to do about inputs without a fresh value. The one form every caller
//! (Python, the CLI, a server) reads and writes; stored as to_json().
struct EndpointDefinition {
    std::string routing;                  //!< routing plugin ("plugins/routing/sticky.lua")
    std::vector<EndpointVariant> variants;
    std::vector<std::string> features;    //!< online features "view:column" ("view" until expand_features)
    std::vector<std::string> inputs;      //!< request fields fed to the models
    std::string default_variant;          //!< served when routing fails; "" means the first variant
    plugins::Value config = plugins::Value::Map{};  //!< ctx.config of the routing plugin (a map, keys sorted)
    std::string key;                      //!< sticky/entity key field; "" means the first view's join key
    std::string tenant_field = "tenant";  //!< request field logged as the tenant
    //! Tenants that may call the endpoint through a server (a token's tenant claim), sorted; empty:
    //! any caller. In process, the caller is trusted and this is not checked.
    std::vector<std::string> tenants;
    std::string output = "auto";          //!< "auto", "proba" or "predict"
    //! Share of answers (0..1) logged with their model inputs in the prediction log, for drift checks
    //! and debugging; every answer is logged without them.
    double log_inputs = 0;
    OnMissing on_missing = OnMissing::Error;
    std::vector<std::pair<std::string, double>> defaults;  //!< model input -> value (on_missing "default"), sorted
    std::vector<std::string> signature;   //!< input names for every variant without its own signature

    //! Checks and normalizes a whole definition given as data (a map): the keys model= (one model,
    //! variant "main") or variants= ({name: ref | [ref, weight] | {model, weight, signature}} or a list
    //! of [name, ref, weight] / {name, model, weight, signature}), routing= (required with more than one
    //! variant), features=, inputs=, on_missing=, defaults=, signature=, default=, config=, key=,
    //! tenant_field=, tenants=, output=, log_inputs=. A null value is as if the key were absent. InvalidArgument names the
    //! key, the value and what is expected; unknown keys are refused.
    static EndpointDefinition from_value(const plugins::Value& definition);
    //! from_value() of JSON text (a stored revision or a request body).
    static EndpointDefinition from_json(std::string_view json);
    //! A partial update over `saved` (null: none saved yet): fields not given keep their saved values,
    //! model= replaces the saved variants, variants= replaces them all. The result is checked as a
    //! whole by from_value().
    static EndpointDefinition update(const EndpointDefinition* saved, const plugins::Value& given);

    //! The same definition with some variants' weights changed; InvalidArgument naming an unknown
    //! variant (and the known ones).
    EndpointDefinition with_weights(const std::vector<std::pair<std::string, double>>& weights) const;

    //! The canonical form: every field, keys sorted (variants keep their order). Equal definitions
    //! give equal text, so saving an unchanged definition is recognised as no change.
    plugins::Value to_value() const;
    std::string to_json() const;

    //! The feature views read online, sorted, each once.
    std::vector<std::string> views() const;
    //! The input names declared for `variant` (its own signature, else the endpoint's).
    const std::vector<std::string>& declared(const EndpointVariant& variant) const;

    bool operator==(const EndpointDefinition& other) const;
};

} // namespace keel::serving

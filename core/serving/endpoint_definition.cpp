// core/serving/endpoint_definition.cpp
#include "keel/serving/endpoint_definition.hpp"

#include "json_value.hpp"

#include "keel/common/error.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace keel::serving {

namespace {

using plugins::Value;

// One variant: the plugin only names it, so no routing= is needed.
constexpr const char* kSingleRouting = "plugins/routing/weighted.lua";

constexpr const char* kKeys[] = {"config", "default", "defaults", "features", "inputs", "key", "log_inputs",
                                 "model", "on_missing", "output", "routing", "signature", "tenant_field", "tenants", "variants"};

// A value as the user wrote it, short enough for a message.
std::string describe(const Value& v) {
    std::string text;
    try {
        text = detail::dump_json(v, "value");
    } catch (const Error&) {
        text = "a non-finite number";
    }
    return text.size() > 80 ? text.substr(0, 77) + "..." : text;
}

// The entry `key` of a map, treating null as absent (Python's `d.get(key) or default`).
const Value* given(const Value& map, std::string_view key) {
    const Value* v = map.find(key);
    return v && !v->is_null() ? v : nullptr;
}

// A value that Python's truthiness treats as "not given": null, "", [], {}.
bool empty_value(const Value* v) {
    if (!v || v->is_null()) return true;
    if (v->is_string()) return v->str().empty();
    if (v->is_array()) return v->array().empty();
    if (v->is_map()) return v->map().empty();
    return false;
}

std::string text_field(const Value& d, std::string_view key, std::string fallback) {
    const Value* v = given(d, key);
    if (!v) return fallback;
    if (!v->is_string())
        throw_error(ErrorKind::InvalidArgument, "{}= must be a string, got {}", key, describe(*v));
    return v->str().empty() ? fallback : v->str();
}

std::vector<std::string> string_list(const Value& list, std::string_view what) {
    if (!list.is_array())
        throw_error(ErrorKind::InvalidArgument, "{} must be a list of strings, got {}", what, describe(list));
    std::vector<std::string> out;
    for (const auto& e : list.array()) {
        if (!e.is_string())
            throw_error(ErrorKind::InvalidArgument, "{} must be a list of strings, got {} in it", what, describe(e));
        out.push_back(e.str());
    }
    return out;
}

std::vector<std::string> list_field(const Value& d, std::string_view key) {
    const Value* v = given(d, key);
    return v ? string_list(*v, fmt::format("{}=", key)) : std::vector<std::string>{};
}

double weight_of(const Value* w, const std::string& variant) {
    if (!w || w->is_null()) return 1.0;
    if (!w->is_number() || std::holds_alternative<bool>(w->data))
        throw_error(ErrorKind::InvalidArgument, "variant '{}' has weight {}: a weight is a number >= 0", variant,
                    describe(*w));
    double weight = w->number();
    if (!std::isfinite(weight) || weight < 0)
        throw_error(ErrorKind::InvalidArgument, "variant '{}' has weight {}: weights must be >= 0", variant, weight);
    return weight;
}

EndpointVariant parse_variant(std::string name, const Value& spec) {
    EndpointVariant v;
    v.name = std::move(name);
    const Value* model = &spec;
    const Value* weight = nullptr;
    if (spec.is_map()) {
        model = spec.find("model");
        weight = spec.find("weight");
        if (const Value* sig = given(spec, "signature"))
            v.signature = string_list(*sig, fmt::format("variant '{}' signature", v.name));
        for (const auto& [k, _] : spec.map())
            if (k != "model" && k != "weight" && k != "signature" && k != "name")
                throw_error(ErrorKind::InvalidArgument,
                            "variant '{}' has an unknown field '{}': a variant is {{model, weight, signature}}", v.name, k);
    } else if (spec.is_array()) {
        const auto& a = spec.array();
        model = a.empty() ? nullptr : &a[0];
        weight = a.size() > 1 ? &a[1] : nullptr;
        if (a.size() > 2)
            throw_error(ErrorKind::InvalidArgument,
                        "variant '{}' is {}: give (model_ref, weight) or {{model, weight, signature}}", v.name,
                        describe(spec));
    }
    if (!model || !model->is_string() || model->str().empty())
        throw_error(ErrorKind::InvalidArgument, "variant '{}' needs a model ref such as 'churn@champion' or 'churn/3'",
                    v.name);
    v.model = model->str();
    v.weight = weight_of(weight, v.name);
    return v;
}

std::string variant_name(const Value& name) {
    if (name.is_string() && !name.str().empty()) return name.str();
    if (std::holds_alternative<int64_t>(name.data)) return std::to_string(std::get<int64_t>(name.data));
    throw_error(ErrorKind::InvalidArgument, "a variant's name must be a non-empty string, got {}", describe(name));
}

std::vector<EndpointVariant> parse_variants(const Value& variants) {
    std::vector<EndpointVariant> out;
    if (variants.is_map()) {
        for (const auto& [name, spec] : variants.map()) out.push_back(parse_variant(name, spec));
    } else if (variants.is_array()) {
        for (const auto& item : variants.array()) {
            if (item.is_map()) {  // {name, model, weight, signature}: the stored form
                const Value* name = item.find("name");
                if (!name)
                    throw_error(ErrorKind::InvalidArgument, "variant {} has no name: give {{name, model, weight}}",
                                describe(item));
                out.push_back(parse_variant(variant_name(*name), item));
            } else if (item.is_array() && item.array().size() >= 2) {  // [name, ref, weight] or [name, spec]
                const auto& a = item.array();
                Value spec = a.size() > 2 ? Value(Value::Array(a.begin() + 1, a.end())) : a[1];
                out.push_back(parse_variant(variant_name(a[0]), spec));
            } else {
                throw_error(ErrorKind::InvalidArgument,
                            "variants= item {} is not (name, model_ref, weight) or {{name, model, weight}}",
                            describe(item));
            }
        }
    } else {
        throw_error(ErrorKind::InvalidArgument, "variants= must be {{name: (model_ref, weight)}}, got {}",
                    describe(variants));
    }
    std::set<std::string> seen;
    for (const auto& v : out)
        if (!seen.insert(v.name).second)
            throw_error(ErrorKind::InvalidArgument, "variant '{}' is listed twice: give each variant once", v.name);
    return out;
}

Value sorted(const Value& v) {
    if (v.is_array()) {
        Value::Array out;
        for (const auto& e : v.array()) out.push_back(sorted(e));
        return Value(std::move(out));
    }
    if (!v.is_map()) return v;
    Value::Map out;
    for (const auto& [k, e] : v.map()) out.emplace_back(k, sorted(e));
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return Value(std::move(out));
}

Value strings(const std::vector<std::string>& list) {
    Value::Array out;
    for (const auto& s : list) out.emplace_back(s);
    return Value(std::move(out));
}

} // namespace

EndpointDefinition EndpointDefinition::from_value(const Value& d) {
    if (!d.is_map())
        throw_error(ErrorKind::InvalidArgument, "an endpoint definition must be a map of fields, got {}", describe(d));
    for (const auto& [k, _] : d.map())
        if (std::find(std::begin(kKeys), std::end(kKeys), k) == std::end(kKeys))
            throw_error(ErrorKind::InvalidArgument,
                        "endpoint definition has an unknown field '{}' (fields: config, default, defaults, features, "
                        "inputs, key, log_inputs, model, on_missing, output, routing, signature, tenant_field, "
                        "tenants, variants)",
                        k);
    EndpointDefinition out;
    const Value* variants = d.find("variants");
    if (const Value* model = d.find("model"); model && !model->is_null()) {
        if (!empty_value(variants))
            throw_error(ErrorKind::InvalidArgument,
                        "give an endpoint either model= (one model) or variants={{...}}, not both");
        if (!model->is_string() || model->str().empty())
            throw_error(ErrorKind::InvalidArgument, "model= needs a model ref such as 'churn@champion' or 'churn/3'");
        out.variants.push_back({"main", model->str(), 1.0, {}});
    } else {
        if (empty_value(variants))
            throw_error(ErrorKind::InvalidArgument,
                        "an endpoint needs model='churn@champion' or variants={{name: (model_ref, weight)}}");
        out.variants = parse_variants(*variants);
    }
    out.routing = text_field(d, "routing", "");
    if (out.routing.empty()) {
        if (out.variants.size() > 1)
            throw_error(ErrorKind::InvalidArgument,
                        "an endpoint with {} variants needs routing= (a routing plugin, e.g. "
                        "'plugins/routing/sticky.lua')",
                        out.variants.size());
        out.routing = kSingleRouting;
    }
    out.on_missing = parse_on_missing(text_field(d, "on_missing", "error"));
    if (const Value* defaults = given(d, "defaults")) {
        if (!defaults->is_map())
            throw_error(ErrorKind::InvalidArgument, "defaults= must be {{input: number}}, got {}", describe(*defaults));
        for (const auto& [name, value] : defaults->map()) {
            if (!value.is_number() || !std::isfinite(value.number()))
                throw_error(ErrorKind::InvalidArgument, "defaults= gives input '{}' the value {}: use a finite number",
                            name, describe(value));
            out.defaults.emplace_back(name, value.number());
        }
        std::sort(out.defaults.begin(), out.defaults.end());
    }
    out.features = list_field(d, "features");
    for (const auto& f : out.features)
        if (f.empty() || f.front() == ':' || f.back() == ':')
            throw_error(ErrorKind::InvalidArgument, "features= takes 'view:column' or 'view' strings, got '{}'", f);
    out.inputs = list_field(d, "inputs");
    out.signature = list_field(d, "signature");
    out.default_variant = text_field(d, "default", "");
    if (const Value* config = given(d, "config")) {
        if (!config->is_map())
            throw_error(ErrorKind::InvalidArgument, "config= must be a map of routing options, got {}", describe(*config));
        out.config = sorted(*config);
    }
    out.key = text_field(d, "key", "");
    out.tenant_field = text_field(d, "tenant_field", "tenant");
    out.tenants = list_field(d, "tenants");
    std::sort(out.tenants.begin(), out.tenants.end());
    out.tenants.erase(std::unique(out.tenants.begin(), out.tenants.end()), out.tenants.end());
    for (const auto& t : out.tenants)
        if (t.empty()) throw_error(ErrorKind::InvalidArgument, "tenants= lists tenant names; an empty name is not one");
    if (const Value* share = given(d, "log_inputs")) {
        if (!share->is_number() || !(share->number() >= 0.0 && share->number() <= 1.0))
            throw_error(ErrorKind::InvalidArgument,
                        "log_inputs= is the share of answers logged with their model inputs: a number from 0 "
                        "(none) to 1 (every answer), got {}",
                        describe(*share));
        out.log_inputs = share->number();
    }
    out.output = text_field(d, "output", "auto");
    if (out.output != "auto" && out.output != "proba" && out.output != "predict")
        throw_error(ErrorKind::InvalidArgument,
                    "output='{}' is unknown: use 'auto' (a classifier's probability, else its prediction), 'proba' "
                    "or 'predict'",
                    out.output);
    return out;
}

EndpointDefinition EndpointDefinition::from_json(std::string_view json) {
    return from_value(detail::parse_json(json, "endpoint definition"));
}

EndpointDefinition EndpointDefinition::update(const EndpointDefinition* saved, const Value& given) {
    if (!given.is_map())
        throw_error(ErrorKind::InvalidArgument, "an endpoint definition must be a map of fields, got {}",
                    describe(given));
    if (!saved) return from_value(given);
    Value base = saved->to_value();
    auto& fields = std::get<Value::Map>(base.data);
    if (given.find("model"))  // model= replaces the saved variants
        std::erase_if(fields, [](const auto& e) { return e.first == "variants"; });
    for (const auto& [key, value] : given.map()) {
        auto it = std::find_if(fields.begin(), fields.end(), [&, &key = key](const auto& e) { return e.first == key; });
        if (it != fields.end()) it->second = value;
        else fields.emplace_back(key, value);
    }
    return from_value(base);
}

EndpointDefinition EndpointDefinition::with_weights(const std::vector<std::pair<std::string, double>>& weights) const {
    EndpointDefinition out = *this;
    for (const auto& [name, weight] : weights) {
        auto it = std::find_if(out.variants.begin(), out.variants.end(),
                               [&, &name = name](const auto& v) { return v.name == name; });
        if (it == out.variants.end()) {
            std::vector<std::string> known;
            for (const auto& v : variants) known.push_back(v.name);
            std::sort(known.begin(), known.end());
            throw_error(ErrorKind::InvalidArgument, "unknown variant '{}' (variants: {})", name, fmt::join(known, ", "));
        }
        it->weight = weight;
    }
    return out;
}

Value EndpointDefinition::to_value() const {
    Value::Array vs;
    for (const auto& v : variants) {
        Value::Map m{{"model", v.model}, {"name", v.name}, {"weight", v.weight}};
        if (!v.signature.empty()) m.emplace_back("signature", strings(v.signature));  // absent when empty
        vs.emplace_back(std::move(m));
    }
    Value::Map dflt;
    for (const auto& [name, value] : defaults) dflt.emplace_back(name, value);
    Value::Map out{
        {"config", config.is_null() ? Value(Value::Map{}) : config},
        {"default", default_variant},
        {"defaults", std::move(dflt)},
        {"features", strings(features)},
        {"inputs", strings(inputs)},
        {"key", key},
        {"on_missing", std::string(on_missing_name(on_missing))},
        {"output", output},
        {"routing", routing},
        {"signature", strings(signature)},
        {"tenant_field", tenant_field},
        {"variants", std::move(vs)},
    };
    // Keys added after definitions were first stored are absent at their default (JSON output sorts
    // keys), so a definition saved before them keeps its canonical JSON and is no new revision.
    if (log_inputs > 0) out.emplace_back("log_inputs", log_inputs);
    if (!tenants.empty()) out.emplace_back("tenants", strings(tenants));
    return Value(std::move(out));
}

std::string EndpointDefinition::to_json() const { return detail::dump_json(to_value(), "endpoint definition"); }

std::vector<std::string> EndpointDefinition::views() const {
    std::set<std::string> out;
    for (const auto& f : features) out.insert(f.substr(0, f.find(':')));
    return {out.begin(), out.end()};
}

const std::vector<std::string>& EndpointDefinition::declared(const EndpointVariant& variant) const {
    return variant.signature.empty() ? signature : variant.signature;
}

bool EndpointDefinition::operator==(const EndpointDefinition& other) const { return to_json() == other.to_json(); }

} // namespace keel::serving

// core/serving/input_plan.cpp
#include "keel/serving/input_plan.hpp"

#include "keel/common/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace keel::serving {

OnMissing parse_on_missing(std::string_view text) {
    if (text == "error" || text.empty()) return OnMissing::Error;
    if (text == "default") return OnMissing::Default;
    if (text == "flag") return OnMissing::Flag;
    throw_error(ErrorKind::InvalidArgument,
                "on_missing='{}' is unknown: use 'error' (refuse the request), 'default' (use defaults={{...}}) "
                "or 'flag' (predict with NaN and list the inputs in the answer)",
                text);
}

std::string_view on_missing_name(OnMissing policy) {
    switch (policy) {
    case OnMissing::Error: return "error";
    case OnMissing::Default: return "default";
    case OnMissing::Flag: return "flag";
    }
    return "error";
}

namespace {

std::string join(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "none" : out;
}

// Names a library makes up when it was fitted without column names (scikit-learn via Keel: x0,
// LightGBM: Column_0, XGBoost: f0). Matching those by name would be matching by position.
bool unnamed(const std::vector<std::string>& names) {
    if (names.empty()) return true;
    for (size_t i = 0; i < names.size(); ++i) {
        std::string n = std::to_string(i);
        const auto& s = names[i];
        if (s != "x" + n && s != "f" + n && s != "Column_" + n && !s.empty()) return false;
    }
    return true;
}

// The column part of "view:column".
std::string_view column_of(std::string_view feature) {
    auto colon = feature.find(':');
    return colon == std::string_view::npos ? feature : feature.substr(colon + 1);
}

// Does model input `name` read online feature `feature`? By its column, its full ref, or the
// "view__column" name training sets give a column that two views share.
bool matches(std::string_view name, std::string_view feature) {
    if (name == feature || name == column_of(feature)) return true;
    auto colon = feature.find(':');
    if (colon == std::string_view::npos) return false;
    return name.size() == feature.size() + 1 && name.substr(0, colon) == feature.substr(0, colon) &&
           name.substr(colon, 2) == "__" && name.substr(colon + 2) == feature.substr(colon + 1);
}

} // namespace

InputPlan::InputPlan(InputSpec spec, std::vector<ModelInputs> variants) : spec_(std::move(spec)) {
    std::set<std::string> known;  // every name some variant reads: defaults must name one of them
    for (auto& v : variants) {
        Plan p;
        p.variant = v.variant;
        p.model = v.model;
        p.nulls_are_values = v.nulls_are_values;
        if (!unnamed(v.names)) {
            p.names = std::move(v.names);
        } else if (!v.declared.empty()) {
            if (!v.names.empty() && v.declared.size() != v.names.size())
                throw_error(ErrorKind::InvalidArgument,
                            "endpoint '{}', variant '{}': signature= names {} inputs but model {} reads {}: list "
                            "its {} inputs in the order it was fitted on",
                            spec_.endpoint, p.variant, v.declared.size(), p.model, v.names.size(), v.names.size());
            p.names = std::move(v.declared);
        } else {
            throw_error(ErrorKind::InvalidArgument,
                        "endpoint '{}', variant '{}': model {} has no named inputs ({}), so the endpoint cannot "
                        "tell which feature is which: give signature=[...] listing its inputs in the order it "
                        "was fitted on, or log the model with input_example= a DataFrame with column names",
                        spec_.endpoint, p.variant, p.model, v.names.empty() ? "no signature" : join(v.names));
        }
        std::vector<std::string> missing;
        std::vector<bool> used(spec_.features.size() + spec_.inputs.size(), false);
        for (const auto& name : p.names) {
            Source s;
            bool found = false;
            for (size_t i = 0; i < spec_.inputs.size(); ++i)
                if (spec_.inputs[i] == name) found = used[spec_.features.size() + i] = true;
            if (!found) {
                for (size_t f = 0; f < spec_.features.size(); ++f) {
                    if (!matches(name, spec_.features[f])) continue;
                    if (s.feature >= 0)
                        throw_error(ErrorKind::InvalidArgument,
                                    "endpoint '{}', variant '{}': model input '{}' matches both '{}' and '{}': "
                                    "name the view in the model's column ('view__column') or drop one",
                                    spec_.endpoint, p.variant, name, spec_.features[size_t(s.feature)],
                                    spec_.features[f]);
                    s.feature = int32_t(f);
                    found = used[f] = true;
                }
            }
            if (!found) missing.push_back(name);
            p.sources.push_back(s);
            known.insert(name);
        }
        if (!missing.empty()) {
            std::vector<std::string> extra;
            for (size_t f = 0; f < spec_.features.size(); ++f)
                if (!used[f]) extra.push_back(spec_.features[f]);
            for (size_t i = 0; i < spec_.inputs.size(); ++i)
                if (!used[spec_.features.size() + i]) extra.push_back(spec_.inputs[i]);
            throw_error(ErrorKind::InvalidArgument,
                        "endpoint '{}', variant '{}': model {} reads inputs the endpoint does not provide: "
                        "missing [{}]; provided but not read by this model: extra [{}]. Add the missing ones to "
                        "features=['view:column', ...] or inputs=[...] (request fields)",
                        spec_.endpoint, p.variant, p.model, join(missing), join(extra));
        }
        for (uint32_t j = 0; j < p.names.size(); ++j) p.by_name.emplace_back(p.names[j], j);
        std::sort(p.by_name.begin(), p.by_name.end());
        plans_.push_back(std::move(p));
    }
    if (!spec_.defaults.empty() && spec_.on_missing != OnMissing::Default)
        throw_error(ErrorKind::InvalidArgument,
                    "endpoint '{}': defaults= are used only with on_missing='default' (it is '{}')", spec_.endpoint,
                    on_missing_name(spec_.on_missing));
    for (const auto& [name, value] : spec_.defaults) {
        if (!known.count(name))
            throw_error(ErrorKind::InvalidArgument,
                        "endpoint '{}': defaults= names '{}', which no variant's model reads (inputs: {})",
                        spec_.endpoint, name, join(std::vector<std::string>(known.begin(), known.end())));
        for (auto& p : plans_)
            for (size_t j = 0; j < p.names.size(); ++j)
                if (p.names[j] == name) p.sources[j].has_default = true, p.sources[j].fallback = value;
    }
}

std::vector<size_t> InputPlan::features_read(size_t variant) const {
    std::vector<size_t> out;
    for (const auto& s : plans_.at(variant).sources)
        if (s.feature >= 0 && std::find(out.begin(), out.end(), size_t(s.feature)) == out.end())
            out.push_back(size_t(s.feature));
    return out;
}

void InputPlan::refuse(const Plan& p, const InputState* state, const char* why) const {
    std::vector<std::string> missing, stale;
    for (size_t j = 0; j < p.names.size(); ++j) {
        if (state[j] == InputState::Missing) missing.push_back(p.names[j]);
        if (state[j] == InputState::Stale) stale.push_back(p.names[j]);
    }
    std::string what;
    if (!missing.empty()) what += fmt::format("missing [{}]", join(missing));
    if (!stale.empty()) what += fmt::format("{}stale [{}] (older than the view's ttl)", what.empty() ? "" : ", ", join(stale));
    throw_error(ErrorKind::InvalidArgument, "endpoint '{}', variant '{}' (model {}): no fresh value for {}; {}",
                spec_.endpoint, p.variant, p.model, what, why);
}

void InputPlan::fill(size_t variant, const double* feats, const features::OnlineReader::Status* status,
                     std::span<const plugins::Field> request, double* row, InputState* state) const {
    using S = features::OnlineReader::Status;
    const Plan& p = plans_[variant];
    const size_t w = p.names.size();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (size_t j = 0; j < w; ++j) {
        int32_t f = p.sources[j].feature;
        if (f >= 0 && feats) {
            row[j] = feats[f];
            S s = status[f];
            state[j] = s == S::Ok || (s == S::Null && p.nulls_are_values) ? InputState::Ok
                       : s == S::Stale                                     ? InputState::Stale
                                                                           : InputState::Missing;
        } else {
            row[j] = nan;
            state[j] = InputState::Missing;
        }
    }
    // A request field named like an input wins: few fields, a binary search each.
    for (const auto& field : request) {
        auto it = std::lower_bound(p.by_name.begin(), p.by_name.end(), field.name,
                                   [](const auto& e, std::string_view n) { return std::string_view(e.first) < n; });
        if (it == p.by_name.end() || it->first != field.name) continue;
        double v;
        switch (field.value.index()) {
        case 0: continue;  // None: as if not sent
        case 1: v = double(std::get<1>(field.value)); break;
        case 2: v = std::get<2>(field.value); break;
        case 3: v = std::get<3>(field.value) ? 1.0 : 0.0; break;
        default:
            throw_error(ErrorKind::InvalidArgument,
                        "endpoint '{}': request field '{}' is text ('{}') but model {} reads it as a number",
                        spec_.endpoint, it->first, std::get<4>(field.value), p.model);
        }
        if (std::isnan(v)) continue;
        row[it->second] = v;
        state[it->second] = InputState::Ok;
    }
    bool all_ok = true;
    for (size_t j = 0; j < w; ++j) all_ok &= state[j] == InputState::Ok;
    if (all_ok) return;
    switch (spec_.on_missing) {
    case OnMissing::Error:
        refuse(p, state,
               "send them in the request (a field named like the input), or define the endpoint with "
               "on_missing='default' and defaults={...}, or on_missing='flag' to predict with NaN");
    case OnMissing::Default:
        for (size_t j = 0; j < w; ++j) {
            if (state[j] == InputState::Ok) continue;
            if (!p.sources[j].has_default)
                refuse(p, state, "on_missing='default' but defaults= has no value for some of them: add them");
            row[j] = p.sources[j].fallback;
        }
        return;
    case OnMissing::Flag: return;
    }
}

} // namespace keel::serving

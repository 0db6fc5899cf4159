// core/plugins/quality_target.cpp
#include "keel/plugins/quality_target.hpp"

#include "keel/common/error.hpp"
#include "keel/features/store.hpp"

#include <algorithm>

namespace keel::plugins {

TargetColumns target_columns(features::FeatureStore& store, const std::string& target, const std::string& role) {
    TargetColumns out;
    out.label = target;
    constexpr std::string_view kPrefix = "feature_view:";
    if (!target.starts_with(kPrefix)) return out;
    const std::string name = target.substr(kPrefix.size());
    features::ViewSpec spec;
    try {
        spec = store.view(name);
    } catch (const Error& e) {
        if (e.kind() == ErrorKind::NotFound) return out;  // rules may be attached before the view exists
        throw;
    }
    out.label = fmt::format("feature view '{}'", name);
    for (const auto& k : spec.join_keys) out.columns.push_back(k.name);
    out.columns.push_back(spec.event_column);
    out.columns.push_back(spec.created_column);
    for (const auto& f : spec.features) {
        if (f.dtype == features::DType::Vector) continue;  // no column statistics: rules cannot name them
        out.columns.push_back(f.name);
        if (!f.pii) continue;
        out.pii.push_back(f.name);
        if (!store.can_read(role, name, f.name)) out.masked.push_back(f.name);
    }
    return out;
}

void mark_pii(Batch& batch, const TargetColumns& target, const Masker& mask) {
    auto has = [](const std::vector<std::string>& names, const std::string& n) {
        return std::find(names.begin(), names.end(), n) != names.end();
    };
    for (auto& c : batch.columns) {
        if (!has(target.pii, c.name)) continue;
        c.mask = &mask;
        c.masked = has(target.masked, c.name);
    }
}

} // namespace keel::plugins

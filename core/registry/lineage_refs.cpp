// core/registry/lineage_refs.cpp
#include "keel/registry/lineage_refs.hpp"

#include "keel/common/error.hpp"
#include "keel/registry/registry.hpp"

namespace keel::registry {

namespace {

std::string version_node(std::string_view name, int64_t version) {
    return "model:" + std::string(name) + "/" + std::to_string(version);
}

// The alias's version at `at`: the target of its last audit event at or before then.
std::string alias_then(Registry& registry, std::string_view text, const ModelRef& ref, int64_t at) {
    const Event* last = nullptr;
    int64_t first_set = -1;
    auto events = registry.events(ref.name); // NotFound naming the model when it is missing
    for (const auto& e : events) {
        if (e.action != "alias" || e.subject != ref.alias) continue;
        if (first_set < 0) first_set = e.at;
        if (e.at <= at) last = &e;
    }
    if (first_set < 0)
        throw_error(ErrorKind::NotFound,
                    "lineage ref '{}': model '{}' has never had an alias '{}' (its audit events: "
                    "'keel models events {}')",
                    text, ref.name, ref.alias, ref.name);
    if (last == nullptr)
        throw_error(ErrorKind::NotFound,
                    "lineage ref '{}': alias '{}' of model '{}' was not set yet at {} ms (first set at {} ms): "
                    "use a later as_of or name the version, e.g. 'model:{}/1'",
                    text, ref.alias, ref.name, at, first_set, ref.name);
    if (last->to.empty())
        throw_error(ErrorKind::NotFound,
                    "lineage ref '{}': alias '{}' of model '{}' had been deleted at {} ms (at {} ms): "
                    "use another as_of or name the version",
                    text, ref.alias, ref.name, at, last->at);
    return "model:" + ref.name + "/" + last->to;
}

std::string latest_then(Registry& registry, std::string_view text, const ModelRef& ref, int64_t at) {
    std::optional<int64_t> best;
    for (const auto& v : registry.versions(ref.name))
        if (v.created_at <= at && (!best || v.version > *best)) best = v.version;
    if (!best)
        throw_error(ErrorKind::NotFound, "lineage ref '{}': model '{}' had no versions yet at {} ms", text, ref.name,
                    at);
    return version_node(ref.name, *best);
}

} // namespace

std::string resolve_lineage_ref(Registry& registry, std::string_view text, std::optional<int64_t> as_of_ms) {
    if (!text.starts_with("model:") || text.find('@') == std::string_view::npos) return std::string(text);
    ModelRef ref = ModelRef::parse(text); // InvalidArgument for a malformed alias or name
    if (!as_of_ms) {
        auto v = registry.resolve(ref.str()); // NotFound listing the model's aliases
        return v.lineage_ref();
    }
    return ref.alias == "latest" ? latest_then(registry, text, ref, *as_of_ms)
                                 : alias_then(registry, text, ref, *as_of_ms);
}

} // namespace keel::registry

// core/serving/alias_check.cpp
#include "keel/serving/alias_check.hpp"

#include "keel/common/error.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/definition_check.hpp"
#include "keel/serving/endpoint_definition.hpp"
#include "keel/serving/endpoint_store.hpp"

#include <optional>

namespace keel::serving {

void check_alias_move(storage::Workspace& ws, std::string_view model, std::string_view alias, int64_t version) {
    EndpointStore store(ws);
    registry::Registry registry(ws);
    const std::string moved = fmt::format("{}@{}", model, alias);
    std::optional<registry::ModelVersion> target;
    for (const auto& name : store.names()) {
        const EndpointDefinition d = store.current(name).definition;
        bool serves = false;
        for (const auto& v : d.variants) serves |= v.model == moved;
        if (!serves) continue;
        if (!target) target = registry.version(model, version);
        std::vector<ServedModel> models;
        for (const auto& v : d.variants) {
            auto mv = v.model == moved ? *target : registry.resolve(v.model);
            models.push_back({mv.ref(), model_input_names(mv)});
        }
        try {
            plan_inputs(name, d, models);
        } catch (const Error& err) {
            if (err.kind() != ErrorKind::InvalidArgument) throw;
            try {  // blame the move only when the endpoint can feed what the alias points at today
                check_models(registry, name, d);
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

} // namespace keel::serving

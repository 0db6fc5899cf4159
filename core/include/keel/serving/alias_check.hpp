// core/include/keel/serving/alias_check.hpp
#pragma once

#include <cstdint>
#include <string_view>

namespace keel::storage {
class Workspace;
}
namespace keel::registry {
class Registry;
struct ModelVersion;
}

namespace keel::serving {

//! Conflict when pointing `model@alias` at `version` would give an endpoint serving that alias a
//! model it cannot feed, naming the endpoint and the missing and extra inputs. An endpoint that
//! cannot feed what the alias points at today is not the move's fault and is passed over. The
//! registry cannot ask this itself (serving sits above it): whoever moves an alias for a user goes
//! through move_alias below (keel.Models.set_alias, the CLI). NotFound when the version does not exist.
//! Reads in a transaction it never commits, so the check sees one state of endpoints and registry.
void check_alias_move(storage::Workspace& ws, std::string_view model, std::string_view alias, int64_t version);

//! Moves `model@alias` to `version` (Registry::set_alias) if check_alias_move allows it, in one
//! transaction: the check sees what the move replaces, and a refused move writes nothing.
registry::ModelVersion move_alias(storage::Workspace& ws, registry::Registry& registry, std::string_view model,
                                  std::string_view alias, int64_t version);

} // namespace keel::serving

// core/include/keel/registry/lineage_refs.hpp
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keel::registry {

class Registry;

//! Resolves a lineage ref that names a model alias to the node of the version it points at:
//! `model:churn@champion` -> `model:churn/3`. With `as_of_ms`, the version the alias pointed at then,
//! read from the registry's alias audit events (NotFound when it was not set, or deleted, at that
//! time). `model:churn@latest` is the highest version registered by then. Every other ref
//! (`model:churn/3`, `model:churn`, `run:<id>` ...) is returned unchanged.
//!
//! Lives in the registry module, above the lineage graph: the graph itself stores versions only and
//! refuses alias refs, so a moving alias never becomes a node of its own.
std::string resolve_lineage_ref(Registry& registry, std::string_view ref, std::optional<int64_t> as_of_ms = {});

} // namespace keel::registry

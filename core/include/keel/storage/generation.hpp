// core/include/keel/storage/generation.hpp
#pragma once

#include <cstdint>

namespace keel::storage {

class Db;
struct ModuleSchema;

//! The serving generation: one workspace-wide counter that writers bump, inside their own write
//! transaction, whenever they change something a live endpoint caches (where an alias points, a
//! model's stage, an endpoint's revision, the open data issues). A serving process checks the cheap
//! Db::change_token() on every request and reads this counter only when the token moved, so an
//! alias move is served from the next request on, in every process, without polling.
void bump_generation(Db& db);
int64_t read_generation(Db& db);
//! The generation's table (`keel admin migrate` lists it).
const ModuleSchema& generation_schema();

} // namespace keel::storage

// core/include/keel/plugins/schema.hpp
#pragma once

#include "keel/plugins/host.hpp"
#include "keel/plugins/value.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace keel::plugins {

// What a plugin declares at its top level, besides its entry function:
//
//   schema = { name = {type = "number", required = true, doc = "...", min = 0, max = 1,
//                      choices = {...}}, ... }
//   needs  = { "reference_profile" }
//
// The host checks a routing plugin's config (Router) and a quality rule's arguments (validate_rule,
// run_rules) against `schema` before any plugin code runs, so every caller — Python, the CLI, a C++
// server — gets the same refusals. `needs` asks the host for inputs beyond the call's own (see
// reference_columns in quality.hpp).

//! Types an argument may declare. "column", "columns" and "pattern" are quality-rule arguments
//! naming data: strings (a list of them for "columns") that validate_rule also checks against the
//! target's columns and compiles as RE2 patterns.
inline constexpr std::string_view kArgumentTypes[] = {"string", "number", "integer", "boolean", "list", "map",
                                                      "any",    "column", "columns", "pattern"};
//! Fields one argument's entry may have.
inline constexpr std::string_view kArgumentFields[] = {"type", "required", "doc", "min", "max", "choices"};
//! What a plugin may declare it needs. "reference_profile": a quality rule comparing its column
//! arguments with a reference profile (ctx.references[column]); the first accepted batch of a target
//! becomes the reference of those columns when none is stored.
inline constexpr std::string_view kPluginNeeds[] = {"reference_profile"};

//! Checks `args` (a map; null means none) against a declared `schema` (null: the plugin declares
//! none, so anything goes). `plugin` names the plugin in messages (its file name), `entry` the
//! function the schema belongs to. Unknown names, missing required arguments, wrong types (a
//! "number" is not a boolean; an "integer" is a whole number), values outside [min, max] and values
//! not among `choices` throw InvalidArgument naming the plugin, the argument, what was expected and
//! what was given. A malformed schema (not a table of tables, an unknown type or field, min/max on a
//! type that is not a number) throws PluginError naming the plugin, its entry and the entry's fault.
void check_arguments(const Value& schema, std::string_view plugin, std::string_view entry, const Value& args);

//! check_arguments against the schema of the plugin `ref` as `host` loads it for `entry` (NotFound
//! or PluginError when it does not load).
void check_arguments(Host& host, std::string_view ref, std::string_view entry, const Value& args);

//! What the plugin `ref` declares it needs (`needs = {...}`, in declaration order; empty when it
//! declares nothing). Each must be one of kPluginNeeds: anything else is a PluginError naming it.
std::vector<std::string> plugin_needs(Host& host, std::string_view ref, std::string_view entry);

//! A plugin ref's file name ("range.lua"), as messages name the plugin.
std::string plugin_file_name(std::string_view ref);

//! A value as messages show what was given: its kind and a short text ("string '0'", "integer 3",
//! "list [1, 2]"); long texts are cut.
std::string describe_value(const Value& v);

} // namespace keel::plugins

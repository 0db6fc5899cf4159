// bindings/plugin_values.hpp: Python data <-> plugins::Value, shared by the plugin and serving bindings.
#pragma once

#include "keel/plugins/value.hpp"

#include <pybind11/pybind11.h>

namespace keel::bindings {

//! Dicts keep their order; tuples and sets become arrays; numpy scalars become numbers.
plugins::Value value_from_py(pybind11::handle h, int depth = 0);
pybind11::object value_to_py(const plugins::Value& v);

} // namespace keel::bindings

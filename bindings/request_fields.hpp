// bindings/request_fields.hpp
#pragma once

#include "keel/plugins/router.hpp"

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace keel::bindings {

//! One field of a request dict for routing and serving: the key and str values as UTF-8 views
//! borrowed from the dict's objects (the caller keeps them alive for the call), bools, ints and
//! floats by value, numpy scalars and other number-likes unwrapped, anything else (and ints beyond
//! int64) as its text in `text`. The caller reserves `text` for the dict's size beforehand, so the
//! views into it never move.
plugins::Field request_field(PyObject* key, PyObject* value, std::vector<std::string>& text);

} // namespace keel::bindings

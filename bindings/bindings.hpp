// bindings/bindings.hpp
#pragma once

#include <pybind11/pybind11.h>

namespace keel::plugins {
struct RouterStats;
}
namespace keel::serving {
struct AssignmentLogStats;
}

namespace keel::bindings {

// One function per core module, each in its own bind_<module>.cpp, all called from module.cpp.
void bind_errors(pybind11::module_& m);
void bind_workspace(pybind11::module_& m);
void bind_tracking(pybind11::module_& m);
void bind_registry(pybind11::module_& m);
void bind_lineage(pybind11::module_& m);
void bind_features(pybind11::module_& m);
void bind_inference(pybind11::module_& m);
void bind_plugins(pybind11::module_& m);
void bind_serving(pybind11::module_& m);
void bind_admin(pybind11::module_& m);
void bind_assignment_log(pybind11::module_& m); // called by bind_serving
void bind_predictions(pybind11::module_& m); // called by bind_serving
void bind_endpoint(pybind11::module_& m);       // called by bind_serving

// Counters that more than one binding reports, each defined beside its field list (records.hpp).
pybind11::dict router_stats_dict(const plugins::RouterStats& s);            // bind_plugins.cpp
pybind11::dict log_stats_dict(const serving::AssignmentLogStats& s);       // bind_assignment_log.cpp

} // namespace keel::bindings

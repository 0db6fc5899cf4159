// bindings/bind_tracking.cpp
#include "bindings.hpp"

namespace py = pybind11;

namespace keel::bindings {

// The tracking module's bindings land here with the module itself.
void bind_tracking(py::module_& m) {}

} // namespace keel::bindings

// bindings/bind_registry.cpp
#include "bindings.hpp"

namespace py = pybind11;

namespace keel::bindings {

// The registry module's bindings land here with the module itself.
void bind_registry(py::module_& m) {}

} // namespace keel::bindings

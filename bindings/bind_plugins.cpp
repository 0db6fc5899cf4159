// bindings/bind_plugins.cpp
#include "bindings.hpp"

namespace py = pybind11;

namespace keel::bindings {

// The plugins module's bindings land here with the module itself.
void bind_plugins(py::module_& m) {}

} // namespace keel::bindings

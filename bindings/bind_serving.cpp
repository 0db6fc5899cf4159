// bindings/bind_serving.cpp
#include "bindings.hpp"

namespace py = pybind11;

namespace keel::bindings {

// The serving module's bindings land here with the module itself.
void bind_serving(py::module_& m) {}

} // namespace keel::bindings

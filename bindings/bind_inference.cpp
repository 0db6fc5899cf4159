// bindings/bind_inference.cpp
#include "bindings.hpp"

namespace py = pybind11;

namespace keel::bindings {

// The inference module's bindings land here with the module itself.
void bind_inference(py::module_& m) {}

} // namespace keel::bindings

// bindings/bind_features.cpp
#include "bindings.hpp"

namespace py = pybind11;

namespace keel::bindings {

// The features module's bindings land here with the module itself.
void bind_features(py::module_& m) {}

} // namespace keel::bindings

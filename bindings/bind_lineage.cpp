// bindings/bind_lineage.cpp
#include "bindings.hpp"

namespace py = pybind11;

namespace keel::bindings {

// The lineage module's bindings land here with the module itself.
void bind_lineage(py::module_& m) {}

} // namespace keel::bindings

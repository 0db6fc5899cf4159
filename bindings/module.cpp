// bindings/module.cpp
#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "Keel's native core. Use the `keel` package; this module is its implementation.";
    using namespace keel::bindings;
    bind_errors(m);
    bind_workspace(m);
    bind_tracking(m);
    bind_registry(m);
    bind_lineage(m);
    bind_features(m);
    bind_inference(m);
    bind_plugins(m);
    bind_serving(m);
    bind_admin(m);
}

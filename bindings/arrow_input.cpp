// bindings/arrow_input.cpp: Arrow data crossing from Python through PyCapsules, the one way columns
// reach the core (keel/_data.py prepares them from pandas, numpy, dicts and rows).
#include "arrow_input.hpp"

#include "keel/common/error.hpp"

namespace py = pybind11;

namespace keel::bindings {

namespace {

template <typename T>
T* capsule_struct(const py::handle& capsule, const char* name) {
    void* p = PyCapsule_GetPointer(capsule.ptr(), name);
    if (!p) {
        PyErr_Clear();
        throw_error(ErrorKind::InvalidArgument, "expected a PyCapsule named '{}' from the Arrow export", name);
    }
    return static_cast<T*>(p);
}

} // namespace

ImportedBatch import_arrow_object(const py::handle& data, const ImportOptions& options) {
    if (py::hasattr(data, "__arrow_c_stream__")) {
        py::object capsule = data.attr("__arrow_c_stream__")();
        return import_arrow_stream(capsule_struct<ArrowArrayStream>(capsule, "arrow_array_stream"), options);
    }
    if (py::hasattr(data, "__arrow_c_array__")) {
        py::tuple pair = data.attr("__arrow_c_array__")();
        if (pair.size() != 2) throw_error(ErrorKind::InvalidArgument, "__arrow_c_array__ must return (schema, array)");
        return import_arrow(capsule_struct<ArrowSchema>(pair[0], "arrow_schema"),
                            capsule_struct<ArrowArray>(pair[1], "arrow_array"), options);
    }
    throw_error(ErrorKind::InvalidArgument, "expected Arrow data (a pyarrow Table or RecordBatch), got {}",
                std::string(py::str(py::type::of(data).attr("__name__"))));
}

} // namespace keel::bindings

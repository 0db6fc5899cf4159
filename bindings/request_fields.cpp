// bindings/request_fields.cpp
#include "request_fields.hpp"

#include "keel/common/error.hpp"

namespace py = pybind11;

namespace keel::bindings {

namespace {
std::string_view as_text(py::handle value, std::vector<std::string>& text) {
    text.push_back(py::str(value).cast<std::string>());
    return text.back();
}
} // namespace

plugins::Field request_field(PyObject* key, PyObject* value, std::vector<std::string>& text) {
    Py_ssize_t n = 0;
    const char* k = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &n) : nullptr;
    if (!k) throw_error(ErrorKind::InvalidArgument, "request field names must be strings");
    plugins::Field f{std::string_view(k, size_t(n)), std::monostate{}};
    if (value == Py_None) {
    } else if (PyBool_Check(value)) {
        f.value = value == Py_True;
    } else if (PyLong_Check(value)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) f.value = as_text(value, text);
        else f.value = int64_t(x);
    } else if (PyFloat_Check(value)) {
        f.value = PyFloat_AS_DOUBLE(value);
    } else if (PyUnicode_Check(value)) {
        Py_ssize_t vn = 0;
        const char* v = PyUnicode_AsUTF8AndSize(value, &vn);
        if (!v) throw py::error_already_set();
        f.value = std::string_view(v, size_t(vn));
    } else {  // numpy scalars and other number-likes
        py::handle v(value);
        py::object item = (py::hasattr(v, "dtype") && py::hasattr(v, "item")) ? v.attr("item")()
                                                                             : py::reinterpret_borrow<py::object>(v);
        if (PyBool_Check(item.ptr())) f.value = item.ptr() == Py_True;
        else if (PyLong_Check(item.ptr())) f.value = item.cast<int64_t>();
        else if (PyFloat_Check(item.ptr())) f.value = item.cast<double>();
        else if (py::hasattr(item, "__index__")) f.value = py::int_(item).cast<int64_t>();
        else if (py::hasattr(item, "__float__")) f.value = py::float_(item).cast<double>();
        else f.value = as_text(item, text);
    }
    return f;
}

} // namespace keel::bindings

// bindings/bind_errors.cpp
#include "bindings.hpp"

#include "keel/common/error.hpp"

#include <filesystem>

namespace py = pybind11;

namespace keel::bindings {

// keel::Error becomes the Python class of the same kind name from keel.errors (NotFound, Conflict,
// ...), all subclasses of keel.KeelError. The classes live in Python so they pickle and document well.
void bind_errors(py::module_& m) {
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const keel::Error& e) {
            py::object errors = py::module_::import("keel.errors");
            py::object cls = errors.attr(std::string(keel::error_kind_name(e.kind())).c_str());
            // Messages quote offending values, which may be any bytes (a tampered model's key): decode
            // them leniently so the user gets the Keel error, not a UnicodeDecodeError about it.
            std::string_view what = e.what();
            py::object text = py::reinterpret_steal<py::object>(
                PyUnicode_DecodeUTF8(what.data(), static_cast<Py_ssize_t>(what.size()), "backslashreplace"));
            if (text) PyErr_SetObject(cls.ptr(), text.ptr());
            else PyErr_SetString(cls.ptr(), "(error message could not be decoded)");
        } catch (const std::filesystem::filesystem_error& e) {
            PyErr_SetString(PyExc_OSError, e.what());
        }
    });
    m.def("error_exit_code", [](const std::string& kind) {
        for (auto k : {ErrorKind::NotFound, ErrorKind::AlreadyExists, ErrorKind::InvalidArgument, ErrorKind::Conflict,
                       ErrorKind::Corrupt, ErrorKind::PermissionDenied, ErrorKind::PluginError, ErrorKind::Internal,
                       ErrorKind::Unavailable})
            if (error_kind_name(k) == kind) return error_kind_exit_code(k);
        return 1;
    }, "The CLI exit code for an error kind name (1 for anything else).");
}

} // namespace keel::bindings

// bindings/records.cpp: the read-only mapping view of bound records (records.hpp).
#include "records.hpp"

#include "keel/common/error.hpp"

#include <pybind11/stl.h>

#include <algorithm>
#include <string>

namespace py = pybind11;

namespace keel::bindings {

namespace {

// The field names of a record, as its class (or a Python subclass adding fields) lists them.
py::tuple names_of(py::handle self) { return self.attr("_fields"); }

bool has_field(py::handle self, py::handle key) {
    if (!py::isinstance<py::str>(key)) return false;
    for (auto name : names_of(self))
        if (name.equal(key)) return true;
    return false;
}

py::dict as_dict(py::handle self) {
    py::dict out;
    for (auto name : names_of(self)) out[name] = self.attr(name);
    return out;
}

} // namespace

void check_known_keys(const py::dict& given, const std::vector<std::string>& known, const char* what) {
    std::string unknown, all;
    for (auto item : given) {
        std::string key = py::str(item.first).cast<std::string>();
        if (std::find(known.begin(), known.end(), key) == known.end()) unknown += (unknown.empty() ? "" : ", ") + key;
    }
    if (unknown.empty()) return;
    for (const auto& k : known) all += (all.empty() ? "" : ", ") + k;
    throw_error(ErrorKind::InvalidArgument, "unknown {}(s) {} (known: {})", what, unknown, all);
}

// A method of a class known only as a Python object (what class_::def does for a C++ type).
template <typename F, typename... Extra>
void def_method(py::handle cls, const char* name, F&& f, const Extra&... extra) {
    py::cpp_function method(std::forward<F>(f), py::name(name), py::is_method(cls),
                            py::sibling(py::getattr(cls, name, py::none())), extra...);
    py::setattr(cls, name, method);
}

void add_mapping_access(py::handle cls) {
    def_method(cls, "__getitem__", [](py::handle self, py::handle key) -> py::object {
        if (!has_field(self, key)) throw py::key_error(py::repr(key).cast<std::string>());
        return self.attr(key);
    });
    def_method(cls, "get", [](py::handle self, py::handle key, py::object fallback) -> py::object {
        return has_field(self, key) ? py::object(self.attr(key)) : fallback;
    }, py::arg("key"), py::arg("default") = py::none());
    def_method(cls, "__contains__", [](py::handle self, py::handle key) { return has_field(self, key); });
    def_method(cls, "keys", [](py::handle self) { return py::list(names_of(self)); });
    def_method(cls, "__iter__", [](py::handle self) { return py::iter(names_of(self)); });
    def_method(cls, "__len__", [](py::handle self) { return py::len(names_of(self)); });
    def_method(cls, "to_dict", [](py::handle self) { return as_dict(self); }, "The fields as a plain dict (a copy).");
    def_method(cls, "__eq__", [](py::handle self, py::handle other) -> py::object {
        if (!py::hasattr(other, "keys")) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
        return py::bool_(as_dict(self).equal(py::dict(py::reinterpret_borrow<py::object>(other))));
    });
    def_method(cls, "__hash__", [](py::handle self) -> py::int_ {  // equal by value, like the dicts they replace
        throw py::type_error("unhashable type: '" + py::type::of(self).attr("__name__").cast<std::string>() + "'");
    });
    def_method(cls, "__repr__", [](py::handle self) {
        std::string out = py::type::of(self).attr("__name__").cast<std::string>() + "(";
        for (auto name : names_of(self)) {
            if (out.back() != '(') out += ", ";
            out += name.cast<std::string>() + "=" + py::repr(self.attr(name)).cast<std::string>();
        }
        return out + ")";
    });
    py::module_::import("collections.abc").attr("Mapping").attr("register")(cls);
}

} // namespace keel::bindings

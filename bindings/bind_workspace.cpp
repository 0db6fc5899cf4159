// bindings/bind_workspace.cpp
#include "bindings.hpp"

#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

namespace py = pybind11;
using keel::storage::Workspace;

namespace keel::bindings {

void bind_workspace(py::module_& m) {
    py::class_<Workspace, std::shared_ptr<Workspace>>(m, "Workspace")
        .def(py::init([](const std::string& path) { return Workspace::open(path); }), py::arg("path"),
             py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("path", [](const Workspace& ws) { return ws.path().string(); })
        .def_property("user", &Workspace::user, &Workspace::set_user)
        .def_property("role", &Workspace::role, &Workspace::set_role)
        .def("put_artifact_bytes",
             [](Workspace& ws, py::bytes data) {
                 std::string copy = data;
                 py::gil_scoped_release release;
                 return ws.artifacts().put_bytes(copy);
             })
        .def("put_artifact_file",
             [](Workspace& ws, const std::string& path) { return ws.artifacts().put_file(path); },
             py::call_guard<py::gil_scoped_release>())
        .def("get_artifact_bytes",
             [](Workspace& ws, const std::string& digest) {
                 std::string data;
                 {
                     py::gil_scoped_release release;
                     data = ws.artifacts().get_bytes(digest);
                 }
                 return py::bytes(data);
             })
        .def("copy_artifact",
             [](Workspace& ws, const std::string& digest, const std::string& dest) {
                 ws.artifacts().copy_to(digest, dest);
             },
             py::call_guard<py::gil_scoped_release>())
        .def("verify_artifact", [](Workspace& ws, const std::string& digest) { ws.artifacts().verify(digest); },
             py::call_guard<py::gil_scoped_release>())
        .def("change_token", [](Workspace& ws) { return ws.db().change_token(); },
             "Moves whenever any connection commits a write (cheap: reads no table).")
        .def("serving_generation", [](Workspace& ws) { return storage::read_generation(ws.db()); },
             "Bumped by every change a live endpoint caches: alias moves, stages, revisions, data issues.")
        .def("artifact_path", [](Workspace& ws, const std::string& digest) {
            return ws.artifacts().path_of(digest).string();
        });
}

} // namespace keel::bindings

// bindings/bind_workspace.cpp
#include "bindings.hpp"

#include "keel/common/error.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <optional>
#include <thread>

namespace py = pybind11;
using keel::storage::Workspace;

namespace keel::bindings {

namespace {

//! `with ws.native.transaction(commit=...)`: one write transaction around several calls, so that
//! keel.defs applies a set of definitions all or nothing (every module's own transactions nest
//! inside it). commit=False always rolls back: a dry run that checks everything the core checks.
//! The connection's lock is held throughout, so it is left on the thread that entered it.
class ScopedTransaction {
public:
    ScopedTransaction(std::shared_ptr<Workspace> ws, bool commit) : ws_(std::move(ws)), commit_(commit) {}

    ScopedTransaction& enter() {
        if (tx_) throw Error(ErrorKind::InvalidArgument, "this transaction is already open: use a new ws.native.transaction()");
        py::gil_scoped_release release;
        tx_.emplace(ws_->db());
        thread_ = std::this_thread::get_id();
        return *this;
    }

    //! Commits when the block ended without an exception and commit=True, else rolls back.
    bool exit(bool ok) {
        if (!tx_) return false;
        if (std::this_thread::get_id() != thread_)
            throw Error(ErrorKind::InvalidArgument, "a workspace transaction must end on the thread that began it");
        py::gil_scoped_release release;
        if (ok && commit_) tx_->commit();
        tx_.reset();
        return false;  // never swallows the block's exception
    }

private:
    std::shared_ptr<Workspace> ws_;
    bool commit_;
    std::optional<storage::Transaction> tx_;
    std::thread::id thread_;
};

} // namespace

void bind_workspace(py::module_& m) {
    py::class_<ScopedTransaction>(m, "WorkspaceTransaction")
        .def("__enter__", &ScopedTransaction::enter, py::return_value_policy::reference_internal)
        .def("__exit__", [](ScopedTransaction& tx, const py::object& type, const py::object&, const py::object&) {
            return tx.exit(type.is_none());
        });

    py::class_<Workspace, std::shared_ptr<Workspace>>(m, "Workspace")
        .def(py::init([](const std::string& path, std::optional<std::string> artifacts,
                         std::optional<std::string> cache_dir, std::optional<int64_t> cache_max_bytes) {
                 // The environment (KEEL_ARTIFACTS, KEEL_CACHE_DIR, KEEL_CACHE_MAX_BYTES), then the arguments.
                 auto location = storage::WorkspaceLocation::from_env(path);
                 if (artifacts) location.artifacts = *artifacts;
                 if (cache_dir) location.cache_dir = *cache_dir;
                 if (cache_max_bytes) location.cache_max_bytes = *cache_max_bytes;
                 return Workspace::open(location);
             }),
             py::arg("path"), py::arg("artifacts") = py::none(), py::arg("cache_dir") = py::none(),
             py::arg("cache_max_bytes") = py::none(), py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("path", [](const Workspace& ws) { return ws.path().string(); })
        .def_property_readonly("location", [](const Workspace& ws) { return ws.location().workspace; },
                               "What opens this workspace again: its directory, or its PostgreSQL URL.")
        .def_property_readonly("metadata", [](Workspace& ws) { return ws.db().path(); },
                               "Where the metadata lives: keel.db's path, or the PostgreSQL URL without password.")
        .def_property_readonly("artifacts_url", [](Workspace& ws) { return ws.objects().url(); },
                               "Where the artifacts and feature files live: s3://bucket/prefix/ or the directory.")
        .def("object_url", [](Workspace& ws, const std::string& key) { return ws.objects().describe(key); },
             py::arg("key"), "The full name of an object key (\"artifacts/sha256/..\", \"features/..\").")
        .def("list_objects",
             [](Workspace& ws, const std::string& prefix) {
                 std::vector<std::pair<std::string, int64_t>> out;
                 for (auto& e : ws.objects().list(prefix)) out.emplace_back(std::move(e.key), e.size);
                 return out;
             },
             py::arg("prefix") = "", py::call_guard<py::gil_scoped_release>(),
             "(key, size) of the workspace's objects whose key starts with prefix, in key order.")
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
        .def("transaction",
             [](const std::shared_ptr<Workspace>& ws, bool commit) {
                 return std::make_unique<ScopedTransaction>(ws, commit);
             },
             py::arg("commit") = true,
             "One write transaction around the calls in a `with` block: committed at its end, rolled back on "
             "an exception or when commit=False.")
        .def("change_token", [](Workspace& ws) { return ws.db().change_token(); },
             "Moves whenever any connection commits a write (cheap: reads no table).")
        .def("serving_generation", [](Workspace& ws) { return storage::read_generation(ws.db()); },
             "Bumped by every change a live endpoint caches: alias moves, stages, revisions, data issues.")
        .def("artifact_path", [](Workspace& ws, const std::string& digest) {
            return ws.artifacts().path_of(digest).string();
        });
}

} // namespace keel::bindings

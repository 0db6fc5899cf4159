// bindings/bind_admin.cpp: `keel admin migrate`, `copy` and `gc` (keel/admin.py wraps them).
#include "bindings.hpp"

#include "keel/admin/admin.hpp"

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <chrono>
#include <optional>

namespace py = pybind11;

namespace keel::bindings {

namespace {

storage::WorkspaceLocation location_of(const std::string& workspace, const std::optional<std::string>& artifacts) {
    auto location = storage::WorkspaceLocation::from_env(workspace);
    if (artifacts) location.artifacts = *artifacts;
    return location;
}

py::dict digest_dict(const storage::WorkspaceDigest& d) {
    py::list tables, objects;
    for (const auto& t : d.tables) tables.append(py::dict(py::arg("table") = t.table, py::arg("rows") = t.rows,
                                                          py::arg("sha256") = t.sha256));
    for (const auto& o : d.objects)
        objects.append(py::dict(py::arg("key") = o.key, py::arg("size") = o.size, py::arg("sha256") = o.sha256));
    return py::dict(py::arg("tables") = tables, py::arg("objects") = objects,
                    py::arg("object_bytes") = d.object_bytes(), py::arg("objects_sha256") = d.objects_sha256());
}

// A Python progress callback, called with the GIL from the copying thread.
storage::CopyProgressFn progress_of(const std::optional<py::function>& fn) {
    if (!fn) return {};
    return [fn = *fn](const storage::CopyProgress& p) {
        py::gil_scoped_acquire gil;
        fn(p.phase, p.item, p.done, p.total);
    };
}

} // namespace

void bind_admin(py::module_& m) {
    m.def("admin_migrate",
          [](const std::string& workspace, bool dry_run) {
              std::vector<storage::SchemaStatus> status;
              {
                  py::gil_scoped_release release;
                  status = admin::migrate(location_of(workspace, std::nullopt), dry_run);
              }
              py::list out;
              for (const auto& s : status)
                  out.append(py::dict(py::arg("module") = s.module, py::arg("version") = s.version,
                                      py::arg("known") = s.known, py::arg("pending") = s.pending));
              return out;
          },
          py::arg("workspace"), py::arg("dry_run") = false,
          "Each module's schema version in the workspace and in this Keel, with the steps pending (as they "
          "were before, when applied).");
    m.def("admin_copy",
          [](const std::string& src, const std::string& dst, std::optional<std::string> src_artifacts,
             std::optional<std::string> dst_artifacts, std::optional<py::function> progress) {
              storage::WorkspaceDigest digest;
              {
                  py::gil_scoped_release release;
                  digest = admin::copy(location_of(src, src_artifacts), location_of(dst, dst_artifacts),
                                       progress_of(progress));
              }
              return digest_dict(digest);
          },
          py::arg("src"), py::arg("dst"), py::arg("src_artifacts") = py::none(),
          py::arg("dst_artifacts") = py::none(), py::arg("progress") = py::none(),
          "Copies a whole workspace to a new one and verifies it; returns the digest both sides have.");
    m.def("admin_digest",
          [](const std::shared_ptr<storage::Workspace>& ws) {
              storage::WorkspaceDigest digest;
              {
                  py::gil_scoped_release release;
                  digest = storage::workspace_digest(*ws);
              }
              return digest_dict(digest);
          },
          py::arg("workspace"), "Every table's canonical digest and every object's key, size and sha256.");
    m.def("admin_gc",
          [](const std::shared_ptr<storage::Workspace>& ws, int64_t older_than_ms, bool dry_run) {
              admin::GcReport report;
              {
                  py::gil_scoped_release release;
                  report = admin::gc(*ws, {std::chrono::milliseconds(older_than_ms), dry_run});
              }
              auto entries = [](const std::vector<storage::ObjectEntry>& list) {
                  py::list out;
                  for (const auto& e : list)
                      out.append(py::dict(py::arg("key") = e.key, py::arg("size") = e.size,
                                          py::arg("modified_ms") = e.modified_ms));
                  return out;
              };
              py::list aborted;
              for (const auto& u : report.aborted)
                  aborted.append(py::dict(py::arg("key") = u.key, py::arg("upload_id") = u.id,
                                          py::arg("started_ms") = u.started_ms));
              return py::dict(py::arg("dry_run") = dry_run, py::arg("older_than_ms") = older_than_ms,
                              py::arg("objects") = report.objects, py::arg("bytes") = report.bytes,
                              py::arg("named") = report.named, py::arg("swept") = entries(report.swept),
                              py::arg("swept_bytes") = report.swept_bytes(), py::arg("young") = entries(report.young),
                              py::arg("young_bytes") = report.young_bytes(), py::arg("aborted_uploads") = aborted,
                              py::arg("staged") = entries(report.staged));
          },
          py::arg("workspace"), py::arg("older_than_ms"), py::arg("dry_run") = false,
          "Deletes the workspace's objects no row names, last written more than older_than_ms ago (and "
          "unfinished multipart uploads and staged files that old); reports what it swept and what it kept.");
}

} // namespace keel::bindings

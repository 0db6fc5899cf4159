// bindings/bind_tracking.cpp
#include "bindings.hpp"

#include "keel/storage/workspace.hpp"
#include "keel/tracking/tracker.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

namespace py = pybind11;
using namespace keel::tracking;

namespace keel::bindings {

namespace {

// The tracker and the workspace it writes to, kept alive together.
struct PyTracker {
    std::shared_ptr<storage::Workspace> ws;
    Tracker tracker;
    explicit PyTracker(std::shared_ptr<storage::Workspace> w) : ws(std::move(w)), tracker(*ws) {}
};

template <typename T>
py::object opt(const std::optional<T>& v) {
    return v ? py::cast(*v) : py::none();
}

// ws.runs.stale() keeps its documented shape: plain dicts (a run's attributes, process, reason).
py::dict info_dict(const RunInfo& i) {
    py::dict d;
    d["id"] = i.id;
    d["name"] = i.name;
    d["experiment"] = i.experiment;
    d["status"] = i.status;
    d["start_time"] = i.start_time;
    d["end_time"] = opt(i.end_time);
    d["user"] = i.user;
    d["source"] = i.source;
    d["git_commit"] = i.git_commit;
    d["git_dirty"] = opt(i.git_dirty);
    d["parent_id"] = opt(i.parent_id);
    d["error"] = opt(i.error);
    return d;
}

py::dict process_dict(const RunProcess& p) {
    py::dict d;
    d["host"] = p.host;
    d["pid"] = p.pid;
    d["process_start"] = p.process_start;
    d["heartbeat_at"] = p.heartbeat_at;
    return d;
}

py::list artifact_list(const std::vector<ArtifactEntry>& entries) {
    py::list out;
    for (const auto& e : entries) {
        py::dict d;
        d["path"] = e.path;
        d["digest"] = e.digest;
        d["size"] = e.size;
        out.append(d);
    }
    return out;
}

using StrPairs = std::vector<std::pair<std::string, std::string>>;

StrPairs pairs(const py::dict& d) {
    StrPairs out;
    out.reserve(d.size());
    for (auto item : d) out.emplace_back(py::str(item.first), py::str(item.second));
    return out;
}

} // namespace

// Runs cross as these two read-only types (keel.Run holds them): a field added to RunInfo or Run
// is bound here once and reaches Python with no dict keys to keep in step.
static void bind_run_records(py::module_& m) {
    py::class_<RunInfo>(m, "RunInfo", "A run's attributes (read-only): what keel.Run's properties read.")
        .def_readonly("id", &RunInfo::id)
        .def_readonly("name", &RunInfo::name)
        .def_readonly("experiment", &RunInfo::experiment)
        .def_readonly("status", &RunInfo::status)
        .def_readonly("start_time", &RunInfo::start_time, "ms since the epoch")
        .def_readonly("end_time", &RunInfo::end_time, "ms since the epoch; None while RUNNING")
        .def_readonly("user", &RunInfo::user)
        .def_readonly("source", &RunInfo::source)
        .def_readonly("git_commit", &RunInfo::git_commit)
        .def_readonly("git_dirty", &RunInfo::git_dirty)
        .def_readonly("parent_id", &RunInfo::parent_id)
        .def_readonly("error", &RunInfo::error)
        .def("__repr__", [](const RunInfo& i) { return "<keel._core.RunInfo " + i.id + " " + i.status + ">"; });
    py::class_<Run>(m, "RunRecord", "A run with its params, latest metric values and tags (read-only).")
        .def_readonly("info", &Run::info)
        .def_readonly("params", &Run::params)
        .def_readonly("metrics", &Run::metrics)
        .def_readonly("tags", &Run::tags)
        .def("__repr__", [](const Run& r) { return "<keel._core.RunRecord " + r.info.id + ">"; });
}

void bind_tracking(py::module_& m) {
    bind_run_records(m);
    using DArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
    using IArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

    py::class_<PyTracker>(m, "Tracker")
        .def(py::init<std::shared_ptr<storage::Workspace>>(), py::arg("workspace"))
        .def("start_run",
             [](PyTracker& t, const std::string& experiment, const std::string& name,
                std::optional<std::string> parent_id, std::map<std::string, std::string> tags,
                const std::string& source, const std::string& git_commit, std::optional<bool> git_dirty,
                std::optional<int64_t> start_time) {
                 NewRun spec{experiment, name, std::move(parent_id), std::move(tags), source, git_commit, git_dirty,
                             start_time};
                 Run run;
                 {
                     py::gil_scoped_release release;
                     run.info = t.tracker.start_run(spec);
                 }
                 run.tags = spec.tags; // a new run has no params or metrics yet: no read needed
                 return run;
             },
             py::arg("experiment"), py::arg("name") = "", py::arg("parent_id") = py::none(),
             py::arg("tags") = std::map<std::string, std::string>{}, py::arg("source") = "",
             py::arg("git_commit") = "", py::arg("git_dirty") = py::none(), py::arg("start_time") = py::none())
        .def("end_run",
             [](PyTracker& t, const std::string& id, const std::string& status, std::optional<std::string> error,
                std::optional<int64_t> end_time) {
                 py::gil_scoped_release release;
                 return t.tracker.end_run(id, status, std::move(error), end_time);
             },
             py::arg("run_id"), py::arg("status"), py::arg("error") = py::none(), py::arg("end_time") = py::none())
        .def("get_run",
             [](PyTracker& t, const std::string& id) {
                 py::gil_scoped_release release;
                 return t.tracker.get_run(id);
             })
        .def("get_info",
             [](PyTracker& t, const std::string& id) {
                 py::gil_scoped_release release;
                 return t.tracker.get_info(id);
             })
        .def("experiments",
             [](PyTracker& t) {
                 py::list out;
                 for (const auto& e : t.tracker.experiments()) {
                     py::dict d;
                     d["name"] = e.name;
                     d["created_at"] = e.created_at;
                     d["created_by"] = e.created_by;
                     d["runs"] = e.run_count;
                     out.append(d);
                 }
                 return out;
             })
        .def("log_param",
             [](PyTracker& t, const std::string& id, const std::string& key, const std::string& value) {
                 t.tracker.log_param(id, key, value);
             },
             py::call_guard<py::gil_scoped_release>())
        .def("log_params",
             [](PyTracker& t, const std::string& id, const py::dict& params) {
                 StrPairs p = pairs(params);
                 py::gil_scoped_release release;
                 t.tracker.log_params(id, p);
             })
        // The hot path: one prepared INSERT and one upsert in one transaction, GIL released.
        .def("log_metric",
             [](PyTracker& t, const std::string& id, const std::string& key, double value, int64_t step,
                std::optional<int64_t> timestamp) { t.tracker.log_metric(id, key, value, step, timestamp); },
             py::call_guard<py::gil_scoped_release>())
        .def("log_metrics",
             [](PyTracker& t, const std::string& id, std::vector<std::string> keys, DArray values,
                std::optional<IArray> steps, std::optional<IArray> timestamps) {
                 auto v = values.unchecked<1>();
                 std::span<const double> vs(values.data(), size_t(v.shape(0)));
                 std::span<const int64_t> ss, ts;
                 if (steps) ss = {steps->data(), size_t(steps->size())};
                 if (timestamps) ts = {timestamps->data(), size_t(timestamps->size())};
                 py::gil_scoped_release release;
                 t.tracker.log_metrics(id, keys, vs, ss, ts);
             },
             py::arg("run_id"), py::arg("keys"), py::arg("values"), py::arg("steps") = py::none(),
             py::arg("timestamps") = py::none())
        .def("metric_history",
             [](PyTracker& t, const std::string& id, const std::string& key) {
                 std::vector<MetricPoint> points;
                 {
                     py::gil_scoped_release release;
                     points = t.tracker.metric_history(id, key);
                 }
                 py::array_t<int64_t> steps(points.size()), stamps(points.size());
                 py::array_t<double> values(points.size());
                 auto s = steps.mutable_unchecked<1>();
                 auto v = values.mutable_unchecked<1>();
                 auto ts = stamps.mutable_unchecked<1>();
                 for (size_t i = 0; i < points.size(); ++i) {
                     s(i) = points[i].step;
                     v(i) = points[i].value;
                     ts(i) = points[i].timestamp;
                 }
                 return py::make_tuple(steps, values, stamps);
             })
        .def("set_tags",
             [](PyTracker& t, const std::string& id, const py::dict& tags) {
                 StrPairs p = pairs(tags);
                 py::gil_scoped_release release;
                 t.tracker.set_tags(id, p);
             })
        .def("delete_tag",
             [](PyTracker& t, const std::string& id, const std::string& key) { t.tracker.delete_tag(id, key); },
             py::call_guard<py::gil_scoped_release>())
        // The lineage edge <ref> -consumed-> run:<id>, written by the tracker with the run checked.
        .def("log_input",
             [](PyTracker& t, const std::string& id, const std::string& ref) { return t.tracker.log_input(id, ref); },
             py::arg("run_id"), py::arg("ref"), py::call_guard<py::gil_scoped_release>())
        .def("log_artifact",
             [](PyTracker& t, const std::string& id, const std::string& local, const std::string& artifact_path) {
                 std::vector<ArtifactEntry> entries;
                 {
                     py::gil_scoped_release release;
                     entries = t.tracker.log_artifact(id, local, artifact_path);
                 }
                 return artifact_list(entries);
             },
             py::arg("run_id"), py::arg("local_path"), py::arg("artifact_path") = "")
        .def("artifacts",
             [](PyTracker& t, const std::string& id) { return artifact_list(t.tracker.artifacts(id)); })
        .def("download_artifacts",
             [](PyTracker& t, const std::string& id, const std::string& dest, const std::string& prefix) {
                 std::vector<std::filesystem::path> files;
                 {
                     py::gil_scoped_release release;
                     files = t.tracker.download_artifacts(id, dest, prefix);
                 }
                 py::list out;
                 for (const auto& f : files) out.append(f.string());
                 return out;
             },
             py::arg("run_id"), py::arg("dest"), py::arg("prefix") = "")
        .def("search",
             [](PyTracker& t, std::vector<std::string> experiments, const std::string& filter,
                std::vector<std::string> order_by, int64_t max_results, int64_t offset) {
                 SearchQuery q{std::move(experiments), filter, std::move(order_by), max_results, offset};
                 py::gil_scoped_release release;
                 return t.tracker.search(q);
             },
             py::arg("experiments") = std::vector<std::string>{}, py::arg("filter") = "",
             py::arg("order_by") = std::vector<std::string>{}, py::arg("max_results") = 1000,
             py::arg("offset") = 0)
        // Stale runs: the process running each run, its heartbeat, and runs whose process is gone.
        .def("heartbeat",
             [](PyTracker& t, std::vector<std::string> run_ids) { t.tracker.heartbeat(run_ids); },
             py::arg("run_ids"), py::call_guard<py::gil_scoped_release>())
        .def("run_process",
             [](PyTracker& t, const std::string& id) -> py::object {
                 std::optional<RunProcess> p;
                 {
                     py::gil_scoped_release release;
                     p = t.tracker.run_process(id);
                 }
                 return p ? py::object(process_dict(*p)) : py::object(py::none());
             })
        .def("stale_runs",
             [](PyTracker& t, int64_t timeout_ms, bool close) {
                 std::vector<StaleRun> runs;
                 {
                     py::gil_scoped_release release;
                     runs = close ? t.tracker.close_stale_runs(timeout_ms) : t.tracker.stale_runs(timeout_ms);
                 }
                 py::list out;
                 for (const auto& r : runs) {
                     py::dict d = info_dict(r.info);
                     d["process"] = process_dict(r.process);
                     d["reason"] = r.reason;
                     out.append(d);
                 }
                 return out;
             },
             py::arg("heartbeat_timeout_ms"), py::arg("close") = false);
}

} // namespace keel::bindings

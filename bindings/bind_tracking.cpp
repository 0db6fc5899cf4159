// bindings/bind_tracking.cpp
#include "bindings.hpp"
#include "records.hpp"

#include "keel/storage/workspace.hpp"
#include "keel/tracking/tracker.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

namespace py = pybind11;
using namespace keel::tracking;

namespace keel::bindings {

namespace {

// A run's attributes: the fields of keel._core.RunInfo, and the dicts ws.runs.stale() returns.
const auto kRunInfoFields = fields(
    field("id", &RunInfo::id), field("name", &RunInfo::name), field("experiment", &RunInfo::experiment),
    field("status", &RunInfo::status), field("start_time", &RunInfo::start_time, "ms since the epoch"),
    field("end_time", &RunInfo::end_time, "ms since the epoch; None while RUNNING"), field("user", &RunInfo::user),
    field("source", &RunInfo::source), field("git_commit", &RunInfo::git_commit), field("git_dirty", &RunInfo::git_dirty),
    field("parent_id", &RunInfo::parent_id), field("error", &RunInfo::error));
// These stay dicts: the process running a run, an artifact entry, an experiment.
const auto kProcessFields = fields(field("host", &RunProcess::host), field("pid", &RunProcess::pid),
                                   field("process_start", &RunProcess::process_start),
                                   field("heartbeat_at", &RunProcess::heartbeat_at));
const auto kArtifactFields =
    fields(field("path", &ArtifactEntry::path), field("digest", &ArtifactEntry::digest), field("size", &ArtifactEntry::size));
const auto kExperimentFields = fields(field("name", &Experiment::name), field("created_at", &Experiment::created_at),
                                      field("created_by", &Experiment::created_by), field("runs", &Experiment::run_count));

using StrPairs = std::vector<std::pair<std::string, std::string>>;

StrPairs pairs(const py::dict& d) {
    StrPairs out;
    out.reserve(d.size());
    for (auto item : d) out.emplace_back(py::str(item.first), py::str(item.second));
    return out;
}

// log_params and set_tags: a dict of str(key) -> str(value) written in one call, without the GIL.
auto pairs_call(void (Tracker::*write)(std::string_view, const StrPairs&)) {
    return [write](Tracker& t, const std::string& id, const py::dict& d) {
        StrPairs p = pairs(d);
        py::gil_scoped_release release;
        (t.*write)(id, p);
    };
}

} // namespace

// Runs cross as these two read-only types (keel.Run holds them): a field added to RunInfo or Run
// is listed here once and reaches Python with no dict keys to keep in step.
static void bind_run_records(py::module_& m) {
    bind_record<RunInfo>(m, "RunInfo", "A run's attributes (read-only): what keel.Run's properties read.",
                         kRunInfoFields)
        .def("__repr__", [](const RunInfo& i) { return "<keel._core.RunInfo " + i.id + " " + i.status + ">"; });
    bind_record<Run>(m, "RunRecord", "A run with its params, latest metric values and tags (read-only).",
                     fields(field("info", &Run::info), field("params", &Run::params), field("metrics", &Run::metrics),
                            field("tags", &Run::tags)))
        .def("__repr__", [](const Run& r) { return "<keel._core.RunRecord " + r.info.id + ">"; });
    // RunList.to_pandas and its HTML table read runs as rows: built here, since reading each run's
    // fields one attribute at a time in Python cost more than the search that found them.
    m.def(
        "run_rows",
        [](const std::vector<const Run*>& runs) {
            py::list rows;
            for (const Run* r : runs) {
                py::dict row;
                row["run_id"] = r->info.id;
                row["experiment"] = r->info.experiment;
                row["name"] = r->info.name;
                row["status"] = r->info.status;
                row["start_time"] = r->info.start_time;
                row["end_time"] = r->info.end_time ? py::cast(*r->info.end_time) : py::none();
                for (const auto& [k, v] : r->params) row[py::str("params." + k)] = v;
                for (const auto& [k, v] : r->metrics) row[py::str("metrics." + k)] = v;
                for (const auto& [k, v] : r->tags) row[py::str("tags." + k)] = v;
                rows.append(std::move(row));
            }
            return rows;
        },
        py::arg("runs"), "One dict per run: run_id, experiment, name, status, start_time, end_time, then "
                         "params.*, metrics.* (latest value) and tags.*.");
}

void bind_tracking(py::module_& m) {
    bind_run_records(m);
    using DArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
    using IArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

    // Tracker holds a reference to its workspace: keep_alive keeps the workspace for as long.
    py::class_<Tracker>(m, "Tracker")
        .def(py::init<storage::Workspace&>(), py::arg("workspace"), py::keep_alive<1, 2>())
        .def("start_run",
             [](Tracker& t, const std::string& experiment, const std::string& name,
                std::optional<std::string> parent_id, std::map<std::string, std::string> tags,
                const std::string& source, const std::string& git_commit, std::optional<bool> git_dirty,
                std::optional<int64_t> start_time) {
                 NewRun spec{experiment, name, std::move(parent_id), std::move(tags), source, git_commit, git_dirty,
                             start_time};
                 Run run;
                 {
                     py::gil_scoped_release release;
                     run.info = t.start_run(spec);
                 }
                 run.tags = spec.tags; // a new run has no params or metrics yet: no read needed
                 return run;
             },
             py::arg("experiment"), py::arg("name") = "", py::arg("parent_id") = py::none(),
             py::arg("tags") = std::map<std::string, std::string>{}, py::arg("source") = "",
             py::arg("git_commit") = "", py::arg("git_dirty") = py::none(), py::arg("start_time") = py::none())
        .def("end_run",
             [](Tracker& t, const std::string& id, const std::string& status, std::optional<std::string> error,
                std::optional<int64_t> end_time) {
                 py::gil_scoped_release release;
                 return t.end_run(id, status, std::move(error), end_time);
             },
             py::arg("run_id"), py::arg("status"), py::arg("error") = py::none(), py::arg("end_time") = py::none())
        .def("get_run",
             [](Tracker& t, const std::string& id) {
                 py::gil_scoped_release release;
                 return t.get_run(id);
             })
        .def("get_info",
             [](Tracker& t, const std::string& id) {
                 py::gil_scoped_release release;
                 return t.get_info(id);
             })
        .def("experiments",
             [](Tracker& t) { return dict_list(t.experiments(), kExperimentFields); })
        .def("log_param",
             [](Tracker& t, const std::string& id, const std::string& key, const std::string& value) {
                 t.log_param(id, key, value);
             },
             py::call_guard<py::gil_scoped_release>())
        .def("log_params", pairs_call(&Tracker::log_params), py::arg("run_id"), py::arg("params"))
        // The hot path: one prepared INSERT and one upsert in one transaction, GIL released.
        .def("log_metric",
             [](Tracker& t, const std::string& id, const std::string& key, double value, int64_t step,
                std::optional<int64_t> timestamp) { t.log_metric(id, key, value, step, timestamp); },
             py::call_guard<py::gil_scoped_release>())
        .def("log_metrics",
             [](Tracker& t, const std::string& id, std::vector<std::string> keys, DArray values,
                std::optional<IArray> steps, std::optional<IArray> timestamps) {
                 auto v = values.unchecked<1>();
                 std::span<const double> vs(values.data(), size_t(v.shape(0)));
                 std::span<const int64_t> ss, ts;
                 if (steps) ss = {steps->data(), size_t(steps->size())};
                 if (timestamps) ts = {timestamps->data(), size_t(timestamps->size())};
                 py::gil_scoped_release release;
                 t.log_metrics(id, keys, vs, ss, ts);
             },
             py::arg("run_id"), py::arg("keys"), py::arg("values"), py::arg("steps") = py::none(),
             py::arg("timestamps") = py::none())
        .def("metric_history",
             [](Tracker& t, const std::string& id, const std::string& key) {
                 std::vector<MetricPoint> points;
                 {
                     py::gil_scoped_release release;
                     points = t.metric_history(id, key);
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
        .def("log_runs",
             [](Tracker& t, const std::string& experiment, std::vector<std::string> names,
                std::map<std::string, std::vector<std::string>> params, std::map<std::string, DArray> metrics,
                std::map<std::string, std::vector<std::string>> tags, int64_t step, std::optional<int64_t> start_time,
                std::optional<int64_t> end_time, const std::string& status) {
                 RunBatch batch;
                 batch.names = std::move(names);
                 for (auto& [k, v] : params) batch.params.emplace_back(k, std::move(v));
                 for (auto& [k, v] : tags) batch.tags.emplace_back(k, std::move(v));
                 for (auto& [k, v] : metrics) batch.metrics.emplace_back(k, std::vector<double>(v.data(), v.data() + v.size()));
                 batch.step = step;
                 batch.start_time = start_time;
                 batch.end_time = end_time;
                 batch.status = status;
                 py::gil_scoped_release release;
                 return t.log_runs(experiment, batch);
             },
             py::arg("experiment"), py::arg("names"), py::arg("params"), py::arg("metrics"), py::arg("tags"),
             py::arg("step") = 0, py::arg("start_time") = py::none(), py::arg("end_time") = py::none(),
             py::arg("status") = "FINISHED",
             "Ended runs in bulk, one transaction: names, and per key one value per run. Returns the run ids.")
        .def("set_tags", pairs_call(&Tracker::set_tags), py::arg("run_id"), py::arg("tags"))
        .def("delete_tag",
             [](Tracker& t, const std::string& id, const std::string& key) { t.delete_tag(id, key); },
             py::call_guard<py::gil_scoped_release>())
        // The lineage edge <ref> -consumed-> run:<id>, written by the tracker with the run checked.
        .def("log_input",
             [](Tracker& t, const std::string& id, const std::string& ref) { return t.log_input(id, ref); },
             py::arg("run_id"), py::arg("ref"), py::call_guard<py::gil_scoped_release>())
        .def("log_artifact",
             [](Tracker& t, const std::string& id, const std::string& local, const std::string& artifact_path) {
                 std::vector<ArtifactEntry> entries;
                 {
                     py::gil_scoped_release release;
                     entries = t.log_artifact(id, local, artifact_path);
                 }
                 return dict_list(entries, kArtifactFields);
             },
             py::arg("run_id"), py::arg("local_path"), py::arg("artifact_path") = "")
        .def("artifacts",
             [](Tracker& t, const std::string& id) { return dict_list(t.artifacts(id), kArtifactFields); })
        .def("download_artifacts",
             [](Tracker& t, const std::string& id, const std::string& dest, const std::string& prefix) {
                 std::vector<std::filesystem::path> files;
                 {
                     py::gil_scoped_release release;
                     files = t.download_artifacts(id, dest, prefix);
                 }
                 py::list out;
                 for (const auto& f : files) out.append(f.string());
                 return out;
             },
             py::arg("run_id"), py::arg("dest"), py::arg("prefix") = "")
        .def("search",
             [](Tracker& t, std::vector<std::string> experiments, const std::string& filter,
                std::vector<std::string> order_by, int64_t max_results, int64_t offset) {
                 SearchQuery q{std::move(experiments), filter, std::move(order_by), max_results, offset};
                 py::gil_scoped_release release;
                 return t.search(q);
             },
             py::arg("experiments") = std::vector<std::string>{}, py::arg("filter") = "",
             py::arg("order_by") = std::vector<std::string>{}, py::arg("max_results") = 1000,
             py::arg("offset") = 0)
        // Stale runs: the process running each run, its heartbeat, and runs whose process is gone.
        .def("heartbeat",
             [](Tracker& t, std::vector<std::string> run_ids) { t.heartbeat(run_ids); },
             py::arg("run_ids"), py::call_guard<py::gil_scoped_release>())
        .def("run_process",
             [](Tracker& t, const std::string& id) -> py::object {
                 std::optional<RunProcess> p;
                 {
                     py::gil_scoped_release release;
                     p = t.run_process(id);
                 }
                 return p ? py::object(record_dict(*p, kProcessFields)) : py::object(py::none());
             })
        .def("stale_runs",
             [](Tracker& t, int64_t timeout_ms, bool close) {
                 std::vector<StaleRun> runs;
                 {
                     py::gil_scoped_release release;
                     runs = close ? t.close_stale_runs(timeout_ms) : t.stale_runs(timeout_ms);
                 }
                 py::list out;
                 for (const auto& r : runs) {
                     py::dict d = record_dict(r.info, kRunInfoFields);  // a run's attributes, process, reason
                     d["process"] = record_dict(r.process, kProcessFields);
                     d["reason"] = r.reason;
                     out.append(d);
                 }
                 return out;
             },
             py::arg("heartbeat_timeout_ms"), py::arg("close") = false);
}

} // namespace keel::bindings

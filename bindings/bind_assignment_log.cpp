// bindings/bind_assignment_log.cpp: serving::AssignmentLog, appended to from the endpoint's hot paths.
// The request dicts, decisions and predictions go in as they come out of RequestPath, so building a
// logged row costs no Python per row (a batch of 1,000 is one call).
#include "bindings.hpp"
#include "records.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/serving/assignment_log.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <charconv>
#include <cmath>

namespace py = pybind11;
using keel::serving::AssignmentLog;
using keel::serving::AssignmentLogOptions;
using keel::serving::Assignment;

namespace keel::bindings {

namespace {

// str(value), without a Python call for the usual str and int keys.
std::string text_of(PyObject* value) {
    if (PyUnicode_Check(value)) {
        Py_ssize_t n = 0;
        const char* s = PyUnicode_AsUTF8AndSize(value, &n);
        if (!s) throw py::error_already_set();
        return {s, size_t(n)};
    }
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow && !(x == -1 && PyErr_Occurred())) {
            char buf[24];
            auto end = std::to_chars(buf, buf + sizeof buf, x).ptr;
            return {buf, end};
        }
        PyErr_Clear();
    }
    return py::str(value).cast<std::string>();
}

// str(request.get(field, "")): the key or tenant as the log stores it.
std::string field_text(py::handle request, py::handle field) {
    if (!PyDict_Check(request.ptr()))
        throw_error(ErrorKind::InvalidArgument, "a request must be a dict, got {}",
                    py::str(py::type::of(request)).cast<std::string>());
    PyObject* value = PyDict_GetItemWithError(request.ptr(), field.ptr()); // borrowed
    if (!value) {
        if (PyErr_Occurred()) throw py::error_already_set();
        return {};
    }
    return text_of(value);
}

// ",".join(names)
std::string joined(py::handle names) {
    std::string out;
    for (auto name : names) {
        if (!out.empty()) out += ',';
        out += text_of(name.ptr());
    }
    return out;
}

void check_length(const char* what, size_t got, size_t n) {
    if (got != n)
        throw_error(ErrorKind::InvalidArgument, "append_served: {} has {} entries for {} requests (one per request)",
                    what, got, n);
}

const auto kStatsFields = fields(
    field("appended", &serving::AssignmentLogStats::appended), field("written", &serving::AssignmentLogStats::written),
    field("buffered", &serving::AssignmentLogStats::buffered), field("dropped", &serving::AssignmentLogStats::dropped),
    field("failed_writes", &serving::AssignmentLogStats::failed_writes),
    field("last_error", &serving::AssignmentLogStats::last_error));

} // namespace

py::dict log_stats_dict(const serving::AssignmentLogStats& s) { return record_dict(s, kStatsFields); }

void bind_assignment_log(py::module_& m) {
    py::class_<AssignmentLog, std::shared_ptr<AssignmentLog>>(m, "AssignmentLog")
        .def(py::init([](std::shared_ptr<storage::Workspace> ws, const std::string& endpoint, size_t flush_rows,
                         double max_age, size_t max_buffered) {
                 if (!std::isfinite(max_age) || max_age <= 0 || max_age > 86'400)
                     throw_error(ErrorKind::InvalidArgument,
                                 "assignment log of endpoint '{}': max_age={} s must be a positive number of seconds "
                                 "(at most a day), e.g. 1.0",
                                 endpoint, max_age);
                 AssignmentLogOptions o{flush_rows, std::chrono::milliseconds(std::llround(max_age * 1000)),
                                        max_buffered};
                 return std::make_shared<AssignmentLog>(std::move(ws), endpoint, o);
             }),
             py::arg("workspace"), py::arg("endpoint"), py::arg("flush_rows") = AssignmentLogOptions{}.flush_rows,
             py::arg("max_age") = 1.0, py::arg("max_buffered") = AssignmentLogOptions{}.max_buffered)
        .def_property_readonly("endpoint", &AssignmentLog::endpoint)
        // One served or shadow answer: request dict, its key and tenant field names, then what served it.
        .def("append",
             [](AssignmentLog& log, py::dict request, py::str key_field, py::str tenant_field, std::string variant,
                std::string model, int64_t version, std::string fallback, bool shadow,
                std::optional<double> prediction, int64_t revision, py::list missing, py::list stale) {
                 Assignment a;
                 a.ts = now_ms();
                 a.key = field_text(request, key_field);
                 a.tenant = field_text(request, tenant_field);
                 a.variant = std::move(variant);
                 a.model = std::move(model);
                 a.version = version;
                 a.fallback = std::move(fallback);
                 a.shadow = shadow;
                 a.prediction = prediction;
                 a.revision = revision;
                 if (!missing.empty()) a.missing = joined(missing);
                 if (!stale.empty()) a.stale = joined(stale);
                 log.append(std::move(a));
             })
        // A served batch as RequestPath.serve_many returns it: variants are (name, model ref, version),
        // decisions (variant index, shadow bits, fallback) per request, one prediction per request.
        .def("append_served",
             [](AssignmentLog& log, py::list requests, py::str key_field, py::str tenant_field, py::list variants,
                py::list decisions, py::array_t<double, py::array::c_style | py::array::forcecast> predictions,
                int64_t revision, py::list missing, py::list stale) {
                 const size_t n = requests.size();
                 check_length("decisions", decisions.size(), n);
                 check_length("predictions", size_t(predictions.size()), n);
                 check_length("missing", missing.size(), n);
                 check_length("stale", stale.size(), n);
                 struct Served {
                     std::string name, model;
                     int64_t version;
                 };
                 std::vector<Served> served;
                 for (auto v : variants) {
                     auto t = v.cast<py::tuple>();
                     served.push_back({t[0].cast<std::string>(), t[1].cast<std::string>(), t[2].cast<int64_t>()});
                 }
                 const int64_t ts = now_ms();
                 const double* preds = predictions.data();
                 std::vector<Assignment> rows(n);
                 for (size_t i = 0; i < n; ++i) {
                     Assignment& a = rows[i];
                     py::handle d = decisions[i];
                     if (!PyTuple_Check(d.ptr()) || PyTuple_GET_SIZE(d.ptr()) < 3)
                         throw_error(ErrorKind::InvalidArgument,
                                     "append_served: decision {} must be (variant index, shadow bits, fallback)", i);
                     const auto index = py::handle(PyTuple_GET_ITEM(d.ptr(), 0)).cast<int64_t>();
                     if (index < 0 || size_t(index) >= served.size())
                         throw_error(ErrorKind::InvalidArgument,
                                     "append_served: decision {} names variant {} of {}", i, index, served.size());
                     const Served& v = served[size_t(index)];
                     py::handle request = requests[i];
                     a.ts = ts;
                     a.key = field_text(request, key_field);
                     a.tenant = field_text(request, tenant_field);
                     a.variant = v.name;
                     a.model = v.model;
                     a.version = v.version;
                     a.fallback = text_of(PyTuple_GET_ITEM(d.ptr(), 2));
                     a.prediction = preds[i];
                     a.revision = revision;
                     py::handle mi = missing[i], st = stale[i];
                     if (PyObject_IsTrue(mi.ptr()) == 1) a.missing = joined(mi);
                     if (PyObject_IsTrue(st.ptr()) == 1) a.stale = joined(st);
                 }
                 py::gil_scoped_release release; // after close() the rows are written by this call
                 log.append(std::move(rows));
             })
        .def("flush", &AssignmentLog::flush, py::call_guard<py::gil_scoped_release>(),
             "Writes every buffered row now; raises the write's error (the rows stay buffered).")
        .def("close", &AssignmentLog::close, py::call_guard<py::gil_scoped_release>(),
             "Stops the background writer and writes what is buffered; later appends write at once.")
        .def("stats", [](const AssignmentLog& log) { return log_stats_dict(log.stats()); },
             "appended, written, buffered, dropped (past max_buffered while writes failed), failed_writes, "
             "last_error ('' once a write succeeds again).");
}

} // namespace keel::bindings

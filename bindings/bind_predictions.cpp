// bindings/bind_predictions.cpp: serving::PredictionTables (keel._core.PredictionTables), used by
// keel.predictions; PredictionTable crosses as a read-only record.
#include "bindings.hpp"
#include "records.hpp"

#include "keel/common/clock.hpp"
#include "keel/serving/prediction_tables.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/stl.h>

namespace py = pybind11;

namespace keel::bindings {

using serving::PredictionTable;
using serving::PredictionTables;

namespace {

const auto kTableFields = fields(
    field("name", &PredictionTable::name), field("model", &PredictionTable::model),
    field("version", &PredictionTable::version), field("view", &PredictionTable::view),
    field("score", &PredictionTable::score), field("items", &PredictionTable::items),
    field("rows", &PredictionTable::rows), field("written_at", &PredictionTable::written_at),
    field("written_by", &PredictionTable::written_by));

// The store with the workspace it reads (kept alive by the Python object).
struct PyPredictionTables {
    std::shared_ptr<storage::Workspace> ws;
    PredictionTables tables;
    explicit PyPredictionTables(std::shared_ptr<storage::Workspace> w) : ws(std::move(w)), tables(*ws) {}
};

} // namespace

void bind_predictions(py::module_& m) {
    bind_record<PredictionTable>(m, "PredictionTable",
                                 "One version of a prediction table: which model version wrote which view (read-only).",
                                 kTableFields)
        .def("features", &PredictionTable::features);
    py::class_<PyPredictionTables, std::shared_ptr<PyPredictionTables>>(m, "PredictionTables")
        .def(py::init<std::shared_ptr<storage::Workspace>>())
        .def_static("view_name", &PredictionTables::view_name, py::arg("name"), py::arg("version"))
        .def("record", [](PyPredictionTables& p, const std::string& name, const std::string& model, int64_t version,
                          bool score, int items, int64_t rows) {
            PredictionTable t;
            t.name = name;
            t.model = model;
            t.version = version;
            t.view = PredictionTables::view_name(name, version);
            t.score = score;
            t.items = items;
            t.rows = rows;
            t.written_at = now_ms();
            t.written_by = p.ws->user();
            py::gil_scoped_release release;
            p.tables.record(t);
            return t;
        }, py::arg("name"), py::arg("model"), py::arg("version"), py::arg("score"), py::arg("items"), py::arg("rows"))
        .def("model_of", [](PyPredictionTables& p, const std::string& name) { return p.tables.model_of(name); })
        .def("versions", [](PyPredictionTables& p, const std::string& name) { return p.tables.versions(name); })
        .def("names", [](PyPredictionTables& p) { return p.tables.names(); });
}

} // namespace keel::bindings

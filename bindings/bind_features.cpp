// bindings/bind_features.cpp: the feature store. Columns cross as numpy buffers both ways: input
// buffers are read in place (no per-row copies), results are handed over through capsules.
#include "bindings.hpp"

#include "arrow_input.hpp"
#include "records.hpp"

#include "keel/common/error.hpp"
#include "keel/features/input.hpp"
#include "keel/features/online.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

namespace py = pybind11;
using namespace keel::features;

namespace keel::bindings {

namespace {

// Columns from Python arrive as Arrow data (keel/_data.py) and are typed by the feature store's
// input rules (keel/features/input.hpp): `specs` are (name, dtype, dim) of the columns wanted.
std::vector<ColumnSpec> specs_from(const std::vector<std::tuple<std::string, std::string, uint32_t>>& specs) {
    std::vector<ColumnSpec> out;
    for (const auto& [name, dtype, dim] : specs) out.push_back({name, parse_dtype(dtype), dim});
    return out;
}

InputBatch input(const py::handle& data, const std::vector<ColumnSpec>& specs, const char* what) {
    ImportedBatch in = import_arrow_object(data);
    py::gil_scoped_release release;
    return conform_columns(std::move(in), specs, what);
}

using Specs = std::vector<std::tuple<std::string, std::string, uint32_t>>;

template <typename T>
py::array hand_over(std::vector<T>&& data, std::vector<py::ssize_t> shape) {
    auto* heap = new std::vector<T>(std::move(data));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(shape, heap->data(), owner);
}

template <typename T>
py::array typed(std::vector<uint8_t>&& bytes, size_t rows, size_t per_row) {
    // Reinterpret the byte vector's storage as T without copying: keep the vector alive.
    auto* heap = new std::vector<uint8_t>(std::move(bytes));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<uint8_t>*>(p); });
    std::vector<py::ssize_t> shape{py::ssize_t(rows)};
    if (per_row > 1) shape.push_back(py::ssize_t(per_row));
    return py::array_t<T>(shape, reinterpret_cast<const T*>(heap->data()), owner);
}

py::tuple column_out(Column&& c) {
    py::object values, offsets = py::none(), valid = py::none();
    switch (c.dtype) {
        case DType::Bool: values = typed<uint8_t>(std::move(c.values), c.rows, 1); break;
        case DType::Int32: values = typed<int32_t>(std::move(c.values), c.rows, 1); break;
        case DType::Int64:
        case DType::Timestamp: values = typed<int64_t>(std::move(c.values), c.rows, 1); break;
        case DType::Float32: values = typed<float>(std::move(c.values), c.rows, 1); break;
        case DType::Float64: values = typed<double>(std::move(c.values), c.rows, 1); break;
        case DType::Vector: values = typed<float>(std::move(c.values), c.rows, c.dim); break;
        case DType::String: {
            size_t n = c.values.size();
            values = hand_over<uint8_t>(std::move(c.values), {py::ssize_t(n)});
            offsets = hand_over<int64_t>(std::move(c.offsets), {py::ssize_t(c.rows + 1)});
            break;
        }
    }
    if (!c.valid.empty()) valid = hand_over<uint8_t>(std::move(c.valid), {py::ssize_t(c.rows)});
    return py::make_tuple(c.name, std::string(dtype_name(c.dtype)), c.dim, values, offsets, valid, c.masked);
}

py::list table_out(Table&& t) {
    py::list out;
    for (auto& c : t.columns) out.append(column_out(std::move(c)));
    return out;
}

ViewSpec view_from(const py::dict& d) {
    ViewSpec v;
    v.name = d["name"].cast<std::string>();
    v.entities = d["entities"].cast<std::vector<std::string>>();
    for (const auto& item : d["features"].cast<py::list>()) {
        auto f = item.cast<py::dict>();
        v.features.push_back({f["name"].cast<std::string>(), parse_dtype(f["dtype"].cast<std::string>()),
                              f["dim"].cast<uint32_t>(), f["pii"].cast<bool>()});
    }
    v.ttl_ms = d["ttl_ms"].cast<int64_t>();
    v.owner = d["owner"].cast<std::string>();
    v.description = d["description"].cast<std::string>();
    v.tags = d["tags"].cast<std::map<std::string, std::string>>();
    v.event_column = d["event_column"].cast<std::string>();
    v.created_column = d["created_column"].cast<std::string>();
    return v;
}

// A materialization's outcome stays a dict (ws.features.materialize returns it as it is).
const auto kMaterializeFields =
    fields(field("view", &MaterializeResult::view), field("version", &MaterializeResult::version),
           field("end_ms", &MaterializeResult::end_ms), field("entities", &MaterializeResult::entities),
           field("changed", &MaterializeResult::changed), field("snapshot_id", &MaterializeResult::snapshot_id),
           field("online", &MaterializeResult::online), field("written", &MaterializeResult::written));

// Keeps the workspace alive as long as the store.
struct PyFeatureStore {
    std::shared_ptr<storage::Workspace> ws;
    std::shared_ptr<FeatureStore> store;
};

} // namespace

// A feature view's definition and catalog entry, an entity and a training set's record cross as
// these read-only types (keel.FeatureView, keel.Entity and keel.TrainingSet hold them): a field
// added to the C++ struct is added to its list here once.
static void bind_feature_records(py::module_& m) {
    bind_record<ColumnSpec>(m, "ColumnSpec", "One column of a feature view or entity (read-only).",
        fields(field("name", &ColumnSpec::name),
               field("dtype", [](const ColumnSpec& c) { return std::string(dtype_name(c.dtype)); }),
               field("dim", &ColumnSpec::dim, "length of a vector column, 0 otherwise"), field("pii", &ColumnSpec::pii)))
        .def("__repr__", [](const ColumnSpec& c) {
            return "<keel._core.ColumnSpec " + c.name + ": " + std::string(dtype_name(c.dtype)) + ">";
        });
    bind_record<EntitySpec>(m, "EntitySpec", "An entity: what feature rows are about (read-only).",
        fields(field("name", &EntitySpec::name), field("join_keys", &EntitySpec::join_keys, "each int64 or string"),
               field("description", &EntitySpec::description)))
        .def("__repr__", [](const EntitySpec& e) { return "<keel._core.EntitySpec " + e.name + ">"; });
    bind_record<ViewSpec>(m, "ViewSpec", "A feature view definition at one version (read-only).",
        fields(field("name", &ViewSpec::name), field("version", &ViewSpec::version), field("entities", &ViewSpec::entities),
               field("join_keys", &ViewSpec::join_keys), field("features", &ViewSpec::features),
               field("ttl_ms", &ViewSpec::ttl_ms, "0: values never expire"), field("owner", &ViewSpec::owner),
               field("description", &ViewSpec::description), field("tags", &ViewSpec::tags),
               field("event_column", &ViewSpec::event_column), field("created_column", &ViewSpec::created_column)))
        .def("__repr__", [](const ViewSpec& v) {
            return "<keel._core.ViewSpec " + v.name + " v" + std::to_string(v.version) + ">";
        });
    bind_record<ViewInfo>(m, "ViewInfo", "A feature view's catalog entry: definition, size, freshness (read-only).",
        fields(field("spec", &ViewInfo::spec), field("rows", &ViewInfo::rows), field("segments", &ViewInfo::segments),
               field("last_event_ms", &ViewInfo::last_event_ms), field("last_ingest_ms", &ViewInfo::last_ingest_ms),
               field("materialized_end_ms", &ViewInfo::materialized_end_ms), field("online", &ViewInfo::online)));
    // Reads like the dict it used to be too (training_set.record["id"]).
    auto record = bind_record<TrainingSetRecord>(m, "TrainingSetRecord",
        "What rebuilds a training set: features, view versions and segment cutoffs, labels (read-only).",
        fields(field("id", &TrainingSetRecord::id), field("features", &TrainingSetRecord::features, "view:column"),
               field("view_versions", &TrainingSetRecord::view_versions),
               field("segment_cutoffs", &TrainingSetRecord::segment_cutoffs, "view -> last segment id included"),
               field("timestamp_column", &TrainingSetRecord::timestamp_column),
               field("labels_digest", &TrainingSetRecord::labels_digest, "the artifact holding the label frame"),
               field("label_rows", &TrainingSetRecord::label_rows), field("min_ts_ms", &TrainingSetRecord::min_ts_ms),
               field("max_ts_ms", &TrainingSetRecord::max_ts_ms), field("created_at_ms", &TrainingSetRecord::created_at_ms),
               field("created_by", &TrainingSetRecord::created_by)));
    add_mapping_access(record);
    bind_record<TrainingSpec>(m, "TrainingSpecRecord",
        "One revision of a training spec: a named list of features (read-only; keel.TrainingSpec holds it).",
        fields(field("name", &TrainingSpec::name), field("features", &TrainingSpec::features, "view:column"),
               field("description", &TrainingSpec::description), field("owner", &TrainingSpec::owner),
               field("tags", &TrainingSpec::tags), field("revision", &TrainingSpec::revision),
               field("created_at_ms", &TrainingSpec::created_at_ms), field("created_by", &TrainingSpec::created_by)))
        .def("__repr__", [](const TrainingSpec& t) {
            return "<keel._core.TrainingSpecRecord " + t.name + " r" + std::to_string(t.revision) + ">";
        });
}

void bind_features(py::module_& m) {
    bind_feature_records(m);
    py::class_<InputBatch>(m, "IngestBatch")
        .def_property_readonly("rows", [](const InputBatch& b) { return b.batch.rows; });

    py::class_<OnlineReader, std::shared_ptr<OnlineReader>>(m, "OnlineReader")
        .def_property_readonly("features", &OnlineReader::features)
        .def_property_readonly("width", &OnlineReader::width)
        .def("lookup",
             [](const OnlineReader& r, py::array_t<int64_t, py::array::c_style | py::array::forcecast> ids,
                std::optional<int64_t> now) {
                 size_t n = size_t(ids.size());
                 py::array_t<double> out({py::ssize_t(n), py::ssize_t(r.width())});
                 const int64_t* p = ids.data();
                 double* o = out.mutable_data();
                 if (n > 64 || r.remote()) {  // real work, or network I/O
                     py::gil_scoped_release release;
                     now ? r.lookup(p, n, o, *now) : r.lookup(p, n, o);
                 } else {
                     now ? r.lookup(p, n, o, *now) : r.lookup(p, n, o);
                 }
                 return out;
             },
             py::arg("ids"), py::arg("now_ms") = py::none())
        .def("lookup_into",
             [](const OnlineReader& r, py::array_t<int64_t, py::array::c_style> ids,
                py::array_t<double, py::array::c_style> out) {
                 if (size_t(out.size()) < size_t(ids.size()) * r.width())
                     throw_error(ErrorKind::InvalidArgument, "out holds {} values, need {}", out.size(),
                                 size_t(ids.size()) * r.width());
                 const int64_t* p = ids.data();
                 double* o = out.mutable_data();
                 if (r.remote()) {
                     py::gil_scoped_release release;
                     r.lookup(p, size_t(ids.size()), o);
                 } else {
                     r.lookup(p, size_t(ids.size()), o);
                 }
             })
        .def("refresh", &OnlineReader::refresh, py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("snapshot_key", &OnlineReader::snapshot_key)
        .def_property_readonly("remote", &OnlineReader::remote, "True when some view is read from Redis.");

    py::class_<PyFeatureStore>(m, "FeatureStore")
        .def(py::init([](std::shared_ptr<storage::Workspace> ws) {
                 return PyFeatureStore{ws, std::make_shared<FeatureStore>(ws)};
             }),
             py::arg("workspace"))
        .def("define_entity",
             [](PyFeatureStore& s, const std::string& name, const std::vector<std::pair<std::string, std::string>>& keys,
                const std::string& description) {
                 EntitySpec e{name, {}, description};
                 for (const auto& [k, t] : keys) e.join_keys.push_back({k, parse_dtype(t)});
                 return s.store->define_entity(e);
             })
        .def("entity", [](PyFeatureStore& s, const std::string& name) { return s.store->entity(name); })
        .def("entities", [](PyFeatureStore& s) { return s.store->entities(); })
        .def("define_view", [](PyFeatureStore& s, const py::dict& d) { return s.store->define_view(view_from(d)); })
        .def("view",
             [](PyFeatureStore& s, const std::string& name, std::optional<int64_t> version) {
                 return s.store->view(name, version);
             },
             py::arg("name"), py::arg("version") = py::none())
        .def("recorded_view",
             [](PyFeatureStore& s, const std::string& name, int64_t version) { return s.store->recorded_view(name, version); },
             "A view version as recorded, retired or not (what rebuilding a training set reads).")
        .def("list", [](PyFeatureStore& s) { return s.store->list(); })
        .def("retire_view", [](PyFeatureStore& s, const std::string& name) { s.store->retire_view(name); },
             py::call_guard<py::gil_scoped_release>())
        .def("remove_entity", [](PyFeatureStore& s, const std::string& name) { s.store->remove_entity(name); })
        .def("define_training_spec",
             [](PyFeatureStore& s, const std::string& name, const std::vector<std::string>& features,
                const std::string& description, const std::string& owner,
                const std::map<std::string, std::string>& tags) {
                 TrainingSpec spec;
                 spec.name = name;
                 spec.features = features;
                 spec.description = description;
                 spec.owner = owner;
                 spec.tags = tags;
                 return s.store->define_training_spec(spec);
             },
             py::arg("name"), py::arg("features"), py::arg("description") = "", py::arg("owner") = "",
             py::arg("tags") = std::map<std::string, std::string>{})
        .def("training_spec", [](PyFeatureStore& s, const std::string& name) { return s.store->training_spec(name); })
        .def("training_specs", [](PyFeatureStore& s) { return s.store->training_specs(); })
        .def("remove_training_spec",
             [](PyFeatureStore& s, const std::string& name) { s.store->remove_training_spec(name); })
        .def("prepare_ingest",
             [](PyFeatureStore& s, const std::string& view, const py::object& data) {
                 ImportedBatch in = import_arrow_object(data);
                 py::gil_scoped_release release;
                 return std::make_unique<InputBatch>(conform_ingest(std::move(in), s.store->view(view)));
             },
             "Arrow data checked and typed for ingest into the view (nothing written yet).")
        .def("ingest",
             [](PyFeatureStore& s, const std::string& view, const InputBatch& batch) {
                 py::gil_scoped_release release;
                 return s.store->ingest(view, batch.batch);
             })
        .def("read",
             [](PyFeatureStore& s, const std::string& view, std::optional<int64_t> start, std::optional<int64_t> end,
                std::optional<int64_t> as_of, const py::object& keys_data, std::optional<int64_t> version) {
                 ReadOptions opt;
                 opt.version = version;
                 opt.start_ms = start;
                 opt.end_ms = end;
                 opt.as_of_ms = as_of;
                 std::optional<InputBatch> keys;
                 if (!keys_data.is_none()) {
                     keys = input(keys_data, s.store->view(view, version).join_keys, "key");
                     opt.keys = &keys->batch;
                 }
                 Table t;
                 {
                     py::gil_scoped_release release;
                     t = s.store->read(view, opt);
                 }
                 return table_out(std::move(t));
             })
        .def("training_set",
             [](PyFeatureStore& s, const py::object& label_data, const Specs& specs,
                const std::vector<std::string>& features, const std::string& ts_column, const std::string& digest) {
                 InputBatch labels = input(label_data, specs_from(specs), "label column");
                 TrainingSet ts;
                 {
                     py::gil_scoped_release release;
                     ts = s.store->training_set(labels.batch, features, ts_column, digest);
                 }
                 return py::make_tuple(py::cast(std::move(ts.record)), table_out(std::move(ts.features)));
             })
        .def("training_set_record",
             [](PyFeatureStore& s, const std::string& id) { return s.store->training_set_record(id); })
        .def("rebuild_training_set",
             [](PyFeatureStore& s, const std::string& id, const py::object& label_data, const Specs& specs) {
                 InputBatch labels = input(label_data, specs_from(specs), "label column");
                 TrainingSet ts;
                 {
                     py::gil_scoped_release release;
                     ts = s.store->rebuild_training_set(id, labels.batch);
                 }
                 return py::make_tuple(py::cast(std::move(ts.record)), table_out(std::move(ts.features)));
             })
        // Engines (python/keel/engines/): the driver reads a snapshot and key boundaries once,
        // partitions join or read against them in their own processes.
        .def("snapshot", [](PyFeatureStore& s, const std::vector<std::string>& features) {
                 return s.store->snapshot(features);
             },
             "The views' versions and segment cutoffs a training set of these features reads now.")
        .def("join_at",
             [](PyFeatureStore& s, const py::object& label_data, const Specs& specs,
                const std::vector<std::string>& features, const std::string& ts_column,
                const std::map<std::string, int64_t>& view_versions, const std::map<std::string, int64_t>& cutoffs) {
                 InputBatch labels = input(label_data, specs_from(specs), "label column");
                 TrainingSetRecord at;
                 at.features = features;
                 at.timestamp_column = ts_column;
                 at.view_versions = view_versions;
                 at.segment_cutoffs = cutoffs;
                 Table t;
                 {
                     py::gil_scoped_release release;
                     t = s.store->join_at(labels.batch, at);
                 }
                 return table_out(std::move(t));
             },
             "The point-in-time join of labels against a snapshot's versions and cutoffs; nothing recorded.")
        .def("record_training_set",
             [](PyFeatureStore& s, const std::vector<std::string>& features,
                const std::map<std::string, int64_t>& view_versions, const std::map<std::string, int64_t>& cutoffs,
                const std::string& ts_column, const std::string& labels_digest, int64_t label_rows,
                std::optional<int64_t> min_ts_ms, std::optional<int64_t> max_ts_ms) {
                 TrainingSetRecord r;
                 r.features = features;
                 r.view_versions = view_versions;
                 r.segment_cutoffs = cutoffs;
                 r.timestamp_column = ts_column;
                 r.labels_digest = labels_digest;
                 r.label_rows = label_rows;
                 r.min_ts_ms = min_ts_ms;
                 r.max_ts_ms = max_ts_ms;
                 return s.store->record_training_set(std::move(r));
             },
             "Records a training set an engine built against a snapshot, with its lineage.")
        .def("key_splits",
             [](PyFeatureStore& s, const std::string& view, int64_t version, int64_t cutoff, size_t parts) {
                 std::vector<std::string> splits;
                 {
                     py::gil_scoped_release release;
                     splits = s.store->key_splits(view, version, cutoff, parts);
                 }
                 py::list out;
                 for (const auto& b : splits) out.append(py::bytes(b));
                 return out;
             },
             "Key boundaries (opaque bytes) splitting a view's rows into about equal ranges.")
        .def("read_range",
             [](PyFeatureStore& s, const std::string& view, int64_t version, int64_t cutoff,
                std::optional<py::bytes> lo, std::optional<py::bytes> hi, std::optional<int64_t> start,
                std::optional<int64_t> end) {
                 std::optional<std::string> l, h;
                 if (lo) l = std::string(*lo);
                 if (hi) h = std::string(*hi);
                 Table t;
                 {
                     py::gil_scoped_release release;
                     t = s.store->read_range(view, version, cutoff, l, h, start, end);
                 }
                 return table_out(std::move(t));
             },
             py::arg("view"), py::arg("version"), py::arg("cutoff"), py::arg("lo") = py::none(),
             py::arg("hi") = py::none(), py::arg("start") = py::none(), py::arg("end") = py::none(),
             "A view's rows with keys in [lo, hi) from segments up to cutoff, as read() gives them.")
        .def("materialize",
             [](PyFeatureStore& s, const std::string& view, std::optional<int64_t> end,
                std::optional<std::string> online) {
                 MaterializeResult r;
                 {
                     py::gil_scoped_release release;
                     r = s.store->materialize(view, end, online);
                 }
                 return record_dict(r, kMaterializeFields);
             },
             py::arg("view"), py::arg("end") = py::none(), py::arg("online") = py::none())
        .def_static("check_online", [](const std::string& online) {
                py::gil_scoped_release release;
                FeatureStore::check_online(online);
            }, py::arg("online"))
        .def("get_online",
             [](PyFeatureStore& s, const std::vector<std::string>& features, const py::object& key_data,
                const Specs& specs, std::optional<int64_t> now) {
                 InputBatch keys = input(key_data, specs_from(specs), "key");
                 Table t;
                 {
                     py::gil_scoped_release release;
                     t = s.store->get_online(features, keys.batch, now);
                 }
                 return table_out(std::move(t));
             })
        .def("online_keys",
             [](PyFeatureStore& s, const std::vector<std::string>& features) {
                 Specs out;
                 for (const auto& k : s.store->online_keys(features))
                     out.emplace_back(k.name, std::string(dtype_name(k.dtype)), k.dim);
                 return out;
             },
             py::arg("features"),
             "The join keys get_online needs for `features` as (name, dtype, dim), each name once.")
        .def("online_reader",
             [](PyFeatureStore& s, const std::vector<std::string>& features) { return s.store->online_reader(features); },
             py::keep_alive<0, 1>())
        .def("grant", [](PyFeatureStore& s, const std::string& role, const std::string& view,
                         const std::vector<std::string>& columns) { s.store->grant(role, view, columns); })
        .def("revoke", [](PyFeatureStore& s, const std::string& role, const std::string& view,
                          const std::vector<std::string>& columns) { s.store->revoke(role, view, columns); })
        .def("can_read", [](PyFeatureStore& s, const std::string& role, const std::string& view,
                            const std::string& column) { return s.store->can_read(role, view, column); })
        .def("grants", [](PyFeatureStore& s) { return s.store->grants(); });
}

} // namespace keel::bindings

// bindings/bind_features.cpp: the feature store. Columns cross as numpy buffers both ways: input
// buffers are read in place (no per-row copies), results are handed over through capsules.
#include "bindings.hpp"

#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

namespace py = pybind11;
using namespace keel::features;

namespace keel::bindings {

namespace {

// A batch borrowed from Python column tuples (name, dtype, dim, values, offsets, valid).
struct PyBatch {
    BatchView batch;
    std::vector<py::buffer_info> hold;
};

const void* buffer_ptr(PyBatch& b, const py::object& obj, size_t min_bytes, const std::string& what) {
    if (obj.is_none()) return nullptr;
    py::buffer buf = obj.cast<py::buffer>();
    py::buffer_info info = buf.request();
    size_t bytes = size_t(info.size) * size_t(info.itemsize);
    if (bytes < min_bytes)
        throw_error(ErrorKind::InvalidArgument, "buffer for {} holds {} bytes, expected at least {}", what, bytes,
                    min_bytes);
    // Contiguity: the Python side passes np.ascontiguousarray results.
    const void* p = info.ptr;
    b.hold.push_back(std::move(info));
    return p;
}

PyBatch to_batch(size_t rows, const py::list& columns) {
    PyBatch b;
    b.batch.rows = rows;
    for (const auto& item : columns) {
        auto t = item.cast<py::tuple>();
        ColumnView c;
        c.name = t[0].cast<std::string>();
        c.dtype = parse_dtype(t[1].cast<std::string>());
        c.dim = t[2].cast<uint32_t>();
        if (c.dtype == DType::String) {
            c.offsets = static_cast<const int64_t*>(buffer_ptr(b, t[4], (rows + 1) * 8, c.name + " offsets"));
            if (!c.offsets) throw_error(ErrorKind::InvalidArgument, "string column '{}' needs offsets", c.name);
            c.values = buffer_ptr(b, t[3], size_t(c.offsets[rows]), c.name);
            if (!c.values) c.values = "";
        } else {
            c.values = buffer_ptr(b, t[3], rows * dtype_width(c.dtype, c.dim), c.name);
            if (!c.values && rows) throw_error(ErrorKind::InvalidArgument, "column '{}' has no values", c.name);
        }
        c.valid = static_cast<const uint8_t*>(buffer_ptr(b, t[5], rows, c.name + " validity"));
        b.batch.columns.push_back(std::move(c));
    }
    return b;
}

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

py::dict column_dict(const ColumnSpec& c) {
    py::dict d;
    d["name"] = c.name;
    d["dtype"] = std::string(dtype_name(c.dtype));
    d["dim"] = c.dim;
    d["pii"] = c.pii;
    return d;
}

py::dict view_dict(const ViewSpec& v) {
    py::dict d;
    d["name"] = v.name;
    d["version"] = v.version;
    d["entities"] = v.entities;
    py::list keys, features;
    for (const auto& k : v.join_keys) keys.append(column_dict(k));
    for (const auto& f : v.features) features.append(column_dict(f));
    d["join_keys"] = keys;
    d["features"] = features;
    d["ttl_ms"] = v.ttl_ms;
    d["owner"] = v.owner;
    d["description"] = v.description;
    d["tags"] = v.tags;
    d["event_column"] = v.event_column;
    d["created_column"] = v.created_column;
    return d;
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

py::dict entity_dict(const EntitySpec& e) {
    py::dict d;
    d["name"] = e.name;
    py::list keys;
    for (const auto& k : e.join_keys) keys.append(column_dict(k));
    d["join_keys"] = keys;
    d["description"] = e.description;
    return d;
}

py::dict record_dict(const TrainingSetRecord& r) {
    py::dict d;
    d["id"] = r.id;
    d["features"] = r.features;
    d["view_versions"] = r.view_versions;
    d["segment_cutoffs"] = r.segment_cutoffs;
    d["timestamp_column"] = r.timestamp_column;
    d["labels_digest"] = r.labels_digest;
    d["label_rows"] = r.label_rows;
    d["min_ts_ms"] = r.min_ts_ms;
    d["max_ts_ms"] = r.max_ts_ms;
    d["created_at_ms"] = r.created_at_ms;
    d["created_by"] = r.created_by;
    return d;
}

// Keeps the workspace alive as long as the store.
struct PyFeatureStore {
    std::shared_ptr<storage::Workspace> ws;
    std::shared_ptr<FeatureStore> store;
};

} // namespace

void bind_features(py::module_& m) {
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
                 if (n > 64) {
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
                 r.lookup(ids.data(), size_t(ids.size()), out.mutable_data());
             })
        .def("refresh", &OnlineReader::refresh, py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("snapshot_key", &OnlineReader::snapshot_key);

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
                 return entity_dict(s.store->define_entity(e));
             })
        .def("entity", [](PyFeatureStore& s, const std::string& name) { return entity_dict(s.store->entity(name)); })
        .def("entities",
             [](PyFeatureStore& s) {
                 py::list out;
                 for (const auto& e : s.store->entities()) out.append(entity_dict(e));
                 return out;
             })
        .def("define_view", [](PyFeatureStore& s, const py::dict& d) { return view_dict(s.store->define_view(view_from(d))); })
        .def("view",
             [](PyFeatureStore& s, const std::string& name, std::optional<int64_t> version) {
                 return view_dict(s.store->view(name, version));
             },
             py::arg("name"), py::arg("version") = py::none())
        .def("list",
             [](PyFeatureStore& s) {
                 py::list out;
                 for (const auto& i : s.store->list()) {
                     py::dict d = view_dict(i.spec);
                     d["rows"] = i.rows;
                     d["segments"] = i.segments;
                     d["last_event_ms"] = i.last_event_ms;
                     d["last_ingest_ms"] = i.last_ingest_ms;
                     d["materialized_end_ms"] = i.materialized_end_ms;
                     out.append(d);
                 }
                 return out;
             })
        .def("ingest",
             [](PyFeatureStore& s, const std::string& view, size_t rows, const py::list& columns) {
                 PyBatch b = to_batch(rows, columns);
                 py::gil_scoped_release release;
                 return s.store->ingest(view, b.batch);
             })
        .def("read",
             [](PyFeatureStore& s, const std::string& view, std::optional<int64_t> start, std::optional<int64_t> end,
                std::optional<int64_t> as_of, std::optional<size_t> key_rows, const py::list& key_columns,
                std::optional<int64_t> version) {
                 ReadOptions opt;
                 opt.version = version;
                 opt.start_ms = start;
                 opt.end_ms = end;
                 opt.as_of_ms = as_of;
                 PyBatch keys = to_batch(key_rows.value_or(0), key_columns);
                 if (key_rows) opt.keys = &keys.batch;
                 Table t;
                 {
                     py::gil_scoped_release release;
                     t = s.store->read(view, opt);
                 }
                 return table_out(std::move(t));
             })
        .def("training_set",
             [](PyFeatureStore& s, size_t rows, const py::list& label_columns, const std::vector<std::string>& features,
                const std::string& ts_column, const std::string& digest) {
                 PyBatch labels = to_batch(rows, label_columns);
                 TrainingSet ts;
                 {
                     py::gil_scoped_release release;
                     ts = s.store->training_set(labels.batch, features, ts_column, digest);
                 }
                 return py::make_tuple(record_dict(ts.record), table_out(std::move(ts.features)));
             })
        .def("training_set_record",
             [](PyFeatureStore& s, const std::string& id) { return record_dict(s.store->training_set_record(id)); })
        .def("rebuild_training_set",
             [](PyFeatureStore& s, const std::string& id, size_t rows, const py::list& label_columns) {
                 PyBatch labels = to_batch(rows, label_columns);
                 TrainingSet ts;
                 {
                     py::gil_scoped_release release;
                     ts = s.store->rebuild_training_set(id, labels.batch);
                 }
                 return py::make_tuple(record_dict(ts.record), table_out(std::move(ts.features)));
             })
        .def("materialize",
             [](PyFeatureStore& s, const std::string& view, std::optional<int64_t> end) {
                 MaterializeResult r;
                 {
                     py::gil_scoped_release release;
                     r = s.store->materialize(view, end);
                 }
                 py::dict d;
                 d["view"] = r.view;
                 d["version"] = r.version;
                 d["end_ms"] = r.end_ms;
                 d["entities"] = r.entities;
                 d["changed"] = r.changed;
                 d["snapshot_id"] = r.snapshot_id;
                 return d;
             })
        .def("get_online",
             [](PyFeatureStore& s, const std::vector<std::string>& features, size_t rows, const py::list& key_columns,
                std::optional<int64_t> now) {
                 PyBatch keys = to_batch(rows, key_columns);
                 Table t;
                 {
                     py::gil_scoped_release release;
                     t = s.store->get_online(features, keys.batch, now);
                 }
                 return table_out(std::move(t));
             })
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

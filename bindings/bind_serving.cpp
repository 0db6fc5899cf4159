// bindings/bind_serving.cpp
#include "bindings.hpp"

#include "keel/common/error.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/features/online.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/serving/request_path.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/stl.h>

namespace py = pybind11;
using namespace keel::serving;

namespace keel::bindings {

namespace {

struct PyEndpointStore {
    std::shared_ptr<storage::Workspace> ws;
    EndpointStore store;
    explicit PyEndpointStore(std::shared_ptr<storage::Workspace> w) : ws(std::move(w)), store(*ws) {}
};

py::dict revision_dict(const EndpointRevision& r) {
    py::dict d;
    d["name"] = r.name;
    d["revision"] = r.revision;
    d["definition"] = r.definition_json;
    d["created_by"] = r.created_by;
    d["created_at"] = r.created_at;
    return d;
}

} // namespace

void bind_serving(py::module_& m) {
    // The native request path (all variants native predictors): one call per request.
    py::class_<RequestPath, std::shared_ptr<RequestPath>>(m, "RequestPath")
        .def(py::init([](std::shared_ptr<plugins::Router> router, std::shared_ptr<features::OnlineReader> reader,
                         const std::string& key, std::vector<std::shared_ptr<inference::Predictor>> predictors) {
            std::vector<std::shared_ptr<const inference::Predictor>> ps(predictors.begin(), predictors.end());
            return std::make_shared<RequestPath>(std::move(router), std::move(reader), key, std::move(ps));
        }))
        .def("serve", [](const RequestPath& p, py::dict request) {
            // (variant index, shadow bits, fallback, prediction); borrowed fields like Router.route
            std::vector<plugins::Field> fields;
            fields.reserve(request.size());
            PyObject *key, *value;
            Py_ssize_t pos = 0;
            std::vector<std::string> keep;
            keep.reserve(request.size());
            while (PyDict_Next(request.ptr(), &pos, &key, &value)) {
                Py_ssize_t n = 0;
                const char* k = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &n) : nullptr;
                if (!k) throw_error(ErrorKind::InvalidArgument, "request field names must be strings");
                plugins::Field f{std::string_view(k, size_t(n)), std::monostate{}};
                if (PyBool_Check(value)) f.value = value == Py_True;
                else if (PyLong_Check(value)) f.value = int64_t(PyLong_AsLongLong(value));
                else if (PyFloat_Check(value)) f.value = PyFloat_AS_DOUBLE(value);
                else if (PyUnicode_Check(value)) {
                    Py_ssize_t vn = 0;
                    const char* v = PyUnicode_AsUTF8AndSize(value, &vn);
                    f.value = std::string_view(v, size_t(vn));
                } else if (value != Py_None) {
                    keep.push_back(py::str(value).cast<std::string>());
                    f.value = std::string_view(keep.back());
                }
                if (PyErr_Occurred()) throw py::error_already_set();
                fields.push_back(f);
            }
            auto a = p.serve(fields);
            return py::make_tuple(a.decision.variant, a.decision.shadows,
                                  std::string(plugins::fallback_name(a.decision.fallback)), a.prediction);
        })
        .def("predict", &RequestPath::predict);

    py::class_<PyEndpointStore, std::shared_ptr<PyEndpointStore>>(m, "EndpointStore")
        .def(py::init<std::shared_ptr<storage::Workspace>>())
        .def("save", [](PyEndpointStore& s, const std::string& name, const std::string& json) {
            return revision_dict(s.store.save(name, json));
        })
        .def("current", [](PyEndpointStore& s, const std::string& name) { return revision_dict(s.store.current(name)); })
        .def("current_revision", [](PyEndpointStore& s, const std::string& name) { return s.store.current_revision(name); })
        .def("revisions", [](PyEndpointStore& s, const std::string& name) {
            py::list out;
            for (const auto& r : s.store.revisions(name)) out.append(revision_dict(r));
            return out;
        })
        .def("names", [](PyEndpointStore& s) { return s.store.names(); })
        // rows: (ts, key, tenant, variant, model, version, fallback, shadow, prediction, revision)
        .def("log", [](PyEndpointStore& s, const std::string& name, py::list rows) {
            std::vector<Assignment> out;
            out.reserve(rows.size());
            for (auto item : rows) {
                auto t = item.cast<py::tuple>();
                Assignment a;
                a.ts = t[0].cast<int64_t>();
                a.key = t[1].cast<std::string>();
                a.tenant = t[2].cast<std::string>();
                a.variant = t[3].cast<std::string>();
                a.model = t[4].cast<std::string>();
                a.version = t[5].cast<int64_t>();
                a.fallback = t[6].cast<std::string>();
                a.shadow = t[7].cast<bool>();
                if (!t[8].is_none()) a.prediction = t[8].cast<double>();
                a.revision = t[9].cast<int64_t>();
                out.push_back(std::move(a));
            }
            py::gil_scoped_release release;
            s.store.log(name, out);
        })
        .def("assignments", [](PyEndpointStore& s, const std::string& name, int64_t limit) {
            std::vector<Assignment> rows;
            {
                py::gil_scoped_release release;
                rows = s.store.assignments(name, limit);
            }
            py::dict cols;
            py::list ts, key, tenant, variant, model, version, fallback, shadow, prediction, revision;
            for (const auto& a : rows) {
                ts.append(a.ts);
                key.append(a.key);
                tenant.append(a.tenant);
                variant.append(a.variant);
                model.append(a.model);
                version.append(a.version);
                fallback.append(a.fallback);
                shadow.append(a.shadow);
                prediction.append(a.prediction ? py::object(py::float_(*a.prediction)) : py::object(py::none()));
                revision.append(a.revision);
            }
            cols["ts"] = ts;
            cols["key"] = key;
            cols["tenant"] = tenant;
            cols["variant"] = variant;
            cols["model"] = model;
            cols["version"] = version;
            cols["fallback"] = fallback;
            cols["shadow"] = shadow;
            cols["prediction"] = prediction;
            cols["revision"] = revision;
            return cols;
        });
}

} // namespace keel::bindings

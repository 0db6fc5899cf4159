// bindings/bind_serving.cpp
#include "bindings.hpp"
#include "plugin_values.hpp"
#include "request_fields.hpp"

#include "keel/common/error.hpp"
#include "keel/common/names.hpp"
#include "keel/serving/alias_check.hpp"
#include "keel/serving/definition_check.hpp"
#include "keel/serving/endpoint_definition.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/features/online.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/serving/request_path.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>

namespace py = pybind11;
using namespace keel::serving;

namespace keel::bindings {

namespace {

struct PyEndpointStore {
    std::shared_ptr<storage::Workspace> ws;
    EndpointStore store;
    explicit PyEndpointStore(std::shared_ptr<storage::Workspace> w) : ws(std::move(w)), store(*ws) {}
};

py::dict defaults_dict(const EndpointDefinition& d) {
    py::dict out;
    for (const auto& [name, value] : d.defaults) out[py::str(name)] = value;
    return out;
}

void bind_definition(py::module_& m) {
    py::class_<EndpointVariant>(m, "EndpointVariant")
        .def_readonly("name", &EndpointVariant::name)
        .def_readonly("model", &EndpointVariant::model)
        .def_readonly("weight", &EndpointVariant::weight)
        .def_readonly("signature", &EndpointVariant::signature)
        .def("__repr__", [](const EndpointVariant& v) {
            return fmt::format("<EndpointVariant {} {} weight={}>", v.name, v.model, v.weight);
        });

    // Immutable from Python: a changed definition is a new object (update(), with_weights()).
    py::class_<EndpointDefinition>(m, "EndpointDefinition")
        .def_static("from_json", &EndpointDefinition::from_json, py::arg("json"))
        .def_static("update", [](const std::optional<EndpointDefinition>& saved, py::dict given) {
            return EndpointDefinition::update(saved ? &*saved : nullptr, value_from_py(given));
        }, py::arg("saved"), py::arg("given"),
           "A partial update over `saved` (None: a new endpoint): fields not given keep their saved values, "
           "model= replaces the variants. Checked as a whole; InvalidArgument names the field.")
        .def_readonly("routing", &EndpointDefinition::routing)
        .def_readonly("variants", &EndpointDefinition::variants)
        .def_readonly("features", &EndpointDefinition::features)
        .def_readonly("inputs", &EndpointDefinition::inputs)
        .def_readonly("default", &EndpointDefinition::default_variant)
        .def_property_readonly("config", [](const EndpointDefinition& d) { return value_to_py(d.config); })
        .def_readonly("key", &EndpointDefinition::key)
        .def_readonly("tenant_field", &EndpointDefinition::tenant_field)
        .def_readonly("output", &EndpointDefinition::output)
        .def_property_readonly("on_missing", [](const EndpointDefinition& d) {
            return std::string(on_missing_name(d.on_missing));
        })
        .def_property_readonly("defaults", &defaults_dict)
        .def_readonly("signature", &EndpointDefinition::signature)
        .def_property_readonly("views", &EndpointDefinition::views)
        .def("with_weights", &EndpointDefinition::with_weights)
        .def("to_json", &EndpointDefinition::to_json, "The canonical JSON (keys sorted): what is stored.")
        .def("to_dict", [](const EndpointDefinition& d) { return value_to_py(d.to_value()); })
        .def("__eq__", [](const EndpointDefinition& a, const py::object& b) {
            return py::isinstance<EndpointDefinition>(b) && a == b.cast<const EndpointDefinition&>();
        })
        .def("__hash__", [](const EndpointDefinition& d) { return std::hash<std::string>{}(d.to_json()); })
        .def("__repr__", [](const EndpointDefinition& d) { return "<EndpointDefinition " + d.to_json() + ">"; });

    py::class_<EndpointRevision>(m, "EndpointRevision")
        .def_readonly("name", &EndpointRevision::name)
        .def_readonly("revision", &EndpointRevision::revision)
        .def_readonly("definition", &EndpointRevision::definition)
        .def_readonly("created_by", &EndpointRevision::created_by)
        .def_readonly("created_at", &EndpointRevision::created_at)
        .def("__repr__", [](const EndpointRevision& r) {
            return fmt::format("<EndpointRevision {} r{}>", r.name, r.revision);
        });
}

// (missing, stale) model input names of one answer.
std::pair<py::list, py::list> flags(const InputPlan& plan, size_t variant, std::span<const InputState> states) {
    py::list missing, stale;
    const auto& names = plan.names(variant);
    for (size_t j = 0; j < states.size(); ++j) {
        if (states[j] == InputState::Missing) missing.append(names[j]);
        else if (states[j] == InputState::Stale) stale.append(names[j]);
    }
    return {missing, stale};
}

py::array_t<double> to_array(std::span<const double> row) {
    py::array_t<double> out{py::ssize_t(row.size())};
    std::copy(row.begin(), row.end(), out.mutable_data());
    return out;
}

} // namespace

void bind_serving(py::module_& m) {
    bind_definition(m);
    m.def("check_alias_move", [](std::shared_ptr<storage::Workspace> ws, const std::string& model,
                                 const std::string& alias, int64_t version) {
        py::gil_scoped_release release;
        check_alias_move(*ws, model, alias, version);
    }, py::arg("ws"), py::arg("model"), py::arg("alias"), py::arg("version"),
       "Conflict when moving model@alias to version would break an endpoint serving the alias.");
    m.def("check_name", [](const std::string& name, const std::string& what, const std::string& example) {
        keel::check_name(name, what, example);
    }, "InvalidArgument unless `name` follows the rule model and endpoint names follow.");
    py::class_<InputPlan, std::shared_ptr<InputPlan>>(m, "InputPlan")
        .def(py::init([](const std::string& endpoint, std::vector<std::string> features, std::vector<std::string> inputs,
                         const std::string& on_missing, std::vector<std::pair<std::string, double>> defaults,
                         const std::vector<std::tuple<std::string, std::string, std::vector<std::string>,
                                                      std::vector<std::string>>>& variants) {
                 InputSpec spec{endpoint, std::move(features), std::move(inputs), parse_on_missing(on_missing),
                                std::move(defaults)};
                 std::vector<ModelInputs> vs;
                 for (const auto& [variant, model, names, declared] : variants)
                     vs.push_back({variant, model, names, declared});
                 return std::make_shared<InputPlan>(std::move(spec), std::move(vs));
             }),
             py::arg("endpoint"), py::arg("features"), py::arg("inputs"), py::arg("on_missing"), py::arg("defaults"),
             py::arg("variants"))
        .def_static("for_definition", [](const std::string& endpoint, const EndpointDefinition& definition,
                                         const std::vector<std::pair<std::string, std::vector<std::string>>>& models) {
            std::vector<ServedModel> served;
            for (const auto& [ref, names] : models) served.push_back({ref, names});
            return std::const_pointer_cast<InputPlan>(plan_inputs(endpoint, definition, served));
        }, py::arg("endpoint"), py::arg("definition"), py::arg("models"),
           "The plan of `definition` with models[i] = (resolved ref, input names) serving variant i.")
        .def("names", &InputPlan::names)
        .def("features_read", &InputPlan::features_read);

    // The endpoint's request path: one C++ call per request (or per batch).
    py::class_<RequestPath, std::shared_ptr<RequestPath>>(m, "RequestPath")
        .def(py::init([](std::shared_ptr<plugins::Router> router, std::shared_ptr<features::OnlineReader> reader,
                         const std::string& key, std::shared_ptr<InputPlan> plan,
                         std::vector<std::shared_ptr<inference::Predictor>> predictors) {
            std::vector<std::shared_ptr<const inference::Predictor>> ps(predictors.begin(), predictors.end());
            return std::make_shared<RequestPath>(std::move(router), std::move(reader), key, std::move(plan),
                                                 std::move(ps));
        }))
        .def_property_readonly("native", &RequestPath::native)
        .def("serve", [](const RequestPath& p, py::dict request) {
            // (variant index, shadow bits, fallback, prediction, missing, stale). The model runs with
            // the GIL released: other Python threads keep going during the trees.
            ThreadRequest guard;
            Request& r = guard.r;
            r.parse(request);
            RequestPath::Answer a;
            {
                py::gil_scoped_release release;
                a = p.serve(r.fields);
            }
            auto [missing, stale] = flags(p.plan(), size_t(a.decision.variant), a.states);
            return py::make_tuple(a.decision.variant, a.decision.shadows,
                                  std::string(plugins::fallback_name(a.decision.fallback)), a.prediction, missing,
                                  stale);
        })
        .def("prepare", [](const RequestPath& p, py::dict request) {
            // (variant index, shadow bits, fallback, model input row, missing, stale) for Python models.
            ThreadRequest guard;
            Request& r = guard.r;
            r.parse(request);
            auto a = p.prepare(r.fields);
            auto [missing, stale] = flags(p.plan(), size_t(a.decision.variant), a.states);
            return py::make_tuple(a.decision.variant, a.decision.shadows,
                                  std::string(plugins::fallback_name(a.decision.fallback)), to_array(a.row), missing,
                                  stale);
        })
        .def("inputs", [](const RequestPath& p, int index, py::dict request) {
            // (model input row, missing, stale, prediction or None) of variant `index` (shadows).
            ThreadRequest guard;
            Request& r = guard.r;
            r.parse(request);
            auto a = p.inputs(index, r.fields);
            auto [missing, stale] = flags(p.plan(), size_t(index), a.states);
            bool native = p.native();
            return py::make_tuple(to_array(a.row), missing, stale,
                                  native ? py::object(py::float_(a.prediction)) : py::object(py::none()));
        })
        .def("serve_many", [](const RequestPath& p, py::list requests, bool predict) {
            // {"decisions": [(variant, shadows, fallback)], "predictions": array or None,
            //  "rows": [index array per variant], "inputs": [matrix per variant],
            //  "missing": [names per request], "stale": [...]}
            const size_t n = requests.size();
            std::vector<Request> reqs(n);
            std::vector<std::span<const plugins::Field>> spans(n);
            std::vector<int64_t> ids(n, 0);
            bool need_key = !p.plan().spec().features.empty();
            for (size_t i = 0; i < n; ++i) {
                reqs[i].parse(requests[i].cast<py::dict>());
                spans[i] = reqs[i].fields;
                if (need_key) {
                    try {
                        ids[i] = p.entity_id(spans[i]);
                    } catch (const Error& e) {
                        throw Error(e.kind(), fmt::format("request {}: {}", i, e.what()));
                    }
                }
            }
            RequestPath::Batch b;
            {
                py::gil_scoped_release release;
                b = p.serve_many(spans, ids.data(), predict);
            }
            py::dict out;
            py::list decisions, rows, inputs, missing(n), stale(n);
            for (const auto& d : b.decisions)
                decisions.append(py::make_tuple(d.variant, d.shadows, std::string(plugins::fallback_name(d.fallback))));
            for (size_t v = 0; v < b.rows_of.size(); ++v) {
                const size_t m = b.rows_of[v].size(), w = p.plan().width(v);
                py::array_t<int64_t> idx{py::ssize_t(m)};
                std::copy(b.rows_of[v].begin(), b.rows_of[v].end(), idx.mutable_data());
                py::array_t<double> x({py::ssize_t(m), py::ssize_t(w)});
                std::copy(b.inputs[v].begin(), b.inputs[v].end(), x.mutable_data());
                rows.append(idx);
                inputs.append(x);
                for (size_t k = 0; k < m; ++k) {
                    auto [mi, st] = flags(p.plan(), v, std::span<const InputState>(b.states[v].data() + k * w, w));
                    missing[b.rows_of[v][k]] = mi;
                    stale[b.rows_of[v][k]] = st;
                }
            }
            out["decisions"] = decisions;
            if (!b.predictions.empty()) {
                py::array_t<double> preds{py::ssize_t(n)};
                std::copy(b.predictions.begin(), b.predictions.end(), preds.mutable_data());
                out["predictions"] = preds;
            } else {
                out["predictions"] = py::none();
            }
            out["rows"] = rows;
            out["inputs"] = inputs;
            out["missing"] = missing;
            out["stale"] = stale;
            return out;
        });

    bind_assignment_log(m);
    bind_endpoint(m);

    py::class_<PyEndpointStore, std::shared_ptr<PyEndpointStore>>(m, "EndpointStore")
        .def(py::init<std::shared_ptr<storage::Workspace>>())
        .def("save", [](PyEndpointStore& s, const std::string& name, const EndpointDefinition& definition) {
            py::gil_scoped_release release;  // loads the routing plugin, reads the registry and features
            return s.store.save(name, definition);
        })
        .def("define", [](PyEndpointStore& s, const std::string& name, py::dict given) {
            auto value = value_from_py(given);
            py::gil_scoped_release release;
            return s.store.define(name, value);
        })
        .def("link_views", [](PyEndpointStore& s, const std::string& name, const EndpointDefinition& definition) {
            s.store.link_views(name, definition);
        })
        .def("current", [](PyEndpointStore& s, const std::string& name) { return s.store.current(name); })
        .def("current_revision", [](PyEndpointStore& s, const std::string& name) { return s.store.current_revision(name); })
        .def("revisions", [](PyEndpointStore& s, const std::string& name) { return s.store.revisions(name); })
        .def("names", [](PyEndpointStore& s) { return s.store.names(); })
        // rows: (ts, key, tenant, variant, model, version, fallback, shadow, prediction, revision[, missing, stale])
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
                if (t.size() > 11) {
                    a.missing = t[10].cast<std::string>();
                    a.stale = t[11].cast<std::string>();
                }
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
            py::list ts, key, tenant, variant, model, version, fallback, shadow, prediction, revision, missing, stale;
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
                missing.append(a.missing);
                stale.append(a.stale);
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
            cols["missing"] = missing;
            cols["stale"] = stale;
            return cols;
        });
}

} // namespace keel::bindings

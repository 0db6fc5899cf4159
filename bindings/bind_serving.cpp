// bindings/bind_serving.cpp
#include "bindings.hpp"
#include "plugin_values.hpp"

#include "keel/common/error.hpp"
#include "keel/common/names.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/alias_check.hpp"
#include "keel/serving/endpoint_definition.hpp"
#include "keel/serving/endpoint_store.hpp"
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
        .def_readonly("tenants", &EndpointDefinition::tenants)
        .def_readonly("log_inputs", &EndpointDefinition::log_inputs)
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

} // namespace

void bind_serving(py::module_& m) {
    bind_definition(m);
    m.def("move_alias", [](std::shared_ptr<storage::Workspace> ws, registry::Registry& registry,
                           const std::string& model, const std::string& alias, int64_t version) {
        py::gil_scoped_release release;
        return move_alias(*ws, registry, model, alias, version);
    }, py::arg("ws"), py::arg("registry"), py::arg("model"), py::arg("alias"), py::arg("version"),
       "Points model@alias at version in one transaction; Conflict (and nothing written) when that "
       "would break an endpoint serving the alias.");
    m.def("check_name", [](const std::string& name, const std::string& what, const std::string& example) {
        keel::check_name(name, what, example);
    }, "InvalidArgument unless `name` follows the rule model and endpoint names follow.");
    bind_assignment_log(m);
    bind_endpoint(m);
    bind_predictions(m);

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
        .def("current", [](PyEndpointStore& s, const std::string& name) { return s.store.current(name); })
        .def("current_revision", [](PyEndpointStore& s, const std::string& name) { return s.store.current_revision(name); })
        .def("revisions", [](PyEndpointStore& s, const std::string& name) { return s.store.revisions(name); })
        .def("names", [](PyEndpointStore& s) { return s.store.names(); })
        .def("remove", [](PyEndpointStore& s, const std::string& name) { s.store.remove(name); },
             "Removes the endpoint (history kept; saving it again brings it back as revision N+1).")
        .def("removal", [](PyEndpointStore& s, const std::string& name) -> py::object {
                 auto r = s.store.removal(name);
                 if (!r) return py::none();
                 py::dict d;
                 d["revision"] = r->revision;
                 d["removed_by"] = r->removed_by;
                 d["removed_at"] = r->removed_at;
                 return d;
             },
             "{revision, removed_by, removed_at} while the endpoint is removed, else None.")
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
            py::list ts, key, tenant, variant, model, version, fallback, shadow, prediction, revision, missing, stale,
                latency_us, inputs;
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
                latency_us.append(a.latency_us);
                inputs.append(a.inputs);
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
            cols["latency_us"] = latency_us;
            cols["inputs"] = inputs;
            return cols;
        });
}

} // namespace keel::bindings

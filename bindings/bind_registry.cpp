// bindings/bind_registry.cpp
#include "bindings.hpp"

#include "keel/registry/lineage_refs.hpp"
#include "keel/registry/registry.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/stl.h>

namespace py = pybind11;
using namespace keel::registry;

namespace keel::bindings {

namespace {

// The registry and the workspace it writes to, kept alive together.
struct PyRegistry {
    std::shared_ptr<storage::Workspace> ws;
    Registry registry;
    explicit PyRegistry(std::shared_ptr<storage::Workspace> w) : ws(std::move(w)), registry(*ws) {}
};

py::object opt(const std::optional<int64_t>& v) { return v ? py::object(py::int_(*v)) : py::object(py::none()); }

py::dict model_dict(const RegisteredModel& m) {
    py::dict d;
    d["name"] = m.name;
    d["description"] = m.description;
    d["owner"] = m.owner;
    d["tags"] = m.tags;
    d["created_at"] = m.created_at;
    d["created_by"] = m.created_by;
    d["latest_version"] = opt(m.latest_version);
    d["aliases"] = m.aliases;
    return d;
}

py::dict event_dict(const Event& e) {
    py::dict d;
    d["id"] = e.id;
    d["model"] = e.model;
    d["action"] = e.action;
    d["subject"] = e.subject;
    d["from"] = e.from;
    d["to"] = e.to;
    d["user"] = e.user;
    d["at"] = e.at;
    return d;
}

ModelInfo make_info(std::optional<std::string> description, std::optional<std::string> owner,
                    std::map<std::string, std::string> tags) {
    return ModelInfo{std::move(description), std::move(owner), std::move(tags)};
}

// A version crosses as its bound type (ModelVersionRecord below).
py::object version_out(const ModelVersion& v) { return py::cast(v); }

// Runs `fn` without the GIL and converts its result with the GIL held again.
template <typename Fn, typename Conv>
auto nogil(Fn&& fn, Conv&& conv) {
    std::optional<decltype(fn())> result;
    {
        py::gil_scoped_release release;
        result.emplace(fn());
    }
    return conv(*result);
}

} // namespace

// A model version crosses as this read-only type; keel.ModelVersion subclasses it, so a field added
// to registry::ModelVersion and bound here is an attribute in Python with nothing else to change.
// Three fields take their Python shape here: run_id None when empty, the stage by name, and the
// signature as JSON text (keel.ModelVersion.signature parses it).
static void bind_model_version(py::module_& m) {
    py::class_<ModelVersion>(m, "ModelVersionRecord", "One immutable model version (read-only).")
        .def(py::init<const ModelVersion&>(), py::arg("record"))
        .def_readonly("name", &ModelVersion::name)
        .def_readonly("version", &ModelVersion::version)
        .def_property_readonly("run_id",
                               [](const ModelVersion& v) -> py::object {
                                   return v.run_id.empty() ? py::object(py::none()) : py::str(v.run_id);
                               })
        .def_readonly("digest", &ModelVersion::digest)
        .def_readonly("flavour", &ModelVersion::flavour)
        .def_readonly("signature_json", &ModelVersion::signature, "the input signature as JSON ('' when unknown)")
        .def_readonly("description", &ModelVersion::description)
        .def_readonly("tags", &ModelVersion::tags)
        .def_readonly("created_at", &ModelVersion::created_at, "ms since the epoch")
        .def_readonly("created_by", &ModelVersion::created_by)
        .def_property_readonly("stage", [](const ModelVersion& v) { return std::string(stage_name(v.stage)); })
        .def_readonly("aliases", &ModelVersion::aliases)
        .def_property_readonly("ref", &ModelVersion::ref, "churn/3: resolves to this version everywhere")
        .def_property_readonly("lineage_ref", &ModelVersion::lineage_ref, "model:churn/3: its lineage node");
}

void bind_registry(py::module_& m) {
    bind_model_version(m);
    using Tags = std::map<std::string, std::string>;
    py::class_<PyRegistry>(m, "Registry")
        .def(py::init<std::shared_ptr<storage::Workspace>>(), py::arg("workspace"),
             py::call_guard<py::gil_scoped_release>())
        .def("create_model",
             [](PyRegistry& r, const std::string& name, std::optional<std::string> description,
                std::optional<std::string> owner, Tags tags) {
                 auto info = make_info(std::move(description), std::move(owner), std::move(tags));
                 return nogil([&] { return r.registry.create_model(name, info); }, model_dict);
             },
             py::arg("name"), py::arg("description") = py::none(), py::arg("owner") = py::none(),
             py::arg("tags") = Tags{})
        .def("update_model",
             [](PyRegistry& r, const std::string& name, std::optional<std::string> description,
                std::optional<std::string> owner, Tags tags) {
                 auto info = make_info(std::move(description), std::move(owner), std::move(tags));
                 return nogil([&] { return r.registry.update_model(name, info); }, model_dict);
             },
             py::arg("name"), py::arg("description") = py::none(), py::arg("owner") = py::none(),
             py::arg("tags") = Tags{})
        .def("model",
             [](PyRegistry& r, const std::string& name) {
                 return nogil([&] { return r.registry.model(name); }, model_dict);
             })
        .def("models",
             [](PyRegistry& r) {
                 return nogil([&] { return r.registry.models(); }, [](const std::vector<RegisteredModel>& all) {
                     py::list out;
                     for (const auto& m : all) out.append(model_dict(m));
                     return out;
                 });
             })
        .def("register_version",
             [](PyRegistry& r, const std::string& name, const std::string& digest, const std::string& run_id,
                const std::string& flavour, const std::string& signature, const std::string& description,
                Tags tags, std::optional<std::string> model_description, std::optional<std::string> owner) {
                 NewVersion nv{digest, run_id, flavour, signature, description, std::move(tags)};
                 ModelInfo info{std::move(model_description), std::move(owner), {}};
                 return nogil([&] { return r.registry.register_version(name, nv, info); }, version_out);
             },
             py::arg("name"), py::arg("digest"), py::arg("run_id") = "", py::arg("flavour") = "python",
             py::arg("signature") = "", py::arg("description") = "", py::arg("tags") = Tags{},
             py::arg("model_description") = py::none(), py::arg("owner") = py::none())
        .def("version",
             [](PyRegistry& r, const std::string& name, int64_t version) {
                 return nogil([&] { return r.registry.version(name, version); }, version_out);
             })
        .def("versions",
             [](PyRegistry& r, const std::string& name) {
                 return nogil([&] { return r.registry.versions(name); }, [](const std::vector<ModelVersion>& all) {
                     py::list out;
                     for (const auto& v : all) out.append(version_out(v));
                     return out;
                 });
             })
        .def("resolve",
             [](PyRegistry& r, const std::string& ref) {
                 return nogil([&] { return r.registry.resolve(ref); }, version_out);
             })
        .def("resolve_lineage_ref",
             [](PyRegistry& r, const std::string& ref, std::optional<int64_t> as_of) {
                 py::gil_scoped_release release;
                 return resolve_lineage_ref(r.registry, ref, as_of);
             },
             py::arg("ref"), py::arg("as_of") = py::none())
        .def("load_artifact",
             [](PyRegistry& r, const std::string& ref) {
                 return nogil([&] { return r.registry.load_artifact(ref); },
                              [](const std::string& data) { return py::bytes(data); });
             })
        .def("set_alias",
             [](PyRegistry& r, const std::string& name, const std::string& alias, int64_t version) {
                 return nogil([&] { return r.registry.set_alias(name, alias, version); }, version_out);
             })
        .def("delete_alias",
             [](PyRegistry& r, const std::string& name, const std::string& alias) {
                 r.registry.delete_alias(name, alias);
             },
             py::call_guard<py::gil_scoped_release>())
        .def("transition_stage",
             [](PyRegistry& r, const std::string& name, int64_t version, const std::string& stage,
                bool archive_existing) {
                 return nogil(
                     [&] { return r.registry.transition_stage(name, version, parse_stage(stage), archive_existing); },
                     version_out);
             },
             py::arg("name"), py::arg("version"), py::arg("stage"), py::arg("archive_existing") = false)
        .def("events",
             [](PyRegistry& r, const std::string& name) {
                 return nogil([&] { return r.registry.events(name); }, [](const std::vector<Event>& all) {
                     py::list out;
                     for (const auto& e : all) out.append(event_dict(e));
                     return out;
                 });
             },
             py::arg("name") = "");
}

} // namespace keel::bindings

// bindings/bind_registry.cpp
#include "bindings.hpp"
#include "records.hpp"

#include "keel/registry/lineage_refs.hpp"
#include "keel/registry/registry.hpp"
#include "keel/storage/workspace.hpp"

#include <pybind11/stl.h>

namespace py = pybind11;
using namespace keel::registry;

namespace keel::bindings {

namespace {

// An audit event stays a dict (ws.models.events() makes a DataFrame of them).
const auto kEventFields = fields(field("id", &Event::id), field("model", &Event::model), field("action", &Event::action),
                                 field("subject", &Event::subject), field("from", &Event::from), field("to", &Event::to),
                                 field("user", &Event::user), field("at", &Event::at));

// Records (and lists of them) cross as their bound types (copied).
const auto as_record = [](const auto& value) { return py::cast(value); };

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

using Tags = std::map<std::string, std::string>;

// create_model and update_model: a model's name and what to set (None: leave as it is).
auto model_info_call(RegisteredModel (Registry::*call)(std::string_view, const ModelInfo&)) {
    return [call](Registry& r, const std::string& name, std::optional<std::string> description,
                  std::optional<std::string> owner, Tags tags) {
        ModelInfo info{std::move(description), std::move(owner), std::move(tags)};
        return nogil([&] { return (r.*call)(name, info); }, as_record);
    };
}

} // namespace

// A registered model and a model version cross as these read-only types; keel.RegisteredModel and
// keel.ModelVersion subclass them, so a field added to the C++ struct and listed here is an
// attribute in Python with nothing else to change. Three fields take their Python shape here:
// run_id None when empty, the stage by name, and the signature as JSON text (keel.ModelVersion
// .signature parses it).
static void bind_model_records(py::module_& m) {
    bind_record<RegisteredModel>(m, "RegisteredModelRecord", "A registered model (read-only).",
        fields(field("name", &RegisteredModel::name), field("description", &RegisteredModel::description),
               field("owner", &RegisteredModel::owner), field("tags", &RegisteredModel::tags),
               field("created_at", &RegisteredModel::created_at, "ms since the epoch"),
               field("created_by", &RegisteredModel::created_by),
               field("latest_version", &RegisteredModel::latest_version, "None before the first version"),
               field("aliases", &RegisteredModel::aliases, "alias -> version")));
    bind_record<ModelVersion>(m, "ModelVersionRecord", "One immutable model version (read-only).",
        fields(field("name", &ModelVersion::name), field("version", &ModelVersion::version),
               field("run_id", [](const ModelVersion& v) {
                   return v.run_id.empty() ? py::object(py::none()) : py::object(py::str(v.run_id));
               }),
               field("digest", &ModelVersion::digest), field("flavour", &ModelVersion::flavour),
               field("signature_json", &ModelVersion::signature, "the input signature as JSON ('' when unknown)"),
               field("description", &ModelVersion::description), field("tags", &ModelVersion::tags),
               field("created_at", &ModelVersion::created_at, "ms since the epoch"),
               field("created_by", &ModelVersion::created_by),
               field("stage", [](const ModelVersion& v) { return std::string(stage_name(v.stage)); }),
               field("aliases", &ModelVersion::aliases),
               field("ref", &ModelVersion::ref, "churn/3: resolves to this version everywhere"),
               field("lineage_ref", &ModelVersion::lineage_ref, "model:churn/3: its lineage node")));
}

void bind_registry(py::module_& m) {
    bind_model_records(m);
    // Registry holds a reference to its workspace: keep_alive keeps the workspace for as long.
    py::class_<Registry>(m, "Registry")
        .def(py::init<storage::Workspace&>(), py::arg("workspace"), py::keep_alive<1, 2>(),
             py::call_guard<py::gil_scoped_release>())
        .def("create_model", model_info_call(&Registry::create_model), py::arg("name"),
             py::arg("description") = py::none(), py::arg("owner") = py::none(), py::arg("tags") = Tags{})
        .def("update_model", model_info_call(&Registry::update_model), py::arg("name"),
             py::arg("description") = py::none(), py::arg("owner") = py::none(), py::arg("tags") = Tags{})
        .def("model",
             [](Registry& r, const std::string& name) {
                 return nogil([&] { return r.model(name); }, as_record);
             })
        .def("models",
             [](Registry& r) {
                 return nogil([&] { return r.models(); }, as_record);
             })
        .def("register_version",
             [](Registry& r, const std::string& name, const std::string& digest, const std::string& run_id,
                const std::string& flavour, const std::string& signature, const std::string& description,
                Tags tags, std::optional<std::string> model_description, std::optional<std::string> owner) {
                 NewVersion nv{digest, run_id, flavour, signature, description, std::move(tags)};
                 ModelInfo info{std::move(model_description), std::move(owner), {}};
                 return nogil([&] { return r.register_version(name, nv, info); }, as_record);
             },
             py::arg("name"), py::arg("digest"), py::arg("run_id") = "", py::arg("flavour") = "python",
             py::arg("signature") = "", py::arg("description") = "", py::arg("tags") = Tags{},
             py::arg("model_description") = py::none(), py::arg("owner") = py::none())
        .def("version",
             [](Registry& r, const std::string& name, int64_t version) {
                 return nogil([&] { return r.version(name, version); }, as_record);
             })
        .def("versions",
             [](Registry& r, const std::string& name) {
                 return nogil([&] { return r.versions(name); }, as_record);
             })
        .def("resolve",
             [](Registry& r, const std::string& ref) {
                 return nogil([&] { return r.resolve(ref); }, as_record);
             })
        .def("resolve_lineage_ref",
             [](Registry& r, const std::string& ref, std::optional<int64_t> as_of) {
                 py::gil_scoped_release release;
                 return resolve_lineage_ref(r, ref, as_of);
             },
             py::arg("ref"), py::arg("as_of") = py::none())
        .def("load_artifact",
             [](Registry& r, const std::string& ref) {
                 return nogil([&] { return r.load_artifact(ref); },
                              [](const std::string& data) { return py::bytes(data); });
             })
        .def("set_alias",
             [](Registry& r, const std::string& name, const std::string& alias, int64_t version) {
                 return nogil([&] { return r.set_alias(name, alias, version); }, as_record);
             })
        .def("delete_alias",
             [](Registry& r, const std::string& name, const std::string& alias) {
                 r.delete_alias(name, alias);
             },
             py::call_guard<py::gil_scoped_release>())
        .def("transition_stage",
             [](Registry& r, const std::string& name, int64_t version, const std::string& stage,
                bool archive_existing) {
                 return nogil(
                     [&] { return r.transition_stage(name, version, parse_stage(stage), archive_existing); },
                     as_record);
             },
             py::arg("name"), py::arg("version"), py::arg("stage"), py::arg("archive_existing") = false)
        .def("events",
             [](Registry& r, const std::string& name) {
                 return nogil([&] { return r.events(name); },
                              [](const std::vector<Event>& all) { return dict_list(all, kEventFields); });
             },
             py::arg("name") = "");
}

} // namespace keel::bindings

// core/include/keel/registry/registry.hpp
#pragma once

#include "keel/storage/object_refs.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace keel::storage {
class Workspace;
struct ModuleSchema;
}
namespace keel::lineage {
class Graph;
}

namespace keel::registry {

//! Lifecycle stages for teams that use them. Aliases (champion, challenger ...) are the lighter way.
enum class Stage { None, Staging, Production, Archived };

//! "None", "Staging", "Production", "Archived".
std::string_view stage_name(Stage stage);
//! Case-insensitive; InvalidArgument naming the value and the four accepted names.
Stage parse_stage(std::string_view text);

//! A parsed model ref: `churn` (the latest version), `churn/3` (version 3), `churn@champion` (the
//! version the alias points at). A lineage ref `model:churn/3` is accepted too.
struct ModelRef {
    std::string name;
    std::optional<int64_t> version; //!< set for `name/N`
    std::string alias;              //!< set for `name@alias`

    //! Throws InvalidArgument naming the ref and the accepted shapes.
    static ModelRef parse(std::string_view text);
    std::string str() const;
};

//! A registered model: a name that versions are filed under.
struct RegisteredModel {
    std::string name;
    std::string description;
    std::string owner;
    std::map<std::string, std::string> tags;
    int64_t created_at = 0;
    std::string created_by;
    std::optional<int64_t> latest_version; //!< highest version number, if any
    std::map<std::string, int64_t> aliases; //!< alias -> version
};

//! One immutable version of a model: an artifact with where it came from.
struct ModelVersion {
    std::string name;
    int64_t version = 0;
    std::string run_id;       //!< the run that produced it; empty when registered without a run
    std::string digest;       //!< sha256 of the model artifact in the workspace's artifact store
    std::string flavour;      //!< "python" (pickled object), "keel-native", ...
    std::string signature;    //!< input signature as JSON text ("" when unknown)
    std::string description;
    std::map<std::string, std::string> tags;
    int64_t created_at = 0;
    std::string created_by;
    Stage stage = Stage::None;
    std::vector<std::string> aliases; //!< aliases pointing at this version, sorted

    //! `churn/3`
    std::string ref() const;
    //! `model:churn/3`, the lineage node of this version.
    std::string lineage_ref() const;
};

//! What create_model / register_version record about a model (unset fields keep stored values).
struct ModelInfo {
    std::optional<std::string> description;
    std::optional<std::string> owner; //!< defaults to the workspace user on creation
    std::map<std::string, std::string> tags;
};

//! What register_version records about a new version.
struct NewVersion {
    std::string digest; //!< must already be in the artifact store
    std::string run_id;
    std::string flavour = "python";
    std::string signature;
    std::string description;
    std::map<std::string, std::string> tags;
};

//! One audit event: an alias set/moved/deleted or a stage change. `from`/`to` are version numbers for
//! aliases ("" when the alias did not exist / was deleted) and stage names for stage changes.
struct Event {
    int64_t id = 0;
    std::string model;
    std::string action;  //!< "alias" or "stage"
    std::string subject; //!< the alias name, or the version number for a stage change
    std::string from;
    std::string to;
    std::string user;
    int64_t at = 0;
};

//! The model registry in a workspace's metadata store. Every call is atomic and safe across
//! processes: version numbers are assigned inside a BEGIN IMMEDIATE transaction, so concurrent
//! registrations never collide. Registering writes lineage (`run:<id>` -produced-> `model:name/N`).
class Registry {
public:
    explicit Registry(storage::Workspace& ws);
    //! Its tables' migrations, applied when it is constructed (`keel admin migrate` lists them).
    static const storage::ModuleSchema& schema();
    //! Where this module's rows name objects (`keel admin gc` keeps those).
    static const std::vector<storage::ObjectRefs>& object_refs();
    ~Registry();
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    //! AlreadyExists when the name is taken; InvalidArgument for a malformed name.
    RegisteredModel create_model(std::string_view name, const ModelInfo& info = {});
    //! Merges description/owner/tags into an existing model. NotFound when missing.
    RegisteredModel update_model(std::string_view name, const ModelInfo& info);
    std::optional<RegisteredModel> find_model(std::string_view name);
    //! NotFound naming the model when missing.
    RegisteredModel model(std::string_view name);
    //! All models, by name.
    std::vector<RegisteredModel> models();

    //! Files a new version under `name` (creating the model if needed, with `info`) and returns it
    //! with its number: 1 + the highest so far. NotFound when the digest is not in the artifact store.
    ModelVersion register_version(std::string_view name, const NewVersion& version, const ModelInfo& info = {});
    //! NotFound naming `name/version` when missing.
    ModelVersion version(std::string_view name, int64_t version);
    //! Every version of a model, oldest first. NotFound when the model is missing.
    std::vector<ModelVersion> versions(std::string_view name);
    //! `churn`, `churn/3`, `churn@champion`, `churn@latest` -> that version's record.
    ModelVersion resolve(std::string_view ref);
    //! The verified artifact bytes of the version `ref` resolves to (Corrupt when tampered with).
    std::string load_artifact(std::string_view ref);

    //! Vets an alias move before anything is written, given the version the alias is about to name;
    //! throws to refuse it. It runs inside the move's transaction and sees the registry as it was.
    using AliasCheck = std::function<void(const ModelVersion& target)>;
    //! Points `alias` at `version` (creating or moving it) and records an event. Returns the version.
    //! `check` (when given) may refuse the move: a layer above the registry (serving) passes one.
    ModelVersion set_alias(std::string_view name, std::string_view alias, int64_t version,
                           const AliasCheck& check = {});
    //! Removes an alias and records an event. NotFound when it does not exist.
    void delete_alias(std::string_view name, std::string_view alias);

    //! Moves a version to `stage` and records an event. With archive_existing, other versions in the
    //! same stage (Staging or Production) move to Archived, each with its own event.
    ModelVersion transition_stage(std::string_view name, int64_t version, Stage stage, bool archive_existing = false);

    //! Audit events, oldest first: of one model, or of every model when `name` is empty.
    std::vector<Event> events(std::string_view name = {});

private:
    int64_t model_id(std::string_view name);
    void add_event(int64_t model_id, std::string_view action, std::string_view subject, std::string_view from,
                   std::string_view to);
    //! Models this handle registered a version of: their id and highest version then, so the next
    //! registration needs no read (a stale guess is refused and retried).
    struct Known {
        int64_t id = 0;
        int64_t latest = 0;
    };
    //! One attempt of register_version: the version numbered from `guess` when given, else read;
    //! `read_run`: the source run read first (NotFound naming it), else only checked by the INSERT;
    //! `remember`: record the model and its new version in known_.
    ModelVersion write_version(std::string_view name, const NewVersion& version, const ModelInfo& info,
                               std::optional<Known> guess, bool read_run, bool remember);
    storage::Workspace& ws_;
    std::unique_ptr<lineage::Graph> graph_;
    std::mutex known_mu_;  //!< threads of one handle lease different connections of a pool
    std::unordered_map<std::string, Known> known_;
};

} // namespace keel::registry

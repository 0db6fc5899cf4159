// core/include/keel/serving/prediction_tables.hpp
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::storage {
class Workspace;
struct ModuleSchema;
}
namespace keel::registry {
class Registry;
struct ModelVersion;
}

namespace keel::serving {

//! One version of a prediction table: what a model version computed offline for every entity (a
//! batch job's churn scores, top-k recommendations), kept in a feature view of its own and served
//! by endpoints like a live model.
struct PredictionTable {
    std::string name;     //!< "player_recs"
    std::string model;    //!< the registered model whose versions write it: "recs"
    int64_t version = 0;  //!< the version that wrote this one
    std::string view;     //!< its feature view (view_name(name, version))
    bool score = false;   //!< a "prediction" column (float64)
    int items = 0;        //!< top-k item ids in columns item_1 .. item_<items> (int64)
    int64_t rows = 0;     //!< rows of the last write
    int64_t written_at = 0;
    std::string written_by;

    //! The online features an endpoint reads to serve it: "<view>:prediction", "<view>:item_1", ...
    std::vector<std::string> features() const;
};

//! The flavour of the model version an endpoint serves for a prediction-table variant: the writer's
//! version, with the table's features as its signature, answered by a lookup instead of a model.
inline constexpr std::string_view kPredictionsFlavour = "keel-predictions";
//! A variant's model ref naming a table: "predictions:player_recs/3" (the table written by version
//! 3 of its model) or "predictions:player_recs@champion" (by the version the model's alias points at).
inline constexpr std::string_view kPredictionsPrefix = "predictions:";

//! The prediction tables of a workspace, per name and model version (serving_prediction_tables).
//! The feature views hold the values; this records which version wrote which view.
class PredictionTables {
public:
    explicit PredictionTables(storage::Workspace& ws);
    //! Its tables' migrations, applied when it is constructed (`keel admin migrate` lists them).
    static const storage::ModuleSchema& schema();

    //! "player_recs.v3": the feature view of table `name` written by version `version`.
    static std::string view_name(std::string_view name, int64_t version);
    static bool is_ref(std::string_view model_ref) { return model_ref.starts_with(kPredictionsPrefix); }
    //! "predictions:player_recs@champion" -> {"player_recs", "@champion"}; {"player_recs", ""} for the
    //! newest version written.
    static std::pair<std::string_view, std::string_view> split_ref(std::string_view model_ref);

    //! Records a write (after its view was ingested and materialized): one table belongs to one model
    //! (InvalidArgument naming both when `table.model` differs); a version written again replaces
    //! its record. Bumps the serving generation so endpoints see the new version on their next request.
    void record(const PredictionTable& table);
    //! The model whose versions write `name`; nullopt when nothing was written under that name.
    std::optional<std::string> model_of(std::string_view name);
    //! Every version of `name`, oldest first (empty when none).
    std::vector<PredictionTable> versions(std::string_view name);
    std::vector<std::string> names();

    //! What a variant ref "predictions:<name>/<v>" or "predictions:<name>@<alias>" serves now: the
    //! writer's model version with flavour kPredictionsFlavour and the table's features as its
    //! signature. NotFound naming the table, or the version that wrote no predictions there.
    registry::ModelVersion resolve(registry::Registry& registry, std::string_view model_ref);
    //! The table behind a version resolve() returned.
    PredictionTable table_of(const registry::ModelVersion& served);

private:
    storage::Workspace& ws_;
};

} // namespace keel::serving

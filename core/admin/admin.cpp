// core/admin/admin.cpp
#include "keel/admin/admin.hpp"

#include "keel/features/store.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/plugins/quality_store.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/serving/prediction_tables.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/tracking/tracker.hpp"

namespace keel::admin {

std::vector<const storage::ModuleSchema*> module_schemas() {
    auto out = storage::storage_schemas();
    for (const storage::ModuleSchema* schema :
         {&lineage::Graph::schema(), &tracking::Tracker::schema(), &registry::Registry::schema(),
          &features::FeatureStore::schema(), &plugins::QualityStore::schema(), &serving::EndpointStore::schema(),
          &serving::PredictionTables::schema()})
        out.push_back(schema);
    return out;
}

storage::ObjectRefsList object_refs() {
    return {&storage::ArtifactStore::object_refs(), &tracking::Tracker::object_refs(),
            &registry::Registry::object_refs(), &features::FeatureStore::object_refs()};
}

std::vector<storage::SchemaStatus> migrate(const storage::WorkspaceLocation& location, bool dry_run) {
    auto db = storage::Workspace::open_metadata(location);
    if (!dry_run) return db->migrate(module_schemas());
    auto status = db->schema_status(module_schemas());
    db->check_not_newer(status);
    return status;
}

storage::WorkspaceDigest copy(const storage::WorkspaceLocation& src, const storage::WorkspaceLocation& dst,
                              const storage::CopyProgressFn& progress) {
    return storage::copy_workspace(src, dst, module_schemas(), progress, object_refs());
}

} // namespace keel::admin

// core/include/keel/admin/admin.hpp
#pragma once

#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"
#include "keel/storage/workspace_copy.hpp"

#include <vector>

namespace keel::admin {

//! Every table-owning module's schema, storage's own first, in the order their tables may refer
//! to each other's.
std::vector<const storage::ModuleSchema*> module_schemas();

//! `keel admin migrate`: where each module's tables stand against this Keel (module, the
//! workspace's version, this Keel's, the steps pending), and, unless `dry_run`, those steps applied
//! (one transaction per module; safe while other processes open the workspace). Opens the metadata
//! only: nothing is applied by looking. Corrupt when the workspace is newer than this Keel.
std::vector<storage::SchemaStatus> migrate(const storage::WorkspaceLocation& location, bool dry_run);

//! `keel admin copy SRC DST`: storage::copy_workspace with every module's schema.
storage::WorkspaceDigest copy(const storage::WorkspaceLocation& src, const storage::WorkspaceLocation& dst,
                              const storage::CopyProgressFn& progress = {});

} // namespace keel::admin

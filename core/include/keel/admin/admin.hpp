// core/include/keel/admin/admin.hpp
#pragma once

#include "keel/storage/db.hpp"
#include "keel/storage/object_refs.hpp"
#include "keel/storage/object_store.hpp"
#include "keel/storage/workspace.hpp"
#include "keel/storage/workspace_copy.hpp"

#include <chrono>
#include <cstdint>
#include <vector>

namespace keel::admin {

//! Every table-owning module's schema, storage's own first, in the order their tables may refer
//! to each other's.
std::vector<const storage::ModuleSchema*> module_schemas();

//! Where every module's rows name objects (each module's object_refs()), for gc and copy.
storage::ObjectRefsList object_refs();

//! `keel admin migrate`: where each module's tables stand against this Keel (module, the
//! workspace's version, this Keel's, the steps pending), and, unless `dry_run`, those steps applied
//! (one transaction per module; safe while other processes open the workspace). Opens the metadata
//! only: nothing is applied by looking. Corrupt when the workspace is newer than this Keel.
std::vector<storage::SchemaStatus> migrate(const storage::WorkspaceLocation& location, bool dry_run);

//! `keel admin copy SRC DST`: storage::copy_workspace with every module's schema.
storage::WorkspaceDigest copy(const storage::WorkspaceLocation& src, const storage::WorkspaceLocation& dst,
                              const storage::CopyProgressFn& progress = {});

//! Settings of `keel admin gc`.
struct GcOptions {
    //! The grace period: only orphans last written longer ago than this go, so an upload whose row
    //! is still being written is never swept. Longer than any writer takes from the start of an
    //! upload to its row (a multipart upload in progress that long is aborted), and at least the
    //! 10 minutes after which storing the same content again on S3 refreshes the object's time.
    std::chrono::milliseconds older_than{std::chrono::hours(1)};
    bool dry_run = false;  //!< report what would go; delete nothing
};

//! What `keel admin gc` found. Objects are those under artifacts/ and features/.
struct GcReport {
    int64_t objects = 0;  //!< objects listed
    int64_t bytes = 0;
    int64_t named = 0;  //!< objects some row names: kept
    std::vector<storage::ObjectEntry> swept;  //!< orphans past the grace period: deleted (dry run: would be)
    std::vector<storage::ObjectEntry> young;  //!< orphans inside the grace period: kept
    std::vector<storage::PendingUpload> aborted;  //!< unfinished multipart uploads past it: aborted (S3)
    std::vector<storage::ObjectEntry> staged;  //!< staged files never committed, past it: deleted (local)
    int64_t swept_bytes() const;
    int64_t young_bytes() const;
};

//! `keel admin gc`: deletes the workspace's orphans, objects no row names (what a crash between an
//! upload and the row that names it leaves), local directory or S3 alike. Lists the objects first,
//! then reads every name in one snapshot of the metadata (each module's ObjectRefs), so an object
//! named by a row committed meanwhile is kept; each orphan's time is checked once more just before
//! it is deleted (storing the same content again refreshes it). Corrupt when a newer Keel wrote the
//! workspace: its modules may name objects this Keel does not know of.
GcReport gc(storage::Workspace& ws, const GcOptions& options);

} // namespace keel::admin

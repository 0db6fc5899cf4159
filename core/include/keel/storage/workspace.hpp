// core/include/keel/storage/workspace.hpp
#pragma once

#include "keel/storage/artifact_store.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/object_store.hpp"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::storage {

//! Where a workspace lives: its metadata and its objects (artifacts, feature segments, snapshots).
struct WorkspaceLocation {
    //! The metadata: a directory (its keel.db, SQLite; objects default to the directory too), or a
    //! PostgreSQL URL for a team (`postgresql://user@host:port/db[?schema=NAME]`).
    std::string workspace;
    //! Where the objects live: "s3://bucket/prefix", a directory (PostgreSQL workspaces only), or ""
    //! for what the workspace recorded when it was created (a new directory workspace: the directory
    //! itself; a new PostgreSQL workspace needs one). A different one given later is refused, naming both.
    std::string artifacts;
    //! The read cache of remote objects; "" is <directory>/cache, or ~/.cache/keel/<id> for PostgreSQL.
    std::filesystem::path cache_dir;
    //! The cache's size bound in bytes; 0 is the default (10 GiB).
    int64_t cache_max_bytes = 0;

    //! `workspace` with the rest from the environment: KEEL_ARTIFACTS, KEEL_CACHE_DIR,
    //! KEEL_CACHE_MAX_BYTES (bytes, or with a K, M, G suffix). S3 settings come from the AWS variables
    //! (S3Config::from_env).
    static WorkspaceLocation from_env(std::string workspace);
    //! True for the URLs taken as PostgreSQL (postgresql://, postgres://).
    static bool is_database_url(std::string_view workspace);
};

//! The storage layer's own tables (workspace settings, artifacts, the serving generation), for
//! `keel admin migrate` beside the modules' schemas.
std::vector<const ModuleSchema*> storage_schemas();

//! A Keel workspace. Embedded: a directory holding keel.db (SQLite metadata, WAL) and its objects
//! (artifacts/: content-addressed blobs, features/: feature store files). Team: metadata on
//! PostgreSQL and objects on S3 (or a shared directory). Objects are reached through objects(), on S3
//! with a local read cache. Safe to open from several processes (and, with PostgreSQL, machines) at
//! once; every module (tracking, registry, lineage, features, ...) keeps its own tables in db() and
//! its own objects under its own key prefix.
class Workspace {
public:
    //! Opens the workspace at `path` (a directory or a PostgreSQL URL), creating what is missing.
    static std::shared_ptr<Workspace> open(const std::string& path);
    //! Opens the workspace at `path` with its objects at `artifacts` (see WorkspaceLocation).
    static std::shared_ptr<Workspace> open(const std::string& path, const std::string& artifacts) {
        return open(WorkspaceLocation{path, artifacts});
    }
    //! Opens the workspace at `location`; for S3 objects, checks the bucket and credentials first
    //! (NotFound, PermissionDenied or Internal saying what to fix); for PostgreSQL, the server
    //! (Unavailable, PermissionDenied, NotFound within the connect timeout).
    static std::shared_ptr<Workspace> open(const WorkspaceLocation& location);

    //! The workspace directory; for PostgreSQL, the local directory of its objects or their cache.
    const std::filesystem::path& path() const { return path_; }
    //! What open() takes to open the same workspace again (another handle, process or role): the
    //! absolute directory, or the PostgreSQL URL (with its password, if it had one), with
    //! `artifacts` resolved ("s3://...", a directory, or "" for the workspace's own directory).
    const WorkspaceLocation& location() const { return location_; }
    bool on_database() const { return WorkspaceLocation::is_database_url(location_.workspace); }
    Db& db() { return *db_; }
    ArtifactStore& artifacts() { return *artifacts_; }
    ObjectStore& objects() { return *objects_; }

    //! Who is writing: recorded on runs, model versions, audit events. Defaults to current_user().
    const std::string& user() const { return user_; }
    void set_user(std::string user) { user_ = std::move(user); }

    //! The caller's role for access checks (PII grants); empty means no role.
    const std::string& role() const { return role_; }
    void set_role(std::string role) { role_ = std::move(role); }

    //! A subdirectory owned by one module, created on first use.
    std::filesystem::path module_dir(const std::string& module) const;

    explicit Workspace(WorkspaceLocation location);

    //! The metadata alone (no objects store, no migrations applied): for `keel admin migrate`, which
    //! must be able to show a workspace's schema without changing it. NotFound when a directory holds
    //! no keel.db.
    static std::unique_ptr<Db> open_metadata(const WorkspaceLocation& location);

    //! Opens a new workspace as the target of `keel admin copy`: a marker naming `source` is written
    //! before anything else (a file in the directory, a row in PostgreSQL), and open() refuses the
    //! workspace while it is there, so a copy that stopped half-way never looks complete.
    static std::shared_ptr<Workspace> open_copy_target(const WorkspaceLocation& location, const std::string& source);
    //! Removes the copy marker: the last step of a copy that was verified.
    void finish_copy();

private:
    Workspace(WorkspaceLocation location, std::string copy_source);
    void open_directory();
    void open_on_database();
    void check_not_copying(const std::optional<std::string>& marker) const;

    std::filesystem::path path_;
    WorkspaceLocation location_;
    std::unique_ptr<ObjectStore> objects_;
    std::unique_ptr<Db> db_;
    std::unique_ptr<ArtifactStore> artifacts_;
    std::string user_;
    std::string role_;
    std::string copy_source_;  //!< set while open_copy_target() opens: the marker to write
};

} // namespace keel::storage

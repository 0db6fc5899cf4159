// core/include/keel/storage/workspace.hpp
#pragma once

#include "keel/storage/artifact_store.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/object_store.hpp"

#include <filesystem>
#include <memory>
#include <string>

namespace keel::storage {

//! Where a workspace lives: its metadata and its objects (artifacts, feature segments, snapshots).
//! A struct rather than positional strings, so that other metadata backends can join it.
struct WorkspaceLocation {
    //! The workspace directory: keel.db (SQLite metadata) and, for local objects, their files.
    std::filesystem::path path;
    //! Where the objects live: "s3://bucket/prefix", or "" for what the workspace recorded when it
    //! was created (a new workspace: its own directory). The location is recorded in the workspace
    //! on creation; a different one given later is refused, naming both.
    std::string artifacts;
    //! The read cache of remote objects; "" is <path>/cache.
    std::filesystem::path cache_dir;
    //! The cache's size bound in bytes; 0 is the default (10 GiB).
    int64_t cache_max_bytes = 0;

    //! `path` with the rest from the environment: KEEL_ARTIFACTS, KEEL_CACHE_DIR, KEEL_CACHE_MAX_BYTES
    //! (bytes, or with a K, M, G suffix). S3 settings come from the AWS variables (S3Config::from_env).
    static WorkspaceLocation from_env(std::filesystem::path path);
};

//! A Keel workspace: a directory holding keel.db (SQLite metadata, WAL), and its objects, through
//! objects(): in the directory (artifacts/: content-addressed blobs, features/: feature store files)
//! or on S3 with a local read cache. Safe to open from several processes at once; every module
//! (tracking, registry, lineage, features, ...) keeps its own tables in db() and its own objects
//! under its own key prefix.
class Workspace {
public:
    //! Opens the workspace at `path`, creating the directory and files if needed.
    static std::shared_ptr<Workspace> open(const std::filesystem::path& path);
    //! Opens the workspace at `location`; for S3 objects, checks the bucket and credentials first
    //! (NotFound, PermissionDenied or Internal saying what to fix).
    static std::shared_ptr<Workspace> open(const WorkspaceLocation& location);

    const std::filesystem::path& path() const { return path_; }
    //! The location as opened, with `artifacts` resolved ("s3://..." or "" for the directory).
    const WorkspaceLocation& location() const { return location_; }
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

private:
    std::filesystem::path path_;
    WorkspaceLocation location_;
    std::unique_ptr<ObjectStore> objects_;
    std::unique_ptr<Db> db_;
    std::unique_ptr<ArtifactStore> artifacts_;
    std::string user_;
    std::string role_;
};

} // namespace keel::storage

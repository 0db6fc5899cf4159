// core/include/keel/storage/workspace.hpp
#pragma once

#include "keel/storage/artifact_store.hpp"
#include "keel/storage/db.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace keel::storage {

//! A Keel workspace. Embedded: a directory holding keel.db (SQLite metadata, WAL), artifacts/
//! (content-addressed blobs) and features/ (feature store files). Team: metadata on PostgreSQL
//! (`postgresql://user@host:port/db[?schema=NAME]`) and files in an `artifacts` directory. Safe to
//! open from several processes (and, with PostgreSQL, machines) at once; every module (tracking,
//! registry, lineage, features, ...) keeps its own tables in db() and its own files under its own
//! subdirectory.
class Workspace {
public:
    //! Opens the workspace at `location`, creating what is missing: a directory, or a PostgreSQL
    //! URL whose files go to `artifacts` (or the URL's `artifacts=` parameter); a PostgreSQL
    //! workspace without one is refused.
    static std::shared_ptr<Workspace> open(const std::filesystem::path& location,
                                           const std::filesystem::path& artifacts = {});
    //! True for the URLs `open` takes as PostgreSQL (postgresql://, postgres://).
    static bool is_database_url(std::string_view location);

    //! The directory of the workspace's files (the workspace itself, when embedded).
    const std::filesystem::path& path() const { return path_; }
    Db& db() { return *db_; }
    ArtifactStore& artifacts() { return *artifacts_; }

    //! Who is writing: recorded on runs, model versions, audit events. Defaults to current_user().
    const std::string& user() const { return user_; }
    void set_user(std::string user) { user_ = std::move(user); }

    //! The caller's role for access checks (PII grants); empty means no role.
    const std::string& role() const { return role_; }
    void set_role(std::string role) { role_ = std::move(role); }

    //! A subdirectory owned by one module, created on first use.
    std::filesystem::path module_dir(const std::string& module) const;

    //! What open() takes to open the same workspace again (another handle, process or role): the
    //! directory, or the PostgreSQL URL with its `artifacts=` (and its password, if it had one).
    const std::string& location() const { return location_; }
    const std::filesystem::path& artifacts_location() const { return artifacts_location_; }

    explicit Workspace(std::filesystem::path path, std::filesystem::path artifacts = {});

private:
    std::string location_;
    std::filesystem::path artifacts_location_;
    std::filesystem::path path_;
    std::unique_ptr<Db> db_;
    std::unique_ptr<ArtifactStore> artifacts_;
    std::string user_;
    std::string role_;
};

} // namespace keel::storage

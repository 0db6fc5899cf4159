// core/include/keel/storage/workspace.hpp
#pragma once

#include "keel/storage/artifact_store.hpp"
#include "keel/storage/db.hpp"

#include <filesystem>
#include <memory>
#include <string>

namespace keel::storage {

//! A Keel workspace: a directory holding keel.db (SQLite metadata, WAL), artifacts/
//! (content-addressed blobs) and features/ (feature store files). Safe to open from several
//! processes at once; every module (tracking, registry, lineage, features, ...) keeps its own tables
//! in db() and its own files under its own subdirectory.
class Workspace {
public:
    //! Opens the workspace at `path`, creating the directory and files if needed.
    static std::shared_ptr<Workspace> open(const std::filesystem::path& path);

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

    explicit Workspace(std::filesystem::path path);

private:
    std::filesystem::path path_;
    std::unique_ptr<Db> db_;
    std::unique_ptr<ArtifactStore> artifacts_;
    std::string user_;
    std::string role_;
};

} // namespace keel::storage

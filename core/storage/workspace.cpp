// core/storage/workspace.cpp
#include "keel/storage/workspace.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"

namespace fs = std::filesystem;

namespace keel::storage {

std::shared_ptr<Workspace> Workspace::open(const fs::path& path) {
    return std::make_shared<Workspace>(path);
}

Workspace::Workspace(fs::path path) : path_(std::move(path)), user_(current_user()) {
    if (path_.empty()) throw_error(ErrorKind::InvalidArgument, "workspace path is empty: pass a directory path");
    std::error_code ec;
    if (fs::exists(path_, ec) && !fs::is_directory(path_, ec))
        throw_error(ErrorKind::InvalidArgument,
                    "workspace path '{}' is a file, not a directory: pass a directory (it is created if missing)",
                    path_.string());
    // An existing folder with files but no keel.db is someone's project, not a workspace: opening it
    // would scatter keel.db, artifacts/ and features/ among their files.
    if (fs::is_directory(path_, ec) && !fs::exists(path_ / "keel.db", ec) && !fs::is_empty(path_, ec))
        throw_error(ErrorKind::InvalidArgument,
                    "'{}' exists but is not a Keel workspace (no keel.db) and is not empty: open the folder "
                    "that holds keel.db, or a new or empty directory to create a workspace there",
                    path_.string());
    fs::create_directories(path_, ec);
    if (ec)
        throw_error(ErrorKind::PermissionDenied, "cannot create workspace directory '{}': {}", path_.string(),
                    ec.message());
    path_ = fs::absolute(path_);
    db_ = std::make_unique<Db>((path_ / "keel.db").string());
    artifacts_ = std::make_unique<ArtifactStore>(path_ / "artifacts", *db_);
}

fs::path Workspace::module_dir(const std::string& module) const {
    fs::path dir = path_ / module;
    fs::create_directories(dir);
    return dir;
}

} // namespace keel::storage

// core/storage/workspace.cpp
#include "keel/storage/workspace.hpp"

#include "backends.hpp"
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"

#include <cctype>

namespace fs = std::filesystem;

namespace keel::storage {

namespace {

// The `artifacts=` parameter of a database URL, percent-decoded; "" when absent.
std::string url_artifacts(const std::string& url) {
    auto q = url.find('?');
    if (q == std::string::npos) return "";
    std::string query = url.substr(q + 1), value;
    for (size_t start = 0; start < query.size();) {
        size_t amp = query.find('&', start);
        std::string part = query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
        start = amp == std::string::npos ? query.size() : amp + 1;
        if (part.starts_with("artifacts=")) value = part.substr(10);
    }
    std::string out;
    for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '%' && i + 2 < value.size() && std::isxdigit(static_cast<unsigned char>(value[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(value[i + 2]))) {
            out += char(std::stoi(value.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            out += value[i];
        }
    }
    return out;
}

std::string percent_encoded(const std::string& text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
            out += char(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

// The directory for a workspace's files: created, absolute; refused when it is a file.
fs::path files_dir(const fs::path& dir, std::string_view what) {
    std::error_code ec;
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
        throw_error(ErrorKind::InvalidArgument,
                    "{} '{}' is a file, not a directory: pass a directory (it is created if missing)", what,
                    dir.string());
    fs::create_directories(dir, ec);
    if (ec)
        throw_error(ErrorKind::PermissionDenied, "cannot create {} '{}': {}", what, dir.string(), ec.message());
    return fs::absolute(dir);
}

} // namespace

bool Workspace::is_database_url(std::string_view location) { return is_postgres_url(location); }

std::shared_ptr<Workspace> Workspace::open(const fs::path& location, const fs::path& artifacts) {
    return std::make_shared<Workspace>(location, artifacts);
}

Workspace::Workspace(fs::path path, fs::path artifacts)
    : location_(path.string()), artifacts_location_(std::move(artifacts)), user_(current_user()) {
    if (location_.empty()) throw_error(ErrorKind::InvalidArgument, "workspace path is empty: pass a directory path");
    if (is_database_url(location_)) {
        fs::path files = artifacts_location_.empty() ? fs::path(url_artifacts(location_)) : artifacts_location_;
        if (files.empty())
            throw_error(ErrorKind::InvalidArgument,
                        "a PostgreSQL workspace keeps its metadata on the server, but its artifacts and feature files "
                        "need a place too: pass artifacts=DIR (keel.open(url, artifacts=...), --artifacts) or add "
                        "&artifacts=DIR to the URL");
        auto db = std::make_unique<Db>(open_postgres(location_));
        path_ = files_dir(files, "artifacts directory");
        // The location opens the whole workspace again, files included.
        if (url_artifacts(location_).empty())
            location_ += std::string(location_.find('?') == std::string::npos ? "?" : "&") + "artifacts=" +
                         percent_encoded(path_.string());
        db_ = std::move(db);
        artifacts_ = std::make_unique<ArtifactStore>(path_ / "artifacts", *db_);
        return;
    }
    path_ = std::move(path);
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
    location_ = path_.string();
    db_ = std::make_unique<Db>((path_ / "keel.db").string());
    artifacts_ = std::make_unique<ArtifactStore>(path_ / "artifacts", *db_);
}

fs::path Workspace::module_dir(const std::string& module) const {
    fs::path dir = path_ / module;
    fs::create_directories(dir);
    return dir;
}

} // namespace keel::storage

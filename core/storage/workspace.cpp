// core/storage/workspace.cpp
#include "keel/storage/workspace.hpp"

#include "object_files.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/s3_client.hpp"

#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <optional>

namespace fs = std::filesystem;

namespace keel::storage {

namespace {

// The objects' location, recorded in the workspace directory when it is created: "directory" or the
// S3 URL. (A file rather than a table: it must be read before the metadata is opened.)
constexpr const char* kLocationFile = "objects.location";
constexpr std::string_view kDirectory = "directory";
constexpr int64_t kDefaultCacheBytes = int64_t(10) << 30;

std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value ? value : "";
}

int64_t parse_bytes(const std::string& text, const char* what) {
    int64_t value = 0;
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, value);
    int shift = 0;
    if (ec == std::errc() && p + 1 == end) {
        switch (std::toupper(static_cast<unsigned char>(*p))) {
            case 'K': shift = 10; break;
            case 'M': shift = 20; break;
            case 'G': shift = 30; break;
            case 'T': shift = 40; break;
            default: shift = -1;
        }
        ++p;
    }
    if (ec != std::errc() || p != end || shift < 0 || value <= 0 || value > (INT64_MAX >> shift))
        throw_error(ErrorKind::InvalidArgument, "{}='{}' is not a size: give bytes, or a number with K, M, G or T", what,
                    text);
    return value << shift;
}

// "s3://b/p" in its normal form ("s3://b/p/"), or InvalidArgument for anything else.
std::string normal_objects_url(const std::string& text) {
    if (text.rfind("s3://", 0) != 0)
        throw_error(ErrorKind::InvalidArgument,
                    "artifacts location '{}' is not supported: give s3://bucket/prefix, or nothing to keep them in "
                    "the workspace directory",
                    text);
    return S3Location::parse(text).url();
}

std::string describe_objects(const std::string& recorded, const fs::path& path) {
    return recorded == kDirectory ? fmt::format("its own directory ({})", path.string()) : recorded;
}

std::optional<std::string> read_record(const fs::path& file) {
    std::error_code ec;
    if (!fs::exists(file, ec)) return std::nullopt;
    std::string text = detail::read_file(file);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    return text;
}

void check_same(const fs::path& path, const std::string& recorded, const std::string& wanted) {
    if (!wanted.empty() && wanted != recorded)
        throw_error(ErrorKind::InvalidArgument,
                    "workspace {} keeps its artifacts in {}, not in {}: open it without an artifacts location (or "
                    "with the recorded one); `keel admin copy` moves a workspace between locations",
                    path.string(), describe_objects(recorded, path), wanted);
}

// The objects location to open: the recorded one (a workspace made before locations were recorded,
// with a keel.db and no record, keeps its objects in its directory), else the one asked for.
std::string resolve_objects(const fs::path& path, const std::string& wanted, bool existed) {
    auto recorded = read_record(path / kLocationFile);
    if (!recorded && existed) recorded = std::string(kDirectory);
    if (!recorded) return wanted.empty() ? std::string(kDirectory) : wanted;
    check_same(path, *recorded, wanted);
    return *recorded;
}

// Records the location of a new workspace once its store opened (a bad bucket is not recorded),
// exactly once when processes race: link() refuses an existing name, so the first record stands.
void record_objects(const fs::path& path, const std::string& location) {
    const fs::path file = path / kLocationFile;
    if (read_record(file)) {
        check_same(path, *read_record(file), location);
        return;
    }
    const fs::path temp = path / fmt::format(".{}.tmp-{}", kLocationFile, random_hex_id().substr(0, 12));
    detail::write_file(temp, location + "\n");
    ::link(temp.c_str(), file.c_str());
    std::error_code ec;
    fs::remove(temp, ec);
    detail::fsync_path(path, true);
    auto recorded = read_record(file);
    if (!recorded) throw_error(ErrorKind::PermissionDenied, "cannot record the objects location in {}", file.string());
    check_same(path, *recorded, location);
}

} // namespace

WorkspaceLocation WorkspaceLocation::from_env(fs::path path) {
    WorkspaceLocation location;
    location.path = std::move(path);
    location.artifacts = env("KEEL_ARTIFACTS");
    location.cache_dir = env("KEEL_CACHE_DIR");
    if (std::string size = env("KEEL_CACHE_MAX_BYTES"); !size.empty())
        location.cache_max_bytes = parse_bytes(size, "KEEL_CACHE_MAX_BYTES");
    return location;
}

std::shared_ptr<Workspace> Workspace::open(const fs::path& path) {
    return std::make_shared<Workspace>(WorkspaceLocation{path});
}

std::shared_ptr<Workspace> Workspace::open(const WorkspaceLocation& location) {
    return std::make_shared<Workspace>(location);
}

Workspace::Workspace(WorkspaceLocation location)
    : path_(location.path), location_(std::move(location)), user_(current_user()) {
    if (path_.empty()) throw_error(ErrorKind::InvalidArgument, "workspace path is empty: pass a directory path");
    if (location_.cache_max_bytes < 0)
        throw_error(ErrorKind::InvalidArgument, "cache size {} is negative: give a size in bytes, or 0 for the default",
                    location_.cache_max_bytes);
    const std::string wanted = location_.artifacts.empty() ? "" : normal_objects_url(location_.artifacts);
    std::error_code ec;
    if (fs::exists(path_, ec) && !fs::is_directory(path_, ec))
        throw_error(ErrorKind::InvalidArgument,
                    "workspace path '{}' is a file, not a directory: pass a directory (it is created if missing)",
                    path_.string());
    // An existing folder with files but no keel.db is someone's project, not a workspace: opening it
    // would scatter keel.db, artifacts/ and features/ among their files. (A lone location record is
    // a workspace whose creation stopped before its keel.db.)
    const bool existed = fs::exists(path_ / "keel.db", ec);
    if (fs::is_directory(path_, ec) && !existed) {
        for (const auto& entry : fs::directory_iterator(path_, ec))
            if (entry.path().filename() != kLocationFile)
                throw_error(ErrorKind::InvalidArgument,
                            "'{}' exists but is not a Keel workspace (no keel.db) and is not empty: open the folder "
                            "that holds keel.db, or a new or empty directory to create a workspace there",
                            path_.string());
    }
    fs::create_directories(path_, ec);
    if (ec)
        throw_error(ErrorKind::PermissionDenied, "cannot create workspace directory '{}': {}", path_.string(),
                    ec.message());
    path_ = fs::absolute(path_);
    location_.path = path_;
    const std::string objects = resolve_objects(path_, wanted, existed);
    if (objects == kDirectory) {
        location_.artifacts.clear();
        objects_ = local_object_store(path_);
        fs::create_directories(path_ / "artifacts", ec);  // the layout a local workspace always had
    } else {
        location_.artifacts = objects;
        ObjectCacheOptions cache;
        cache.dir = location_.cache_dir.empty() ? path_ / "cache" : fs::absolute(location_.cache_dir);
        cache.max_bytes = location_.cache_max_bytes > 0 ? location_.cache_max_bytes : kDefaultCacheBytes;
        objects_ = s3_object_store(S3Config::from_env(), S3Location::parse(objects), std::move(cache));
    }
    record_objects(path_, objects);
    db_ = std::make_unique<Db>((path_ / "keel.db").string());
    artifacts_ = std::make_unique<ArtifactStore>(*objects_, *db_);
}

fs::path Workspace::module_dir(const std::string& module) const {
    fs::path dir = path_ / module;
    fs::create_directories(dir);
    return dir;
}

} // namespace keel::storage

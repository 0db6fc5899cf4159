// core/storage/workspace.cpp
#include "keel/storage/workspace.hpp"

#include "backends.hpp"
#include "object_files.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/s3_client.hpp"

#include <unistd.h>

#include <cctype>
#include <charconv>
#include <functional>
#include <cstdlib>
#include <optional>

namespace fs = std::filesystem;

namespace keel::storage {

namespace {

// The objects' location, recorded in the workspace directory when it is created: "directory" or the
// S3 URL. (A file rather than a table: it must be read before the metadata is opened.)
constexpr const char* kLocationFile = "objects.location";
// Present while `keel admin copy` fills the workspace: a file in a directory, a row of
// workspace_settings on PostgreSQL. Its content names the source and when the copy began.
constexpr const char* kCopyMarker = "copy.incomplete";
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

// A directory for objects: created, absolute; refused when it is a file.
fs::path objects_dir(const fs::path& dir) {
    std::error_code ec;
    if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
        throw_error(ErrorKind::InvalidArgument,
                    "artifacts location '{}' is a file, not a directory: pass a directory (it is created if missing) "
                    "or s3://bucket/prefix",
                    dir.string());
    fs::create_directories(dir, ec);
    if (ec)
        throw_error(ErrorKind::PermissionDenied, "cannot create artifacts directory '{}': {}", dir.string(),
                    ec.message());
    return fs::absolute(dir).lexically_normal();
}

// The objects of a PostgreSQL workspace are recorded in its metadata (a row, since there is no
// directory to hold a file), exactly once when processes race.
const ModuleSchema kSettingsSchema{"workspace",
                                   {"CREATE TABLE workspace_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)"}};

std::optional<std::string> read_setting(Db& db, const char* name) {
    auto guard = db.lock();
    auto st = db.prepare("SELECT value FROM workspace_settings WHERE name = ?");
    st.bind_all(std::string(name));
    if (!st.step()) return std::nullopt;
    return st.text(0);
}

std::string record_setting(Db& db, const char* name, const std::string& value) {
    Transaction tx(db);
    db.prepare("INSERT INTO workspace_settings(name, value) VALUES(?, ?) ON CONFLICT(name) DO NOTHING")
        .bind_all(std::string(name), value)
        .run();
    auto recorded = read_setting(db, name);
    tx.commit();
    return recorded.value_or(value);
}

std::string describe_objects(const std::string& recorded, const std::string& workspace) {
    return recorded == kDirectory ? fmt::format("its own directory ({})", workspace) : recorded;
}

std::optional<std::string> read_record(const fs::path& file) {
    std::error_code ec;
    if (!fs::exists(file, ec)) return std::nullopt;
    std::string text = detail::read_file(file);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    return text;
}

void check_same(const std::string& workspace, const std::string& recorded, const std::string& wanted) {
    if (!wanted.empty() && wanted != recorded)
        throw_error(ErrorKind::InvalidArgument,
                    "workspace {} keeps its artifacts in {}, not in {}: open it without an artifacts location (or "
                    "with the recorded one); `keel admin copy` moves a workspace between locations",
                    workspace, describe_objects(recorded, workspace), wanted);
}

// A new workspace's objects location must hold nothing: `keel admin gc` removes what the
// workspace's rows do not name, so two workspaces sharing one location would delete each other's
// objects, and a copy into a used location could not be told from the source. The location is then
// claimed with a small object naming the workspace, outside the prefixes gc and copy walk, so the
// next workspace pointed there is refused before either has stored anything.
constexpr const char* kClaimKey = "keel-workspace";

void claim_objects(ObjectStore& objects, const std::string& id, const std::string& workspace) {
    const std::string claim = "the objects of Keel workspace " + id + "\n";
    if (objects.holds_objects()) {
        // A racing first open of the same workspace claimed it already: the same id.
        if (objects.exists(kClaimKey) && detail::read_file(objects.fetch(kClaimKey).path) == claim) return;
        throw_error(ErrorKind::AlreadyExists,
                    "cannot create workspace {}: its artifacts location {} already holds objects (another workspace's, "
                    "or one whose metadata was removed). Give each workspace a location of its own, e.g. a new "
                    "prefix s3://bucket/team/<workspace>; the workspace was not created",
                    workspace, objects.url());
    }
    objects.put_bytes(kClaimKey, claim);
}

// The objects location to open: the recorded one (a workspace made before locations were recorded,
// with a keel.db and no record, keeps its objects in its directory), else the one asked for.
std::string resolve_objects(const fs::path& path, const std::string& wanted, bool existed) {
    auto recorded = read_record(path / kLocationFile);
    if (!recorded && existed) recorded = std::string(kDirectory);
    if (!recorded) return wanted.empty() ? std::string(kDirectory) : wanted;
    check_same(path.string(), *recorded, wanted);
    return *recorded;
}

// Records the location of a new workspace once its store opened (a bad bucket is not recorded),
// exactly once when processes race: link() refuses an existing name, so the first record stands.
void record_objects(const fs::path& path, const std::string& location) {
    const fs::path file = path / kLocationFile;
    if (read_record(file)) {
        check_same(path.string(), *read_record(file), location);
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
    check_same(path.string(), *recorded, location);
}

void refuse_unfinished_copy(const std::string& workspace, const std::optional<std::string>& marker, bool database) {
    if (marker)
        throw_error(ErrorKind::Corrupt,
                    "workspace {} is an unfinished `keel admin copy` ({}): it is not usable; if no copy is still "
                    "running, delete it ({}) and run the copy again",
                    workspace, *marker, database ? "DROP SCHEMA ... CASCADE, and its artifacts" : "remove the directory");
}

ObjectCacheOptions cache_options(const WorkspaceLocation& location, const fs::path& default_dir) {
    ObjectCacheOptions cache;
    cache.dir = location.cache_dir.empty() ? default_dir : fs::absolute(location.cache_dir);
    cache.max_bytes = location.cache_max_bytes > 0 ? location.cache_max_bytes : kDefaultCacheBytes;
    return cache;
}

// Where a PostgreSQL workspace caches its S3 objects on this machine, one directory per database
// and schema: $XDG_CACHE_HOME/keel or ~/.cache/keel.
fs::path default_cache_dir(const std::string& shown_url) {
    fs::path base = env("XDG_CACHE_HOME");
    if (base.empty()) base = env("HOME").empty() ? fs::temp_directory_path() : fs::path(env("HOME")) / ".cache";
    return base / "keel" / fmt::format("{:016x}", std::hash<std::string>{}(shown_url));
}

} // namespace

WorkspaceLocation WorkspaceLocation::from_env(std::string workspace) {
    WorkspaceLocation location;
    location.workspace = std::move(workspace);
    location.artifacts = env("KEEL_ARTIFACTS");
    location.cache_dir = env("KEEL_CACHE_DIR");
    if (std::string size = env("KEEL_CACHE_MAX_BYTES"); !size.empty())
        location.cache_max_bytes = parse_bytes(size, "KEEL_CACHE_MAX_BYTES");
    return location;
}

bool WorkspaceLocation::is_database_url(std::string_view workspace) { return is_postgres_url(workspace); }

std::vector<const ModuleSchema*> storage_schemas() {
    return {&kSettingsSchema, &ArtifactStore::schema(), &generation_schema()};
}

std::unique_ptr<Db> Workspace::open_metadata(const WorkspaceLocation& location) {
    if (WorkspaceLocation::is_database_url(location.workspace)) {
        auto db = open_postgres_db(location.workspace);
        if (db->has_table("workspace_settings")) refuse_unfinished_copy(db->path(), read_setting(*db, kCopyMarker), true);
        return db;
    }
    const fs::path db = fs::path(location.workspace) / "keel.db";
    std::error_code ec;
    if (location.workspace.empty() || !fs::exists(db, ec))
        throw_error(ErrorKind::NotFound,
                    "'{}' is not a Keel workspace (no keel.db): pass the folder that holds keel.db, or a "
                    "postgresql:// URL",
                    location.workspace);
    refuse_unfinished_copy(location.workspace, read_record(fs::path(location.workspace) / kCopyMarker), false);
    return std::make_unique<Db>(db.string());
}

std::shared_ptr<Workspace> Workspace::open_copy_target(const WorkspaceLocation& location, const std::string& source) {
    return std::shared_ptr<Workspace>(new Workspace(location, fmt::format("from {} at {}", source, now_ms())));
}

void Workspace::check_not_copying(const std::optional<std::string>& marker) const {
    if (copy_source_.empty()) refuse_unfinished_copy(on_database() ? db_->path() : location_.workspace, marker, on_database());
}

void Workspace::finish_copy() {
    if (on_database()) {
        Transaction tx(*db_);
        db_->prepare("DELETE FROM workspace_settings WHERE name = ?").bind_all(std::string(kCopyMarker)).run();
        tx.commit();
    } else {
        fs::remove(path_ / kCopyMarker);
        detail::fsync_path(path_, true);
    }
    copy_source_.clear();
}

std::shared_ptr<Workspace> Workspace::open(const std::string& path) {
    return std::make_shared<Workspace>(WorkspaceLocation{path});
}

std::shared_ptr<Workspace> Workspace::open(const WorkspaceLocation& location) {
    return std::make_shared<Workspace>(location);
}

Workspace::Workspace(WorkspaceLocation location) : Workspace(std::move(location), std::string()) {}

Workspace::Workspace(WorkspaceLocation location, std::string copy_source)
    : location_(std::move(location)), user_(current_user()), copy_source_(std::move(copy_source)) {
    if (location_.workspace.empty())
        throw_error(ErrorKind::InvalidArgument,
                    "workspace path is empty: pass a directory path or a postgresql:// URL");
    if (location_.cache_max_bytes < 0)
        throw_error(ErrorKind::InvalidArgument, "cache size {} is negative: give a size in bytes, or 0 for the default",
                    location_.cache_max_bytes);
    if (on_database())
        open_on_database();
    else
        open_directory();
    artifacts_ = std::make_unique<ArtifactStore>(*objects_, *db_);
}

void Workspace::open_directory() {
    path_ = location_.workspace;
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
            if (entry.path().filename() != kLocationFile &&
                !(entry.path().filename() == kCopyMarker && !copy_source_.empty()))
                throw_error(ErrorKind::InvalidArgument,
                            "'{}' exists but is not a Keel workspace (no keel.db) and is not empty: open the folder "
                            "that holds keel.db, or a new or empty directory to create a workspace there",
                            path_.string());
    }
    const bool created_dir = !fs::exists(path_, ec);
    fs::create_directories(path_, ec);
    if (ec)
        throw_error(ErrorKind::PermissionDenied, "cannot create workspace directory '{}': {}", path_.string(),
                    ec.message());
    path_ = fs::absolute(path_);
    location_.workspace = path_.string();
    check_not_copying(read_record(path_ / kCopyMarker));
    if (!copy_source_.empty()) {  // before keel.db exists: no moment where the copy looks like a workspace
        detail::write_file(path_ / kCopyMarker, copy_source_ + "\n");
        detail::fsync_path(path_, true);
    }
    const bool new_workspace = !existed && !fs::exists(path_ / kLocationFile, ec);
    const std::string objects = resolve_objects(path_, wanted, existed);
    if (objects == kDirectory) {
        location_.artifacts.clear();
        objects_ = local_object_store(path_);
        fs::create_directories(path_ / "artifacts", ec);  // the layout a local workspace always had
    } else {
        location_.artifacts = objects;
        objects_ = s3_object_store(S3Config::from_env(), S3Location::parse(objects), cache_options(location_, path_ / "cache"));
        if (new_workspace) {
            try {
                claim_objects(*objects_, path_.string(), path_.string());
            } catch (...) {
                if (created_dir && copy_source_.empty()) fs::remove_all(path_, ec);  // made by this call: its cache
                throw;
            }
        }
    }
    record_objects(path_, objects);
    db_ = std::make_unique<Db>((path_ / "keel.db").string());
}

void Workspace::open_on_database() {
    std::string wanted = location_.artifacts.empty() ? url_artifacts(location_.workspace) : location_.artifacts;
    if (!wanted.empty()) wanted = wanted.starts_with("s3://") ? normal_objects_url(wanted) : objects_dir(wanted).string();
    db_ = open_postgres_db(location_.workspace);
    const std::string shown = db_->path();
    db_->ensure_schema(kSettingsSchema);
    if (!copy_source_.empty())
        record_setting(*db_, kCopyMarker, copy_source_);
    else
        check_not_copying(read_setting(*db_, kCopyMarker));
    const auto recorded = read_setting(*db_, "objects");
    if (recorded) check_same(shown, *recorded, wanted);
    if (!recorded && wanted.empty())
        throw_error(ErrorKind::InvalidArgument,
                    "a new PostgreSQL workspace keeps its metadata on the server, but its artifacts and feature files "
                    "need a place too: pass artifacts=s3://bucket/prefix or a shared directory (keel.open(url, "
                    "artifacts=...), --artifacts, $KEEL_ARTIFACTS, or &artifacts=... in the URL)");
    const std::string objects = recorded.value_or(wanted);
    location_.artifacts = objects;
    if (objects.starts_with("s3://")) {
        path_ = location_.cache_dir.empty() ? default_cache_dir(shown) : fs::absolute(location_.cache_dir);
        objects_ = s3_object_store(S3Config::from_env(), S3Location::parse(objects), cache_options(location_, path_));
    } else {
        path_ = objects_dir(objects);
        objects_ = local_object_store(path_);
        std::error_code ec;
        fs::create_directories(path_ / "artifacts", ec);
    }
    // Racing first opens of one new workspace agree on its id: the first record stands.
    if (!recorded) claim_objects(*objects_, record_setting(*db_, "workspace_id", random_hex_id()), shown);
    // Recorded once the store opened (a bad bucket is not recorded); a racing first open's record stands.
    check_same(shown, record_setting(*db_, "objects", objects), objects);
}

fs::path Workspace::module_dir(const std::string& module) const {
    fs::path dir = path_ / module;
    fs::create_directories(dir);
    return dir;
}

} // namespace keel::storage

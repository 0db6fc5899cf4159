// core/storage/object_store.cpp: the ObjectStore contract's shared parts and the local directory
// store (the embedded default: a commit is a rename, a fetch is the file itself).
#include "keel/storage/object_store.hpp"

#include "object_files.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"

#include <sys/stat.h>

#include <algorithm>

namespace fs = std::filesystem;

namespace keel::storage {

void ObjectStore::put_bytes(const std::string& key, std::string_view bytes, std::string_view sha256) {
    const auto slash = key.rfind('/');
    fs::path staged = stage(slash == std::string::npos ? std::string_view{} : std::string_view(key).substr(0, slash));
    try {
        detail::write_file(staged, bytes);
    } catch (...) {
        std::error_code ec;
        fs::remove(staged, ec);
        throw;
    }
    commit(staged, key, sha256);
}

namespace detail {

void check_object_key(std::string_view key) {
    bool ok = !key.empty() && key.front() != '/' && key.back() != '/' && key.find('\0') == std::string_view::npos;
    for (size_t start = 0; ok && start <= key.size();) {
        size_t end = key.find('/', start);
        if (end == std::string_view::npos) end = key.size();
        std::string_view part = key.substr(start, end - start);
        ok = !part.empty() && part != "." && part != "..";
        start = end + 1;
    }
    if (!ok)
        throw_error(ErrorKind::InvalidArgument,
                    "'{}' is not an object key: expected a relative path of non-empty names without '.' or '..'", key);
}

} // namespace detail

namespace {

// Staged files carry ".tmp-" in their name: list() skips them and the feature store's sweep of a
// view's folder removes the ones a crashed writer left.
constexpr std::string_view kStagedMark = ".tmp-";

class LocalObjectStore final : public ObjectStore {
public:
    explicit LocalObjectStore(fs::path root) : root_(std::move(root)) {}

    fs::path stage(std::string_view folder) override {
        fs::path dir = folder.empty() ? root_ : root_ / std::string(folder);
        if (!folder.empty()) detail::check_object_key(folder);
        fs::create_directories(dir);
        return dir / (std::string(kStagedMark) + random_hex_id().substr(0, 16));
    }

    void commit(const fs::path& staged, const std::string& key, std::string_view sha256) override {
        try {
            const fs::path target = path_of(key);
            fs::create_directories(target.parent_path());
            detail::fsync_path(staged, false);
            std::error_code ec;
            // Content already stored under its digest: keep it, unless it was damaged.
            if (!sha256.empty() && fs::exists(target, ec) && sha256_file(target) == sha256) {
                fs::remove(staged, ec);
                // Written now, as far as `keel admin gc` is concerned: an unnamed copy about to be
                // named again is inside its grace period, not swept.
                fs::last_write_time(target, fs::file_time_type::clock::now(), ec);
                return;
            }
            fs::rename(staged, target, ec);
            if (ec)
                throw_error(ErrorKind::Internal, "cannot store object '{}' at {}: {}", key, target.string(), ec.message());
            detail::fsync_path(target.parent_path(), true);
        } catch (...) {
            std::error_code ec;
            fs::remove(staged, ec);
            throw;
        }
    }

    LocalObject fetch(const std::string& key, std::string_view) override {
        fs::path path = path_of(key);
        std::error_code ec;
        if (!fs::exists(path, ec))
            throw_error(ErrorKind::NotFound, "object '{}' is missing: there is no file {}", key, path.string());
        return {std::move(path), nullptr};
    }

    bool exists(const std::string& key) override {
        std::error_code ec;
        return fs::exists(path_of(key), ec);
    }

    void remove(const std::string& key) override {
        std::error_code ec;
        fs::remove(path_of(key), ec);
    }

    std::vector<ObjectEntry> list(const std::string& prefix) override { return walk(prefix, false); }
    std::vector<ObjectEntry> list_staged(const std::string& prefix) override { return walk(prefix, true); }
    // Any file but hidden ones (a tool's marker, a staged file): stops at the first.
    bool holds_objects() override {
        std::error_code ec;
        for (fs::recursive_directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
            if (it->path().filename().string().starts_with('.')) {
                if (it->is_directory(ec)) it.disable_recursion_pending();
                continue;
            }
            if (it->is_regular_file(ec)) return true;
        }
        return false;
    }

    std::string url() const override { return root_.string(); }
    std::string describe(std::string_view key) const override { return (root_ / std::string(key)).string(); }
    bool is_local() const override { return true; }

private:
    // The files under prefix: the objects, or (staged) the staged files instead.
    std::vector<ObjectEntry> walk(const std::string& prefix, bool staged) {
        std::vector<ObjectEntry> out;
        // Walk only the deepest folder the prefix names.
        const auto slash = prefix.rfind('/');
        fs::path start = slash == std::string::npos ? root_ : root_ / prefix.substr(0, slash);
        std::error_code ec;
        for (fs::recursive_directory_iterator it(start, ec), end; !ec && it != end; it.increment(ec)) {
            if (!it->is_regular_file(ec)) continue;
            std::string key = it->path().lexically_relative(root_).generic_string();
            if (key.compare(0, prefix.size(), prefix) != 0) continue;
            if ((it->path().filename().string().find(kStagedMark) != std::string::npos) != staged) continue;
            struct stat st {};
            if (::stat(it->path().c_str(), &st) != 0) continue;  // removed meanwhile
            out.push_back({std::move(key), int64_t(st.st_size),
                           int64_t(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1'000'000});
        }
        std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
        return out;
    }

    fs::path path_of(const std::string& key) const {
        detail::check_object_key(key);
        return root_ / key;
    }
    fs::path root_;
};

} // namespace

std::unique_ptr<ObjectStore> local_object_store(fs::path root) {
    return std::make_unique<LocalObjectStore>(std::move(root));
}

} // namespace keel::storage

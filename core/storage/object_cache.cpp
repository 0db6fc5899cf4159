// core/storage/object_cache.cpp
#include "object_cache.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace fs = std::filesystem;

namespace keel::storage::detail {

namespace {

// A shared flock on one cached copy, released when the last holder in this process lets go.
struct Pin {
    Pin(int fd, ino_t ino, dev_t dev) : fd(fd), ino(ino), dev(dev) {}
    ~Pin() { ::close(fd); }
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    int fd;
    ino_t ino;
    dev_t dev;
};

// One descriptor per pinned file per process, whichever Workspace handle asked: the map is
// process-wide, keyed by the copy's path.
std::mutex g_pins_mu;
std::unordered_map<std::string, std::weak_ptr<Pin>> g_pins;

// Opens and share-locks `path`; nullptr when it is gone (evicted between the open and the lock).
std::shared_ptr<Pin> lock_shared(const fs::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nullptr;
    struct stat st {};
    if (::flock(fd, LOCK_SH) != 0 || ::fstat(fd, &st) != 0 || st.st_nlink == 0) {
        ::close(fd);
        return nullptr;
    }
    return std::make_shared<Pin>(fd, st.st_ino, st.st_dev);
}

// Holds an exclusive flock on a lock file for its lifetime.
class LockFile {
public:
    LockFile(const fs::path& path, bool wait) {
        fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd_ < 0) throw_error(ErrorKind::Internal, "cannot open lock file {}: {}", path.string(), std::strerror(errno));
        int rc;
        do rc = ::flock(fd_, LOCK_EX | (wait ? 0 : LOCK_NB));
        while (rc != 0 && errno == EINTR);
        held_ = rc == 0;
    }
    ~LockFile() { ::close(fd_); }
    LockFile(const LockFile&) = delete;
    LockFile& operator=(const LockFile&) = delete;
    bool held() const { return held_; }

private:
    int fd_ = -1;
    bool held_ = false;
};

} // namespace

ObjectCache::ObjectCache(ObjectCacheOptions options)
    : options_(std::move(options)),
      objects_(options_.dir / "objects"),
      tmp_(options_.dir / "tmp"),
      locks_(options_.dir / "locks") {
    std::error_code ec;
    for (const auto& dir : {objects_, tmp_, locks_}) {
        fs::create_directories(dir, ec);
        if (ec)
            throw_error(ErrorKind::PermissionDenied, "cannot create the object cache folder {}: {}; set KEEL_CACHE_DIR "
                        "to a writable folder", dir.string(), ec.message());
    }
}

fs::path ObjectCache::copy_path(const std::string& key) const { return objects_ / key; }

fs::path ObjectCache::lock_path(const std::string& key) const {
    return locks_ / ("key-" + sha256_hex(key).substr(0, 2));
}

fs::path ObjectCache::temp_path() { return tmp_ / random_hex_id(); }

std::optional<LocalObject> ObjectCache::lookup(const std::string& key) {
    const fs::path path = copy_path(key);
    std::lock_guard lock(g_pins_mu);
    struct stat cur {};
    if (::stat(path.c_str(), &cur) != 0) return std::nullopt;
    auto& slot = g_pins[path.string()];
    auto pin = slot.lock();
    if (!pin || pin->ino != cur.st_ino || pin->dev != cur.st_dev) {
        pin = lock_shared(path);
        if (!pin) return std::nullopt;
        slot = pin;
    }
    ::futimens(pin->fd, nullptr);  // used now: the last to go when the cache is trimmed
    if (g_pins.size() > 4096)
        std::erase_if(g_pins, [](const auto& entry) { return entry.second.expired(); });
    return LocalObject{path, pin};
}

LocalObject ObjectCache::get_or_fill(const std::string& key, const std::function<void(const fs::path&)>& fill) {
    if (auto hit = lookup(key)) return *hit;
    std::optional<LocalObject> result;
    {
        LockFile key_lock(lock_path(key), true);
        if (auto hit = lookup(key)) return *hit;  // another thread or process fetched it meanwhile
        const fs::path temp = temp_path();
        std::error_code ec;
        try {
            fill(temp);
        } catch (...) {
            fs::remove(temp, ec);
            throw;
        }
        // Pinned before the rename, so that a trim cannot take the fresh copy before the caller holds it.
        auto pin = lock_shared(temp);
        const fs::path path = copy_path(key);
        fs::create_directories(path.parent_path(), ec);
        fs::rename(temp, path, ec);
        if (ec || !pin) {
            fs::remove(temp, ec);
            throw_error(ErrorKind::Internal, "cannot keep object '{}' in the cache {}: {}", key, options_.dir.string(),
                        ec ? ec.message() : "the download vanished");
        }
        {
            std::lock_guard lock(g_pins_mu);
            g_pins[path.string()] = pin;
        }
        result = LocalObject{path, pin};
    }
    trim();
    return *result;
}

void ObjectCache::adopt(const fs::path& file, const std::string& key) {
    {
        LockFile key_lock(lock_path(key), true);
        const fs::path path = copy_path(key);
        std::error_code ec;
        fs::create_directories(path.parent_path(), ec);
        fs::rename(file, path, ec);
        if (ec) fs::remove(file, ec);  // only a cache: the object itself is stored
    }
    trim();
}

void ObjectCache::drop(const std::string& key) {
    std::error_code ec;
    fs::remove(copy_path(key), ec);
}

void ObjectCache::trim() {
    LockFile evict_lock(locks_ / "evict", false);
    if (!evict_lock.held()) return;  // another thread or process is trimming
    struct Entry {
        fs::file_time_type used;
        int64_t size;
        fs::path path;
    };
    std::vector<Entry> entries;
    int64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(objects_, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code ec2;
        if (!it->is_regular_file(ec2)) continue;
        Entry e{it->last_write_time(ec2), int64_t(it->file_size(ec2)), it->path()};
        if (ec2) continue;
        total += e.size;
        entries.push_back(std::move(e));
    }
    const auto stale = fs::file_time_type::clock::now() - std::chrono::hours(1);
    for (fs::directory_iterator it(tmp_, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code ec2;
        if (it->last_write_time(ec2) < stale && !ec2) fs::remove(it->path(), ec2);
    }
    if (total <= options_.max_bytes) return;
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.used < b.used; });
    for (const Entry& e : entries) {
        if (total <= options_.max_bytes) break;
        int fd = ::open(e.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat held {}, now {};
        // Pinned copies refuse the exclusive lock; the path must still name the inode locked.
        if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && ::fstat(fd, &held) == 0 && ::stat(e.path.c_str(), &now) == 0 &&
            held.st_ino == now.st_ino && held.st_dev == now.st_dev && ::unlink(e.path.c_str()) == 0)
            total -= e.size;
        ::close(fd);
    }
}

} // namespace keel::storage::detail

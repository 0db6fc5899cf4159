// core/storage/object_cache.hpp: the local read cache of a remote object store (not installed).
#pragma once

#include "keel/storage/object_store.hpp"

#include <functional>
#include <optional>

namespace keel::storage::detail {

//! A folder of verified copies of remote objects, shared by the threads and processes that name it:
//!   objects/<key>   the copies (mtime = last use, for least-recently-used eviction)
//!   tmp/            downloads and staged uploads in progress (renamed into objects/ when whole)
//!   locks/          flock files: one of 256 stripes per key (one download of a key at a time),
//!                   and "evict" (one evictor at a time)
//! A copy in use is pinned by a shared flock on it (one descriptor per file per process); eviction
//! takes an exclusive flock without waiting, so it passes over pinned copies. A copy evicted or
//! replaced while mapped stays readable: unlinking never touches an open inode.
class ObjectCache {
public:
    explicit ObjectCache(ObjectCacheOptions options);

    //! The pinned copy of key, or nullopt when it is not cached. Marks it used.
    std::optional<LocalObject> lookup(const std::string& key);
    //! The pinned copy of key; when missing, `fill(path)` writes it to a fresh temporary path (under
    //! the key's lock, so concurrent callers download once) and it is renamed into place.
    LocalObject get_or_fill(const std::string& key, const std::function<void(const std::filesystem::path&)>& fill);
    //! Moves a whole file in as key's copy (an upload's staged file, after the upload).
    void adopt(const std::filesystem::path& file, const std::string& key);
    //! Forgets key's copy (the object was removed).
    void drop(const std::string& key);
    //! A fresh path in tmp/.
    std::filesystem::path temp_path();
    //! Evicts least recently used unpinned copies until the cache holds at most max_bytes; removes
    //! temporary files older than an hour (left by a crashed process).
    void trim();

    const std::filesystem::path& dir() const { return options_.dir; }

private:
    std::filesystem::path copy_path(const std::string& key) const;
    std::filesystem::path lock_path(const std::string& key) const;
    ObjectCacheOptions options_;
    std::filesystem::path objects_, tmp_, locks_;
};

} // namespace keel::storage::detail

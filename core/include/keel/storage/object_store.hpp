// core/include/keel/storage/object_store.hpp
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace keel::storage {

struct S3Config;
struct S3Location;

//! An object as list() reports it: its key, size in bytes, and when it was last written (ms since
//! the epoch: the file's mtime, or S3's LastModified).
struct ObjectEntry {
    std::string key;
    int64_t size = 0;
    int64_t modified_ms = 0;
};

//! A multipart upload begun and neither completed nor aborted: what a writer killed mid-upload leaves
//! on S3 (its parts cost space, though no object exists).
struct PendingUpload {
    std::string key;
    std::string id;
    int64_t started_ms = 0;
};

//! A local file holding an object's content, and what keeps it there: while `pin` lives, the read
//! cache of a remote store does not evict the file (a mapped segment, a model being read).
struct LocalObject {
    std::filesystem::path path;
    std::shared_ptr<const void> pin;
};

//! Where a workspace keeps its blobs (artifacts, feature segments, online snapshots), by key:
//! "artifacts/sha256/ab/cdef...", "features/<view>/v1/<file>.kseg". Two backends:
//!  - a local directory (the embedded default): a key is a file under the workspace directory, a
//!    commit is a rename, a fetch is the file itself;
//!  - S3 (any S3-compatible store) with a local read cache: a commit uploads, then keeps the file in
//!    the cache; a fetch downloads once into the cache (verified, renamed into place) and is served
//!    from there afterwards. The cache is bounded: least recently used files nobody holds are evicted.
//! Writers stage the content in a local file, then commit it under its key: a reader never sees half
//! an object, and the metadata row that names the key is written only after commit() returned, so a
//! crash in between leaves at most an unreferenced object. Thread-safe; several processes may share
//! one store (and one cache folder).
class ObjectStore {
public:
    virtual ~ObjectStore() = default;

    //! A fresh, unused path to write an object's content to before commit(), on the disk the
    //! commit renames from: inside `folder` (a key prefix, e.g. "features/v/v1") for the local
    //! store, so that the commit is a rename; in the cache for S3.
    virtual std::filesystem::path stage(std::string_view folder) = 0;
    //! Makes the staged file the object under `key`, atomically; the staged file is consumed (also
    //! on failure). With `sha256` (a content-addressed key), an object already stored under the key
    //! with that content is kept and nothing is written or uploaded.
    virtual void commit(const std::filesystem::path& staged, const std::string& key, std::string_view sha256 = {}) = 0;
    //! Stores bytes under key (stage + write + commit).
    void put_bytes(const std::string& key, std::string_view bytes, std::string_view sha256 = {});

    //! A local file with the object's content. With `sha256`, a download is verified against it
    //! (Corrupt naming the key when the stored object does not match); a local store returns its
    //! file as it is (readers verify as they read). NotFound names the key when there is no object.
    virtual LocalObject fetch(const std::string& key, std::string_view sha256 = {}) = 0;
    virtual bool exists(const std::string& key) = 0;
    //! Removes the object; a missing key is not an error. Files already fetched (mapped) stay valid.
    virtual void remove(const std::string& key) = 0;
    //! Every object whose key starts with `prefix`, in key order.
    virtual std::vector<ObjectEntry> list(const std::string& prefix) = 0;
    //! Whether the store holds any object at all (S3: one request, whatever the prefix holds).
    virtual bool holds_objects() { return !list("").empty(); }

    //! Staged files under `prefix` that were never committed (a writer killed between stage() and
    //! commit()), as entries whose key remove() takes; none for S3, whose staging is the cache's
    //! (trimmed by it).
    virtual std::vector<ObjectEntry> list_staged(const std::string& prefix) { return {}; }
    //! Multipart uploads left unfinished (S3); none for a local store, whose commit is a rename.
    virtual std::vector<PendingUpload> pending_uploads() { return {}; }
    //! Deletes an unfinished upload's parts; best effort.
    virtual void abort_upload(const PendingUpload&) {}

    //! "s3://bucket/prefix", or the local directory's path.
    virtual std::string url() const = 0;
    //! The full name of a key for messages: "s3://bucket/prefix/<key>" or the local file's path.
    virtual std::string describe(std::string_view key) const = 0;
    virtual bool is_local() const = 0;
};

//! The local directory store rooted at `root` (a workspace directory): keys are paths below it.
std::unique_ptr<ObjectStore> local_object_store(std::filesystem::path root);

//! Settings of the read cache of a remote store.
struct ObjectCacheOptions {
    std::filesystem::path dir;  //!< created if missing; may be shared by processes
    //! Evicts the least recently used files nobody holds once the cache grows past this.
    int64_t max_bytes = int64_t(10) << 30;
};

//! The S3 store at `location` with a read cache. Checks the endpoint, bucket and credentials with
//! one request first (S3Client::check): a clear NotFound / PermissionDenied / Internal right away.
std::unique_ptr<ObjectStore> s3_object_store(const S3Config& config, const S3Location& location,
                                             ObjectCacheOptions cache);

} // namespace keel::storage

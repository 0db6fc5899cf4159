// core/include/keel/storage/artifact_store.hpp
#pragma once

#include "keel/storage/object_refs.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace keel::storage {

struct LocalObject;

class Db;
struct ModuleSchema;
class ObjectStore;

//! sha256 of bytes / of a file's content, as 64 lowercase hex characters.
std::string sha256_hex(std::string_view data);
std::string sha256_file(const std::filesystem::path& path);

//! Content-addressed blobs, objects "artifacts/sha256/ab/cdef..." of the workspace's ObjectStore (a
//! file under the workspace directory, or an S3 object with a cached copy): written once and whole,
//! recorded in the metadata only once stored, verified against their digest on every read (and on
//! every download), so a tampered or truncated blob raises Corrupt instead of returning bad bytes.
class ArtifactStore {
public:
    ArtifactStore(ObjectStore& objects, Db& db);
    //! Its table's migrations (`keel admin migrate` lists them).
    static const ModuleSchema& schema();
    //! Where this module's rows name objects (`keel admin gc` keeps those).
    static const std::vector<ObjectRefs>& object_refs();

    //! The object key of a digest: "artifacts/sha256/ab/cdef...".
    static std::string key_of(std::string_view digest);

    //! Stores bytes or a file's content; returns the digest. Storing the same content twice is free.
    std::string put_bytes(std::string_view data);
    std::string put_file(const std::filesystem::path& source);

    //! The verified content of a blob.
    std::string get_bytes(std::string_view digest) const;
    //! Copies a blob to dest after verifying it (dest appears whole or not at all).
    void copy_to(std::string_view digest, const std::filesystem::path& dest) const;
    //! Throws Corrupt unless the blob exists and its content matches its digest.
    void verify(std::string_view digest) const;
    bool contains(std::string_view digest) const;
    //! Size in bytes recorded when the blob was stored.
    int64_t size(std::string_view digest) const;
    //! A local file with the blob (for S3, its cached copy, downloaded and verified if needed).
    std::filesystem::path path_of(std::string_view digest) const;

private:
    std::string commit(const std::filesystem::path& staged, const std::string& digest, int64_t size);
    LocalObject fetch(std::string_view digest) const;
    ObjectStore& objects_;
    Db& db_;
};

} // namespace keel::storage

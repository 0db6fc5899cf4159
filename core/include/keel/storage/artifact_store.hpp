// core/include/keel/storage/artifact_store.hpp
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace keel::storage {

class Db;

//! sha256 of bytes / of a file's content, as 64 lowercase hex characters.
std::string sha256_hex(std::string_view data);
std::string sha256_file(const std::filesystem::path& path);

//! Content-addressed blobs under <workspace>/artifacts/sha256/ab/cdef...: written once through a
//! temporary file and an atomic rename, verified against their digest on every read, so a tampered
//! or truncated blob raises Corrupt instead of returning bad bytes.
class ArtifactStore {
public:
    ArtifactStore(std::filesystem::path root, Db& db);

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
    std::filesystem::path path_of(std::string_view digest) const;

private:
    std::string commit_temp(const std::filesystem::path& temp, const std::string& digest, int64_t size);
    std::filesystem::path root_;
    Db& db_;
};

} // namespace keel::storage

// core/storage/object_files.hpp: file helpers of the object stores (not installed).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace keel::storage::detail {

//! InvalidArgument unless `key` is a relative path of plain names ("a/b/c", no "..", no "//").
void check_object_key(std::string_view key);
//! Writes bytes to a new file (refusing an existing one) and fsyncs it.
void write_file(const std::filesystem::path& path, std::string_view bytes);
//! The whole content of a file.
std::string read_file(const std::filesystem::path& path);
//! fsync of a file or a directory (a rename is durable once its directory is synced); best effort.
void fsync_path(const std::filesystem::path& path, bool directory);
//! The hex MD5 of a file, read a megabyte at a time: what S3 answers as the ETag of a single-part
//! upload of it.
std::string file_md5_hex(const std::filesystem::path& path);
//! The hex ETag S3 gives a multipart upload: the MD5 of the parts' binary MD5s, "-", the part count.
//! Bytes past `part_size` begin the next part.
std::string multipart_etag(const std::filesystem::path& path, int64_t part_size);

//! An incremental hash (OpenSSL EVP): update() as bytes stream by, hex() at the end (once).
class Hasher {
public:
    static Hasher sha256();
    static Hasher md5();
    void update(std::string_view bytes);
    std::string digest();  //!< the raw digest bytes
    std::string hex();
    Hasher(Hasher&&) noexcept;
    Hasher& operator=(Hasher&&) noexcept;
    ~Hasher();

private:
    struct Ctx;
    explicit Hasher(const void* md);
    std::unique_ptr<Ctx> ctx_;
};

//! A new file written in pieces (refusing an existing one): close() fsyncs it; a sink dropped
//! before close() leaves the partial file for its owner to remove.
class FileSink {
public:
    explicit FileSink(const std::filesystem::path& path);
    ~FileSink();
    FileSink(const FileSink&) = delete;
    FileSink& operator=(const FileSink&) = delete;
    void write(std::string_view bytes);
    void close();

private:
    std::filesystem::path path_;
    int fd_ = -1;
};

//! Reads a file in pieces: read() fills `out` with up to `size` bytes (fewer only at its end).
class FileSource {
public:
    explicit FileSource(const std::filesystem::path& path);
    ~FileSource();
    FileSource(const FileSource&) = delete;
    FileSource& operator=(const FileSource&) = delete;
    int64_t size() const { return size_; }
    void read(std::string& out, size_t size);

private:
    std::filesystem::path path_;
    int fd_ = -1;
    int64_t size_ = 0;
};

} // namespace keel::storage::detail

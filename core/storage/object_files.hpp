// core/storage/object_files.hpp: file helpers of the object stores (not installed).
#pragma once

#include <filesystem>
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
//! The hex MD5 of bytes: what S3 answers as the ETag of a single-part upload.
std::string md5_hex(std::string_view bytes);

} // namespace keel::storage::detail

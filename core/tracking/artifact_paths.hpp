// core/tracking/artifact_paths.hpp
// Private to tracking: how logged files get their recorded paths, and where a download may write.
//
// The rules, so that no artifact ever leaves its run or its download folder:
// - A recorded path is relative, '/'-separated, with no empty, '.' or '..' part and no NUL. It is
//   checked when it is recorded and again before a download writes it.
// - Logging a directory walks it without following linked directories. A symlink to a regular file
//   is stored as that file's content under the link's own name (inside the logged directory),
//   never under the target's path. Linked directories, dangling links, named pipes, sockets and
//   devices are refused before anything is stored, naming the entry.
// - A download writes only below the resolved destination: a folder on the way that is a symlink
//   resolving elsewhere is refused.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace keel::tracking::artifact_paths {

//! The `artifact_path` argument of log_artifact normalized: parts split on '/' or '\', '.' and
//! empty parts dropped (so "/a/./b/" is "a/b"). InvalidArgument for a '..' part or a NUL.
std::string clean_prefix(std::string_view path);

//! True when `path` follows the recorded-path rules above.
bool is_safe_recorded(std::string_view path);

//! One file to store: its recorded path and where to read it.
struct LocalFile {
    std::string path;
    std::filesystem::path source;
};

//! The files logging `local` (a regular file or a directory) under `prefix` stores, sorted by
//! recorded path. InvalidArgument for anything else (a pipe, device, socket, a linked directory or
//! a dangling link inside the directory); NotFound when `local` does not exist.
std::vector<LocalFile> collect(const std::filesystem::path& local, std::string_view prefix);

//! root/<path> for a download (root already resolved), with its parent folders created. Refuses
//! with InvalidArgument when a folder on the way is a link resolving outside root or a file, or
//! when the target is a directory.
std::filesystem::path download_target(const std::filesystem::path& root, std::string_view path);

} // namespace keel::tracking::artifact_paths

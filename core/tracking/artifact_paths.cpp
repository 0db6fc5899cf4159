// core/tracking/artifact_paths.cpp
#include "artifact_paths.hpp"

#include "keel/common/error.hpp"

#include <algorithm>

namespace fs = std::filesystem;

namespace keel::tracking::artifact_paths {

namespace {

std::string_view kind_name(fs::file_type type) {
    switch (type) {
    case fs::file_type::fifo: return "a named pipe";
    case fs::file_type::socket: return "a socket";
    case fs::file_type::block: return "a block device";
    case fs::file_type::character: return "a character device";
    case fs::file_type::directory: return "a directory";
    case fs::file_type::symlink: return "a symlink";
    case fs::file_type::not_found: return "missing";
    default: return "not a regular file";
    }
}

std::string join(std::string_view a, std::string_view b) {
    if (a.empty()) return std::string(b);
    if (b.empty()) return std::string(a);
    return std::string(a) + "/" + std::string(b);
}

// True when `p` is `root` or below it, compared component by component (so "/data/out-evil" is not
// inside "/data/out").
bool within(const fs::path& root, const fs::path& p) {
    auto [r, q] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
    return r == root.end();
}

} // namespace

std::string clean_prefix(std::string_view path) {
    if (path.find('\0') != std::string_view::npos)
        throw_error(ErrorKind::InvalidArgument, "artifact path contains a NUL character: use a plain relative path");
    std::string out;
    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find_first_of("/\\", i);
        if (j == std::string_view::npos) j = path.size();
        std::string_view part = path.substr(i, j - i);
        if (part == "..")
            throw_error(ErrorKind::InvalidArgument,
                        "artifact path '{}' climbs out of the run with '..': use a path inside the run", path);
        if (!part.empty() && part != ".") out = join(out, part);
        i = j + 1;
    }
    return out;
}

bool is_safe_recorded(std::string_view path) {
    if (path.empty() || path.find('\0') != std::string_view::npos) return false;
    size_t i = 0;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos) j = path.size();
        std::string_view part = path.substr(i, j - i);
        if (part.empty() || part == "." || part == "..") return false;
        i = j + 1;
    }
    return true;
}

std::vector<LocalFile> collect(const fs::path& local, std::string_view prefix) {
    std::string pre = clean_prefix(prefix);
    std::error_code ec;
    auto status = fs::status(local, ec);
    if (!fs::exists(status))
        throw_error(ErrorKind::NotFound, "cannot log artifact '{}': no such file or directory", local.string());
    fs::path absolute = fs::absolute(local).lexically_normal();
    std::string base = absolute.filename().string();
    if (base.empty() || base == ".") base = absolute.parent_path().filename().string();
    if (base.empty())
        throw_error(ErrorKind::InvalidArgument,
                    "cannot log artifact '{}': it has no name to record it under; log a named file or folder",
                    local.string());
    std::vector<LocalFile> files;
    if (fs::is_regular_file(status)) {
        files.push_back({join(pre, base), local});
    } else if (fs::is_directory(status)) {
        // Walk without following linked directories (they can loop or lead anywhere); record every
        // file under its path inside the logged directory, computed lexically, never resolved.
        try {
            for (auto it = fs::recursive_directory_iterator(local); it != fs::recursive_directory_iterator(); ++it) {
                const fs::path& p = it->path();
                std::string rel = p.lexically_relative(local).generic_string();
                auto own = it->symlink_status();
                if (fs::is_directory(own)) continue;
                if (fs::is_regular_file(own)) {
                    files.push_back({join(join(pre, base), rel), p});
                    continue;
                }
                if (fs::is_symlink(own)) {
                    auto target = fs::status(p, ec);
                    if (fs::is_regular_file(target)) { // its content, under the link's own name
                        files.push_back({join(join(pre, base), rel), p});
                        continue;
                    }
                    throw_error(ErrorKind::InvalidArgument,
                                "cannot log directory '{}': '{}' is a symlink to {} ('{}'); Keel stores a linked "
                                "file's content under the link's name but does not follow linked directories or "
                                "dangling links. Replace the link with a copy, or log its target separately",
                                local.string(), rel, kind_name(target.type()), fs::read_symlink(p, ec).string());
                }
                throw_error(ErrorKind::InvalidArgument,
                            "cannot log directory '{}': '{}' is {}; Keel logs regular files only (reading it "
                            "could block or never end). Remove it from the directory, or log the files you need "
                            "one by one",
                            local.string(), rel, kind_name(own.type()));
            }
        } catch (const fs::filesystem_error& e) {
            throw_error(e.code() == std::errc::permission_denied ? ErrorKind::PermissionDenied : ErrorKind::InvalidArgument,
                        "cannot log directory '{}': {}", local.string(), e.what());
        }
        std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
    } else {
        throw_error(ErrorKind::InvalidArgument,
                    "cannot log artifact '{}': it is {}; Keel logs regular files and directories only (reading "
                    "it could block or never end). Copy what you need into a file and log that",
                    local.string(), kind_name(status.type()));
    }
    for (const auto& f : files)
        if (!is_safe_recorded(f.path))
            throw_error(ErrorKind::InvalidArgument,
                        "cannot log '{}' as artifact path '{}': a recorded path must be relative with no empty, "
                        "'.' or '..' part and no NUL; rename the file",
                        f.source.string(), f.path);
    return files;
}

fs::path download_target(const fs::path& root, std::string_view path) {
    fs::path dir = root;
    size_t i = 0;
    while (true) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos) break;
        dir /= std::string(path.substr(i, j - i));
        i = j + 1;
        std::error_code ec;
        auto own = fs::symlink_status(dir, ec);
        if (!fs::exists(own)) {
            fs::create_directory(dir, ec);
            if (ec)
                throw_error(ErrorKind::PermissionDenied, "cannot create folder '{}' for a download: {}", dir.string(),
                            ec.message());
            continue;
        }
        if (fs::is_symlink(own)) {
            fs::path resolved = fs::canonical(dir, ec);
            if (ec || !within(root, resolved) || !fs::is_directory(resolved))
                throw_error(ErrorKind::InvalidArgument,
                            "refusing to download through '{}': it is a symlink to '{}', outside the destination "
                            "'{}'. Keel never writes outside the destination: remove the link or download into an "
                            "empty folder",
                            dir.string(), fs::read_symlink(dir, ec).string(), root.string());
            continue;
        }
        if (!fs::is_directory(own))
            throw_error(ErrorKind::InvalidArgument,
                        "cannot download artifact '{}': '{}' already exists and is not a folder; download into an "
                        "empty folder",
                        path, dir.string());
    }
    fs::path target = dir / std::string(path.substr(i));
    std::error_code ec;
    if (fs::is_directory(fs::symlink_status(target, ec)))
        throw_error(ErrorKind::InvalidArgument,
                    "cannot download artifact '{}': '{}' already exists and is a folder; download into an empty "
                    "folder",
                    path, target.string());
    return target;
}

} // namespace keel::tracking::artifact_paths

// core/features/files.cpp: the feature store's files as objects of the workspace's ObjectStore.
#include "store_impl.hpp"

#include "keel/common/error.hpp"
#include "keel/features/segment.hpp"
#include "keel/storage/artifact_store.hpp"

namespace fs = std::filesystem;

namespace keel::features::detail {

namespace {

std::string key_of(const std::string& file) { return "features/" + file; }

// The sha256 a remote file's name carries ("<stem>-<64 hex>.kseg"), or "" (a local file's name).
std::string digest_in_name(const std::string& file) {
    const std::string_view name = file;
    const size_t dot = name.rfind('.');
    if (dot == std::string_view::npos || dot < 65 || name[dot - 65] != '-') return "";
    const std::string_view hex = name.substr(dot - 64, 64);
    for (char c : hex)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return "";
    return std::string(hex);
}

} // namespace

std::string write_segment_file(storage::Workspace& ws, const std::string& stem, const BatchView& batch,
                               const std::vector<uint32_t>& order) {
    auto& objects = ws.objects();
    const fs::path rel(stem);
    const fs::path staged = objects.stage(key_of(rel.parent_path().generic_string()));
    Segment::write_new(staged, batch, order);
    std::string file = stem;
    if (!objects.is_local()) {
        try {
            file += "-" + storage::sha256_file(staged);
        } catch (...) {
            std::error_code ec;
            fs::remove(staged, ec);
            throw;
        }
    }
    file += ".kseg";
    objects.commit(staged, key_of(file));
    return file;
}

std::shared_ptr<const Segment> open_segment_file(storage::Workspace& ws, const std::string& file) {
    auto& objects = ws.objects();
    const std::string key = key_of(file);
    storage::LocalObject copy;
    try {
        copy = objects.fetch(key, digest_in_name(file));
    } catch (const Error& e) {
        if (e.kind() != ErrorKind::NotFound) throw;
        throw_error(ErrorKind::Corrupt,
                    "feature segment {} cannot be opened: it is missing ({}). Restore it from a backup, or drop the "
                    "view's data and ingest it again (an online snapshot is rebuilt by materialize)",
                    objects.describe(key), e.what());
    }
    if (objects.is_local()) return Segment::open(copy.path);
    return Segment::open(copy.path, std::move(copy.pin), objects.describe(key));
}

void remove_segment_file(storage::Workspace& ws, const std::string& file) {
    try {
        ws.objects().remove(key_of(file));
    } catch (const Error&) {
        // An unreferenced object costs space only; the metadata no longer names it.
    }
}

} // namespace keel::features::detail

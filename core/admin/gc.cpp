// core/admin/gc.cpp: `keel admin gc`, sweeping objects no row names (a crash between an upload and
// its row leaves them). Which rows name objects is each module's to say (ObjectRefs).
#include "keel/admin/admin.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/read_snapshot.hpp"

namespace keel::admin {

namespace {

// The object's entry as listed now, or nullopt when it is gone.
std::optional<storage::ObjectEntry> relist(storage::ObjectStore& objects, const std::string& key) {
    for (auto& e : objects.list(key))
        if (e.key == key) return e;
    return std::nullopt;
}

int64_t total(const std::vector<storage::ObjectEntry>& entries) {
    int64_t n = 0;
    for (const auto& e : entries) n += e.size;
    return n;
}

} // namespace

int64_t GcReport::swept_bytes() const { return total(swept); }
int64_t GcReport::young_bytes() const { return total(young); }

GcReport gc(storage::Workspace& ws, const GcOptions& options) {
    if (options.older_than.count() < 0)
        throw_error(ErrorKind::InvalidArgument, "gc's grace period is {} ms: it must be 0 or more",
                    options.older_than.count());
    auto& db = ws.db();
    db.check_not_newer(db.schema_status(module_schemas()));
    auto& objects = ws.objects();
    const int64_t cutoff = now_ms() - options.older_than.count();

    // Listed before the names are read: an object stored and named meanwhile is seen named.
    std::vector<storage::ObjectEntry> listed;
    for (const auto& prefix : storage::kObjectPrefixes)
        for (auto& e : objects.list(prefix)) listed.push_back(std::move(e));
    const auto names = [&] {
        storage::ReadSnapshot snapshot(db);
        return storage::named_object_keys(db, object_refs());
    }();

    GcReport report;
    for (auto& e : listed) {
        ++report.objects;
        report.bytes += e.size;
        if (names.count(e.key)) {
            ++report.named;
            continue;
        }
        if (e.modified_ms > cutoff) {
            report.young.push_back(std::move(e));
            continue;
        }
        if (!options.dry_run) {
            // Once more just before deleting: content stored again since the listing is new again.
            auto now = relist(objects, e.key);
            if (!now) continue;
            if (now->modified_ms > cutoff) {
                report.young.push_back(std::move(*now));
                continue;
            }
            objects.remove(e.key);
        }
        report.swept.push_back(std::move(e));
    }
    for (const auto& prefix : storage::kObjectPrefixes)
        for (auto& e : objects.list_staged(prefix)) {
            if (e.modified_ms > cutoff) continue;  // being written
            if (!options.dry_run) objects.remove(e.key);
            report.staged.push_back(std::move(e));
        }
    for (auto& upload : objects.pending_uploads()) {
        if (upload.started_ms > cutoff) continue;
        if (!options.dry_run) objects.abort_upload(upload);
        report.aborted.push_back(std::move(upload));
    }
    return report;
}

} // namespace keel::admin

// core/storage/s3_object_store.cpp: the S3 ObjectStore: uploads from staged files, downloads into
// the read cache (object_cache.cpp), sha256-verified before a copy is kept.
#include "keel/storage/object_store.hpp"

#include "object_cache.hpp"
#include "object_files.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/s3_client.hpp"

namespace fs = std::filesystem;

namespace keel::storage {

namespace {

constexpr int64_t kRefreshAfterMs = 10 * 60 * 1000;

class S3ObjectStore final : public ObjectStore {
public:
    //! Checks the endpoint, bucket and credentials before anything is created on disk.
    S3ObjectStore(const S3Config& config, const S3Location& location, ObjectCacheOptions cache)
        : client_(config, location), cache_((check(), std::move(cache))) {}

    fs::path stage(std::string_view) override { return cache_.temp_path(); }

    void commit(const fs::path& staged, const std::string& key, std::string_view sha256) override {
        try {
            detail::check_object_key(key);
            // Content-addressed and already there with this content (its ETag is what put_file
            // gives these bytes): nothing to send. A damaged object is replaced. The file is read
            // in parts, never whole: memory stays bounded by a part whatever the object's size.
            // One written more than kRefreshAfter ago is sent again all the same: its new
            // Last-Modified keeps `keel admin gc` from taking it as an old orphan while the row
            // that names it again is being written.
            bool present = false;
            if (!sha256.empty())
                if (auto info = client_.head(key))
                    present = info->size == int64_t(fs::file_size(staged)) &&
                              info->modified_ms > now_ms() - kRefreshAfterMs && info->etag == client_.file_etag(staged);
            if (!present) client_.put_file(key, staged);
        } catch (const Error& e) {
            std::error_code ec;
            fs::remove(staged, ec);
            throw Error(e.kind(), fmt::format("cannot upload {}: {}", describe(key), e.what()));
        }
        cache_.adopt(staged, key);  // the writer usually reads it back: no download then
    }

    LocalObject fetch(const std::string& key, std::string_view sha256) override {
        detail::check_object_key(key);
        // Streamed to the cache's temporary file a part at a time and hashed on the way; the cache
        // renames it into place only when whole and verified (a failure leaves no entry).
        return cache_.get_or_fill(key, [&](const fs::path& temp) {
            detail::FileSink out(temp);
            detail::Hasher hash = detail::Hasher::sha256();
            int64_t size = 0;
            try {
                size = client_.get_to(key, [&](std::string_view piece) {
                    out.write(piece);
                    if (!sha256.empty()) hash.update(piece);
                });
            } catch (const Error& e) {
                throw Error(e.kind(), fmt::format("cannot fetch {}: {}", describe(key), e.what()));
            }
            if (!sha256.empty()) {
                const std::string actual = hash.hex();
                if (actual != sha256)
                    throw_error(ErrorKind::Corrupt,
                                "object {} is corrupt: its content ({} bytes) hashes to sha256 {}, expected {}; it "
                                "was modified or damaged in the bucket. Restore it from a backup or write it again",
                                describe(key), size, actual, sha256);
            }
            out.close();
        });
    }

    bool exists(const std::string& key) override {
        detail::check_object_key(key);
        return client_.head(key).has_value();
    }

    void remove(const std::string& key) override {
        detail::check_object_key(key);
        client_.remove(key);
        cache_.drop(key);
    }

    std::vector<ObjectEntry> list(const std::string& prefix) override {
        std::vector<ObjectEntry> out;
        for (auto& info : client_.list(prefix)) out.push_back({std::move(info.key), info.size, info.modified_ms});
        return out;
    }

    bool holds_objects() override { return client_.holds_objects(); }

    std::vector<PendingUpload> pending_uploads() override {
        std::vector<PendingUpload> out;
        for (auto& u : client_.list_uploads()) out.push_back({std::move(u.key), std::move(u.upload_id), u.initiated_ms});
        return out;
    }
    void abort_upload(const PendingUpload& upload) override { client_.abort_upload(upload.key, upload.id); }

    std::string url() const override { return client_.location().url(); }
    std::string describe(std::string_view key) const override {
        const auto& loc = client_.location();
        return fmt::format("s3://{}/{}{}", loc.bucket, loc.prefix, key);
    }
    bool is_local() const override { return false; }

    void check() const {
        try {
            client_.check();
        } catch (const Error& e) {
            throw Error(e.kind(), fmt::format("cannot use {} for the workspace's artifacts: {}", url(), e.what()));
        }
    }

private:
    S3Client client_;
    detail::ObjectCache cache_;
};

} // namespace

std::unique_ptr<ObjectStore> s3_object_store(const S3Config& config, const S3Location& location,
                                             ObjectCacheOptions cache) {
    return std::make_unique<S3ObjectStore>(config, location, std::move(cache));
}

} // namespace keel::storage

// core/storage/s3_object_store.cpp: the S3 ObjectStore: uploads from staged files, downloads into
// the read cache (object_cache.cpp), sha256-verified before a copy is kept.
#include "keel/storage/object_store.hpp"

#include "object_cache.hpp"
#include "object_files.hpp"

#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/s3_client.hpp"

namespace fs = std::filesystem;

namespace keel::storage {

namespace {

class S3ObjectStore final : public ObjectStore {
public:
    //! Checks the endpoint, bucket and credentials before anything is created on disk.
    S3ObjectStore(const S3Config& config, const S3Location& location, ObjectCacheOptions cache)
        : client_(config, location), cache_((check(), std::move(cache))) {}

    fs::path stage(std::string_view) override { return cache_.temp_path(); }

    void commit(const fs::path& staged, const std::string& key, std::string_view sha256) override {
        try {
            detail::check_object_key(key);
            const std::string bytes = detail::read_file(staged);
            // Content-addressed and already there with this content (its ETag is the MD5 of a
            // single-part upload): nothing to send. A damaged object is replaced.
            bool present = false;
            if (!sha256.empty())
                if (auto info = client_.head(key)) present = info->etag == detail::md5_hex(bytes);
            if (!present) client_.put(key, bytes);
        } catch (const Error& e) {
            std::error_code ec;
            fs::remove(staged, ec);
            throw Error(e.kind(), fmt::format("cannot upload {}: {}", describe(key), e.what()));
        }
        cache_.adopt(staged, key);  // the writer usually reads it back: no download then
    }

    LocalObject fetch(const std::string& key, std::string_view sha256) override {
        detail::check_object_key(key);
        return cache_.get_or_fill(key, [&](const fs::path& temp) {
            std::string bytes;
            try {
                bytes = client_.get(key);
            } catch (const Error& e) {
                throw Error(e.kind(), fmt::format("cannot fetch {}: {}", describe(key), e.what()));
            }
            if (!sha256.empty()) {
                const std::string actual = sha256_hex(bytes);
                if (actual != sha256)
                    throw_error(ErrorKind::Corrupt,
                                "object {} is corrupt: its content ({} bytes) hashes to sha256 {}, expected {}; it "
                                "was modified or damaged in the bucket. Restore it from a backup or write it again",
                                describe(key), bytes.size(), actual, sha256);
            }
            detail::write_file(temp, bytes);
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
        for (auto& info : client_.list(prefix)) out.push_back({std::move(info.key), info.size});
        return out;
    }

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

// core/include/keel/storage/s3_client.hpp
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

//! Keel's S3 object client: artifacts and feature segments of a team workspace on any
//! S3-compatible store (AWS, SeaweedFS, MinIO, ...). HTTP(S) on Boost.Beast, AWS Signature
//! Version 4 on OpenSSL; no AWS SDK. Errors are keel::Error kinds with what to do:
//!   cannot reach the endpoint           Internal          (quick: connect failures are not retried)
//!   missing bucket, missing object      NotFound
//!   refused credentials, access denied  PermissionDenied
//!   bad location, config or range       InvalidArgument
//! Throttling, 5xx answers and dropped connections are retried with backoff (every call here is
//! idempotent; put_if_absent tells its own earlier attempt apart from another writer by the ETag).
namespace keel::storage {

//! "s3://bucket/prefix": a bucket and a folder-like key prefix inside it.
struct S3Location {
    std::string bucket;
    std::string prefix;  //!< "" or ends with '/': "s3://b/runs" and "s3://b/runs/" both give "runs/"

    //! InvalidArgument, naming the text, for anything but s3://<valid bucket name>[/prefix].
    static S3Location parse(std::string_view url);
    std::string url() const;  //!< "s3://bucket/prefix"
};

struct S3Config {
    std::string endpoint;  //!< "https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:8333"
    std::string region = "us-east-1";
    std::string access_key;     //!< empty: anonymous (unsigned) requests
    std::string secret_key;
    std::string session_token;  //!< temporary credentials (AWS_SESSION_TOKEN)
    //! Path-style URLs (endpoint/bucket/key) instead of virtual hosts (bucket.endpoint/key); what
    //! custom endpoints need, and AWS too for bucket names with dots.
    bool path_style = false;
    std::string ca_file;  //!< PEM bundle to verify TLS with, instead of the system's (AWS_CA_BUNDLE)
    std::chrono::milliseconds connect_timeout{5000};
    std::chrono::milliseconds request_timeout{60000};  //!< one request: sending it and reading all of the answer
    int max_attempts = 4;          //!< per call, for retried failures (throttling, 5xx, dropped connections)
    std::chrono::milliseconds retry_base_delay{100};  //!< backoff: random up to base * 2^attempt, at most 5 s
    int list_page_size = 1000;     //!< max-keys of each ListObjectsV2 page (1..1000)
    int max_idle_connections = 8;  //!< keep-alive connections kept for reuse
    //! put_file uploads a file larger than this in parts (a multipart upload); at most 5 GiB, S3's
    //! largest single PUT. KEEL_S3_MULTIPART_THRESHOLD.
    int64_t multipart_threshold = int64_t(64) << 20;
    //! The bytes of one part of a multipart upload and of one ranged GET of get_to: what a transfer
    //! holds in memory, whatever the object's size. 5 MiB (S3's smallest part) to 5 GiB; at most
    //! 10,000 parts make an object. KEEL_S3_PART_SIZE.
    int64_t part_size = int64_t(16) << 20;

    //! From the environment as the AWS tools read it: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL,
    //! else https://s3.<region>.amazonaws.com; AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1;
    //! AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; AWS_CA_BUNDLE. A custom endpoint
    //! gets path-style addressing; KEEL_S3_MULTIPART_THRESHOLD and KEEL_S3_PART_SIZE (bytes).
    //! InvalidArgument when only one of the key pair is set, or a size is not a number.
    static S3Config from_env();
};

struct S3ObjectInfo {
    std::string key;  //!< relative to the client's location prefix (empty from head())
    int64_t size = 0;
    std::string etag;  //!< without quotes; the hex MD5 of the content for single-part uploads
    int64_t modified_ms = 0;  //!< Last-Modified, ms since the epoch (0 when the server gave none)
};

//! A multipart upload begun and neither completed nor aborted (list_uploads).
struct S3Upload {
    std::string key;  //!< relative to the client's location prefix
    std::string upload_id;
    int64_t initiated_ms = 0;
};

//! Objects under one S3Location; keys are relative to its prefix. Thread-safe: calls from several
//! threads share a small pool of keep-alive connections.
class S3Client {
public:
    //! Checks the config (endpoint URL, region, limits); connects lazily, on the first call.
    S3Client(S3Config config, S3Location location);
    ~S3Client();
    S3Client(const S3Client&) = delete;
    S3Client& operator=(const S3Client&) = delete;

    //! Stores bytes under key (replacing any object there); the server verifies them against their
    //! sha256 (signed x-amz-content-sha256) and MD5 (Content-MD5). Returns the ETag.
    std::string put(std::string_view key, std::string_view bytes) const;
    //! Stores bytes only when no object has the key (If-None-Match: *): true when stored, false when
    //! one was already there. Servers that ignore the condition overwrite instead (AWS S3 and
    //! SeaweedFS honour it; MinIO since 2024).
    bool put_if_absent(std::string_view key, std::string_view bytes) const;
    //! Uploads the file at `path` under key: one PUT up to multipart_threshold, else a multipart
    //! upload (CreateMultipartUpload, UploadPart per part_size bytes read from the file one part at
    //! a time, CompleteMultipartUpload), each request retried as any other. Any failure aborts the
    //! upload (AbortMultipartUpload), so no parts linger; the object appears whole or not at all.
    //! `on_part(done, parts)` is called after each part. Returns the ETag.
    std::string put_file(std::string_view key, const std::filesystem::path& path,
                         const std::function<void(int, int)>& on_part = {}) const;
    //! The ETag put_file gives the content of `path` (the MD5 for one PUT, else the multipart
    //! form "<md5 of part md5s>-<parts>"): how a commit tells the same content is already stored.
    std::string file_etag(const std::filesystem::path& path) const;
    //! The whole object; NotFound when there is none.
    std::string get(std::string_view key) const;
    //! The whole object handed to `sink` in pieces of at most part_size bytes (ranged GETs, each
    //! retried; every piece after the first must come from the same version of the object, by its
    //! ETag: Conflict when the object was replaced meanwhile). Returns its size.
    int64_t get_to(std::string_view key, const std::function<void(std::string_view)>& sink) const;
    //! `length` bytes from `offset` (fewer at the end of the object); InvalidArgument when offset is
    //! at or past the end of a non-empty object.
    std::string get_range(std::string_view key, uint64_t offset, uint64_t length) const;
    //! Size and ETag, or nullopt when there is no such object (or no such bucket: HEAD answers carry
    //! no reason; use check() to tell).
    std::optional<S3ObjectInfo> head(std::string_view key) const;
    //! Deletes the object; removing a missing key is not an error.
    void remove(std::string_view key) const;
    //! Every object whose key starts with prefix (relative to the location), all pages, in key order.
    std::vector<S3ObjectInfo> list(std::string_view prefix = {}) const;
    //! Multipart uploads under prefix that were begun and never completed nor aborted (a crashed
    //! writer's): their parts cost storage until aborted.
    std::vector<S3Upload> list_uploads(std::string_view prefix = {}) const;
    //! AbortMultipartUpload: the upload's parts are deleted; an unknown upload is not an error.
    void abort_upload(std::string_view key, const std::string& upload_id) const;
    //! One cheap listing request: throws the clear error when the endpoint, bucket or credentials
    //! are wrong. For opening a workspace before doing any work.
    void check() const;
    //! Whether any object is stored under the location's prefix (one listing request of one key).
    bool holds_objects() const;

    const S3Location& location() const;
    const S3Config& config() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace keel::storage

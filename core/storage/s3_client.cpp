// core/storage/s3_client.cpp: S3Client's operations on HttpPool (s3_http.cpp) and the SigV4 signer
// (s3_sigv4.cpp): signing and retrying each call, and turning S3's answers into keel::Error kinds
// whose messages say what to fix.
#include "keel/storage/s3_client.hpp"

#include "object_files.hpp"
#include "s3_http.hpp"
#include "s3_xml.hpp"

#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/s3_sigv4.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <random>
#include <thread>

namespace keel::storage {

using detail::HttpPool;
using detail::HttpRequest;
using detail::HttpResponse;
using detail::TransportError;

namespace {

struct Endpoint {
    bool tls = false;
    std::string host;  // IPv6 without brackets
    uint16_t port = 0;
    bool default_port = true;
};

Endpoint parse_endpoint(const std::string& url) {
    Endpoint e;
    std::string_view rest = url;
    if (rest.substr(0, 8) == "https://") {
        e.tls = true;
        rest.remove_prefix(8);
    } else if (rest.substr(0, 7) == "http://") {
        rest.remove_prefix(7);
    } else {
        throw_error(ErrorKind::InvalidArgument,
                    "S3 endpoint '{}' is not an http:// or https:// URL: fix AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3)", url);
    }
    size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos && rest.substr(slash) != "/")
        throw_error(ErrorKind::InvalidArgument,
                    "S3 endpoint '{}' has a path: give only scheme, host and port (the bucket goes in the s3:// location)",
                    url);
    std::string_view port_text;
    if (!authority.empty() && authority.front() == '[') {
        size_t close = authority.find(']');
        if (close == std::string_view::npos)
            throw_error(ErrorKind::InvalidArgument, "S3 endpoint '{}' has an unclosed '[' in its host", url);
        e.host = std::string(authority.substr(1, close - 1));
        if (close + 1 < authority.size()) {
            if (authority[close + 1] != ':')
                throw_error(ErrorKind::InvalidArgument, "S3 endpoint '{}' has text after its IPv6 host", url);
            port_text = authority.substr(close + 2);
        }
    } else {
        size_t colon = authority.rfind(':');
        e.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
    }
    if (e.host.empty()) throw_error(ErrorKind::InvalidArgument, "S3 endpoint '{}' names no host", url);
    e.port = e.tls ? 443 : 80;
    if (!port_text.empty()) {
        unsigned value = 0;
        auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
        if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 || value > 65535)
            throw_error(ErrorKind::InvalidArgument, "S3 endpoint '{}' has an invalid port '{}': expected 1-65535", url,
                        port_text);
        e.default_port = value == e.port;
        e.port = static_cast<uint16_t>(value);
    }
    return e;
}

std::string base64(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3), '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
    out.resize(static_cast<size_t>(n));
    return out;
}

std::string md5(std::string_view bytes) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_md5(), nullptr);
    return std::string(reinterpret_cast<const char*>(digest), size);
}

std::string hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string unquoted(std::string etag) {
    if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
    return etag;
}

int64_t to_int64(std::string_view text, std::string_view what) {
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < 0)
        throw_error(ErrorKind::Internal, "S3 answered an invalid {} '{}'", what, text);
    return value;
}

// "2026-12-03T15:25:36.000Z" (listings) or "Thu, 03 Dec 2026 15:25:36 GMT" (Last-Modified headers)
// as ms since the epoch; 0 when it is neither.
int64_t time_ms(const std::string& text) {
    std::tm tm{};
    int ms = 0;
    const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (end) {
        if (*end == '.') {
            int scale = 100;
            for (++end; *end >= '0' && *end <= '9'; ++end, scale /= 10) ms += (*end - '0') * scale;
        }
    } else {
        tm = {};
        end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
        if (!end) return 0;
    }
    return int64_t(timegm(&tm)) * 1000 + ms;
}

bool ok(int status) {
    return status >= 200 && status < 300;
}

struct S3Error {
    std::string code;
    std::string message;
};

S3Error error_of(const HttpResponse& response) {
    S3Error e;
    e.code = detail::xml_text(response.body, "Code").value_or("");
    e.message = detail::xml_text(response.body, "Message").value_or("");
    return e;
}

// Answers worth sending again: the server was busy or broken for a moment, or the bytes were damaged
// on the way (the checksums caught it).
bool retryable(const HttpResponse& response) {
    int s = response.status;
    if (s == 500 || s == 502 || s == 503 || s == 504 || s == 429) return true;
    if (s == 400 || s == 409) {
        auto code = error_of(response).code;
        return code == "RequestTimeout" || code == "BadDigest" || code == "XAmzContentSHA256Mismatch" ||
               code == "ConditionalRequestConflict" || code == "SlowDown";
    }
    return false;
}

} // namespace

struct S3Client::Impl {
    S3Config config;
    S3Location location;
    Endpoint endpoint;
    bool path_style = false;
    std::string host_header;
    std::unique_ptr<HttpPool> pool;

    //! One call: the request, and whether an earlier attempt of it may have reached the server.
    struct Result {
        HttpResponse response;
        bool resent = false;
    };

    std::string object_url(std::string_view full_key) const { return fmt::format("s3://{}/{}", location.bucket, full_key); }

    std::string full_key(std::string_view key) const {
        if (key.empty()) throw_error(ErrorKind::InvalidArgument, "an S3 object key cannot be empty (location {})", location.url());
        std::string full = location.prefix + std::string(key);
        if (full.size() > 1024)
            throw_error(ErrorKind::InvalidArgument, "S3 object key '{}...' is {} bytes long; S3 allows at most 1024",
                        full.substr(0, 60), full.size());
        return full;
    }

    std::string bucket_path() const { return path_style ? "/" + location.bucket : ""; }
    std::string object_path(std::string_view full) const {
        return bucket_path() + "/" + sigv4::uri_encode(full, true);
    }

    Result exchange(const std::string& method, const std::string& path, const sigv4::Pairs& query,
                    sigv4::Pairs headers, std::string_view body, std::string_view what) const;
    [[noreturn]] void fail(const HttpResponse& response, std::string_view operation, std::string_view what) const;
    HttpResponse list_page(const std::string& prefix, const std::string& token, int max_keys) const;
};

S3Client::Impl::Result S3Client::Impl::exchange(const std::string& method, const std::string& path,
                                                const sigv4::Pairs& query, sigv4::Pairs headers, std::string_view body,
                                                std::string_view what) const {
    const std::string payload_sha256 = body.empty() ? std::string(sigv4::kEmptyPayloadSha256) : sha256_hex(body);
    const std::string query_text = sigv4::canonical_query(query);
    HttpRequest request;
    request.method = method;
    request.target = query_text.empty() ? path : path + "?" + query_text;
    request.body = body;

    thread_local std::mt19937_64 random{std::random_device{}()};
    bool resent = false;
    int stale_left = config.max_idle_connections + 1;
    for (int attempt = 1;; ++attempt) {
        const std::string date = sigv4::amz_date(std::chrono::system_clock::now());
        sigv4::Pairs signed_headers = headers;
        signed_headers.emplace_back("host", host_header);
        signed_headers.emplace_back("x-amz-date", date);
        signed_headers.emplace_back("x-amz-content-sha256", payload_sha256);
        if (!config.session_token.empty()) signed_headers.emplace_back("x-amz-security-token", config.session_token);
        request.headers = signed_headers;
        if (!config.access_key.empty()) {
            sigv4::Request to_sign{method, path, query, signed_headers, payload_sha256};
            auto signature = sigv4::sign(to_sign, {config.access_key, config.secret_key, config.session_token},
                                         config.region, date);
            request.headers.emplace_back("authorization", signature.authorization);
        }
        request.headers.emplace_back("user-agent", "keel-s3");

        std::string failure;
        try {
            HttpResponse response = pool->send(request);
            if (!retryable(response) || attempt >= config.max_attempts) return {std::move(response), resent};
            auto e = error_of(response);
            failure = fmt::format("HTTP {} {}", response.status, e.code);
            resent = true;
        } catch (const TransportError& e) {
            if (e.stale && stale_left-- > 0) {  // a kept-alive connection the server had closed: at once, on another
                --attempt;
                continue;
            }
            if (!e.connected)
                throw_error(ErrorKind::Unavailable, "cannot reach S3 at {}: {}; check AWS_ENDPOINT_URL", config.endpoint,
                            e.what());
            resent = true;
            if (attempt >= config.max_attempts)
                throw_error(ErrorKind::Unavailable, "S3 at {} did not answer {} of {} after {} attempts: {}",
                            config.endpoint, method, what, attempt, e.what());
        }
        // Full jitter: a random wait up to base * 2^attempt (at most 5 s), so clients do not retry in step.
        auto cap = std::min<int64_t>(5000, config.retry_base_delay.count() << std::min(attempt, 16));
        std::uniform_int_distribution<int64_t> wait(cap / 2, std::max<int64_t>(cap, 1));
        std::this_thread::sleep_for(std::chrono::milliseconds(wait(random)));
    }
}

void S3Client::Impl::fail(const HttpResponse& response, std::string_view operation, std::string_view what) const {
    auto e = error_of(response);
    const std::string said = e.code.empty() ? fmt::format("HTTP {}", response.status)
                                            : fmt::format("{}: {}", e.code, e.message);
    if (e.code == "NoSuchBucket")
        throw_error(ErrorKind::NotFound, "bucket '{}' does not exist at {}: create it, or point the location ({}) at "
                    "an existing bucket", location.bucket, config.endpoint, location.url());
    if (e.code == "NoSuchKey") throw_error(ErrorKind::NotFound, "{} does not exist", what);
    if (e.code == "InvalidAccessKeyId" || e.code == "SignatureDoesNotMatch") {
        if (config.access_key.empty())
            throw_error(ErrorKind::PermissionDenied, "S3 at {} refused an unsigned request ({}): set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY", config.endpoint, said);
        throw_error(ErrorKind::PermissionDenied, "S3 refused the credentials for access key {}: check "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (S3 at {} said {})", config.access_key, config.endpoint,
                    said);
    }
    if (e.code == "ExpiredToken" || e.code == "InvalidToken" || e.code == "TokenRefreshRequired")
        throw_error(ErrorKind::PermissionDenied, "S3 refused the session token of access key {}: temporary credentials "
                    "expire; refresh AWS_SESSION_TOKEN ({})", config.access_key, said);
    if (e.code == "RequestTimeTooSkewed")
        throw_error(ErrorKind::PermissionDenied, "S3 refused the request because this machine's clock is more than 15 "
                    "minutes off: fix the system time (S3 said {})", said);
    if (e.code == "AccessDenied" || e.code == "AllAccessDisabled" || (e.code.empty() && response.status == 403)) {
        if (config.access_key.empty())
            throw_error(ErrorKind::PermissionDenied, "S3 denied {} of {} to an anonymous request: set AWS_ACCESS_KEY_ID "
                        "and AWS_SECRET_ACCESS_KEY ({})", operation, what, said);
        throw_error(ErrorKind::PermissionDenied, "S3 denied {} of {} to access key {}: grant it that permission on "
                    "bucket '{}' ({})", operation, what, config.access_key, location.bucket, said);
    }
    if (e.code == "AuthorizationHeaderMalformed" || e.code == "PermanentRedirect" || response.status == 301) {
        auto region = response.header("x-amz-bucket-region");
        throw_error(ErrorKind::InvalidArgument, "bucket '{}' is not served by {} in region '{}'{}: set AWS_REGION or "
                    "AWS_ENDPOINT_URL to where it lives ({})", location.bucket, config.endpoint, config.region,
                    region.empty() ? "" : fmt::format(" (it is in '{}')", region), said);
    }
    if (e.code == "BadDigest" || e.code == "XAmzContentSHA256Mismatch")
        throw_error(ErrorKind::Corrupt, "S3 received other bytes than were sent for {} of {}, {} times in a row "
                    "(its checksum check failed: {}): something on the network path damages data", operation, what,
                    config.max_attempts, said);
    if (response.status >= 500 || response.status == 429)
        throw_error(ErrorKind::Unavailable, "S3 at {} kept failing {} of {} ({} attempts): {}", config.endpoint, operation,
                    what, config.max_attempts, said);
    throw_error(ErrorKind::Internal, "S3 {} of {} failed with HTTP {}: {}", operation, what, response.status, said);
}

S3Client::S3Client(S3Config config, S3Location location) : impl_(std::make_unique<Impl>()) {
    auto& d = *impl_;
    d.endpoint = parse_endpoint(config.endpoint);
    if (config.region.empty() || config.region.find_first_of("/ ") != std::string::npos)
        throw_error(ErrorKind::InvalidArgument, "S3 region '{}' is not a region name like us-east-1: fix AWS_REGION",
                    config.region);
    if (config.max_attempts < 1)
        throw_error(ErrorKind::InvalidArgument, "S3 max_attempts is {}: it must be at least 1", config.max_attempts);
    if (config.list_page_size < 1 || config.list_page_size > 1000)
        throw_error(ErrorKind::InvalidArgument, "S3 list_page_size is {}: it must be 1 to 1000", config.list_page_size);
    if (config.connect_timeout.count() <= 0 || config.request_timeout.count() <= 0)
        throw_error(ErrorKind::InvalidArgument, "S3 timeouts must be positive (connect {} ms, request {} ms)",
                    config.connect_timeout.count(), config.request_timeout.count());
    if (config.part_size < (int64_t(5) << 20) || config.part_size > (int64_t(5) << 30))
        throw_error(ErrorKind::InvalidArgument, "S3 part size is {} bytes: it must be 5 MiB to 5 GiB (S3's limits on a "
                    "part); fix KEEL_S3_PART_SIZE", config.part_size);
    if (config.multipart_threshold < 1 || config.multipart_threshold > (int64_t(5) << 30))
        throw_error(ErrorKind::InvalidArgument, "S3 multipart threshold is {} bytes: it must be 1 byte to 5 GiB (S3's "
                    "largest single PUT); fix KEEL_S3_MULTIPART_THRESHOLD", config.multipart_threshold);
    if (config.max_idle_connections < 0) config.max_idle_connections = 0;
    // A bucket name with dots is not a valid TLS host name label, so it goes in the path.
    d.path_style = config.path_style || location.bucket.find('.') != std::string::npos;
    std::string host = d.path_style ? d.endpoint.host : location.bucket + "." + d.endpoint.host;
    std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    d.host_header = d.endpoint.default_port ? shown : fmt::format("{}:{}", shown, d.endpoint.port);
    detail::HttpOptions options;
    options.tls = d.endpoint.tls;
    options.host = host;
    options.port = d.endpoint.port;
    options.ca_file = config.ca_file;
    options.connect_timeout = config.connect_timeout;
    options.request_timeout = config.request_timeout;
    options.max_idle = static_cast<size_t>(config.max_idle_connections);
    try {
        d.pool = std::make_unique<HttpPool>(options);
    } catch (const TransportError& e) {
        throw_error(ErrorKind::InvalidArgument, "{}: check AWS_CA_BUNDLE", e.what());
    }
    d.config = std::move(config);
    d.location = std::move(location);
}

S3Client::~S3Client() = default;

const S3Location& S3Client::location() const {
    return impl_->location;
}

const S3Config& S3Client::config() const {
    return impl_->config;
}

std::string S3Client::put(std::string_view key, std::string_view bytes) const {
    const auto& d = *impl_;
    const std::string full = d.full_key(key);
    const std::string what = d.object_url(full);
    auto result = d.exchange("PUT", d.object_path(full), {},
                             {{"content-md5", base64(md5(bytes))}, {"content-type", "application/octet-stream"}}, bytes,
                             what);
    if (!ok(result.response.status)) d.fail(result.response, "PUT", what);
    return unquoted(result.response.header("etag"));
}

bool S3Client::put_if_absent(std::string_view key, std::string_view bytes) const {
    const auto& d = *impl_;
    const std::string full = d.full_key(key);
    const std::string what = d.object_url(full);
    const std::string digest = md5(bytes);
    auto result = d.exchange("PUT", d.object_path(full), {},
                             {{"content-md5", base64(digest)},
                              {"content-type", "application/octet-stream"},
                              {"if-none-match", "*"}},
                             bytes, what);
    const auto& response = result.response;
    if (ok(response.status)) return true;
    if (response.status == 412) {
        // Our own earlier attempt may have stored it before its answer was lost: same bytes, so stored.
        if (result.resent) {
            auto info = head(key);
            if (info && info->etag == hex(digest) && info->size == static_cast<int64_t>(bytes.size())) return true;
        }
        return false;
    }
    if (response.status == 501)
        throw_error(ErrorKind::InvalidArgument, "the S3 server at {} does not support conditional writes "
                    "(If-None-Match: *), which put_if_absent needs ({})", d.config.endpoint, error_of(response).message);
    d.fail(response, "PUT", what);
}

std::string S3Client::file_etag(const std::filesystem::path& path) const {
    if (int64_t(std::filesystem::file_size(path)) <= impl_->config.multipart_threshold)
        return detail::file_md5_hex(path);
    return detail::multipart_etag(path, impl_->config.part_size);
}

std::string S3Client::put_file(std::string_view key, const std::filesystem::path& path,
                               const std::function<void(int, int)>& on_part) const {
    const auto& d = *impl_;
    detail::FileSource in(path);
    std::string part;
    if (in.size() <= d.config.multipart_threshold) {
        in.read(part, size_t(in.size()));
        std::string etag = put(key, part);
        if (on_part) on_part(1, 1);
        return etag;
    }
    const std::string full = d.full_key(key);
    const std::string what = d.object_url(full);
    const std::string object = d.object_path(full);
    const int64_t parts = (in.size() + d.config.part_size - 1) / d.config.part_size;
    if (parts > 10000)
        throw_error(ErrorKind::InvalidArgument, "{} is {} bytes: in parts of {} bytes that is {} parts, and S3 allows "
                    "10,000; raise KEEL_S3_PART_SIZE", path.string(), in.size(), d.config.part_size, parts);

    auto created = d.exchange("POST", object, {{"uploads", ""}}, {{"content-type", "application/octet-stream"}}, {},
                              what);
    if (!ok(created.response.status)) d.fail(created.response, "CreateMultipartUpload", what);
    const std::string upload_id = detail::xml_text(created.response.body, "UploadId").value_or("");
    if (upload_id.empty())
        throw_error(ErrorKind::Internal, "S3 at {} began a multipart upload of {} without an UploadId", d.config.endpoint,
                    what);
    try {
        std::string complete = "<CompleteMultipartUpload>";
        for (int64_t n = 1; n <= parts; ++n) {
            in.read(part, size_t(d.config.part_size));
            if (part.empty() || (n < parts && int64_t(part.size()) < d.config.part_size))
                throw_error(ErrorKind::Internal, "{} shrank while it was being uploaded to {}", path.string(), what);
            auto sent = d.exchange("PUT", object, {{"partNumber", std::to_string(n)}, {"uploadId", upload_id}},
                                   {{"content-md5", base64(md5(part))}}, part, what);
            if (!ok(sent.response.status)) d.fail(sent.response, fmt::format("UploadPart {}", n), what);
            complete += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag></Part>", n,
                                    unquoted(sent.response.header("etag")));
            if (on_part) on_part(int(n), int(parts));
        }
        complete += "</CompleteMultipartUpload>";
        part.clear();
        part.shrink_to_fit();
        auto done = d.exchange("POST", object, {{"uploadId", upload_id}}, {{"content-type", "application/xml"}},
                               complete, what);
        auto& response = done.response;
        // S3 may answer 200 and then an <Error> (the upload failed while it was being assembled).
        if (ok(response.status) && !detail::xml_text(response.body, "Code")) {
            auto etag = detail::xml_text(response.body, "ETag");
            return etag ? unquoted(*etag) : unquoted(response.header("etag"));
        }
        // Our own earlier attempt completed it before its answer was lost: the object is there whole.
        if (done.resent && error_of(response).code == "NoSuchUpload")
            if (auto info = head(key); info && info->size == in.size()) return info->etag;
        d.fail(response, "CompleteMultipartUpload", what);
    } catch (...) {
        abort_upload(key, upload_id);
        throw;
    }
}

void S3Client::abort_upload(std::string_view key, const std::string& upload_id) const {
    const auto& d = *impl_;
    try {
        const std::string full = d.full_key(key);
        auto result = d.exchange("DELETE", d.object_path(full), {{"uploadId", upload_id}}, {}, {}, d.object_url(full));
        const auto& response = result.response;
        if (ok(response.status) || response.status == 404) return;
        d.fail(response, "AbortMultipartUpload", d.object_url(full));
    } catch (const Error&) {
        // Best effort: the upload is listed by list_uploads (and `keel admin gc` aborts it later).
    }
}

std::vector<S3Upload> S3Client::list_uploads(std::string_view prefix) const {
    const auto& d = *impl_;
    const std::string full_prefix = d.location.prefix + std::string(prefix);
    const std::string what = fmt::format("s3://{}/{}*", d.location.bucket, full_prefix);
    std::vector<S3Upload> out;
    std::string key_marker, id_marker;
    while (true) {
        sigv4::Pairs query{{"uploads", ""}, {"prefix", full_prefix}, {"encoding-type", "url"}};
        if (!key_marker.empty()) query.emplace_back("key-marker", key_marker);
        if (!id_marker.empty()) query.emplace_back("upload-id-marker", id_marker);
        auto result = d.exchange("GET", d.path_style ? d.bucket_path() : "/", query, {}, {}, what);
        const auto& body = result.response.body;
        if (!ok(result.response.status)) d.fail(result.response, "ListMultipartUploads", what);
        const bool url_encoded = detail::xml_text(body, "EncodingType").value_or("") == "url";
        for (auto block : detail::xml_elements(body, "Upload")) {
            S3Upload upload;
            upload.key = detail::xml_text(block, "Key").value_or("");
            if (url_encoded) upload.key = detail::url_decode(upload.key);
            if (upload.key.compare(0, d.location.prefix.size(), d.location.prefix) != 0) continue;
            upload.key.erase(0, d.location.prefix.size());
            upload.upload_id = detail::xml_text(block, "UploadId").value_or("");
            upload.initiated_ms = time_ms(detail::xml_text(block, "Initiated").value_or(""));
            out.push_back(std::move(upload));
        }
        if (detail::xml_text(body, "IsTruncated").value_or("false") != "true") break;
        std::string next_key = detail::xml_text(body, "NextKeyMarker").value_or("");
        std::string next_id = detail::xml_text(body, "NextUploadIdMarker").value_or("");
        if (url_encoded) next_key = detail::url_decode(next_key);
        if (next_key == key_marker && next_id == id_marker) break;
        key_marker = std::move(next_key);
        id_marker = std::move(next_id);
    }
    return out;
}

int64_t S3Client::get_to(std::string_view key, const std::function<void(std::string_view)>& sink) const {
    const auto& d = *impl_;
    const std::string full = d.full_key(key);
    const std::string what = d.object_url(full);
    const uint64_t chunk = uint64_t(d.config.part_size);
    uint64_t offset = 0;
    std::string etag;
    while (true) {
        sigv4::Pairs headers{{"range", fmt::format("bytes={}-{}", offset, offset + chunk - 1)}};
        if (!etag.empty()) headers.emplace_back("if-match", "\"" + etag + "\"");
        auto result = d.exchange("GET", d.object_path(full), {}, headers, {}, what);
        auto& response = result.response;
        if (response.status == 200 && offset == 0) {  // the whole object: a server that ignores Range
            sink(response.body);
            return int64_t(response.body.size());
        }
        if (response.status == 416 && offset == 0) {  // an empty object has no byte 0
            std::string body = get(key);
            sink(body);
            return int64_t(body.size());
        }
        if (response.status == 412)
            throw_error(ErrorKind::Conflict, "{} was replaced while it was being downloaded: fetch it again", what);
        if (response.status != 206) d.fail(response, "GET", what);
        const std::string range = response.header("content-range");  // "bytes 0-99/1234"
        const auto slash = range.rfind('/');
        if (slash == std::string::npos || response.body.empty())
            throw_error(ErrorKind::Internal, "S3 answered a ranged GET of {} without a Content-Range or bytes ('{}')",
                        what, range);
        const uint64_t total = uint64_t(to_int64(range.substr(slash + 1), "object size"));
        if (etag.empty()) etag = unquoted(response.header("etag"));
        offset += response.body.size();
        sink(response.body);
        if (offset >= total) return int64_t(total);
        std::string().swap(response.body);
    }
}

std::string S3Client::get(std::string_view key) const {
    const auto& d = *impl_;
    const std::string full = d.full_key(key);
    const std::string what = d.object_url(full);
    auto result = d.exchange("GET", d.object_path(full), {}, {}, {}, what);
    if (!ok(result.response.status)) d.fail(result.response, "GET", what);
    return std::move(result.response.body);
}

std::string S3Client::get_range(std::string_view key, uint64_t offset, uint64_t length) const {
    const auto& d = *impl_;
    const std::string full = d.full_key(key);
    const std::string what = d.object_url(full);
    if (length == 0) return {};
    const uint64_t last = length - 1 > UINT64_MAX - offset ? UINT64_MAX : offset + length - 1;
    auto result = d.exchange("GET", d.object_path(full), {}, {{"range", fmt::format("bytes={}-{}", offset, last)}}, {},
                             what);
    auto& response = result.response;
    if (response.status == 206) return std::move(response.body);
    if (response.status == 200) {  // a server that ignores Range sends it all
        if (offset >= response.body.size() && !response.body.empty())
            throw_error(ErrorKind::InvalidArgument, "range from byte {} is past the end of {} ({} bytes)", offset, what,
                        response.body.size());
        return offset >= response.body.size() ? std::string() : response.body.substr(offset, length);
    }
    if (response.status == 416) {
        std::string range = response.header("content-range");  // "bytes */<size>"
        auto star = range.find("*/");
        throw_error(ErrorKind::InvalidArgument, "range from byte {} is past the end of {}{}", offset, what,
                    star == std::string::npos ? "" : fmt::format(" ({} bytes)", range.substr(star + 2)));
    }
    d.fail(response, "GET", what);
}

std::optional<S3ObjectInfo> S3Client::head(std::string_view key) const {
    const auto& d = *impl_;
    const std::string full = d.full_key(key);
    const std::string what = d.object_url(full);
    auto result = d.exchange("HEAD", d.object_path(full), {}, {}, {}, what);
    const auto& response = result.response;
    if (response.status == 404) return std::nullopt;
    if (!ok(response.status)) {
        check();  // a HEAD answer has no body to say why: a listing request does
        d.fail(response, "HEAD", what);
    }
    S3ObjectInfo info;
    info.size = to_int64(response.header("content-length"), "Content-Length");
    info.etag = unquoted(response.header("etag"));
    info.modified_ms = time_ms(response.header("last-modified"));
    return info;
}

void S3Client::remove(std::string_view key) const {
    const auto& d = *impl_;
    const std::string full = d.full_key(key);
    const std::string what = d.object_url(full);
    auto result = d.exchange("DELETE", d.object_path(full), {}, {}, {}, what);
    const auto& response = result.response;
    if (ok(response.status)) return;
    if (response.status == 404 && error_of(response).code != "NoSuchBucket") return;  // already gone
    d.fail(response, "DELETE", what);
}

HttpResponse S3Client::Impl::list_page(const std::string& prefix, const std::string& token, int max_keys) const {
    sigv4::Pairs query{{"list-type", "2"}, {"prefix", prefix}, {"max-keys", std::to_string(max_keys)},
                       {"encoding-type", "url"}};
    if (!token.empty()) query.emplace_back("continuation-token", token);
    const std::string what = fmt::format("s3://{}/{}*", location.bucket, prefix);
    auto result = exchange("GET", path_style ? bucket_path() : "/", query, {}, {}, what);
    if (!ok(result.response.status)) fail(result.response, "LIST", what);
    return std::move(result.response);
}

std::vector<S3ObjectInfo> S3Client::list(std::string_view prefix) const {
    const auto& d = *impl_;
    const std::string full_prefix = d.location.prefix + std::string(prefix);
    std::vector<S3ObjectInfo> out;
    std::string token;
    while (true) {
        auto page = d.list_page(full_prefix, token, d.config.list_page_size);
        const bool url_encoded = detail::xml_text(page.body, "EncodingType").value_or("") == "url";
        for (auto block : detail::xml_elements(page.body, "Contents")) {
            S3ObjectInfo info;
            info.key = detail::xml_text(block, "Key").value_or("");
            if (url_encoded) info.key = detail::url_decode(info.key);
            if (info.key.compare(0, d.location.prefix.size(), d.location.prefix) != 0)
                throw_error(ErrorKind::Internal, "S3 listed key '{}' outside the requested prefix '{}'", info.key,
                            full_prefix);
            info.key.erase(0, d.location.prefix.size());
            info.size = to_int64(detail::xml_text(block, "Size").value_or(""), "object size");
            info.etag = unquoted(detail::xml_text(block, "ETag").value_or(""));
            info.modified_ms = time_ms(detail::xml_text(block, "LastModified").value_or(""));
            out.push_back(std::move(info));
        }
        if (detail::xml_text(page.body, "IsTruncated").value_or("false") != "true") break;
        std::string next = detail::xml_text(page.body, "NextContinuationToken").value_or("");
        if (next.empty() || next == token)
            throw_error(ErrorKind::Internal, "S3 at {} said the listing of {} goes on but gave no new continuation "
                        "token", d.config.endpoint, d.location.url());
        token = std::move(next);
    }
    return out;
}

void S3Client::check() const {
    impl_->list_page(impl_->location.prefix, {}, 1);
}

bool S3Client::holds_objects() const {
    return !detail::xml_elements(impl_->list_page(impl_->location.prefix, {}, 1).body, "Contents").empty();
}

} // namespace keel::storage

// core/include/keel/storage/s3_sigv4.hpp
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

//! AWS Signature Version 4 for S3 requests (header-based, single-chunk payload), on OpenSSL's
//! HMAC-SHA256 and SHA-256. Pure functions of their inputs, so tests pin them to AWS's published
//! examples (tests/cpp/s3_sigv4_test.cpp).
namespace keel::storage::sigv4 {

using Pairs = std::vector<std::pair<std::string, std::string>>;

//! sha256 of the empty payload (GET, HEAD, DELETE).
inline constexpr std::string_view kEmptyPayloadSha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

//! Percent-encodes all but the unreserved characters (A-Z a-z 0-9 - _ . ~) with upper-case hex, as
//! SigV4 asks; keep_slash leaves '/' as is (object keys in a path), otherwise it becomes %2F.
std::string uri_encode(std::string_view text, bool keep_slash);

//! The canonical query string of raw (not yet encoded) parameters: each name and value encoded,
//! sorted by name then value, joined with '&'. A valueless parameter is "name=".
std::string canonical_query(Pairs params);

//! "YYYYMMDDTHHMMSSZ" in UTC.
std::string amz_date(std::chrono::system_clock::time_point when);

struct Credentials {
    std::string access_key;
    std::string secret_key;
    std::string session_token;  //!< sent as x-amz-security-token when not empty
};

struct Request {
    std::string method;         //!< "GET", "PUT", ...
    std::string canonical_uri;  //!< the path as sent, already encoded (S3 does not encode it twice)
    Pairs query;                //!< raw parameters
    Pairs headers;              //!< every header to sign, host and x-amz-date included; names any case
    std::string payload_sha256; //!< hex sha256 of the body (also sent as x-amz-content-sha256)
};

struct Signature {
    std::string canonical_request;
    std::string string_to_sign;
    std::string signature;      //!< 64 hex characters
    std::string authorization;  //!< the Authorization header's value
};

//! Signs `request` at `amz_date` (which must match its x-amz-date header) for `region`.
Signature sign(const Request& request, const Credentials& credentials, std::string_view region,
               std::string_view amz_date, std::string_view service = "s3");

} // namespace keel::storage::sigv4

// core/storage/s3_sigv4.cpp: AWS Signature Version 4 (canonical request, string to sign, signing
// key, signature) with OpenSSL's HMAC-SHA256.
#include "keel/storage/s3_sigv4.hpp"

#include "keel/storage/artifact_store.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <fmt/format.h>

namespace keel::storage::sigv4 {

namespace {

std::string hmac_sha256(std::string_view key, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
         data.size(), out, &size);
    return std::string(reinterpret_cast<const char*>(out), size);
}

std::string hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

// Header values are signed trimmed, with inner runs of spaces folded to one.
std::string trimmed(std::string_view value) {
    std::string out;
    bool space = false;
    for (char c : value) {
        if (c == ' ' || c == '\t') {
            space = !out.empty();
            continue;
        }
        if (space) out += ' ';
        space = false;
        out += c;
    }
    return out;
}

} // namespace

std::string uri_encode(std::string_view text, bool keep_slash) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += digits[c >> 4];
            out += digits[c & 15];
        }
    }
    return out;
}

std::string canonical_query(Pairs params) {
    for (auto& [name, value] : params) {
        name = uri_encode(name, false);
        value = uri_encode(value, false);
    }
    std::sort(params.begin(), params.end());
    std::string out;
    for (const auto& [name, value] : params) {
        if (!out.empty()) out += '&';
        out += name;
        out += '=';
        out += value;
    }
    return out;
}

std::string amz_date(std::chrono::system_clock::time_point when) {
    std::time_t seconds = std::chrono::system_clock::to_time_t(when);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[20];
    std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &utc);
    return text;
}

Signature sign(const Request& request, const Credentials& credentials, std::string_view region,
               std::string_view amz_date, std::string_view service) {
    Pairs headers;
    for (const auto& [name, value] : request.headers) headers.emplace_back(lower(name), trimmed(value));
    std::sort(headers.begin(), headers.end());
    std::string canonical_headers, signed_headers;
    for (const auto& [name, value] : headers) {
        canonical_headers += fmt::format("{}:{}\n", name, value);
        if (!signed_headers.empty()) signed_headers += ';';
        signed_headers += name;
    }

    Signature out;
    out.canonical_request = fmt::format("{}\n{}\n{}\n{}\n{}\n{}", request.method, request.canonical_uri,
                                        canonical_query(request.query), canonical_headers, signed_headers,
                                        request.payload_sha256);
    const std::string_view day = amz_date.substr(0, 8);
    const std::string scope = fmt::format("{}/{}/{}/aws4_request", day, region, service);
    out.string_to_sign =
        fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", amz_date, scope, sha256_hex(out.canonical_request));
    std::string key = hmac_sha256("AWS4" + credentials.secret_key, day);
    key = hmac_sha256(key, region);
    key = hmac_sha256(key, service);
    key = hmac_sha256(key, "aws4_request");
    out.signature = hex(hmac_sha256(key, out.string_to_sign));
    out.authorization = fmt::format("AWS4-HMAC-SHA256 Credential={}/{},SignedHeaders={},Signature={}",
                                    credentials.access_key, scope, signed_headers, out.signature);
    return out;
}

} // namespace keel::storage::sigv4

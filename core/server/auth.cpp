// core/server/auth.cpp
#include "keel/server/auth.hpp"

#include "jwt_keys.hpp"
#include "keel/common/error.hpp"

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>

namespace keel::server {

namespace {

using nlohmann::json;

constexpr size_t kMaxTokenBytes = 8192;
constexpr int kMaxJsonDepth = 16;   // a JOSE header or claim set is flat; refuse deep nesting early
constexpr size_t kMinStaticTokenChars = 16;
constexpr size_t kMinHs256SecretBytes = 32;  // RFC 7518 3.2: a key as long as the hash output

using Digest = std::array<unsigned char, 32>;

[[noreturn]] void deny(std::string_view why) { throw_error(ErrorKind::PermissionDenied, "{}", why); }

Digest sha256(std::string_view data) {
    Digest out{};
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &length, EVP_sha256(), nullptr) != 1 || length != out.size())
        throw_error(ErrorKind::Internal, "OpenSSL could not compute SHA-256");
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

// The token of "Bearer <token>"; the messages never repeat the header, which may be a credential.
std::string_view bearer_token(std::string_view authorization) {
    if (authorization.empty()) deny("no bearer token: send Authorization: Bearer <token>");
    if (authorization.size() < 7 || !iequals(authorization.substr(0, 6), "bearer") || authorization[6] != ' ')
        deny("the Authorization header is not a bearer token: send Authorization: Bearer <token>");
    std::string_view token = authorization.substr(7);
    if (token.empty()) deny("the bearer token is empty: send Authorization: Bearer <token>");
    for (char c : token)
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
            deny("the bearer token holds spaces or control characters: send Authorization: Bearer <token> (one space)");
    if (token.size() > kMaxTokenBytes) deny("the bearer token is longer than 8 KiB");
    return token;
}

// The JSON object of a token part, or nullopt; nesting is bounded before nlohmann (which recurses).
std::optional<json> parse_object(std::string_view text) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > kMaxJsonDepth) return std::nullopt;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    try {
        json value = json::parse(text.begin(), text.end(), nullptr, false);
        if (value.is_discarded() || !value.is_object()) return std::nullopt;
        return value;
    } catch (const json::exception&) {
        return std::nullopt;
    }
}

// A NumericDate claim (seconds since the epoch), nullopt when absent; refused when not a number.
std::optional<double> time_claim(const json& claims, const char* name) {
    auto it = claims.find(name);
    if (it == claims.end()) return std::nullopt;
    if (!it->is_number() || !std::isfinite(it->get<double>()))
        throw_error(ErrorKind::PermissionDenied, "the token's {} claim is not a number (seconds since the epoch)", name);
    return it->get<double>();
}

// Whole seconds from `from` to `to` for messages, clamped: a claim may hold any JSON number.
int64_t seconds_between(double from, double to) { return static_cast<int64_t>(std::clamp(to - from, -1e15, 1e15)); }

// A claim that must be a string when present; "" when absent.
std::string string_claim(const json& claims, const std::string& name) {
    auto it = claims.find(name);
    if (it == claims.end()) return "";
    if (!it->is_string()) throw_error(ErrorKind::PermissionDenied, "the token's {} claim is not a string", name);
    return it->get<std::string>();
}

std::vector<std::string> roles_claim(const json& claims, const std::string& name) {
    std::vector<std::string> roles;
    auto it = claims.find(name);
    if (it == claims.end()) return roles;
    if (it->is_string()) {  // OAuth "scope" style: one space-separated string
        const auto& text = it->get_ref<const std::string&>();
        for (size_t start = 0; start < text.size();) {
            size_t end = text.find(' ', start);
            if (end == std::string::npos) end = text.size();
            if (end > start) roles.emplace_back(text.substr(start, end - start));
            start = end + 1;
        }
        return roles;
    }
    if (!it->is_array())
        throw_error(ErrorKind::PermissionDenied, "the token's {} claim is neither a list of strings nor a space-separated string", name);
    for (const auto& role : *it) {
        if (!role.is_string()) throw_error(ErrorKind::PermissionDenied, "the token's {} claim holds a value that is not a string", name);
        roles.push_back(role.get<std::string>());
    }
    return roles;
}

} // namespace

struct Authenticator::Keys {
    std::optional<Digest> static_digest;
    std::vector<std::string> secrets;
    std::vector<jwt::PublicKey> keys;
    bool jwks = false;
};

Authenticator::Authenticator(AuthOptions options) : options_(std::move(options)) {
    auto keys = std::make_unique<Keys>();
    if (!options_.static_token.empty()) {
        if (options_.static_token.size() < kMinStaticTokenChars)
            throw_error(ErrorKind::InvalidArgument, "the static token has {} characters; use at least {} (openssl rand -hex 32 makes one)",
                        options_.static_token.size(), kMinStaticTokenChars);
        keys->static_digest = sha256(options_.static_token);
    }
    for (size_t i = 0; i < options_.hs256_secrets.size(); ++i) {
        const auto& secret = options_.hs256_secrets[i];
        if (secret.size() < kMinHs256SecretBytes)  // never print the secret itself
            throw_error(ErrorKind::InvalidArgument, "HS256 secret {} (of {}) has {} bytes; an HS256 secret must be at least {} bytes",
                        i + 1, options_.hs256_secrets.size(), secret.size(), kMinHs256SecretBytes);
        keys->secrets.push_back(secret);
    }
    for (const auto& path : options_.public_key_files) keys->keys.push_back(jwt::load_pem_public_key(path));
    if (!options_.jwks_file.empty()) {
        for (auto& key : jwt::load_jwks(options_.jwks_file)) keys->keys.push_back(std::move(key));
        keys->jwks = true;
    }
    if (options_.leeway.count() < 0)
        throw_error(ErrorKind::InvalidArgument, "the JWT leeway is {} s; it must be 0 or more", options_.leeway.count());
    keys_ = std::move(keys);
}

Authenticator::~Authenticator() = default;

const AuthOptions& Authenticator::options() const { return options_; }

Principal Authenticator::authenticate(std::string_view authorization) const {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    return authenticate(authorization, now.count());
}

Principal Authenticator::authenticate(std::string_view authorization, int64_t now_seconds) const {
    if (!options_.enabled()) deny("this server has no authentication configured, so it accepts no bearer tokens");
    std::string_view token = bearer_token(authorization);

    if (keys_->static_digest) {
        // Digests of equal length, compared in constant time: neither content nor length leaks.
        Digest given = sha256(token);
        bool same = (CRYPTO_memcmp(given.data(), keys_->static_digest->data(), given.size()) == 0) &
                    (token.size() == options_.static_token.size());
        if (same) return Principal{"static-token", "", {}};
        if (!options_.jwt()) deny("the bearer token is not this server's static token");
    }

    // Compact JWS: header.payload.signature, each strict base64url.
    size_t first = token.find('.');
    size_t second = first == std::string_view::npos ? first : token.find('.', first + 1);
    if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos)
        deny("the bearer token is not a JWT: expected three base64url parts separated by dots");
    auto header_text = jwt::base64url_decode(token.substr(0, first));
    auto signature = jwt::base64url_decode(token.substr(second + 1));
    if (!header_text || !signature) deny("the JWT is malformed: its header or signature is not base64url without padding");
    auto header = parse_object(*header_text);
    if (!header) deny("the JWT header is not a JSON object");
    auto alg_it = header->find("alg");
    if (alg_it == header->end() || !alg_it->is_string()) deny("the JWT header has no \"alg\"");
    const auto& alg_name = alg_it->get_ref<const std::string&>();
    if (iequals(alg_name, "none")) deny("unsigned JWTs (alg \"none\") are refused: sign with HS256, RS256 or ES256");
    jwt::Alg alg;
    if (alg_name == "HS256") alg = jwt::Alg::HS256;
    else if (alg_name == "RS256") alg = jwt::Alg::RS256;
    else if (alg_name == "ES256") alg = jwt::Alg::ES256;
    else deny("the JWT's alg is not supported: sign with HS256, RS256 or ES256");
    if (header->contains("crit")) deny("the JWT header has \"crit\" extensions, which this server does not understand");
    std::string kid;
    if (auto it = header->find("kid"); it != header->end()) {
        if (!it->is_string()) deny("the JWT header's \"kid\" is not a string");
        kid = it->get<std::string>();
    }

    std::string_view signing_input = token.substr(0, second);
    bool verified = false;
    if (alg == jwt::Alg::HS256) {
        // Only the configured secrets: never a public key's bytes (no algorithm confusion).
        if (keys_->secrets.empty()) deny("HS256 tokens are not accepted: this server has no HS256 secret");
        for (const auto& secret : keys_->secrets) verified |= jwt::hs256_matches(secret, signing_input, *signature);
    } else {
        bool kid_known = false, any_key = false;
        for (const auto& key : keys_->keys) {
            if (key.from_jwks && !kid.empty()) {
                if (key.kid != kid) continue;
                kid_known = true;
            }
            if (key.alg != alg) continue;  // RS256 with RSA keys only, ES256 with P-256 keys only
            any_key = true;
            if (jwt::signature_verifies(key, signing_input, *signature)) {
                verified = true;
                break;
            }
        }
        if (!any_key) {
            if (keys_->jwks && !kid.empty() && !kid_known) deny("unknown key id: no key of this server's JWKS has the token's kid");
            if (kid_known) deny("the JWKS key with the token's kid is for another algorithm than the token's alg");
            deny(alg == jwt::Alg::RS256 ? "RS256 tokens are not accepted: this server has no RSA public key"
                                        : "ES256 tokens are not accepted: this server has no EC P-256 public key");
        }
    }
    if (!verified) deny("the JWT signature does not verify: wrong key or secret, or the token was altered");

    auto payload_text = jwt::base64url_decode(token.substr(first + 1, second - first - 1));
    if (!payload_text) deny("the JWT payload is not base64url without padding");
    auto claims = parse_object(*payload_text);
    if (!claims) deny("the JWT payload is not a JSON object");

    const double now = static_cast<double>(now_seconds);
    const double leeway = static_cast<double>(options_.leeway.count());
    auto exp = time_claim(*claims, "exp");
    if (!exp) deny("the JWT has no exp claim: tokens must expire");
    if (now > *exp + leeway)
        throw_error(ErrorKind::PermissionDenied, "the JWT expired {} s ago (exp, leeway {} s): get a new token",
                    seconds_between(*exp, now), options_.leeway.count());
    if (auto nbf = time_claim(*claims, "nbf"); nbf && now + leeway < *nbf)
        throw_error(ErrorKind::PermissionDenied, "the JWT is not valid yet: nbf is {} s ahead (leeway {} s)",
                    seconds_between(now, *nbf), options_.leeway.count());
    if (auto iat = time_claim(*claims, "iat"); iat && *iat > now + leeway)
        throw_error(ErrorKind::PermissionDenied, "the JWT was issued in the future: iat is {} s ahead (leeway {} s); check the clocks",
                    seconds_between(now, *iat), options_.leeway.count());
    if (!options_.issuer.empty()) {
        auto iss = claims->find("iss");
        if (iss == claims->end() || !iss->is_string() || iss->get_ref<const std::string&>() != options_.issuer)
            throw_error(ErrorKind::PermissionDenied, "the JWT's iss is not this server's issuer '{}'", options_.issuer);
    }
    if (!options_.audience.empty()) {
        bool found = false;
        if (auto aud = claims->find("aud"); aud != claims->end()) {
            if (aud->is_string()) found = aud->get_ref<const std::string&>() == options_.audience;
            else if (aud->is_array())
                for (const auto& entry : *aud) found |= entry.is_string() && entry.get_ref<const std::string&>() == options_.audience;
        }
        if (!found) throw_error(ErrorKind::PermissionDenied, "the JWT's aud does not name this server's audience '{}'", options_.audience);
    }
    return Principal{string_claim(*claims, "sub"), string_claim(*claims, options_.tenant_claim),
                     roles_claim(*claims, options_.roles_claim), true};
}

} // namespace keel::server

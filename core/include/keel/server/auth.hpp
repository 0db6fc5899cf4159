// core/include/keel/server/auth.hpp
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace keel::server {

//! Who is calling, as the token says: the tenant routing sees, the roles that decide PII reads.
struct Principal {
    std::string subject;              //!< "sub"; "static-token" in static-token mode
    std::string tenant;               //!< the tenant claim; "" when the token has none
    std::vector<std::string> roles;   //!< the roles claim
    //! Verified from a JWT: its tenant is trusted (it replaces any tenant field of a request body
    //! and decides which endpoints answer). False for a static token and anonymous callers.
    bool jwt = false;
};

//! How callers prove who they are. Static-token mode (a laptop) when only static_token is set; JWT
//! bearer tokens when any key is set (both may be on). With neither, every caller is anonymous,
//! which the server allows on loopback only.
struct AuthOptions {
    std::string static_token;                 //!< compared in constant time; at least 16 characters
    std::vector<std::string> hs256_secrets;   //!< shared secrets for HS256 (any one may match)
    std::vector<std::string> public_key_files;  //!< PEM public keys (RSA for RS256, P-256 for ES256)
    std::string jwks_file;                    //!< a JWKS document (RSA and EC P-256 keys, by "kid")
    std::string issuer;                       //!< required "iss" when set
    std::string audience;                     //!< required in "aud" (string or list) when set
    std::chrono::seconds leeway{30};          //!< clock skew allowed on exp / nbf / iat
    std::string tenant_claim = "tenant";
    std::string roles_claim = "roles";

    bool jwt() const { return !hs256_secrets.empty() || !public_key_files.empty() || !jwks_file.empty(); }
    bool enabled() const { return jwt() || !static_token.empty(); }
};

//! Verifies bearer tokens: signatures with OpenSSL (HS256 by HMAC and a constant-time compare,
//! RS256 and ES256 by EVP_DigestVerify), then exp / nbf / iss / aud with the configured leeway.
//! Thread-safe; keys are loaded once.
class Authenticator {
public:
    //! Loads the keys; InvalidArgument naming the file or option that is wrong.
    explicit Authenticator(AuthOptions options);
    ~Authenticator();

    //! `authorization` is the whole header value ("Bearer <token>"). Throws keel::Error
    //! PermissionDenied saying what is wrong (missing, malformed, bad signature, expired, wrong
    //! issuer or audience, unknown kid) without echoing the token; the server answers 401.
    Principal authenticate(std::string_view authorization, int64_t now_seconds) const;
    Principal authenticate(std::string_view authorization) const;  //!< at the current time

    const AuthOptions& options() const;

    struct Keys;

private:
    AuthOptions options_;
    std::unique_ptr<const Keys> keys_;
};

} // namespace keel::server

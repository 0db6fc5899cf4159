// core/server/jwt_keys.hpp
// Private to the server module: the OpenSSL side of JWT verification (base64url, the public keys
// from PEM files and JWKS documents, HS256 / RS256 / ES256 signature checks). auth.cpp holds the
// token and claim rules on top.
#pragma once

#include <openssl/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::server::jwt {

struct PkeyFree {
    void operator()(EVP_PKEY* key) const;
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

//! The signature algorithms a token may use; "none" and the rest are refused before any key is.
enum class Alg { HS256, RS256, ES256 };

//! A public key the server verifies with: RSA (RS256 only) or EC P-256 (ES256 only).
struct PublicKey {
    Alg alg;            //!< the one algorithm this key verifies; no algorithm confusion
    std::string kid;    //!< "" for PEM files and JWKS keys without one
    bool from_jwks = false;
    PkeyPtr pkey;
};

//! Strict base64url without padding (RFC 7515 section 2): nullopt on any other character, a
//! length of 4n+1, or non-zero unused bits, so every value has one encoding only.
std::optional<std::string> base64url_decode(std::string_view text);

//! The public key of a PEM file (-----BEGIN PUBLIC KEY-----); InvalidArgument naming the file
//! when it is unreadable, not a public key, or a type other than RSA (2048 bits and up) or P-256.
PublicKey load_pem_public_key(const std::string& path);

//! Every key of a JWKS document ({"keys": [...]}, RSA and EC P-256); InvalidArgument naming the
//! file and the key when it is unreadable, not JSON, without keys, or holds an unsupported key.
std::vector<PublicKey> load_jwks(const std::string& path);

//! HMAC-SHA256 of `signing_input` under `secret` equals `signature` (constant-time compare).
bool hs256_matches(std::string_view secret, std::string_view signing_input, std::string_view signature);

//! `signature` (PKCS#1 v1.5 for RS256; raw r||s, 64 bytes, for ES256) verifies `signing_input`.
bool signature_verifies(const PublicKey& key, std::string_view signing_input, std::string_view signature);

} // namespace keel::server::jwt

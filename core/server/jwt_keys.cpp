// core/server/jwt_keys.cpp
#include "jwt_keys.hpp"

#include "keel/common/error.hpp"

#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <array>
#include <fstream>
#include <iterator>
#include <sstream>

namespace keel::server::jwt {

void PkeyFree::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

namespace {

struct BioFree {
    void operator()(BIO* b) const { BIO_free(b); }
};
struct BnFree {
    void operator()(BIGNUM* b) const { BN_free(b); }
};
struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct ParamBldFree {
    void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
};
struct ParamFree {
    void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct EcdsaSigFree {
    void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;

constexpr size_t kMaxKeyFileBytes = 1 << 20;  // a key file or JWKS is a few KiB; refuse a mistake
constexpr int kMinRsaBits = 2048;

int base64url_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

std::string read_key_file(const std::string& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_error(ErrorKind::InvalidArgument, "cannot read the {} '{}': check the path and its permissions", what, path);
    std::string text;
    char buffer[4096];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        text.append(buffer, static_cast<size_t>(in.gcount()));
        if (text.size() > kMaxKeyFileBytes)
            throw_error(ErrorKind::InvalidArgument, "the {} '{}' is larger than 1 MiB: is it the right file?", what, path);
    }
    if (in.bad()) throw_error(ErrorKind::InvalidArgument, "cannot read the {} '{}'", what, path);
    return text;
}

// The one algorithm a key may verify, or InvalidArgument naming `where` (a file, a JWKS key).
Alg key_alg(EVP_PKEY* key, const std::string& where) {
    if (EVP_PKEY_is_a(key, "RSA")) {
        int bits = EVP_PKEY_get_bits(key);
        if (bits < kMinRsaBits)
            throw_error(ErrorKind::InvalidArgument, "{}: an RSA key of {} bits is too weak; use at least {} bits", where, bits, kMinRsaBits);
        return Alg::RS256;
    }
    if (EVP_PKEY_is_a(key, "EC")) {
        char group[64] = {0};
        size_t length = 0;
        if (EVP_PKEY_get_group_name(key, group, sizeof group, &length) != 1)
            throw_error(ErrorKind::InvalidArgument, "{}: an EC key without a named curve is not supported; use P-256 (ES256)", where);
        std::string_view name(group, length);
        if (name != "prime256v1" && name != "P-256")
            throw_error(ErrorKind::InvalidArgument, "{}: unsupported key type: EC curve '{}'; only P-256 (ES256) is supported", where, name);
        return Alg::ES256;
    }
    throw_error(ErrorKind::InvalidArgument, "{}: unsupported key type '{}'; use an RSA (RS256) or EC P-256 (ES256) public key", where,
                EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "unknown");
}

// A base64url member of a JWK as bytes, or InvalidArgument naming the key.
std::string jwk_bytes(const nlohmann::json& jwk, const char* member, const std::string& where) {
    auto it = jwk.find(member);
    if (it == jwk.end() || !it->is_string())
        throw_error(ErrorKind::InvalidArgument, "{}: member \"{}\" is missing or not a string", where, member);
    auto bytes = base64url_decode(it->get_ref<const std::string&>());
    if (!bytes || bytes->empty())
        throw_error(ErrorKind::InvalidArgument, "{}: member \"{}\" is not base64url (without padding)", where, member);
    return *bytes;
}

PkeyPtr pkey_from_params(const char* type, OSSL_PARAM_BLD* builder, const std::string& where) {
    std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(builder));
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* raw = nullptr;
    bool built = params && ctx && EVP_PKEY_fromdata_init(ctx.get()) == 1 &&
                 EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) == 1 && raw != nullptr;
    ERR_clear_error();
    if (!built) {
        EVP_PKEY_free(raw);
        throw_error(ErrorKind::InvalidArgument, "{}: OpenSSL refused the {} public key (a point not on the curve, a bad modulus?)", where, type);
    }
    PkeyPtr key(raw);
    // fromdata takes an EC point as given; check it lies on the curve before trusting it.
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
    bool valid = check && EVP_PKEY_public_check(check.get()) == 1;
    ERR_clear_error();
    if (!valid)
        throw_error(ErrorKind::InvalidArgument, "{}: the {} public key fails OpenSSL's check (a point not on the curve?)", where, type);
    return key;
}

PkeyPtr rsa_from_jwk(const nlohmann::json& jwk, const std::string& where) {
    std::string n = jwk_bytes(jwk, "n", where), e = jwk_bytes(jwk, "e", where);
    BnPtr bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()), nullptr));
    BnPtr bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()), nullptr));
    std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> builder(OSSL_PARAM_BLD_new());
    if (!bn_n || !bn_e || !builder || OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(builder.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1)
        throw_error(ErrorKind::Internal, "{}: OpenSSL could not hold the RSA key (out of memory?)", where);
    return pkey_from_params("RSA", builder.get(), where);
}

PkeyPtr ec_from_jwk(const nlohmann::json& jwk, const std::string& where) {
    auto crv = jwk.find("crv");
    if (crv == jwk.end() || !crv->is_string() || crv->get_ref<const std::string&>() != "P-256")
        throw_error(ErrorKind::InvalidArgument, "{}: unsupported key type: an EC key must have \"crv\": \"P-256\" (ES256)", where);
    std::string x = jwk_bytes(jwk, "x", where), y = jwk_bytes(jwk, "y", where);
    if (x.size() != 32 || y.size() != 32)
        throw_error(ErrorKind::InvalidArgument, "{}: a P-256 key's \"x\" and \"y\" must be 32 bytes each", where);
    std::string point = "\x04" + x + y;  // uncompressed SEC1 point
    std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> builder(OSSL_PARAM_BLD_new());
    if (!builder || OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1)
        throw_error(ErrorKind::Internal, "{}: OpenSSL could not hold the EC key (out of memory?)", where);
    return pkey_from_params("EC", builder.get(), where);
}

} // namespace

std::optional<std::string> base64url_decode(std::string_view text) {
    if (text.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(text.size() * 3 / 4);
    uint32_t bits = 0;
    int count = 0;
    for (char c : text) {
        int v = base64url_value(c);
        if (v < 0) return std::nullopt;
        bits = (bits << 6) | static_cast<uint32_t>(v);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out.push_back(static_cast<char>((bits >> count) & 0xFF));
        }
    }
    if ((bits & ((1u << count) - 1)) != 0) return std::nullopt;  // non-zero unused bits
    return out;
}

PublicKey load_pem_public_key(const std::string& path) {
    std::string text = read_key_file(path, "public key file");
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    if (!bio) throw_error(ErrorKind::Internal, "OpenSSL could not read '{}' (out of memory?)", path);
    EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
    ERR_clear_error();
    if (raw == nullptr)
        throw_error(ErrorKind::InvalidArgument,
                    "the public key file '{}' is not a PEM public key: expected \"-----BEGIN PUBLIC KEY-----\" (openssl pkey -pubout writes one)",
                    path);
    PublicKey key{Alg::RS256, "", false, PkeyPtr(raw)};
    key.alg = key_alg(key.pkey.get(), "the public key file '" + path + "'");
    return key;
}

std::vector<PublicKey> load_jwks(const std::string& path) {
    std::string text = read_key_file(path, "JWKS file");
    auto doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        throw_error(ErrorKind::InvalidArgument, "the JWKS file '{}' is not a JSON object ({{\"keys\": [...]}})", path);
    auto keys = doc.find("keys");
    if (keys == doc.end() || !keys->is_array() || keys->empty())
        throw_error(ErrorKind::InvalidArgument, "the JWKS file '{}' has no keys: expected {{\"keys\": [{{\"kty\": ...}}, ...]}}", path);
    std::vector<PublicKey> out;
    for (size_t i = 0; i < keys->size(); ++i) {
        const auto& jwk = (*keys)[i];
        std::string where = "the JWKS file '" + path + "', key " + std::to_string(i);
        if (!jwk.is_object()) throw_error(ErrorKind::InvalidArgument, "{} is not a JSON object", where);
        auto use = jwk.find("use");
        if (use != jwk.end() && (!use->is_string() || use->get_ref<const std::string&>() != "sig")) continue;  // not for signatures
        std::string kid;
        if (auto it = jwk.find("kid"); it != jwk.end()) {
            if (!it->is_string()) throw_error(ErrorKind::InvalidArgument, "{}: \"kid\" must be a string", where);
            kid = it->get<std::string>();
            where += " (kid '" + kid + "')";
        }
        auto kty = jwk.find("kty");
        std::string type = kty != jwk.end() && kty->is_string() ? kty->get<std::string>() : "";
        PublicKey key{Alg::RS256, kid, true, nullptr};
        if (type == "RSA") key.pkey = rsa_from_jwk(jwk, where);
        else if (type == "EC") key.pkey = ec_from_jwk(jwk, where);
        else throw_error(ErrorKind::InvalidArgument, "{}: unsupported key type (\"kty\" '{}'); use RSA or EC P-256", where, type);
        key.alg = key_alg(key.pkey.get(), where);
        if (auto alg = jwk.find("alg"); alg != jwk.end()) {
            const char* expected = key.alg == Alg::RS256 ? "RS256" : "ES256";
            if (!alg->is_string() || alg->get_ref<const std::string&>() != expected)
                throw_error(ErrorKind::InvalidArgument, "{}: \"alg\" must be \"{}\" for this key (RS256 with RSA, ES256 with P-256)", where, expected);
        }
        out.push_back(std::move(key));
    }
    if (out.empty()) throw_error(ErrorKind::InvalidArgument, "the JWKS file '{}' has no keys for signatures (all have \"use\" other than \"sig\")", path);
    return out;
}

bool hs256_matches(std::string_view secret, std::string_view signing_input, std::string_view signature) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int length = 0;
    if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac.data(), &length) == nullptr)
        throw_error(ErrorKind::Internal, "OpenSSL could not compute HMAC-SHA256");
    if (signature.size() != length) return false;
    return CRYPTO_memcmp(mac.data(), signature.data(), length) == 0;
}

bool signature_verifies(const PublicKey& key, std::string_view signing_input, std::string_view signature) {
    std::string der;
    std::string_view sig = signature;
    if (key.alg == Alg::ES256) {
        // JWS carries r||s (32 bytes each); OpenSSL verifies a DER ECDSA-Sig-Value.
        if (signature.size() != 64) return false;
        std::unique_ptr<ECDSA_SIG, EcdsaSigFree> ecdsa(ECDSA_SIG_new());
        BnPtr r(BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()), 32, nullptr));
        BnPtr s(BN_bin2bn(reinterpret_cast<const unsigned char*>(signature.data()) + 32, 32, nullptr));
        if (!ecdsa || !r || !s || ECDSA_SIG_set0(ecdsa.get(), r.get(), s.get()) != 1)
            throw_error(ErrorKind::Internal, "OpenSSL could not hold an ECDSA signature (out of memory?)");
        r.release();  // owned by ecdsa now
        s.release();
        unsigned char* out = nullptr;
        int length = i2d_ECDSA_SIG(ecdsa.get(), &out);
        if (length <= 0) throw_error(ErrorKind::Internal, "OpenSSL could not encode an ECDSA signature");
        der.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(length));
        OPENSSL_free(out);
        sig = der;
    }
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.pkey.get()) != 1) {
        ERR_clear_error();
        throw_error(ErrorKind::Internal, "OpenSSL could not start a signature check");
    }
    int ok = EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                              reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
    // A refused signature leaves errors on this thread's OpenSSL queue, where a TLS call on the
    // same thread would read them as its own.
    if (ok != 1) ERR_clear_error();
    return ok == 1;
}

} // namespace keel::server::jwt

// tests/cpp/server_auth_test.cpp
// The bearer-token check of `keel serve`: keys are made here with OpenSSL, tokens signed here, and
// the Authenticator must accept exactly the well-signed, current ones.
#include "keel/common/error.hpp"
#include "keel/server/auth.hpp"

#include "support/expect_error.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

namespace fs = std::filesystem;
using keel::ErrorKind;
using keel::server::AuthOptions;
using keel::server::Authenticator;
using keel::server::Principal;
using keel::testing::error_message;
using nlohmann::json;

namespace {

constexpr int64_t kNow = 1'800'000'000;
const std::string kSecret = "0123456789abcdef0123456789abcdef-secret";
const std::string kStatic = "static-token-0123456789abcdef";

struct PkeyFree {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string b64url(std::string_view bytes) {
    static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    uint32_t bits = 0;
    int count = 0;
    for (unsigned char c : bytes) {
        bits = (bits << 8) | c;
        count += 8;
        while (count >= 6) {
            count -= 6;
            out.push_back(alphabet[(bits >> count) & 63]);
        }
    }
    if (count > 0) out.push_back(alphabet[(bits << (6 - count)) & 63]);
    return out;
}

std::string hs256(const std::string& secret, std::string_view input) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &length);
    return std::string(reinterpret_cast<char*>(mac), length);
}

std::string digest_sign(EVP_PKEY* key, std::string_view input) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key), 1);
    size_t length = 0;
    auto data = reinterpret_cast<const unsigned char*>(input.data());
    EXPECT_EQ(EVP_DigestSign(ctx.get(), nullptr, &length, data, input.size()), 1);
    std::string sig(length, '\0');
    EXPECT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &length, data, input.size()), 1);
    sig.resize(length);
    return sig;
}

// ES256 in JWS is r||s, 32 bytes each; OpenSSL signs DER.
std::string es256(EVP_PKEY* key, std::string_view input) {
    std::string der = digest_sign(key, input);
    auto p = reinterpret_cast<const unsigned char*>(der.data());
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())),
                                                              ECDSA_SIG_free);
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    return raw;
}

std::string pem_public(EVP_PKEY* key) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PUBKEY(bio.get(), key);
    char* data = nullptr;
    long length = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(length));
}

std::string bn_param(EVP_PKEY* key, const char* name, int pad = 0) {
    BIGNUM* bn = nullptr;
    EXPECT_EQ(EVP_PKEY_get_bn_param(key, name, &bn), 1);
    std::string out(pad ? pad : BN_num_bytes(bn), '\0');
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
    BN_free(bn);
    return out;
}

void write_file(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// header.payload.signature with the signature made by `sign` over header.payload.
template <typename Sign>
std::string make_token(const json& header, const json& claims, Sign sign) {
    std::string input = b64url(header.dump()) + "." + b64url(claims.dump());
    return input + "." + b64url(sign(input));
}

json claims(json extra = json::object()) {
    json c = {{"sub", "alice"}, {"exp", kNow + 600}, {"iat", kNow - 10}};
    for (auto& [k, v] : extra.items()) c[k] = v;
    return c;
}

std::string bearer(const std::string& token) { return "Bearer " + token; }

struct ServerAuth : ::testing::Test {
    static Pkey rsa, ec, ec384;
    static void SetUpTestSuite() {
        rsa.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
        ec.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
        ec384.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
        ASSERT_TRUE(rsa && ec && ec384);
    }
    static void TearDownTestSuite() { rsa.reset(), ec.reset(), ec384.reset(); }

    keel::testing::TempDir dir;
    fs::path rsa_pem = dir.path / "rsa.pem", ec_pem = dir.path / "ec.pem", jwks = dir.path / "jwks.json";
    ServerAuth() {
        write_file(rsa_pem, pem_public(rsa.get()));
        write_file(ec_pem, pem_public(ec.get()));
        json keys = json::array();
        keys.push_back({{"kty", "RSA"}, {"kid", "rsa-1"}, {"alg", "RS256"}, {"use", "sig"},
                        {"n", b64url(bn_param(rsa.get(), OSSL_PKEY_PARAM_RSA_N))},
                        {"e", b64url(bn_param(rsa.get(), OSSL_PKEY_PARAM_RSA_E))}});
        keys.push_back({{"kty", "EC"}, {"kid", "ec-1"}, {"crv", "P-256"},
                        {"x", b64url(bn_param(ec.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32))},
                        {"y", b64url(bn_param(ec.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32))}});
        write_file(jwks, json{{"keys", keys}}.dump());
    }

    static AuthOptions hs_options() {
        AuthOptions o;
        o.hs256_secrets = {kSecret};
        return o;
    }
    static std::string hs_token(const json& c, const std::string& secret = kSecret) {
        return make_token({{"alg", "HS256"}, {"typ", "JWT"}}, c, [&](std::string_view in) { return hs256(secret, in); });
    }
    static std::string rs_token(const json& c, json header = {{"alg", "RS256"}}) {
        return make_token(header, c, [](std::string_view in) { return digest_sign(rsa.get(), in); });
    }
    static std::string es_token(const json& c, json header = {{"alg", "ES256"}}) {
        return make_token(header, c, [](std::string_view in) { return es256(ec.get(), in); });
    }
    static std::string denied(const Authenticator& auth, const std::string& header, int64_t now = kNow) {
        return error_message(ErrorKind::PermissionDenied, [&] { auth.authenticate(header, now); });
    }
};
Pkey ServerAuth::rsa, ServerAuth::ec, ServerAuth::ec384;

// --- accepted tokens -------------------------------------------------------------------------------

TEST_F(ServerAuth, Hs256TokenGivesSubjectTenantAndRoles) {
    Authenticator auth(hs_options());
    Principal p = auth.authenticate(bearer(hs_token(claims({{"tenant", "acme"}, {"roles", {"pii", "admin"}}}))), kNow);
    EXPECT_EQ(p.subject, "alice");
    EXPECT_EQ(p.tenant, "acme");
    EXPECT_TRUE(p.jwt) << "a verified JWT: its tenant is trusted";
    EXPECT_EQ(p.roles, (std::vector<std::string>{"pii", "admin"}));
}

TEST_F(ServerAuth, RolesMayBeOneSpaceSeparatedStringAndClaimNamesAreConfigurable) {
    AuthOptions o = hs_options();
    o.tenant_claim = "org";
    o.roles_claim = "scope";
    Authenticator auth(o);
    Principal p = auth.authenticate(bearer(hs_token(claims({{"org", "acme"}, {"scope", "read  pii write"}}))), kNow);
    EXPECT_EQ(p.tenant, "acme");
    EXPECT_EQ(p.roles, (std::vector<std::string>{"read", "pii", "write"}));
}

TEST_F(ServerAuth, AbsentTenantAndRolesAreEmptyAndTheSchemeIsCaseInsensitive) {
    Authenticator auth(hs_options());
    Principal p = auth.authenticate("bEaReR " + hs_token(claims()), kNow);
    EXPECT_EQ(p.subject, "alice");
    EXPECT_EQ(p.tenant, "");
    EXPECT_TRUE(p.roles.empty());
}

TEST_F(ServerAuth, AnyConfiguredHs256SecretMayMatch) {
    AuthOptions o = hs_options();
    o.hs256_secrets.insert(o.hs256_secrets.begin(), std::string(40, 'z'));
    Authenticator auth(o);
    EXPECT_EQ(auth.authenticate(bearer(hs_token(claims())), kNow).subject, "alice");
    EXPECT_EQ(auth.authenticate(bearer(hs_token(claims(), std::string(40, 'z'))), kNow).subject, "alice");
}

TEST_F(ServerAuth, Rs256AndEs256TokensVerifyWithPemPublicKeys) {
    AuthOptions o;
    o.public_key_files = {rsa_pem.string(), ec_pem.string()};
    Authenticator auth(o);
    EXPECT_EQ(auth.authenticate(bearer(rs_token(claims({{"tenant", "t1"}}))), kNow).tenant, "t1");
    Principal p = auth.authenticate(bearer(es_token(claims({{"roles", {"reader"}}}))), kNow);
    EXPECT_EQ(p.subject, "alice");
    EXPECT_EQ(p.roles, std::vector<std::string>{"reader"});
}

TEST_F(ServerAuth, JwksKeysVerifyByKidAndAnUnknownKidIsRefused) {
    AuthOptions o;
    o.jwks_file = jwks.string();
    Authenticator auth(o);
    EXPECT_EQ(auth.authenticate(bearer(rs_token(claims(), {{"alg", "RS256"}, {"kid", "rsa-1"}})), kNow).subject, "alice");
    EXPECT_EQ(auth.authenticate(bearer(es_token(claims(), {{"alg", "ES256"}, {"kid", "ec-1"}})), kNow).subject, "alice");
    EXPECT_EQ(auth.authenticate(bearer(es_token(claims())), kNow).subject, "alice");  // no kid: all keys tried
    EXPECT_NE(denied(auth, bearer(rs_token(claims(), {{"alg", "RS256"}, {"kid", "rsa-2"}}))).find("unknown key id"),
              std::string::npos);
    // The kid names the EC key, the token says RS256: the RSA key is not tried under another kid.
    EXPECT_NE(denied(auth, bearer(rs_token(claims(), {{"alg", "RS256"}, {"kid", "ec-1"}}))).find("another algorithm"),
              std::string::npos);
}

// --- signatures ------------------------------------------------------------------------------------

TEST_F(ServerAuth, AWrongSecretIsRefused) {
    Authenticator auth(hs_options());
    EXPECT_NE(denied(auth, bearer(hs_token(claims(), std::string(40, 'x')))).find("signature does not verify"),
              std::string::npos);
}

TEST_F(ServerAuth, ATamperedPayloadIsRefused) {
    AuthOptions o = hs_options();
    o.public_key_files = {rsa_pem.string(), ec_pem.string()};
    Authenticator auth(o);
    for (const std::string& token : {hs_token(claims()), rs_token(claims()), es_token(claims())}) {
        size_t a = token.find('.'), b = token.rfind('.');
        std::string forged = token.substr(0, a + 1) + b64url(claims({{"roles", {"admin"}}}).dump()) + token.substr(b);
        EXPECT_NE(denied(auth, bearer(forged)).find("signature does not verify"), std::string::npos);
    }
}

TEST_F(ServerAuth, AnEs256SignatureOfAnotherLengthIsRefused) {
    AuthOptions o;
    o.public_key_files = {ec_pem.string()};
    Authenticator auth(o);
    // The DER signature OpenSSL makes is not the JWS form.
    std::string token = make_token({{"alg", "ES256"}}, claims(), [](std::string_view in) { return digest_sign(ec.get(), in); });
    EXPECT_NE(denied(auth, bearer(token)).find("signature does not verify"), std::string::npos);
}

TEST_F(ServerAuth, AlgNoneIsRefused) {
    Authenticator auth(hs_options());
    for (const char* alg : {"none", "None", "NONE"}) {
        std::string token = b64url(json{{"alg", alg}}.dump()) + "." + b64url(claims().dump()) + ".";
        EXPECT_NE(denied(auth, bearer(token)).find("alg \"none\""), std::string::npos);
    }
    std::string hs512 = make_token({{"alg", "HS512"}}, claims(), [](std::string_view in) { return hs256(kSecret, in); });
    EXPECT_NE(denied(auth, bearer(hs512)).find("not supported"), std::string::npos);
}

TEST_F(ServerAuth, AnHs256TokenSignedWithThePublicKeyPemIsRefused) {
    std::string pem = pem_public(rsa.get());
    std::string confused = make_token({{"alg", "HS256"}}, claims(), [&](std::string_view in) { return hs256(pem, in); });
    AuthOptions rsa_only;
    rsa_only.public_key_files = {rsa_pem.string()};
    EXPECT_NE(denied(Authenticator(rsa_only), bearer(confused)).find("no HS256 secret"), std::string::npos);
    AuthOptions both = hs_options();
    both.public_key_files = {rsa_pem.string()};
    EXPECT_NE(denied(Authenticator(both), bearer(confused)).find("signature does not verify"), std::string::npos);
}

TEST_F(ServerAuth, AnAlgNeverVerifiesWithAKeyOfAnotherKind) {
    AuthOptions o;
    o.public_key_files = {rsa_pem.string()};
    Authenticator auth(o);
    EXPECT_NE(denied(auth, bearer(es_token(claims()))).find("no EC P-256 public key"), std::string::npos);
    // An RSA signature labelled ES256 is not checked against the RSA key either.
    std::string relabelled = rs_token(claims(), {{"alg", "ES256"}});
    EXPECT_NE(denied(auth, bearer(relabelled)).find("no EC P-256 public key"), std::string::npos);
}

// --- time, issuer, audience ------------------------------------------------------------------------

TEST_F(ServerAuth, AnExpiredTokenIsRefusedNamingExpButLeewayIsAllowed) {
    AuthOptions o = hs_options();
    o.leeway = std::chrono::seconds(30);
    Authenticator auth(o);
    std::string token = bearer(hs_token(claims({{"exp", kNow - 20}})));
    EXPECT_EQ(auth.authenticate(token, kNow).subject, "alice");
    EXPECT_NE(denied(auth, token, kNow + 11).find("expired"), std::string::npos);
    EXPECT_NE(denied(auth, token, kNow + 11).find("exp"), std::string::npos);
}

TEST_F(ServerAuth, NotBeforeAndIssuedInTheFutureAreRefusedBeyondLeeway) {
    Authenticator auth(hs_options());
    EXPECT_EQ(auth.authenticate(bearer(hs_token(claims({{"nbf", kNow + 25}}))), kNow).subject, "alice");
    EXPECT_NE(denied(auth, bearer(hs_token(claims({{"nbf", kNow + 31}})))).find("not valid yet"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(hs_token(claims({{"iat", kNow + 3600}})))).find("issued in the future"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(hs_token(claims({{"nbf", "soon"}})))).find("nbf claim is not a number"), std::string::npos);
}

TEST_F(ServerAuth, MissingOrNonNumericExpIsRefused) {
    Authenticator auth(hs_options());
    json c = claims();
    c.erase("exp");
    EXPECT_NE(denied(auth, bearer(hs_token(c))).find("no exp claim"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(hs_token(claims({{"exp", "tomorrow"}})))).find("exp claim is not a number"),
              std::string::npos);
}

TEST_F(ServerAuth, IssuerMustMatchWhenConfigured) {
    AuthOptions o = hs_options();
    o.issuer = "https://id.example.com";
    Authenticator auth(o);
    EXPECT_EQ(auth.authenticate(bearer(hs_token(claims({{"iss", "https://id.example.com"}}))), kNow).subject, "alice");
    EXPECT_NE(denied(auth, bearer(hs_token(claims({{"iss", "https://evil.example.com"}})))).find("issuer"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(hs_token(claims()))).find("issuer"), std::string::npos);
}

TEST_F(ServerAuth, AudienceMayBeAStringOrAListAndMustNameTheServer) {
    AuthOptions o = hs_options();
    o.audience = "keel";
    Authenticator auth(o);
    EXPECT_EQ(auth.authenticate(bearer(hs_token(claims({{"aud", "keel"}}))), kNow).subject, "alice");
    EXPECT_EQ(auth.authenticate(bearer(hs_token(claims({{"aud", {"other", "keel"}}}))), kNow).subject, "alice");
    for (const json& aud : {json("other"), json({"a", "b"}), json(7)})
        EXPECT_NE(denied(auth, bearer(hs_token(claims({{"aud", aud}})))).find("audience 'keel'"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(hs_token(claims()))).find("audience"), std::string::npos);
}

TEST_F(ServerAuth, ATenantOrRolesOfTheWrongTypeAreRefused) {
    Authenticator auth(hs_options());
    EXPECT_NE(denied(auth, bearer(hs_token(claims({{"tenant", 42}})))).find("tenant claim is not a string"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(hs_token(claims({{"roles", {"a", 1}}})))).find("roles claim"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(hs_token(claims({{"roles", {{"a", 1}}}})))).find("roles claim"), std::string::npos);
}

// --- malformed tokens and headers ------------------------------------------------------------------

TEST_F(ServerAuth, MalformedTokensAreRefused) {
    Authenticator auth(hs_options());
    std::string good = hs_token(claims());
    size_t a = good.find('.'), b = good.rfind('.');
    EXPECT_NE(denied(auth, bearer(good.substr(0, b))).find("three base64url parts"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(good + ".x")).find("three base64url parts"), std::string::npos);
    EXPECT_NE(denied(auth, bearer("not-a-jwt")).find("three base64url parts"), std::string::npos);
    EXPECT_NE(denied(auth, bearer("*" + good.substr(1))).find("base64url"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(good.substr(0, a) + "=" + good.substr(a))).find("base64url"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(good + "=")).find("base64url"), std::string::npos);
    std::string not_json = b64url("{\"alg\":") + good.substr(a);
    EXPECT_NE(denied(auth, bearer(not_json)).find("header is not a JSON object"), std::string::npos);
    // A well-signed payload that is not an object, and one nested too deeply.
    auto signed_payload = [](const std::string& payload) {
        std::string input = b64url(R"({"alg":"HS256"})") + "." + b64url(payload);
        return input + "." + b64url(hs256(kSecret, input));
    };
    EXPECT_NE(denied(auth, bearer(signed_payload("[1,2]"))).find("payload is not a JSON object"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(signed_payload("{\"exp\":"))).find("payload is not a JSON object"), std::string::npos);
    std::string deep = "{\"exp\":1,\"x\":" + std::string(100, '[') + std::string(100, ']') + "}";
    EXPECT_NE(denied(auth, bearer(signed_payload(deep))).find("payload is not a JSON object"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(std::string(9000, 'a') + "." + good)).find("8 KiB"), std::string::npos);
}

TEST_F(ServerAuth, AnythingButBearerSpaceTokenIsRefusedSayingWhatToSend) {
    Authenticator auth(hs_options());
    std::string token = hs_token(claims());
    std::vector<std::string> headers = {"", token, "Basic " + token, "Bearer", "Bearer ", "Bearer  " + token,
                                        "Bearer\t" + token, "Token " + token, "Bearer " + token + " extra"};
    for (const std::string& header : headers) {
        std::string message = denied(auth, header);
        EXPECT_NE(message.find("Authorization: Bearer <token>"), std::string::npos) << message;
    }
}

// --- static token and anonymous mode ---------------------------------------------------------------

TEST_F(ServerAuth, TheStaticTokenIsAcceptedAndOthersRefused) {
    AuthOptions o;
    o.static_token = kStatic;
    Authenticator auth(o);
    Principal p = auth.authenticate(bearer(kStatic), kNow);
    EXPECT_EQ(p.subject, "static-token");
    EXPECT_FALSE(p.jwt) << "a static token names no tenant the server trusts";
    EXPECT_EQ(p.tenant, "");
    EXPECT_TRUE(p.roles.empty());
    std::string same_length = kStatic;
    same_length.back() = 'X';
    EXPECT_NE(denied(auth, bearer(same_length)).find("not this server's static token"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(kStatic + "0")).find("not this server's static token"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(kStatic.substr(0, 5))).find("not this server's static token"), std::string::npos);
    EXPECT_NE(denied(auth, bearer(hs_token(claims()))).find("not this server's static token"), std::string::npos);
}

TEST_F(ServerAuth, WithStaticTokenAndJwtBothAreAccepted) {
    AuthOptions o = hs_options();
    o.static_token = kStatic;
    Authenticator auth(o);
    EXPECT_EQ(auth.authenticate(bearer(kStatic), kNow).subject, "static-token");
    EXPECT_EQ(auth.authenticate(bearer(hs_token(claims())), kNow).subject, "alice");
    EXPECT_NE(denied(auth, bearer(kStatic + "x")).find("not a JWT"), std::string::npos);
}

TEST_F(ServerAuth, AnonymousModeRefusesEveryToken) {
    Authenticator auth(AuthOptions{});
    EXPECT_FALSE(auth.options().enabled());
    EXPECT_NE(denied(auth, bearer(hs_token(claims()))).find("no authentication configured"), std::string::npos);
}

TEST_F(ServerAuth, TheCurrentTimeOverloadRefusesALongExpiredToken) {
    Authenticator auth(hs_options());
    EXPECT_NE(denied(auth, bearer(hs_token(claims({{"exp", 1000}})))).find("expired"), std::string::npos);
    json fresh = claims();
    fresh["exp"] = 4'000'000'000;
    fresh["iat"] = 1'000'000'000;
    EXPECT_EQ(auth.authenticate(bearer(hs_token(fresh))).subject, "alice");
}

TEST_F(ServerAuth, NoMessageRepeatsTheToken) {
    AuthOptions o = hs_options();
    o.static_token = kStatic;
    o.issuer = "iss";
    o.audience = "aud";
    o.jwks_file = jwks.string();
    Authenticator auth(o);
    std::vector<std::string> tokens = {hs_token(claims()), hs_token(claims(), std::string(40, 'q')),
                                       rs_token(claims(), {{"alg", "RS256"}, {"kid", "nope"}}), kStatic + "zz",
                                       hs_token(claims({{"iss", "iss"}, {"exp", 5}})), "garbage.token.here"};
    for (const auto& token : tokens) {
        for (const std::string& header : {bearer(token), "Basic " + token, token}) {
            std::string message = denied(auth, header);
            EXPECT_EQ(message.find(token), std::string::npos) << message;
            EXPECT_EQ(message.find(token.substr(token.rfind('.') + 1)), std::string::npos) << message;
        }
    }
}

TEST_F(ServerAuth, OneAuthenticatorVerifiesFromManyThreads) {
    AuthOptions o = hs_options();
    o.jwks_file = jwks.string();
    Authenticator auth(o);
    std::vector<std::string> tokens = {bearer(hs_token(claims())), bearer(rs_token(claims(), {{"alg", "RS256"}, {"kid", "rsa-1"}})),
                                       bearer(es_token(claims(), {{"alg", "ES256"}, {"kid", "ec-1"}}))};
    std::atomic<int> accepted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 30; ++i)
                if (auth.authenticate(tokens[i % tokens.size()], kNow).subject == "alice") ++accepted;
        });
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(accepted.load(), 120);
}

TEST_F(ServerAuth, JwksKeysForEncryptionAreSkippedAndAMismatchedAlgIsRefused) {
    json rsa_jwk = json::parse(std::ifstream(jwks))["keys"][0];
    rsa_jwk["use"] = "enc";
    write_file(dir.path / "enc.json", json{{"keys", {rsa_jwk}}}.dump());
    AuthOptions o;
    o.jwks_file = (dir.path / "enc.json").string();
    std::string m = error_message(ErrorKind::InvalidArgument, [&] { Authenticator a(o); });
    EXPECT_NE(m.find("no keys for signatures"), std::string::npos) << m;
    rsa_jwk["use"] = "sig";
    rsa_jwk["alg"] = "ES256";
    write_file(dir.path / "alg.json", json{{"keys", {rsa_jwk}}}.dump());
    o.jwks_file = (dir.path / "alg.json").string();
    m = error_message(ErrorKind::InvalidArgument, [&] { Authenticator a(o); });
    EXPECT_NE(m.find("\"alg\" must be \"RS256\""), std::string::npos) << m;
    EXPECT_NE(m.find("rsa-1"), std::string::npos) << m;
}

// --- configuration errors --------------------------------------------------------------------------

TEST_F(ServerAuth, ConstructorErrorsNameTheFileAndWhatIsWrong) {
    auto invalid = [](AuthOptions o) { return error_message(ErrorKind::InvalidArgument, [&] { Authenticator a(o); }); };
    AuthOptions o;
    o.public_key_files = {(dir.path / "missing.pem").string()};
    std::string m = invalid(o);
    EXPECT_NE(m.find("missing.pem"), std::string::npos) << m;
    EXPECT_NE(m.find("cannot read"), std::string::npos) << m;

    write_file(dir.path / "junk.pem", "hello");
    o.public_key_files = {(dir.path / "junk.pem").string()};
    m = invalid(o);
    EXPECT_NE(m.find("junk.pem"), std::string::npos) << m;
    EXPECT_NE(m.find("not a PEM public key"), std::string::npos) << m;

    write_file(dir.path / "p384.pem", pem_public(ec384.get()));
    o.public_key_files = {(dir.path / "p384.pem").string()};
    m = invalid(o);
    EXPECT_NE(m.find("p384.pem"), std::string::npos) << m;
    EXPECT_NE(m.find("unsupported key type"), std::string::npos) << m;

    AuthOptions j;
    write_file(dir.path / "empty.json", R"({"keys": []})");
    j.jwks_file = (dir.path / "empty.json").string();
    m = invalid(j);
    EXPECT_NE(m.find("empty.json"), std::string::npos) << m;
    EXPECT_NE(m.find("no keys"), std::string::npos) << m;

    write_file(dir.path / "bad-ec.json", R"({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]})");
    j.jwks_file = (dir.path / "bad-ec.json").string();
    m = invalid(j);
    EXPECT_NE(m.find("bad-ec.json"), std::string::npos) << m;
    EXPECT_NE(m.find("P-256"), std::string::npos) << m;

    write_file(dir.path / "off-curve.json",
               json{{"keys", {{{"kty", "EC"}, {"crv", "P-256"}, {"x", b64url(std::string(32, '\1'))},
                               {"y", b64url(std::string(32, '\2'))}}}}}.dump());
    j.jwks_file = (dir.path / "off-curve.json").string();
    EXPECT_NE(invalid(j).find("off-curve.json"), std::string::npos);

    AuthOptions s;
    s.hs256_secrets = {"short-secret"};
    m = invalid(s);
    EXPECT_NE(m.find("at least 32 bytes"), std::string::npos) << m;
    EXPECT_EQ(m.find("short-secret"), std::string::npos) << m;

    AuthOptions t;
    t.static_token = "tiny";
    EXPECT_NE(invalid(t).find("at least 16"), std::string::npos);
}

} // namespace

// libFuzzer target: the bearer-token check of `keel serve` (core/server/auth.cpp, jwt_keys.cpp) on
// arbitrary Authorization values. Anything but a keel::Error (PermissionDenied) escaping, or a
// sanitizer report, is a bug. The input is tried as sent, and once more re-signed with the server's
// secret, so the claim checks behind the signature are fuzzed too.
#include "keel/common/error.hpp"
#include "keel/server/auth.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

const std::string kSecret = "fuzz-secret-0123456789abcdef-0123456789";
constexpr int64_t kNow = 1'800'000'000;

const keel::server::Authenticator& authenticator() {
    static const keel::server::Authenticator auth([] {
        keel::server::AuthOptions options;
        options.hs256_secrets = {kSecret};
        options.issuer = "https://id.example.com";
        return options;
    }());
    return auth;
}

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

void check(const std::string& header) {
    try {
        auto principal = authenticator().authenticate(header, kNow);
        // Only a signed token with an exp gets through; its subject came from it.
        if (principal.subject.size() > header.size()) __builtin_trap();
    } catch (const keel::Error& e) {
        if (e.kind() != keel::ErrorKind::PermissionDenied) __builtin_trap();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    check("Bearer " + std::string(text));

    // header.payload from the input, with the signature the server's secret gives it.
    size_t last = text.rfind('.');
    if (last == std::string_view::npos) return 0;
    std::string_view signing_input = text.substr(0, last);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
         reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac, &length);
    check("Bearer " + std::string(signing_input) + "." + b64url(std::string_view(reinterpret_cast<char*>(mac), length)));
    return 0;
}

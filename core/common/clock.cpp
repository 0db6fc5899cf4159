// core/common/clock.cpp
#include "keel/common/clock.hpp"

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <random>
#include <pwd.h>
#include <unistd.h>

namespace keel {

int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string utc_text(int64_t ms) {
    std::time_t secs = std::time_t(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

std::string random_hex_id() {
    // One generator per thread, seeded from the OS; ids need uniqueness, not secrecy.
    thread_local std::mt19937_64 gen{std::random_device{}() ^ (uint64_t(getpid()) << 32)};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id(32, '0');
    for (int half = 0; half < 2; ++half) {
        uint64_t bits = gen();
        for (int i = 0; i < 16; ++i, bits >>= 4) id[half * 16 + i] = kHex[bits & 0xF];
    }
    return id;
}

std::string current_user() {
    for (const char* var : {"KEEL_USER", "USER", "LOGNAME"}) {
        if (const char* v = std::getenv(var); v && *v) return v;
    }
    // Services and containers often run without $USER: ask the password database.
    struct passwd entry {};
    struct passwd* found = nullptr;
    char buf[1024];
    if (getpwuid_r(getuid(), &entry, buf, sizeof buf, &found) == 0 && found && found->pw_name[0])
        return found->pw_name;
    return "uid-" + std::to_string(getuid());
}

} // namespace keel

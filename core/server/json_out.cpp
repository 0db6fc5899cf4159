// core/server/json_out.cpp
#include "json_out.hpp"

#include <fmt/format.h>

#include <cmath>

namespace keel::server {

namespace {

// Length of the valid UTF-8 sequence at s[i], 0 when it is not one.
size_t utf8_length(std::string_view s, size_t i) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    const auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (!cont(i + 1) || !cont(i + 2)) return 0;
        if (c == 0xE0 && b(i + 1) < 0xA0) return 0;  // overlong
        if (c == 0xED && b(i + 1) >= 0xA0) return 0; // a surrogate
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
        if (c == 0xF0 && b(i + 1) < 0x90) return 0;
        if (c == 0xF4 && b(i + 1) >= 0x90) return 0;
        return 4;
    }
    return 0;
}

} // namespace

void append_json_string(std::string& out, std::string_view text) {
    out.push_back('"');
    for (size_t i = 0; i < text.size();) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(char(c));
            ++i;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default: fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
            }
            ++i;
        } else if (c < 0x80) {
            out.push_back(char(c));
            ++i;
        } else if (size_t n = utf8_length(text, i)) {
            out.append(text.substr(i, n));
            i += n;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    out.push_back('"');
}

void append_json_number(std::string& out, double value) {
    if (!std::isfinite(value)) {
        out += "null";
        return;
    }
    fmt::format_to(std::back_inserter(out), "{}", value);  // shortest round-trip form
}

void append_json_number(std::string& out, int64_t value) { fmt::format_to(std::back_inserter(out), "{}", value); }

std::string error_body(std::string_view kind, std::string_view message) {
    std::string out = "{\"error\":";
    append_json_string(out, kind);
    out += ",\"message\":";
    append_json_string(out, message);
    out.push_back('}');
    return out;
}

std::string error_body(const Error& error) { return error_body(error_kind_name(error.kind()), error.what()); }

int http_status(ErrorKind kind) {
    switch (kind) {
    case ErrorKind::NotFound: return 404;
    case ErrorKind::InvalidArgument: return 400;
    case ErrorKind::PermissionDenied: return 403;
    case ErrorKind::AlreadyExists:
    case ErrorKind::Conflict: return 409;
    case ErrorKind::PluginError: return 502;
    case ErrorKind::Corrupt:
    case ErrorKind::Internal: return 500;
    case ErrorKind::Unavailable: return 503;
    }
    return 500;
}

} // namespace keel::server

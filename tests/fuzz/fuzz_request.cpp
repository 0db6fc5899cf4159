// libFuzzer target: the predict body parser of `keel serve` (core/server/request_json.cpp) on
// arbitrary bytes. Anything but a keel::Error (InvalidArgument) escaping, or a sanitizer report, is a
// bug. An accepted body must be whole: requests within the limits, names unique and every string
// well-formed UTF-8 in memory the result owns or the body holds, and writing it back as JSON must
// parse to the same requests.
#include "keel/common/error.hpp"
#include "keel/server/request_json.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

using keel::plugins::Field;

// Unicode table 3-7, written apart from the parser's own check.
bool valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        uint32_t cp;
        size_t len;
        if (c < 0x80) cp = c, len = 1;
        else if ((c & 0xE0) == 0xC0) cp = c & 0x1F, len = 2;
        else if ((c & 0xF0) == 0xE0) cp = c & 0x0F, len = 3;
        else if ((c & 0xF8) == 0xF0) cp = c & 0x07, len = 4;
        else return false;
        if (s.size() - i < len) return false;
        for (size_t k = 1; k < len; ++k) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            if ((b & 0xC0) != 0x80) return false;
            cp = cp << 6 | (b & 0x3F);
        }
        static constexpr uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

bool inside(std::string_view part, std::string_view whole) {
    return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

bool owned(std::string_view s, std::string_view body, const keel::server::ParsedRequests& r) {
    if (s.empty() || inside(s, body)) return true;
    for (const auto& t : r.text)
        if (inside(s, t)) return true;
    return false;
}

void check_string(std::string_view s, std::string_view body, const keel::server::ParsedRequests& r) {
    if (!valid_utf8(s) || !owned(s, body, r)) __builtin_trap();
}

void write_string(std::string& out, std::string_view s) {
    out += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') (out += '\\') += ch;
        else if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += ch;
    }
    out += '"';
}

std::string write_back(const keel::server::ParsedRequests& r) {
    std::string out = r.batch ? "[" : "";
    for (size_t i = 0; i < r.rows.size(); ++i) {
        if (i) out += ", ";
        out += '{';
        for (size_t j = 0; j < r.rows[i].size(); ++j) {
            const Field& f = r.rows[i][j];
            if (j) out += ", ";
            write_string(out, f.name);
            out += ": ";
            if (std::holds_alternative<std::monostate>(f.value)) out += "null";
            else if (auto* b = std::get_if<bool>(&f.value)) out += *b ? "true" : "false";
            else if (auto* n = std::get_if<int64_t>(&f.value)) out += fmt::format("{}", *n);
            else if (auto* s = std::get_if<std::string_view>(&f.value)) write_string(out, *s);
            else {
                std::string d = fmt::format("{}", std::get<double>(f.value));  // shortest round trip
                if (d.find_first_of(".e") == std::string::npos) d += ".0";    // stays a double
                out += d;
            }
        }
        out += '}';
    }
    if (r.batch) out += ']';
    return out;
}

bool same(const keel::server::ParsedRequests& a, const keel::server::ParsedRequests& b) {
    if (a.batch != b.batch || a.rows.size() != b.rows.size()) return false;
    for (size_t i = 0; i < a.rows.size(); ++i) {
        if (a.rows[i].size() != b.rows[i].size()) return false;
        for (size_t j = 0; j < a.rows[i].size(); ++j) {
            const Field& x = a.rows[i][j];
            const Field& y = b.rows[i][j];
            if (x.name != y.name || x.value.index() != y.value.index()) return false;
            if (auto* d = std::get_if<double>(&x.value)) {
                const double e = std::get<double>(y.value);
                if (!(*d == e && std::signbit(*d) == std::signbit(e))) return false;
            } else if (x.value != y.value) {
                return false;
            }
        }
    }
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    // Small limits, so the fuzzer reaches them; above 24 fields the duplicate check sorts.
    keel::server::RequestLimits limits;
    limits.max_rows = 40;
    limits.max_fields = 30;
    keel::server::ParsedRequests r;
    try {
        r = keel::server::parse_predict_body(body, limits);
    } catch (const keel::Error& e) {
        if (e.kind() != keel::ErrorKind::InvalidArgument) __builtin_trap();
        return 0;
    }
    if (r.rows.empty() || r.rows.size() > limits.max_rows || (!r.batch && r.rows.size() != 1)) __builtin_trap();
    for (const auto& row : r.rows) {
        if (row.size() > limits.max_fields) __builtin_trap();
        for (size_t j = 0; j < row.size(); ++j) {
            check_string(row[j].name, body, r);
            for (size_t k = 0; k < j; ++k)
                if (row[k].name == row[j].name) __builtin_trap();
            if (auto* s = std::get_if<std::string_view>(&row[j].value)) check_string(*s, body, r);
            if (auto* d = std::get_if<double>(&row[j].value); d && !std::isfinite(*d)) __builtin_trap();
        }
    }
    const std::string again = write_back(r);
    try {
        if (!same(r, keel::server::parse_predict_body(again, limits))) __builtin_trap();
    } catch (const keel::Error&) {
        __builtin_trap();  // what was accepted, written back, must be accepted again
    }
    return 0;
}

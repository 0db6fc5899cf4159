// core/server/request_json.cpp: the predict body parser, the hot path of
// POST /v1/endpoints/{name}/predict. One forward pass over the bytes, no recursion (a request is
// flat: nesting is refused at its first byte) and no allocation per field unless a string needs
// unescaping. Every refusal is an InvalidArgument naming the request, the field and the byte offset.
#include "keel/server/request_json.hpp"

#include "keel/common/error.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <system_error>

namespace keel::server {
namespace {

constexpr std::string_view kScalarKinds = "request fields are numbers, strings, booleans or null";

bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

//! A name as shown in a message: at most 64 bytes (cut on a UTF-8 boundary), control characters,
//! quotes and backslashes escaped so the message stays one readable line.
std::string shown(std::string_view name) {
    std::string out;
    size_t n = name.size();
    bool cut = false;
    if (n > 64) {
        n = 64;
        while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) --n;
        cut = true;
    }
    for (size_t i = 0; i < n; ++i) {
        const auto c = static_cast<unsigned char>(name[i]);
        if (c < 0x20 || c == 0x7F)
            out += fmt::format("\\u{:04x}", c);
        else if (c == '\'' || c == '\\')
            (out += '\\') += char(c);
        else
            out += char(c);
    }
    if (cut) out += "...";
    return out;
}

//! A byte as shown in a message: 'x' when printable, else its hex value.
std::string shown_byte(unsigned char c) {
    if (c >= 0x20 && c < 0x7F) return fmt::format("'{}'", char(c));
    return fmt::format("byte 0x{:02x}", c);
}

class Parser {
public:
    Parser(std::string_view body, const RequestLimits& limits, ParsedRequests& out)
        : begin_(body.data()), p_(body.data()), end_(body.data() + body.size()), limits_(limits),
          out_(out) {}

    void run() {
        skip_ws();
        if (p_ == end_) fail(p_, "an empty body: send a request object {...} or a list of them [{...}, ...]");
        if (*p_ == '{') {
            out_.rows.reserve(1);
            parse_request();
        } else if (*p_ == '[') {
            out_.batch = true;
            ++p_;
            skip_ws();
            if (p_ != end_ && *p_ == ']') fail(p_, "an empty batch: send at least one request");
            for (;;) {
                skip_ws();
                index_ = out_.rows.size();
                if (out_.rows.size() >= limits_.max_rows)
                    fail(p_, fmt::format("a batch of more than {} requests: the server's limit max_rows is {}; "
                                         "split the batch", limits_.max_rows, limits_.max_rows));
                if (p_ == end_) fail(p_, "the body ends where a request object '{' was expected");
                if (*p_ != '{')
                    fail(p_, fmt::format("expected a request object '{{', found {}{}", shown_byte(*p_),
                                         *p_ == '[' ? ": a batch is one list of request objects, not nested lists" : ""));
                parse_request();
                skip_ws();
                if (p_ == end_) fail(p_, "the body ends inside the list of requests: expected ',' or ']'");
                if (*p_ == ',') {
                    ++p_;
                    continue;
                }
                if (*p_ == ']') {
                    ++p_;
                    break;
                }
                fail(p_, fmt::format("expected ',' or ']' after a request, found {}", shown_byte(*p_)));
            }
            index_ = npos;
        } else {
            fail(p_, fmt::format("expected a request object '{{' or a list of them '[', found {}", shown_byte(*p_)));
        }
        skip_ws();
        if (p_ != end_)
            fail(p_, fmt::format("unexpected {} after the body: send one JSON value", shown_byte(*p_)));
    }

private:
    static constexpr size_t npos = size_t(-1);
    static constexpr size_t kLinearDuplicateCheck = 24;

    [[noreturn]] __attribute__((noinline, cold)) void fail(const char* at, std::string_view what) const {
        const auto offset = size_t(at - begin_);
        if (index_ != npos) throw_error(ErrorKind::InvalidArgument, "request {}: {} (byte {} of the body)", index_, what, offset);
        throw_error(ErrorKind::InvalidArgument, "{} (byte {} of the body)", what, offset);
    }

    [[noreturn]] __attribute__((noinline, cold)) void fail_field(const char* at, std::string_view name,
                                                                 std::string_view what) const {
        fail(at, fmt::format("field '{}' {}", shown(name), what));
    }

    void skip_ws() {
        while (p_ != end_ && is_ws(static_cast<unsigned char>(*p_))) ++p_;
    }

    // At '{': one request, flat.
    void parse_request() {
        const char* request_at = p_++;
        auto& row = out_.rows.emplace_back();
        row.reserve(std::min(limits_.max_fields, row_hint_));  // a batch's rows are usually alike
        skip_ws();
        if (p_ != end_ && *p_ == '}') {
            ++p_;
            row_hint_ = 0;
            return;
        }
        for (;;) {
            skip_ws();
            if (p_ == end_) fail(p_, "the body ends where a field name was expected");
            if (*p_ != '"') fail(p_, fmt::format("expected a field name in double quotes, found {}", shown_byte(*p_)));
            if (row.size() >= limits_.max_fields)
                fail(p_, fmt::format("a request with more than {} fields: the server's limit max_fields is {}",
                                     limits_.max_fields, limits_.max_fields));
            const char* name_at = p_;
            const std::string_view name = parse_string(nullptr);
            skip_ws();
            if (p_ == end_ || *p_ != ':')
                fail_field(p_, name, p_ == end_ ? "ends the body: expected ':' and a value"
                                                : fmt::format("is followed by {}: expected ':'", shown_byte(*p_)));
            ++p_;
            skip_ws();
            if (row.size() < kLinearDuplicateCheck)  // narrow requests: checked here, no allocation
                for (const auto& f : row)
                    if (f.name == name) duplicate(name, name_at);
            row.push_back(plugins::Field{name, {}});
            parse_value(row.back());
            skip_ws();
            if (p_ == end_) fail_field(p_, name, "ends the body: expected ',' or '}' after it");
            if (*p_ == ',') {
                ++p_;
                continue;
            }
            if (*p_ == '}') {
                ++p_;
                break;
            }
            fail_field(p_, name, fmt::format("is followed by {}: expected ',' or '}}'", shown_byte(*p_)));
        }
        check_duplicates(row, request_at);
        row_hint_ = row.size();
    }

    // Wide requests (more than kLinearDuplicateCheck fields): one sort instead of n^2 comparisons.
    void check_duplicates(const std::vector<plugins::Field>& row, const char* request_at) {
        const size_t n = row.size();
        if (n <= kLinearDuplicateCheck) return;
        order_.resize(n);
        for (size_t i = 0; i < n; ++i) order_[i] = uint32_t(i);
        std::sort(order_.begin(), order_.end(), [&](uint32_t a, uint32_t b) {
            return row[a].name != row[b].name ? row[a].name < row[b].name : a < b;
        });
        for (size_t k = 1; k < n; ++k) {
            const auto& name = row[order_[k]].name;
            if (row[order_[k - 1]].name != name) continue;
            // A name without escapes points into the body, just past its opening quote.
            const bool in_body = name.data() > begin_ && name.data() <= end_;
            duplicate(name, in_body ? name.data() - 1 : request_at);
        }
    }

    [[noreturn]] void duplicate(std::string_view name, const char* at) const {
        fail_field(at, name, "appears twice in one request: send each field once");
    }

    void parse_value(plugins::Field& field) {
        if (p_ == end_) fail_field(p_, field.name, "has no value: the body ends after ':'");
        switch (*p_) {
        case '"': field.value = parse_string(&field.name); return;
        case 't': literal("true", field.name); field.value = true; return;
        case 'f': literal("false", field.name); field.value = false; return;
        case 'n': literal("null", field.name); field.value = std::monostate{}; return;
        case '{': fail_field(p_, field.name, fmt::format("holds an object: {}", kScalarKinds));
        case '[': fail_field(p_, field.name, fmt::format("holds a list: {}", kScalarKinds));
        default:
            if (*p_ == '-' || is_digit(static_cast<unsigned char>(*p_))) return parse_number(field);
            fail_field(p_, field.name,
                       fmt::format("holds {}: expected a number, a string, true, false or null", shown_byte(*p_)));
        }
    }

    void literal(std::string_view word, std::string_view name) {
        if (size_t(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word)
            fail_field(p_, name, "holds an unknown word: expected a number, a string, true, false or null "
                                 "(JSON literals are lower case)");
        p_ += word.size();
    }

    // RFC 8259 numbers: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. Integers go to int64, the
    // rest to double (from_chars: correctly rounded, locale-free).
    void parse_number(plugins::Field& field) {
        const char* start = p_;
        const bool negative = *p_ == '-';
        if (negative) ++p_;
        if (p_ == end_ || !is_digit(static_cast<unsigned char>(*p_)))
            fail_field(start, field.name, "holds a '-' without digits: expected a number");
        const char* int_begin = p_;
        uint64_t magnitude = 0;
        bool overflow = false;
        if (*p_ == '0') {
            ++p_;
            if (p_ != end_ && is_digit(static_cast<unsigned char>(*p_)))
                fail_field(start, field.name, "holds a number with a leading zero: JSON numbers have none");
        } else {
            while (p_ != end_ && is_digit(static_cast<unsigned char>(*p_))) {
                const unsigned d = unsigned(*p_ - '0');
                if (magnitude > (std::numeric_limits<uint64_t>::max() - d) / 10) overflow = true;
                magnitude = magnitude * 10 + d;
                ++p_;
            }
        }
        const char* int_end = p_;
        bool integral = true;
        if (p_ != end_ && *p_ == '.') {
            integral = false;
            ++p_;
            if (p_ == end_ || !is_digit(static_cast<unsigned char>(*p_)))
                fail_field(p_, field.name, "holds a number with no digit after '.'");
            while (p_ != end_ && is_digit(static_cast<unsigned char>(*p_))) ++p_;
        }
        const char* frac_end = p_;
        if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
            integral = false;
            ++p_;
            if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
            if (p_ == end_ || !is_digit(static_cast<unsigned char>(*p_)))
                fail_field(p_, field.name, "holds a number with no digit in its exponent");
            while (p_ != end_ && is_digit(static_cast<unsigned char>(*p_))) ++p_;
        }
        if (integral) {
            constexpr uint64_t max_pos = uint64_t(std::numeric_limits<int64_t>::max());
            if (overflow || magnitude > max_pos + (negative ? 1 : 0))
                fail_field(start, field.name,
                           fmt::format("holds {}, which is beyond the 64-bit integer range "
                                       "[-9223372036854775808, 9223372036854775807]: send it as a string",
                                       std::string_view(start, size_t(p_ - start))));
            field.value = negative ? int64_t(0 - magnitude) : int64_t(magnitude);
            return;
        }
        double value = 0;
        const auto result = std::from_chars(start, p_, value, std::chars_format::general);
        if (result.ptr != p_ && result.ec == std::errc())
            fail_field(start, field.name, "holds a number that could not be read");  // not reached: grammar checked above
        if (result.ec == std::errc::result_out_of_range) {
            if (decimal_magnitude(int_begin, int_end, frac_end) > 0)
                fail_field(start, field.name,
                           fmt::format("holds {}, which is beyond the range of a 64-bit float (about 1.8e308)",
                                       std::string_view(start, size_t(std::min<ptrdiff_t>(p_ - start, 40)))));
            value = negative ? -0.0 : 0.0;  // below the smallest subnormal: rounds to zero, as JSON readers do
        } else if (result.ec != std::errc() || !std::isfinite(value)) {
            fail_field(start, field.name, "holds a number beyond the range of a 64-bit float (about 1.8e308)");
        }
        field.value = value;
    }

    // For a number from_chars found out of range: > 0 when it is huge, <= 0 when it is tiny. The
    // power of ten of its first significant digit plus one, clamped (exponents can be any length).
    int64_t decimal_magnitude(const char* int_begin, const char* int_end, const char* frac_end) const {
        int64_t mag = 0;
        if (*int_begin != '0') {
            mag = int64_t(int_end - int_begin);
        } else {
            const char* q = int_end + (int_end != frac_end ? 1 : 0);  // past '.'
            int64_t zeros = 0;
            while (q != frac_end && *q == '0') ++q, ++zeros;
            mag = -zeros;
        }
        const char* e = frac_end;
        if (e != p_) {  // exponent
            ++e;
            bool neg = false;
            if (*e == '+' || *e == '-') neg = *e++ == '-';
            int64_t exp = 0;
            for (; e != p_; ++e) exp = std::min<int64_t>(exp * 10 + (*e - '0'), 1'000'000'000);
            mag += neg ? -exp : exp;
        }
        return mag;
    }

    // At '"': a name (field == nullptr) or the value of the field named *field. Returns a view
    // into the body when the string has no escape, else into a new entry of out_.text.
    std::string_view parse_string(const std::string_view* field) {
        const char* open = p_;
        const char* start = ++p_;
        for (;;) {
            if (p_ == end_) string_fail(open, field, "is not closed: the body ends inside it");
            const auto c = static_cast<unsigned char>(*p_);
            if (c == '"') {
                std::string_view s(start, size_t(p_ - start));
                ++p_;
                return s;
            }
            if (c == '\\') return parse_escaped(open, start, field);
            if (c < 0x20) control(field, c);
            if (c < 0x80)
                ++p_;
            else
                p_ = utf8(p_, field);
        }
    }

    // The slow path: the string from `start` holds escapes; unescape into a new text entry.
    std::string_view parse_escaped(const char* open, const char* start, const std::string_view* field) {
        std::string s(start, size_t(p_ - start));
        s.reserve(s.size() + 16);
        for (;;) {
            if (p_ == end_) string_fail(open, field, "is not closed: the body ends inside it");
            const auto c = static_cast<unsigned char>(*p_);
            if (c == '"') {
                ++p_;
                break;
            }
            if (c == '\\') {
                const char* at = p_;
                if (++p_ == end_) string_fail(open, field, "is not closed: the body ends inside an escape");
                switch (*p_++) {
                case '"': s += '"'; break;
                case '\\': s += '\\'; break;
                case '/': s += '/'; break;
                case 'b': s += '\b'; break;
                case 'f': s += '\f'; break;
                case 'n': s += '\n'; break;
                case 'r': s += '\r'; break;
                case 't': s += '\t'; break;
                case 'u': append_code_point(s, at, field); break;
                default:
                    string_fail(at, field, fmt::format("holds an unknown escape after '\\' ({}): JSON escapes are "
                                                       "\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX",
                                                       shown_byte(static_cast<unsigned char>(p_[-1]))));
                }
                continue;
            }
            if (c < 0x20) control(field, c);
            const char* from = p_;
            p_ = c < 0x80 ? p_ + 1 : utf8(p_, field);
            s.append(from, size_t(p_ - from));
        }
        out_.text.push_back(std::move(s));
        return out_.text.back();
    }

    // After "\u" (the escape starts at `at`): one code point, or a surrogate pair, as UTF-8.
    void append_code_point(std::string& s, const char* at, const std::string_view* field) {
        uint32_t cp = hex4(at, field);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u')
                string_fail(at, field, fmt::format("holds a lone surrogate \\u{:04X}: a high surrogate must be "
                                                   "followed by a \\uDC00-\\uDFFF escape", cp));
            const char* low_at = p_;
            p_ += 2;
            const uint32_t low = hex4(low_at, field);
            if (low < 0xDC00 || low > 0xDFFF)
                string_fail(low_at, field, fmt::format("holds a lone surrogate \\u{:04X}: it is followed by "
                                                       "\\u{:04X}, not a low surrogate \\uDC00-\\uDFFF", cp, low));
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            string_fail(at, field, fmt::format("holds a lone surrogate \\u{:04X}: a low surrogate must follow a "
                                               "high one \\uD800-\\uDBFF", cp));
        }
        if (cp < 0x80) {
            s += char(cp);
        } else if (cp < 0x800) {
            s += char(0xC0 | (cp >> 6));
            s += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            s += char(0xE0 | (cp >> 12));
            s += char(0x80 | ((cp >> 6) & 0x3F));
            s += char(0x80 | (cp & 0x3F));
        } else {
            s += char(0xF0 | (cp >> 18));
            s += char(0x80 | ((cp >> 12) & 0x3F));
            s += char(0x80 | ((cp >> 6) & 0x3F));
            s += char(0x80 | (cp & 0x3F));
        }
    }

    uint32_t hex4(const char* at, const std::string_view* field) {
        if (end_ - p_ < 4) string_fail(at, field, "holds a \\u escape cut short: expected four hex digits");
        uint32_t v = 0;
        for (int i = 0; i < 4; ++i) {
            const auto c = static_cast<unsigned char>(p_[i]);
            uint32_t d;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else string_fail(at, field, "holds a \\u escape without four hex digits");
            v = v << 4 | d;
        }
        p_ += 4;
        return v;
    }

    // At a byte >= 0x80: one well-formed UTF-8 sequence (Unicode table 3-7: no overlongs, no
    // encoded surrogates, nothing above U+10FFFF). Returns the byte after it.
    const char* utf8(const char* q, const std::string_view* field) const {
        const auto b0 = static_cast<unsigned char>(q[0]);
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
        if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
        else if (b0 == 0xE0) len = 3, lo = 0xA0;
        else if (b0 >= 0xE1 && b0 <= 0xEC) len = 3;
        else if (b0 == 0xED) len = 3, hi = 0x9F;
        else if (b0 >= 0xEE && b0 <= 0xEF) len = 3;
        else if (b0 == 0xF0) len = 4, lo = 0x90;
        else if (b0 >= 0xF1 && b0 <= 0xF3) len = 4;
        else if (b0 == 0xF4) len = 4, hi = 0x8F;
        else bad_utf8(q, field);
        if (size_t(end_ - q) < len) bad_utf8(q, field);
        const auto b1 = static_cast<unsigned char>(q[1]);
        if (b1 < lo || b1 > hi) bad_utf8(q, field);
        for (size_t i = 2; i < len; ++i)
            if ((static_cast<unsigned char>(q[i]) & 0xC0) != 0x80) bad_utf8(q, field);
        return q + len;
    }

    [[noreturn]] void bad_utf8(const char* q, const std::string_view* field) const {
        string_fail(q, field, fmt::format("holds invalid UTF-8 (at {}): send UTF-8 text; overlong forms, "
                                          "encoded surrogates and code points above U+10FFFF are refused",
                                          shown_byte(static_cast<unsigned char>(*q))));
    }

    [[noreturn]] void control(const std::string_view* field, unsigned char c) const {
        string_fail(p_, field, fmt::format("holds a raw control character 0x{:02x}: escape it (\\n, \\t, "
                                           "\\u00XX)", c));
    }

    [[noreturn]] __attribute__((noinline, cold)) void string_fail(const char* at, const std::string_view* field,
                                                                  std::string_view what) const {
        if (field) fail_field(at, *field, fmt::format("(a string) {}", what));
        fail(at, fmt::format("a field name {}", what));
    }

    const char* begin_;
    const char* p_;
    const char* end_;
    const RequestLimits& limits_;
    ParsedRequests& out_;
    size_t index_ = npos;          // the request being parsed in a batch, for messages
    size_t row_hint_ = 8;          // fields in the previous request (8 for the first): the next one's reserve
    std::vector<uint32_t> order_;  // scratch for the duplicate check of wide requests
};

} // namespace

ParsedRequests parse_predict_body(std::string_view body, const RequestLimits& limits) {
    ParsedRequests out;
    Parser(body, limits, out).run();
    return out;
}

} // namespace keel::server

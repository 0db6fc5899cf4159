// core/common/time_columns.cpp
#include "keel/common/time_columns.hpp"

#include "keel/common/error.hpp"

#include <chrono>
#include <optional>
#include <string>

namespace keel {

namespace {

constexpr int64_t kMsPerMinute = 60'000;
constexpr int64_t kMsPerDay = 86'400'000;

// Reads exactly `n` digits at `i` as a number.
bool digits(std::string_view s, size_t& i, size_t n, int& out) {
    if (i + n > s.size()) return false;
    int v = 0;
    for (size_t k = 0; k < n; ++k) {
        const char c = s[i + k];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    out = v;
    i += n;
    return true;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

enum class Parsed { Ok, NoZone, SubMillisecond, Malformed };

// One ISO 8601 value (see the header); `ms` is set when Ok.
Parsed parse_iso(std::string_view s, int64_t& ms) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    size_t i = 0;
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (!digits(s, i, 4, year) || i >= s.size() || s[i++] != '-' || !digits(s, i, 2, month) || i >= s.size() ||
        s[i++] != '-' || !digits(s, i, 2, day))
        return Parsed::Malformed;
    const std::chrono::year_month_day date{std::chrono::year{year}, std::chrono::month{unsigned(month)},
                                           std::chrono::day{unsigned(day)}};
    if (!date.ok()) return Parsed::Malformed;
    int64_t fraction_ms = 0;
    bool sub_ms = false;
    if (i < s.size() && (s[i] == 'T' || s[i] == 't' || (s[i] == ' ' && i + 1 < s.size() && s[i + 1] != '+' &&
                                                         s[i + 1] != '-'))) {
        ++i;
        if (!digits(s, i, 2, hour) || hour > 23) return Parsed::Malformed;
        if (i < s.size() && s[i] == ':') {
            ++i;
            if (!digits(s, i, 2, minute) || minute > 59) return Parsed::Malformed;
            if (i < s.size() && s[i] == ':') {
                ++i;
                if (!digits(s, i, 2, second) || second > 59) return Parsed::Malformed;
                if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
                    ++i;
                    size_t n = 0;
                    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++n) {
                        if (n >= 9) return Parsed::Malformed;  // nanoseconds are the finest a time is written in
                        if (n < 3) fraction_ms = fraction_ms * 10 + (s[i] - '0');
                        else if (s[i] != '0') sub_ms = true;
                    }
                    if (n == 0) return Parsed::Malformed;
                    for (; n < 3; ++n) fraction_ms *= 10;
                }
            }
        }
    }
    if (i < s.size() && s[i] == ' ') ++i;  // "2026-01-01 12:00:00 +01:00"
    if (i == s.size()) return Parsed::NoZone;
    int64_t offset_minutes = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        ++i;
    } else if (s[i] == '+' || s[i] == '-') {
        const int sign = s[i++] == '-' ? -1 : 1;
        int oh = 0, om = 0;
        if (!digits(s, i, 2, oh) || oh > 23) return Parsed::Malformed;
        if (i < s.size() && s[i] == ':') ++i;
        if (i < s.size() && (!digits(s, i, 2, om) || om > 59)) return Parsed::Malformed;
        offset_minutes = sign * (oh * 60 + om);
    } else {
        return Parsed::Malformed;
    }
    if (i != s.size()) return Parsed::Malformed;
    if (sub_ms) return Parsed::SubMillisecond;
    const int64_t days = std::chrono::sys_days(date).time_since_epoch().count();
    ms = days * kMsPerDay + ((hour * 60 + minute) * 60 + second) * int64_t(1000) + fraction_ms -
         offset_minutes * kMsPerMinute;
    return Parsed::Ok;
}

std::string quoted(std::string_view text) {
    constexpr size_t kShown = 80;
    return text.size() <= kShown ? fmt::format("'{}'", text) : fmt::format("'{}...'", text.substr(0, kShown));
}

} // namespace

void refuse_naive_timestamps(const ImportedColumn& c, std::string_view what) {
    if (c.view.dtype != DType::Timestamp || c.origin.is_date || c.origin.has_zone) return;
    const std::string& name = c.view.name;
    throw_error(ErrorKind::InvalidArgument,
                "{0} '{1}' has timestamps without a time zone, so they could mean UTC or local time: localize it "
                "first: df['{1}'] = df['{1}'].dt.tz_localize('UTC') (or the zone the data was recorded in), or parse "
                "text with pd.to_datetime(..., utc=True)",
                what, name);
}

void require_zoned_timestamps(const ImportedColumn& c, std::string_view what) {
    const std::string& name = c.view.name;
    if (c.origin.is_date)
        throw_error(ErrorKind::InvalidArgument,
                    "{} '{}' holds dates, not timestamps: convert with pd.to_datetime(..., utc=True)", what, name);
    if (c.view.dtype != DType::Timestamp)
        throw_error(ErrorKind::InvalidArgument,
                    "{} '{}' has type {}, expected timestamps with a time zone (e.g. pd.to_datetime(col, utc=True))", what,
                    name, c.origin.type);
    refuse_naive_timestamps(c, what);
    if (c.origin.sub_ms_row >= 0)
        throw_error(ErrorKind::InvalidArgument,
                    "{} '{}' has sub-millisecond precision at row {}: Keel stores milliseconds; round with "
                    ".dt.floor('ms') first",
                    what, name, c.origin.sub_ms_row);
}

void parse_zoned_times(const ColumnView& text, size_t rows, std::string_view what, int64_t* out) {
    if (text.dtype != DType::String)
        throw_error(ErrorKind::InvalidArgument, "{} '{}' has type {}, expected ISO 8601 text", what, text.name,
                    dtype_name(text.dtype));
    for (size_t row = 0; row < rows; ++row) {
        out[row] = 0;
        if (!text.is_valid(row)) continue;
        const std::string_view value = text.str(row);
        switch (parse_iso(value, out[row])) {
            case Parsed::Ok: break;
            case Parsed::NoZone:
                throw_error(ErrorKind::InvalidArgument,
                            "{} '{}' has a timestamp without a time zone at row {}: {} could mean UTC or local time; "
                            "add its offset ('...Z' or '+02:00')",
                            what, text.name, row, quoted(value));
            case Parsed::SubMillisecond:
                throw_error(ErrorKind::InvalidArgument,
                            "{} '{}' has sub-millisecond precision at row {}: {}; Keel stores milliseconds, so round "
                            "the times to whole milliseconds first",
                            what, text.name, row, quoted(value));
            case Parsed::Malformed:
                throw_error(ErrorKind::InvalidArgument,
                            "{} '{}' has an unparseable timestamp at row {}: {}; write ISO 8601 with its zone, e.g. "
                            "'2026-01-01T12:00:00Z' or '2026-01-01T13:00:00+01:00'",
                            what, text.name, row, quoted(value));
        }
    }
}

} // namespace keel

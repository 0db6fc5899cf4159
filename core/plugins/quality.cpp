// core/plugins/quality.cpp
#include "keel/plugins/quality.hpp"

#include "keel/common/endian.hpp"
#include "keel/common/error.hpp"
#include "lua_internal.hpp"
#include "pattern.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace keel::plugins {

namespace {

// Column statistics, computed lazily and cached for the batch: several rules on one column pay once.
struct ColumnState {
    const ColumnView* col = nullptr;
    size_t rows = 0;  // the batch's
    bool moments_done = false;
    size_t count = 0;  // non-null
    double min = NAN, max = NAN, sum = 0;
    std::optional<double> stddev;
    std::vector<double> sorted;  // non-null numeric values, sorted (for quantiles, distinct, profiles)
    bool sorted_done = false;
    std::optional<size_t> distinct;

    bool valid(size_t i) const {
        if (col->valid && !col->valid[i]) return false;
        switch (col->dtype) {
        case DType::Float64: return !std::isnan(static_cast<const double*>(col->values)[i]);
        case DType::Float32: return !std::isnan(static_cast<const float*>(col->values)[i]);
        default: return true;
        }
    }
    bool numeric() const { return col->dtype != DType::String && col->dtype != DType::Vector; }
    // Numbers as Lua sees them: timestamps in seconds since the epoch.
    double number(size_t i) const {
        switch (col->dtype) {
        case DType::Int32: return double(static_cast<const int32_t*>(col->values)[i]);
        case DType::Int64: return double(static_cast<const int64_t*>(col->values)[i]);
        case DType::Float32: return double(static_cast<const float*>(col->values)[i]);
        case DType::Float64: return static_cast<const double*>(col->values)[i];
        case DType::Bool: return static_cast<const uint8_t*>(col->values)[i] ? 1.0 : 0.0;
        case DType::Timestamp: return double(static_cast<const int64_t*>(col->values)[i]) / 1e3;
        default: return NAN;
        }
    }
    std::string_view str(size_t i) const { return col->str(i); }

    void moments() {
        if (moments_done) return;
        moments_done = true;
        const size_t n = rows;
        if (!numeric()) {
            for (size_t i = 0; i < n; ++i) count += valid(i);
            return;
        }
        double lo = INFINITY, hi = -INFINITY, s = 0;
        size_t c = 0;
        if (col->dtype == DType::Float64 && !col->valid) {
            const double* v = static_cast<const double*>(col->values);
            for (size_t i = 0; i < n; ++i) {
                double x = v[i];
                if (x == x) {  // not NaN
                    ++c;
                    s += x;
                    lo = x < lo ? x : lo;
                    hi = x > hi ? x : hi;
                }
            }
        } else if (col->dtype == DType::Int64 && !col->valid) {
            const int64_t* v = static_cast<const int64_t*>(col->values);
            int64_t ilo = std::numeric_limits<int64_t>::max(), ihi = std::numeric_limits<int64_t>::min();
            for (size_t i = 0; i < n; ++i) {
                int64_t x = v[i];
                s += double(x);
                ilo = x < ilo ? x : ilo;
                ihi = x > ihi ? x : ihi;
            }
            c = n;
            if (n) lo = double(ilo), hi = double(ihi);
        } else {
            for (size_t i = 0; i < n; ++i) {
                if (!valid(i)) continue;
                double x = number(i);
                ++c;
                s += x;
                lo = std::min(lo, x);
                hi = std::max(hi, x);
            }
        }
        count = c;
        sum = s;
        if (c) min = lo, max = hi;
    }
    double mean() {
        moments();
        return count ? sum / double(count) : NAN;
    }
    double std_dev() {
        if (stddev) return *stddev;
        double m = mean();
        if (count < 2) return *(stddev = NAN);
        double ss = 0;
        for (size_t i = 0; i < rows; ++i)
            if (valid(i)) {
                double d = number(i) - m;
                ss += d * d;
            }
        return *(stddev = std::sqrt(ss / double(count - 1)));  // sample stddev, like pandas
    }
    const std::vector<double>& sorted_values() {
        if (sorted_done) return sorted;
        sorted_done = true;
        const size_t n = rows;
        std::vector<uint64_t> keys;
        keys.reserve(n);
        constexpr uint64_t kSign = uint64_t(1) << 63;
        if (col->dtype == DType::Int64) {
            // Integers sort on their own bits: ids below 2^32 skip half the passes.
            const int64_t* v = static_cast<const int64_t*>(col->values);
            for (size_t i = 0; i < n; ++i)
                if (!col->valid || valid(i)) keys.push_back(uint64_t(v[i]) ^ kSign);
            radix_sort(keys);
            sorted.resize(keys.size());
            for (size_t i = 0; i < keys.size(); ++i) sorted[i] = double(int64_t(keys[i] ^ kSign));
            return sorted;
        }
        // Doubles through an order-preserving bit image.
        for (size_t i = 0; i < n; ++i) {
            if (!valid(i)) continue;
            double x = number(i);
            uint64_t bits;
            std::memcpy(&bits, &x, 8);
            keys.push_back((bits & kSign) ? ~bits : (bits | kSign));
        }
        radix_sort(keys);
        sorted.resize(keys.size());
        for (size_t i = 0; i < keys.size(); ++i) {
            uint64_t k = keys[i];
            uint64_t bits = (k & kSign) ? (k & ~kSign) : ~k;
            std::memcpy(&sorted[i], &bits, 8);
        }
        return sorted;
    }
    // LSD radix sort, 4 passes of 16 bits (a pass whose digit is the same everywhere is skipped):
    // several times faster than std::sort on millions of values.
    static void radix_sort(std::vector<uint64_t>& a) {
        const size_t n = a.size();
        if (n < 4096) {
            std::sort(a.begin(), a.end());
            return;
        }
        std::vector<uint64_t> b(n);
        std::vector<size_t> count(65536);
        for (int pass = 0; pass < 4; ++pass) {
            int shift = pass * 16;
            std::fill(count.begin(), count.end(), 0);
            for (size_t i = 0; i < n; ++i) ++count[(a[i] >> shift) & 0xFFFF];
            if (count[(a[0] >> shift) & 0xFFFF] == n) continue;
            size_t sum = 0;
            for (auto& c : count) {
                size_t t = c;
                c = sum;
                sum += t;
            }
            for (size_t i = 0; i < n; ++i) b[count[(a[i] >> shift) & 0xFFFF]++] = a[i];
            a.swap(b);
        }
    }
    double quantile(double q) {
        const auto& v = sorted_values();
        if (v.empty()) return NAN;
        double pos = std::clamp(q, 0.0, 1.0) * double(v.size() - 1);
        size_t lo = size_t(pos);
        size_t hi = std::min(lo + 1, v.size() - 1);
        return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));  // linear, like numpy/pandas
    }
    size_t distinct_count() {
        if (distinct) return *distinct;
        size_t d = 0;
        moments();
        if (col->dtype == DType::Int64 && count > 0 && !sorted_done &&
            (max - min) < double(count) * 16 + 1024) {
            // Dense integers (ids): one pass over a bitmap instead of a sort.
            const int64_t* v = static_cast<const int64_t*>(col->values);
            const int64_t lo = int64_t(min);
            std::vector<uint64_t> seen(size_t((int64_t(max) - lo) / 64 + 1), 0);
            for (size_t i = 0; i < rows; ++i) {
                if (col->valid && !valid(i)) continue;
                uint64_t off = uint64_t(v[i] - lo);
                uint64_t bit = uint64_t(1) << (off & 63);
                uint64_t& word = seen[off >> 6];
                d += (word & bit) == 0;
                word |= bit;
            }
        } else if (numeric()) {
            const auto& v = sorted_values();
            for (size_t i = 0; i < v.size(); ++i) d += (i == 0 || v[i] != v[i - 1]);
        } else {
            std::unordered_set<std::string_view> seen;
            seen.reserve(std::min<size_t>(rows, 1 << 20));
            for (size_t i = 0; i < rows; ++i)
                if (valid(i)) seen.insert(str(i));
            d = seen.size();
        }
        return *(distinct = d);
    }
};

// Everything a check() call lends to Lua (the column handles, and the batch behind batch.column and
// batch.has) carries the epoch of its run; a plugin may keep any of it (in a global, an upvalue, a
// required module's table), so every use checks the epoch before touching the batch's memory, which
// is gone once run_rules returns. Epochs are unique across threads, and 0 (no run) never matches.
using ColumnStates = std::unordered_map<std::string, ColumnState>;
struct ColumnHandle {
    ColumnState* state;
    uint64_t epoch;
};
struct BatchHandle {
    ColumnStates* states;
    uint64_t epoch;
};
std::atomic<uint64_t> g_epoch_counter{1};
thread_local uint64_t t_live_epoch = 0;

constexpr const char* kColumnMeta = "keel.column";
constexpr const char* kBatchMeta = "keel.batch";
constexpr const char* kStaleAdvice = "keep the values a check computes, not the batch, its columns or its functions";

ColumnState& check_column(lua_State* L) {
    auto* h = static_cast<ColumnHandle*>(luaL_checkudata(L, 1, kColumnMeta));
    if (h->epoch != t_live_epoch) luaL_error(L, "column used after check() returned: %s", kStaleAdvice);
    charge(L, 1 + int64_t(h->state->rows >> 10), "a column helper");  // a pass over the rows
    return *h->state;
}

// The batch behind batch.column / batch.has (upvalue 1), or a Lua error when its check() returned.
ColumnStates& check_batch(lua_State* L, const char* what) {
    auto* h = static_cast<BatchHandle*>(luaL_testudata(L, lua_upvalueindex(1), kBatchMeta));
    if (!h || h->epoch != t_live_epoch) luaL_error(L, "%s used after check() returned: %s", what, kStaleAdvice);
    return *h->states;
}

void push_number_or_nil(lua_State* L, double x) {
    if (std::isnan(x)) lua_pushnil(L);
    else lua_pushnumber(L, x);
}

int col_name(lua_State* L) {
    auto& s = check_column(L);
    lua_pushstring(L, s.col->name.c_str());
    return 1;
}
int col_type(lua_State* L) {
    // Integers and floats of every width are reported as rules have always seen them.
    const char* name = "float64";
    switch (check_column(L).col->dtype) {
    case DType::Int32:
    case DType::Int64: name = "int64"; break;
    case DType::Bool: name = "bool"; break;
    case DType::String: name = "string"; break;
    case DType::Timestamp: name = "timestamp"; break;
    case DType::Vector: name = "vector"; break;
    default: break;
    }
    lua_pushstring(L, name);
    return 1;
}
int col_count(lua_State* L) {
    auto& s = check_column(L);
    s.moments();
    lua_pushinteger(L, lua_Integer(s.count));
    return 1;
}
int col_null_count(lua_State* L) {
    auto& s = check_column(L);
    s.moments();
    lua_pushinteger(L, lua_Integer(s.rows - s.count));
    return 1;
}
int col_null_rate(lua_State* L) {
    auto& s = check_column(L);
    s.moments();
    lua_pushnumber(L, s.rows ? double(s.rows - s.count) / double(s.rows) : 0.0);
    return 1;
}
// PII columns whose raw values the running rule was given (the caller holds a grant): its results
// are hidden from readers of the history who do not (see RuleResult::raw_pii).
thread_local std::set<std::string> t_raw_pii;

// A PII column the caller may not read gives no values (nil), like the feature store's masked numbers.
bool hidden(lua_State* L, const ColumnState& s) {
    if (!s.col->masked) {
        if (s.col->mask) t_raw_pii.insert(s.col->name);
        return false;
    }
    lua_pushnil(L);
    return true;
}
int numeric_only(lua_State* L, ColumnState& s, const char* what) {
    return luaL_error(L, "column '%s' is a string column: %s needs numbers", s.col->name.c_str(), what);
}
// The column a statistic `what` reads: a string column raises, naming it; a PII column hidden from
// the caller gives null, with the nil result already pushed.
ColumnState* numeric_column(lua_State* L, const char* what) {
    auto& s = check_column(L);
    if (!s.numeric()) numeric_only(L, s, what);  // raises
    return hidden(L, s) ? nullptr : &s;
}
// Pushes one number computed from a numeric column (nil when hidden or when there are no values).
template <typename Stat>
int push_stat(lua_State* L, const char* what, Stat stat) {
    if (ColumnState* s = numeric_column(L, what)) push_number_or_nil(L, stat(*s));
    return 1;
}
int col_min(lua_State* L) {
    return push_stat(L, "min()", [](ColumnState& s) { s.moments(); return s.min; });
}
int col_max(lua_State* L) {
    return push_stat(L, "max()", [](ColumnState& s) { s.moments(); return s.max; });
}
int col_mean(lua_State* L) {
    return push_stat(L, "mean()", [](ColumnState& s) { return s.mean(); });
}
int col_stddev(lua_State* L) {
    return push_stat(L, "stddev()", [](ColumnState& s) { return s.std_dev(); });
}
int col_quantile(lua_State* L) {
    ColumnState* col = numeric_column(L, "quantile()");
    if (!col) return 1;
    auto& s = *col;
    if (lua_istable(L, 2)) {
        lua_Integer n = lua_Integer(lua_rawlen(L, 2));  // the raw length: __len cannot stretch the loop
        charge(L, n, "quantile");
        lua_createtable(L, int(n), 0);
        for (lua_Integer i = 1; i <= n; ++i) {
            lua_rawgeti(L, 2, i);
            double q = luaL_checknumber(L, -1);
            lua_pop(L, 1);
            push_number_or_nil(L, s.quantile(q));
            lua_rawseti(L, -2, i);
        }
        return 1;
    }
    push_number_or_nil(L, s.quantile(luaL_checknumber(L, 2)));
    return 1;
}
// Non-null values below lo or above hi (either may be nil); optional strict bounds.
int col_count_outside(lua_State* L) {
    auto& s = check_column(L);
    if (!s.numeric()) return numeric_only(L, s, "count_outside()");
    bool has_lo = !lua_isnoneornil(L, 2), has_hi = !lua_isnoneornil(L, 3);
    double lo = has_lo ? luaL_checknumber(L, 2) : 0, hi = has_hi ? luaL_checknumber(L, 3) : 0;
    size_t bad = 0;
    const size_t n = s.rows;
    if (s.col->dtype == DType::Float64 && !s.col->valid) {
        const double* v = static_cast<const double*>(s.col->values);
        double l = has_lo ? lo : -INFINITY, h = has_hi ? hi : INFINITY;
        for (size_t i = 0; i < n; ++i) bad += (v[i] < l) | (v[i] > h);  // NaN compares false
    } else if (s.col->dtype == DType::Int64 && !s.col->valid) {
        const int64_t* v = static_cast<const int64_t*>(s.col->values);
        double l = has_lo ? lo : -INFINITY, h = has_hi ? hi : INFINITY;
        for (size_t i = 0; i < n; ++i) bad += (double(v[i]) < l) | (double(v[i]) > h);
    } else {
        for (size_t i = 0; i < n; ++i) {
            if (!s.valid(i)) continue;
            double x = s.number(i);
            bad += (has_lo && x < lo) || (has_hi && x > hi);
        }
    }
    lua_pushinteger(L, lua_Integer(bad));
    return 1;
}
int col_distinct(lua_State* L) {
    lua_pushinteger(L, lua_Integer(check_column(L).distinct_count()));
    return 1;
}
int col_duplicate_count(lua_State* L) {
    auto& s = check_column(L);
    s.moments();
    lua_pushinteger(L, lua_Integer(s.count - s.distinct_count()));
    return 1;
}
// Share of non-null values matching an RE2 pattern somewhere (anchor with ^...$ for whole values);
// numbers are matched in their %.17g text. Linear time per value, whatever the pattern.
int col_pattern_share(lua_State* L) {
    auto& s = check_column(L);
    size_t plen = 0;
    const char* ptext = luaL_checklstring(L, 2, &plen);
    std::shared_ptr<const Pattern> re;
    try {
        re = Pattern::get(std::string_view(ptext, plen));
    } catch (const Error& e) {
        return luaL_error(L, "pattern_share: %s", e.what());
    }
    size_t matched = 0, count = 0;
    char nbuf[64];
    for (size_t i = 0; i < s.rows; ++i) {
        if (!s.valid(i)) continue;
        ++count;
        if (s.numeric()) {
            int n = std::snprintf(nbuf, sizeof nbuf, "%.17g", s.number(i));
            matched += re->search(std::string_view(nbuf, size_t(n)));
        } else {
            matched += re->search(s.str(i));
        }
    }
    lua_pushnumber(L, count ? double(matched) / double(count) : 1.0);
    return 1;
}
// The allowed set a rule passes (a Lua array of strings or numbers). Its length is the raw one: a
// __len metamethod cannot make the loop run longer than the table is.
struct AllowedSet {
    std::unordered_set<double> numbers;
    std::vector<std::string> strings;
};
AllowedSet read_allowed(lua_State* L, int index, bool numeric, const char* helper) {
    luaL_checktype(L, index, LUA_TTABLE);
    const lua_Integer n = lua_Integer(lua_rawlen(L, index));
    charge(L, n * 16, helper);  // copying and hashing an entry costs ~16 instructions
    AllowedSet set;
    for (lua_Integer i = 1; i <= n; ++i) {
        lua_rawgeti(L, index, i);
        if (numeric) {
            if (lua_type(L, -1) == LUA_TNUMBER) set.numbers.insert(lua_tonumber(L, -1));
            else if (lua_type(L, -1) == LUA_TBOOLEAN) set.numbers.insert(lua_toboolean(L, -1) ? 1.0 : 0.0);
        } else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
            size_t len = 0;
            const char* p = lua_tolstring(L, -1, &len);
            set.strings.emplace_back(p, len);
        }
        lua_pop(L, 1);
    }
    return set;
}

// Calls on(row, allowed) for every non-null string of the column; the set decides the fastest way.
template <class OnValue>
void scan_allowed_strings(ColumnState& s, const std::vector<std::string>& keep, OnValue&& on) {
    bool short_keys = keep.size() <= 16;
    for (const auto& k : keep) short_keys = short_keys && k.size() <= 8;
    auto word_of = [](const char* p, size_t n) {
        uint64_t w = 0;
        std::memcpy(&w, p, n);
        return w;
    };
    const size_t n = s.rows;
    if (short_keys) {
        // Small sets of short codes (countries, tiers): compare (length, 8-byte word) pairs.
        uint64_t words[16];
        size_t sizes[16];
        for (size_t j = 0; j < keep.size(); ++j) words[j] = word_of(keep[j].data(), sizes[j] = keep[j].size());
        const size_t nk = keep.size();
        const int64_t total = s.col->offsets[n];
        const char* end8 = static_cast<const char*>(s.col->values) + std::max<int64_t>(total - 8, 0);
        for (size_t i = 0; i < n; ++i) {
            if (s.col->valid && !s.valid(i)) continue;
            std::string_view v = s.str(i);
            if (v.size() > 8) {
                on(i, false);
                continue;
            }
            uint64_t w;
            if (v.data() <= end8 && total >= 8) {
                // one unaligned 8-byte load, masked to the string's length: the string's first bytes
                // are the word's low bytes on a little-endian host (keel/common/endian.hpp)
                w = le::load<uint64_t>(v.data());
                w &= v.size() == 8 ? ~uint64_t(0) : ((uint64_t(1) << (8 * v.size())) - 1);
            } else {
                w = word_of(v.data(), v.size());
            }
            bool hit = false;  // branch-free over the set: values arrive in random order
            for (size_t j = 0; j < nk; ++j) hit |= (words[j] == w) & (sizes[j] == v.size());
            on(i, hit);
        }
    } else if (keep.size() <= 16) {
        // Small sets (the usual case): length check and memcmp beat hashing every value.
        for (size_t i = 0; i < n; ++i) {
            if (!s.valid(i)) continue;
            std::string_view v = s.str(i);
            bool hit = false;
            for (const auto& k : keep)
                if (k.size() == v.size() && std::memcmp(k.data(), v.data(), v.size()) == 0) {
                    hit = true;
                    break;
                }
            on(i, hit);
        }
    } else {
        std::unordered_set<std::string_view> allowed(keep.begin(), keep.end());
        for (size_t i = 0; i < n; ++i)
            if (s.valid(i)) on(i, allowed.count(s.str(i)) > 0);
    }
}

template <class OnValue>
void scan_allowed(ColumnState& s, const AllowedSet& set, OnValue&& on) {
    if (!s.numeric()) return scan_allowed_strings(s, set.strings, on);
    for (size_t i = 0; i < s.rows; ++i)
        if (s.valid(i)) on(i, set.numbers.count(s.number(i)) > 0);
}

// Counts of the values outside an allowed set, by value.
struct Offenders {
    std::unordered_map<std::string_view, size_t> strings;  // views into the batch
    std::unordered_map<double, size_t> numbers;
    void add(const ColumnState& s, size_t i) {
        if (s.numeric()) ++numbers[s.number(i)];
        else ++strings[s.str(i)];
    }
};

// Pushes the `top` most frequent offenders as {{value=, count=}, ...}, by count then value; masked
// for PII columns the caller may not read.
void push_offenders(lua_State* L, const ColumnState& s, const Offenders& found, size_t top) {
    if (s.col->mask && !s.col->masked) t_raw_pii.insert(s.col->name);
    struct Offender {
        std::string_view text;
        double number = 0;
        size_t count = 0;
    };
    std::vector<Offender> all;
    all.reserve(found.strings.size() + found.numbers.size());
    for (const auto& [v, c] : found.strings) all.push_back({v, 0, c});
    for (const auto& [v, c] : found.numbers) all.push_back({{}, v, c});
    auto first = [](const Offender& a, const Offender& b) {
        if (a.count != b.count) return a.count > b.count;
        return a.text != b.text ? a.text < b.text : a.number < b.number;
    };
    const size_t k = std::min(top, all.size());
    std::partial_sort(all.begin(), all.begin() + ptrdiff_t(k), all.end(), first);
    lua_createtable(L, int(k), 0);
    for (size_t j = 0; j < k; ++j) {
        const auto& o = all[j];
        lua_createtable(L, 0, 2);
        if (s.col->masked) {
            std::string text = s.numeric() ? fmt::format("{}", o.number) : std::string(o.text);
            std::string m = s.col->mask ? (*s.col->mask)(text) : "pii:masked";
            lua_pushlstring(L, m.data(), m.size());
        } else if (s.numeric()) {
            lua_pushnumber(L, o.number);
        } else {
            lua_pushlstring(L, o.text.data(), o.text.size());
        }
        lua_setfield(L, -2, "value");
        lua_pushinteger(L, lua_Integer(o.count));
        lua_setfield(L, -2, "count");
        lua_rawseti(L, -2, lua_Integer(j + 1));
    }
}

size_t top_arg(lua_State* L, int index) {
    return size_t(std::clamp<lua_Integer>(luaL_optinteger(L, index, 5), 1, 100));
}

// Share of non-null values in the allowed set; with `top`, also the most frequent values outside
// it (as not_allowed gives them), counted in the same pass.
int col_allowed_share(lua_State* L) {
    auto& s = check_column(L);
    AllowedSet set = read_allowed(L, 2, s.numeric(), "allowed_share");
    size_t ok = 0, count = 0;
    if (lua_isnoneornil(L, 3)) {
        scan_allowed(s, set, [&](size_t, bool allowed) {
            ++count;
            ok += allowed;
        });
        lua_pushnumber(L, count ? double(ok) / double(count) : 1.0);
        return 1;
    }
    const size_t top = top_arg(L, 3);
    Offenders found;
    scan_allowed(s, set, [&](size_t i, bool allowed) {
        ++count;
        ok += allowed;
        if (!allowed) found.add(s, i);
    });
    lua_pushnumber(L, count ? double(ok) / double(count) : 1.0);
    push_offenders(L, s, found, top);
    return 2;
}

// The values outside the allowed set that occur most often: {{value=, count=}, ...}, at most `top`
// (default 5, at most 100), by count then value. Masked for PII columns the caller may not read.
int col_not_allowed(lua_State* L) {
    auto& s = check_column(L);
    AllowedSet set = read_allowed(L, 2, s.numeric(), "not_allowed");
    const size_t top = top_arg(L, 3);
    Offenders found;
    scan_allowed(s, set, [&](size_t i, bool allowed) {
        if (!allowed) found.add(s, i);
    });
    push_offenders(L, s, found, top);
    return 1;
}

int col_psi(lua_State* L) {
    auto& s = check_column(L);
    Value profile = to_value(L, 2);
    double v = 0;
    try {
        v = psi(*s.col, s.rows, profile);
    } catch (const Error& e) {
        return luaL_error(L, "%s", e.what());
    }
    push_number_or_nil(L, v);
    return 1;
}
int col_profile(lua_State* L) {
    auto& s = check_column(L);
    push_value(L, profile_column(*s.col, s.rows, int(luaL_optinteger(L, 2, 10))));
    return 1;
}

void register_column_meta(lua_State* L) {
    if (luaL_newmetatable(L, kColumnMeta)) {
        static const luaL_Reg methods[] = {
            {"name", col_name}, {"type", col_type}, {"count", col_count}, {"null_count", col_null_count},
            {"null_rate", col_null_rate}, {"min", col_min}, {"max", col_max}, {"mean", col_mean},
            {"stddev", col_stddev}, {"quantile", col_quantile}, {"distinct_count", col_distinct},
            {"duplicate_count", col_duplicate_count}, {"pattern_share", col_pattern_share},
            {"allowed_share", col_allowed_share}, {"not_allowed", col_not_allowed}, {"count_outside", col_count_outside}, {"psi", col_psi}, {"profile", col_profile}, {nullptr, nullptr}};
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, kBatchMeta)) {  // opaque: no methods, metatable hidden
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

// batch:column(name) -> column userdata (upvalue 1: the run's BatchHandle)
int batch_column(lua_State* L) {
    auto* states = &check_batch(L, "batch.column");
    const char* name = luaL_checkstring(L, 2);
    auto it = states->find(name);
    if (it == states->end()) {
        std::string known;
        for (const auto& [k, v] : *states) known += (known.empty() ? "" : ", ") + k;
        return luaL_error(L, "batch has no column '%s' (columns: %s)", name, known.c_str());
    }
    auto* h = static_cast<ColumnHandle*>(lua_newuserdatauv(L, sizeof(ColumnHandle), 0));
    h->state = &it->second;
    h->epoch = t_live_epoch;
    luaL_setmetatable(L, kColumnMeta);
    return 1;
}
int batch_has(lua_State* L) {
    auto& states = check_batch(L, "batch.has");
    const char* name = luaL_checkstring(L, 2);
    lua_pushboolean(L, states.count(name) > 0);
    return 1;
}

std::string stem_of(const std::string& plugin) {
    std::string s = plugin;
    if (auto slash = s.find_last_of('/'); slash != std::string::npos) s = s.substr(slash + 1);
    if (s.size() > 4 && s.ends_with(".lua")) s.resize(s.size() - 4);
    return s;
}

std::string text_of(const Value* v) {
    if (!v || v->is_null()) return "";
    if (v->is_string()) return v->str();
    if (v->is_number()) return fmt::format("{}", v->number());
    if (auto* b = std::get_if<bool>(&v->data)) return *b ? "true" : "false";
    return "";
}

} // namespace

std::vector<RuleResult> run_rules(const Batch& batch, const std::vector<Rule>& rules, const Value& context, Host& host) {
    // Arguments are checked before any rule runs: a refused one fails the whole run, as it would
    // have failed add_rule; a plugin that does not load is only that rule's error.
    std::vector<std::string> load_errors(rules.size());
    for (size_t i = 0; i < rules.size(); ++i) {
        try {
            validate_rule(rules[i], {}, "", host);
        } catch (const Error& e) {
            if (e.kind() == ErrorKind::InvalidArgument) throw;
            load_errors[i] = e.what();
        }
    }

    auto& impl = host.impl();
    impl.reset_if_needed();
    lua_State* L = impl.L;
    register_column_meta(L);

    ColumnStates states;
    for (const auto& c : batch.columns) {
        states[c.name].col = &c;
        states[c.name].rows = batch.rows;
    }
    t_live_epoch = ++g_epoch_counter;
    struct EpochGuard {
        ~EpochGuard() { t_live_epoch = 0; }
    } guard;

    std::vector<RuleResult> out;
    for (size_t rule_index = 0; rule_index < rules.size(); ++rule_index) {
        const Rule& rule = rules[rule_index];
        t_raw_pii.clear();
        std::string rule_name = rule.name.empty() ? stem_of(rule.plugin) : rule.name;
        std::string column = text_of(rule.args.find("column"));
        auto fail_rule = [&](std::string message) {
            out.push_back({rule_name, column, rule.severity, "error", Value{}, "", std::move(message), Value{}, rule_index,
                           {t_raw_pii.begin(), t_raw_pii.end()}});  // a plugin's error text may quote values
        };
        if (!load_errors[rule_index].empty()) {
            fail_rule(std::move(load_errors[rule_index]));
            continue;
        }
        Plugin* p = nullptr;
        try {
            p = &impl.load(rule.plugin, "check");
        } catch (const Error& e) {
            fail_rule(e.what());
            continue;
        }
        L = impl.L;
        // A rule that ran out of memory gets the state rebuilt by the next load: the column and
        // batch metatables must exist in the new state too (a no-op when they do).
        register_column_meta(L);
        int base = lua_gettop(L);
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->fn_ref);
        // batch = {rows=, columns={names}, column=fn, has=fn}
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, lua_Integer(batch.rows));
        lua_setfield(L, -2, "rows");
        lua_createtable(L, int(batch.columns.size()), 0);
        for (size_t i = 0; i < batch.columns.size(); ++i) {
            lua_pushstring(L, batch.columns[i].name.c_str());
            lua_rawseti(L, -2, lua_Integer(i + 1));
        }
        lua_setfield(L, -2, "columns");
        auto* bh = static_cast<BatchHandle*>(lua_newuserdatauv(L, sizeof(BatchHandle), 0));
        *bh = {&states, t_live_epoch};
        luaL_setmetatable(L, kBatchMeta);
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, batch_column, 1);
        lua_setfield(L, -3, "column");
        lua_pushcclosure(L, batch_has, 1);
        lua_setfield(L, -2, "has");
        // ctx = context + {args=, severity=, rule=}
        if (context.is_map()) push_value(L, context);
        else lua_newtable(L);
        push_value(L, rule.args.is_null() ? Value(Value::Map{}) : rule.args);
        lua_setfield(L, -2, "args");
        lua_pushstring(L, rule.severity.c_str());
        lua_setfield(L, -2, "severity");
        lua_pushstring(L, rule_name.c_str());
        lua_setfield(L, -2, "rule");
        if (impl.pcall(2, 1, false, p->chunkname) != CallStatus::Ok) {
            lua_settop(L, base);
            fail_rule(impl.last_error);
            continue;
        }
        Value res;
        try {
            res = to_value(L, -1);
        } catch (const Error& e) {
            lua_settop(L, base);
            fail_rule(e.what());
            continue;
        }
        lua_settop(L, base);
        std::vector<Value> items;
        if (res.is_array()) items = res.array();
        else if (res.is_map()) items.push_back(res);
        else {
            fail_rule(fmt::format("{}: check() must return a result table or a list of them, not {}", p->chunkname.substr(1),
                                  res.is_null() ? "nil" : "a value"));
            continue;
        }
        for (const auto& item : items) {
            RuleResult r;
            r.rule = item.find("rule") ? text_of(item.find("rule")) : rule_name;
            r.column = item.find("column") ? text_of(item.find("column")) : column;
            r.severity = rule.severity;
            r.status = text_of(item.find("status"));
            if (const Value* o = item.find("observed")) r.observed = *o;
            r.expectation = text_of(item.find("expectation"));
            r.message = text_of(item.find("message"));
            if (const Value* d = item.find("detail")) r.detail = *d;
            r.rule_index = rule_index;
            r.raw_pii.assign(t_raw_pii.begin(), t_raw_pii.end());
            if (r.status != "pass" && r.status != "warn" && r.status != "fail") {
                r.message = fmt::format("{}: check() returned status '{}', expected pass, warn or fail",
                                        p->chunkname.substr(1), r.status);
                r.status = "error";
            }
            out.push_back(std::move(r));
        }
    }
    return out;
}

namespace {

// The category a value counts under in categorical profiles: strings as they are, bools as
// "true"/"false", numbers in their shortest text.
std::string category_of(const ColumnState& s, size_t i) {
    switch (s.col->dtype) {
    case DType::String: return std::string(s.str(i));
    case DType::Bool: return s.number(i) ? "true" : "false";
    default: return fmt::format("{}", s.number(i));
    }
}

// Category -> count over the non-null values; for PII columns keyed by the masked value.
std::unordered_map<std::string, size_t> category_counts(const ColumnState& s, size_t& total) {
    std::unordered_map<std::string, size_t> counts;
    total = 0;
    for (size_t i = 0; i < s.rows; ++i) {
        if (!s.valid(i)) continue;
        ++total;
        ++counts[category_of(s, i)];
    }
    if (!s.col->mask) return counts;
    std::unordered_map<std::string, size_t> masked;  // one hash per distinct value, not per row
    for (const auto& [k, c] : counts) masked[(*s.col->mask)(k)] += c;
    return masked;
}

} // namespace

Value profile_column(const ColumnView& column, size_t rows, int bins) {
    ColumnState s;
    s.col = &column;
    s.rows = rows;
    if (column.mask || column.dtype == DType::String || column.dtype == DType::Bool) {
        size_t total = 0;
        auto counts = category_counts(s, total);
        std::vector<std::pair<std::string, size_t>> sorted(counts.begin(), counts.end());
        std::sort(sorted.begin(), sorted.end());
        Value::Map shares;
        for (const auto& [k, c] : sorted) shares.emplace_back(k, double(c) / double(total ? total : 1));
        Value::Map profile{{"kind", "categorical"}, {"shares", Value(std::move(shares))}};
        if (column.mask) profile.emplace_back("masked", true);
        return Value(std::move(profile));
    }
    bins = std::clamp(bins, 2, 100);
    Value::Array edges;
    for (int b = 1; b < bins; ++b) {
        double e = s.quantile(double(b) / bins);
        if (!std::isnan(e) && (edges.empty() || e > edges.back().number())) edges.push_back(e);
    }
    std::vector<size_t> counts(edges.size() + 1, 0);
    std::vector<double> cuts;
    for (const auto& e : edges) cuts.push_back(e.number());
    size_t total = 0;
    for (double x : s.sorted_values()) {
        ++counts[size_t(std::upper_bound(cuts.begin(), cuts.end(), x) - cuts.begin())];
        ++total;
    }
    Value::Array shares;
    for (size_t c : counts) shares.push_back(double(c) / double(total ? total : 1));
    return Value(Value::Map{{"kind", "numeric"}, {"edges", Value(std::move(edges))}, {"shares", Value(std::move(shares))}});
}

double psi(const ColumnView& column, size_t rows, const Value& profile) {
    const Value* kind = profile.find("kind");
    const Value* shares = profile.find("shares");
    if (!kind || !kind->is_string() || !shares)
        throw_error(ErrorKind::InvalidArgument, "psi: the reference profile needs kind and shares (make it with profile())");
    ColumnState s;
    s.col = &column;
    s.rows = rows;
    static constexpr double eps = 1e-4;
    auto term = [](double cur, double ref) {
        cur = std::max(cur, eps);
        ref = std::max(ref, eps);
        return (cur - ref) * std::log(cur / ref);
    };
    double total_psi = 0;
    if (kind->str() == "categorical") {
        const Value* masked = profile.find("masked");
        bool masked_profile = masked && std::holds_alternative<bool>(masked->data) && std::get<bool>(masked->data);
        if (masked_profile && !column.mask)
            throw_error(ErrorKind::InvalidArgument,
                        "psi: the reference profile of '{}' holds masked PII values, but the column is not a PII "
                        "column here: compare it through the feature view's rules (fv.quality.run)", column.name);
        ColumnView view = column;  // a raw reference (made before masking) compares with raw values
        if (!masked_profile) view.mask = nullptr;
        ColumnState cs;
        cs.col = &view;
        cs.rows = rows;
        size_t total = 0;
        auto counts = category_counts(cs, total);
        if (!total) return NAN;
        std::unordered_set<std::string> seen;
        for (const auto& [k, ref] : shares->map()) {
            auto it = counts.find(k);
            total_psi += term(it == counts.end() ? 0.0 : double(it->second) / double(total), ref.number());
            seen.insert(k);
        }
        for (const auto& [k, c] : counts)
            if (!seen.count(k)) total_psi += term(double(c) / double(total), 0.0);
        return total_psi;
    }
    const Value* edges = profile.find("edges");
    if (!edges || !edges->is_array()) {
        if (!edges || !(edges->is_map() && edges->map().empty()))
            throw_error(ErrorKind::InvalidArgument, "psi: a numeric profile needs edges");
    }
    std::vector<double> cuts;
    if (edges->is_array())
        for (const auto& e : edges->array()) cuts.push_back(e.number());
    const auto& ref = shares->array();
    if (ref.size() != cuts.size() + 1)
        throw_error(ErrorKind::InvalidArgument, "psi: profile has {} edges but {} shares", cuts.size(), ref.size());
    std::vector<size_t> counts(cuts.size() + 1, 0);
    size_t total = 0;
    for (size_t i = 0; i < rows; ++i) {
        if (!s.valid(i)) continue;
        ++counts[size_t(std::upper_bound(cuts.begin(), cuts.end(), s.number(i)) - cuts.begin())];
        ++total;
    }
    if (!total) return NAN;
    for (size_t b = 0; b < counts.size(); ++b) total_psi += term(double(counts[b]) / double(total), ref[b].number());
    return total_psi;
}

} // namespace keel::plugins

// core/plugins/quality.cpp
#include "keel/plugins/quality.hpp"

#include "keel/common/error.hpp"
#include "lua_internal.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <regex.h>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace keel::plugins {

namespace {

constexpr int64_t kNaT = std::numeric_limits<int64_t>::min();

// Column statistics, computed lazily and cached for the batch: several rules on one column pay once.
struct ColumnState {
    const ColumnView* col = nullptr;
    bool moments_done = false;
    size_t count = 0;  // non-null
    double min = NAN, max = NAN, sum = 0;
    std::optional<double> stddev;
    std::vector<double> sorted;  // non-null numeric values, sorted (for quantiles, distinct, profiles)
    bool sorted_done = false;
    std::optional<size_t> distinct;

    bool valid(size_t i) const {
        if (col->validity) {
            int64_t bit = col->validity_offset + int64_t(i);
            if (!((col->validity[bit >> 3] >> (bit & 7)) & 1)) return false;
        }
        switch (col->type) {
        case ColumnType::Float64: return !std::isnan(static_cast<const double*>(col->values)[i]);
        case ColumnType::Timestamp: return static_cast<const int64_t*>(col->values)[i] != kNaT;
        default: return true;
        }
    }
    bool numeric() const { return col->type != ColumnType::String; }
    // Numbers as Lua sees them: timestamps in seconds since the epoch.
    double number(size_t i) const {
        switch (col->type) {
        case ColumnType::Int64: return double(static_cast<const int64_t*>(col->values)[i]);
        case ColumnType::Float64: return static_cast<const double*>(col->values)[i];
        case ColumnType::Bool: return static_cast<const uint8_t*>(col->values)[i] ? 1.0 : 0.0;
        case ColumnType::Timestamp: return double(static_cast<const int64_t*>(col->values)[i]) / 1e9;
        default: return NAN;
        }
    }
    std::string_view str(size_t i) const {
        int64_t a = col->offsets32 ? col->offsets32[i] : col->offsets64[i];
        int64_t b = col->offsets32 ? col->offsets32[i + 1] : col->offsets64[i + 1];
        return {col->chars + a, size_t(b - a)};
    }

    void moments() {
        if (moments_done) return;
        moments_done = true;
        const size_t n = col->length;
        if (!numeric()) {
            for (size_t i = 0; i < n; ++i) count += valid(i);
            return;
        }
        double lo = INFINITY, hi = -INFINITY, s = 0;
        size_t c = 0;
        if (col->type == ColumnType::Float64 && !col->validity) {
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
        } else if (col->type == ColumnType::Int64 && !col->validity) {
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
        for (size_t i = 0; i < col->length; ++i)
            if (valid(i)) {
                double d = number(i) - m;
                ss += d * d;
            }
        return *(stddev = std::sqrt(ss / double(count - 1)));  // sample stddev, like pandas
    }
    const std::vector<double>& sorted_values() {
        if (sorted_done) return sorted;
        sorted_done = true;
        const size_t n = col->length;
        std::vector<uint64_t> keys;
        keys.reserve(n);
        constexpr uint64_t kSign = uint64_t(1) << 63;
        if (col->type == ColumnType::Int64) {
            // Integers sort on their own bits: ids below 2^32 skip half the passes.
            const int64_t* v = static_cast<const int64_t*>(col->values);
            for (size_t i = 0; i < n; ++i)
                if (!col->validity || valid(i)) keys.push_back(uint64_t(v[i]) ^ kSign);
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
        if (col->type == ColumnType::Int64 && count > 0 && !sorted_done &&
            (max - min) < double(count) * 16 + 1024) {
            // Dense integers (ids): one pass over a bitmap instead of a sort.
            const int64_t* v = static_cast<const int64_t*>(col->values);
            const int64_t lo = int64_t(min);
            std::vector<uint64_t> seen(size_t((int64_t(max) - lo) / 64 + 1), 0);
            for (size_t i = 0; i < col->length; ++i) {
                if (col->validity && !valid(i)) continue;
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
            seen.reserve(std::min<size_t>(col->length, 1 << 20));
            for (size_t i = 0; i < col->length; ++i)
                if (valid(i)) seen.insert(str(i));
            d = seen.size();
        }
        return *(distinct = d);
    }
};

// The Lua side of a column: a userdata holding the state and the run it belongs to.
struct ColumnHandle {
    ColumnState* state;
    uint64_t epoch;
};
std::atomic<uint64_t> g_epoch_counter{1};
thread_local uint64_t t_live_epoch = 0;

constexpr const char* kColumnMeta = "keel.column";

ColumnState& check_column(lua_State* L) {
    auto* h = static_cast<ColumnHandle*>(luaL_checkudata(L, 1, kColumnMeta));
    if (h->epoch != t_live_epoch) luaL_error(L, "column used after its check() returned");
    charge(L, 1 + int64_t(h->state->col->length >> 10), "a column helper");  // a pass over the rows
    return *h->state;
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
    static const char* names[] = {"int64", "float64", "bool", "string", "timestamp"};
    lua_pushstring(L, names[int(check_column(L).col->type)]);
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
    lua_pushinteger(L, lua_Integer(s.col->length - s.count));
    return 1;
}
int col_null_rate(lua_State* L) {
    auto& s = check_column(L);
    s.moments();
    lua_pushnumber(L, s.col->length ? double(s.col->length - s.count) / double(s.col->length) : 0.0);
    return 1;
}
int numeric_only(lua_State* L, ColumnState& s, const char* what) {
    return luaL_error(L, "column '%s' is a string column: %s needs numbers", s.col->name.c_str(), what);
}
int col_min(lua_State* L) {
    auto& s = check_column(L);
    if (!s.numeric()) return numeric_only(L, s, "min()");
    s.moments();
    push_number_or_nil(L, s.min);
    return 1;
}
int col_max(lua_State* L) {
    auto& s = check_column(L);
    if (!s.numeric()) return numeric_only(L, s, "max()");
    s.moments();
    push_number_or_nil(L, s.max);
    return 1;
}
int col_mean(lua_State* L) {
    auto& s = check_column(L);
    if (!s.numeric()) return numeric_only(L, s, "mean()");
    push_number_or_nil(L, s.mean());
    return 1;
}
int col_stddev(lua_State* L) {
    auto& s = check_column(L);
    if (!s.numeric()) return numeric_only(L, s, "stddev()");
    push_number_or_nil(L, s.std_dev());
    return 1;
}
int col_quantile(lua_State* L) {
    auto& s = check_column(L);
    if (!s.numeric()) return numeric_only(L, s, "quantile()");
    if (lua_istable(L, 2)) {
        lua_Integer n = lua_Integer(lua_rawlen(L, 2));  // raw: a __len cannot claim a billion entries
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
    const size_t n = s.col->length;
    if (s.col->type == ColumnType::Float64 && !s.col->validity) {
        const double* v = static_cast<const double*>(s.col->values);
        double l = has_lo ? lo : -INFINITY, h = has_hi ? hi : INFINITY;
        for (size_t i = 0; i < n; ++i) bad += (v[i] < l) | (v[i] > h);  // NaN compares false
    } else if (s.col->type == ColumnType::Int64 && !s.col->validity) {
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
// Share of non-null values matching a POSIX extended regular expression.
int col_pattern_share(lua_State* L) {
    auto& s = check_column(L);
    const char* pattern = luaL_checkstring(L, 2);
    regex_t re;
    if (int rc = regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB); rc != 0) {
        char buf[256];
        regerror(rc, &re, buf, sizeof buf);
        return luaL_error(L, "pattern_share: bad regular expression '%s': %s", pattern, buf);
    }
    size_t matched = 0, count = 0;
    std::string tmp;
    char nbuf[64];
    for (size_t i = 0; i < s.col->length; ++i) {
        if (!s.valid(i)) continue;
        ++count;
        const char* text;
        if (s.numeric()) {
            std::snprintf(nbuf, sizeof nbuf, "%.17g", s.number(i));
            text = nbuf;
        } else {
            tmp.assign(s.str(i));
            text = tmp.c_str();
        }
        matched += regexec(&re, text, 0, nullptr, 0) == 0;
    }
    regfree(&re);
    lua_pushnumber(L, count ? double(matched) / double(count) : 1.0);
    return 1;
}
// Share of non-null values in the allowed set (a Lua array of strings or numbers).
int col_allowed_share(lua_State* L) {
    auto& s = check_column(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = lua_Integer(lua_rawlen(L, 2));  // raw, like the reads below: a __len cannot claim 1e9
    charge(L, n * 16, "allowed_share");  // copying and hashing an entry costs ~16 instructions
    size_t ok = 0, count = 0;
    if (s.numeric()) {
        std::unordered_set<double> allowed;
        for (lua_Integer i = 1; i <= n; ++i) {
            lua_rawgeti(L, 2, i);
            if (lua_type(L, -1) == LUA_TNUMBER) allowed.insert(lua_tonumber(L, -1));
            else if (lua_type(L, -1) == LUA_TBOOLEAN) allowed.insert(lua_toboolean(L, -1) ? 1.0 : 0.0);
            lua_pop(L, 1);
        }
        for (size_t i = 0; i < s.col->length; ++i)
            if (s.valid(i)) ++count, ok += allowed.count(s.number(i));
    } else {
        std::vector<std::string> keep;
        for (lua_Integer i = 1; i <= n; ++i) {
            lua_rawgeti(L, 2, i);
            size_t len = 0;
            if (const char* p = lua_tolstring(L, -1, &len)) keep.emplace_back(p, len);
            lua_pop(L, 1);
        }
        bool short_keys = keep.size() <= 16;
        for (const auto& k : keep) short_keys = short_keys && k.size() <= 8;
        auto word_of = [](const char* p, size_t n) {
            uint64_t w = 0;
            std::memcpy(&w, p, n);
            return w;
        };
        if (short_keys) {
            // Small sets of short codes (countries, tiers): compare (length, 8-byte word) pairs.
            uint64_t words[16];
            size_t sizes[16];
            for (size_t j = 0; j < keep.size(); ++j) words[j] = word_of(keep[j].data(), sizes[j] = keep[j].size());
            const size_t nk = keep.size();
            const size_t n = s.col->length;
            const int64_t total = s.col->offsets32 ? s.col->offsets32[n] : (n ? s.col->offsets64[n] : 0);
            const char* end8 = s.col->chars + std::max<int64_t>(total - 8, 0);
            for (size_t i = 0; i < n; ++i) {
                if (s.col->validity && !s.valid(i)) continue;
                ++count;
                std::string_view v = s.str(i);
                if (v.size() > 8) continue;
                uint64_t w;
                if (v.data() <= end8 && total >= 8) {
                    // one unaligned 8-byte load, masked to the string's length (little-endian)
                    std::memcpy(&w, v.data(), 8);
                    w &= v.size() == 8 ? ~uint64_t(0) : ((uint64_t(1) << (8 * v.size())) - 1);
                } else {
                    w = word_of(v.data(), v.size());
                }
                bool hit = false;  // branch-free over the set: values arrive in random order
                for (size_t j = 0; j < nk; ++j) hit |= (words[j] == w) & (sizes[j] == v.size());
                ok += hit;
            }
        } else if (keep.size() <= 16) {
            // Small sets (the usual case): length check and memcmp beat hashing every value.
            for (size_t i = 0; i < s.col->length; ++i) {
                if (!s.valid(i)) continue;
                ++count;
                std::string_view v = s.str(i);
                for (const auto& k : keep)
                    if (k.size() == v.size() && std::memcmp(k.data(), v.data(), v.size()) == 0) {
                        ++ok;
                        break;
                    }
            }
        } else {
            std::unordered_set<std::string_view> allowed(keep.begin(), keep.end());
            for (size_t i = 0; i < s.col->length; ++i)
                if (s.valid(i)) ++count, ok += allowed.count(s.str(i));
        }
    }
    lua_pushnumber(L, count ? double(ok) / double(count) : 1.0);
    return 1;
}
int col_psi(lua_State* L) {
    auto& s = check_column(L);
    Value profile = to_value(L, 2);
    double v = 0;
    try {
        v = psi(*s.col, profile);
    } catch (const Error& e) {
        return luaL_error(L, "%s", e.what());
    }
    push_number_or_nil(L, v);
    return 1;
}
int col_profile(lua_State* L) {
    auto& s = check_column(L);
    push_value(L, profile_column(*s.col, int(luaL_optinteger(L, 2, 10))));
    return 1;
}

void register_column_meta(lua_State* L) {
    if (luaL_newmetatable(L, kColumnMeta)) {
        static const luaL_Reg methods[] = {
            {"name", col_name}, {"type", col_type}, {"count", col_count}, {"null_count", col_null_count},
            {"null_rate", col_null_rate}, {"min", col_min}, {"max", col_max}, {"mean", col_mean},
            {"stddev", col_stddev}, {"quantile", col_quantile}, {"distinct_count", col_distinct},
            {"duplicate_count", col_duplicate_count}, {"pattern_share", col_pattern_share},
            {"allowed_share", col_allowed_share}, {"count_outside", col_count_outside}, {"psi", col_psi}, {"profile", col_profile}, {nullptr, nullptr}};
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

// batch:column(name) -> column userdata (upvalue 1: the name -> ColumnState* map as light userdata)
int batch_column(lua_State* L) {
    const char* name = luaL_checkstring(L, 2);
    auto* states = static_cast<std::unordered_map<std::string, ColumnState>*>(lua_touserdata(L, lua_upvalueindex(1)));
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
    const char* name = luaL_checkstring(L, 2);
    auto* states = static_cast<std::unordered_map<std::string, ColumnState>*>(lua_touserdata(L, lua_upvalueindex(1)));
    lua_pushboolean(L, states->count(name) > 0);
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
    auto& impl = host.impl();
    impl.reset_if_needed();
    lua_State* L = impl.L;
    register_column_meta(L);

    std::unordered_map<std::string, ColumnState> states;
    for (const auto& c : batch.columns) {
        if (c.length != batch.rows)
            throw_error(ErrorKind::InvalidArgument, "column '{}' has {} rows, the batch {}", c.name, c.length, batch.rows);
        states[c.name].col = &c;
    }
    t_live_epoch = ++g_epoch_counter;
    struct EpochGuard {
        ~EpochGuard() { t_live_epoch = 0; }
    } guard;

    std::vector<RuleResult> out;
    for (const auto& rule : rules) {
        std::string rule_name = rule.name.empty() ? stem_of(rule.plugin) : rule.name;
        std::string column = text_of(rule.args.find("column"));
        auto fail_rule = [&](std::string message) {
            out.push_back({rule_name, column, rule.severity, "error", Value{}, "", std::move(message)});
        };
        Plugin* p = nullptr;
        try {
            p = &impl.load(rule.plugin, "check");
        } catch (const Error& e) {
            fail_rule(e.what());
            continue;
        }
        L = impl.L;
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
        lua_pushlightuserdata(L, &states);
        lua_pushcclosure(L, batch_column, 1);
        lua_setfield(L, -2, "column");
        lua_pushlightuserdata(L, &states);
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

Value profile_column(const ColumnView& column, int bins) {
    ColumnState s;
    s.col = &column;
    if (column.type == ColumnType::String || column.type == ColumnType::Bool) {
        std::unordered_map<std::string, size_t> counts;
        size_t total = 0;
        for (size_t i = 0; i < column.length; ++i) {
            if (!s.valid(i)) continue;
            ++total;
            if (column.type == ColumnType::Bool) ++counts[s.number(i) ? "true" : "false"];
            else ++counts[std::string(s.str(i))];
        }
        std::vector<std::pair<std::string, size_t>> sorted(counts.begin(), counts.end());
        std::sort(sorted.begin(), sorted.end());
        Value::Map shares;
        for (const auto& [k, c] : sorted) shares.emplace_back(k, double(c) / double(total ? total : 1));
        return Value(Value::Map{{"kind", "categorical"}, {"shares", Value(std::move(shares))}});
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

double psi(const ColumnView& column, const Value& profile) {
    const Value* kind = profile.find("kind");
    const Value* shares = profile.find("shares");
    if (!kind || !kind->is_string() || !shares)
        throw_error(ErrorKind::InvalidArgument, "psi: the reference profile needs kind and shares (make it with profile())");
    ColumnState s;
    s.col = &column;
    static constexpr double eps = 1e-4;
    auto term = [](double cur, double ref) {
        cur = std::max(cur, eps);
        ref = std::max(ref, eps);
        return (cur - ref) * std::log(cur / ref);
    };
    double total_psi = 0;
    if (kind->str() == "categorical") {
        std::unordered_map<std::string, size_t> counts;
        size_t total = 0;
        for (size_t i = 0; i < column.length; ++i) {
            if (!s.valid(i)) continue;
            ++total;
            if (column.type == ColumnType::String) ++counts[std::string(s.str(i))];
            else if (column.type == ColumnType::Bool) ++counts[s.number(i) ? "true" : "false"];
            else ++counts[fmt::format("{}", s.number(i))];
        }
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
    for (size_t i = 0; i < column.length; ++i) {
        if (!s.valid(i)) continue;
        ++counts[size_t(std::upper_bound(cuts.begin(), cuts.end(), s.number(i)) - cuts.begin())];
        ++total;
    }
    if (!total) return NAN;
    for (size_t b = 0; b < counts.size(); ++b) total_psi += term(double(counts[b]) / double(total), ref[b].number());
    return total_psi;
}

} // namespace keel::plugins

// core/plugins/bounded_libs.cpp
// Library functions a plugin can reach, bounded by its instruction budget. Lua counts instructions,
// not the work one C call does: string.rep('', 2^40), table.move({}, 1, 2^40, 2) or a backtracking
// pattern like '.-.-.-.-b' run for minutes inside one instruction. Each such function is replaced
// (in the real library tables, so `('x'):find` goes through it too) by a wrapper that charges its
// work to the budget before calling Lua's own function in the same frame (error messages keep the
// function's name):
//   - linear functions (sub, upper, format, pack, utf8.*, tonumber, os.date, ...): 1 + bytes/64;
//   - string.rep: the size it would build (over the per-string limit: refused at once);
//   - table.concat/unpack/move/insert/remove/sort: the elements they walk (__len is honoured as
//     Lua does, so a fake huge length costs what it claims);
//   - find/match/gmatch/gsub: an upper bound on the steps of Lua's backtracking matcher (below).
// Allocation is charged by the allocator (host.cpp), so building big strings or tables costs too.
#include "keel/common/error.hpp"
#include "lua_internal.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string_view>
#include <utility>

namespace keel::plugins {

namespace {

enum Fn : int {
    kByte, kChar, kFormat, kLower, kUpper, kReverse, kSub, kPack, kPackSize, kUnpack,
    kUtf8Char, kUtf8Codepoint, kUtf8Len, kUtf8Offset, kToNumber, kOsDate,  // linear ones end here
    kFind, kMatch, kGmatch, kGsub, kRep, kConcat, kTableUnpack, kMove, kInsert, kRemove, kSort, kCount
};
constexpr int kLinearCount = kOsDate + 1;

struct Original {
    const char* lib;   // "_G" for base functions
    const char* name;
    const char* shown; // in budget errors
    lua_CFunction fn = nullptr;
};

// Lua's library functions are the same C functions in every state: captured once.
Original g_orig[kCount] = {
    {"string", "byte", "string.byte"}, {"string", "char", "string.char"}, {"string", "format", "string.format"},
    {"string", "lower", "string.lower"}, {"string", "upper", "string.upper"}, {"string", "reverse", "string.reverse"},
    {"string", "sub", "string.sub"}, {"string", "pack", "string.pack"}, {"string", "packsize", "string.packsize"},
    {"string", "unpack", "string.unpack"}, {"utf8", "char", "utf8.char"}, {"utf8", "codepoint", "utf8.codepoint"},
    {"utf8", "len", "utf8.len"}, {"utf8", "offset", "utf8.offset"}, {"_G", "tonumber", "tonumber"},
    {"os", "date", "os.date"}, {"string", "find", "string.find"}, {"string", "match", "string.match"},
    {"string", "gmatch", "string.gmatch"}, {"string", "gsub", "string.gsub"}, {"string", "rep", "string.rep"},
    {"table", "concat", "table.concat"}, {"table", "unpack", "table.unpack"}, {"table", "move", "table.move"},
    {"table", "insert", "table.insert"}, {"table", "remove", "table.remove"}, {"table", "sort", "table.sort"},
};
std::once_flag g_captured;

int64_t clamp_units(double units) { return units >= 1e18 ? int64_t(1e18) : int64_t(units); }

int64_t string_bytes_of_args(lua_State* L) {
    int64_t bytes = 0;
    for (int i = 1, n = lua_gettop(L); i <= n; ++i)
        if (lua_type(L, i) == LUA_TSTRING) bytes += int64_t(lua_rawlen(L, i));
    return bytes;
}

template <int I>
int linear(lua_State* L) {
    charge(L, 1 + string_bytes_of_args(L) / 64, g_orig[I].shown);
    return g_orig[I].fn(L);
}

// ---------------------------------------------------------------------------------------------
// Pattern cost. Lua's matcher branches only at the quantifiers * + - ? (patterns have no groups
// under quantifiers): an attempt at one start position explores at most prod(choices) paths, where
// a quantified class can only take as many characters as the longest run of subject characters it
// matches (R), and the k unbounded quantifiers together take at most the rest of the subject
// (C(n+k, k) ways). Each path walks the pattern's items and, for %b and back-references, up to n
// characters. Unanchored searches try every start position. This is an upper bound: charging it
// refuses only patterns that really can blow up on this subject (`.-.-.-.-b` on 200 characters),
// while anchored patterns and quantifiers over classes that match little stay cheap.

bool match_class(unsigned char c, unsigned char cl) {
    bool res;
    switch (std::tolower(cl)) {
    case 'a': res = std::isalpha(c); break;
    case 'c': res = std::iscntrl(c); break;
    case 'd': res = std::isdigit(c); break;
    case 'g': res = std::isgraph(c); break;
    case 'l': res = std::islower(c); break;
    case 'p': res = std::ispunct(c); break;
    case 's': res = std::isspace(c); break;
    case 'u': res = std::isupper(c); break;
    case 'w': res = std::isalnum(c); break;
    case 'x': res = std::isxdigit(c); break;
    default: return cl == c;
    }
    return std::isupper(cl) ? !res : res;
}

// [set] with p at '[' and ec at the closing ']'.
bool match_set(unsigned char c, std::string_view p, size_t ec) {
    size_t i = 0;
    bool sig = true;
    if (i + 1 < p.size() && p[i + 1] == '^') sig = false, ++i;
    while (++i < ec) {
        if (p[i] == '%' && i + 1 < ec) {
            ++i;
            if (match_class(c, static_cast<unsigned char>(p[i]))) return sig;
        } else if (i + 2 < ec && p[i + 1] == '-') {
            if (static_cast<unsigned char>(p[i]) <= c && c <= static_cast<unsigned char>(p[i + 2])) return sig;
            i += 2;
        } else if (static_cast<unsigned char>(p[i]) == c) {
            return sig;
        }
    }
    return !sig;
}

// One past the single-character class at p[i]; npos when the pattern is malformed there.
size_t class_end(std::string_view p, size_t i) {
    if (p[i] == '%') return i + 1 < p.size() ? i + 2 : std::string_view::npos;
    if (p[i] != '[') return i + 1;
    size_t j = i + 1;
    if (j < p.size() && p[j] == '^') ++j;
    do {
        if (j >= p.size()) return std::string_view::npos;
        if (p[j++] == '%' && j < p.size()) ++j;
    } while (j < p.size() && p[j] != ']');
    return j < p.size() ? j + 1 : std::string_view::npos;
}

bool single_match(unsigned char c, std::string_view cls) {
    switch (cls[0]) {
    case '.': return true;
    case '%': return match_class(c, static_cast<unsigned char>(cls[1]));
    case '[': return match_set(c, cls, cls.size() - 1);
    default: return static_cast<unsigned char>(cls[0]) == c;
    }
}

size_t longest_run(std::string_view s, std::string_view cls) {
    if (cls == ".") return s.size();
    size_t best = 0, run = 0;
    for (char c : s) {
        run = single_match(static_cast<unsigned char>(c), cls) ? run + 1 : 0;
        best = std::max(best, run);
    }
    return best;
}

double pattern_steps(std::string_view s, std::string_view p, bool anchors) {
    const double n = double(s.size());
    size_t i = 0;
    bool anchored = false;
    if (anchors && !p.empty() && p[0] == '^') anchored = true, i = 1;
    double runs = 1, branches = 1, items = 1, scans = 0;
    int unbounded = 0, measured = 0;
    while (i < p.size()) {
        char c = p[i];
        ++items;
        if (c == '(' || c == ')') { ++i; continue; }
        if (c == '$' && i + 1 == p.size()) break;
        if (c == '%' && i + 1 < p.size()) {
            char d = p[i + 1];
            if (d == 'b') { scans += 1; i += 4; continue; }
            if (d >= '0' && d <= '9') { scans += 1; i += 2; continue; }
            if (d == 'f') {
                i += 2;
                if (i < p.size() && p[i] == '[') {
                    size_t e = class_end(p, i);
                    if (e == std::string_view::npos) break;
                    i = e;
                }
                continue;
            }
        }
        size_t e = class_end(p, i);
        if (e == std::string_view::npos) {  // malformed: Lua raises when it gets there; assume the worst
            runs *= n + 1;
            ++unbounded;
            break;
        }
        char q = e < p.size() ? p[e] : 0;
        if (q == '*' || q == '+' || q == '-') {
            // Measuring runs costs a pass over the subject per quantifier: the first 16 are enough.
            double r = measured++ < 16 ? double(longest_run(s, p.substr(i, e - i))) : n;
            runs = std::min(runs * (r + 1), 1e300);
            ++unbounded;
            i = e + 1;
        } else if (q == '?') {
            branches = std::min(branches * 2, 1e300);
            i = e + 1;
        } else {
            i = e;
        }
    }
    double ways = 1;  // C(n + k, k)
    for (int k = 1; k <= unbounded && ways < 1e300; ++k) ways = ways * (n + k) / k;
    double per_start = std::min(runs, ways) * branches * (items + scans * (n + 1));
    return std::min(per_start * (anchored ? 1 : n + 1), 1e300);
}

// Plain search (memchr for the first byte, then compare): n plus m per occurrence of that byte.
double plain_steps(std::string_view s, std::string_view p) {
    if (p.empty()) return 1;
    double hits = double(std::count(s.begin(), s.end(), p[0]));
    return double(s.size()) + hits * double(p.size());
}

bool has_specials(std::string_view p) { return p.find_first_of("^$*+?.([%-") != std::string_view::npos; }

template <int I>
int pattern_fn(lua_State* L) {
    size_t ls = 0, lp = 0;
    const char* s = luaL_checklstring(L, 1, &ls);
    const char* p = luaL_checklstring(L, 2, &lp);
    std::string_view subject(s, ls), pattern(p, lp);
    if (I != kGsub) {  // start position, as Lua's posrelat reads it
        lua_Integer init = luaL_optinteger(L, 3, 1);
        size_t from = init > 0 ? size_t(init) : init == 0 || -init > lua_Integer(ls) ? 1 : size_t(lua_Integer(ls) + init + 1);
        subject = from - 1 <= ls ? subject.substr(from - 1) : std::string_view();
    }
    double steps;
    if (I == kFind && (lua_toboolean(L, 4) || !has_specials(pattern))) steps = plain_steps(subject, pattern);
    else steps = pattern_steps(subject, pattern, I != kGmatch);
    if (I == kGsub && lua_type(L, 3) == LUA_TSTRING)  // the replacement is scanned once per match
        steps += double(lua_rawlen(L, 3)) * (double(subject.size()) + 1);
    // Four matcher steps cost about one VM instruction.
    double units = 1 + double(ls) / 64 + steps / 4;
    auto& impl = Host::Impl::from(L);
    if (impl.enforce_cap && !impl.aborting() && double(impl.spent) + units >= double(impl.budget)) {
        std::string shown(pattern.substr(0, 40));
        if (pattern.size() > 40) shown += "...";
        std::string what = fmt::format(
            "{} (pattern '{}' on {} bytes may take up to {:.3g} matching steps; anchor it with '^', use fewer "
            "'-', '*', '+' over '.' or shorter strings)",
            g_orig[I].shown, shown, subject.size(), steps);
        charge(L, clamp_units(units), what.c_str());
    }
    charge(L, clamp_units(units), g_orig[I].shown);
    return g_orig[I].fn(L);
}

int bounded_rep(lua_State* L) {
    size_t l = 0, lsep = 0;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || l + lsep == 0) {  // Lua would loop n times to build "" (2^40 times for rep('', 2^40))
        lua_pushliteral(L, "");
        return 1;
    }
    double total = double(l) * double(n) + double(lsep) * double(n - 1);
    auto& impl = Host::Impl::from(L);
    if (impl.enforce_cap && total > double(impl.limits.string_bytes)) {
        start_abort(impl, &Host::Impl::memory_exceeded,
                    fmt::format("string.rep would build {:.0f} bytes, over the per-string limit of {} bytes", total,
                                impl.limits.string_bytes));
        raise_abort(L);
    }
    charge(L, 1 + clamp_units(total / 64), "string.rep");
    return g_orig[kRep].fn(L);
}

// Elements from..to a table function will walk, charged as one instruction each.
void charge_span(lua_State* L, lua_Integer from, lua_Integer to, int fn, double factor = 1) {
    if (to < from) return charge(L, 1, g_orig[fn].shown);
    charge(L, 1 + clamp_units((double(to) - double(from) + 1) * factor), g_orig[fn].shown);
}

// For concat and unpack: the last index, as the original computes it; passed on explicitly so a
// __len metamethod runs once.
lua_Integer last_index(lua_State* L, int arg) {
    if (!lua_isnoneornil(L, arg)) return luaL_checkinteger(L, arg);
    lua_Integer last = luaL_len(L, 1);
    lua_settop(L, std::max(lua_gettop(L), arg));
    lua_pushinteger(L, last);
    lua_replace(L, arg);
    return last;
}

int bounded_concat(lua_State* L) {
    if (lua_type(L, 1) != LUA_TTABLE) return g_orig[kConcat].fn(L);  // let Lua word the error
    lua_Integer first = luaL_optinteger(L, 3, 1);
    charge_span(L, first, last_index(L, 4), kConcat);
    return g_orig[kConcat].fn(L);
}

int bounded_unpack(lua_State* L) {
    if (lua_type(L, 1) != LUA_TTABLE) return g_orig[kTableUnpack].fn(L);
    lua_Integer first = luaL_optinteger(L, 2, 1);
    charge_span(L, first, last_index(L, 3), kTableUnpack);
    return g_orig[kTableUnpack].fn(L);
}

int bounded_move(lua_State* L) {
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    charge_span(L, f, e, kMove);
    return g_orig[kMove].fn(L);
}

// insert(t, pos, v) and remove(t, pos) shift the elements from pos to #t.
template <int I>
int bounded_shift(lua_State* L) {
    if (lua_type(L, 1) == LUA_TTABLE && lua_gettop(L) >= (I == kInsert ? 3 : 2)) {
        lua_Integer n = luaL_len(L, 1);
        lua_Integer pos = lua_isinteger(L, 2) ? lua_tointeger(L, 2) : 1;
        charge_span(L, std::min(pos, n), n, I);
    }
    return g_orig[I].fn(L);
}

int bounded_sort(lua_State* L) {
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, 1);
        charge_span(L, 1, n, kSort, n > 1 ? std::log2(double(n)) + 1 : 1);
    }
    return g_orig[kSort].fn(L);
}

template <int... Is>
lua_CFunction linear_at(int i, std::integer_sequence<int, Is...>) {
    lua_CFunction fns[] = {&linear<Is>...};
    return fns[i];
}

lua_CFunction wrapper_of(int i) {
    if (i < kLinearCount) return linear_at(i, std::make_integer_sequence<int, kLinearCount>{});
    switch (i) {
    case kFind: return &pattern_fn<kFind>;
    case kMatch: return &pattern_fn<kMatch>;
    case kGmatch: return &pattern_fn<kGmatch>;
    case kGsub: return &pattern_fn<kGsub>;
    case kRep: return &bounded_rep;
    case kConcat: return &bounded_concat;
    case kTableUnpack: return &bounded_unpack;
    case kMove: return &bounded_move;
    case kInsert: return &bounded_shift<kInsert>;
    case kRemove: return &bounded_shift<kRemove>;
    case kSort: return &bounded_sort;
    }
    return nullptr;
}

void push_lib(lua_State* L, const char* lib) {
    if (std::strcmp(lib, "_G") == 0) lua_pushglobaltable(L);
    else lua_getglobal(L, lib);
}

} // namespace

void install_bounded_libs(lua_State* L) {
    std::call_once(g_captured, [L] {
        for (auto& o : g_orig) {
            push_lib(L, o.lib);
            lua_getfield(L, -1, o.name);
            o.fn = lua_tocfunction(L, -1);
            lua_pop(L, 2);
            if (!o.fn) throw_error(ErrorKind::Internal, "Lua library function {} is missing", o.shown);
        }
    });
    for (int i = 0; i < kCount; ++i) {
        push_lib(L, g_orig[i].lib);
        lua_pushcfunction(L, wrapper_of(i));
        lua_setfield(L, -2, g_orig[i].name);
        lua_pop(L, 1);
    }
    lua_pushcfunction(L, sandbox_pcall);
    lua_setglobal(L, "pcall");
    lua_pushcfunction(L, sandbox_xpcall);
    lua_setglobal(L, "xpcall");
}

} // namespace keel::plugins

// core/plugins/host.cpp
#include "keel/plugins/host.hpp"

#include "keel/common/error.hpp"
#include "lua_internal.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>

namespace fs = std::filesystem;

namespace keel::plugins {

// ---------------------------------------------------------------------------------------------
// Stable hashing

uint64_t stable_hash(std::string_view key, std::string_view salt) noexcept {
    uint64_t h = 0xcbf29ce484222325ULL;
    auto mix = [&h](unsigned char c) { h = (h ^ c) * 0x100000001b3ULL; };
    for (char c : salt) mix(static_cast<unsigned char>(c));
    mix(0xFF);
    for (char c : key) mix(static_cast<unsigned char>(c));
    // murmur3 fmix64: FNV alone leaves sequential ids poorly spread in the high bits.
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

double bucket(std::string_view key, std::string_view salt) noexcept {
    return double(stable_hash(key, salt) >> 11) * 0x1.0p-53;
}

double bucket(int64_t key, std::string_view salt) noexcept {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, key);
    return bucket(std::string_view(buf, size_t(end - buf)), salt);
}

int lua_bucket(lua_State* L) {
    size_t salt_len = 0;
    const char* salt = luaL_optlstring(L, 2, "", &salt_len);
    std::string_view s(salt, salt_len);
    size_t key_len = lua_type(L, 1) == LUA_TSTRING ? lua_rawlen(L, 1) : 0;
    if (salt_len + key_len > 1024) charge(L, 1 + int64_t(salt_len + key_len) / 64, "ctx.bucket");
    double r = 0;
    switch (lua_type(L, 1)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, 1)) {
            r = bucket(int64_t(lua_tointeger(L, 1)), s);
        } else {
            double d = lua_tonumber(L, 1);
            if (std::floor(d) == d && std::fabs(d) < 9.0e15) {
                r = bucket(int64_t(d), s);
            } else {
                char buf[40];
                int n = std::snprintf(buf, sizeof buf, "%.17g", d);
                r = bucket(std::string_view(buf, size_t(n)), s);
            }
        }
        break;
    case LUA_TSTRING: {
        size_t n = 0;
        const char* k = lua_tolstring(L, 1, &n);
        r = bucket(std::string_view(k, n), s);
        break;
    }
    default:
        return luaL_error(L, "ctx.bucket: key must be a string or a number, got %s (does the request carry the key?)",
                          luaL_typename(L, 1));
    }
    lua_pushnumber(L, r);
    return 1;
}

// ---------------------------------------------------------------------------------------------
// Plugin search path

namespace {
std::mutex g_search_mutex;
std::vector<fs::path> g_search_path;
} // namespace

void set_search_path(std::vector<fs::path> roots) {
    std::lock_guard lock(g_search_mutex);
    g_search_path = std::move(roots);
}

std::vector<fs::path> search_path() {
    std::lock_guard lock(g_search_mutex);
    std::vector<fs::path> roots = g_search_path;
    if (const char* env = std::getenv("KEEL_PLUGIN_PATH"); env && *env) {
        std::stringstream ss(env);
        std::string item;
        while (std::getline(ss, item, ':'))
            if (!item.empty()) roots.emplace_back(item);
    }
    return roots;
}

fs::path resolve_plugin(std::string_view ref) {
    fs::path p{std::string(ref)};
    std::error_code ec;
    if (p.is_absolute()) {
        if (fs::is_regular_file(p, ec)) return p;
        throw_error(ErrorKind::NotFound, "plugin file '{}' does not exist", ref);
    }
    if (fs::is_regular_file(p, ec)) return fs::absolute(p, ec);
    std::string looked = fs::absolute(p, ec).string();
    for (const auto& root : search_path()) {
        fs::path candidate = root / p;
        if (fs::is_regular_file(candidate, ec)) return fs::absolute(candidate, ec);
        looked += ", " + candidate.string();
    }
    throw_error(ErrorKind::NotFound,
                "plugin '{}' not found (looked in {}); give a path to the .lua file or add its folder "
                "with keel.plugins.set_search_path",
                ref, looked);
}

fs::path plugins_root_of(const fs::path& path) {
    for (fs::path dir = path.parent_path(); !dir.empty(); dir = dir.parent_path()) {
        if (dir.filename() == "plugins") return dir;
        if (dir == dir.parent_path()) break;
    }
    return path.parent_path();
}

// ---------------------------------------------------------------------------------------------
// Value <-> Lua

void push_value(lua_State* L, const Value& v) {
    luaL_checkstack(L, 4, "value nesting");
    std::visit(
        [L](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) lua_pushnil(L);
            else if constexpr (std::is_same_v<T, bool>) lua_pushboolean(L, x);
            else if constexpr (std::is_same_v<T, int64_t>) lua_pushinteger(L, lua_Integer(x));
            else if constexpr (std::is_same_v<T, double>) lua_pushnumber(L, x);
            else if constexpr (std::is_same_v<T, std::string>) lua_pushlstring(L, x.data(), x.size());
            else if constexpr (std::is_same_v<T, Value::Array>) {
                lua_createtable(L, int(x.size()), 0);
                for (size_t i = 0; i < x.size(); ++i) {
                    push_value(L, x[i]);
                    lua_rawseti(L, -2, lua_Integer(i + 1));
                }
            } else {
                lua_createtable(L, 0, int(x.size()));
                for (const auto& [k, val] : x) {
                    lua_pushlstring(L, k.data(), k.size());
                    push_value(L, val);
                    lua_rawset(L, -3);
                }
            }
        },
        v.data);
}

namespace {
Value to_value_in(lua_State* L, int index, int depth, size_t& left);
}

Value to_value(lua_State* L, int index, int depth) {
    size_t left = kMaxValueNodes;
    Value v = to_value_in(L, index, depth, left);
    // Inside a call (a C helper converting a plugin's table), the walk is work like any other: a
    // value costs about what 64 instructions do (a string, a map entry, sorting the keys).
    charge(L, int64_t(kMaxValueNodes - left) * 64, "converting a table to data");
    return v;
}

namespace {
Value to_value_in(lua_State* L, int index, int depth, size_t& left) {
    if (left-- == 0)
        throw_error(ErrorKind::PluginError,
                    "plugin returned more than {} values (a table shared many times over?): return less data",
                    kMaxValueNodes);
    index = lua_absindex(L, index);
    switch (lua_type(L, index)) {
    case LUA_TNIL: return Value{};
    case LUA_TBOOLEAN: return Value(bool(lua_toboolean(L, index)));
    case LUA_TNUMBER:
        if (lua_isinteger(L, index)) return Value(int64_t(lua_tointeger(L, index)));
        return Value(double(lua_tonumber(L, index)));
    case LUA_TSTRING: {
        size_t n = 0;
        const char* s = lua_tolstring(L, index, &n);
        return Value(std::string(s, n));
    }
    case LUA_TTABLE: {
        if (depth > 32) throw_error(ErrorKind::PluginError, "plugin returned a table nested deeper than 32 levels");
        luaL_checkstack(L, 4, "value nesting");
        lua_Integer n = lua_Integer(lua_rawlen(L, index));
        lua_Integer count = 0;
        lua_pushnil(L);
        while (lua_next(L, index)) {
            ++count;
            lua_pop(L, 1);
        }
        if (n > 0 && count == n) {
            Value::Array arr;
            arr.reserve(size_t(n));
            for (lua_Integer i = 1; i <= n; ++i) {
                lua_rawgeti(L, index, i);
                arr.push_back(to_value_in(L, -1, depth + 1, left));
                lua_pop(L, 1);
            }
            return Value(std::move(arr));
        }
        Value::Map map;
        lua_pushnil(L);
        while (lua_next(L, index)) {
            std::string key;
            if (lua_type(L, -2) == LUA_TSTRING) {
                size_t kn = 0;
                const char* ks = lua_tolstring(L, -2, &kn);
                key.assign(ks, kn);
            } else if (lua_type(L, -2) == LUA_TNUMBER) {
                key = lua_isinteger(L, -2) ? std::to_string(lua_tointeger(L, -2))
                                           : fmt::format("{}", lua_tonumber(L, -2));
            } else {
                key = luaL_typename(L, -2);
            }
            map.emplace_back(std::move(key), to_value_in(L, -1, depth + 1, left));
            lua_pop(L, 1);
        }
        std::sort(map.begin(), map.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        return Value(std::move(map));
    }
    default: return Value(std::string("<") + luaL_typename(L, index) + ">");
    }
}
} // namespace

// ---------------------------------------------------------------------------------------------
// The state: allocator with a cap, budget hook, sandbox

namespace {

// Growth is refused over the memory cap, for a string over the per-string limit and once the call
// is aborting; every byte grown is charged to the instruction budget (1 per 64 bytes: copying a
// string costs about what the instructions that asked for it do), so loops that build and drop
// big strings run out of budget, not out of time.
void* capped_alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
    auto& impl = *static_cast<Host::Impl*>(ud);
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        std::free(ptr);
        impl.used -= old;
        return nullptr;
    }
    if (nsize > old && impl.enforce_cap) {
        if (impl.aborting()) return nullptr;
        size_t grow = nsize - old;
        if (impl.used + grow > impl.limits.memory_bytes) {
            // Not an abort yet: Lua collects and asks again, and only raises (LUA_ERRMEM) if the
            // memory is really held.
            if (impl.memory_where.empty()) impl.memory_where = plugin_location(impl);
            return nullptr;
        }
        // With ptr null, osize is the type of the object Lua creates.
        if (!ptr && osize == LUA_TSTRING && nsize > impl.limits.string_bytes + 64) {
            start_abort(impl, &Host::Impl::memory_exceeded,
                        fmt::format("a string of {} bytes is over the per-string limit of {} bytes", nsize,
                                    impl.limits.string_bytes));
            return nullptr;
        }
        impl.spent += int64_t(grow >> 6);
        if (impl.spent >= impl.budget) {
            start_abort(impl, &Host::Impl::budget_exceeded,
                        fmt::format("instruction budget of {} instructions exceeded (allocation counts against it)",
                                    impl.budget));
            return nullptr;
        }
        if (grow >= (size_t(64) << 10) && coarse_now_ns() > impl.deadline_ns) {
            start_abort(impl, &Host::Impl::deadline_exceeded,
                        fmt::format("time limit of {} ms exceeded", impl.limits.call_ms));
            return nullptr;
        }
    }
    void* p = std::realloc(ptr, nsize);
    if (!p) return nullptr;
    impl.used = impl.used - old + nsize;
    impl.peak = std::max(impl.peak, impl.used);
    return p;
}

int l_unknown_global(lua_State* L) {
    const char* name = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : luaL_typename(L, 2);
    return luaL_error(L,
                      "unknown global '%s': plugins run in a sandbox without io, os (but os.time/clock/date), "
                      "load, dofile, debug and require outside plugins/",
                      name);
}

// print goes to stderr, one line of at most 4 KiB; its bytes are charged like any other work.
int l_print(lua_State* L) {
    constexpr size_t kMaxLine = 4096;
    int n = lua_gettop(L);
    std::string line;
    size_t total = 0;
    for (int i = 1; i <= n; ++i) {
        size_t len = 0;
        const char* s = luaL_tolstring(L, i, &len);
        total += len + (i > 1);
        if (i > 1 && line.size() < kMaxLine) line += '\t';
        if (line.size() < kMaxLine) line.append(s, std::min(len, kMaxLine - line.size()));
        lua_pop(L, 1);
    }
    charge(L, 16 + int64_t(total / 64), "print");
    if (total > line.size()) line += fmt::format(" ... ({} bytes)", total);
    std::fprintf(stderr, "[keel plugin] %s\n", line.c_str());
    return 0;
}

int l_setmetatable(lua_State* L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL) return luaL_error(L, "setmetatable: __gc finalizers are not allowed in plugins");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));  // the real setmetatable
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

bool valid_module_name(std::string_view name) {
    if (name.empty() || name.front() == '.' || name.back() == '.') return false;
    char prev = 0;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
        if (!ok || (c == '.' && prev == '.')) return false;
        prev = c;
    }
    return true;
}

// True when `path` is `root` or below it, compared component by component ("plugins_evil" is not
// under "plugins"). Both must be canonical.
bool is_under(const fs::path& root, const fs::path& path) {
    auto p = path.begin();
    for (const auto& part : root) {
        if (part.empty()) continue;
        while (p != path.end() && p->empty()) ++p;
        if (p == path.end() || *p != part) return false;
        ++p;
    }
    return true;
}

int l_require(lua_State* L) {
    size_t n = 0;
    const char* name = luaL_checklstring(L, 1, &n);
    std::string_view sv(name, n);
    charge(L, 1, "require");
    if (!valid_module_name(sv))
        return luaL_error(L,
                          "require('%s') refused: a module is a dotted name under plugins/ (letters, digits, _ and "
                          "dots; no '/', '..' or absolute paths)",
                          name);
    auto& impl = Host::Impl::from(L);
    fs::path root = lua_tostring(L, lua_upvalueindex(1));
    std::string rel(sv);
    std::replace(rel.begin(), rel.end(), '.', '/');
    fs::path file = root / (rel + ".lua");
    // Resolve every symlink, then compare: a link (or a link's parent) leading out of plugins/ is refused.
    std::error_code ec;
    fs::path canon_root = fs::canonical(root, ec);
    fs::path canon = ec ? fs::path() : fs::canonical(file, ec);
    if (ec || !fs::is_regular_file(canon, ec))
        return luaL_error(L, "require('%s'): no module %s under %s (plugins may only require modules under plugins/)",
                          name, file.c_str(), root.c_str());
    if (!is_under(canon_root, canon))
        return luaL_error(L,
                          "require('%s') refused: %s resolves to %s, outside %s (symlinks may not lead out of "
                          "plugins/)",
                          name, file.c_str(), canon.c_str(), canon_root.c_str());
    std::string cs = canon.string();
    if (auto it = impl.modules.find(cs); it != impl.modules.end()) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, it->second);
        return 1;
    }
    std::ifstream in(canon, std::ios::binary);
    std::string src((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    charge(L, 1000 + int64_t(src.size() / 64), "require");  // file system calls and compiling
    std::string chunkname = "@plugins/" + rel + ".lua";
    impl.push_sandbox_env(root);
    int env = lua_gettop(L);
    if (luaL_loadbufferx(L, src.data(), src.size(), chunkname.c_str(), "t") != LUA_OK) return lua_error(L);
    lua_pushvalue(L, env);
    lua_setupvalue(L, -2, 1);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    impl.modules[cs] = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_error(ErrorKind::NotFound, "plugin file '{}' cannot be read", path.string());
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

} // namespace

Host::Impl::Impl(Limits l) : limits(l) { open_state(); }
Host::Impl::~Impl() { close_state(); }

void Host::Impl::open_state() {
    enforce_cap = false;
    L = lua_newstate(capped_alloc, this);
    if (!L) throw_error(ErrorKind::Internal, "cannot create a Lua state (out of memory)");
    *static_cast<Impl**>(lua_getextraspace(L)) = this;
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
    lua_settop(L, 0);
    install_bounded_libs(L);

    // string.dump goes from the real library too (strings index it through their metatable), and
    // the string metatable is hidden from getmetatable.
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    // The allow-list.
    lua_newtable(L);
    int tpl = lua_gettop(L);
    for (const char* name : {"assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber", "tostring",
                             "type", "xpcall", "rawequal", "rawlen", "rawget", "rawset", "getmetatable", "_VERSION"}) {
        lua_getglobal(L, name);
        lua_setfield(L, tpl, name);
    }
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, l_setmetatable, 1);
    lua_setfield(L, tpl, "setmetatable");
    lua_pushcfunction(L, l_print);
    lua_setfield(L, tpl, "print");
    for (const char* lib : {"string", "table", "math", "utf8"}) {
        lua_getglobal(L, lib);
        lua_setfield(L, tpl, lib);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "unpack");
    lua_setfield(L, tpl, "unpack");
    lua_pop(L, 1);
    lua_newtable(L);  // os: time and clock only (and date/difftime, which only format time)
    lua_getglobal(L, "os");
    for (const char* fn : {"time", "clock", "date", "difftime"}) {
        lua_getfield(L, -1, fn);
        lua_setfield(L, -3, fn);
    }
    lua_pop(L, 1);
    lua_setfield(L, tpl, "os");
    template_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    // Shared metatable of every _ENV: unknown globals raise; the metatable itself is hidden.
    lua_newtable(L);
    lua_pushcfunction(L, l_unknown_global);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setfield(L, LUA_REGISTRYINDEX, "keel.env_meta");

    // The real globals stay reachable to nobody: plugins get their own _ENV.
    lua_settop(L, 0);
    lua_gc(L, LUA_GCGEN, 0, 0);
}

void Host::Impl::close_state() {
    if (!L) return;
    enforce_cap = false;
    lua_close(L);
    L = nullptr;
    used = 0;
}

void Host::Impl::reset_if_needed() {
    if (!needs_reset) return;
    needs_reset = false;
    plugins.clear();
    modules.clear();
    router_slots.clear();
    close_state();
    open_state();
    ++generation;
}

void Host::Impl::push_sandbox_env(const fs::path& plugins_root) {
    luaL_checkstack(L, 8, "sandbox");
    lua_newtable(L);
    int env = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, template_ref);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        // Library tables are copied so one plugin's changes never reach another.
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_newtable(L);
            lua_pushnil(L);
            while (lua_next(L, -3)) {
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, -4);
            }
            lua_remove(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, env);
    }
    lua_pop(L, 1);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    std::string root = plugins_root.string();
    lua_pushlstring(L, root.data(), root.size());
    lua_pushcclosure(L, l_require, 1);
    lua_setfield(L, env, "require");
    lua_getfield(L, LUA_REGISTRYINDEX, "keel.env_meta");
    lua_setmetatable(L, env);
}

CallStatus Host::Impl::pcall(int nargs, int nresults, bool loading, std::string_view chunkname) {
    int base = lua_gettop(L) - nargs - 1;
    start_budget(*this, loading ? limits.load_instructions : limits.call_instructions);
    enforce_cap = true;
    int rc = lua_pcall(L, nargs, nresults, 0);
    enforce_cap = false;
    lua_sethook(L, nullptr, 0, 0);
    if (rc == LUA_OK && !aborting()) return CallStatus::Ok;

    CallStatus status = CallStatus::Error;
    std::string where(chunkname.size() > 0 && chunkname[0] == '@' ? chunkname.substr(1) : chunkname);
    if (budget_exceeded || deadline_exceeded) {
        status = CallStatus::Budget;
        last_error = abort_message;
    } else if (rc == LUA_ERRMEM || memory_exceeded) {
        status = CallStatus::Memory;
        last_error = !abort_message.empty() ? abort_message : memory_cap_message(*this);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        last_error = lua_tostring(L, -1);
    } else {
        last_error = fmt::format("{}: error object is a {} value", where, luaL_typename(L, -1));
    }
    lua_settop(L, base);
    if (status != CallStatus::Error) {
        // An aborted call leaves its garbage behind: give the memory back now.
        lua_gc(L, LUA_GCCOLLECT, 0);
        // Still full after a collection (the plugin kept the runaway data): rebuild the state
        // before its next use so the host stays healthy.
        if (status == CallStatus::Memory && used > limits.memory_bytes / 4 * 3) needs_reset = true;
    }
    return status;
}

void Host::Impl::run_chunk(const fs::path& path, const std::string& chunkname, int env_index, int nresults) {
    env_index = lua_absindex(L, env_index);
    std::string src = read_file(path);
    if (luaL_loadbufferx(L, src.data(), src.size(), chunkname.c_str(), "t") != LUA_OK) {
        std::string msg = lua_tostring(L, -1);
        lua_pop(L, 1);
        throw_error(ErrorKind::PluginError, "plugin {} does not load: {}", chunkname.substr(1), msg);
    }
    lua_pushvalue(L, env_index);
    lua_setupvalue(L, -2, 1);
    if (pcall(0, nresults, true, chunkname) != CallStatus::Ok)
        throw_error(ErrorKind::PluginError, "plugin {} failed while loading: {}", chunkname.substr(1), last_error);
}

void Host::Impl::compile_into(Plugin& p) {
    std::error_code ec;
    auto mtime = fs::last_write_time(p.path, ec);
    auto size = fs::file_size(p.path, ec);
    if (ec) throw_error(ErrorKind::NotFound, "plugin file '{}' is gone: {}", p.path.string(), ec.message());
    int base = lua_gettop(L);
    push_sandbox_env(p.plugins_root);
    int env = lua_gettop(L);
    try {
        run_chunk(p.path, p.chunkname, env, 0);
    } catch (...) {
        lua_settop(L, base);
        throw;
    }
    lua_pushlstring(L, p.entry.data(), p.entry.size());
    if (lua_rawget(L, env) != LUA_TFUNCTION) {
        lua_settop(L, base);
        throw_error(ErrorKind::PluginError, "plugin {} defines no function {}(...): a {} plugin must define it",
                    p.chunkname.substr(1), p.entry, p.entry == "route" ? "routing" : "quality");
    }
    int fn = luaL_ref(L, LUA_REGISTRYINDEX);
    int env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, base);
    luaL_unref(L, LUA_REGISTRYINDEX, p.fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, p.env_ref);
    p.fn_ref = fn;
    p.env_ref = env_ref;
    p.mtime = mtime;
    p.size = size;
    p.status.version += 1;
    p.status.last_error.clear();
}

void Host::Impl::refresh(Plugin& p) {
    auto now = std::chrono::steady_clock::now();
    if (now < p.next_check) return;
    p.next_check = now + std::chrono::milliseconds(limits.reload_check_ms);
    std::error_code ec;
    auto mtime = fs::last_write_time(p.path, ec);
    auto size = ec ? 0 : fs::file_size(p.path, ec);
    if (ec || (mtime == p.mtime && size == p.size)) return;
    try {
        compile_into(p);
    } catch (const Error& e) {
        // Refused: the previous version keeps running; the error is reported once per edit.
        p.mtime = mtime;
        p.size = size;
        p.status.reloads_refused += 1;
        p.status.last_error = e.what();
        std::fprintf(stderr, "[keel plugin] reload of %s refused, previous version kept: %s\n", p.ref.c_str(),
                     e.what());
    }
}

Plugin& Host::Impl::load(std::string_view ref, std::string_view entry) {
    reset_if_needed();
    std::string key;
    key.reserve(ref.size() + entry.size() + 1);
    key.append(ref).append(1, '#').append(entry);
    auto now = std::chrono::steady_clock::now();
    if (auto it = plugins.find(key); it != plugins.end()) {
        Plugin& p = *it->second;
        refresh(p);
        return p;
    }
    auto p = std::make_unique<Plugin>();
    p->ref = std::string(ref);
    p->path = resolve_plugin(ref);
    p->entry = std::string(entry);
    fs::path shown{p->ref};
    p->chunkname = "@" + (shown.is_absolute() ? p->path.string() : shown.lexically_normal().string());
    p->plugins_root = plugins_root_of(p->path);
    p->status.path = p->path.string();
    compile_into(*p);
    p->next_check = now + std::chrono::milliseconds(limits.reload_check_ms);
    Plugin& out = *p;
    plugins.emplace(std::move(key), std::move(p));
    return out;
}

// ---------------------------------------------------------------------------------------------
// Host

Host::Host(Limits limits) : impl_(std::make_unique<Impl>(limits)) {}
Host::~Host() = default;

Host& Host::for_thread() {
    thread_local Host host;
    return host;
}

const Limits& Host::limits() const { return impl_->limits; }
void Host::set_limits(const Limits& limits) { impl_->limits = limits; }
size_t Host::memory_used() const { return impl_->used; }
size_t Host::router_slots() const { return impl_->router_slots.size(); }
uint64_t Host::generation() const { return impl_->generation; }

Plugin& Host::load(std::string_view ref, std::string_view entry) { return impl_->load(ref, entry); }

Value Host::eval_file(std::string_view ref) {
    auto& impl = *impl_;
    impl.reset_if_needed();
    fs::path path = resolve_plugin(ref);
    lua_State* L = impl.L;
    int base = lua_gettop(L);
    impl.push_sandbox_env(plugins_root_of(path));
    try {
        impl.run_chunk(path, "@" + std::string(ref), -1, 1);
        Value v = to_value(L, -1);
        lua_settop(L, base);
        return v;
    } catch (...) {
        lua_settop(L, base);
        throw;
    }
}

Value Host::call(std::string_view ref, std::string_view entry, const std::vector<Value>& args) {
    auto& impl = *impl_;
    Plugin& p = impl.load(ref, entry);
    lua_State* L = impl.L;
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p.fn_ref);
    for (const auto& a : args) push_value(L, a);
    if (impl.pcall(int(args.size()), LUA_MULTRET, false, p.chunkname) != CallStatus::Ok) {
        lua_settop(L, base);
        throw_error(ErrorKind::PluginError, "plugin {} failed in {}(): {}", p.chunkname.substr(1), p.entry,
                    impl.last_error);
    }
    int n = lua_gettop(L) - base;
    Value out;
    try {
        if (n == 1) {
            out = to_value(L, -1);
        } else if (n > 1) {
            Value::Array arr;
            for (int i = base + 1; i <= base + n; ++i) arr.push_back(to_value(L, i));
            out = Value(std::move(arr));
        }
    } catch (const Error& e) {
        lua_settop(L, base);
        throw_error(ErrorKind::PluginError, "plugin {} failed in {}(): {}", p.chunkname.substr(1), p.entry, e.what());
    } catch (...) {
        lua_settop(L, base);
        throw;
    }
    lua_settop(L, base);
    return out;
}

Value Host::declared(std::string_view ref, std::string_view entry, std::string_view global) {
    auto& impl = *impl_;
    Plugin& p = impl.load(ref, entry);
    lua_State* L = impl.L;
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p.env_ref);
    lua_pushlstring(L, global.data(), global.size());
    lua_rawget(L, -2);
    Value v;
    try {
        v = to_value(L, -1);
    } catch (...) {
        lua_settop(L, base);
        throw;
    }
    lua_settop(L, base);
    return v;
}

PluginStatus Host::status(std::string_view ref) {
    for (const auto& [key, p] : impl_->plugins)
        if (p->ref == ref) return p->status;
    throw_error(ErrorKind::NotFound, "plugin '{}' is not loaded in this host", ref);
}

} // namespace keel::plugins

// core/plugins/lua_internal.hpp
// Internal to core/plugins: the Lua state behind a Host. Only .cpp files of this module include it,
// so Lua's headers never reach the public ones.
#pragma once

#include "keel/plugins/host.hpp"

#include <lua.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace keel::plugins {

//! A compiled plugin inside one state: its sandbox environment and entry function (registry refs).
struct Plugin {
    std::string ref;                //!< as the caller named it
    std::filesystem::path path;     //!< resolved file
    std::string chunkname;          //!< "@plugins/routing/sticky.lua", shown in errors
    std::string entry;
    std::filesystem::path plugins_root;  //!< `require` resolves under here only
    int env_ref = LUA_NOREF;
    int fn_ref = LUA_NOREF;
    std::filesystem::file_time_type mtime{};
    uintmax_t size = 0;
    std::chrono::steady_clock::time_point next_check{};
    PluginStatus status;
};

//! A router's per-state cache: its ctx and req tables (reused across calls) and its plugin.
struct RouterSlot {
    int ctx_ref = LUA_NOREF;
    int req_ref = LUA_NOREF;
    uint64_t config_version = ~uint64_t(0);
    uint64_t generation = ~uint64_t(0);
    Plugin* plugin = nullptr;
    std::vector<std::string> req_fields;  //!< field names the req table holds now
    std::shared_ptr<const void> config;   //!< keeps the config the ctx was built from alive
};

//! How a protected call ended.
enum class CallStatus { Ok, Error, Budget, Memory };

struct Host::Impl {
    lua_State* L = nullptr;
    Limits limits;
    size_t used = 0;
    size_t peak = 0;
    bool enforce_cap = false;     //!< off while the state itself is built and closed
    // The running call's budget (budget.cpp). Once a limit is hit the call is aborting: every later
    // instruction raises again, the sandbox's pcall/xpcall rethrow, and growth is refused, so the
    // plugin cannot catch its way past a limit.
    bool memory_exceeded = false;
    bool budget_exceeded = false;
    bool deadline_exceeded = false;
    std::string abort_message;    //!< "file:line: what limit was hit", set when the call starts aborting
    std::string memory_where;     //!< "file:line" of the first allocation refused by the memory cap
    int64_t budget = 0;           //!< instructions allowed for this call
    int64_t spent = 0;            //!< instructions counted at hook slices, plus charges for library work
    int slice = 0;                //!< the count hook's current period
    int64_t deadline_ns = 0;      //!< CLOCK_MONOTONIC_COARSE time after which the call is stopped
    bool aborting() const { return budget_exceeded || memory_exceeded || deadline_exceeded; }
    bool needs_reset = false;
    uint64_t generation = 0;
    int template_ref = LUA_NOREF; //!< table of allowed globals, copied into each plugin's _ENV
    std::unordered_map<std::string, std::unique_ptr<Plugin>> plugins;   //!< by ref
    std::unordered_map<std::string, int> modules;                       //!< require cache: path -> ref
    std::unordered_map<uint64_t, RouterSlot> router_slots;              //!< by router id
    uint64_t retired_seen = 0;    //!< how many destroyed routers this state has swept the slots of
    std::string last_error;       //!< message of the last failed call

    explicit Impl(Limits l);
    ~Impl();
    void open_state();
    void close_state();
    void reset_if_needed();

    //! Builds a fresh sandbox environment table and leaves it on the stack.
    void push_sandbox_env(const std::filesystem::path& plugins_root);
    //! Protected call of the function below `nargs` arguments with the call (or load) budget. On
    //! failure the stack holds nothing of the call and last_error says what went wrong.
    CallStatus pcall(int nargs, int nresults, bool loading, std::string_view chunkname);
    //! Compiles `path` with the environment at stack index env_index as _ENV and runs it with the
    //! load budget, leaving `nresults` results. Throws PluginError on failure.
    void run_chunk(const std::filesystem::path& path, const std::string& chunkname, int env_index, int nresults);
    Plugin& load(std::string_view ref, std::string_view entry);
    //! Reloads p when its file changed (checked at most every reload_check_ms).
    void refresh(Plugin& p);
    //! (Re)compiles p from its file; throws PluginError and leaves p unchanged on failure.
    void compile_into(Plugin& p);

    static Impl& from(lua_State* L) { return **static_cast<Impl**>(lua_getextraspace(L)); }
};

//! Lua <-> Value conversion (tables with keys 1..n become arrays, others maps with sorted keys).
//! to_value stops with PluginError past kMaxValueNodes values (a table shared many times over
//! would otherwise expand exponentially).
void push_value(lua_State* L, const Value& v);
Value to_value(lua_State* L, int index, int depth = 0);
constexpr size_t kMaxValueNodes = 1'000'000;

// Budgets (budget.cpp) -------------------------------------------------------------------------

//! Arms the budget for one protected call: instruction budget, deadline, the count hook.
void start_budget(Host::Impl& impl, int64_t instructions);
//! Charges `units` instructions of work done in C (`what` names it in the error); aborts the call
//! when the budget is gone. Also checks the deadline.
void charge(lua_State* L, int64_t units, const char* what);
//! Marks the call as aborting for `why` (with the running plugin's file:line) and makes the next
//! instruction raise. Safe to call where raising is not (the allocator).
void start_abort(Host::Impl& impl, bool Host::Impl::*flag, std::string why);
//! Raises the running call's abort error (after start_abort or a charge over budget).
[[noreturn]] void raise_abort(lua_State* L);
//! "file:line" of the running plugin code (the innermost Lua frame with a line).
std::string plugin_location(Host::Impl& impl);
//! The memory cap's error for the running call ("file:line: memory cap of N MiB exceeded ...").
std::string memory_cap_message(Host::Impl& impl);
//! Coarse monotonic clock in ns (a few ns to read): deadlines need milliseconds, not precision.
int64_t coarse_now_ns();
//! The sandbox's pcall and xpcall: an aborting call is rethrown, and xpcall's handler runs after
//! the error unwound, under the budget (Lua runs message handlers with hooks off).
int sandbox_pcall(lua_State* L);
int sandbox_xpcall(lua_State* L);
//! Replaces the library functions plugins reach (string, table, utf8, tonumber, os.date) by
//! versions that charge their work to the budget (bounded_libs.cpp). Call on a fresh state.
void install_bounded_libs(lua_State* L);

//! The ctx.bucket C function: bucket(key, salt) -> [0, 1).
int lua_bucket(lua_State* L);

//! The first plugins/ folder among path's parents (the folder itself when none): require's root.
std::filesystem::path plugins_root_of(const std::filesystem::path& path);

} // namespace keel::plugins

// core/include/keel/plugins/host.hpp
#pragma once

#include "keel/plugins/value.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace keel::plugins {

//! Stable 64-bit hash of (salt, key): FNV-1a over the salt bytes, one 0xFF byte, the key bytes, then
//! the murmur3 64-bit finalizer. Byte-wise, so equal on every process, platform and restart.
uint64_t stable_hash(std::string_view key, std::string_view salt) noexcept;
//! stable_hash mapped to [0, 1) (top 53 bits). Integer keys hash their decimal text, so 42 and
//! "42" land in the same bucket.
double bucket(std::string_view key, std::string_view salt) noexcept;
double bucket(int64_t key, std::string_view salt) noexcept;

//! Per-state limits. The instruction budgets bound one call (and one load, which is tighter); work
//! done inside library functions (pattern matching, string building, table moves, allocation) is
//! charged to the same budget. The memory cap bounds everything the state holds, the string limit
//! any one string, and the time limit is a wall-clock backstop per call. Hitting any of them ends
//! the call (a plugin's pcall cannot catch it).
struct Limits {
    int64_t call_instructions = 1'000'000;
    int64_t load_instructions = 200'000;
    size_t memory_bytes = size_t(64) << 20;
    size_t string_bytes = size_t(1) << 20;
    int call_ms = 2000;
    //! How often a plugin's file is checked for changes (0: on every use).
    int reload_check_ms = 200;
};

//! Where plugin refs like "plugins/routing/sticky.lua" are looked up, in order (after the path
//! itself when it is absolute or exists relative to the working directory).
void set_search_path(std::vector<std::filesystem::path> roots);
std::vector<std::filesystem::path> search_path();
//! The file a plugin ref names; NotFound listing where it looked.
std::filesystem::path resolve_plugin(std::string_view ref);

//! What a host knows about one loaded plugin.
struct PluginStatus {
    std::string path;       //!< resolved file
    int64_t version = 0;    //!< 1 on first load, +1 per accepted reload
    int64_t reloads_refused = 0;
    std::string last_error; //!< why the last reload was refused ("" when the file loaded)
};

struct Plugin;  // compiled plugin, owned by its Host (internal)

//! One embedded Lua 5.4 state with the plugin sandbox. Not thread-safe: use one per thread
//! (Host::for_thread()). Plugins are compiled once per state and reloaded atomically when their
//! file changes: a broken edit is refused, the previous version keeps running and the error is
//! reported in status().
class Host {
public:
    explicit Host(Limits limits = {});
    ~Host();
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

    //! This thread's host (created on first use).
    static Host& for_thread();

    const Limits& limits() const;
    void set_limits(const Limits& limits);

    //! Loads (or returns the compiled) plugin at `ref`, which must define the global function
    //! `entry` ("route", "check"). Throws PluginError when the file cannot be loaded and no
    //! earlier version exists.
    Plugin& load(std::string_view ref, std::string_view entry);

    //! Runs a Lua file in the sandbox and returns what it returns, as data (test tables, configs).
    Value eval_file(std::string_view ref);

    //! Calls `entry` of the plugin with the given arguments; results come back as data. Errors,
    //! budget and memory overruns throw PluginError naming the file and line.
    Value call(std::string_view ref, std::string_view entry, const std::vector<Value>& args);

    //! The plugin's declared `schema` global (argument name -> {type=, required=, doc=, ...}), or
    //! null. Checked against arguments by check_arguments (schema.hpp).
    Value schema(std::string_view ref, std::string_view entry) { return declared(ref, entry, "schema"); }
    //! A global the plugin's top level set (`schema`, `needs`), as data; null when it set none.
    //! Loads the plugin (NotFound / PluginError when it cannot be loaded).
    Value declared(std::string_view ref, std::string_view entry, std::string_view global);

    PluginStatus status(std::string_view ref);
    //! Bytes the state holds now; the peak since creation.
    size_t memory_used() const;
    //! Incremented whenever the state is rebuilt (after a memory overrun left it full).
    uint64_t generation() const;
    //! Routers this state keeps per-router tables for (those of destroyed routers are freed on the
    //! next routing call).
    size_t router_slots() const;

    struct Impl;
    Impl& impl() { return *impl_; }

private:
    std::unique_ptr<Impl> impl_;
};

} // namespace keel::plugins

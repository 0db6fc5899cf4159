// core/plugins/budget.cpp
// The per-call budget of a plugin: instructions counted by a hook in slices, work done inside C
// functions charged to the same count, a wall-clock deadline checked at every slice and charge, and
// the sandbox's pcall/xpcall, which cannot catch a limit. Once a limit is hit the call is
// "aborting" until it returns to the host: every instruction raises again, so no Lua code (message
// handlers, __close methods, loops around pcall) can keep the host busy.
#include "keel/common/error.hpp"
#include "lua_internal.hpp"

#include <algorithm>
#include <ctime>

namespace keel::plugins {

namespace {

// Instructions between two hook calls: the deadline is checked this often. Small enough that
// slow instructions (comparing two 1 MiB strings) cannot hide the deadline for long, large enough
// that the hook costs ~1% of pure Lua work. A routing decision never reaches it.
constexpr int kSlice = 1000;

} // namespace

std::string plugin_location(Host::Impl& impl) {
    lua_Debug ar;
    for (int level = 0; impl.L && level < 16 && lua_getstack(impl.L, level, &ar); ++level)
        if (lua_getinfo(impl.L, "Sl", &ar) && ar.currentline > 0) return fmt::format("{}:{}", ar.short_src, ar.currentline);
    return "plugin";
}

std::string memory_cap_message(Host::Impl& impl) {
    return fmt::format("{}: memory cap of {} MiB exceeded (a runaway table or string?)",
                       impl.memory_where.empty() ? "plugin" : impl.memory_where, impl.limits.memory_bytes >> 20);
}

namespace {

void budget_hook(lua_State* L, lua_Debug* ar);

void arm_abort(lua_State* L) { lua_sethook(L, budget_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1); }

void budget_hook(lua_State* L, lua_Debug* ar) {
    auto& impl = Host::Impl::from(L);
    if (!impl.aborting()) {
        impl.spent += impl.slice;
        if (impl.spent >= impl.budget) {
            start_abort(impl, &Host::Impl::budget_exceeded,
                        fmt::format("instruction budget of {} instructions exceeded (an endless loop?)", impl.budget));
        } else if (coarse_now_ns() > impl.deadline_ns) {
            start_abort(impl, &Host::Impl::deadline_exceeded,
                        fmt::format("time limit of {} ms exceeded (plugin calls must return quickly)", impl.limits.call_ms));
        } else {
            int next = int(std::min<int64_t>(kSlice, impl.budget - impl.spent));
            if (next != impl.slice) {
                impl.slice = next;
                lua_sethook(L, budget_hook, LUA_MASKCOUNT, next);
            }
            return;
        }
    }
    arm_abort(L);
    raise_abort(L);
}

} // namespace

int64_t coarse_now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void start_budget(Host::Impl& impl, int64_t instructions) {
    impl.budget = std::max<int64_t>(instructions, 1);
    impl.spent = 0;
    impl.budget_exceeded = impl.memory_exceeded = impl.deadline_exceeded = false;
    if (!impl.abort_message.empty()) impl.abort_message.clear();
    if (!impl.memory_where.empty()) impl.memory_where.clear();
    impl.slice = int(std::min<int64_t>(impl.budget, kSlice));
    impl.deadline_ns = coarse_now_ns() + int64_t(std::max(impl.limits.call_ms, 1)) * 1'000'000;
    lua_sethook(impl.L, budget_hook, LUA_MASKCOUNT, impl.slice);
}

void start_abort(Host::Impl& impl, bool Host::Impl::*flag, std::string why) {
    if (!impl.aborting()) impl.abort_message = plugin_location(impl) + ": " + why;
    impl.*flag = true;
    // Only sets hook fields: safe from the allocator, as Lua's own interrupt handling relies on.
    if (impl.L) arm_abort(impl.L);
}

void raise_abort(lua_State* L) {
    auto& impl = Host::Impl::from(L);
    // The message must not be refused by the allocator that is refusing everything else now.
    bool cap = impl.enforce_cap;
    impl.enforce_cap = false;
    lua_pushlstring(L, impl.abort_message.data(), impl.abort_message.size());
    impl.enforce_cap = cap;
    lua_error(L);
    std::abort();  // lua_error does not return
}

void charge(lua_State* L, int64_t units, const char* what) {
    auto& impl = Host::Impl::from(L);
    if (!impl.enforce_cap) return;  // not inside a budgeted call
    if (!impl.aborting()) {
        impl.spent += units;
        if (impl.spent >= impl.budget)
            start_abort(impl, &Host::Impl::budget_exceeded,
                        fmt::format("instruction budget of {} instructions exceeded in {} (work inside library functions "
                                    "counts against the budget)",
                                    impl.budget, what));
        else if (units >= 64 && coarse_now_ns() > impl.deadline_ns)
            start_abort(impl, &Host::Impl::deadline_exceeded,
                        fmt::format("time limit of {} ms exceeded in {}", impl.limits.call_ms, what));
    }
    if (impl.aborting()) raise_abort(L);
}

namespace {
// After a protected call inside the plugin: a limit hit inside it goes on up. Running out of memory
// (after Lua's emergency collection) is a limit too, and unwinding an error costs about as much as
// a few hundred instructions, so a loop of failing pcalls runs out of budget, not of time.
void after_protected(lua_State* L, int status) {
    auto& impl = Host::Impl::from(L);
    if (status == LUA_ERRMEM && !impl.aborting() && impl.enforce_cap) {
        impl.abort_message = memory_cap_message(impl);  // where the allocation was refused
        impl.memory_exceeded = true;
        arm_abort(L);
    }
    if (impl.aborting()) raise_abort(L);
    if (status != LUA_OK) charge(L, 256, "pcall");
}
} // namespace

int sandbox_pcall(lua_State* L) {
    luaL_checkany(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    after_protected(L, status);
    lua_pushboolean(L, status == LUA_OK);
    lua_insert(L, 1);
    return lua_gettop(L);
}

int sandbox_xpcall(lua_State* L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_insert(L, 1);  // handler, f, handler, args...
    lua_remove(L, 3);  // handler, f, args...
    int status = lua_pcall(L, n - 2, LUA_MULTRET, 0);
    after_protected(L, status);
    if (status == LUA_OK) {
        lua_pushboolean(L, 1);
        lua_replace(L, 1);
        return lua_gettop(L);
    }
    // handler, error: the handler runs now, with the hook on, so it spends the same budget. If it
    // fails, its own error is what xpcall returns.
    after_protected(L, lua_pcall(L, 1, 1, 0));
    lua_pushboolean(L, 0);
    lua_insert(L, 1);
    return 2;
}

} // namespace keel::plugins

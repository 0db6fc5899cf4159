// core/plugins/router.cpp
#include "keel/plugins/router.hpp"

#include "keel/common/error.hpp"
#include "keel/plugins/schema.hpp"
#include "lua_internal.hpp"

#include <cmath>
#include <mutex>
#include <vector>
#include <unordered_set>

namespace keel::plugins {

std::string_view fallback_name(Fallback f) {
    switch (f) {
    case Fallback::None: return "";
    case Fallback::Error: return "error";
    case Fallback::UnknownVariant: return "unknown_variant";
    case Fallback::Budget: return "budget";
    case Fallback::Memory: return "memory";
    case Fallback::DataIssue: return "data_issue";
    case Fallback::Unavailable: return "model_unavailable";
    }
    return "";
}

struct Router::Shared {
    RouterConfig config;
};

namespace {
std::atomic<uint64_t> g_router_ids{1};

// Routers destroyed so far. Each thread's Lua state holds a slot (ctx and req tables) per router it
// served; it frees the slots of dead routers the next time it routes, so endpoints redefined over a
// long-lived process do not pile up tables.
std::mutex g_retired_mutex;
std::vector<uint64_t> g_retired;
std::atomic<uint64_t> g_retired_count{0};

void sweep_retired(Host::Impl& impl) {
    std::lock_guard lock(g_retired_mutex);
    for (size_t i = impl.retired_seen; i < g_retired.size(); ++i) {
        auto it = impl.router_slots.find(g_retired[i]);
        if (it == impl.router_slots.end()) continue;
        if (impl.L) {
            luaL_unref(impl.L, LUA_REGISTRYINDEX, it->second.ctx_ref);
            luaL_unref(impl.L, LUA_REGISTRYINDEX, it->second.req_ref);
        }
        impl.router_slots.erase(it);
    }
    impl.retired_seen = g_retired.size();
}

void validate(const RouterConfig& c) {
    if (c.variants.empty()) throw_error(ErrorKind::InvalidArgument, "an endpoint needs at least one variant");
    if (c.variants.size() > 64) throw_error(ErrorKind::InvalidArgument, "{} variants: at most 64 are supported", c.variants.size());
    std::unordered_set<std::string> seen;
    double total = 0;
    for (const auto& v : c.variants) {
        if (v.name.empty()) throw_error(ErrorKind::InvalidArgument, "a variant needs a name");
        if (!seen.insert(v.name).second) throw_error(ErrorKind::InvalidArgument, "variant '{}' is listed twice", v.name);
        if (!std::isfinite(v.weight) || v.weight < 0)
            throw_error(ErrorKind::InvalidArgument, "variant '{}' has weight {}: weights must be >= 0", v.name, v.weight);
        total += v.weight;
    }
    if (total <= 0) throw_error(ErrorKind::InvalidArgument, "all variant weights are 0: give at least one a weight > 0");
    if (!c.default_variant.empty() && !seen.count(c.default_variant))
        throw_error(ErrorKind::InvalidArgument, "default variant '{}' is not one of the variants", c.default_variant);
    if (!c.config.is_null() && !c.config.is_map())
        throw_error(ErrorKind::InvalidArgument, "routing config must be a map of options");
}

// ctx = {bucket=, variants={...}, weights={...}, weight={name=w}, default=, endpoint=, salt=,
//        config={...}, issues={name=true}}
void push_ctx(lua_State* L, const RouterConfig& c, const std::string& default_name) {
    lua_createtable(L, 0, 10);
    int ctx = lua_gettop(L);
    lua_pushcfunction(L, lua_bucket);
    lua_setfield(L, ctx, "bucket");
    lua_createtable(L, int(c.variants.size()), 0);
    lua_createtable(L, int(c.variants.size()), 0);
    lua_createtable(L, 0, int(c.variants.size()));
    for (size_t i = 0; i < c.variants.size(); ++i) {
        lua_pushlstring(L, c.variants[i].name.data(), c.variants[i].name.size());
        lua_rawseti(L, -4, lua_Integer(i + 1));
        lua_pushnumber(L, c.variants[i].weight);
        lua_rawseti(L, -3, lua_Integer(i + 1));
        lua_pushnumber(L, c.variants[i].weight);
        lua_setfield(L, -2, c.variants[i].name.c_str());
    }
    lua_setfield(L, ctx, "weight");
    lua_setfield(L, ctx, "weights");
    lua_setfield(L, ctx, "variants");
    lua_pushlstring(L, default_name.data(), default_name.size());
    lua_setfield(L, ctx, "default");
    lua_pushlstring(L, c.name.data(), c.name.size());
    lua_setfield(L, ctx, "endpoint");
    const Value* salt = c.config.find("salt");
    if (salt && salt->is_string()) lua_pushlstring(L, salt->str().data(), salt->str().size());
    else lua_pushlstring(L, c.name.data(), c.name.size());
    lua_setfield(L, ctx, "salt");
    if (c.config.is_map()) push_value(L, c.config);
    else lua_newtable(L);
    lua_setfield(L, ctx, "config");
    lua_createtable(L, 0, int(c.issues.size()));
    for (const auto& v : c.issues) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, v.c_str());
    }
    lua_setfield(L, ctx, "issues");
}

} // namespace

Router::Router(RouterConfig config) : id_(g_router_ids.fetch_add(1)) {
    validate(config);
    for (const auto& v : config.variants) names_.push_back(v.name);
    if (!config.default_variant.empty()) default_index_ = variant_index(config.default_variant);
    served_ = std::make_unique<std::atomic<int64_t>[]>(names_.size());
    for (size_t i = 0; i < names_.size(); ++i) served_[i] = 0;
    // Fail at definition time, not on the first request, when the plugin does not load or its
    // config does not match the schema it declares.
    Host& host = Host::for_thread();
    host.load(config.plugin, "route");
    check_arguments(host, config.plugin, "route", config.config);
    auto shared = std::make_shared<Shared>();
    shared->config = std::move(config);
    publish(std::move(shared));
}

Router::~Router() {
    std::lock_guard lock(g_retired_mutex);
    g_retired.push_back(id_);
    g_retired_count.store(g_retired.size(), std::memory_order_release);
}

void Router::publish(std::shared_ptr<const Shared> next) {
    std::lock_guard lock(mutex_);
    shared_ = std::move(next);
    version_.fetch_add(1, std::memory_order_release);
}

int Router::variant_index(std::string_view name) const {
    for (size_t i = 0; i < names_.size(); ++i)
        if (names_[i] == name) return int(i);
    std::string known;
    for (const auto& n : names_) known += (known.empty() ? "" : ", ") + n;
    throw_error(ErrorKind::InvalidArgument, "unknown variant '{}' (variants: {})", name, known);
}

RouterConfig Router::config() const {
    std::lock_guard lock(mutex_);
    return shared_->config;
}

void Router::set_weights(const std::vector<std::pair<std::string, double>>& weights) {
    RouterConfig next = config();
    for (const auto& [name, w] : weights) next.variants[size_t(variant_index(name))].weight = w;
    validate(next);
    auto shared = std::make_shared<Shared>();
    shared->config = std::move(next);
    publish(std::move(shared));
}

void Router::set_issues(std::vector<std::string> variants) {
    RouterConfig next = config();
    for (const auto& v : variants) variant_index(v);
    next.issues = std::move(variants);
    auto shared = std::make_shared<Shared>();
    shared->config = std::move(next);
    publish(std::move(shared));
}

void Router::set_unavailable(const std::vector<std::string>& variants) {
    uint64_t bits = 0;
    for (const auto& v : variants) bits |= uint64_t(1) << variant_index(v);
    unavailable_.store(bits, std::memory_order_release);
}

RouterStats Router::stats() const {
    RouterStats s;
    s.decisions = decisions_.load();
    s.errors = errors_.load();
    s.unknown_variant = unknown_.load();
    s.budget = budget_.load();
    s.memory = memory_.load();
    s.data_issue = data_issue_.load();
    s.unavailable = unavailable_count_.load();
    s.fallbacks = s.errors + s.unknown_variant + s.budget + s.memory + s.data_issue + s.unavailable;
    for (size_t i = 0; i < names_.size(); ++i) s.served.emplace_back(names_[i], served_[i].load());
    std::lock_guard lock(mutex_);
    s.last_error = last_error_;
    return s;
}

Decision Router::route(std::span<const Field> request, Host& host) {
    auto& impl = host.impl();
    decisions_.fetch_add(1, std::memory_order_relaxed);
    Decision d;
    d.variant = default_index_;
    auto fail = [&](Fallback why, std::atomic<int64_t>& counter, std::string message) {
        counter.fetch_add(1, std::memory_order_relaxed);
        served_[size_t(default_index_)].fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(mutex_);
        last_error_ = std::move(message);
        d.variant = default_index_;
        d.shadows = 0;
        d.fallback = why;
        return d;
    };

    impl.reset_if_needed();
    if (impl.retired_seen != g_retired_count.load(std::memory_order_acquire)) sweep_retired(impl);
    lua_State* L = impl.L;
    RouterSlot& slot = impl.router_slots[id_];
    uint64_t version = version_.load(std::memory_order_acquire);
    if (slot.generation != impl.generation || slot.config_version != version) {
        std::shared_ptr<const Shared> shared;
        {
            std::lock_guard lock(mutex_);
            shared = shared_;
            version = version_.load(std::memory_order_acquire);
        }
        try {
            slot.plugin = &impl.load(shared->config.plugin, "route");
        } catch (const Error& e) {
            return fail(Fallback::Error, errors_, e.what());
        }
        push_ctx(L, shared->config, names_[size_t(default_index_)]);
        luaL_unref(L, LUA_REGISTRYINDEX, slot.ctx_ref);
        slot.ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        slot.config = shared;
        slot.config_version = version;
        slot.generation = impl.generation;
    } else {
        impl.refresh(*slot.plugin);
    }
    Plugin& p = *slot.plugin;

    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p.fn_ref);
    // The req table is reused while requests carry the same field names (the usual case).
    bool same = slot.req_ref != LUA_NOREF && slot.req_fields.size() == request.size();
    for (size_t i = 0; same && i < request.size(); ++i) same = slot.req_fields[i] == request[i].name;
    if (!same) {
        luaL_unref(L, LUA_REGISTRYINDEX, slot.req_ref);
        lua_createtable(L, 0, int(request.size()));
        slot.req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        slot.req_fields.clear();
        for (const auto& f : request) slot.req_fields.emplace_back(f.name);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, slot.req_ref);
    for (const auto& f : request) {
        lua_pushlstring(L, f.name.data(), f.name.size());
        switch (f.value.index()) {
        case 0: lua_pushnil(L); break;
        case 1: lua_pushinteger(L, lua_Integer(std::get<1>(f.value))); break;
        case 2: lua_pushnumber(L, std::get<2>(f.value)); break;
        case 3: lua_pushboolean(L, std::get<3>(f.value)); break;
        default: {
            auto s = std::get<4>(f.value);
            lua_pushlstring(L, s.data(), s.size());
        }
        }
        lua_rawset(L, -3);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, slot.ctx_ref);

    switch (impl.pcall(2, 3, false, p.chunkname)) {
    case CallStatus::Ok: break;
    case CallStatus::Error: lua_settop(L, base); return fail(Fallback::Error, errors_, impl.last_error);
    case CallStatus::Budget: lua_settop(L, base); return fail(Fallback::Budget, budget_, impl.last_error);
    case CallStatus::Memory: lua_settop(L, base); return fail(Fallback::Memory, memory_, impl.last_error);
    }

    auto find = [&](int index) -> int {
        size_t n = 0;
        const char* s = lua_tolstring(L, index, &n);
        std::string_view name(s, n);
        for (size_t i = 0; i < names_.size(); ++i)
            if (names_[i] == name) return int(i);
        return -1;
    };
    if (lua_type(L, base + 1) != LUA_TSTRING) {
        std::string got = luaL_typename(L, base + 1);
        lua_settop(L, base);
        return fail(Fallback::UnknownVariant, unknown_,
                    fmt::format("{}: route() returned a {}, not a variant name", p.chunkname.substr(1), got));
    }
    int v = find(base + 1);
    if (v < 0) {
        std::string got = lua_tostring(L, base + 1);
        lua_settop(L, base);
        return fail(Fallback::UnknownVariant, unknown_,
                    fmt::format("{}: route() returned unknown variant '{}'", p.chunkname.substr(1), got));
    }
    d.variant = v;
    int shadows = base + 2;
    if (lua_type(L, shadows) == LUA_TSTRING) {
        int s = find(shadows);
        if (s >= 0 && s != v) d.shadows |= uint64_t(1) << s;
    } else if (lua_type(L, shadows) == LUA_TTABLE) {
        lua_Integer n = lua_Integer(lua_rawlen(L, shadows));
        for (lua_Integer i = 1; i <= n && i <= 64; ++i) {
            if (lua_rawgeti(L, shadows, i) == LUA_TSTRING) {
                int s = find(-1);
                if (s >= 0 && s != v) d.shadows |= uint64_t(1) << s;
            }
            lua_pop(L, 1);
        }
    }
    // A third result "data_issue" says the plugin avoided a variant with an open data issue.
    if (lua_type(L, base + 3) == LUA_TSTRING && std::string_view(lua_tostring(L, base + 3)) == "data_issue") {
        d.fallback = Fallback::DataIssue;
        data_issue_.fetch_add(1, std::memory_order_relaxed);
    }
    lua_settop(L, base);
    if (const uint64_t down = unavailable_.load(std::memory_order_acquire)) {
        d.shadows &= ~down;
        if (down >> v & 1) {  // no model to answer with: the default variant does
            unavailable_count_.fetch_add(1, std::memory_order_relaxed);
            d.variant = v = default_index_;
            d.fallback = Fallback::Unavailable;
        }
    }
    served_[size_t(v)].fetch_add(1, std::memory_order_relaxed);
    return d;
}

} // namespace keel::plugins

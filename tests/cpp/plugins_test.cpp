// tests/cpp/plugins_test.cpp
#include "keel/common/error.hpp"
#include "keel/plugins/host.hpp"
#include "keel/plugins/router.hpp"

#include "support/expect_error.hpp"
#include "support/plugin_dir.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using keel::ErrorKind;
using namespace keel::plugins;

using keel::testing::error_message;
using keel::testing::PluginDir;

namespace {

Limits test_limits() {
    Limits l;
    l.call_instructions = 100'000;
    l.load_instructions = 50'000;
    l.memory_bytes = 8 << 20;
    l.reload_check_ms = 0;
    return l;
}

// Runs route() of a plugin whose body is `body`, expecting a PluginError containing `needle`.
std::string plugin_error(Host& host, const std::string& path) {
    return error_message(ErrorKind::PluginError, [&] { host.call(path, "route", {}); });
}

std::string escape(PluginDir& d, Host& host, const std::string& name, const std::string& body) {
    return plugin_error(host, d.write(name, "function route(req, ctx)\n" + body + "\nend\n"));
}

// Each sandbox test gets its own plugins/ folder and a host with the limits above.
struct PluginSandbox : ::testing::Test {
    PluginDir d;
    Host host{test_limits()};
};

} // namespace

TEST(PluginHost, CallsAFunctionAndConvertsValues) {
    PluginDir d;
    Host host(test_limits());
    auto p = d.write("echo.lua", "function route(a, b) return {x = a, n = #b, s = 'ok'} end\n");
    Value out = host.call(p, "route", {Value(int64_t(7)), Value(Value::Array{1, 2, 3})});
    ASSERT_TRUE(out.is_map());
    EXPECT_EQ(out.find("x")->number(), 7);
    EXPECT_EQ(out.find("n")->number(), 3);
    EXPECT_EQ(out.find("s")->str(), "ok");
}

TEST_F(PluginSandbox, IoIsRefused) {
    auto msg = escape(d, host, "io.lua", "return io.open('/etc/passwd')");
    EXPECT_NE(msg.find("unknown global 'io'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("io.lua:2"), std::string::npos) << msg;
}

TEST_F(PluginSandbox, OsExecuteIsRefusedButTimeWorks) {
    auto msg = escape(d, host, "os.lua", "return os.execute('true')");
    EXPECT_NE(msg.find("os.lua:2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("call a nil value (field 'execute')"), std::string::npos) << msg;
    auto p = d.write("time.lua", "function route() return os.time() > 0 and os.clock() >= 0 end\n");
    EXPECT_TRUE(std::get<bool>(host.call(p, "route", {}).data));
}

TEST_F(PluginSandbox, LoadDofileLoadfileAreRefused) {
    for (std::string fn : {"load", "dofile", "loadfile", "loadstring", "debug", "collectgarbage", "coroutine"}) {
        auto msg = escape(d, host, fn + ".lua", "return " + fn);
        EXPECT_NE(msg.find("unknown global '" + fn + "'"), std::string::npos) << msg;
    }
}

TEST_F(PluginSandbox, BytecodeFilesAreRefused) {
    auto p = d.write("binary.lua", std::string("\x1bLua\x54\x00garbage", 12));
    auto msg = error_message(ErrorKind::PluginError, [&] { host.load(p, "route"); });
    EXPECT_NE(msg.find("binary chunk"), std::string::npos) << msg;
}

TEST_F(PluginSandbox, StringDumpIsGone) {
    auto msg = escape(d, host, "dump.lua", "return string.dump(route)");
    EXPECT_NE(msg.find("dump"), std::string::npos) << msg;
    auto msg2 = escape(d, host, "dump2.lua", "return ('x').dump(route)");
    EXPECT_NE(msg2.find("dump"), std::string::npos) << msg2;
}

TEST_F(PluginSandbox, StringMetatableIsHidden) {
    auto p = d.write("strmeta.lua", "function route() return getmetatable('') end\n");
    EXPECT_FALSE(std::get<bool>(host.call(p, "route", {}).data));
    auto msg = escape(d, host, "strmeta2.lua", "setmetatable('', {__index = function() return 1 end})");
    EXPECT_NE(msg.find("table expected"), std::string::npos) << msg;
}

TEST_F(PluginSandbox, RequireOnlyUnderPlugins) {
    d.write("lib/helper.lua", "return {twice = function(x) return 2 * x end}\n");
    auto ok = d.write("req.lua", "local h = require('lib.helper')\nfunction route() return h.twice(21) end\n");
    EXPECT_EQ(host.call(ok, "route", {}).number(), 42);
    for (std::string name : {"../../etc/passwd", "os", "lib..helper", "/etc/passwd"}) {
        auto msg = escape(d, host, "req_bad.lua", "return require('" + name + "')");
        EXPECT_NE(msg.find("require('" + name + "')"), std::string::npos) << msg;
    }
    // A symlink inside plugins/ that points outside is refused too.
    std::ofstream(d.root / "outside.lua") << "return 1\n";
    fs::create_symlink(d.root / "outside.lua", d.dir / "lib" / "escape.lua");
    auto msg = escape(d, host, "req_link.lua", "return require('lib.escape')");
    EXPECT_NE(msg.find("outside"), std::string::npos) << msg;
}

TEST_F(PluginSandbox, EnvTricksStayInsideThePlugin) {
    // rawset on _ENV only writes the plugin's own globals; the real ones stay unreachable.
    auto p = d.write("env.lua",
                     "function route()\n"
                     "  rawset(_ENV, 'x', 1)\n"
                     "  assert(rawget(_ENV, 'io') == nil and rawget(_G, 'io') == nil)\n"
                     "  assert(getmetatable(_ENV) == false)\n"
                     "  assert(not pcall(setmetatable, _ENV, nil))\n"
                     "  string.upper = nil\n"
                     "  return x\n"
                     "end\n");
    EXPECT_EQ(host.call(p, "route", {}).number(), 1);
    // ... and one plugin's changes to a library never reach another.
    auto q = d.write("env2.lua", "function route() return string.upper('a') end\n");
    EXPECT_EQ(host.call(q, "route", {}).str(), "A");
    auto gc = escape(d, host, "gc.lua", "setmetatable({}, {__gc = function() while true do end end})");
    EXPECT_NE(gc.find("__gc"), std::string::npos) << gc;
}

TEST_F(PluginSandbox, InfiniteLoopIsStoppedWithFileAndLine) {
    auto msg = escape(d, host, "loop.lua", "while true do end");
    EXPECT_NE(msg.find("loop.lua:2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("instruction budget"), std::string::npos) << msg;
    // pcall inside the plugin cannot swallow the abort.
    auto msg2 = escape(d, host, "loop2.lua", "while true do pcall(function() while true do end end) end");
    EXPECT_NE(msg2.find("instruction budget"), std::string::npos) << msg2;
    // The host stays healthy.
    auto ok = d.write("fine.lua", "function route() return 'ok' end\n");
    EXPECT_EQ(host.call(ok, "route", {}).str(), "ok");
}

TEST_F(PluginSandbox, LoadingHasATighterBudget) {
    auto p = d.write("slowload.lua", "for i = 1, 80000 do end\nfunction route() return 1 end\n");
    auto msg = error_message(ErrorKind::PluginError, [&] { host.load(p, "route"); });
    EXPECT_NE(msg.find("instruction budget of 50000"), std::string::npos) << msg;
}

TEST_F(PluginSandbox, MemoryBombIsStoppedAndTheHostRecovers) {
    Limits l = test_limits();
    l.call_instructions = 100'000'000;  // allocation is charged to the budget: let the cap hit first
    Host bomb_host(l);
    auto msg = escape(d, bomb_host, "bomb.lua", "local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i end");
    EXPECT_NE(msg.find("memory cap of 8 MiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("bomb.lua:3"), std::string::npos) << msg;
    auto msg2 = escape(d, bomb_host, "strbomb.lua", "return string.rep('x', 1 << 30)");
    EXPECT_NE(msg2.find("per-string limit"), std::string::npos) << msg2;
    // A bomb that keeps its garbage alive in a global: the state is rebuilt before the next use.
    auto msg3 = escape(d, bomb_host, "keep.lua", "big = {}\nfor i = 1, 1e9 do big[i] = string.rep('y', 4096) .. i end");
    EXPECT_NE(msg3.find("memory cap"), std::string::npos) << msg3;
    auto ok = d.write("fine.lua", "function route() return 'ok' end\n");
    EXPECT_EQ(bomb_host.call(ok, "route", {}).str(), "ok");
    EXPECT_LT(bomb_host.memory_used(), size_t(2) << 20);
}

TEST_F(PluginSandbox, UnknownGlobalReadNamesIt) {
    auto msg = escape(d, host, "typo.lua", "return varaints");
    EXPECT_NE(msg.find("unknown global 'varaints'"), std::string::npos) << msg;
}

TEST(PluginReload, ChangedFileReloadsAndBrokenEditIsRefused) {
    PluginDir d;
    Host host(test_limits());
    auto p = d.write("v.lua", "function route() return 'one' end\n");
    EXPECT_EQ(host.call(p, "route", {}).str(), "one");
    d.write("v.lua", "function route() return 'two!' end\n");
    EXPECT_EQ(host.call(p, "route", {}).str(), "two!");
    EXPECT_EQ(host.status(p).version, 2);
    d.write("v.lua", "function route() return 'three' \n");  // syntax error
    EXPECT_EQ(host.call(p, "route", {}).str(), "two!");
    auto st = host.status(p);
    EXPECT_EQ(st.version, 2);
    EXPECT_EQ(st.reloads_refused, 1);
    EXPECT_NE(st.last_error.find("v.lua"), std::string::npos) << st.last_error;
    d.write("v.lua", "function rout() return 'x' end\n");  // no route()
    EXPECT_EQ(host.call(p, "route", {}).str(), "two!");
    EXPECT_NE(host.status(p).last_error.find("defines no function route"), std::string::npos);
    d.write("v.lua", "function route() return 'four' end\n");
    EXPECT_EQ(host.call(p, "route", {}).str(), "four");
    EXPECT_EQ(host.status(p).last_error, "");
}

TEST(PluginHash, BucketIsStableAndUniform) {
    using keel::plugins::bucket;
    // Pinned values: a change here breaks every sticky assignment in the field.
    EXPECT_EQ(keel::plugins::stable_hash("42", "exp"), keel::plugins::stable_hash("42", "exp"));
    EXPECT_DOUBLE_EQ(bucket(int64_t(42), "exp"), bucket("42", "exp"));
    EXPECT_NE(bucket("42", "exp"), bucket("42", "exp2"));
    int below = 0;
    for (int64_t i = 0; i < 100000; ++i) below += bucket(i, "salt") < 0.1;
    EXPECT_NEAR(below / 100000.0, 0.1, 0.005);
}

TEST(PluginHost, MissingPluginIsNotFound) {
    Host host(test_limits());
    auto msg = error_message(ErrorKind::NotFound, [&] { host.load("plugins/nope/missing.lua", "route"); });
    EXPECT_NE(msg.find("plugins/nope/missing.lua"), std::string::npos) << msg;
}

namespace {
RouterConfig sticky_config() {
    RouterConfig c;
    c.plugin = std::string(KEEL_SOURCE_DIR) + "/plugins/routing/sticky.lua";
    c.variants = {{"champion", 0.9}, {"challenger", 0.1}};
    c.config = Value(Value::Map{{"key", "player_id"}});
    c.name = "churn";
    return c;
}
} // namespace

TEST(PluginRouter, ThreadsRouteConcurrentlyWhileWeightsChange) {
    Router router(sticky_config());
    std::atomic<int64_t> challenger{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int64_t i = 0; i < 20000; ++i) {
                Field f{"player_id", int64_t(t * 100000 + i)};
                Decision d = router.route(std::span<const Field>(&f, 1));
                EXPECT_EQ(d.fallback, Fallback::None);
                challenger += d.variant == 1;
            }
        });
    }
    for (int k = 0; k < 20; ++k) router.set_weights({{"challenger", k % 2 ? 0.2 : 0.1}});
    for (auto& th : threads) th.join();
    auto s = router.stats();
    EXPECT_EQ(s.decisions, 80000);
    EXPECT_EQ(s.fallbacks, 0);
    EXPECT_GT(challenger.load(), 80000 * 0.05);
    EXPECT_LT(challenger.load(), 80000 * 0.25);
}

TEST(PluginRouter, SameKeySameVariantAcrossRoutersAndHosts) {
    Router a(sticky_config());
    Router b(sticky_config());
    Host other(test_limits());
    for (int64_t i = 0; i < 2000; ++i) {
        Field f{"player_id", i};
        int va = a.route(std::span<const Field>(&f, 1)).variant;
        EXPECT_EQ(va, b.route(std::span<const Field>(&f, 1), other).variant);
        std::string text = std::to_string(i);
        Field fs{"player_id", std::string_view(text)};
        EXPECT_EQ(va, a.route(std::span<const Field>(&fs, 1)).variant);  // 42 and "42" agree
    }
}

TEST(PluginRouter, RequestWithoutStickyKeyFallsBackAndIsCounted) {
    Router router(sticky_config());
    Field f{"tenant", std::string_view("studio-a")};
    Decision d = router.route(std::span<const Field>(&f, 1));
    EXPECT_EQ(d.fallback, Fallback::Error);
    EXPECT_EQ(d.variant, 0);
    EXPECT_NE(router.stats().last_error.find("no sticky key 'player_id'"), std::string::npos) << router.stats().last_error;
}

TEST(PluginRouter, DestroyedRoutersLeaveNoTablesBehindInTheThreadsState) {
    Host host(test_limits());
    Router keeper(sticky_config());
    Field f{"player_id", int64_t(7)};
    keeper.route(std::span<const Field>(&f, 1), host);
    EXPECT_EQ(host.router_slots(), 1u);
    for (int i = 0; i < 50; ++i) {
        Router temporary(sticky_config()); // an endpoint redefined over and over in one process
        temporary.route(std::span<const Field>(&f, 1), host);
    }
    keeper.route(std::span<const Field>(&f, 1), host); // the next call frees the dead routers' tables
    EXPECT_EQ(host.router_slots(), 1u);
}

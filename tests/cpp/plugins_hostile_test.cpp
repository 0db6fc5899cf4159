// tests/cpp/plugins_hostile_test.cpp
// Hostile plugins: every one must come back within a bounded time with a PluginError naming the
// file, line and limit (or a fallback for routing), and leave the host usable with its memory back.
#include "keel/common/error.hpp"
#include "keel/plugins/host.hpp"
#include "keel/plugins/router.hpp"

#include "support/expect_error.hpp"
#include "support/plugin_dir.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using keel::Error;
using keel::ErrorKind;
using namespace keel::plugins;

using keel::testing::error_message;
using keel::testing::PluginDir;

namespace {

constexpr double kBoundSeconds = 2.0;

// The defaults, except a short time limit so the cases stopped by it keep the suite quick.
Limits hostile_limits() {
    Limits l;
    l.call_ms = 300;
    l.reload_check_ms = 0;
    return l;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs route() whose body is `body` and returns the PluginError's message; checks the time bound
// and that the host is healthy afterwards (the next call works, memory is back).
std::string hostile(PluginDir& d, Host& host, const std::string& name, const std::string& body) {
    auto path = d.write(name, "function route(req, ctx)\n" + body + "\nend\n");
    auto t0 = std::chrono::steady_clock::now();
    auto msg = error_message(ErrorKind::PluginError, [&] { host.call(path, "route", {}); });
    EXPECT_LT(seconds_since(t0), kBoundSeconds) << name << ": " << msg;
    EXPECT_NE(msg.find(name), std::string::npos) << "the error names the file: " << msg;
    auto ok = d.write("fine.lua", "function route() return 'ok' end\n");
    EXPECT_EQ(host.call(ok, "route", {}).str(), "ok") << "after " << name;
    EXPECT_LT(host.memory_used(), size_t(4) << 20) << "after " << name;
    return msg;
}

void expect_has(const std::string& msg, const std::string& needle) {
    EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
}

const char* kLoop = "function() while true do end end";

// Each test gets its own plugins/ folder and a host with the short limits above.
struct PluginHostile : ::testing::Test {
    PluginDir d;
    Host host{hostile_limits()};
};

} // namespace

// --- 4. Message handlers and protected calls ----------------------------------------------------

TEST_F(PluginHostile, XpcallHandlerThatLoopsAfterALoopIsStopped) {
    // The original hang: the budget error is raised inside the hook, where Lua runs the handler with
    // hooks off.
    auto msg = hostile(d, host, "xp_loop.lua", std::string("return xpcall(") + kLoop + ", " + kLoop + ")");
    expect_has(msg, "xp_loop.lua:2");
    expect_has(msg, "instruction budget");
}

TEST_F(PluginHostile, XpcallHandlerThatLoopsAfterAnErrorIsStopped) {
    auto msg = hostile(d, host, "xp_err.lua", std::string("return xpcall(function() error('x') end, ") + kLoop + ")");
    expect_has(msg, "instruction budget");
}

TEST_F(PluginHostile, BudgetCannotBeCaughtByAHandlerOrPcall) {
    auto msg = hostile(d, host, "xp_catch.lua",
                       std::string("local ok = xpcall(") + kLoop + ", function() return 'caught' end)\n"
                       "while true do end");
    expect_has(msg, "xp_catch.lua:2");
    auto msg2 = hostile(d, host, "pcall_loop.lua", "while true do pcall(error, 'x') end");
    expect_has(msg2, "instruction budget");
    auto msg3 = hostile(d, host, "nested.lua",
                        std::string("return pcall(pcall, xpcall, ") + kLoop + ", " + kLoop + ")");
    expect_has(msg3, "instruction budget");
}

TEST_F(PluginHostile, HandlerThatErrorsRecursivelyReturns) {
    // A handler that fails: xpcall returns false and the handler's error, as data.
    auto p = d.write("xp_rec.lua",
                     "function route()\n"
                     "  local ok, e = xpcall(function() error('first') end, function(m) error('again: ' .. m, 0) end)\n"
                     "  return {ok = ok, e = e}\n"
                     "end\n");
    Value v = host.call(p, "route", {});
    EXPECT_FALSE(std::get<bool>(v.find("ok")->data));
    EXPECT_NE(v.find("e")->str().find("again: "), std::string::npos);
    // A handler that starts another xpcall with itself as handler, forever: C stack overflow, then out.
    auto t0 = std::chrono::steady_clock::now();
    auto q = d.write("xp_deep.lua",
                     "local h\n"
                     "h = function(e) local _, r = xpcall(error, h, e) return r end\n"
                     "function route() return (select(2, xpcall(error, h, 'x'))) end\n");
    try {
        host.call(q, "route", {});
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::PluginError);
    }
    EXPECT_LT(seconds_since(t0), kBoundSeconds);
    // Handlers work as before when they behave.
    auto r = d.write("xp_ok.lua",
                     "function route()\n"
                     "  return select(2, xpcall(function() error({code = 7}) end, function(e) return e.code * 6 end))\n"
                     "end\n");
    EXPECT_EQ(host.call(r, "route", {}).number(), 42);
}

TEST_F(PluginHostile, CoroutinesAreNotReachable) {
    auto msg = hostile(d, host, "co.lua", std::string("return coroutine.wrap(") + kLoop + ")()");
    expect_has(msg, "unknown global 'coroutine'");
}

TEST_F(PluginHostile, ErrorObjectsWithLoopingMetamethods) {
    // The host never runs an error object's metamethods...
    auto msg = hostile(d, host, "errobj.lua",
                       std::string("error(setmetatable({}, {__tostring = ") + kLoop + ", __index = " + kLoop +
                           ", __concat = " + kLoop + "}))");
    expect_has(msg, "error object is a table value");
    // ...and when the plugin runs them itself (tostring in a handler, print), they are budgeted.
    auto msg2 = hostile(d, host, "errobj2.lua",
                        std::string("local e = setmetatable({}, {__tostring = ") + kLoop + "})\n"
                        "return xpcall(function() error(e) end, function(x) return tostring(x) end)");
    expect_has(msg2, "instruction budget");
    auto msg3 = hostile(d, host, "errobj3.lua",
                        std::string("print(setmetatable({}, {__tostring = ") + kLoop + "}))");
    expect_has(msg3, "instruction budget");
    auto msg4 = hostile(d, host, "close.lua",
                        std::string("local x <close> = setmetatable({}, {__close = ") + kLoop + "})\nerror('x')");
    expect_has(msg4, "instruction budget");
}

// --- 5. Work inside C functions ------------------------------------------------------------------

TEST_F(PluginHostile, BacktrackingPatternsAreRefusedByTheirCost) {
    auto msg = hostile(d, host, "pat.lua", "return string.find(string.rep('a', 200), '.-.-.-.-b')");
    expect_has(msg, "pat.lua:2");
    expect_has(msg, "string.find");
    expect_has(msg, "matching steps");
    // Through the string metatable, gmatch, gsub and match too.
    expect_has(hostile(d, host, "pat2.lua", "return (string.rep('a', 300)):match('.-.-.-.-b')"), "string.match");
    expect_has(hostile(d, host, "pat3.lua", "for x in string.gmatch(string.rep('a', 300), '.-.-.-.-b') do end"),
               "string.gmatch");
    expect_has(hostile(d, host, "pat4.lua", "return string.gsub(string.rep('a', 300), '.-.-.-.-b', 'x')"),
               "string.gsub");
    // Many cheap calls add up to the budget too.
    expect_has(hostile(d, host, "pat5.lua", "local s = string.rep('a', 50)\nwhile true do s:find('.-.-b') end"),
               "instruction budget");
}

TEST_F(PluginHostile, EverydayPatternsStillWork) {
    auto p = d.write("pat_ok.lua",
                     "function route(ua)\n"
                     "  local trimmed = ua:match('^%s*(.-)%s*$')\n"
                     "  local browser, major = trimmed:match('(%a+)/(%d+)')\n"
                     "  local words = 0\n"
                     "  for _ in trimmed:gmatch('%S+') do words = words + 1 end\n"
                     "  local dashed = trimmed:gsub('%s+', '-')\n"
                     "  return {browser = browser, major = tonumber(major), words = words,\n"
                     "          mobile = trimmed:find('Mobile', 1, true) ~= nil, dashed = #dashed}\n"
                     "end\n");
    std::string ua = "   Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36  ";
    for (int i = 0; i < 4; ++i) ua += ua;  // ~1.5 KB
    Value v = host.call(p, "route", {Value(ua)});
    EXPECT_EQ(v.find("browser")->str(), "Mozilla");
    EXPECT_EQ(v.find("major")->number(), 5);
    EXPECT_GT(v.find("words")->number(), 50);
    EXPECT_TRUE(std::get<bool>(v.find("mobile")->data));
}

TEST_F(PluginHostile, StringRepAndTableFunctionsAreBounded) {
    // rep of nothing is nothing, however many times.
    auto p = d.write("rep_empty.lua", "function route() return string.rep('', 2^40) .. string.rep('', 2^40, '') end\n");
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(host.call(p, "route", {}).str(), "");
    EXPECT_LT(seconds_since(t0), 0.1);
    expect_has(hostile(d, host, "rep_big.lua", "return string.rep('x', 2^40)"), "per-string limit");
    expect_has(hostile(d, host, "move.lua", "return table.move({}, 1, 2^40, 2)"), "table.move");
    const std::string fake = "setmetatable({}, {__index = type, __len = function() return 2^40 end})";
    expect_has(hostile(d, host, "concat.lua", "return table.concat(" + fake + ")"), "table.concat");
    expect_has(hostile(d, host, "unpack.lua", "return table.unpack({}, 1, 1e8)"), "table.unpack");
    expect_has(hostile(d, host, "insert.lua", "table.insert(" + fake + ", 1, 'x')"), "table.insert");
    expect_has(hostile(d, host, "remove.lua", "table.remove(" + fake + ", 1)"), "table.remove");
    expect_has(hostile(d, host, "sort.lua", "table.sort(" + fake + ")"), "table.sort");
}

TEST_F(PluginHostile, RepeatedLinearWorkIsCharged) {
    const std::string big = "local s = string.rep('7', 1000000)\n";
    expect_has(hostile(d, host, "concat_loop.lua", big + "while true do local t = s .. 'y' end"), "instruction budget");
    expect_has(hostile(d, host, "upper_loop.lua", big + "while true do s:upper() end"), "instruction budget");
    expect_has(hostile(d, host, "byte_loop.lua", big + "while true do local n = select('#', s:byte(1, 100000)) end"),
               "instruction budget");
    expect_has(hostile(d, host, "tonumber_loop.lua", big + "while true do tonumber(s, 10) end"), "tonumber");
    expect_has(hostile(d, host, "sub_loop.lua", big + "while true do s:sub(2) end"), "instruction budget");
}

TEST_F(PluginHostile, SlowInstructionsHitTheTimeLimit) {
    Limits l = hostile_limits();
    l.call_instructions = 1'000'000'000;  // the budget alone would allow hours of string compares
    Host slow_host(l);
    auto msg = hostile(d, slow_host, "compare.lua",
                       "local a, b = string.rep('x', 1000000) .. 'a', string.rep('x', 1000000) .. 'b'\n"
                       "local n = 0\n"
                       "while true do if a < b then n = n + 1 end end");
    expect_has(msg, "time limit of 300 ms");
}

TEST_F(PluginHostile, ResultsSharingTablesCannotExplode) {
    auto msg = hostile(d, host, "dag.lua", "local t = {}\nfor i = 1, 30 do t = {t, t} end\nreturn t");
    expect_has(msg, "more than 1000000 values");
}

TEST_F(PluginHostile, RoutingFallsBackWithinTheBound) {
    auto path = d.write("route_xp.lua", std::string("function route(req, ctx)\n"
                                                    "  if req.mode == 'xp' then xpcall(") +
                                            kLoop + ", " + kLoop + ") end\n"
                                            "  if req.mode == 'pat' then string.find(string.rep('a', 200), '.-.-.-.-b') end\n"
                                            "  return 'b'\nend\n");
    RouterConfig c;
    c.plugin = path;
    c.variants = {{"a", 1}, {"b", 1}};
    Router router(c);
    for (std::string mode : {"xp", "pat"}) {
        Field f{"mode", std::string_view(mode)};
        auto t0 = std::chrono::steady_clock::now();
        Decision dec = router.route(std::span<const Field>(&f, 1), host);
        EXPECT_LT(seconds_since(t0), kBoundSeconds) << mode;
        EXPECT_EQ(dec.fallback, Fallback::Budget) << mode << ": " << router.stats().last_error;
        EXPECT_EQ(dec.variant, 0);
    }
    Field ok{"mode", std::string_view("ok")};
    EXPECT_EQ(router.route(std::span<const Field>(&ok, 1), host).variant, 1);
    EXPECT_EQ(router.stats().budget, 2);
}

// --- 7. require stays under plugins/ ---------------------------------------------------------

TEST_F(PluginHostile, RequireComparesResolvedPathsComponentByComponent) {
    // plugins_evil/ starts with "plugins": a string-prefix check let a link to it through.
    fs::create_directories(d.root / "plugins_evil");
    std::ofstream(d.root / "plugins_evil" / "x.lua") << "return 'escaped'\n";
    fs::create_directory_symlink(d.root / "plugins_evil", d.dir / "lib" / "evil");
    expect_has(hostile(d, host, "req_sibling.lua", "return require('lib.evil.x')"), "outside");
    // A file link leaving the root, absolute names and '..' segments.
    std::ofstream(d.root / "secret.lua") << "return 'secret'\n";
    fs::create_symlink(d.root / "secret.lua", d.dir / "lib" / "secret.lua");
    expect_has(hostile(d, host, "req_file.lua", "return require('lib.secret')"), "outside");
    expect_has(hostile(d, host, "req_abs.lua", "return require('/etc/passwd')"), "refused");
    expect_has(hostile(d, host, "req_dots.lua", "return require('..plugins_evil.x')"), "refused");
    expect_has(hostile(d, host, "req_dots2.lua", "return require('lib/../../plugins_evil/x')"), "refused");
    // Links that stay inside plugins/ are fine.
    d.write("lib/real/helper.lua", "return {n = 42}\n");
    fs::create_directory_symlink(d.dir / "lib" / "real", d.dir / "lib" / "alias");
    auto ok = d.write("req_ok.lua", "function route() return require('lib.alias.helper').n end\n");
    EXPECT_EQ(host.call(ok, "route", {}).number(), 42);
}

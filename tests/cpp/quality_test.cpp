// tests/cpp/quality_test.cpp: the data-quality API a check(batch, ctx) plugin sees, run from C++.
#include "keel/common/error.hpp"
#include "keel/plugins/host.hpp"
#include "keel/plugins/quality.hpp"

#include "support/expect_error.hpp"
#include "support/plugin_dir.hpp"

#include <gtest/gtest.h>

#include <memory>

using keel::Error;
using keel::ErrorKind;
using namespace keel::plugins;

using keel::testing::error_message;
using keel::testing::PluginDir;
using keel::testing::reload_every_call_limits;

namespace {

// A batch whose memory lives on the heap, so a test can free it between two checks.
struct HeapBatch {
    std::unique_ptr<std::vector<double>> x = std::make_unique<std::vector<double>>();
    std::unique_ptr<std::vector<int64_t>> offsets = std::make_unique<std::vector<int64_t>>();
    std::unique_ptr<std::string> chars = std::make_unique<std::string>();
    Batch batch;
    explicit HeapBatch(const std::vector<std::string>& strings) {
        offsets->push_back(0);
        for (size_t i = 0; i < strings.size(); ++i) {
            x->push_back(double(i));
            *chars += strings[i];
            offsets->push_back(int64_t(chars->size()));
        }
        batch.rows = strings.size();
        ColumnView cx;
        cx.name = "x";
        cx.dtype = keel::DType::Float64;
        cx.values = x->data();
        ColumnView cs;
        cs.name = "s";
        cs.dtype = keel::DType::String;
        cs.offsets = offsets->data();
        cs.values = chars->data();
        batch.columns = {cx, cs};
    }
};

RuleResult run_one(Host& host, const Batch& b, const std::string& plugin, Value args = Value(Value::Map{})) {
    auto results = run_rules(b, {Rule{plugin, std::move(args), "error", ""}}, Value(Value::Map{}), host);
    EXPECT_EQ(results.size(), 1u);
    return results.at(0);
}

} // namespace

TEST(QualitySandbox, EveryKeptObjectRaisesAfterItsCheckReturnedAndTheBatchIsFreed) {
    PluginDir d;
    d.write("stash.lua", "return {}\n");
    Host host(reload_every_call_limits());
    // Each keeper stores one kind of object on the first call and uses it on every later one.
    const std::vector<std::pair<std::string, std::string>> keepers = {
        {"column_fn", "local s = require('stash')\nfunction check(b)\n"
                      "  if s.f then return {status='pass', observed=s.f(b, 'x'):mean()} end\n"
                      "  s.f = b.column\n  return {status='pass'}\nend\n"},
        {"has_fn", "local keep\nfunction check(b)\n"
                   "  if keep then return {status='pass', observed=keep(b, 'x')} end\n"
                   "  keep = b.has\n  return {status='pass'}\nend\n"},
        {"handle", "local keep\nfunction check(b)\n"
                   "  if keep then return {status='pass', observed=keep:pattern_share('v')} end\n"
                   "  keep = b:column('s')\n  return {status='pass'}\nend\n"},
        {"batch", "local keep\nfunction check(b)\n"
                  "  if keep then return {status='pass', observed=keep:has('s')} end\n"
                  "  keep = b\n  return {status='pass'}\nend\n"},
    };
    for (const auto& [name, source] : keepers) {
        std::string path = d.write(name + ".lua", source);
        auto first = std::make_unique<HeapBatch>(std::vector<std::string>{"v1", "v2", "v3"});
        EXPECT_EQ(run_one(host, first->batch, path).status, "pass") << name;
        first.reset();  // the batch's memory is gone
        HeapBatch second({"w"});
        RuleResult r = run_one(host, second.batch, path);
        EXPECT_EQ(r.status, "error") << name;
        EXPECT_NE(r.message.find("used after check() returned"), std::string::npos) << name << ": " << r.message;
    }
    // Outside any check() (a plain call of another entry point) the same objects raise too.
    std::string poke = d.write("poke.lua", "local s = require('stash')\nfunction poke() return s.f(nil, 'x') end\n");
    auto msg = error_message(ErrorKind::PluginError, [&] { host.call(poke, "poke", {}); });
    EXPECT_NE(msg.find("batch.column used after check() returned"), std::string::npos) << msg;
}

TEST(QualityPatterns, HostilePatternsAreRuleErrorsAndAddRuleRefusesThem) {
    PluginDir d;
    Host host(reload_every_call_limits());
    HeapBatch b({"a@x.io", "nope", "b@y.io"});
    std::string bad = d.write("bad.lua", "function check(b) return {status='pass', observed=b:column('s'):pattern_share("
                                         "'(|)(\\\\1\\\\1)*')} end\n");
    RuleResult r = run_one(host, b.batch, bad);
    EXPECT_EQ(r.status, "error");
    EXPECT_NE(r.message.find("invalid escape sequence: \\1"), std::string::npos) << r.message;

    std::string good = d.write("mail.lua", "function check(b) return {status='pass', observed=b:column('s'):pattern_share("
                                           "'^[^@]+@[^@]+$')} end\n");
    EXPECT_DOUBLE_EQ(run_one(host, b.batch, good).observed.number(), 2.0 / 3.0);

    Rule rule{"plugins/quality/pattern.lua", Value(Value::Map{{"column", "s"}, {"pattern", "(a)\\1"}}), "error", ""};
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { validate_rule(rule, {"s"}, "feature view 'v'", host); });
    EXPECT_NE(msg.find("pattern.lua argument 'pattern': pattern '(a)\\1' cannot be used"), std::string::npos) << msg;
    rule.args = Value(Value::Map{{"column", "t"}, {"pattern", "^a"}});
    EXPECT_EQ(error_message(ErrorKind::InvalidArgument, [&] { validate_rule(rule, {"s", "u"}, "feature view 'v'", host); }),
              "pattern.lua argument 'column' names column 't', which feature view 'v' does not have (columns: s, u)");
    validate_rule(rule, {}, "", host);  // columns unknown: only the pattern is checked
}

TEST(QualityPii, MaskedColumnsGiveMaskedOffendersAndProfilesButPsiStillCompares) {
    PluginDir d;
    Host host(reload_every_call_limits());
    HeapBatch b({"ann", "ann", "bob", "cy"});
    Masker mask = [](std::string_view v) { return "m:" + std::string(v.size(), '*') + std::to_string(v.size()); };
    b.batch.columns[1].mask = &mask;
    b.batch.columns[1].masked = true;
    std::string top = d.write("top.lua", "function check(b) return {status='pass', observed=b:column('s'):not_allowed({'cy'})} end\n");
    Value o = run_one(host, b.batch, top).observed;
    ASSERT_TRUE(o.is_array());
    ASSERT_EQ(o.array().size(), 2u);  // "ann" and "bob" mask alike here, but are counted apart
    EXPECT_EQ(o.array()[0].find("value")->str(), "m:***3");
    EXPECT_EQ(o.array()[0].find("count")->number(), 2);

    Value profile = profile_column(b.batch.columns[1], b.batch.rows);
    EXPECT_TRUE(std::get<bool>(profile.find("masked")->data));
    for (const auto& [k, share] : profile.find("shares")->map()) EXPECT_EQ(k.rfind("m:", 0), 0u) << k;
    EXPECT_NEAR(psi(b.batch.columns[1], b.batch.rows, profile), 0.0, 1e-12);
    ColumnView plain = b.batch.columns[1];
    plain.mask = nullptr;
    EXPECT_THROW(psi(plain, b.batch.rows, profile), Error);  // a masked reference needs the column's masker
}

// --- the rule runner: results, severities, failures of the rule itself ---------------------------

TEST(QualityRunner, ResultsCarryTheirRuleSeverityColumnAndIndex) {
    PluginDir d;
    Host host(reload_every_call_limits());
    HeapBatch b({"a", "b", "c"});
    auto two = d.write("two.lua", "function check(b, ctx)\n"
                                  "  return {{status = 'pass', observed = b.rows, message = ctx.rule .. '/' .. ctx.severity},\n"
                                  "          {rule = 'custom', column = 's', status = 'fail', expectation = 'e',\n"
                                  "           detail = {worst = {1, 2}}}}\nend\n");
    auto warn = d.write("warns.lua", "schema = {column = {type = 'column', required = true, doc = 'x'}}\n"
                                     "function check(b, ctx) return {status = 'warn', observed = ctx.args.column} end\n");
    std::vector<Rule> rules = {{two, Value(Value::Map{}), "error", ""},
                               {warn, Value(Value::Map{{"column", "x"}}), "warn", "my warning"}};
    auto results = run_rules(b.batch, rules, Value(Value::Map{}), host);
    ASSERT_EQ(results.size(), 3u);
    EXPECT_EQ(results[0].rule, "two");  // the file's stem when the rule has no name
    EXPECT_EQ(results[0].status, "pass");
    EXPECT_EQ(results[0].observed.number(), 3);
    EXPECT_EQ(results[0].message, "two/error");
    EXPECT_EQ(results[0].rule_index, 0u);
    EXPECT_EQ(results[1].rule, "custom");
    EXPECT_EQ(results[1].column, "s");
    EXPECT_EQ(results[1].severity, "error");
    EXPECT_EQ(results[1].expectation, "e");
    ASSERT_NE(results[1].detail.find("worst"), nullptr);
    EXPECT_EQ(results[1].detail.find("worst")->array().size(), 2u);
    EXPECT_EQ(results[1].rule_index, 0u);
    EXPECT_EQ(results[2].rule, "my warning");
    EXPECT_EQ(results[2].column, "x");  // taken from the rule's column argument
    EXPECT_EQ(results[2].severity, "warn");
    EXPECT_EQ(results[2].status, "warn");
    EXPECT_EQ(results[2].rule_index, 1u);
}

TEST(QualityRunner, ABrokenRuleIsAnErrorNamingItsFileNeverAPass) {
    PluginDir d;
    Host host(reload_every_call_limits());
    HeapBatch b({"a"});
    const std::vector<std::pair<std::string, std::string>> cases = {
        {d.write("nil.lua", "function check() return nil end\n"), "nil.lua: check() must return a result table"},
        {d.write("status.lua", "function check() return {status = 'ok'} end\n"),
         "status.lua: check() returned status 'ok', expected pass, warn or fail"},
        {d.write("raises.lua", "function check()\n  error('boom')\nend\n"), "raises.lua:2: boom"},
        {d.write("syntax.lua", "function check( return end\n"), "syntax.lua"},
        {d.write("column.lua", "function check(b) return {status = 'pass', observed = b:column('nope'):mean()} end\n"),
         "no column 'nope'"},
        {(d.dir / "missing.lua").string(), "missing.lua"},
    };
    for (const auto& [plugin, message] : cases) {
        RuleResult r = run_one(host, b.batch, plugin);
        EXPECT_EQ(r.status, "error") << plugin;
        EXPECT_NE(r.message.find(message), std::string::npos) << r.message;
    }
}

TEST(QualityRunner, BudgetMemoryAndTimeLimitsAreRuleErrorsAndTheNextRuleStillRuns) {
    PluginDir d;
    Limits limits = reload_every_call_limits();
    limits.call_instructions = 5'000'000;  // the hog reaches the memory cap well within it
    limits.memory_bytes = 8 << 20;
    Host host(limits);
    HeapBatch b({"a", "b"});
    auto loop = d.write("loop.lua", "function check() while true do end end\n");
    // The hog keeps what it allocated, so the state stays full and is rebuilt before the next rule.
    auto hog = d.write("hog.lua", "local keep = {}\nfunction check() for i = 1, 1e9 do keep[i] = {i, i, i, i} end end\n");
    // Uses a column after the hog's state was rebuilt: the batch's metatables are there again.
    auto ok = d.write("ok.lua", "function check(b) return {status = 'pass', observed = b:column('x'):count()} end\n");
    const uint64_t generation = host.generation();
    auto results = run_rules(b.batch, {{loop, Value{}, "error", ""}, {hog, Value{}, "error", ""}, {ok, Value{}, "warn", ""}},
                             Value(Value::Map{}), host);
    EXPECT_EQ(host.generation(), generation + 1);
    ASSERT_EQ(results.size(), 3u);
    EXPECT_EQ(results[0].status, "error");
    EXPECT_NE(results[0].message.find("instruction budget of 5000000 instructions exceeded"), std::string::npos)
        << results[0].message;
    EXPECT_NE(results[0].message.find("loop.lua:1"), std::string::npos) << results[0].message;
    EXPECT_EQ(results[1].status, "error");
    EXPECT_NE(results[1].message.find("memory cap of 8 MiB exceeded"), std::string::npos) << results[1].message;
    EXPECT_EQ(results[2].status, "pass") << results[2].message;
    EXPECT_EQ(results[2].observed.number(), 2);

    // The wall-clock limit: a budget too large to end the loop first.
    limits.call_instructions = int64_t(1) << 40;
    limits.call_ms = 50;
    host.set_limits(limits);
    RuleResult slow = run_one(host, b.batch, loop);
    EXPECT_EQ(slow.status, "error");
    EXPECT_NE(slow.message.find("time limit of 50 ms exceeded"), std::string::npos) << slow.message;
    EXPECT_EQ(run_one(host, b.batch, ok).status, "pass");
}

TEST(QualityRunner, ArgumentsAreCheckedAgainstTheSchemaBeforeAnyRuleRuns) {
    PluginDir d;
    Host host(reload_every_call_limits());
    HeapBatch b({"a"});
    d.write("count.lua", "return {n = 0}\n");
    auto counts = d.write("counts.lua", "local c = require('count')\n"
                                        "function check() c.n = c.n + 1 return {status = 'pass'} end\n"
                                        "function peek() return c.n end\n");
    const std::string range = std::string(KEEL_SOURCE_DIR) + "/plugins/quality/range.lua";
    const std::vector<std::pair<Value, std::string>> refused = {
        {Value(Value::Map{{"colum", "x"}}), "range.lua has no argument 'colum' (arguments: column, max, min)"},
        {Value(Value::Map{{"min", 0}}), "range.lua needs argument 'column': the numeric or timestamp column to check"},
        {Value(Value::Map{{"column", "x"}, {"min", "0"}}), "range.lua argument 'min' must be a number, not string '0'"},
        {Value(Value::Map{{"column", 3}}), "range.lua argument 'column' must be a column, not integer 3"},
    };
    for (const auto& [args, message] : refused) {
        EXPECT_EQ(error_message(ErrorKind::InvalidArgument, [&] {
                      run_rules(b.batch, {{counts, Value{}, "error", ""}, {range, args, "error", ""}},
                                Value(Value::Map{}), host);
                  }),
                  message);
    }
    EXPECT_EQ(host.call(counts, "peek", {}).number(), 0);  // no rule ran
    auto pattern = std::string(KEEL_SOURCE_DIR) + "/plugins/quality/pattern.lua";
    EXPECT_THROW(run_rules(b.batch, {{pattern, Value(Value::Map{{"column", "s"}, {"pattern", "(a"}}), "error", ""}},
                           Value(Value::Map{}), host),
                 Error);
    run_rules(b.batch, {{counts, Value{}, "error", ""}}, Value(Value::Map{}), host);
    EXPECT_EQ(host.call(counts, "peek", {}).number(), 1);
}

TEST(QualityRunner, ValidateRuleChecksTheSchemaThenTheTargetsColumns) {
    Host host(reload_every_call_limits());
    const std::string range = std::string(KEEL_SOURCE_DIR) + "/plugins/quality/range.lua";
    Rule rule{range, Value(Value::Map{{"column", "spend"}, {"max", true}}), "error", ""};
    EXPECT_EQ(error_message(ErrorKind::InvalidArgument, [&] { validate_rule(rule, {"spend"}, "feature view 'v'", host); }),
              "range.lua argument 'max' must be a number, not boolean true");
    rule.args = Value(Value::Map{{"column", "spend"}, {"max", 10}});
    validate_rule(rule, {"spend"}, "feature view 'v'", host);
    rule.plugin = std::string(KEEL_SOURCE_DIR) + "/plugins/quality/not_null.lua";
    rule.args = Value(Value::Map{{"column", "spend"}, {"max_null_rate", 2}});
    EXPECT_EQ(error_message(ErrorKind::InvalidArgument, [&] { validate_rule(rule, {"spend"}, "feature view 'v'", host); }),
              "not_null.lua argument 'max_null_rate' must be between 0 and 1, not 2");
}

TEST(QualityRunner, ReferenceColumnsFollowTheDeclaredNeedNotTheFileName) {
    PluginDir d;
    Host host(reload_every_call_limits());
    auto ks = d.write("ks.lua", "needs = {'reference_profile'}\n"
                                "schema = {left = {type = 'column'}, more = {type = 'columns'}, label = {type = 'string'}}\n"
                                "function check() return {status = 'pass'} end\n");
    auto named = d.write("drift_psi.lua", "schema = {column = {type = 'column'}}\n"
                                          "function check() return {status = 'pass'} end\n");
    const std::string drift = std::string(KEEL_SOURCE_DIR) + "/plugins/quality/drift_psi.lua";
    std::vector<Rule> rules = {
        {drift, Value(Value::Map{{"column", "spend"}}), "warn", ""},
        {ks, Value(Value::Map{{"label", "not a column"}, {"left", "age"}, {"more", Value(Value::Array{"spend", "country"})}}),
         "warn", ""},
        {named, Value(Value::Map{{"column", "rate"}}), "warn", ""},
        {(d.dir / "missing.lua").string(), Value(Value::Map{{"column", "gone"}}), "warn", ""},
    };
    EXPECT_EQ(reference_columns(rules, host), (std::vector<std::string>{"spend", "age", "country"}));
    EXPECT_TRUE(reference_columns({}, host).empty());
}

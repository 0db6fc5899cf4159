// tests/cpp/quality_test.cpp: the data-quality API a check(batch, ctx) plugin sees, run from C++.
#include "keel/common/error.hpp"
#include "keel/plugins/host.hpp"
#include "keel/plugins/quality.hpp"

#include "support/plugin_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <unistd.h>

namespace fs = std::filesystem;
using keel::Error;
using keel::ErrorKind;
using namespace keel::plugins;

using keel::testing::PluginDir;

namespace {

Limits test_limits() {
    Limits l;
    l.reload_check_ms = 0;
    return l;
}

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
    Host host(test_limits());
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
    try {
        host.call(poke, "poke", {});
        ADD_FAILURE() << "a stale batch.column ran";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::PluginError);
        EXPECT_NE(std::string(e.what()).find("batch.column used after check() returned"), std::string::npos) << e.what();
    }
}

TEST(QualityPatterns, HostilePatternsAreRuleErrorsAndAddRuleRefusesThem) {
    PluginDir d;
    Host host(test_limits());
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
    try {
        validate_rule(rule, {"s"}, "feature view 'v'", host);
        ADD_FAILURE() << "a backreference was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("pattern.lua argument 'pattern': pattern '(a)\\1' cannot be used"),
                  std::string::npos) << e.what();
    }
    rule.args = Value(Value::Map{{"column", "t"}, {"pattern", "^a"}});
    try {
        validate_rule(rule, {"s", "u"}, "feature view 'v'", host);
        ADD_FAILURE() << "a missing column was accepted";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "pattern.lua argument 'column' names column 't', which feature view 'v' does not have "
                               "(columns: s, u)");
    }
    validate_rule(rule, {}, "", host);  // columns unknown: only the pattern is checked
}

TEST(QualityPii, MaskedColumnsGiveMaskedOffendersAndProfilesButPsiStillCompares) {
    PluginDir d;
    Host host(test_limits());
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

// tests/cpp/quality_store_test.cpp: the quality store (rules, results history, data issues, reference
// profiles) on a real workspace, from C++ alone.
#include "keel/common/error.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/plugins/quality_store.hpp"
#include "keel/storage/workspace.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>


using keel::Error;
using keel::ErrorKind;
using namespace keel::plugins;
using keel::testing::error_message;

namespace {

constexpr const char* kView = "feature_view:activity";

struct QualityStoreTest : keel::testing::WorkspaceTest {
    QualityStore store{*ws};

    std::string data_issues_tag(const std::string& ref) {
        auto node = keel::lineage::Graph(*ws).find_node(ref);
        if (!node) return "";
        auto it = node->tags.find("data_issues");
        return it == node->tags.end() ? "" : it->second;
    }
};

StoredResult result(int64_t rule_id, std::string rule, std::string status, std::string severity = "error") {
    StoredResult r;
    r.rule = std::move(rule);
    r.column = "spend";
    r.severity = std::move(severity);
    r.status = std::move(status);
    r.observed_json = "3";
    r.expectation = "0 <= spend";
    r.message = "3 values out of range";
    r.rule_id = rule_id;
    return r;
}

} // namespace

TEST_F(QualityStoreTest, RulesRoundTripAndRemovedOnesAreGone) {
    int64_t a = store.add_rule(kView, "plugins/quality/range.lua", R"({"column": "spend", "min": 0})", "error", "");
    int64_t b = store.add_rule(kView, "plugins/quality/not_null.lua", R"({"column": "spend"})", "warn", "nulls");
    store.add_rule("feature_view:other", "plugins/quality/unique.lua", "{}", "error", "");
    auto rules = store.rules(kView);
    ASSERT_EQ(rules.size(), 2u);
    EXPECT_EQ(rules[0].id, a);
    EXPECT_EQ(rules[0].plugin, "plugins/quality/range.lua");
    EXPECT_EQ(rules[0].args_json, R"({"column": "spend", "min": 0})");
    EXPECT_EQ(rules[0].severity, "error");
    EXPECT_EQ(rules[1].name, "nulls");
    EXPECT_GT(rules[1].created_at, 0);

    store.remove_rule(kView, a);
    ASSERT_EQ(store.rules(kView).size(), 1u);
    EXPECT_EQ(store.rules(kView)[0].id, b);
    EXPECT_EQ(error_message(ErrorKind::NotFound, [&] { store.remove_rule(kView, a); }),
              fmt::format("feature_view:activity has no rule {}", a));
    EXPECT_THROW(store.remove_rule("feature_view:other", b), Error);  // another target's id
}

TEST_F(QualityStoreTest, AnUnknownSeverityIsRefusedAndNothingIsSaved) {
    EXPECT_EQ(error_message(ErrorKind::InvalidArgument,
                            [&] { store.add_rule(kView, "plugins/quality/range.lua", "{}", "fatal", ""); }),
              "severity 'fatal' must be 'error' or 'warn'");
    EXPECT_TRUE(store.rules(kView).empty());
}

TEST_F(QualityStoreTest, HistoryKeepsEveryBatchNewestFirstWithItsDetails) {
    int64_t rule = store.add_rule(kView, "plugins/quality/range.lua", "{}", "error", "");
    StoredResult failing = result(rule, "range", "fail");
    failing.detail_json = R"({"worst": [-3]})";
    failing.raw_pii = "email";
    auto first = store.record(kView, 100, false, {failing});
    auto second = store.record(kView, 50, true, {result(rule, "range", "pass")});
    EXPECT_GT(second.batch, first.batch);

    auto h = store.history(kView);
    ASSERT_EQ(h.size(), 2u);
    EXPECT_EQ(h[0].batch, second.batch);  // newest first
    EXPECT_EQ(h[0].rows, 50);
    EXPECT_TRUE(h[0].accepted);
    EXPECT_EQ(h[0].status, "pass");
    EXPECT_EQ(h[1].batch, first.batch);
    EXPECT_EQ(h[1].rows, 100);
    EXPECT_FALSE(h[1].accepted);
    EXPECT_EQ(h[1].rule, "range");
    EXPECT_EQ(h[1].column, "spend");
    EXPECT_EQ(h[1].severity, "error");
    EXPECT_EQ(h[1].observed_json, "3");
    EXPECT_EQ(h[1].expectation, "0 <= spend");
    EXPECT_EQ(h[1].message, "3 values out of range");
    EXPECT_EQ(h[1].detail_json, R"({"worst": [-3]})");
    EXPECT_EQ(h[1].raw_pii, "email");
    EXPECT_GT(h[1].created_at, 0);
    EXPECT_EQ(store.history(kView, 1).size(), 1u);
    EXPECT_TRUE(store.history("feature_view:other").empty());
}

TEST_F(QualityStoreTest, FailuresOpenOneIssueAndAPassClosesIt) {
    int64_t rule = store.add_rule(kView, "plugins/quality/range.lua", "{}", "error", "");
    auto opened = store.record(kView, 10, false, {result(rule, "range", "fail")});
    ASSERT_EQ(opened.opened.size(), 1u);
    const DataIssue issue = opened.opened[0];
    EXPECT_EQ(issue.target, kView);
    EXPECT_EQ(issue.rule, "range");
    EXPECT_EQ(issue.column, "spend");
    EXPECT_EQ(issue.severity, "error");
    EXPECT_EQ(issue.message, "3 values out of range");
    EXPECT_FALSE(issue.closed_at);
    EXPECT_EQ(data_issues_tag(kView), "1");

    // Failing again (or erroring) keeps the one open issue.
    auto again = store.record(kView, 10, false, {result(rule, "range", "error")});
    EXPECT_TRUE(again.opened.empty());
    EXPECT_EQ(store.issues(kView).size(), 1u);
    // A warning neither opens nor closes.
    auto warned = store.record(kView, 10, true, {result(rule, "range", "warn")});
    EXPECT_TRUE(warned.opened.empty() && warned.closed.empty());

    auto passed = store.record(kView, 10, true, {result(rule, "range", "pass")});
    ASSERT_EQ(passed.closed.size(), 1u);
    EXPECT_EQ(passed.closed[0].id, issue.id);
    EXPECT_TRUE(passed.closed[0].closed_at);
    EXPECT_TRUE(store.issues(kView).empty());
    auto all = store.issues(kView, true);
    ASSERT_EQ(all.size(), 1u);
    EXPECT_TRUE(all[0].closed_at.has_value());
    EXPECT_EQ(data_issues_tag(kView), "0");
}

TEST_F(QualityStoreTest, RemovingARuleClosesOnlyTheIssuesItOpened) {
    int64_t strict = store.add_rule(kView, "plugins/quality/range.lua", "{}", "error", "");
    int64_t loose = store.add_rule(kView, "plugins/quality/range.lua", "{}", "warn", "");
    store.record(kView, 10, false, {result(strict, "range", "fail"), result(loose, "range", "fail", "warn")});
    ASSERT_EQ(store.issues(kView).size(), 2u);
    auto closed = store.remove_rule(kView, strict);
    ASSERT_EQ(closed.size(), 1u);
    EXPECT_EQ(closed[0].severity, "error");
    auto open = store.issues(kView);
    ASSERT_EQ(open.size(), 1u);
    EXPECT_EQ(open[0].severity, "warn");
    EXPECT_EQ(data_issues_tag(kView), "1");
}

TEST_F(QualityStoreTest, IssuesReachEverythingDownstreamAndCloseByHandOnce) {
    keel::lineage::Graph g(*ws);
    g.add_edge(kView, "feeds", "training_set:ts1");
    g.add_edge("training_set:ts1", "trains", "model:churn/1");
    int64_t rule = store.add_rule(kView, "plugins/quality/not_null.lua", "{}", "error", "");
    auto opened = store.record(kView, 10, false, {result(rule, "not_null", "fail")});
    ASSERT_EQ(opened.opened.size(), 1u);

    auto affecting = store.issues_affecting("model:churn/1");
    ASSERT_EQ(affecting.size(), 1u);
    EXPECT_EQ(affecting[0].target, kView);
    EXPECT_EQ(store.issues_affecting(kView).size(), 1u);
    EXPECT_TRUE(store.issues_affecting("model:other/1").empty());  // not in the graph: nothing upstream

    DataIssue closed = store.close_issue(opened.opened[0].id);
    EXPECT_TRUE(closed.closed_at);
    EXPECT_TRUE(store.issues_affecting("model:churn/1").empty());
    EXPECT_EQ(error_message(ErrorKind::NotFound, [&] { store.close_issue(opened.opened[0].id); }),
              fmt::format("data issue {} is not open", opened.opened[0].id));
}

TEST_F(QualityStoreTest, ReferenceProfilesRoundTripAndAreReplaced) {
    EXPECT_TRUE(store.profiles(kView).empty());
    store.set_profile(kView, "spend", R"({"kind": "numeric"})");
    store.set_profile(kView, "country", R"({"kind": "categorical"})");
    store.set_profile("feature_view:other", "spend", "{}");
    store.set_profile(kView, "spend", R"({"kind": "numeric", "v": 2})");
    auto p = store.profiles(kView);
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0], (std::pair<std::string, std::string>{"country", R"({"kind": "categorical"})"}));
    EXPECT_EQ(p[1], (std::pair<std::string, std::string>{"spend", R"({"kind": "numeric", "v": 2})"}));
}

TEST_F(QualityStoreTest, AnotherHandleOnTheWorkspaceSeesTheSameRecords) {
    int64_t rule = store.add_rule(kView, "plugins/quality/range.lua", "{}", "error", "");
    store.record(kView, 10, false, {result(rule, "range", "fail")});
    auto other_ws = open_again();
    QualityStore other(*other_ws);
    EXPECT_EQ(other.rules(kView).size(), 1u);
    EXPECT_EQ(other.history(kView).size(), 1u);
    EXPECT_EQ(other.issues(kView).size(), 1u);
}

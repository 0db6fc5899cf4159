// tests/cpp/tracking_test.cpp
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/storage/workspace.hpp"
#include "keel/tracking/filter.hpp"
#include "keel/tracking/tracker.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using keel::ErrorKind;
using namespace keel::tracking;
using keel::testing::thrown_error;

namespace {

struct TrackingTest : keel::testing::WorkspaceTest {
    Tracker tracker{*ws};

    RunInfo start(std::string experiment = "exp", std::string name = "") {
        NewRun spec;
        spec.experiment = std::move(experiment);
        spec.name = std::move(name);
        return tracker.start_run(spec);
    }
};

std::vector<std::string> names(const std::vector<Run>& runs) {
    std::vector<std::string> out;
    for (const auto& r : runs) out.push_back(r.info.name);
    return out;
}

} // namespace

TEST(Filter, ParsesTermsOfEveryEntity) {
    auto terms = parse_filter("metrics.auc > 0.8 and params.lr = '0.1' AND tags.team = 'growth' and status = "
                              "'FINISHED' and metrics.`val loss` <= -1e-3 and run_name LIKE 'a%'");
    ASSERT_EQ(terms.size(), 6u);
    EXPECT_EQ(terms[0].entity, Entity::Metric);
    EXPECT_EQ(terms[0].key, "auc");
    EXPECT_EQ(terms[0].op, ">");
    EXPECT_DOUBLE_EQ(std::get<double>(terms[0].value), 0.8);
    EXPECT_EQ(terms[1].entity, Entity::Param);
    EXPECT_EQ(std::get<std::string>(terms[1].value), "0.1");
    EXPECT_EQ(terms[2].entity, Entity::Tag);
    EXPECT_EQ(terms[3].entity, Entity::Attribute);
    EXPECT_EQ(terms[3].key, "status");
    EXPECT_EQ(terms[4].key, "val loss");
    EXPECT_DOUBLE_EQ(std::get<double>(terms[4].value), -1e-3);
    EXPECT_EQ(terms[5].key, "name");
    EXPECT_EQ(terms[5].op, "LIKE");
    EXPECT_TRUE(parse_filter("   ").empty());
    EXPECT_EQ(parse_filter("metrics.val.loss < 1")[0].key, "val.loss");
}

TEST(Filter, MalformedFilterNamesPositionAndToken) {
    auto e = thrown_error([] { parse_filter("metrics.auc >> 0.8"); });
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("position 14 (token '>')"), std::string::npos) << e.what();
    e = thrown_error([] { parse_filter("params.lr = 0.1"); });
    EXPECT_NE(std::string(e.what()).find("position 13 (token '0.1')"), std::string::npos) << e.what();
    e = thrown_error([] { parse_filter("metrics.auc > 1 and"); });
    EXPECT_NE(std::string(e.what()).find("<end of filter>"), std::string::npos) << e.what();
    e = thrown_error([] { parse_filter("bogus = '1'"); });
    EXPECT_NE(std::string(e.what()).find("token 'bogus'"), std::string::npos) << e.what();
    e = thrown_error([] { parse_order_key("metrics.auc UP"); });
    EXPECT_NE(std::string(e.what()).find("token 'UP'"), std::string::npos) << e.what();
    auto k = parse_order_key("metrics.auc desc");
    EXPECT_EQ(k.entity, Entity::Metric);
    EXPECT_FALSE(k.ascending);
}

TEST_F(TrackingTest, RunLifecycle) {
    auto run = start("exp", "first");
    EXPECT_EQ(run.id.size(), 32u);
    EXPECT_EQ(run.status, "RUNNING");
    auto ended = tracker.end_run(run.id, "FAILED", std::string("boom"));
    EXPECT_EQ(ended.status, "FAILED");
    EXPECT_EQ(ended.error.value_or(""), "boom");
    EXPECT_TRUE(ended.end_time.has_value());
    EXPECT_EQ(thrown_error([&] { tracker.end_run(run.id, "DONE"); }).kind(), ErrorKind::InvalidArgument);
    auto e = thrown_error([&] { tracker.get_run("feedface"); });
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
    EXPECT_NE(std::string(e.what()).find("feedface"), std::string::npos);
    ASSERT_EQ(tracker.experiments().size(), 1u);
    EXPECT_EQ(tracker.experiments()[0].run_count, 1);
}

TEST_F(TrackingTest, ParamsAreImmutable) {
    auto run = start();
    tracker.log_param(run.id, "lr", "0.1");
    tracker.log_param(run.id, "lr", "0.1");
    auto e = thrown_error([&] { tracker.log_param(run.id, "lr", "0.2"); });
    EXPECT_EQ(e.kind(), ErrorKind::Conflict);
    std::string msg = e.what();
    EXPECT_NE(msg.find("'lr'"), std::string::npos);
    EXPECT_NE(msg.find("'0.1'"), std::string::npos);
    EXPECT_NE(msg.find("'0.2'"), std::string::npos);
    EXPECT_EQ(tracker.get_run(run.id).params.at("lr"), "0.1");
}

TEST_F(TrackingTest, MetricsKeepHistoryLatestAndNonFinite) {
    auto run = start();
    tracker.log_metric(run.id, "loss", 1.0, 0, 10);
    tracker.log_metric(run.id, "loss", 0.2, 5, 5);
    tracker.log_metric(run.id, "loss", 0.9, 3, 99);
    tracker.log_metric(run.id, "nan", std::nan(""), 0);
    tracker.log_metric(run.id, "inf", std::numeric_limits<double>::infinity(), 0);
    auto r = tracker.get_run(run.id);
    EXPECT_DOUBLE_EQ(r.metrics.at("loss"), 0.2);
    EXPECT_TRUE(std::isnan(r.metrics.at("nan")));
    EXPECT_TRUE(std::isinf(r.metrics.at("inf")));
    auto hist = tracker.metric_history(run.id, "loss");
    ASSERT_EQ(hist.size(), 3u);
    EXPECT_EQ(hist[0].step, 0);
    EXPECT_EQ(hist[2].step, 5);

    std::vector<std::string> key{"curve"};
    std::vector<double> values{3, 2, 1};
    std::vector<int64_t> steps{0, 2, 1};
    tracker.log_metrics(run.id, key, values, steps);
    EXPECT_DOUBLE_EQ(tracker.get_run(run.id).metrics.at("curve"), 2.0);
    EXPECT_EQ(tracker.metric_history(run.id, "curve").size(), 3u);
    std::vector<int64_t> bad_steps{1};
    EXPECT_EQ(thrown_error([&] { tracker.log_metrics(run.id, key, values, bad_steps); }).kind(),
              ErrorKind::InvalidArgument);
}

TEST_F(TrackingTest, ABatchOfManyPointsAndKeysLandsWholeWithEachKeysLatest) {
    // 1,234 points: the batch goes in INSERTs of 500, 32 and 1 points; every size must land.
    auto run = start();
    constexpr size_t n = 1234;
    std::vector<std::string> keys;
    std::vector<double> values;
    std::vector<int64_t> steps, stamps;
    for (size_t i = 0; i < n; ++i) {
        keys.push_back(i % 2 ? "odd" : "even");
        values.push_back(double(i));
        steps.push_back(int64_t(i / 2));
        stamps.push_back(1000);
    }
    steps[0] = 10'000;  // "even"'s winner comes first, not last
    tracker.log_metrics(run.id, keys, values, steps, stamps);
    auto even = tracker.metric_history(run.id, "even"), odd = tracker.metric_history(run.id, "odd");
    ASSERT_EQ(even.size(), n / 2);
    ASSERT_EQ(odd.size(), n / 2);
    EXPECT_DOUBLE_EQ(odd[100].value, 201.0);
    auto latest = tracker.get_run(run.id).metrics;
    EXPECT_DOUBLE_EQ(latest.at("even"), 0.0);
    EXPECT_DOUBLE_EQ(latest.at("odd"), double(n - 1));
    // A bad key fails the whole batch before anything is written.
    keys[700] = "";
    EXPECT_EQ(thrown_error([&] { tracker.log_metrics(run.id, keys, values, steps, stamps); }).kind(),
              ErrorKind::InvalidArgument);
    EXPECT_EQ(tracker.metric_history(run.id, "odd").size(), n / 2);
}

TEST_F(TrackingTest, SearchFiltersOrdersAndLoadsPage) {
    for (int i = 0; i < 6; ++i) {
        auto run = start("exp", "r" + std::to_string(i));
        tracker.log_param(run.id, "lr", i % 2 ? "0.1" : "0.2");
        tracker.set_tag(run.id, "team", i < 3 ? "growth" : "core");
        tracker.log_metric(run.id, "auc", 0.5 + 0.1 * i, 0);
        tracker.end_run(run.id, "FINISHED");
    }
    start("other", "x");
    SearchQuery q;
    q.experiments = {"exp"};
    q.filter = "metrics.auc > 0.55 and params.lr = '0.1' and tags.team = 'growth' and status = 'FINISHED'";
    q.order_by = {"metrics.auc DESC"};
    auto runs = tracker.search(q);
    EXPECT_EQ(names(runs), std::vector<std::string>{"r1"});
    EXPECT_EQ(runs[0].params.at("lr"), "0.1");
    EXPECT_EQ(runs[0].tags.at("team"), "growth");

    q.filter = "metrics.auc >= 0.7";
    q.max_results = 2;
    EXPECT_EQ(names(tracker.search(q)), (std::vector<std::string>{"r5", "r4"}));
    q.order_by = {"metrics.auc"};
    EXPECT_EQ(names(tracker.search(q)), (std::vector<std::string>{"r2", "r3"}));
    q.experiments = {"missing"};
    EXPECT_EQ(thrown_error([&] { tracker.search(q); }).kind(), ErrorKind::NotFound);
    SearchQuery all;
    EXPECT_EQ(tracker.search(all).size(), 7u);
}

TEST_F(TrackingTest, ArtifactsAndLineage) {
    auto run = start("exp");
    fs::path src = dir / "src";
    fs::create_directories(src / "d");
    std::ofstream(src / "d" / "a.txt") << "alpha";
    std::ofstream(src / "b.txt") << "beta";
    auto entries = tracker.log_artifact(run.id, src / "b.txt", "out");
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].path, "out/b.txt");
    EXPECT_EQ(entries[0].size, 4);
    tracker.log_artifact(run.id, src / "d");
    auto all = tracker.artifacts(run.id);
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].path, "d/a.txt");
    auto files = tracker.download_artifacts(run.id, dir / "dl");
    EXPECT_EQ(files.size(), 2u);
    std::ifstream in(dir / "dl" / "out" / "b.txt");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(text, "beta");

    keel::lineage::Graph graph(*ws);
    auto up = graph.upstream("run:" + run.id, 1);
    bool artifact = false, experiment = false;
    for (const auto& e : up.edges) {
        artifact |= e.from == "artifact:" + entries[0].digest && e.kind == "logged_by";
        experiment |= e.from == "experiment:exp" && e.kind == "contains";
    }
    EXPECT_TRUE(artifact);
    EXPECT_TRUE(experiment);
    EXPECT_EQ(thrown_error([&] { tracker.log_artifact(run.id, dir / "missing"); }).kind(), ErrorKind::NotFound);
}

TEST_F(TrackingTest, LogInputWritesTheConsumedEdgeOnlyForAKnownRun) {
    auto run = start("exp");
    EXPECT_EQ(tracker.log_input(run.id, "training_set:ts1"), "training_set:ts1");
    tracker.log_input(run.id, "training_set:ts1"); // again: one live edge, not two
    keel::lineage::Graph graph(*ws);
    auto up = graph.upstream("run:" + run.id, 1);
    int consumed = 0;
    for (const auto& e : up.edges)
        consumed += e.from == "training_set:ts1" && e.kind == "consumed" && e.to == "run:" + run.id;
    EXPECT_EQ(consumed, 1);

    // An unknown run or a bad ref writes nothing: no node for the input appears.
    EXPECT_EQ(thrown_error([&] { tracker.log_input("0123456789abcdef0123456789abcdef", "dataset:orphan"); }).kind(),
              ErrorKind::NotFound);
    EXPECT_FALSE(graph.find_node("dataset:orphan"));
    EXPECT_EQ(thrown_error([&] { tracker.log_input(run.id, "no kind"); }).kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(thrown_error([&] { tracker.log_input(run.id, "model:churn@champion"); }).kind(),
              ErrorKind::InvalidArgument);
}

TEST_F(TrackingTest, ThreadsSharingOneTrackerLoseNothing) {
    auto run = start();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 500; ++i) tracker.log_metric(run.id, "m", i, t * 1000 + i);
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(tracker.metric_history(run.id, "m").size(), 2000u);
    EXPECT_DOUBLE_EQ(tracker.get_run(run.id).metrics.at("m"), 499.0);
}

TEST_F(TrackingTest, LikeTreatsGlobCharactersLiterally) {
    auto a = start("exp", "a*b");
    auto b = start("exp", "axb");
    SearchQuery q;
    q.filter = "name LIKE 'a*%'";
    EXPECT_EQ(names(tracker.search(q)), std::vector<std::string>{"a*b"});
    q.filter = "name LIKE 'a_b'";
    q.order_by = {"name"};
    EXPECT_EQ(names(tracker.search(q)), (std::vector<std::string>{"a*b", "axb"}));
    q.filter = "name NOT IN ('a*b')";
    EXPECT_EQ(names(tracker.search(q)), std::vector<std::string>{"axb"});
    q.filter = "parent_id = 'nobody'";
    EXPECT_TRUE(tracker.search(q).empty());
}

TEST_F(TrackingTest, RunsWhoseProcessExitedAreStaleAndCloseKilled) {
    auto alive = start("exp", "alive");
    ASSERT_TRUE(tracker.run_process(alive.id).has_value());
    EXPECT_EQ(tracker.run_process(alive.id)->pid, int64_t(::getpid()));

    // A run whose process is recorded as a child that has since exited.
    pid_t child = ::fork();
    if (child == 0) _exit(0);
    int status = 0;
    ::waitpid(child, &status, 0);
    NewRun spec;
    spec.name = "orphan";
    spec.process = RunProcess{tracker.run_process(alive.id)->host, child, 0, 1000};
    auto orphan = tracker.start_run(spec);
    // A run recorded without a process is never judged.
    NewRun unknown;
    unknown.process = RunProcess{};
    auto silent = tracker.start_run(unknown);
    EXPECT_FALSE(tracker.run_process(silent.id).has_value());
    // Another host: judged by its heartbeat only.
    NewRun remote_spec;
    remote_spec.process = RunProcess{"some-other-host", 1, 0, keel::now_ms() - 60'000};
    auto remote = tracker.start_run(remote_spec);

    auto stale = tracker.stale_runs(3'600'000);
    ASSERT_EQ(stale.size(), 1u);
    EXPECT_EQ(stale[0].info.id, orphan.id);
    EXPECT_NE(stale[0].reason.find("has exited"), std::string::npos) << stale[0].reason;
    EXPECT_EQ(tracker.stale_runs(30'000).size(), 2u); // the remote run has been silent for a minute

    tracker.heartbeat(std::vector<std::string>{remote.id, "not-a-run"});
    auto closed = tracker.close_stale_runs(30'000);
    ASSERT_EQ(closed.size(), 1u);
    EXPECT_EQ(closed[0].info.status, "KILLED");
    EXPECT_EQ(closed[0].info.end_time, orphan.start_time); // the last sign of life, never before the start
    EXPECT_TRUE(tracker.close_stale_runs(30'000).empty());
    EXPECT_EQ(tracker.get_info(alive.id).status, "RUNNING");
    EXPECT_EQ(tracker.get_info(silent.id).status, "RUNNING");
    EXPECT_EQ(thrown_error([&] { tracker.stale_runs(0); }).kind(), ErrorKind::InvalidArgument);
}

// Step 4 rebuilds the history without its foreign key: a workspace written at step 3 keeps every
// point, and logging goes on after the migration.
TEST(TrackingSchema, AHistoryWrittenBeforeStep4IsKeptByTheMigration) {
    keel::testing::TempDir tmp;
    std::string run_id;
    {
        auto ws = keel::testing::open_workspace(tmp.path);
        auto& db = ws->db();
        const auto& full = Tracker::schema();
        keel::storage::ModuleSchema step3{full.module, {full.steps.begin(), full.steps.begin() + 3}};
        db.ensure_schema(step3);
        keel::storage::Transaction tx(db);
        db.exec("INSERT INTO tracking_experiments(name, created_at, created_by) VALUES ('old', 1, 'me')");
        db.exec("INSERT INTO tracking_runs(run_id, experiment_id, name, status, start_time, \"user\") "
                "SELECT 'r0123456789abcdef0123456789abcde', id, 'before', 'FINISHED', 1, 'me' FROM tracking_experiments");
        db.exec("INSERT INTO tracking_metric_points(run, key, step, timestamp, seq, value) SELECT id, 'loss', 1, 5, 1, "
                "0.5 FROM tracking_runs");
        db.exec("INSERT INTO tracking_metric_points(run, key, step, timestamp, seq, value) SELECT id, 'loss', 2, 6, 2, "
                "NULL FROM tracking_runs");
        tx.commit();
        run_id = "r0123456789abcdef0123456789abcde";
    }
    auto ws = keel::testing::open_workspace(tmp.path);
    auto& db = ws->db();
    // PostgreSQL drops the key in place: the table's storage is the same before and after.
    const bool on_postgres = db.dialect() == keel::storage::Dialect::Postgres;
    auto filenode = [&] {
        auto guard = db.lock();
        auto st = db.prepare("SELECT pg_relation_filenode('tracking_metric_points')");
        return st.step() ? st.int64(0) : -1;
    };
    const int64_t before = on_postgres ? filenode() : 0;
    Tracker tracker(*ws);  // applies step 4
    if (on_postgres) EXPECT_EQ(filenode(), before);
    {
        keel::storage::Transaction tx(db);  // the key is gone on both engines (rolled back)
        EXPECT_NO_THROW(db.exec("INSERT INTO tracking_metric_points(run, key, step, timestamp, seq, value) "
                                "VALUES (987654321, 'loss', 1, 1, 1, 0.5)"));
    }
    auto history = tracker.metric_history(run_id, "loss");
    ASSERT_EQ(history.size(), 2u);
    EXPECT_EQ(history[0].step, 1);
    EXPECT_EQ(history[0].value, 0.5);
    EXPECT_TRUE(std::isnan(history[1].value));
    tracker.log_metric(run_id, "loss", 0.25, 3);
    EXPECT_EQ(tracker.metric_history(run_id, "loss").size(), 3u);
}

// Step 5 gives params, tags and latest metrics their run's experiment: rows written before it are
// filled in, so a search within an experiment still finds exactly its runs, and writing goes on.
TEST(TrackingSchema, SearchesWithinAnExperimentFindRowsWrittenBeforeStep5) {
    keel::testing::TempDir tmp;
    {
        auto ws = keel::testing::open_workspace(tmp.path);
        auto& db = ws->db();
        const auto& full = Tracker::schema();
        keel::storage::ModuleSchema step4{full.module, {full.steps.begin(), full.steps.begin() + 4}};
        db.ensure_schema(step4);
        keel::storage::Transaction tx(db);
        db.exec("INSERT INTO tracking_experiments(name, created_at, created_by) VALUES ('a', 1, 'me'), ('b', 1, 'me')");
        for (const char* exp : {"a", "b"}) {
            db.exec(fmt::format("INSERT INTO tracking_runs(run_id, experiment_id, name, status, start_time, \"user\") "
                                "SELECT 'run-in-{0}', id, '{0}', 'FINISHED', 1, 'me' FROM tracking_experiments "
                                "WHERE name = '{0}'", exp));
            const std::string run = fmt::format("(SELECT id FROM tracking_runs WHERE run_id = 'run-in-{}')", exp);
            db.exec("INSERT INTO tracking_params(run, key, value) SELECT " + run + ", 'model', 'x'");
            db.exec("INSERT INTO tracking_tags(run, key, value) SELECT " + run + ", 'team', 'core'");
            db.exec("INSERT INTO tracking_latest_metrics(run, key, step, timestamp, value) SELECT " + run +
                    ", 'acc', 1, 1, 0.9");
        }
        tx.commit();
    }
    auto ws = keel::testing::open_workspace(tmp.path);
    Tracker tracker(*ws);  // applies step 5
    auto names = [&](std::vector<std::string> experiments, const std::string& filter) {
        SearchQuery q;
        q.experiments = std::move(experiments);
        q.filter = filter;
        std::vector<std::string> out;
        for (const auto& run : tracker.search(q)) out.push_back(run.info.name);
        std::sort(out.begin(), out.end());
        return out;
    };
    using Names = std::vector<std::string>;
    for (const char* filter : {"params.model = 'x'", "tags.team = 'core'", "metrics.acc > 0.5"}) {
        EXPECT_EQ(names({"a"}, filter), Names{"a"}) << filter;
        EXPECT_EQ(names({"b"}, filter), Names{"b"}) << filter;
        EXPECT_EQ(names({"a", "b"}, filter), (Names{"a", "b"})) << filter;
        EXPECT_EQ(names({}, filter), (Names{"a", "b"})) << filter;  // every experiment
    }
    // Rows written after the migration carry their experiment too.
    auto c = tracker.start_run({.experiment = "b", .name = "c", .tags = {{"team", "growth"}}});
    tracker.log_param(c.id, "model", "x");
    tracker.log_metric(c.id, "acc", 0.95, 1);
    tracker.set_tag("run-in-a", "team", "growth");
    EXPECT_EQ(names({"b"}, "params.model = 'x' and metrics.acc > 0.92 and tags.team = 'growth'"), Names{"c"});
    EXPECT_EQ(names({"a"}, "tags.team = 'growth'"), Names{"a"});
    EXPECT_EQ(names({}, "tags.team = 'growth'"), (Names{"a", "c"}));
}

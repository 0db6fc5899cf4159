// tests/cpp/lineage_test.cpp
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/storage/workspace.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>

using keel::Error;
using keel::ErrorKind;
using keel::lineage::Graph;
using keel::lineage::Ref;
using keel::testing::error_message;

namespace {

struct LineageTest : keel::testing::WorkspaceTest {
    Graph graph{*ws};
};

std::set<std::string> refs(const keel::lineage::Subgraph& g) {
    std::set<std::string> out;
    for (const auto& n : g.nodes) out.insert(n.ref);
    return out;
}

} // namespace

TEST(Ref, ParsesKindNameVersion) {
    auto r = Ref::parse("model:churn/3");
    EXPECT_EQ(r.kind, "model");
    EXPECT_EQ(r.name, "churn");
    EXPECT_EQ(r.version, "3");
    EXPECT_EQ(Ref::parse("feature_view:player_activity").name, "player_activity");
    EXPECT_EQ(Ref::parse("artifact:runs/abc/model.pkl").name, "runs/abc/model.pkl");
    for (const char* bad : {"", "model", ":x", "model:", "Model:x", "mo del:x"}) {
        auto msg = error_message(ErrorKind::InvalidArgument, [&] { Ref::parse(bad); });
        EXPECT_NE(msg.find("kind:name"), std::string::npos) << "'" << bad << "': " << msg;
    }
}

TEST(Ref, ModelAliasesAreRefusedSoAMovingAliasNeverBecomesANode) {
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { Ref::parse("model:churn@champion"); });
    EXPECT_NE(msg.find("resolve_lineage_ref"), std::string::npos) << msg;
    EXPECT_EQ(Ref::parse("dataset:s3://bucket/a@v2").name, "s3://bucket/a@v2"); // other kinds keep their names
}

TEST_F(LineageTest, UpstreamAndDownstreamFollowDataFlow) {
    graph.upsert_node("feature_view:activity", {.owner = "data-eng", .description = "sessions and spend"});
    graph.add_edge("feature_view:activity", "feeds", "training_set:ts1");
    graph.add_edge("training_set:ts1", "consumed", "run:r1");
    graph.add_edge("run:r1", "produced", "model:churn/1");
    graph.add_edge("model:churn/1", "serves", "endpoint:churn");
    graph.add_edge("feature_view:other", "feeds", "training_set:ts2"); // unrelated

    auto up = graph.upstream("model:churn/1");
    EXPECT_EQ(refs(up), (std::set<std::string>{"model:churn/1", "run:r1", "training_set:ts1", "feature_view:activity"}));
    EXPECT_EQ(up.nodes.front().ref, "model:churn/1");
    ASSERT_EQ(up.edges.size(), 3u);
    EXPECT_EQ(up.edges[0].from, "run:r1");
    EXPECT_EQ(up.edges[0].to, "model:churn/1");
    EXPECT_EQ(up.edges[0].kind, "produced");
    EXPECT_EQ(up.edges[2].depth, 3);

    auto down = graph.downstream("feature_view:activity");
    EXPECT_EQ(refs(down), (std::set<std::string>{"feature_view:activity", "training_set:ts1", "run:r1",
                                                 "model:churn/1", "endpoint:churn"}));
    EXPECT_EQ(down.nodes.front().owner, "data-eng");
    EXPECT_EQ(refs(graph.downstream("feature_view:activity", 1)),
              (std::set<std::string>{"feature_view:activity", "training_set:ts1"}));
}

TEST_F(LineageTest, EdgesAreVersionedForAsOfQueries) {
    auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); };
    graph.add_edge("model:churn/1", "serves", "endpoint:churn");
    pause();
    int64_t t1 = keel::now_ms();
    pause();
    graph.remove_edge("model:churn/1", "serves", "endpoint:churn");
    graph.add_edge("model:churn/2", "serves", "endpoint:churn");
    pause();

    EXPECT_EQ(refs(graph.upstream("endpoint:churn")), (std::set<std::string>{"endpoint:churn", "model:churn/2"}));
    EXPECT_EQ(refs(graph.upstream("endpoint:churn", -1, t1)), (std::set<std::string>{"endpoint:churn", "model:churn/1"}));
    // Re-adding a live edge does not duplicate it; removing a missing one is NotFound.
    graph.add_edge("model:churn/2", "serves", "endpoint:churn");
    EXPECT_EQ(graph.upstream("endpoint:churn").edges.size(), 1u);
    error_message(ErrorKind::NotFound, [&] { graph.remove_edge("model:churn/1", "serves", "endpoint:churn"); });
}

TEST_F(LineageTest, EdgesInBulkAreAddedOnceEachAndMakeTheirNodes) {
    std::vector<std::string> runs;
    for (int i = 0; i < 40; ++i) runs.push_back("run:r" + std::to_string(i));  // rows of 32 and of 1
    graph.add_edge("experiment:e", "contains", "run:r3");  // already there: not added again
    graph.add_edges("experiment:e", "contains", runs);
    graph.add_edges("experiment:e", "contains", runs);
    auto down = graph.downstream("experiment:e", 1);
    EXPECT_EQ(down.nodes.size(), 41u);
    EXPECT_EQ(down.edges.size(), 40u);
    EXPECT_THROW(graph.add_edges("experiment:e", "Bad Kind", runs), Error);
    EXPECT_THROW(graph.add_edges("run:r1", "feeds", {"run:r1"}), Error);
}

TEST_F(LineageTest, CyclesTerminateAndUnknownNodesAreNotFound) {
    graph.add_edge("dataset:a", "feeds", "dataset:b");
    graph.add_edge("dataset:b", "feeds", "dataset:a");
    EXPECT_EQ(graph.downstream("dataset:a").nodes.size(), 2u);
    auto msg = error_message(ErrorKind::NotFound, [&] { graph.upstream("model:nope/1"); });
    EXPECT_NE(msg.find("model:nope/1"), std::string::npos) << msg;
    EXPECT_THROW(graph.add_edge("dataset:a", "Bad Kind", "dataset:b"), Error);
    EXPECT_THROW(graph.add_edge("dataset:a", "feeds", "dataset:a"), Error);
}

TEST_F(LineageTest, NodeInfoMergesTags) {
    graph.upsert_node("feature_view:fv", {.owner = "a", .tags = {{"team", "growth"}}});
    graph.upsert_node("feature_view:fv", {.description = "d", .tags = {{"tier", "1"}}});
    auto n = graph.node("feature_view:fv");
    EXPECT_EQ(n.owner, "a");
    EXPECT_EQ(n.description, "d");
    EXPECT_EQ(n.tags.size(), 2u);
    EXPECT_EQ(graph.nodes("feature_view").size(), 1u);
}

TEST_F(LineageTest, RecordWritesNodesAndEdgesAsUpsertNodeAndAddEdgeWould) {
    graph.add_edge("run:r1", "produced", "model:churn/1");  // live already: not added again
    std::vector<keel::lineage::EdgeRef> edges{{"model:churn/1", "version_of", "model:churn"},
                                              {"run:r1", "produced", "model:churn/1"},
                                              {"model:churn/1", "version_of", "model:churn"}};  // twice: once
    graph.record({{"model:churn/1", {.owner = "ana", .tags = {{"flavour", "python"}, {"digest", "d1"}}}},
                  {"model:churn", {.description = "churn model"}}},
                 edges);
    auto v = graph.node("model:churn/1");
    EXPECT_EQ(v.owner, "ana");
    EXPECT_EQ(v.description, "");
    EXPECT_EQ(v.tags, (std::map<std::string, std::string>{{"digest", "d1"}, {"flavour", "python"}}));
    EXPECT_EQ(graph.node("model:churn").description, "churn model");
    EXPECT_EQ(graph.upstream("model:churn/1", 1).edges.size(), 1u);
    EXPECT_EQ(graph.downstream("model:churn/1", 1).edges.size(), 1u);

    // Again with other info: unset fields stay as stored, tags merge, no edge is doubled.
    graph.record({{"model:churn/1", {.description = "v1", .tags = {{"digest", "d2"}}}}}, edges);
    v = graph.node("model:churn/1");
    EXPECT_EQ(v.owner, "ana");
    EXPECT_EQ(v.description, "v1");
    EXPECT_EQ(v.tags.at("digest"), "d2");
    EXPECT_EQ(v.tags.at("flavour"), "python");
    EXPECT_EQ(graph.downstream("model:churn/1", 1).edges.size(), 1u);
    EXPECT_EQ(graph.upstream("model:churn", 1).edges.size(), 1u);

    // An edge ended earlier is added anew; ends that are not nodes yet are created.
    graph.remove_edge("run:r1", "produced", "model:churn/1");
    graph.record({}, {{"run:r1", "produced", "model:churn/1"}, {"run:r2", "produced", "model:churn/1"}});
    EXPECT_EQ(graph.upstream("model:churn/1", 1).edges.size(), 2u);
    EXPECT_TRUE(graph.find_node("run:r2"));
}

TEST_F(LineageTest, RecordChecksEverythingBeforeWritingAnything) {
    auto bad_kind = error_message(ErrorKind::InvalidArgument, [&] {
        graph.record({{"model:m/1", {.owner = "a"}}}, {{"model:m/1", "version_of", "model:m"}, {"run:r", "Bad", "model:m/1"}});
    });
    EXPECT_NE(bad_kind.find("'Bad'"), std::string::npos) << bad_kind;
    EXPECT_THROW(graph.record({{"model:m/1", {}}}, {{"model:m/1", "feeds", "model:m/1"}}), Error);
    EXPECT_THROW(graph.record({{"model:m/1", {}}, {"model:m/1", {}}}, {}), Error);
    EXPECT_THROW(graph.record({{"model:m@champion", {}}}, {}), Error);
    EXPECT_FALSE(graph.find_node("model:m/1"));
    EXPECT_FALSE(graph.find_node("model:m"));
}

// Step 3 drops the tags' and edges' foreign keys on their nodes: a graph written at step 2 keeps
// every node, tag and edge (as of any time), and writing goes on after the migration.
TEST(LineageSchema, AGraphWrittenBeforeStep3IsKeptByTheMigration) {
    keel::testing::TempDir tmp;
    {
        auto ws = keel::testing::open_workspace(tmp.path);
        auto& db = ws->db();
        const auto& full = Graph::schema();
        keel::storage::ModuleSchema step2{full.module, {full.steps.begin(), full.steps.begin() + 2}};
        db.ensure_schema(step2);
        keel::storage::Transaction tx(db);
        db.exec("INSERT INTO lineage_nodes(ref, kind, name, version, created_at) VALUES "
                "('dataset:a', 'dataset', 'a', '', 1), ('model:m/1', 'model', 'm', '1', 1), "
                "('model:m/2', 'model', 'm', '2', 1)");
        db.exec("INSERT INTO lineage_node_tags(node_id, key, value) SELECT id, 'flavour', 'python' FROM lineage_nodes "
                "WHERE ref = 'model:m/1'");
        db.exec("INSERT INTO lineage_edges(kind, src, dst, created_at, removed_at) SELECT 'trained', s.id, d.id, 10, "
                "NULL FROM lineage_nodes s, lineage_nodes d WHERE s.ref = 'dataset:a' AND d.ref = 'model:m/1'");
        db.exec("INSERT INTO lineage_edges(kind, src, dst, created_at, removed_at) SELECT 'trained', s.id, d.id, 10, "
                "20 FROM lineage_nodes s, lineage_nodes d WHERE s.ref = 'dataset:a' AND d.ref = 'model:m/2'");
        tx.commit();
    }
    auto ws = keel::testing::open_workspace(tmp.path);
    auto& db = ws->db();
    const bool on_postgres = db.dialect() == keel::storage::Dialect::Postgres;
    auto filenode = [&] {
        auto guard = db.lock();
        auto st = db.prepare("SELECT pg_relation_filenode('lineage_edges')");
        return st.step() ? st.int64(0) : -1;
    };
    const int64_t before = on_postgres ? filenode() : 0;
    Graph graph(*ws);  // applies step 3
    if (on_postgres) EXPECT_EQ(filenode(), before);  // in place, no rewrite
    EXPECT_EQ(refs(graph.downstream("dataset:a")), (std::set<std::string>{"dataset:a", "model:m/1"}));
    EXPECT_EQ(refs(graph.downstream("dataset:a", -1, 15)),
              (std::set<std::string>{"dataset:a", "model:m/1", "model:m/2"}));  // the ended edge, as of its time
    EXPECT_EQ(graph.find_node("model:m/1")->tags.at("flavour"), "python");
    graph.record({{"model:m/3", {.tags = {{"flavour", "onnx"}}}}}, {{"dataset:a", "trained", "model:m/3"}});
    EXPECT_EQ(refs(graph.downstream("dataset:a", 1)),
              (std::set<std::string>{"dataset:a", "model:m/1", "model:m/3"}));
    EXPECT_EQ(graph.find_node("model:m/3")->tags.at("flavour"), "onnx");
    {
        keel::storage::Transaction tx(db);  // the keys are gone on both engines (rolled back)
        EXPECT_NO_THROW(db.exec("INSERT INTO lineage_edges(kind, src, dst, created_at) VALUES ('x', 987654, 987655, 1)"));
    }
}

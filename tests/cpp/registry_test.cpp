// tests/cpp/registry_test.cpp
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/registry/lineage_refs.hpp"
#include "keel/registry/registry.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"
#include "keel/tracking/tracker.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using keel::ErrorKind;
using namespace keel::registry;
using keel::testing::thrown_error;

namespace {

struct RegistryTest : keel::testing::WorkspaceTest {
    Registry reg{*ws};
    std::string digest = ws->artifacts().put_bytes("model bytes");
    std::string run_id = keel::tracking::Tracker(*ws).start_run({}).id; // a source run that exists

    ModelVersion add(const std::string& name, std::string run = {}) {
        if (run.empty()) run = run_id;
        return reg.register_version(name, NewVersion{.digest = digest, .run_id = run});
    }
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

} // namespace

TEST(ModelRef, ParsesTheThreeShapes) {
    auto plain = ModelRef::parse("churn");
    EXPECT_EQ(plain.name, "churn");
    EXPECT_FALSE(plain.version);
    EXPECT_TRUE(plain.alias.empty());
    EXPECT_EQ(*ModelRef::parse("churn/3").version, 3);
    EXPECT_EQ(ModelRef::parse("churn@champion").alias, "champion");
    EXPECT_EQ(*ModelRef::parse("model:churn-v2/12").version, 12);
    EXPECT_EQ(ModelRef::parse("churn@champion").str(), "churn@champion");
    for (const char* bad : {"", "/3", "churn/", "churn/x", "churn/0", "churn/-1", "churn@", "churn/3@champion",
                            "ch urn", "churn@cham pion", "@x"}) {
        auto e = thrown_error([&] { ModelRef::parse(bad); });
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << bad;
        EXPECT_TRUE(contains(e.what(), "'" + std::string(bad) + "'")) << e.what();
    }
}

TEST(Stage, ParsesCaseInsensitively) {
    EXPECT_EQ(parse_stage("production"), Stage::Production);
    EXPECT_EQ(parse_stage("Staging"), Stage::Staging);
    EXPECT_EQ(stage_name(Stage::Archived), "Archived");
    auto e = thrown_error([] { parse_stage("prod"); });
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_TRUE(contains(e.what(), "'prod'"));
}

TEST_F(RegistryTest, CreateModelAndDuplicates) {
    auto m = reg.create_model("churn", {.description = "who leaves", .owner = "growth", .tags = {{"team", "g"}}});
    EXPECT_EQ(m.name, "churn");
    EXPECT_EQ(m.owner, "growth");
    EXPECT_EQ(m.tags.at("team"), "g");
    EXPECT_FALSE(m.latest_version);
    auto dup = thrown_error([&] { reg.create_model("churn"); });
    EXPECT_EQ(dup.kind(), ErrorKind::AlreadyExists);
    EXPECT_TRUE(contains(dup.what(), "'churn'"));
    EXPECT_EQ(thrown_error([&] { reg.create_model("a/b"); }).kind(), ErrorKind::InvalidArgument);
    auto missing = thrown_error([&] { reg.model("nope"); });
    EXPECT_EQ(missing.kind(), ErrorKind::NotFound);
    EXPECT_TRUE(contains(missing.what(), "'nope'"));
}

TEST_F(RegistryTest, VersionsCountUpPerModel) {
    EXPECT_EQ(add("churn").version, 1);
    EXPECT_EQ(add("churn").version, 2);
    EXPECT_EQ(add("ltv").version, 1);
    auto v3 = reg.register_version("churn", NewVersion{.digest = digest,
                                                       .run_id = run_id,
                                                       .flavour = "python",
                                                       .signature = R"({"inputs":[]})",
                                                       .description = "third",
                                                       .tags = {{"k", "v"}}});
    EXPECT_EQ(v3.version, 3);
    EXPECT_EQ(v3.ref(), "churn/3");
    EXPECT_EQ(v3.digest, digest);
    EXPECT_EQ(v3.run_id, run_id);
    EXPECT_EQ(v3.signature, R"({"inputs":[]})");
    EXPECT_EQ(v3.tags.at("k"), "v");
    EXPECT_EQ(v3.stage, Stage::None);
    EXPECT_EQ(v3.created_by, ws->user());
    EXPECT_GT(v3.created_at, 0);
    EXPECT_EQ(reg.versions("churn").size(), 3u);
    EXPECT_EQ(*reg.model("churn").latest_version, 3);
    EXPECT_EQ(reg.models().size(), 2u);
}

TEST_F(RegistryTest, RegisterNeedsAStoredArtifact) {
    auto e = thrown_error([&] { reg.register_version("churn", NewVersion{.digest = std::string(64, 'a')}); });
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
    EXPECT_TRUE(contains(e.what(), std::string(64, 'a')));
    EXPECT_FALSE(reg.find_model("churn")); // nothing half-written
}

TEST_F(RegistryTest, ResolveRefs) {
    add("churn");
    add("churn");
    EXPECT_EQ(reg.resolve("churn").version, 2);
    EXPECT_EQ(reg.resolve("churn@latest").version, 2);
    EXPECT_EQ(reg.resolve("churn/1").version, 1);
    EXPECT_EQ(reg.resolve("model:churn/1").version, 1);
    reg.set_alias("churn", "champion", 1);
    auto champion = reg.resolve("churn@champion");
    EXPECT_EQ(champion.version, 1);
    EXPECT_EQ(champion.digest, digest);
    EXPECT_EQ(champion.flavour, "python");
    EXPECT_EQ(champion.aliases, std::vector<std::string>{"champion"});
    EXPECT_EQ(reg.load_artifact("churn@champion"), "model bytes");

    auto no_version = thrown_error([&] { reg.resolve("churn/7"); });
    EXPECT_EQ(no_version.kind(), ErrorKind::NotFound);
    EXPECT_TRUE(contains(no_version.what(), "'churn/7'")) << no_version.what();
    EXPECT_TRUE(contains(no_version.what(), "versions 1 to 2")) << no_version.what();
    auto no_alias = thrown_error([&] { reg.resolve("churn@challenger"); });
    EXPECT_EQ(no_alias.kind(), ErrorKind::NotFound);
    EXPECT_TRUE(contains(no_alias.what(), "'churn@challenger'")) << no_alias.what();
    EXPECT_TRUE(contains(no_alias.what(), "champion")) << no_alias.what();
    auto no_model = thrown_error([&] { reg.resolve("ltv@champion"); });
    EXPECT_EQ(no_model.kind(), ErrorKind::NotFound);
    EXPECT_TRUE(contains(no_model.what(), "'ltv'"));
    reg.create_model("empty");
    EXPECT_EQ(thrown_error([&] { reg.resolve("empty"); }).kind(), ErrorKind::NotFound);
}

TEST_F(RegistryTest, AliasesMoveAndDeleteWithEvents) {
    add("churn");
    add("churn");
    reg.set_alias("churn", "champion", 1);
    reg.set_alias("churn", "champion", 2); // move
    reg.set_alias("churn", "champion", 2); // no change, no event
    EXPECT_EQ(reg.resolve("churn@champion").version, 2);
    EXPECT_TRUE(reg.version("churn", 1).aliases.empty());
    EXPECT_EQ(reg.model("churn").aliases.at("champion"), 2);
    reg.delete_alias("churn", "champion");
    EXPECT_EQ(thrown_error([&] { reg.resolve("churn@champion"); }).kind(), ErrorKind::NotFound);
    EXPECT_EQ(thrown_error([&] { reg.delete_alias("churn", "champion"); }).kind(), ErrorKind::NotFound);
    EXPECT_EQ(thrown_error([&] { reg.set_alias("churn", "champion", 9); }).kind(), ErrorKind::NotFound);
    EXPECT_EQ(thrown_error([&] { reg.set_alias("churn", "latest", 1); }).kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(thrown_error([&] { reg.set_alias("churn", "3", 1); }).kind(), ErrorKind::InvalidArgument);

    auto events = reg.events("churn");
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[0].action, "alias");
    EXPECT_EQ(events[0].subject, "champion");
    EXPECT_EQ(events[0].from, "");
    EXPECT_EQ(events[0].to, "1");
    EXPECT_EQ(events[1].from, "1");
    EXPECT_EQ(events[1].to, "2");
    EXPECT_EQ(events[2].from, "2");
    EXPECT_EQ(events[2].to, "");
    EXPECT_EQ(events[2].user, ws->user());
    EXPECT_GT(events[2].at, 0);
}

TEST_F(RegistryTest, StagesArchiveThePreviousProduction) {
    add("churn");
    add("churn");
    add("churn");
    reg.transition_stage("churn", 1, Stage::Production);
    reg.transition_stage("churn", 2, Stage::Production); // without archiving, both are in Production
    EXPECT_EQ(reg.version("churn", 1).stage, Stage::Production);
    auto v3 = reg.transition_stage("churn", 3, Stage::Production, true);
    EXPECT_EQ(v3.stage, Stage::Production);
    EXPECT_EQ(reg.version("churn", 1).stage, Stage::Archived);
    EXPECT_EQ(reg.version("churn", 2).stage, Stage::Archived);

    auto events = reg.events("churn");
    ASSERT_EQ(events.size(), 5u);
    EXPECT_EQ(events[0].action, "stage");
    EXPECT_EQ(events[0].subject, "1");
    EXPECT_EQ(events[0].from, "None");
    EXPECT_EQ(events[0].to, "Production");
    EXPECT_EQ(events[3].subject, "1");
    EXPECT_EQ(events[3].from, "Production");
    EXPECT_EQ(events[3].to, "Archived");
    EXPECT_EQ(events[4].subject, "2");
    EXPECT_EQ(reg.events().size(), 5u);
    EXPECT_EQ(thrown_error([&] { reg.transition_stage("churn", 4, Stage::Staging); }).kind(), ErrorKind::NotFound);
}

TEST_F(RegistryTest, SourceRunMustExist) {
    auto e = thrown_error([&] { reg.register_version("churn", NewVersion{.digest = digest, .run_id = "nope"}); });
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
    EXPECT_TRUE(contains(e.what(), "'nope'")) << e.what();
    EXPECT_FALSE(reg.find_model("churn")); // nothing half-written
    EXPECT_FALSE(keel::lineage::Graph(*ws).find_node("run:nope"));
    EXPECT_EQ(add("churn").run_id, run_id);
    EXPECT_EQ(reg.register_version("churn", NewVersion{.digest = digest}).run_id, ""); // no source run is fine
    // The model is known now, so the run is checked by the INSERT, not read: the same NotFound.
    e = thrown_error([&] { reg.register_version("churn", NewVersion{.digest = digest, .run_id = "nope"}); });
    EXPECT_EQ(e.kind(), ErrorKind::NotFound);
    EXPECT_TRUE(contains(e.what(), "cannot register a version of 'churn' from run 'nope': no such run")) << e.what();
    EXPECT_EQ(reg.versions("churn").size(), 2u);
    {  // inside a caller's transaction, read first
        keel::storage::Transaction tx(ws->db());
        EXPECT_EQ(thrown_error([&] { reg.register_version("churn", NewVersion{.digest = digest, .run_id = "nope"}); })
                      .kind(),
                  ErrorKind::NotFound);
    }
    EXPECT_EQ(add("churn").version, 3);
}

TEST_F(RegistryTest, RegisteringWritesLineage) {
    reg.create_model("churn", {.description = "who leaves", .owner = "growth"});
    add("churn");
    keel::lineage::Graph graph(*ws);
    auto up = graph.upstream("model:churn/1");
    ASSERT_FALSE(up.edges.empty());
    EXPECT_EQ(up.edges[0].from, "run:" + run_id);
    EXPECT_EQ(up.edges[0].kind, "produced");
    auto model_node = graph.node("model:churn");
    EXPECT_EQ(model_node.owner, "growth");
    EXPECT_EQ(model_node.description, "who leaves");
    EXPECT_EQ(graph.node("model:churn/1").tags.at("digest"), digest);
}

TEST_F(RegistryTest, ConcurrentProcessesGetDistinctConsecutiveNumbers) {
    constexpr int kProcs = 4, kEach = 15;
    std::vector<pid_t> children;
    for (int p = 0; p < kProcs; ++p) {
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            int code = 0;
            try {
                auto child_ws = open_again();
                Registry child(*child_ws);
                for (int i = 0; i < kEach; ++i)
                    child.register_version("churn", NewVersion{.digest = digest, .run_id = run_id});
            } catch (...) {
                code = 1;
            }
            _exit(code);
        }
        children.push_back(pid);
    }
    for (pid_t pid : children) {
        int status = 0;
        waitpid(pid, &status, 0);
        ASSERT_TRUE(WIFEXITED(status));
        EXPECT_EQ(WEXITSTATUS(status), 0);
    }
    auto all = reg.versions("churn");
    ASSERT_EQ(all.size(), size_t(kProcs * kEach));
    for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].version, int64_t(i + 1));
}

TEST_F(RegistryTest, HandlesNumberFromWhatTheyKnowAndRefuseAStaleGuess) {
    Registry other{*ws};
    auto next = [&](Registry& r) {
        return r.register_version("churn", NewVersion{.digest = digest, .run_id = run_id}).version;
    };
    EXPECT_EQ(next(reg), 1);
    EXPECT_EQ(next(other), 2);
    EXPECT_EQ(next(reg), 3);  // guessed 2: refused, nothing written, read again
    EXPECT_EQ(next(reg), 4);
    {
        // Inside a caller's transaction the number is read, and a rollback leaves nothing known.
        keel::storage::Transaction tx(ws->db());
        EXPECT_EQ(next(other), 5);
    }
    EXPECT_EQ(next(reg), 5);
    {
        keel::storage::Transaction tx(ws->db());
        EXPECT_EQ(next(other), 6);
        tx.commit();
    }
    EXPECT_EQ(next(other), 7);
    std::vector<int64_t> numbers;
    for (const auto& v : reg.versions("churn")) numbers.push_back(v.version);
    EXPECT_EQ(numbers, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7}));
    keel::lineage::Graph graph(*ws);
    EXPECT_EQ(graph.upstream("model:churn", 1).edges.size(), 7u);  // one version_of each
    EXPECT_EQ(graph.downstream("run:" + run_id, 1).edges.size(), 7u);  // one produced each
}

TEST_F(RegistryTest, TamperedArtifactIsCorruptOnLoad) {
    auto v = add("churn");
    auto path = ws->artifacts().path_of(v.digest);
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
    {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(0);
        f.put('X');
    }
    auto e = thrown_error([&] { reg.load_artifact("churn/1"); });
    EXPECT_EQ(e.kind(), ErrorKind::Corrupt);
    EXPECT_TRUE(contains(e.what(), v.digest)) << e.what();
    EXPECT_EQ(reg.resolve("churn/1").digest, v.digest); // metadata still resolves
}

TEST_F(RegistryTest, LineageRefsResolveAliasesNowAndAsOfAPastTime) {
    using namespace std::chrono_literals;
    add("churn");
    add("churn");
    auto pause = [] { std::this_thread::sleep_for(5ms); };
    pause();
    int64_t before_alias = keel::now_ms();
    pause();
    reg.set_alias("churn", "champion", 1);
    pause();
    int64_t on_one = keel::now_ms();
    pause();
    reg.set_alias("churn", "champion", 2);
    pause();
    int64_t on_two = keel::now_ms();
    pause();
    reg.delete_alias("churn", "champion");
    reg.set_alias("churn", "challenger", 1);

    EXPECT_EQ(resolve_lineage_ref(reg, "model:churn@challenger"), "model:churn/1");
    EXPECT_EQ(resolve_lineage_ref(reg, "model:churn@latest"), "model:churn/2");
    EXPECT_EQ(resolve_lineage_ref(reg, "model:churn@champion", on_one), "model:churn/1");
    EXPECT_EQ(resolve_lineage_ref(reg, "model:churn@champion", on_two), "model:churn/2");
    EXPECT_EQ(resolve_lineage_ref(reg, "model:churn@latest", before_alias), "model:churn/2");
    for (const char* plain : {"model:churn/1", "model:churn", "run:abc", "feature_view:fv"})
        EXPECT_EQ(resolve_lineage_ref(reg, plain), plain);

    auto deleted = thrown_error([&] { resolve_lineage_ref(reg, "model:churn@champion"); });
    EXPECT_EQ(deleted.kind(), ErrorKind::NotFound);
    EXPECT_TRUE(contains(deleted.what(), "challenger")) << deleted.what(); // names the aliases there are
    auto not_yet = thrown_error([&] { resolve_lineage_ref(reg, "model:churn@champion", before_alias); });
    EXPECT_EQ(not_yet.kind(), ErrorKind::NotFound);
    EXPECT_TRUE(contains(not_yet.what(), "not set yet")) << not_yet.what();
    auto gone = thrown_error([&] { resolve_lineage_ref(reg, "model:churn@champion", keel::now_ms()); });
    EXPECT_TRUE(contains(gone.what(), "deleted")) << gone.what();
    EXPECT_EQ(thrown_error([&] { resolve_lineage_ref(reg, "model:churn@nobody", on_one); }).kind(), ErrorKind::NotFound);
    EXPECT_EQ(thrown_error([&] { resolve_lineage_ref(reg, "model:ltv@champion"); }).kind(), ErrorKind::NotFound);
    EXPECT_EQ(thrown_error([&] { resolve_lineage_ref(reg, "model:churn@bad alias"); }).kind(),
              ErrorKind::InvalidArgument);
    auto early = thrown_error([&] { resolve_lineage_ref(reg, "model:churn@latest", 1); });
    EXPECT_TRUE(contains(early.what(), "no versions yet")) << early.what();
}

// Step 2 drops the registry's foreign keys: a registry written at step 1 keeps its models, versions,
// tags, aliases and audit trail, and registering and moving aliases go on after the migration.
TEST(RegistrySchema, ARegistryWrittenBeforeStep2IsKeptByTheMigration) {
    keel::testing::TempDir tmp;
    {
        auto ws = keel::testing::open_workspace(tmp.path);
        auto& db = ws->db();
        const auto& full = Registry::schema();
        db.ensure_schema(keel::storage::ModuleSchema{full.module, {full.steps.begin(), full.steps.begin() + 1}});
        keel::storage::Transaction tx(db);
        db.exec("INSERT INTO registry_models(name, owner, created_at, created_by) VALUES ('churn', 'ana', 1, 'ana')");
        db.exec("INSERT INTO registry_model_tags(model_id, key, value) SELECT id, 'team', 'growth' FROM registry_models");
        for (int v : {1, 2})
            db.exec(fmt::format("INSERT INTO registry_versions(model_id, version, digest, flavour, created_at, "
                                "created_by) SELECT id, {}, 'd{}', 'python', {}, 'ana' FROM registry_models",
                                v, v, v));
        db.exec("INSERT INTO registry_version_tags(version_id, key, value) SELECT id, 'auc', '0.9' FROM "
                "registry_versions WHERE version = 2");
        db.exec("INSERT INTO registry_aliases(model_id, alias, version, updated_at) SELECT id, 'champion', 2, 3 "
                "FROM registry_models");
        db.exec("INSERT INTO registry_events(model_id, action, subject, from_value, to_value, \"user\", at) "
                "SELECT id, 'alias', 'champion', '', '2', 'ana', 3 FROM registry_models");
        tx.commit();
    }
    auto ws = keel::testing::open_workspace(tmp.path);
    Registry reg(*ws);  // applies step 2
    EXPECT_EQ(reg.model("churn").tags.at("team"), "growth");
    auto champion = reg.resolve("churn@champion");
    EXPECT_EQ(champion.version, 2);
    EXPECT_EQ(champion.digest, "d2");
    EXPECT_EQ(champion.tags.at("auc"), "0.9");
    ASSERT_EQ(reg.events("churn").size(), 1u);

    std::string digest = ws->artifacts().put_bytes("model bytes");
    EXPECT_EQ(reg.register_version("churn", NewVersion{.digest = digest, .tags = {{"auc", "0.95"}}}).version, 3);
    EXPECT_EQ(reg.register_version("churn", NewVersion{.digest = digest}).version, 4);  // the guessed number
    reg.set_alias("churn", "champion", 3);
    EXPECT_EQ(reg.resolve("churn@champion").tags.at("auc"), "0.95");
    auto events = reg.events("churn");
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[1].from, "2");
    EXPECT_EQ(events[1].to, "3");
    EXPECT_EQ(reg.versions("churn").size(), 4u);
}

// tests/cpp/features_removals_test.cpp: retiring feature views, removing entities and training
// specs — what `keel apply --prune` relies on, and the reproducibility promise it must not break.
#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/features/store.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

namespace fs = std::filesystem;
using namespace keel::features;
using keel::ErrorKind;
using keel::testing::error_message;

namespace {

constexpr int64_t kDay = 86'400'000;

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Players 1..4 with spend = 10 * id at day 1, in view "activity" (materialized online).
struct RemovalsTest : keel::testing::WorkspaceTest {
    std::shared_ptr<FeatureStore> store = std::make_shared<FeatureStore>(ws);
    std::vector<int64_t> ids{1, 2, 3, 4}, events, label_ts;
    std::vector<double> spend{10, 20, 30, 40};

    RemovalsTest() {
        ws->set_user("alice");
        store->define_entity({"player", {{"player_id", DType::Int64}}, ""});
        store->define_view(activity());
        events.assign(ids.size(), 1 * kDay);
        label_ts.assign(ids.size(), 2 * kDay);
        store->ingest("activity", rows());
        store->materialize("activity", 3 * kDay);
    }

    static ViewSpec activity(std::vector<ColumnSpec> features = {{"spend", DType::Float64}}) {
        ViewSpec v;
        v.name = "activity";
        v.entities = {"player"};
        v.features = std::move(features);
        return v;
    }
    BatchView rows() const {
        BatchView b;
        b.rows = ids.size();
        b.columns.push_back({"player_id", DType::Int64, 0, ids.data()});
        b.columns.push_back({"event_timestamp", DType::Timestamp, 0, events.data()});
        b.columns.push_back({"spend", DType::Float64, 0, spend.data()});
        return b;
    }
    BatchView labels() const {
        BatchView b;
        b.rows = ids.size();
        b.columns.push_back({"player_id", DType::Int64, 0, ids.data()});
        b.columns.push_back({"ts", DType::Timestamp, 0, label_ts.data()});
        return b;
    }
    static std::vector<double> values(const Table& t) {
        const auto& c = t.columns.at(0);
        std::vector<double> out(c.rows);
        std::memcpy(out.data(), c.values.data(), c.rows * sizeof(double));
        return out;
    }
    int64_t count(const std::string& sql) {
        auto& db = ws->db();
        auto guard = db.lock();
        auto st = db.prepare(sql);
        st.step();
        return st.int64(0);
    }
    size_t snapshot_files() {
        size_t n = 0;
        const auto dir = ws->module_dir("features") / "online" / "activity";
        if (fs::exists(dir))
            for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
        return n;
    }
};

} // namespace

TEST_F(RemovalsTest, ARetiredViewLeavesTheCatalogAndEveryReadRefusesIt) {
    ASSERT_GT(snapshot_files(), 0u);
    store->retire_view("activity");
    for (auto call : std::vector<std::function<void()>>{
             [&] { store->view("activity"); }, [&] { store->view("activity", 1); },
             [&] { store->ingest("activity", rows()); }, [&] { store->materialize("activity"); },
             [&] { store->get_online({"activity:spend"}, labels()); },
             [&] { store->online_reader({"activity:spend"}); }, [&] { store->read("activity"); },
             [&] { store->training_set(labels(), {"activity:spend"}, "ts", ""); }}) {
        auto msg = error_message(ErrorKind::NotFound, call);
        EXPECT_TRUE(has(msg, "feature view 'activity' was retired by alice at ")) << msg;
        EXPECT_TRUE(has(msg, "UTC")) << msg;
        EXPECT_TRUE(has(msg, "define it again")) << msg;
    }
    EXPECT_TRUE(store->list().empty());
    // Online values are gone (rows and files); offline segments stay.
    EXPECT_EQ(count("SELECT COUNT(*) FROM features_online WHERE view = 'activity'"), 0);
    EXPECT_EQ(snapshot_files(), 0u);
    EXPECT_EQ(count("SELECT COUNT(*) FROM features_segments WHERE view = 'activity'"), 1);
    EXPECT_EQ(store->recorded_view("activity", 1).features.at(0).name, "spend");
    EXPECT_EQ(keel::lineage::Graph(*ws).node("feature_view:activity").tags.at("state"), "retired");
}

TEST_F(RemovalsTest, RetiringAnUnknownOrRetiredViewNamesTheLiveOnes) {
    ViewSpec other = activity();
    other.name = "profile";
    store->define_view(other);
    auto unknown = error_message(ErrorKind::NotFound, [&] { store->retire_view("nope"); });
    EXPECT_TRUE(has(unknown, "feature view 'nope' not found (known: activity, profile)")) << unknown;
    store->retire_view("activity");
    auto twice = error_message(ErrorKind::NotFound, [&] { store->retire_view("activity"); });
    EXPECT_TRUE(has(twice, "'activity' is already retired (by alice at ")) << twice;
    EXPECT_TRUE(has(twice, "live views: profile")) << twice;
    auto gone = error_message(ErrorKind::NotFound, [&] { store->view("other"); });
    EXPECT_TRUE(has(gone, "(known: profile)")) << gone;  // retired views are not offered
}

TEST_F(RemovalsTest, ARecordedTrainingSetRebuildsIdenticallyAfterItsViewIsRetired) {
    TrainingSet built = store->training_set(labels(), {"activity:spend"}, "ts", "");
    store->retire_view("activity");
    TrainingSet again = store->rebuild_training_set(built.record.id, labels());
    EXPECT_EQ(values(again.features), values(built.features));
    EXPECT_EQ(again.record.view_versions, built.record.view_versions);
    // And once its entity is removed too: the version recorded its join keys.
    store->remove_entity("player");
    EXPECT_EQ(values(store->rebuild_training_set(built.record.id, labels()).features), values(built.features));
}

TEST_F(RemovalsTest, ARetiredViewsLiveReaderStopsServingItsValues) {
    auto reader = store->online_reader({"activity:spend"});
    double out = 0;
    int64_t id = 2;
    reader->lookup(&id, 1, &out, 3 * kDay);
    EXPECT_EQ(out, 20.0);
    store->retire_view("activity");  // readers of this store refresh at once
    reader->lookup(&id, 1, &out, 3 * kDay);
    EXPECT_TRUE(std::isnan(out));
    OnlineReader::Status status{};
    reader->lookup(&id, 1, &out, &status, 3 * kDay);
    EXPECT_EQ(status, OnlineReader::Status::MissingEntity);
    EXPECT_FALSE(reader->refresh());  // nothing more to load: no error either
}

TEST_F(RemovalsTest, DefiningARetiredViewAgainBringsItBack) {
    store->retire_view("activity");
    // Compatible: the same version, its data readable again (a new column reads null in old rows).
    ViewSpec back = store->define_view(activity({{"spend", DType::Float64}, {"visits", DType::Int64}}));
    EXPECT_EQ(back.version, 1);
    EXPECT_EQ(store->read("activity").rows, 4u);
    ASSERT_EQ(store->list().size(), 1u);
    EXPECT_EQ(keel::lineage::Graph(*ws).node("feature_view:activity").tags.at("state"), "live");
    store->materialize("activity", 3 * kDay);
    EXPECT_EQ(store->get_online({"activity:spend"}, labels(), 3 * kDay).rows, 4u);

    // Incompatible: a new version with no data, as for a live view; older versions read again.
    store->retire_view("activity");
    ViewSpec next = store->define_view(activity({{"spend", DType::Int64}}));
    EXPECT_EQ(next.version, 2);
    EXPECT_EQ(store->read("activity").rows, 0u);
    EXPECT_EQ(store->view("activity", 1).version, 1);
}

TEST_F(RemovalsTest, AnEntityGoesOnlyOnceNoLiveViewUsesIt) {
    auto unknown = error_message(ErrorKind::NotFound, [&] { store->remove_entity("team"); });
    EXPECT_TRUE(has(unknown, "entity 'team' not found (known: player)")) << unknown;
    auto used = error_message(ErrorKind::InvalidArgument, [&] { store->remove_entity("player"); });
    EXPECT_TRUE(has(used, "entity 'player' is used by live feature view(s) activity")) << used;
    EXPECT_TRUE(has(used, "retire them first")) << used;
    EXPECT_EQ(store->entities().size(), 1u);

    store->retire_view("activity");
    store->remove_entity("player");
    EXPECT_TRUE(store->entities().empty());
    EXPECT_EQ(count("SELECT COUNT(*) FROM features_entity_keys WHERE entity = 'player'"), 0);
    // Defined again with another key type: the view's old version (int keys) cannot be reused.
    store->define_entity({"player", {{"player_id", DType::String}}, ""});
    ViewSpec v = store->define_view(activity());
    EXPECT_EQ(v.version, 2);
    EXPECT_EQ(v.join_keys.at(0).dtype, DType::String);
    EXPECT_EQ(store->recorded_view("activity", 1).join_keys.at(0).dtype, DType::Int64);
}

TEST_F(RemovalsTest, VersionsWrittenBeforeJoinKeysWereRecordedKeepThemWhenTheirEntityGoes) {
    TrainingSet built = store->training_set(labels(), {"activity:spend"}, "ts", "");
    {  // as a workspace written before the migration step left it
        auto& db = ws->db();
        keel::storage::Transaction tx(db);
        db.prepare("UPDATE features_views SET join_keys = ''").run();
        tx.commit();
    }
    store->retire_view("activity");
    store->remove_entity("player");
    EXPECT_EQ(values(store->rebuild_training_set(built.record.id, labels()).features), values(built.features));
}

TEST_F(RemovalsTest, TrainingSpecsAreCheckedRevisedRemovedAndBroughtBack) {
    TrainingSpec spec{.name = "churn", .features = {"activity:spend"}, .description = "churn model inputs",
                      .owner = "ds", .tags = {{"team", "growth"}}};
    TrainingSpec r1 = store->define_training_spec(spec);
    EXPECT_EQ(r1.revision, 1);
    EXPECT_EQ(r1.created_by, "alice");
    EXPECT_GT(r1.created_at_ms, 0);
    EXPECT_EQ(store->define_training_spec(spec).revision, 1);  // unchanged: no new revision
    spec.description = "the churn model's inputs";
    EXPECT_EQ(store->define_training_spec(spec).revision, 2);
    TrainingSpec got = store->training_spec("churn");
    EXPECT_EQ(got.revision, 2);
    EXPECT_EQ(got.features, spec.features);
    EXPECT_EQ(got.tags, spec.tags);
    EXPECT_EQ(got.owner, "ds");
    ASSERT_EQ(store->training_specs().size(), 1u);

    store->remove_training_spec("churn");
    EXPECT_TRUE(store->training_specs().empty());
    auto removed = error_message(ErrorKind::NotFound, [&] { store->training_spec("churn"); });
    EXPECT_TRUE(has(removed, "training spec 'churn' was removed by alice at ")) << removed;
    EXPECT_TRUE(has(error_message(ErrorKind::NotFound, [&] { store->remove_training_spec("churn"); }),
                    "was removed"));
    EXPECT_EQ(store->define_training_spec(spec).revision, 3);  // numbers continue, even unchanged
    EXPECT_EQ(count("SELECT COUNT(*) FROM features_training_specs WHERE name = 'churn'"), 3);
}

TEST_F(RemovalsTest, ATrainingSpecIsRefusedNamingWhatIsWrong) {
    auto define = [&](std::string name, std::vector<std::string> features) {
        return [=, this] { store->define_training_spec({.name = name, .features = features}); };
    };
    EXPECT_TRUE(has(error_message(ErrorKind::InvalidArgument, define("bad name!", {"activity:spend"})),
                    "training spec"));
    EXPECT_TRUE(has(error_message(ErrorKind::InvalidArgument, define("churn", {})), "at least one feature"));
    EXPECT_TRUE(has(error_message(ErrorKind::InvalidArgument, define("churn", {"activity:spend", "activity:spend"})),
                    "feature 'activity:spend' appears twice in training spec 'churn'"));
    EXPECT_TRUE(has(error_message(ErrorKind::InvalidArgument, define("churn", {"spend"})), "'view:column'"));
    auto column = error_message(ErrorKind::NotFound, define("churn", {"activity:visits"}));
    EXPECT_TRUE(has(column, "feature 'activity:visits'")) << column;
    EXPECT_TRUE(has(column, "has no column 'visits' (its columns: spend)")) << column;
    auto view = error_message(ErrorKind::NotFound, define("churn", {"profile:age"}));
    EXPECT_TRUE(has(view, "feature view 'profile' not found (known: activity)")) << view;
    auto unknown = error_message(ErrorKind::NotFound, [&] { store->training_spec("nope"); });
    EXPECT_TRUE(has(unknown, "training spec 'nope' not found (known: none)")) << unknown;
    store->retire_view("activity");
    auto retired = error_message(ErrorKind::NotFound, define("churn", {"activity:spend"}));
    EXPECT_TRUE(has(retired, "was retired by alice")) << retired;
    EXPECT_EQ(count("SELECT COUNT(*) FROM features_training_specs"), 0);  // nothing written
}

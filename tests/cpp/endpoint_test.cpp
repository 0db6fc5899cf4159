// tests/cpp/endpoint_test.cpp: a saved endpoint served by the core alone — no Python anywhere.
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/inference/format.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/plugins/quality_store.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/alias_check.hpp"
#include "keel/serving/endpoint.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/serving/prediction_tables.hpp"
#include "keel/storage/workspace.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <thread>
#include <unistd.h>

using namespace keel;
using namespace keel::serving;
using plugins::Field;
using plugins::Value;

namespace {

struct EndpointTest : keel::testing::WorkspaceTest {
    std::shared_ptr<features::FeatureStore> store = std::make_shared<features::FeatureStore>(ws);
    registry::Registry reg{*ws};

    // Players 0..9: spend = 10 * id, visits = id; materialized online.
    EndpointTest() {
        using features::DType;
        store->define_entity({"player", {{"player_id", DType::Int64}}, ""});
        features::ViewSpec v;
        v.name = "activity";
        v.entities = {"player"};
        v.features = {{"spend", DType::Float64}, {"visits", DType::Int64}};
        store->define_view(v);
        std::vector<int64_t> ids, ts, visits;
        std::vector<double> spend;
        int64_t now = now_ms();
        for (int64_t i = 0; i < 10; ++i) {
            ids.push_back(i);
            ts.push_back(now - 1000);
            spend.push_back(10.0 * double(i));
            visits.push_back(i);
        }
        features::BatchView b;
        b.rows = ids.size();
        b.columns.push_back({"player_id", DType::Int64, 0, ids.data()});
        b.columns.push_back({"event_timestamp", DType::Timestamp, 0, ts.data()});
        b.columns.push_back({"spend", DType::Float64, 0, spend.data()});
        b.columns.push_back({"visits", DType::Int64, 0, visits.data()});
        store->ingest("activity", b);
        store->materialize("activity");
    }

    // A native linear model y = intercept + sum(coef * input), reading `names` by name.
    registry::ModelVersion linear(const std::string& model, std::vector<std::string> names, std::vector<double> coef,
                                  double intercept) {
        inference::Record r;
        std::string sig = R"({"inputs": [)";
        for (size_t i = 0; i < names.size(); ++i) sig += (i ? ", " : "") + ("{\"name\": \"" + names[i] + "\"}");
        sig += "]}";
        r["features.dtypes"] = inference::RecordValue::of_strings(std::vector<std::string>(names.size(), "float64"));
        r["features.names"] = inference::RecordValue::of_strings(std::move(names));
        r["model.kind"] = inference::RecordValue::of_string("linear");
        r["linear.coef"] = inference::RecordValue::of_reals(std::move(coef));
        r["linear.intercept"] = inference::RecordValue::of_reals({intercept});
        auto digest = ws->artifacts().put_bytes(inference::Predictor(std::move(r)).to_bytes());
        return reg.register_version(model, {.digest = digest, .flavour = "keel-native", .signature = sig});
    }

    // A model the core cannot run ("python" flavour), reading `spend`.
    registry::ModelVersion hosted(const std::string& model) {
        auto digest = ws->artifacts().put_bytes("pickled " + model);
        return reg.register_version(model, {.digest = digest, .flavour = "python",
                                            .signature = R"({"inputs": [{"name": "spend"}]})"});
    }

    // Two variants: `a` and `b` (model refs), split by `routing` with `config`.
    void define_ab(const std::string& name, const std::string& routing, const std::string& a, const std::string& b,
                   Value config = Value(Value::Map{})) {
        EndpointStore(*ws).define(name, Value(Value::Map{
            {"routing", Value(routing)},
            {"variants", Value(Value::Map{{"a", Value(Value::Array{Value(a), Value(0.5)})},
                                          {"b", Value(Value::Array{Value(b), Value(0.5)})}})},
            {"features", Value(Value::Array{Value("activity:spend")})},
            {"config", std::move(config)}}));
    }

    // Live serves edges into endpoint:<name>, by model version.
    std::set<std::string> served_by(const std::string& name) {
        std::set<std::string> out;
        for (const auto& hop : lineage::Graph(*ws).upstream("endpoint:" + name, 1).edges)
            if (hop.kind == "serves") out.insert(hop.from);
        return out;
    }
};

// A host's model: `factor` times its first input, or an error when `fail`.
struct TestModel : VariantModel {
    double factor = 2.0;
    bool fail = false;
    mutable std::atomic<int> calls{0};
    std::vector<double> predict(const double* rows, size_t n, size_t width) const override {
        calls++;
        if (fail) throw std::runtime_error("boom");
        std::vector<double> out(n);
        for (size_t i = 0; i < n; ++i) out[i] = factor * rows[i * width];
        return out;
    }
};

//! Options whose loader hands `model` to every variant the core cannot run.
EndpointOptions hosting(std::shared_ptr<TestModel> model) {
    EndpointOptions options;
    options.load_model = [model](const registry::ModelVersion&, const std::string&) { return model; };
    return options;
}

} // namespace

TEST_F(EndpointTest, ASavedEndpointServesPredictionsThroughTheCoreAlone) {
    linear("churn", {"visits", "spend"}, {1.0, 0.5}, 2.0);  // churn/1: 2 + visits + spend / 2
    linear("churn", {"spend"}, {-1.0}, 0.0);                // churn/2: -spend
    reg.set_alias("churn", "champion", 1);
    EndpointStore(*ws).define("churn", Value(Value::Map{{"model", "churn@champion"},
                                                        {"features", Value(Value::Array{Value("activity")})}}));

    Endpoint ep(ws, "churn");  // opened by name: everything it needs comes from the workspace
    EXPECT_EQ(ep.revision(), 1);
    Field request[] = {{"player_id", int64_t(4)}, {"tenant", std::string_view("studio-a")}};
    auto a = ep.predict(request);
    EXPECT_DOUBLE_EQ(a.prediction, 2.0 + 4.0 + 40.0 / 2);
    EXPECT_EQ(a.variant, "main");
    EXPECT_EQ(a.model, "churn/1");
    EXPECT_EQ(a.version, 1);
    EXPECT_EQ(a.fallback, "");
    EXPECT_TRUE(a.missing.empty() && a.stale.empty());

    // A request field named like an input wins over the online value.
    Field sent[] = {{"player_id", int64_t(4)}, {"visits", 100.0}};
    EXPECT_DOUBLE_EQ(ep.predict(sent).prediction, 2.0 + 100.0 + 20.0);

    // An unknown entity has no fresh value: refused by default, naming the inputs.
    Field unknown[] = {{"player_id", int64_t(999)}};
    try {
        ep.predict(unknown);
        ADD_FAILURE() << "an unknown entity was answered";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("missing [visits, spend]"), std::string::npos) << e.what();
    }

    // The alias moves: the next request serves the new version, with no call to refresh().
    reg.set_alias("churn", "champion", 2);
    a = ep.predict(request);
    EXPECT_EQ(a.model, "churn/2");
    EXPECT_DOUBLE_EQ(a.prediction, -40.0);
    EXPECT_EQ(ep.stats().router.decisions, 4);
}

TEST_F(EndpointTest, EveryAnswerIsLoggedWithoutPython) {
    linear("churn", {"visits", "spend"}, {1.0, 0.5}, 2.0);
    reg.set_alias("churn", "champion", 1);
    EndpointStore(*ws).define("churn", Value(Value::Map{{"model", "churn@champion"},
                                                        {"features", Value(Value::Array{Value("activity")})}}));
    {
        Endpoint ep(ws, "churn");
        Field first[] = {{"player_id", int64_t(4)}, {"tenant", std::string_view("studio-a")}};
        Field second[] = {{"player_id", int64_t(4)}, {"visits", 1.5}};
        ep.predict(first);
        ep.predict(second);
        ep.log().flush();
        auto rows = EndpointStore(*ws).assignments("churn");
        ASSERT_EQ(rows.size(), 2u);
        EXPECT_EQ(rows[0].key, "4");
        EXPECT_EQ(rows[0].tenant, "studio-a");
        EXPECT_EQ(rows[0].variant, "main");
        EXPECT_EQ(rows[0].model, "churn/1");
        EXPECT_EQ(rows[0].revision, 1);
        EXPECT_DOUBLE_EQ(*rows[0].prediction, 2.0 + 4.0 + 40.0 / 2);
        EXPECT_EQ(rows[1].tenant, "");  // the request named no tenant
        ep.predict(first);  // not flushed: the endpoint's close writes it
    }
    EXPECT_EQ(EndpointStore(*ws).assignments("churn").size(), 3u);
}

TEST_F(EndpointTest, ThePredictionLogKeepsTheInputsOfTheShareLogInputsAsksFor) {
    linear("churn", {"visits", "spend"}, {1.0, 0.5}, 2.0);
    auto define = [&](double share) {
        EndpointStore(*ws).define("churn", Value(Value::Map{{"model", "churn/1"}, {"log_inputs", share},
                                                            {"on_missing", "flag"},
                                                            {"features", Value(Value::Array{Value("activity")})}}));
    };
    define(1.0);
    Endpoint ep(ws, "churn", EndpointOptions{.refresh_interval = std::chrono::milliseconds(0)});
    Field request[] = {{"player_id", int64_t(3)}, {"visits", 1.5}};
    ep.predict(request);
    std::vector<std::vector<Field>> fields{{{"player_id", int64_t(1)}}, {{"player_id", int64_t(99)}}};
    std::vector<std::span<const Field>> batch(fields.begin(), fields.end());
    ep.predict_batch(batch);
    ep.log().flush();
    auto rows = EndpointStore(*ws).assignments("churn");
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0].inputs, R"({"visits":1.5,"spend":30})");  // the request's field won over the online one
    EXPECT_EQ(rows[1].inputs, R"({"visits":1,"spend":10})");
    EXPECT_EQ(rows[2].inputs, R"({"visits":null,"spend":null})");  // an unknown player: missing inputs
    for (const auto& row : rows) EXPECT_GT(row.latency_us, 0);
    EXPECT_EQ(rows[1].latency_us, rows[2].latency_us);  // a batch's rows waited for the same call

    define(0.0);  // every answer is still logged, none with its inputs
    for (int i = 0; i < 50; ++i) ep.predict(request);
    define(0.2);
    for (int i = 0; i < 2000; ++i) ep.predict(request);
    ep.log().flush();
    rows = EndpointStore(*ws).assignments("churn");
    ASSERT_EQ(rows.size(), 3u + 50 + 2000);
    EXPECT_TRUE(std::all_of(rows.begin() + 3, rows.begin() + 53, [](const auto& r) { return r.inputs.empty(); }));
    auto logged = std::count_if(rows.begin() + 53, rows.end(), [](const auto& r) { return !r.inputs.empty(); });
    EXPECT_GT(logged, 300);  // about 400 of 2000
    EXPECT_LT(logged, 500);

    EXPECT_THROW(define(1.5), Error);
    EXPECT_THROW(EndpointStore(*ws).define("churn", Value(Value::Map{{"model", "churn/1"}, {"log_inputs", "all"}})),
                 Error);
}

TEST_F(EndpointTest, ANewRevisionIsServedFromTheNextRequest) {
    linear("a", {"spend"}, {1.0}, 0.0);
    linear("b", {"spend"}, {0.0}, 7.0);
    EndpointStore endpoints(*ws);
    endpoints.define("ab", Value(Value::Map{{"routing", "plugins/routing/sticky.lua"},
                                            {"variants", Value(Value::Map{{"a", Value(Value::Array{Value("a/1"), Value(1.0)})},
                                                                          {"b", Value(Value::Array{Value("b/1"), Value(0.0)})}})},
                                            {"features", Value(Value::Array{Value("activity:spend")})}}));
    Endpoint ep(ws, "ab");
    for (int64_t id = 0; id < 10; ++id) {
        Field r[] = {{"player_id", id}};
        EXPECT_EQ(ep.predict(r).variant, "a");
    }
    endpoints.define("ab", Value(Value::Map{{"variants", Value(Value::Map{{"a", Value(Value::Array{Value("a/1"), Value(0.0)})},
                                                                          {"b", Value(Value::Array{Value("b/1"), Value(1.0)})}})}}));
    Field r[] = {{"player_id", int64_t(3)}};
    auto answer = ep.predict(r);
    EXPECT_EQ(ep.revision(), 2);
    EXPECT_EQ(answer.variant, "b");
    EXPECT_DOUBLE_EQ(answer.prediction, 7.0);
}

TEST_F(EndpointTest, AnAliasMovedOntoAVersionItCannotFeedIsNotFollowed) {
    linear("churn", {"spend"}, {1.0}, 0.0);
    linear("churn", {"loyalty"}, {1.0}, 0.0);
    reg.set_alias("churn", "champion", 1);
    EndpointStore(*ws).define("churn", Value(Value::Map{{"model", "churn@champion"},
                                                        {"features", Value(Value::Array{Value("activity:spend")})}}));
    Endpoint ep(ws, "churn");
    reg.set_alias("churn", "champion", 2);  // below any check: the endpoint cannot feed 'loyalty'
    Field r[] = {{"player_id", int64_t(2)}};
    auto a = ep.predict(r);
    EXPECT_EQ(a.model, "churn/1");
    EXPECT_DOUBLE_EQ(a.prediction, 20.0);
    EXPECT_NE(ep.rejected().find("missing [loyalty]"), std::string::npos) << ep.rejected();
}

TEST_F(EndpointTest, AChangeWhoseModelCannotBeLoadedKeepsServingTheLastGoodState) {
    linear("churn", {"spend"}, {1.0}, 0.0);                      // churn/1: spend
    auto corrupt = ws->artifacts().put_bytes("not a model");  // churn/2: its artifact does not load
    reg.register_version("churn", {.digest = corrupt, .flavour = "keel-native",
                                   .signature = R"({"inputs": [{"name": "spend"}]})"});
    reg.set_alias("churn", "champion", 1);
    EndpointStore endpoints(*ws);
    endpoints.define("churn", Value(Value::Map{{"model", "churn@champion"},
                                               {"features", Value(Value::Array{Value("activity:spend")})}}));
    Endpoint ep(ws, "churn");
    Field r[] = {{"player_id", int64_t(2)}};

    reg.set_alias("churn", "champion", 2);  // a bad push: the variant keeps its version
    auto a = ep.predict(r);
    EXPECT_EQ(a.model, "churn/1");
    EXPECT_DOUBLE_EQ(a.prediction, 20.0);
    EXPECT_NE(ep.rejected().find("could not be loaded"), std::string::npos) << ep.rejected();
    reg.set_alias("churn", "champion", 1);
    ep.predict(r);
    EXPECT_EQ(ep.rejected(), "");

    endpoints.define("churn", Value(Value::Map{{"model", "churn/2"}}));  // a new revision that cannot load
    auto b = ep.predict(r);
    EXPECT_EQ(b.model, "churn/1");
    EXPECT_EQ(ep.revision(), 1);
    EXPECT_NE(ep.rejected().find("revision 1 is still served"), std::string::npos) << ep.rejected();
    endpoints.define("churn", Value(Value::Map{{"model", "churn/1"}}));  // fixed: served again within the interval
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    ep.predict(r);
    EXPECT_EQ(ep.revision(), 3);
    EXPECT_EQ(ep.rejected(), "");
}

TEST_F(EndpointTest, AVariantWhoseModelCannotBeLoadedIsAnsweredByTheDefaultVariant) {
    linear("good", {"spend"}, {1.0}, 0.0);
    auto corrupt = ws->artifacts().put_bytes("not a model");
    reg.register_version("bad", {.digest = corrupt, .flavour = "keel-native",
                                 .signature = R"({"inputs": [{"name": "spend"}]})"});
    define_ab("ab", "plugins/routing/sticky.lua", "good/1", "bad/1");  // a is the default variant
    Endpoint ep(ws, "ab");  // opens: only b is out
    EXPECT_NE(ep.rejected().find("the default variant 'a' answers"), std::string::npos) << ep.rejected();
    std::vector<std::vector<Field>> requests;
    for (int64_t id = 0; id < 10; ++id) requests.push_back({{"player_id", id}});
    int rerouted = 0;
    for (const auto& r : requests) {
        auto a = ep.predict(r);
        EXPECT_EQ(a.model, "good/1");
        EXPECT_DOUBLE_EQ(a.prediction, 10.0 * double(std::get<int64_t>(r[0].value)));
        rerouted += a.fallback == "model_unavailable";
    }
    EXPECT_GT(rerouted, 0) << "sticky routing sends some players to b";
    std::vector<std::span<const Field>> spans(requests.begin(), requests.end());
    auto batch = ep.predict_batch(spans);
    for (const auto& d : batch.decisions) EXPECT_EQ(d.variant, 0);
    EXPECT_EQ(ep.stats().router.unavailable, rerouted * 2);

    // The default variant itself must load: such an endpoint is not opened.
    define_ab("ba", "plugins/routing/sticky.lua", "bad/1", "good/1");
    EXPECT_NE(keel::testing::error_message(ErrorKind::Corrupt, [&] { Endpoint bad(ws, "ba"); }).find("default variant"),
              std::string::npos);
}

TEST_F(EndpointTest, APredictionTableIsServedLikeAModelAndFollowsItsModelsAlias) {
    using features::DType;
    linear("recs", {"spend"}, {1.0}, 0.0);  // recs/1 and recs/2 wrote tables; their models are never run
    linear("recs", {"spend"}, {2.0}, 0.0);
    reg.set_alias("recs", "champion", 1);
    // What ws.predictions.write does: a view per version, ingested, materialized, recorded.
    auto write = [&](int64_t version, double score, std::vector<int64_t> first_items) {
        features::ViewSpec v;
        v.name = PredictionTables::view_name("player_recs", version);
        v.entities = {"player"};
        v.features = {{"prediction", DType::Float64}, {"item_1", DType::Int64}, {"item_2", DType::Int64}};
        store->define_view(v);
        std::vector<int64_t> ids{0, 1, 2}, ts(3, now_ms() - 1000), item1 = first_items, item2{7, 8, 9};
        std::vector<double> scores(3, score);
        features::BatchView b;
        b.rows = 3;
        b.columns.push_back({"player_id", DType::Int64, 0, ids.data()});
        b.columns.push_back({"event_timestamp", DType::Timestamp, 0, ts.data()});
        b.columns.push_back({"prediction", DType::Float64, 0, scores.data()});
        b.columns.push_back({"item_1", DType::Int64, 0, item1.data()});
        b.columns.push_back({"item_2", DType::Int64, 0, item2.data()});
        store->ingest(v.name, b);
        store->materialize(v.name);
        PredictionTables(*ws).record({"player_recs", "recs", version, v.name, true, 2, 3, now_ms(), "test"});
    };
    write(1, 0.5, {10, 11, 12});
    EndpointStore(*ws).define("recs", Value(Value::Map{{"model", "predictions:player_recs@champion"}}));
    Endpoint ep(ws, "recs");
    Field r[] = {{"player_id", int64_t(1)}};
    auto a = ep.predict(r);
    EXPECT_EQ(a.model, "recs/1");  // the version that computed the answer
    EXPECT_DOUBLE_EQ(a.prediction, 0.5);
    EXPECT_EQ(a.items, (std::vector<int64_t>{11, 8}));
    EXPECT_TRUE(ep.serves_items("main"));

    // Version 2 wrote no table yet: the move is refused (the check every caller makes), and a move
    // made below it leaves the endpoint on its table; once version 2 has written one, it follows.
    EXPECT_EQ(keel::testing::thrown_error([&] { check_alias_move(*ws, "recs", "champion", 2); }).kind(),
              ErrorKind::Conflict);
    reg.set_alias("recs", "champion", 2);
    EXPECT_EQ(ep.predict(r).model, "recs/1");
    EXPECT_NE(ep.rejected().find("wrote no predictions"), std::string::npos) << ep.rejected();
    write(2, 0.25, {20, 21, 22});
    check_alias_move(*ws, "recs", "champion", 2);
    reg.set_alias("recs", "champion", 2);
    auto b = ep.predict(r);
    EXPECT_EQ(b.model, "recs/2");
    EXPECT_EQ(b.items, (std::vector<int64_t>{21, 8}));

    // A batch answers as requests one by one would.
    Field r0[] = {{"player_id", int64_t(0)}};
    std::vector<std::span<const Field>> both{r0, r};
    auto batch = ep.predict_batch(both);
    ASSERT_EQ(batch.items.size(), 2u);
    EXPECT_EQ(batch.items[0], (std::vector<int64_t>{20, 7}));
    EXPECT_DOUBLE_EQ(batch.predictions[1], 0.25);

    // An unknown table, or a version that wrote none, is NotFound naming it.
    EXPECT_NE(keel::testing::error_message(ErrorKind::NotFound, [&] {
                  EndpointStore(*ws).define("nope", Value(Value::Map{{"model", "predictions:nothing/1"}}));
              }).find("nothing"),
              std::string::npos);
}

TEST_F(EndpointTest, OnlyNativeModelsAreServedByTheCore) {
    auto digest = ws->artifacts().put_bytes("pickled bytes");
    reg.register_version("py", {.digest = digest, .flavour = "python", .signature = R"({"inputs": [{"name": "spend"}]})"});
    EndpointStore(*ws).define("py", Value(Value::Map{{"model", "py/1"},
                                                     {"features", Value(Value::Array{Value("activity:spend")})}}));
    try {
        Endpoint ep(ws, "py");
        ADD_FAILURE() << "a Python model was opened in the core";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("model py/1 is a 'python' model"), std::string::npos) << e.what();
    }
    try {
        Endpoint missing(ws, "nope");
        ADD_FAILURE() << "an undefined endpoint was opened";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::NotFound);
    }
}

TEST_F(EndpointTest, AModelTheCoreCannotRunIsServedThroughTheHostsLoader) {
    hosted("py");
    EndpointStore(*ws).define("py", Value(Value::Map{{"model", "py/1"},
                                                     {"features", Value(Value::Array{Value("activity:spend")})}}));
    auto model = std::make_shared<TestModel>();
    std::vector<std::string> asked;
    EndpointOptions options;
    options.load_model = [&](const registry::ModelVersion& mv, const std::string& output) {
        asked.push_back(mv.ref() + " " + output);
        return model;
    };
    Endpoint ep(ws, "py", options);
    EXPECT_FALSE(ep.native());
    EXPECT_EQ(asked, std::vector<std::string>{"py/1 auto"});
    Field r[] = {{"player_id", int64_t(3)}};
    auto a = ep.predict(r);
    EXPECT_DOUBLE_EQ(a.prediction, 60.0);  // 2 * spend
    EXPECT_EQ(a.model, "py/1");
    model->fail = true;  // the answer's own model failing fails the request
    EXPECT_THROW(ep.predict(r), std::runtime_error);
}

TEST_F(EndpointTest, DataIssuesUpstreamOfAVariantReachTheRouter) {
    linear("a", {"spend"}, {1.0}, 0.0);
    linear("b", {"spend"}, {0.0}, 7.0);
    define_ab("ab", "plugins/routing/sticky.lua", "a/1", "b/1", Value(Value::Map{{"avoid_data_issues", Value(true)}}));
    Endpoint ep(ws, "ab");
    std::set<std::string> seen;
    for (int64_t id = 0; id < 10; ++id) {
        Field r[] = {{"player_id", id}};
        seen.insert(ep.predict(r).variant);
    }
    ASSERT_EQ(seen, (std::set<std::string>{"a", "b"}));
    EXPECT_TRUE(ep.stats().issues.empty());

    // An issue opens on model a/1 (in any process): the next request sees it, with no refresh().
    plugins::QualityStore quality(*ws);
    plugins::StoredResult fail;
    fail.rule = "range";
    fail.column = "spend";
    fail.severity = "error";
    fail.status = "fail";
    fail.message = "spend out of range";
    auto opened = quality.record("model:a/1", 1, false, {fail});
    ASSERT_EQ(opened.opened.size(), 1u);
    for (int64_t id = 0; id < 10; ++id) {
        Field r[] = {{"player_id", id}};
        auto answer = ep.predict(r);
        EXPECT_EQ(answer.variant, "b") << id;
    }
    EXPECT_EQ(ep.stats().issues, std::vector<std::string>{"a"});
    EXPECT_GT(ep.stats().router.data_issue, 0);

    // Closed: the split comes back.
    quality.close_issue(opened.opened[0].id);
    seen.clear();
    for (int64_t id = 0; id < 10; ++id) {
        Field r[] = {{"player_id", id}};
        seen.insert(ep.predict(r).variant);
    }
    EXPECT_EQ(seen, (std::set<std::string>{"a", "b"}));
    EXPECT_TRUE(ep.stats().issues.empty());
}

TEST_F(EndpointTest, ShadowsAreLoggedAndTheirFailuresOnlyCounted) {
    linear("a", {"spend"}, {1.0}, 0.0);
    hosted("py");
    define_ab("mirrored", "plugins/routing/shadow.lua", "a/1", "py/1");
    auto model = std::make_shared<TestModel>();
    Endpoint ep(ws, "mirrored", hosting(model));
    Field r[] = {{"player_id", int64_t(2)}, {"tenant", std::string_view("studio-a")}};
    auto a = ep.predict(r);
    EXPECT_EQ(a.variant, "a");
    EXPECT_DOUBLE_EQ(a.prediction, 20.0);
    ep.log().flush();
    auto rows = EndpointStore(*ws).assignments("mirrored");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_FALSE(rows[0].shadow);
    EXPECT_TRUE(rows[1].shadow);
    EXPECT_EQ(rows[1].variant, "b");
    EXPECT_EQ(rows[1].model, "py/1");
    EXPECT_EQ(rows[1].key, "2");
    EXPECT_EQ(rows[1].tenant, "studio-a");
    EXPECT_DOUBLE_EQ(*rows[1].prediction, 40.0);
    EXPECT_EQ(ep.stats().shadow_errors, 0);

    model->fail = true;  // a failing shadow: the answer is unchanged, the failure counted, nothing logged
    a = ep.predict(r);
    EXPECT_DOUBLE_EQ(a.prediction, 20.0);
    auto stats = ep.stats();
    EXPECT_EQ(stats.shadow_errors, 1);
    EXPECT_EQ(stats.last_shadow_error, "b: boom");
    ep.log().flush();
    EXPECT_EQ(EndpointStore(*ws).assignments("mirrored").size(), 3u);
}

TEST_F(EndpointTest, ServesEdgesFollowTheVersionAnAliasMovesTo) {
    linear("churn", {"spend"}, {1.0}, 0.0);
    linear("churn", {"spend"}, {2.0}, 0.0);
    linear("churn", {"spend"}, {3.0}, 0.0);
    reg.set_alias("churn", "champion", 1);
    EndpointStore(*ws).define("churn", Value(Value::Map{{"model", "churn@champion"},
                                                        {"features", Value(Value::Array{Value("activity:spend")})}}));
    Endpoint ep(ws, "churn");
    EXPECT_EQ(served_by("churn"), std::set<std::string>{"model:churn/1"});
    reg.set_alias("churn", "champion", 2);
    Field r[] = {{"player_id", int64_t(1)}};
    EXPECT_DOUBLE_EQ(ep.predict(r).prediction, 20.0);
    EXPECT_EQ(served_by("churn"), std::set<std::string>{"model:churn/2"});
    // Another host followed the move first and ended the edge: fine.
    reg.set_alias("churn", "champion", 3);
    lineage::Graph(*ws).remove_edge("model:churn/2", "serves", "endpoint:churn");
    EXPECT_DOUBLE_EQ(ep.predict(r).prediction, 30.0);
    EXPECT_EQ(served_by("churn"), std::set<std::string>{"model:churn/3"});
}

TEST_F(EndpointTest, ABatchAnswersAsManyRequestsWouldOneByOne) {
    linear("a", {"spend"}, {1.0}, 0.5);
    hosted("py");
    define_ab("ab", "plugins/routing/sticky.lua", "a/1", "py/1");
    auto model = std::make_shared<TestModel>();
    Endpoint ep(ws, "ab", hosting(model));
    std::vector<std::vector<Field>> fields;
    for (int64_t id = 0; id < 12; ++id) fields.push_back({{"player_id", id % 10}});
    fields[11].push_back({"spend", 1000.0});  // a request field wins over the online value
    std::vector<std::span<const Field>> requests(fields.begin(), fields.end());
    int calls = model->calls;
    auto batch = ep.predict_batch(requests);
    EXPECT_EQ(model->calls - calls, 1);  // one call for every row of the host's variant
    ASSERT_EQ(batch.predictions.size(), 12u);
    for (size_t i = 0; i < requests.size(); ++i) {
        auto one = ep.predict(requests[i]);
        const auto& served = batch.variants[size_t(batch.decisions[i].variant)];
        EXPECT_EQ(served.variant, one.variant) << i;
        EXPECT_EQ(served.model, one.model) << i;
        EXPECT_DOUBLE_EQ(batch.predictions[i], one.prediction) << i;
        EXPECT_EQ(batch.missing[i], one.missing) << i;
    }
    ep.log().flush();
    EXPECT_EQ(EndpointStore(*ws).assignments("ab").size(), 24u);
}

TEST_F(EndpointTest, RefusedRequestsAreCountedAndNotLogged) {
    linear("churn", {"spend"}, {1.0}, 0.0);
    EndpointStore(*ws).define("churn", Value(Value::Map{{"model", "churn/1"},
                                                        {"features", Value(Value::Array{Value("activity:spend")})}}));
    Endpoint ep(ws, "churn");
    Field keyless[] = {{"tenant", std::string_view("studio-a")}};
    EXPECT_THROW(ep.predict(keyless), Error);
    Field unknown[] = {{"player_id", int64_t(999)}};  // no fresh value under on_missing='error'
    EXPECT_THROW(ep.predict(unknown), Error);
    EXPECT_EQ(ep.stats().refused, 2);
    std::vector<std::vector<Field>> fields{{{"player_id", int64_t(1)}}, {{"tenant", std::string_view("x")}}};
    std::vector<std::span<const Field>> requests(fields.begin(), fields.end());
    try {
        ep.predict_batch(requests);
        ADD_FAILURE() << "a batch with a keyless request was answered";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("request 1:"), std::string::npos) << e.what();
    }
    EXPECT_EQ(ep.stats().refused, 4);  // the whole batch
    ep.log().flush();
    EXPECT_TRUE(EndpointStore(*ws).assignments("churn").empty());
}

TEST_F(EndpointTest, ARemovedEndpointAnswersNotFoundUntilItIsSavedAgain) {
    linear("churn", {"spend"}, {1.0}, 0.0);
    reg.set_alias("churn", "champion", 1);
    EndpointStore endpoints(*ws);
    endpoints.define("churn", Value(Value::Map{{"model", "churn@champion"},
                                               {"features", Value(Value::Array{Value("activity:spend")})}}));
    ws->set_user("bob");
    Endpoint ep(ws, "churn");
    Field r[] = {{"player_id", int64_t(2)}};
    EXPECT_DOUBLE_EQ(ep.predict(r).prediction, 20.0);
    ep.log().flush();

    endpoints.remove("churn");
    auto gone = keel::testing::error_message(ErrorKind::NotFound, [&] { endpoints.current("churn"); });
    EXPECT_NE(gone.find("endpoint 'churn' was removed by bob at "), std::string::npos) << gone;
    EXPECT_EQ(endpoints.current_revision("churn"), 0);
    EXPECT_TRUE(endpoints.names().empty());
    EXPECT_EQ(endpoints.removal("churn")->revision, 1);
    // History stays: the revisions and the assignment log.
    EXPECT_EQ(endpoints.revisions("churn").size(), 1u);
    EXPECT_EQ(endpoints.assignments("churn").size(), 1u);
    // Its lineage edges ended with it.
    EXPECT_TRUE(served_by("churn").empty());
    EXPECT_TRUE(lineage::Graph(*ws).upstream("endpoint:churn", 1).edges.empty());

    // The hosting endpoint refuses new requests instead of serving the revision it had loaded.
    auto refused = keel::testing::error_message(ErrorKind::NotFound, [&] { ep.predict(r); });
    EXPECT_NE(refused.find("was removed by bob"), std::string::npos) << refused;
    std::span<const Field> one(r);
    keel::testing::error_message(ErrorKind::NotFound, [&] { ep.predict_batch(std::span(&one, 1)); });
    keel::testing::error_message(ErrorKind::NotFound, [&] { ep.admits(""); });
    keel::testing::error_message(ErrorKind::NotFound, [&] { ep.set_weights({{"main", 1.0}}); });
    EXPECT_EQ(endpoints.current_revision("churn"), 0);  // set_weights did not bring it back
    keel::testing::error_message(ErrorKind::NotFound, [&] { endpoints.remove("churn"); });
    keel::testing::error_message(ErrorKind::NotFound, [&] { Endpoint(ws, "churn"); });
    EXPECT_EQ(endpoints.assignments("churn").size(), 1u);  // refused requests are not logged

    // Saved again (the same definition): revision 2, served from the next request on.
    auto back = endpoints.define("churn", Value(Value::Map{{"model", "churn@champion"},
                                                           {"features", Value(Value::Array{Value("activity:spend")})}}));
    EXPECT_EQ(back.revision, 2);
    EXPECT_FALSE(endpoints.removal("churn"));
    EXPECT_EQ(endpoints.names(), std::vector<std::string>{"churn"});
    EXPECT_DOUBLE_EQ(ep.predict(r).prediction, 20.0);
    EXPECT_EQ(ep.revision(), 2);
    EXPECT_EQ(served_by("churn"), std::set<std::string>{"model:churn/1"});
}

TEST_F(EndpointTest, ARemovedEndpointIsDefinedAfreshWhenDefinedAgain) {
    linear("churn", {"spend"}, {1.0}, 0.0);
    EndpointStore endpoints(*ws);
    endpoints.define("churn", Value(Value::Map{{"model", "churn/1"}, {"tenants", Value(Value::Array{Value("a")})},
                                               {"features", Value(Value::Array{Value("activity:spend")})}}));
    endpoints.remove("churn");
    // Fields not given do not come back from the removed definition.
    auto back = endpoints.define("churn", Value(Value::Map{{"model", "churn/1"},
                                                           {"features", Value(Value::Array{Value("activity:spend")})}}));
    EXPECT_EQ(back.revision, 2);
    EXPECT_TRUE(back.definition.tenants.empty());
}

TEST_F(EndpointTest, AViewRetiredUnderAnEndpointServesNoStaleValue) {
    linear("churn", {"spend"}, {1.0}, 0.0);
    EndpointStore(*ws).define("churn", Value(Value::Map{{"model", "churn/1"},
                                                        {"features", Value(Value::Array{Value("activity:spend")})}}));
    Endpoint ep(ws, "churn", EndpointOptions{.refresh_interval = std::chrono::milliseconds(0)});
    Field r[] = {{"player_id", int64_t(2)}};
    EXPECT_DOUBLE_EQ(ep.predict(r).prediction, 20.0);
    store->retire_view("activity");
    auto msg = keel::testing::error_message(ErrorKind::InvalidArgument, [&] { ep.predict(r); });
    EXPECT_NE(msg.find("missing [spend]"), std::string::npos) << msg;
}

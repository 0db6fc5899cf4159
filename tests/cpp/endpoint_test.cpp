// tests/cpp/endpoint_test.cpp: a saved endpoint served by the core alone — no Python anywhere.
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/inference/format.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/endpoint.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/storage/workspace.hpp"

#include "support/workspace_test.hpp"

#include <gtest/gtest.h>


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
};

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
    EXPECT_EQ(ep.stats().decisions, 4);
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

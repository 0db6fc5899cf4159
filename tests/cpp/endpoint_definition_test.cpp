// tests/cpp/endpoint_definition_test.cpp: endpoint definitions — parsing and every refusal, the
// canonical JSON, partial updates, saving with lineage in one transaction, the alias-move check.
#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/alias_check.hpp"
#include "keel/serving/endpoint_definition.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

using namespace keel;
using namespace keel::serving;
using plugins::Value;
using keel::testing::error_message;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

EndpointDefinition parse(const std::string& json) { return EndpointDefinition::from_json(json); }

std::string refusal(const std::string& json) {
    return error_message(ErrorKind::InvalidArgument, [&] { parse(json); });
}

} // namespace

// -- parsing ----------------------------------------------------------------------------------

TEST(EndpointDefinition, OneModelIsVariantMainWithTheWeightedPlugin) {
    auto d = parse(R"({"model": "churn@champion", "features": ["activity:spend"]})");
    ASSERT_EQ(d.variants.size(), 1u);
    EXPECT_EQ(d.variants[0], (EndpointVariant{"main", "churn@champion", 1.0, {}}));
    EXPECT_EQ(d.routing, "plugins/routing/weighted.lua");
    EXPECT_EQ(d.tenant_field, "tenant");
    EXPECT_EQ(d.output, "auto");
    EXPECT_EQ(d.on_missing, OnMissing::Error);
    EXPECT_EQ(d.features, (std::vector<std::string>{"activity:spend"}));
    EXPECT_EQ(d.views(), (std::vector<std::string>{"activity"}));
}

TEST(EndpointDefinition, EveryShapeOfVariantsMeansTheSame) {
    EndpointDefinition expected;
    expected.routing = "plugins/routing/sticky.lua";
    expected.variants = {{"a", "churn/1", 0.9, {}}, {"b", "churn/2", 0.1, {"x", "y"}}};
    const char* shapes[] = {
        R"({"routing": "plugins/routing/sticky.lua",
            "variants": {"a": ["churn/1", 0.9], "b": {"model": "churn/2", "weight": 0.1, "signature": ["x", "y"]}}})",
        R"({"routing": "plugins/routing/sticky.lua",
            "variants": [["a", "churn/1", 0.9], ["b", {"model": "churn/2", "weight": 0.1, "signature": ["x", "y"]}]]})",
        R"({"routing": "plugins/routing/sticky.lua",
            "variants": [{"name": "a", "model": "churn/1", "weight": 0.9},
                         {"name": "b", "model": "churn/2", "weight": 0.1, "signature": ["x", "y"]}]})",
    };
    for (const char* shape : shapes) EXPECT_EQ(parse(shape), expected) << shape;
    auto plain = parse(R"({"variants": {"only": "churn/1"}})");  // a bare ref weighs 1
    EXPECT_EQ(plain.variants[0], (EndpointVariant{"only", "churn/1", 1.0, {}}));
}

TEST(EndpointDefinition, NullMeansNotGiven) {
    auto d = parse(R"({"model": "m/1", "routing": null, "on_missing": null, "tenant_field": "", "config": null,
                       "variants": null, "defaults": null})");
    EXPECT_EQ(d.routing, "plugins/routing/weighted.lua");
    EXPECT_EQ(d.tenant_field, "tenant");
    EXPECT_EQ(d.on_missing, OnMissing::Error);
}

TEST(EndpointDefinition, CanonicalJsonIsStableAndRoundTrips) {
    auto a = parse(R"({"variants": {"a": ["m/1", 1], "b": ["m/2", 3]}, "routing": "plugins/routing/sticky.lua",
                       "config": {"salt": "s", "avoid_data_issues": true, "tenants": {"z": "b", "a": "a"}},
                       "defaults": {"y": 2, "x": 1.5}, "on_missing": "default", "inputs": ["x", "y"]})");
    auto b = parse(R"({"inputs": ["x", "y"], "on_missing": "default", "defaults": {"x": 1.5, "y": 2.0},
                       "config": {"tenants": {"a": "a", "z": "b"}, "avoid_data_issues": true, "salt": "s"},
                       "routing": "plugins/routing/sticky.lua", "variants": [["a", "m/1", 1.0], ["b", "m/2", 3.0]]})");
    EXPECT_EQ(a.to_json(), b.to_json());
    EXPECT_EQ(a.to_json(),
              R"({"config":{"avoid_data_issues":true,"salt":"s","tenants":{"a":"a","z":"b"}},"default":"",)"
              R"("defaults":{"x":1.5,"y":2.0},"features":[],"inputs":["x","y"],"key":"","on_missing":"default",)"
              R"("output":"auto","routing":"plugins/routing/sticky.lua","signature":[],"tenant_field":"tenant",)"
              R"("variants":[{"model":"m/1","name":"a","weight":1.0},{"model":"m/2","name":"b","weight":3.0}]})");
    EXPECT_EQ(parse(a.to_json()).to_json(), a.to_json());
    // Variants keep their order: the first is the default variant.
    auto swapped = parse(R"({"routing": "r.lua", "variants": [["b", "m/2", 3], ["a", "m/1", 1]]})");
    EXPECT_EQ(swapped.variants[0].name, "b");
}

TEST(EndpointDefinition, ReadsWhatPythonStoredBeforeTheCoreOwnedDefinitions) {
    // json.dumps(d, sort_keys=True) of the old Python normalizer.
    auto old = parse(R"({"config": {}, "default": "", "defaults": {}, "features": ["activity:spend"], "inputs": [], )"
                     R"("key": "", "on_missing": "error", "output": "auto", "routing": "plugins/routing/weighted.lua", )"
                     R"("signature": [], "tenant_field": "tenant", "variants": [{"model": "churn/1", "name": "main", )"
                     R"("weight": 1.0}]})");
    EXPECT_EQ(old, parse(R"({"model": "churn/1", "features": ["activity:spend"]})"));
}

TEST(EndpointDefinition, RefusesWhatItCannotServeSayingWhatToDo) {
    struct Case {
        const char* json;
        const char* says;
    } cases[] = {
        {R"({"model": "a/1", "variants": {"x": "b/1"}})", "either model= (one model) or variants={...}, not both"},
        {R"({"model": 3})", "model= needs a model ref such as 'churn@champion'"},
        {R"({"model": ""})", "model= needs a model ref"},
        {R"({"features": ["v:c"]})", "an endpoint needs model='churn@champion' or variants={name: (model_ref, weight)}"},
        {R"({"variants": {}})", "an endpoint needs model="},
        {R"({"variants": {"a": {"weight": 1}}})", "variant 'a' needs a model ref"},
        {R"({"variants": {"a": ["m/1", -1]}})", "variant 'a' has weight -1: weights must be >= 0"},
        {R"({"variants": {"a": ["m/1", "heavy"]}})", "variant 'a' has weight \"heavy\""},
        {R"({"variants": {"a": {"model": "m/1", "wieght": 2}}})", "variant 'a' has an unknown field 'wieght'"},
        {R"({"variants": [["a", "m/1", 1], ["a", "m/2", 1]]})", "variant 'a' is listed twice"},
        {R"({"variants": [42]})", "variants= item 42 is not (name, model_ref, weight)"},
        {R"({"variants": "m/1"})", "variants= must be {name: (model_ref, weight)}"},
        {R"({"variants": {"a": "m/1", "b": "m/2"}})",
         "an endpoint with 2 variants needs routing= (a routing plugin, e.g. 'plugins/routing/sticky.lua')"},
        {R"({"model": "m/1", "on_missing": "zero"})", "on_missing='zero' is unknown: use 'error'"},
        {R"({"model": "m/1", "defaults": {"a": "high"}})", "defaults= gives input 'a' the value \"high\""},
        {R"({"model": "m/1", "defaults": [1]})", "defaults= must be {input: number}"},
        {R"({"model": "m/1", "features": ["ok:c", ""]})", "features= takes 'view:column' or 'view' strings, got ''"},
        {R"({"model": "m/1", "features": [3]})", "features= must be a list of strings, got 3 in it"},
        {R"({"model": "m/1", "inputs": "a"})", "inputs= must be a list of strings"},
        {R"({"model": "m/1", "config": [1]})", "config= must be a map of routing options"},
        {R"({"model": "m/1", "output": "logits"})", "output='logits' is unknown"},
        {R"({"model": "m/1", "key": 5})", "key= must be a string, got 5"},
        {R"({"model": "m/1", "feature": ["a:b"]})", "unknown field 'feature'"},
        {R"(["m/1"])", "an endpoint definition must be a map of fields"},
        {R"({"model": "m/1",)", "endpoint definition is not valid JSON"},
    };
    for (const auto& c : cases) {
        auto msg = refusal(c.json);
        EXPECT_TRUE(contains(msg, c.says)) << c.json << "\n  said: " << msg;
    }
}

TEST(EndpointDefinition, UpdatesKeepWhatIsNotGiven) {
    auto saved = parse(R"({"routing": "plugins/routing/sticky.lua", "variants": {"a": ["m/1", 1], "b": ["m/2", 1]},
                           "features": ["v:x"], "on_missing": "flag", "key": "player_id"})");
    auto weights = EndpointDefinition::update(&saved, Value(Value::Map{{"config", Value(Value::Map{{"salt", "s"}})}}));
    EXPECT_EQ(weights.variants, saved.variants);
    EXPECT_EQ(weights.on_missing, OnMissing::Flag);
    EXPECT_EQ(weights.key, "player_id");
    EXPECT_EQ(weights.config.find("salt")->str(), "s");
    // model= replaces the saved variants (and a one-variant endpoint keeps the saved routing).
    auto one = EndpointDefinition::update(&saved, Value(Value::Map{{"model", "m/3"}}));
    EXPECT_EQ(one.variants, (std::vector<EndpointVariant>{{"main", "m/3", 1.0, {}}}));
    EXPECT_EQ(one.routing, "plugins/routing/sticky.lua");
    EXPECT_EQ(one.features, saved.features);
    // variants= replaces them all; null resets a field to its default.
    auto replaced = EndpointDefinition::update(
        &saved, Value(Value::Map{{"variants", Value(Value::Map{{"c", "m/4"}})}, {"on_missing", nullptr}}));
    EXPECT_EQ(replaced.variants.size(), 1u);
    EXPECT_EQ(replaced.variants[0].name, "c");
    EXPECT_EQ(replaced.on_missing, OnMissing::Error);
    // Nothing saved: the update is the whole definition.
    auto first = EndpointDefinition::update(nullptr, Value(Value::Map{{"model", "m/1"}}));
    EXPECT_EQ(first.variants[0].model, "m/1");
    auto msg = error_message(ErrorKind::InvalidArgument, [&] {
        EndpointDefinition::update(&saved, Value(Value::Map{{"model", "m/1"}, {"variants", Value(Value::Map{{"z", "m/2"}})}}));
    });
    EXPECT_TRUE(contains(msg, "not both")) << msg;
}

TEST(EndpointDefinition, WithWeightsNamesUnknownVariants) {
    auto d = parse(R"({"routing": "r.lua", "variants": {"b": ["m/1", 1], "a": ["m/2", 1]}})");
    auto changed = d.with_weights({{"a", 0.0}});
    EXPECT_EQ(changed.variants[1].weight, 0.0);
    EXPECT_EQ(changed.variants[0].weight, 1.0);
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { d.with_weights({{"nope", 1.0}}); });
    EXPECT_EQ(msg, "unknown variant 'nope' (variants: a, b)");
}

// -- saving against a workspace -----------------------------------------------------------------

namespace {

struct EndpointStoreTest : keel::testing::WorkspaceTest {
    std::shared_ptr<features::FeatureStore> fs_ = std::make_shared<features::FeatureStore>(ws);
    registry::Registry reg{*ws};
    lineage::Graph graph{*ws};
    EndpointStore store{*ws};

    EndpointStoreTest() {
        using features::DType;
        fs_->define_entity({"player", {{"player_id", DType::Int64}}, ""});
        for (const char* name : {"activity", "other"}) {
            features::ViewSpec v;
            v.name = name;
            v.entities = {"player"};
            v.features = {{std::string(name) == "activity" ? "spend" : "x", DType::Float64},
                          {"visits", DType::Int64},
                          {"email", DType::String, 0, true}};
            fs_->define_view(v);
        }
    }

    // A model version reading `inputs` by name.
    registry::ModelVersion model(const std::string& name, const std::vector<std::string>& inputs) {
        std::string sig = R"({"inputs": [)";
        for (size_t i = 0; i < inputs.size(); ++i) sig += (i ? ", " : "") + ("{\"name\": \"" + inputs[i] + "\"}");
        sig += "]}";
        return reg.register_version(name, {.digest = ws->artifacts().put_bytes("model " + name), .signature = sig});
    }

    // Live upstream edges of the endpoint as "from -kind->".
    std::vector<std::string> upstream(const std::string& endpoint) {
        std::vector<std::string> out;
        if (!graph.find_node("endpoint:" + endpoint)) return out;
        for (const auto& hop : graph.upstream("endpoint:" + endpoint, 1).edges) out.push_back(hop.from + " -" + hop.kind + "->");
        std::sort(out.begin(), out.end());
        return out;
    }
    int64_t count(const std::string& sql) {
        auto& db = ws->db();
        auto guard = db.lock();
        auto st = db.prepare(sql);
        return st.step() ? st.int64(0) : -1;
    }
};

} // namespace

TEST_F(EndpointStoreTest, SaveExpandsViewsAndWritesTheRevisionWithItsLineage) {
    model("churn", {"spend", "visits"});
    reg.set_alias("churn", "champion", 1);
    auto rev = store.define("churn", Value(Value::Map{{"model", "churn@champion"},
                                                      {"features", Value(Value::Array{Value("activity")})}}));
    EXPECT_EQ(rev.revision, 1);
    EXPECT_EQ(rev.definition.features, (std::vector<std::string>{"activity:spend", "activity:visits"}));  // numeric only
    EXPECT_EQ(upstream("churn"), (std::vector<std::string>{"feature_view:activity -feeds->", "model:churn/1 -serves->"}));
    EXPECT_EQ(store.current("churn").definition, rev.definition);
    // Unchanged: no new revision, and an ended edge comes back.
    graph.remove_edge("feature_view:activity", "feeds", "endpoint:churn");
    EXPECT_EQ(store.save("churn", rev.definition).revision, 1);
    EXPECT_EQ(store.revisions("churn").size(), 1u);
    EXPECT_EQ(upstream("churn").size(), 2u);
}

TEST_F(EndpointStoreTest, AChangedDefinitionEndsTheEdgesOfWhatItNoLongerReads) {
    model("lin", {"spend", "x"});
    model("lin", {"spend"});
    store.define("lin", Value(Value::Map{{"model", "lin/1"},
                                         {"features", Value(Value::Array{Value("activity:spend"), Value("other:x")})}}));
    EXPECT_EQ(upstream("lin"), (std::vector<std::string>{"feature_view:activity -feeds->", "feature_view:other -feeds->",
                                                         "model:lin/1 -serves->"}));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the edges' times differ from the revision's
    auto rev = store.define("lin", Value(Value::Map{{"model", "lin/2"},
                                                    {"features", Value(Value::Array{Value("activity:spend")})}}));
    EXPECT_EQ(rev.revision, 2);
    EXPECT_EQ(upstream("lin"), (std::vector<std::string>{"feature_view:activity -feeds->", "model:lin/2 -serves->"}));
    // The graph still knows what the endpoint read before.
    EXPECT_EQ(graph.upstream("endpoint:lin", 1, rev.created_at - 1).edges.size(), 3u);
}

TEST_F(EndpointStoreTest, AFailedCheckWritesNeitherRevisionNorEdges) {
    model("churn", {"spend", "loyalty"});
    auto msg = error_message(ErrorKind::InvalidArgument, [&] {
        store.define("churn", Value(Value::Map{{"model", "churn/1"}, {"features", Value(Value::Array{Value("activity")})}}));
    });
    EXPECT_TRUE(contains(msg, "endpoint 'churn', variant 'main': model churn/1 reads inputs the endpoint does not provide: "
                              "missing [loyalty]; provided but not read by this model: extra [activity:visits]"))
        << msg;
    EXPECT_EQ(store.current_revision("churn"), 0);
    EXPECT_FALSE(graph.find_node("endpoint:churn"));
    int64_t edges = count("SELECT COUNT(*) FROM lineage_edges");
    // Every other check refuses before writing, too.
    error_message(ErrorKind::NotFound, [&] { store.define("churn", Value(Value::Map{{"model", "nope/1"}})); });
    error_message(ErrorKind::NotFound, [&] {
        store.define("churn", Value(Value::Map{{"model", "churn/1"}, {"features", Value(Value::Array{Value("ghost")})}}));
    });
    msg = error_message(ErrorKind::InvalidArgument, [&] {
        store.define("churn", Value(Value::Map{{"model", "churn/1"},
                                               {"features", Value(Value::Array{Value("activity:loyalty")})}}));
    });
    EXPECT_TRUE(contains(msg, "view 'activity' has no feature 'loyalty'")) << msg;
    msg = error_message(ErrorKind::InvalidArgument, [&] {
        store.define("churn", Value(Value::Map{{"model", "churn/1"}, {"inputs", Value(Value::Array{Value("spend"), Value("loyalty")})},
                                               {"default", "ghost"}}));
    });
    EXPECT_TRUE(contains(msg, "default variant 'ghost'")) << msg;
    msg = error_message(ErrorKind::InvalidArgument, [&] {
        store.define("bad/name", Value(Value::Map{{"model", "churn/1"}}));
    });
    EXPECT_TRUE(contains(msg, "malformed")) << msg;
    try {  // a plugin that does not load
        store.define("churn", Value(Value::Map{{"model", "churn/1"}, {"routing", "plugins/routing/nope.lua"},
                                               {"inputs", Value(Value::Array{Value("spend"), Value("loyalty")})}}));
        ADD_FAILURE() << "a missing plugin was saved";
    } catch (const Error& e) {
        EXPECT_TRUE(contains(e.what(), "nope.lua")) << e.what();
    }
    EXPECT_EQ(store.current_revision("churn"), 0);
    EXPECT_EQ(count("SELECT COUNT(*) FROM lineage_edges"), edges);
    EXPECT_EQ(count("SELECT COUNT(*) FROM serving_endpoint_revisions"), 0);
}

TEST_F(EndpointStoreTest, AnOldFormatRevisionSavedAgainUnchangedIsNoNewRevision) {
    model("churn", {"spend"});
    {
        auto& db = ws->db();
        auto guard = db.lock();
        db.prepare("INSERT INTO serving_endpoint_revisions (name, revision, definition, created_by, created_at) "
                   "VALUES ('churn', 1, ?, 'someone', 1)")
            .bind_all(std::string(R"({"config": {}, "default": "", "defaults": {}, "features": ["activity:spend"], )"
                                  R"("inputs": [], "key": "", "on_missing": "error", "output": "auto", )"
                                  R"("routing": "plugins/routing/weighted.lua", "signature": [], "tenant_field": )"
                                  R"("tenant", "variants": [{"model": "churn/1", "name": "main", "weight": 1.0}]})"))
            .run();
    }
    auto rev = store.define("churn", Value(Value::Map{{"model", "churn/1"}}));  // same model, other fields kept
    EXPECT_EQ(rev.revision, 1);
    EXPECT_EQ(rev.created_by, "someone");
}

TEST_F(EndpointStoreTest, AnUnreadableStoredRevisionIsCorrupt) {
    auto& db = ws->db();
    {
        auto guard = db.lock();
        db.exec("INSERT INTO serving_endpoint_revisions (name, revision, definition, created_by, created_at) "
                "VALUES ('churn', 1, '{\"model\": 7}', 'x', 1)");
    }
    auto msg = error_message(ErrorKind::Corrupt, [&] { store.current("churn"); });
    EXPECT_TRUE(contains(msg, "endpoint 'churn' revision 1 is unreadable")) << msg;
}

TEST_F(EndpointStoreTest, AnAliasMoveThatWouldBreakAnEndpointIsAConflict) {
    model("churn", {"spend", "visits"});
    model("churn", {"spend", "loyalty"});
    model("churn", {"visits", "spend"});
    reg.set_alias("churn", "champion", 1);
    store.define("churn", Value(Value::Map{{"model", "churn@champion"}, {"features", Value(Value::Array{Value("activity")})}}));
    auto msg = error_message(ErrorKind::Conflict, [&] { check_alias_move(*ws, "churn", "champion", 2); });
    EXPECT_TRUE(contains(msg, "moving churn@champion to version 2 would break endpoint 'churn': endpoint 'churn', "
                              "variant 'main': model churn/2 reads inputs the endpoint does not provide: missing [loyalty]"))
        << msg;
    EXPECT_TRUE(contains(msg, "Change the endpoint first (features=/inputs=), or serve the new version under another alias"))
        << msg;
    check_alias_move(*ws, "churn", "champion", 3);    // fed by name, in any order
    check_alias_move(*ws, "churn", "challenger", 2);  // no endpoint serves that alias
    error_message(ErrorKind::NotFound, [&] { check_alias_move(*ws, "churn", "champion", 9); });
    // An endpoint already unable to feed what the alias points at today is not the move's fault.
    reg.set_alias("churn", "champion", 2);
    check_alias_move(*ws, "churn", "champion", 2);
}

TEST_F(EndpointStoreTest, MoveAliasChecksAndMovesInOneTransaction) {
    model("churn", {"spend", "visits"});
    model("churn", {"spend", "loyalty"});
    model("churn", {"visits", "spend"});
    reg.set_alias("churn", "champion", 1);
    reg.set_alias("churn", "backup", 3);
    store.define("churn", Value(Value::Map{{"model", "churn@champion"}, {"features", Value(Value::Array{Value("activity")})}}));
    const auto events = reg.events("churn").size();
    // Refused: nothing written, neither the move nor its audit event.
    error_message(ErrorKind::Conflict, [&] { move_alias(*ws, reg, "churn", "champion", 2); });
    EXPECT_EQ(reg.resolve("churn@champion").version, 1);
    EXPECT_EQ(reg.events("churn").size(), events);
    error_message(ErrorKind::NotFound, [&] { move_alias(*ws, reg, "churn", "champion", 9); });
    // Allowed: the returned version lists its aliases after the move, in order.
    auto moved = move_alias(*ws, reg, "churn", "champion", 3);
    EXPECT_EQ(moved.version, 3);
    EXPECT_EQ(moved.aliases, (std::vector<std::string>{"backup", "champion"}));
    EXPECT_EQ(moved.aliases, reg.version("churn", 3).aliases);
    EXPECT_EQ(reg.events("churn").size(), events + 1);
    EXPECT_EQ(move_alias(*ws, reg, "churn", "champion", 3).aliases, moved.aliases);  // no move, no event
    EXPECT_EQ(reg.events("churn").size(), events + 1);
}

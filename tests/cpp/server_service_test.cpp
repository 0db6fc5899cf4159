// tests/cpp/server_service_test.cpp: keel-server's routes on a real workspace, called in process
// (Service::handle), and its configuration: what a caller gets back, and what it is refused.
#include "keel/common/clock.hpp"
#include "keel/features/store.hpp"
#include "keel/inference/format.hpp"
#include "keel/inference/predictor.hpp"
#include "keel/registry/registry.hpp"
#include "keel/server/config.hpp"
#include "keel/server/service.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/storage/workspace.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

using namespace keel;
using namespace keel::server;
using plugins::Value;
using Json = nlohmann::json;

namespace {

const std::string kSecret(32, 's');

struct ServiceTest : keel::testing::WorkspaceTest {
    std::shared_ptr<features::FeatureStore> store = std::make_shared<features::FeatureStore>(ws);
    registry::Registry reg{*ws};

    // Players 0..9: spend = 10 * id (a PII salary = 1000 * id), materialized online; churn/1 =
    // 1 + spend, churn/2 = -spend; endpoint "churn" on churn@champion, "studio" for studio-a only.
    ServiceTest() {
        using features::DType;
        store->define_entity({"player", {{"player_id", DType::Int64}}, ""});
        features::ViewSpec v;
        v.name = "activity";
        v.entities = {"player"};
        v.features = {{"spend", DType::Float64}, {"salary", DType::Float64}};
        v.features[1].pii = true;
        store->define_view(v);
        std::vector<int64_t> ids, ts;
        std::vector<double> spend, salary;
        for (int64_t i = 0; i < 10; ++i) {
            ids.push_back(i);
            ts.push_back(now_ms() - 1000);
            spend.push_back(10.0 * double(i));
            salary.push_back(1000.0 * double(i));
        }
        features::BatchView b;
        b.rows = ids.size();
        b.columns.push_back({"player_id", DType::Int64, 0, ids.data()});
        b.columns.push_back({"event_timestamp", DType::Timestamp, 0, ts.data()});
        b.columns.push_back({"spend", DType::Float64, 0, spend.data()});
        b.columns.push_back({"salary", DType::Float64, 0, salary.data()});
        store->ingest("activity", b);
        store->materialize("activity");
        store->grant("payroll", "activity", {"salary"});
        linear("churn", 1.0, 1.0);
        linear("churn", -1.0, 0.0);
        reg.set_alias("churn", "champion", 1);
        serving::EndpointStore endpoints(*ws);
        endpoints.define("churn", Value(Value::Map{{"model", "churn@champion"},
                                                   {"features", Value(Value::Array{Value("activity:spend")})}}));
        endpoints.define("studio", Value(Value::Map{{"model", "churn/1"},
                                                    {"features", Value(Value::Array{Value("activity:spend")})},
                                                    {"tenants", Value(Value::Array{Value("studio-a")})}}));
    }

    void linear(const std::string& model, double coef, double intercept) {
        inference::Record r;
        r["features.dtypes"] = inference::RecordValue::of_strings({"float64"});
        r["features.names"] = inference::RecordValue::of_strings({"spend"});
        r["model.kind"] = inference::RecordValue::of_string("linear");
        r["linear.coef"] = inference::RecordValue::of_reals({coef});
        r["linear.intercept"] = inference::RecordValue::of_reals({intercept});
        auto digest = ws->artifacts().put_bytes(inference::Predictor(std::move(r)).to_bytes());
        reg.register_version(model, {.digest = digest, .flavour = "keel-native",
                                     .signature = R"({"inputs": [{"name": "spend"}]})"});
    }

    ServiceOptions jwt_options() {
        ServiceOptions o;
        o.auth.hs256_secrets = {kSecret};
        return o;
    }

    static HttpRequest post(std::string path, std::string body) {
        HttpRequest r;
        r.method = "POST";
        r.target = std::move(path);
        r.body = std::move(body);
        return r;
    }
    static HttpRequest get(std::string path) {
        HttpRequest r;
        r.method = "GET";
        r.target = std::move(path);
        return r;
    }
};

// A caller verified by a JWT naming this tenant and these roles.
Principal tenant(std::string name, std::vector<std::string> roles = {}) {
    return {"someone", std::move(name), std::move(roles), true};
}

Json json_of(const HttpResponse& r) { return Json::parse(r.body); }

} // namespace

TEST_F(ServiceTest, APredictionNamesItsVariantModelVersionAndRequestId) {
    Service service(ws, {});
    auto r = service.handle(post("/v1/endpoints/churn/predict", R"({"player_id": 4})"), Principal{});
    ASSERT_EQ(r.status, 200) << r.body;
    auto j = json_of(r);
    EXPECT_DOUBLE_EQ(j["prediction"].get<double>(), 41.0);
    EXPECT_EQ(j["variant"], "main");
    EXPECT_EQ(j["model"], "churn/1");
    EXPECT_EQ(j["version"], 1);
    auto id = std::find_if(r.headers.begin(), r.headers.end(), [](auto& h) { return h.first == "X-Request-Id"; });
    ASSERT_NE(id, r.headers.end());
    EXPECT_EQ(j["request_id"], id->second);

    auto batch = json_of(service.handle(post("/v1/endpoints/churn/predict", R"([{"player_id": 1}, {"player_id": 2}])"),
                                        Principal{}));
    ASSERT_EQ(batch.size(), 2u);
    EXPECT_DOUBLE_EQ(batch[1]["prediction"].get<double>(), 21.0);
}

TEST_F(ServiceTest, AMovedAliasIsServedFromTheNextRequest) {
    Service service(ws, {});
    EXPECT_EQ(json_of(service.handle(post("/v1/endpoints/churn/predict", R"({"player_id": 4})"), {}))["model"], "churn/1");
    reg.set_alias("churn", "champion", 2);
    auto j = json_of(service.handle(post("/v1/endpoints/churn/predict", R"({"player_id": 4})"), {}));
    EXPECT_EQ(j["model"], "churn/2");
    EXPECT_DOUBLE_EQ(j["prediction"].get<double>(), -40.0);
}

TEST_F(ServiceTest, ErrorsAreJsonWithTheirKindsStatus) {
    Service service(ws, {});
    auto missing_key = service.handle(post("/v1/endpoints/churn/predict", "{}"), {});
    EXPECT_EQ(missing_key.status, 400);
    EXPECT_EQ(json_of(missing_key)["error"], "InvalidArgument");
    auto unknown = service.handle(post("/v1/endpoints/nope/predict", R"({"player_id": 1})"), {});
    EXPECT_EQ(unknown.status, 404);
    EXPECT_NE(json_of(unknown)["message"].get<std::string>().find("nope"), std::string::npos);
    EXPECT_EQ(service.handle(get("/v1/endpoints/churn/predict"), {}).status, 405);
    EXPECT_EQ(service.handle(get("/v2/anything"), {}).status, 404);
    EXPECT_EQ(service.handle(post("/v1/endpoints/churn/predict", "[]"), {}).status, 400);
}

TEST_F(ServiceTest, TenantsReachOnlyTheirEndpointsAndTheTokenNamesTheTenant) {
    Service service(ws, jwt_options());
    EXPECT_EQ(service.handle(post("/v1/endpoints/studio/predict", R"({"player_id": 1})"), tenant("studio-a")).status, 200);
    auto refused = service.handle(post("/v1/endpoints/studio/predict", R"({"player_id": 1})"), tenant("studio-b"));
    EXPECT_EQ(refused.status, 403);
    const auto message = json_of(refused)["message"].get<std::string>();
    EXPECT_NE(message.find("studio-b"), std::string::npos);
    EXPECT_EQ(message.find("studio-a"), std::string::npos) << "the allowed tenants must not leak";
    // A tenant field in the body does not make studio B studio A.
    EXPECT_EQ(service.handle(post("/v1/endpoints/studio/predict", R"({"player_id": 1, "tenant": "studio-a"})"),
                             tenant("studio-b")).status, 403);
    auto listed = json_of(service.handle(get("/v1/endpoints"), tenant("studio-b")));
    std::set<std::string> names;
    for (const auto& e : listed) names.insert(e["name"]);
    EXPECT_EQ(names, (std::set<std::string>{"churn"}));
    EXPECT_EQ(service.handle(get("/v1/endpoints/studio"), tenant("studio-b")).status, 403);
    EXPECT_EQ(service.handle(get("/v1/endpoints/studio"), tenant("studio-a")).status, 200);
}

TEST_F(ServiceTest, TheLoggedTenantIsTheTokensNotTheBodys) {
    {
        Service service(ws, jwt_options());
        ASSERT_EQ(service.handle(post("/v1/endpoints/churn/predict", R"({"player_id": 3, "tenant": "forged"})"),
                                 tenant("studio-a")).status, 200);
    }  // closing the service flushes the endpoint's assignment log
    auto rows = serving::EndpointStore(*ws).assignments("churn");
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].tenant, "studio-a");
}

TEST_F(ServiceTest, ARemovedEndpointIs404AndNoLongerListed) {
    Service service(ws, {});
    ASSERT_EQ(service.handle(post("/v1/endpoints/churn/predict", R"({"player_id": 4})"), {}).status, 200);
    EXPECT_EQ(json_of(service.handle(get("/v1/endpoints"), {}))[0]["name"], "churn");
    serving::EndpointStore(*ws).remove("churn");  // the server hosts it already: its next request sees it
    auto removed = service.handle(post("/v1/endpoints/churn/predict", R"({"player_id": 4})"), {});
    EXPECT_EQ(removed.status, 404);
    EXPECT_NE(json_of(removed)["message"].get<std::string>().find("endpoint 'churn' was removed by"), std::string::npos)
        << removed.body;
    EXPECT_EQ(service.handle(get("/v1/endpoints/churn"), {}).status, 404);
    for (const auto& e : json_of(service.handle(get("/v1/endpoints"), {}))) EXPECT_NE(e["name"], "churn");
    // Saved again: served as its next revision.
    serving::EndpointStore(*ws).define("churn", Value(Value::Map{{"model", "churn@champion"},
                                                                 {"features", Value(Value::Array{Value("activity:spend")})}}));
    auto back = json_of(service.handle(post("/v1/endpoints/churn/predict", R"({"player_id": 4})"), {}));
    EXPECT_DOUBLE_EQ(back["prediction"].get<double>(), 41.0);
    EXPECT_EQ(json_of(service.handle(get("/v1/endpoints/churn"), {}))["revision"], 2);
}

TEST_F(ServiceTest, DescribeGivesTheDefinitionRevisionVariantsAndCounters) {
    Service service(ws, {});
    service.handle(post("/v1/endpoints/churn/predict", R"({"player_id": 4})"), {});
    auto j = json_of(service.handle(get("/v1/endpoints/churn"), {}));
    EXPECT_EQ(j["revision"], 1);
    EXPECT_EQ(j["definition"]["variants"][0]["model"], "churn@champion");
    EXPECT_EQ(j["variants"][0]["model"], "churn/1");
    EXPECT_EQ(j["counters"]["decisions"], 1);
    EXPECT_EQ(j["counters"]["log"]["appended"], 1);  // every answer goes to the assignment log
    EXPECT_EQ(j["counters"]["log"]["dropped"], 0);
}

TEST_F(ServiceTest, OnlineFeaturesMaskPiiUnlessARoleIsGranted) {
    Service service(ws, jwt_options());
    const std::string body = R"({"features": ["activity:spend", "activity:salary"], "entities": {"player_id": [3, 99]}})";
    auto plain = json_of(service.handle(post("/v1/features/online", body), tenant("a", {"analyst"})));
    EXPECT_EQ(plain["features"]["activity:spend"]["values"][0], 30.0);
    EXPECT_EQ(plain["features"]["activity:spend"]["status"], Json::array({"ok", "missing"}));
    EXPECT_TRUE(plain["features"]["activity:salary"]["values"][0].is_null());
    EXPECT_EQ(plain["features"]["activity:salary"]["status"][0], "masked");
    EXPECT_TRUE(plain["features"]["activity:spend"]["event_timestamp"][0].is_string());
    EXPECT_GE(plain["features"]["activity:spend"]["age_seconds"][0].get<double>(), 0.0);
    auto granted = json_of(service.handle(post("/v1/features/online", body), tenant("a", {"analyst", "payroll"})));
    EXPECT_EQ(granted["features"]["activity:salary"]["values"][0], 3000.0);
    EXPECT_EQ(granted["features"]["activity:salary"]["status"][0], "ok");
    auto bad = service.handle(post("/v1/features/online", R"({"features": ["activity:nope"], "entities": {"player_id": [1]}})"),
                              tenant("a"));
    EXPECT_EQ(bad.status, 404);
}

TEST_F(ServiceTest, OnlineFeaturesOfStringKeysAndTextColumnsAndARevokeSeenAtOnce) {
    using features::DType;
    store->define_entity({"account", {{"account_id", DType::String}}, ""});
    features::ViewSpec v;
    v.name = "profile";
    v.entities = {"account"};
    v.features = {{"country", DType::String}, {"logins", DType::Int64}};
    store->define_view(v);
    std::string bytes = "ab";
    std::vector<int64_t> offsets{0, 1, 2}, ts(2, now_ms() - 1000), logins{3, 4};
    std::string countries = "frde";
    std::vector<int64_t> country_offsets{0, 2, 4};
    features::BatchView b;
    b.rows = 2;
    b.columns.push_back({"account_id", DType::String, 0, bytes.data(), offsets.data()});
    b.columns.push_back({"event_timestamp", DType::Timestamp, 0, ts.data()});
    b.columns.push_back({"country", DType::String, 0, countries.data(), country_offsets.data()});
    b.columns.push_back({"logins", DType::Int64, 0, logins.data()});
    store->ingest("profile", b);
    store->materialize("profile");
    Service service(ws, jwt_options());
    auto got = json_of(service.handle(
        post("/v1/features/online", R"({"features": ["profile:country", "profile:logins"], "entities": {"account_id": ["b", "z"]}})"),
        tenant("a")));
    EXPECT_EQ(got["features"]["profile:country"]["values"], Json::array({"de", nullptr}));
    EXPECT_EQ(got["features"]["profile:logins"]["values"][0], 4);
    EXPECT_EQ(got["features"]["profile:logins"]["status"], Json::array({"ok", "missing"}));

    // PII shown to a granted role, then masked from the next request once the grant is revoked.
    const std::string body = R"({"features": ["activity:salary"], "entities": {"player_id": [2]}})";
    EXPECT_EQ(json_of(service.handle(post("/v1/features/online", body), tenant("a", {"payroll"})))["features"]
                  ["activity:salary"]["values"][0], 2000.0);
    store->revoke("payroll", "activity", {"salary"});
    EXPECT_EQ(json_of(service.handle(post("/v1/features/online", body), tenant("a", {"payroll"})))["features"]
                  ["activity:salary"]["status"][0], "masked");
}

TEST_F(ServiceTest, NamedEndpointsMustExistAtStart) {
    ServiceOptions o;
    o.endpoints = {"churn", "missing"};
    const auto message = keel::testing::error_message(ErrorKind::NotFound, [&] { Service service(ws, o); });
    EXPECT_NE(message.find("missing"), std::string::npos);
}

TEST_F(ServiceTest, HealthReadinessAndMetricsNeedNoToken) {
    ServiceOptions o = jwt_options();
    Service service(ws, o);
    EXPECT_EQ(service.handle(get("/healthz")).status, 200);
    EXPECT_EQ(service.handle(get("/readyz")).status, 200);
    EXPECT_EQ(service.handle(get("/metrics")).status, 200);
    auto refused = service.handle(post("/v1/endpoints/churn/predict", R"({"player_id": 1})"));
    EXPECT_EQ(refused.status, 401);
    EXPECT_EQ(refused.headers.front().first, "WWW-Authenticate");
}

// --- configuration ---------------------------------------------------------------------------------

struct ConfigTest : ::testing::Test {
    keel::testing::TempDir tmp;
    std::string write(const std::string& name, const std::string& text) {
        auto path = (tmp.path / name).string();
        std::ofstream(path, std::ios::binary) << text;
        return path;
    }
};

TEST_F(ConfigTest, ReadsEverySectionAndResolvesPathsBesideTheFile) {
    write("secret", std::string(32, 'k') + "\n");
    write("token", "  a-token-of-twenty-chars\n");
    auto path = write("keel-serve.toml", R"(
workspace = "ws"
endpoints = ["churn"]
[http]
host = "0.0.0.0"
port = 9000
threads = 3
max_body_bytes = 4096
request_deadline_ms = 500
[tls]
certificate = "cert.pem"
private_key = "key.pem"
[auth]
hs256_secret_files = ["secret"]
static_token_file = "token"
issuer = "studio"
leeway_seconds = 5
[requests]
max_rows = 100
)");
    ServerConfig c;
    load_config_file(c, path);
    EXPECT_EQ(c.workspace, (tmp.path / "ws").string());
    EXPECT_EQ(c.service.endpoints, std::vector<std::string>{"churn"});
    EXPECT_EQ(c.http.port, 9000);
    EXPECT_EQ(c.http.threads, 3);
    EXPECT_EQ(c.http.limits.max_body_bytes, 4096u);
    EXPECT_EQ(c.http.limits.request_deadline.count(), 500);
    EXPECT_EQ(c.http.tls->certificate, (tmp.path / "cert.pem").string());
    ASSERT_EQ(c.service.auth.hs256_secrets.size(), 1u);
    EXPECT_EQ(c.service.auth.hs256_secrets[0].size(), 33u) << "a secret file's bytes are the secret, exactly";
    EXPECT_EQ(c.service.auth.static_token, "a-token-of-twenty-chars");
    EXPECT_EQ(c.service.auth.issuer, "studio");
    EXPECT_EQ(c.service.auth.leeway.count(), 5);
    EXPECT_EQ(c.service.requests.max_rows, 100u);
    check_config(c);  // beyond loopback, but with auth

    // Flags win over the file.
    ASSERT_TRUE(apply_flags(c, {"--config", path, "--port", "0", "--endpoint", "a", "--endpoint", "b", "--json"}));
    EXPECT_EQ(c.http.port, 0);
    EXPECT_EQ(c.service.endpoints, (std::vector<std::string>{"a", "b"}));
    EXPECT_TRUE(c.json);
    EXPECT_FALSE(apply_flags(c, {"--help"}));
}

TEST_F(ConfigTest, MistakesAreRefusedNamingTheFileAndKey) {
    auto expect_refused = [&](const std::string& text, const std::string& needle) {
        ServerConfig c;
        auto path = write("bad.toml", text);
        const auto message = keel::testing::error_message(ErrorKind::InvalidArgument,
                                                          [&] { load_config_file(c, path); });
        EXPECT_NE(message.find(needle), std::string::npos) << message;
        EXPECT_NE(message.find("bad.toml"), std::string::npos) << message;
    };
    expect_refused("[http]\nprot = 8080\n", "http.prot");
    expect_refused("[http]\nport = 70000\n", "http.port");
    expect_refused("[http]\nport = \"8080\"\n", "http.port");
    expect_refused("[auth]\nhs256_secret_files = \"one\"\n", "auth.hs256_secret_files");
    expect_refused("[auth]\nhs256_secret_files = [\"does-not-exist\"]\n", "does-not-exist");
    expect_refused("[http\n", "bad.toml");
}

TEST_F(ConfigTest, ServingBeyondLoopbackNeedsAuthAndTokensAreLong) {
    ServerConfig c;
    c.http.host = "0.0.0.0";
    EXPECT_NE(keel::testing::error_message(ErrorKind::InvalidArgument, [&] { check_config(c); }).find("loopback"),
              std::string::npos);
    c.http.host = "127.0.0.1";
    check_config(c);
    c.service.auth.static_token = "short";
    EXPECT_NE(keel::testing::error_message(ErrorKind::InvalidArgument, [&] { check_config(c); }).find("16"),
              std::string::npos);
    EXPECT_THROW(apply_flags(c, {"--port", "http"}), keel::Error);
    EXPECT_THROW(apply_flags(c, {"--bogus", "1"}), keel::Error);
    EXPECT_THROW(apply_flags(c, {"--port"}), keel::Error);
}

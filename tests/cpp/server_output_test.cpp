// tests/cpp/server_output_test.cpp: what the native server writes besides JSON answers: the
// Prometheus text of /metrics, the compact binary answer (bytes as docs/compact.md lays them out),
// and the OpenAPI document of /openapi.json.
#include "keel/common/error.hpp"
#include "keel/server/compact.hpp"
#include "keel/server/metrics.hpp"
#include "../../core/server/openapi.hpp"  // private to the server module

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using keel::server::Metrics;

namespace {

//! The lines of `text` that start with `prefix`, in order.
std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(prefix, 0) == 0) out.push_back(line);
    return out;
}

bool has_line(const std::string& text, const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

} // namespace

// --- /metrics ------------------------------------------------------------------------------------

TEST(ServerMetrics, CountersHaveHelpTypeAndOneLinePerLabelSet) {
    Metrics m;
    m.request("churn", "champion", 200, 0.001);
    m.request("churn", "champion", 200, 0.001);
    m.request("churn", "challenger", 200, 0.001);
    m.fallback("churn", "model_error", 3);
    const std::string text = m.render();
    EXPECT_TRUE(has_line(text, "# HELP keel_requests_total Answered HTTP requests.")) << text;
    EXPECT_TRUE(has_line(text, "# TYPE keel_requests_total counter")) << text;
    EXPECT_TRUE(has_line(text, R"(keel_requests_total{endpoint="churn",variant="champion",status="200"} 2)")) << text;
    EXPECT_TRUE(has_line(text, R"(keel_requests_total{endpoint="churn",variant="challenger",status="200"} 1)"))
        << text;
    EXPECT_TRUE(has_line(text, R"(keel_routing_fallbacks_total{endpoint="churn",reason="model_error"} 3)")) << text;
    EXPECT_TRUE(has_line(text, "# TYPE keel_request_duration_seconds histogram")) << text;
    EXPECT_TRUE(has_line(text, "keel_http_connections 0")) << text;
}

TEST(ServerMetrics, ErrorsCountOnlyStatusesOf400AndAbove) {
    Metrics m;
    m.request("churn", "", 200, 0.001);
    m.request("churn", "", 404, 0.001);
    m.request("churn", "", 404, 0.001);
    m.request("/healthz", "", 503, 0.001);
    const std::string text = m.render();
    const auto errors = lines_starting(text, "keel_request_errors_total{");
    ASSERT_EQ(errors.size(), 2u) << text;
    EXPECT_EQ(errors[0], R"(keel_request_errors_total{endpoint="/healthz",status="503"} 1)");
    EXPECT_EQ(errors[1], R"(keel_request_errors_total{endpoint="churn",status="404"} 2)");
}

TEST(ServerMetrics, SeriesAreSortedByLabelValuesWhateverTheOrderSeen) {
    Metrics m;
    for (const char* endpoint : {"zeta", "alpha", "mid"}) m.ready(endpoint, true);
    m.ready("mid", false);
    const auto ready = lines_starting(m.render(), "keel_endpoint_ready{");
    ASSERT_EQ(ready.size(), 3u);
    EXPECT_EQ(ready[0], R"(keel_endpoint_ready{endpoint="alpha"} 1)");
    EXPECT_EQ(ready[1], R"(keel_endpoint_ready{endpoint="mid"} 0)");
    EXPECT_EQ(ready[2], R"(keel_endpoint_ready{endpoint="zeta"} 1)");
}

TEST(ServerMetrics, HistogramBucketsAreCumulativeWithInfSumAndCount) {
    Metrics m;
    m.request("churn", "a", 200, 0.00004);  // <= 50us
    m.request("churn", "a", 200, 0.0001);   // exactly on the 100us bound: counted in it
    m.request("churn", "a", 200, 0.003);    // <= 5ms
    m.request("churn", "a", 200, 30.0);     // above 10s: only in +Inf
    const std::string text = m.render();
    const auto buckets = lines_starting(text, "keel_request_duration_seconds_bucket{");
    ASSERT_EQ(buckets.size(), 17u) << text;
    EXPECT_EQ(buckets.front(), R"(keel_request_duration_seconds_bucket{endpoint="churn",le="0.00005"} 1)");
    EXPECT_EQ(buckets[1], R"(keel_request_duration_seconds_bucket{endpoint="churn",le="0.0001"} 2)");
    EXPECT_EQ(buckets[5], R"(keel_request_duration_seconds_bucket{endpoint="churn",le="0.0025"} 2)");
    EXPECT_EQ(buckets[6], R"(keel_request_duration_seconds_bucket{endpoint="churn",le="0.005"} 3)");
    EXPECT_EQ(buckets[15], R"(keel_request_duration_seconds_bucket{endpoint="churn",le="10"} 3)");
    EXPECT_EQ(buckets[16], R"(keel_request_duration_seconds_bucket{endpoint="churn",le="+Inf"} 4)");
    EXPECT_TRUE(has_line(text, R"(keel_request_duration_seconds_count{endpoint="churn"} 4)")) << text;
    EXPECT_TRUE(has_line(text, R"(keel_request_duration_seconds_sum{endpoint="churn"} 30.00314)")) << text;
    // Each bucket holds at least the one before it.
    long previous = 0;
    for (const auto& line : buckets) {
        const long value = std::stol(line.substr(line.rfind(' ') + 1));
        EXPECT_GE(value, previous) << line;
        previous = value;
    }
}

TEST(ServerMetrics, LabelValuesEscapeBackslashQuoteAndNewline) {
    Metrics m;
    m.ready("a\\b\"c\nd", true);
    EXPECT_TRUE(has_line(m.render(), R"(keel_endpoint_ready{endpoint="a\\b\"c\nd"} 1)")) << m.render();
}

TEST(ServerMetrics, GaugesKeepTheLastValueSet) {
    Metrics m;
    m.model_version("churn", "champion", "churn_lgbm", 3);
    m.model_version("churn", "champion", "churn_lgbm", 4);
    m.staleness("player_loyalty", 12.5);
    m.connections(7);
    m.connections(5);
    const std::string text = m.render();
    EXPECT_TRUE(has_line(text, R"(keel_model_version{endpoint="churn",variant="champion",model="churn_lgbm"} 4)"))
        << text;
    EXPECT_TRUE(has_line(text, R"(keel_online_staleness_seconds{view="player_loyalty"} 12.5)")) << text;
    EXPECT_TRUE(has_line(text, "keel_http_connections 5")) << text;
}

TEST(ServerMetrics, ConcurrentUpdatesFromEightThreadsAddUpExactly) {
    Metrics m;
    constexpr int kThreads = 8, kEach = 20'000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&m, t] {
            // Half the threads share one series, the others each add their own while the first are counting.
            const std::string endpoint = t % 2 ? "shared" : "own" + std::to_string(t);
            for (int i = 0; i < kEach; ++i) {
                m.request(endpoint, "v", i % 10 ? 200 : 500, 0.001);
                m.fallback("shared", "timeout");
            }
        });
    for (auto& thread : threads) thread.join();
    const std::string text = m.render();
    EXPECT_TRUE(has_line(text, R"(keel_requests_total{endpoint="shared",variant="v",status="200"} 72000)")) << text;
    EXPECT_TRUE(has_line(text, R"(keel_request_errors_total{endpoint="shared",status="500"} 8000)")) << text;
    EXPECT_TRUE(has_line(text, R"(keel_request_duration_seconds_count{endpoint="shared"} 80000)")) << text;
    EXPECT_TRUE(has_line(text, R"(keel_request_duration_seconds_sum{endpoint="shared"} 80)")) << text;
    EXPECT_TRUE(has_line(text, R"(keel_routing_fallbacks_total{endpoint="shared",reason="timeout"} 160000)")) << text;
    EXPECT_TRUE(has_line(text, R"(keel_requests_total{endpoint="own6",variant="v",status="500"} 2000)")) << text;
}

TEST(ServerMetrics, LabelSetsPastTheCapFoldIntoOtherKeepingTheStatus) {
    Metrics m;
    for (int i = 0; i < 10'000; ++i) m.ready("e" + std::to_string(i), true);
    m.ready("one-too-many", true);
    m.ready("and-another", false);
    m.ready("e42", false);  // a label set seen before the cap is still its own
    for (int i = 0; i < 10'005; ++i) m.request("sprayed" + std::to_string(i), "v", i < 10'003 ? 404 : 200, 0.001);
    const std::string text = m.render();
    EXPECT_EQ(lines_starting(text, "keel_endpoint_ready{").size(), 10'001u);
    EXPECT_TRUE(has_line(text, R"x(keel_endpoint_ready{endpoint="(other)"} 0)x"));
    EXPECT_TRUE(has_line(text, R"(keel_endpoint_ready{endpoint="e42"} 0)"));
    EXPECT_FALSE(text.find("one-too-many") != std::string::npos);
    // keel_requests_total: 10,000 label sets, then "(other)" per status (404 three times over the cap, 200 twice).
    EXPECT_TRUE(has_line(text, R"x(keel_requests_total{endpoint="(other)",variant="(other)",status="404"} 3)x"));
    EXPECT_TRUE(has_line(text, R"x(keel_requests_total{endpoint="(other)",variant="(other)",status="200"} 2)x"));
    EXPECT_TRUE(has_line(text, R"x(keel_request_duration_seconds_count{endpoint="(other)"} 5)x"));
    EXPECT_EQ(lines_starting(text, "keel_requests_total{").size(), 10'002u);
}

// --- the compact answer --------------------------------------------------------------------------

namespace {

using keel::server::CompactAnswer;

//! "01 01 03": bytes written as docs/compact.md shows them.
std::string hex_bytes(std::string_view hex) {
    std::string out;
    for (size_t i = 0; i < hex.size();) {
        if (hex[i] == ' ') {
            ++i;
            continue;
        }
        out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
        i += 2;
    }
    return out;
}

const CompactAnswer kFirst{.prediction = 0.75, .variant = 1, .version = 3};
const CompactAnswer kSecond{.prediction = -2.5, .variant = 0, .version = 300, .fallback = true, .missing = true};

} // namespace

TEST(CompactAnswer, TheDocumentedExamplesAreItsExactBytes) {
    EXPECT_EQ(keel::server::encode_compact(kFirst), hex_bytes("01 01 03 00 00 40 3f"));
    EXPECT_EQ(keel::server::encode_compact(kSecond), hex_bytes("31 00 ac 02 00 00 20 c0"));
}

TEST(CompactAnswer, OneAnswerIsSevenBytesAndAlwaysUnderSixteenForASmallVariant) {
    EXPECT_EQ(keel::server::encode_compact(kFirst).size(), 7u);
    const CompactAnswer huge{.prediction = 1e300, .variant = 127, .version = INT64_MAX, .fallback = true};
    const std::string bytes = keel::server::encode_compact(huge);
    EXPECT_EQ(bytes.size(), 15u);
    float score;
    std::memcpy(&score, bytes.data() + 11, 4);
    EXPECT_TRUE(std::isinf(score));  // a double beyond float32 rounds to infinity
}

TEST(CompactAnswer, FlagsAreBitsOfTheHeadByte) {
    EXPECT_EQ(keel::server::encode_compact({.fallback = true})[0], '\x11');
    EXPECT_EQ(keel::server::encode_compact({.missing = true})[0], '\x21');
    EXPECT_EQ(keel::server::encode_compact({})[0], '\x01');
}

TEST(CompactAnswer, ABatchIsTagCountAndTheAnswersInOrder) {
    const std::vector<CompactAnswer> answers{kFirst, kSecond};
    EXPECT_EQ(keel::server::encode_compact_batch(answers),
              hex_bytes("02 02 01 01 03 00 00 40 3f 31 00 ac 02 00 00 20 c0"));
    EXPECT_EQ(keel::server::encode_compact_batch({}), hex_bytes("02 00"));
    const std::vector<CompactAnswer> many(200, kFirst);
    const std::string batch = keel::server::encode_compact_batch(many);
    EXPECT_EQ(batch.size(), 1 + 2 + 200 * 7u);  // a count of 200 takes two varint bytes
    EXPECT_EQ(batch.substr(0, 3), hex_bytes("02 c8 01"));
}

TEST(CompactAnswer, ItemsAreZigzagVarintsInRankOrderNegativeIdsIncluded) {
    const std::vector<int64_t> items{7, -2, 150};
    EXPECT_EQ(keel::server::encode_compact_items(items, 0, 5), hex_bytes("03 00 05 03 0e 03 ac 02"));
    const std::vector<int64_t> extremes{INT64_MAX, INT64_MIN, -1, 0};
    EXPECT_EQ(keel::server::encode_compact_items(extremes, 2, 1),
              hex_bytes("03 02 01 04 fe ff ff ff ff ff ff ff ff 01 ff ff ff ff ff ff ff ff ff 01 01 00"));
}

TEST(CompactAnswer, ANegativeVersionOrVariantIsRefusedNamingIt) {
    try {
        keel::server::encode_compact({.version = -1});
        FAIL() << "a negative version was encoded";
    } catch (const keel::Error& e) {
        EXPECT_EQ(e.kind(), keel::ErrorKind::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("the model version is -1"), std::string::npos) << e.what();
    }
    const std::vector<int64_t> items{1};
    EXPECT_THROW(keel::server::encode_compact_items(items, -1, 1), keel::Error);
}

// --- /openapi.json -------------------------------------------------------------------------------

namespace {

nlohmann::json openapi() { return nlohmann::json::parse(keel::server::openapi_document()); }

//! Every "$ref" in `node`, as JSON pointers into the document.
void collect_refs(const nlohmann::json& node, std::vector<std::string>& refs) {
    if (node.is_object()) {
        for (const auto& [key, value] : node.items()) {
            if (key == "$ref") refs.push_back(value.get<std::string>());
            else collect_refs(value, refs);
        }
    } else if (node.is_array()) {
        for (const auto& value : node) collect_refs(value, refs);
    }
}

} // namespace

TEST(OpenApiDocument, ParsesAsOpenApi303WithEveryRoute) {
    const nlohmann::json doc = openapi();
    EXPECT_EQ(doc["openapi"], "3.0.3");
    EXPECT_TRUE(doc["info"].contains("title"));
    const auto& paths = doc["paths"];
    for (const char* path : {"/v1/endpoints/{name}/predict", "/v1/features/online"})
        EXPECT_TRUE(paths[path].contains("post")) << path;
    for (const char* path : {"/v1/endpoints", "/v1/endpoints/{name}", "/healthz", "/readyz", "/metrics", "/openapi.json"})
        EXPECT_TRUE(paths[path].contains("get")) << path;
    EXPECT_EQ(paths.size(), 8u);
    EXPECT_EQ(keel::server::openapi_document(), keel::server::openapi_document());  // built once, the same text
}

TEST(OpenApiDocument, BearerJwtIsRequiredEverywhereButHealthReadinessAndMetrics) {
    const nlohmann::json doc = openapi();
    const auto& scheme = doc["components"]["securitySchemes"]["bearerAuth"];
    EXPECT_EQ(scheme["type"], "http");
    EXPECT_EQ(scheme["scheme"], "bearer");
    EXPECT_EQ(scheme["bearerFormat"], "JWT");
    EXPECT_EQ(doc["security"], nlohmann::json::parse(R"([{"bearerAuth": []}])"));
    for (const auto& [path, item] : doc["paths"].items()) {
        for (const auto& [method, operation] : item.items()) {
            const bool open = path == "/healthz" || path == "/readyz" || path == "/metrics";
            if (open) {
                EXPECT_EQ(operation["security"], nlohmann::json::parse("[{}]")) << path;
            } else {
                EXPECT_FALSE(operation.contains("security")) << path << " overrides the global bearer requirement";
                EXPECT_TRUE(operation["responses"].contains("401")) << path;
            }
        }
    }
}

TEST(OpenApiDocument, PredictDocumentsBatchesTheCompactFormAndItsErrors) {
    const nlohmann::json doc = openapi();
    const auto& predict = doc["paths"]["/v1/endpoints/{name}/predict"]["post"];
    const auto& request = predict["requestBody"]["content"]["application/json"]["schema"]["oneOf"];
    ASSERT_EQ(request.size(), 2u);
    EXPECT_EQ(request[1]["type"], "array");
    const auto& ok = predict["responses"]["200"]["content"];
    EXPECT_TRUE(ok.contains("application/json"));
    EXPECT_EQ(ok["application/x-keel-compact"]["schema"]["format"], "binary");
    for (const char* status : {"400", "401", "403", "404", "413"})
        EXPECT_TRUE(predict["responses"].contains(status)) << status;
    const auto& answer = doc["components"]["schemas"]["PredictAnswer"];
    EXPECT_EQ(answer["required"],
              nlohmann::json::parse(R"(["prediction", "variant", "model", "version", "request_id"])"));
    EXPECT_TRUE(answer["properties"].contains("fallback") && answer["properties"].contains("missing"));
    EXPECT_EQ(doc["components"]["schemas"]["Error"]["required"], nlohmann::json::parse(R"(["error", "message"])"));
}

TEST(OpenApiDocument, OnlineFeaturesListTheStatusesAndMetricsIsText) {
    const nlohmann::json doc = openapi();
    const auto& feature = doc["components"]["schemas"]["OnlineFeature"];
    EXPECT_EQ(feature["properties"]["status"]["items"]["enum"],
              nlohmann::json::parse(R"(["ok", "missing", "stale", "masked", "null"])"));
    EXPECT_EQ(doc["components"]["schemas"]["OnlineRequest"]["required"],
              nlohmann::json::parse(R"(["features", "entities"])"));
    EXPECT_TRUE(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"].contains("text/plain"));
}

TEST(OpenApiDocument, EveryRefPointsIntoTheDocument) {
    const nlohmann::json doc = openapi();
    std::vector<std::string> refs;
    collect_refs(doc, refs);
    EXPECT_GT(refs.size(), 20u);
    for (const std::string& ref : refs) {
        ASSERT_EQ(ref.rfind("#/", 0), 0u) << ref;
        EXPECT_TRUE(doc.contains(nlohmann::json::json_pointer(ref.substr(1)))) << ref << " resolves to nothing";
    }
}

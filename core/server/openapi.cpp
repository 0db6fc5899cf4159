// core/server/openapi.cpp: the OpenAPI 3.0.3 document of the routes of keel/server/service.hpp.
// Written by hand rather than generated: the routes are few, and each description says what a
// caller needs (limits, statuses, the compact form) in the words the rest of Keel uses.
#include "openapi.hpp"

#include <nlohmann/json.hpp>

namespace keel::server {
namespace {

using Json = nlohmann::ordered_json;  // keys in the order written: the document reads top-down

Json refer(std::string_view component) { return {{"$ref", "#/components/" + std::string(component)}}; }

Json json_content(Json schema) { return {{"application/json", {{"schema", std::move(schema)}}}}; }

//! The error answers a route may give, by status, each the Error body.
Json errors(std::initializer_list<int> statuses) {
    Json out = Json::object();
    for (int status : statuses) {
        const char* name = status == 400   ? "BadRequest"
                           : status == 401 ? "Unauthorized"
                           : status == 403 ? "Forbidden"
                           : status == 404 ? "NotFound"
                                           : "PayloadTooLarge";
        out[std::to_string(status)] = refer(std::string("responses/") + name);
    }
    out["default"] = refer("responses/ServerError");
    return out;
}

Json error_response(std::string_view description) {
    return {{"description", description}, {"content", json_content(refer("schemas/Error"))}};
}

Json schemas() {
    Json s = Json::object();
    s["Error"] = {
        {"type", "object"},
        {"required", {"error", "message"}},
        {"properties",
         {{"error",
           {{"type", "string"},
            {"description", "The kind of failure, as Keel's Python exceptions name it."},
            {"enum",
             {"NotFound", "AlreadyExists", "InvalidArgument", "Conflict", "Corrupt", "PermissionDenied",
              "PluginError", "Internal", "Unavailable"}}}},
          {"message",
           {{"type", "string"}, {"description", "Which value is wrong, what was expected, what to do."}}}}},
        {"example", {{"error", "InvalidArgument"}, {"message", "field 'player_id': expected an integer, got a string"}}}};
    s["Scalar"] = {{"description", "A request field or a feature value: a number, a string, a boolean or null."},
                   {"nullable", true},
                   {"oneOf", {{{"type", "number"}}, {{"type", "string"}}, {{"type", "boolean"}}}}};
    s["PredictRequest"] = {
        {"type", "object"},
        {"description",
         "One request: the endpoint's entity key and any inputs it takes from the request, as scalar fields "
         "(objects and lists inside a request are refused). A `tenant` field is replaced by the token's tenant."},
        {"maxProperties", 256},
        {"additionalProperties", refer("schemas/Scalar")},
        {"example", {{"player_id", 42}}}};
    s["PredictAnswer"] = {
        {"type", "object"},
        {"required", {"prediction", "variant", "model", "version", "request_id"}},
        {"properties",
         {{"prediction", {{"type", "number"}, {"description", "The model's score."}}},
          {"variant", {{"type", "string"}, {"description", "The variant of the endpoint's definition that answered."}}},
          {"model", {{"type", "string"}, {"description", "The registered model served, `name/version`."}}},
          {"version", {{"type", "integer"}, {"format", "int64"}, {"description", "The model version served."}}},
          {"request_id",
           {{"type", "string"},
            {"description", "The caller's `X-Request-Id`, or one the server made; also in the response header."}}},
          {"fallback", {{"type", "boolean"}, {"description", "Present and true when the fallback answered."}}},
          {"missing",
           {{"type", "boolean"}, {"description", "Present and true when an input had no fresh value."}}}}},
        {"example",
         {{"prediction", 0.8125}, {"variant", "champion"}, {"model", "churn/3"}, {"version", 3},
          {"request_id", "9f2c1e0a7b3d4c5e"}}}};
    s["OnlineRequest"] = {
        {"type", "object"},
        {"required", {"features", "entities"}},
        {"properties",
         {{"features",
           {{"type", "array"},
            {"minItems", 1},
            {"items", {{"type", "string"}, {"pattern", "^[^:]+:[^:]+$"}}},
            {"description", "Features as `view:column`."}}},
          {"entities",
           {{"type", "object"},
            {"description", "Entity ids by join key; every list has the same length, one answer row per id."},
            {"minProperties", 1},
            {"additionalProperties",
             {{"type", "array"}, {"items", {{"oneOf", {{{"type", "integer"}}, {{"type", "string"}}}}}}}}}}}},
        {"example", {{"features", {"player_loyalty:sessions"}}, {"entities", {{"player_id", {3, 7}}}}}}};
    s["OnlineFeature"] = {
        {"type", "object"},
        {"description", "One feature's values, one entry per entity id, in request order."},
        {"required", {"values", "status", "event_timestamp", "age_seconds"}},
        {"properties",
         {{"values", {{"type", "array"}, {"items", refer("schemas/Scalar")}}},
          {"status",
           {{"type", "array"},
            {"description",
             "ok: a fresh value; missing: no value for the id; stale: older than the view's TTL; masked: a PII "
             "column the caller's roles may not read; null: the stored value is null."},
            {"items", {{"type", "string"}, {"enum", {"ok", "missing", "stale", "masked", "null"}}}}}},
          {"event_timestamp",
           {{"type", "array"}, {"items", {{"type", "string"}, {"format", "date-time"}, {"nullable", true}}}}},
          {"age_seconds", {{"type", "array"}, {"items", {{"type", "number"}, {"nullable", true}}}}}}}};
    s["OnlineAnswer"] = {{"type", "object"},
                         {"required", {"features"}},
                         {"properties",
                          {{"features",
                            {{"type", "object"},
                             {"description", "By `view:column`, as requested."},
                             {"additionalProperties", refer("schemas/OnlineFeature")}}}}}};
    s["EndpointSummary"] = {{"type", "object"},
                            {"required", {"name", "revision"}},
                            {"properties",
                             {{"name", {{"type", "string"}}},
                              {"revision", {{"type", "integer"}, {"format", "int64"}}}}},
                            {"additionalProperties", true}};
    s["EndpointDescription"] = {
        {"type", "object"},
        {"description", "The endpoint's definition, its revision, its variants (in definition order: the compact "
                        "answer's variant index) with their weights, and its counters."},
        {"required", {"name", "revision", "variants"}},
        {"properties",
         {{"name", {{"type", "string"}}},
          {"revision", {{"type", "integer"}, {"format", "int64"}}},
          {"variants",
           {{"type", "array"},
            {"items",
             {{"type", "object"},
              {"required", {"name"}},
              {"properties", {{"name", {{"type", "string"}}}, {"weight", {{"type", "number"}}}}},
              {"additionalProperties", true}}}}}}},
        {"additionalProperties", true}};
    return s;
}

Json components() {
    return {
        {"securitySchemes",
         {{"bearerAuth",
           {{"type", "http"},
            {"scheme", "bearer"},
            {"bearerFormat", "JWT"},
            {"description",
             "A JWT (HS256, RS256 or ES256; its tenant and roles claims decide routing and PII reads), or the "
             "server's static token. A server with neither configured answers loopback callers only."}}}}},
        {"parameters",
         {{"EndpointName",
           {{"name", "name"},
            {"in", "path"},
            {"required", true},
            {"schema", {{"type", "string"}}},
            {"description", "The endpoint's name."}}},
          {"RequestId",
           {{"name", "X-Request-Id"},
            {"in", "header"},
            {"required", false},
            {"schema", {{"type", "string"}}},
            {"description", "Kept as the answer's request_id (one is made when absent)."}}}}},
        {"schemas", schemas()},
        {"responses",
         {{"BadRequest", error_response("A malformed body or a value of the wrong type (the message says which).")},
          {"Unauthorized", error_response("No bearer token, or one that is invalid or expired.")},
          {"Forbidden", error_response("The token's tenant or roles may not call this.")},
          {"NotFound", error_response("No such endpoint, feature view or column.")},
          {"PayloadTooLarge", error_response("The body is over the server's limit (8 MiB by default).")},
          {"ServerError", error_response("Conflict (409), Internal (500), a model that failed (502), or a server Keel depends on unavailable (503).")}}}};
}

Json paths() {
    Json p = Json::object();
    const Json open = Json::array({Json::object()});  // no security requirement
    p["/v1/endpoints/{name}/predict"]["post"] = {
        {"summary", "Predict"},
        {"description",
         "One request object, or a list of them served as one batch (at most 10,000). "
         "`Accept: application/x-keel-compact` asks for the compact binary answer (docs/compact.md): 7 bytes "
         "for one answer."},
        {"operationId", "predict"},
        {"parameters", {refer("parameters/EndpointName"), refer("parameters/RequestId")}},
        {"requestBody",
         {{"required", true},
          {"content",
           json_content({{"oneOf",
                          {refer("schemas/PredictRequest"),
                           {{"type", "array"}, {"maxItems", 10000}, {"items", refer("schemas/PredictRequest")}}}}})}}},
        {"responses",
         [] {
             Json r = {{"200",
                        {{"description", "The answer, or a list of answers in request order."},
                         {"headers", {{"X-Request-Id", {{"schema", {{"type", "string"}}}}}}},
                         {"content",
                          {{"application/json",
                            {{"schema",
                              {{"oneOf", {refer("schemas/PredictAnswer"),
                                          {{"type", "array"}, {"items", refer("schemas/PredictAnswer")}}}}}}}},
                           {"application/x-keel-compact",
                            {{"schema",
                              {{"type", "string"},
                               {"format", "binary"},
                               {"description",
                                "Tag 1 (one answer) or 2 (a batch): head byte, varint variant index, varint "
                                "version, float32 score, little-endian; decoded by keel.compact.decode."}}}}}}}}}};
             r.update(errors({400, 401, 403, 404, 413}));
             return r;
         }()}};
    p["/v1/features/online"]["post"] = {
        {"summary", "Online feature values"},
        {"description", "The newest materialized values of features for entity ids. PII columns are masked "
                        "unless the token's roles may read them."},
        {"operationId", "onlineFeatures"},
        {"requestBody", {{"required", true}, {"content", json_content(refer("schemas/OnlineRequest"))}}},
        {"responses",
         [] {
             Json r = {{"200", {{"description", "Values by feature."},
                                {"content", json_content(refer("schemas/OnlineAnswer"))}}}};
             r.update(errors({400, 401, 403, 404, 413}));
             return r;
         }()}};
    p["/v1/endpoints"]["get"] = {
        {"summary", "Hosted endpoints"},
        {"operationId", "listEndpoints"},
        {"responses",
         [] {
             Json r = {{"200",
                        {{"description", "The hosted endpoints and their revisions."},
                         {"content", json_content({{"type", "array"}, {"items", refer("schemas/EndpointSummary")}})}}}};
             r.update(errors({401}));
             return r;
         }()}};
    p["/v1/endpoints/{name}"]["get"] = {
        {"summary", "One endpoint"},
        {"operationId", "describeEndpoint"},
        {"parameters", {refer("parameters/EndpointName")}},
        {"responses",
         [] {
             Json r = {{"200", {{"description", "Definition, revision, variants and counters."},
                                {"content", json_content(refer("schemas/EndpointDescription"))}}}};
             r.update(errors({401, 403, 404}));
             return r;
         }()}};
    p["/healthz"]["get"] = {{"summary", "Liveness"},
                            {"operationId", "health"},
                            {"security", open},
                            {"responses", {{"200", {{"description", "The process is up."}}}}}};
    p["/readyz"]["get"] = {{"summary", "Readiness"},
                           {"operationId", "ready"},
                           {"security", open},
                           {"responses",
                            {{"200", {{"description", "Every hosted endpoint is loaded."}}},
                             {"503", {{"description", "Still loading."}}}}}};
    p["/metrics"]["get"] = {
        {"summary", "Prometheus metrics"},
        {"operationId", "metrics"},
        {"security", open},
        {"responses",
         {{"200",
           {{"description",
             "Text exposition format 0.0.4: keel_requests_total, keel_request_errors_total, "
             "keel_request_duration_seconds, keel_routing_fallbacks_total, keel_model_version, keel_endpoint_ready, "
             "keel_online_staleness_seconds, keel_http_connections."},
            {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}}}}};
    p["/openapi.json"]["get"] = {
        {"summary", "This document"},
        {"operationId", "openapi"},
        {"responses",
         [] {
             Json r = {{"200", {{"description", "The OpenAPI 3.0.3 document of this server."},
                                {"content", json_content({{"type", "object"}})}}}};
             r.update(errors({401}));
             return r;
         }()}};
    return p;
}

} // namespace

std::string openapi_document() {
    static const std::string document = [] {
        Json doc = {{"openapi", "3.0.3"},
                    {"info",
                     {{"title", "Keel serving API"},
                      {"version", "1"},
                      {"description",
                       "keel serve: predictions from Keel endpoints and online feature values over HTTP, with "
                       "no Python in the request path. Errors are {\"error\": Kind, \"message\": ...}."}}},
                    {"security", Json::array({{{"bearerAuth", Json::array()}}})},
                    {"paths", paths()},
                    {"components", components()}};
        return doc.dump();
    }();
    return document;
}

} // namespace keel::server

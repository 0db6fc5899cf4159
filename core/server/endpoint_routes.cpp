// core/server/endpoint_routes.cpp: the endpoint routes (predict, list, describe).
#include "routes.hpp"

#include "endpoint_host.hpp"
#include "json_out.hpp"
#include "keel/server/compact.hpp"
#include "keel/server/metrics.hpp"
#include "keel/serving/endpoint.hpp"

#include <algorithm>

namespace keel::server {

namespace {

constexpr std::string_view kCompactType = "application/x-keel-compact";

bool wants_compact(const HttpRequest& request) {
    return request.header("accept").find(kCompactType) != std::string_view::npos;
}

// Refuses a caller whose tenant the endpoint does not list. The message names the caller's tenant
// and never the tenants allowed: studio B learns nothing about studio A.
void check_tenant(serving::Endpoint& endpoint, const Call& call) {
    const std::string& tenant = call.caller.tenant;
    const bool verified = call.caller.jwt && !tenant.empty();
    if (endpoint.admits(verified ? tenant : std::string_view{})) return;
    if (!verified)
        throw_error(ErrorKind::PermissionDenied, "endpoint '{}' serves only some tenants and this caller has no "
                    "tenant: call it with a JWT whose tenant claim is one of them", endpoint.name());
    throw_error(ErrorKind::PermissionDenied, "tenant '{}' may not call endpoint '{}': the endpoint's owner adds "
                "tenants to its definition's tenants=", tenant, endpoint.name());
}

// The tenant routing sees: a verified claim replaces any tenant field of the body.
void set_tenant(std::vector<plugins::Field>& row, std::string_view field, const Call& call) {
    if (!call.caller.jwt) return;
    std::erase_if(row, [&](const plugins::Field& f) { return f.name == field; });
    if (!call.caller.tenant.empty()) row.push_back({field, std::string_view(call.caller.tenant)});
}

void append_names(std::string& out, std::string_view key, const std::vector<std::string>& names) {
    if (names.empty()) return;
    out += ",\"";
    out += key;
    out += "\":[";
    for (size_t i = 0; i < names.size(); ++i) {
        if (i) out.push_back(',');
        append_json_string(out, names[i]);
    }
    out.push_back(']');
}

void append_answer(std::string& out, double prediction, std::string_view variant, std::string_view model,
                   int64_t version, std::string_view fallback, const std::vector<std::string>& missing,
                   const std::vector<std::string>& stale, const std::vector<int64_t>* items,
                   std::string_view request_id) {
    out += "{\"prediction\":";
    append_json_number(out, prediction);  // null for a table of items only
    if (items) {
        out += ",\"items\":[";
        for (size_t i = 0; i < items->size(); ++i) {
            if (i) out.push_back(',');
            append_json_number(out, (*items)[i]);
        }
        out.push_back(']');
    }
    out += ",\"variant\":";
    append_json_string(out, variant);
    out += ",\"model\":";
    append_json_string(out, model);
    out += ",\"version\":";
    append_json_number(out, version);
    if (!fallback.empty()) {
        out += ",\"fallback\":";
        append_json_string(out, fallback);
    }
    append_names(out, "missing", missing);
    append_names(out, "stale", stale);
    if (!request_id.empty()) {
        out += ",\"request_id\":";
        append_json_string(out, request_id);
    }
    out.push_back('}');
}

int variant_index(const serving::Endpoint& endpoint, std::string_view variant) {
    const auto served = endpoint.variants();
    for (size_t i = 0; i < served.size(); ++i)
        if (served[i].variant == variant) return int(i);
    return 0;
}

HttpResponse compact_response(std::string body) {
    HttpResponse r;
    r.content_type = std::string(kCompactType);
    r.body = std::move(body);
    return r;
}

} // namespace

HttpResponse json_response(int status, std::string body) {
    HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    return r;
}

HttpResponse error_response(const Error& error) { return json_response(http_status(error.kind()), error_body(error)); }

HttpResponse predict(EndpointHost& host, const RequestLimits& limits, std::string_view name, Call& call) {
    auto endpoint = host.find(name);
    call.endpoint = endpoint->name();  // labelled only once found: unknown names make no series
    check_tenant(*endpoint, call);
    ParsedRequests parsed = parse_predict_body(call.request.body, limits);
    const std::string tenant_field = endpoint->tenant_field();
    for (auto& row : parsed.rows) set_tenant(row, tenant_field, call);
    const bool compact = wants_compact(call.request);

    if (!parsed.batch) {
        const auto a = endpoint->predict(parsed.rows.front());
        call.variant = a.variant;
        if (!a.fallback.empty()) call.metrics.fallback(name, a.fallback);
        const bool items = endpoint->serves_items(a.variant);
        if (compact && items)
            return compact_response(encode_compact_items(a.items, variant_index(*endpoint, a.variant), a.version));
        if (compact)
            return compact_response(encode_compact({a.prediction, variant_index(*endpoint, a.variant), a.version,
                                                    !a.fallback.empty(), !a.missing.empty() || !a.stale.empty()}));
        std::string out;
        out.reserve(160);
        append_answer(out, a.prediction, a.variant, a.model, a.version, a.fallback, a.missing, a.stale,
                      items ? &a.items : nullptr, call.request_id);
        return json_response(200, std::move(out));
    }

    std::vector<std::span<const plugins::Field>> rows(parsed.rows.begin(), parsed.rows.end());
    const auto b = endpoint->predict_batch(rows);
    for (const auto& d : b.decisions)
        if (d.fallback != plugins::Fallback::None) call.metrics.fallback(name, plugins::fallback_name(d.fallback));
    if (compact && !b.items.empty()) {  // some variant serves items: one message per request
        std::vector<std::string> messages;
        messages.reserve(b.predictions.size());
        for (size_t i = 0; i < b.predictions.size(); ++i) {
            const auto& d = b.decisions[i];
            const int64_t version = b.variants[size_t(d.variant)].version;
            if (endpoint->serves_items(b.variants[size_t(d.variant)].variant))
                messages.push_back(encode_compact_items(b.items[i], d.variant, version));
            else
                messages.push_back(encode_compact({b.predictions[i], d.variant, version,
                                                   d.fallback != plugins::Fallback::None,
                                                   !b.missing[i].empty() || !b.stale[i].empty()}));
        }
        return compact_response(encode_compact_batch_messages(messages));
    }
    if (compact) {
        std::vector<CompactAnswer> answers;
        answers.reserve(b.predictions.size());
        for (size_t i = 0; i < b.predictions.size(); ++i) {
            const auto& d = b.decisions[i];
            answers.push_back({b.predictions[i], d.variant, b.variants[size_t(d.variant)].version,
                               d.fallback != plugins::Fallback::None, !b.missing[i].empty() || !b.stale[i].empty()});
        }
        return compact_response(encode_compact_batch(answers));
    }
    std::string out = "[";
    out.reserve(b.predictions.size() * 120 + 2);
    for (size_t i = 0; i < b.predictions.size(); ++i) {
        if (i) out.push_back(',');
        const auto& d = b.decisions[i];
        const auto& served = b.variants[size_t(d.variant)];
        const std::string_view fallback =
            d.fallback == plugins::Fallback::None ? std::string_view{} : plugins::fallback_name(d.fallback);
        const bool items = !b.items.empty() && endpoint->serves_items(served.variant);
        append_answer(out, b.predictions[i], served.variant, served.model, served.version, fallback, b.missing[i],
                      b.stale[i], items ? &b.items[i] : nullptr, {});
    }
    out.push_back(']');
    return json_response(200, std::move(out));
}

namespace {

void append_variants(std::string& out, const serving::Endpoint& endpoint, const serving::EndpointDefinition& d) {
    out += "[";
    const auto served = endpoint.variants();
    for (size_t i = 0; i < served.size(); ++i) {
        if (i) out.push_back(',');
        out += "{\"name\":";
        append_json_string(out, served[i].variant);
        out += ",\"model\":";
        append_json_string(out, served[i].model);
        out += ",\"version\":";
        append_json_number(out, served[i].version);
        if (i < d.variants.size()) {
            out += ",\"ref\":";
            append_json_string(out, d.variants[i].model);
            out += ",\"weight\":";
            append_json_number(out, d.variants[i].weight);
        }
        out.push_back('}');
    }
    out.push_back(']');
}

bool visible(serving::Endpoint& endpoint, const Call& call) {
    try {
        return endpoint.admits(call.caller.jwt ? std::string_view(call.caller.tenant) : std::string_view{});
    } catch (const Error& e) {
        if (e.kind() == ErrorKind::NotFound) return false;  // removed since the list was read
        throw;
    }
}

} // namespace

HttpResponse list_endpoints(EndpointHost& host, Call& call) {
    std::string out = "[";
    bool first = true;
    for (const auto& endpoint : host.all()) {
        if (!visible(*endpoint, call)) continue;
        const auto d = endpoint->definition();
        if (!first) out.push_back(',');
        first = false;
        out += "{\"name\":";
        append_json_string(out, endpoint->name());
        out += ",\"revision\":";
        append_json_number(out, endpoint->revision());
        out += ",\"variants\":";
        append_variants(out, *endpoint, d);
        out.push_back('}');
    }
    out.push_back(']');
    return json_response(200, std::move(out));
}

HttpResponse describe_endpoint(EndpointHost& host, std::string_view name, Call& call) {
    auto endpoint = host.find(name);
    call.endpoint = endpoint->name();
    check_tenant(*endpoint, call);
    const auto d = endpoint->definition();
    const auto stats = endpoint->stats();
    std::string out = "{\"name\":";
    append_json_string(out, endpoint->name());
    out += ",\"revision\":";
    append_json_number(out, stats.revision);
    out += ",\"definition\":";
    out += d.to_json();
    out += ",\"variants\":";
    append_variants(out, *endpoint, d);
    out += ",\"counters\":{\"decisions\":";
    append_json_number(out, stats.router.decisions);
    out += ",\"fallbacks\":";
    append_json_number(out, stats.router.fallbacks);
    out += ",\"missing\":";
    append_json_number(out, stats.missing);
    out += ",\"stale\":";
    append_json_number(out, stats.stale);
    out += ",\"refused\":";
    append_json_number(out, stats.refused);
    out += ",\"shadow_errors\":";
    append_json_number(out, stats.shadow_errors);
    out += ",\"served\":{";
    for (size_t i = 0; i < stats.router.served.size(); ++i) {
        if (i) out.push_back(',');
        append_json_string(out, stats.router.served[i].first);
        out.push_back(':');
        append_json_number(out, stats.router.served[i].second);
    }
    out += "},\"log\":{\"appended\":";  // the assignment log of this server process
    append_json_number(out, int64_t(stats.log.appended));
    out += ",\"written\":";
    append_json_number(out, int64_t(stats.log.written));
    out += ",\"buffered\":";
    append_json_number(out, int64_t(stats.log.buffered));
    out += ",\"dropped\":";
    append_json_number(out, int64_t(stats.log.dropped));
    if (!stats.log.last_error.empty()) {
        out += ",\"last_error\":";
        append_json_string(out, stats.log.last_error);
    }
    out += "}}";
    append_names(out, "issues", stats.issues);
    if (const std::string why = endpoint->rejected(); !why.empty()) {
        out += ",\"rejected\":";
        append_json_string(out, why);
    }
    out.push_back('}');
    return json_response(200, std::move(out));
}

} // namespace keel::server

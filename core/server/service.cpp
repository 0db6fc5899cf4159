// core/server/service.cpp: authentication, routing, request ids and metrics around the routes.
#include "keel/server/service.hpp"

#include "endpoint_host.hpp"
#include "json_out.hpp"
#include "openapi.hpp"
#include "routes.hpp"
#include "keel/common/clock.hpp"
#include "keel/features/store.hpp"
#include "keel/serving/endpoint.hpp"
#include "keel/storage/workspace.hpp"

#include <atomic>
#include <chrono>
#include <optional>
#include <set>

namespace keel::server {

namespace {

constexpr std::string_view kEndpoints = "/v1/endpoints";
constexpr std::string_view kFeatures = "/v1/features/online";

// A caller's X-Request-Id is kept when it is short printable ASCII (it ends up in logs).
bool usable_request_id(std::string_view id) {
    if (id.empty() || id.size() > 128) return false;
    for (char c : id)
        if (c < 0x21 || c > 0x7e) return false;
    return true;
}

HttpResponse not_found(std::string_view path) {
    return json_response(404, error_body("NotFound", fmt::format("no route {}: the routes are /v1/endpoints, "
                                                                 "/v1/endpoints/{{name}}, /v1/endpoints/{{name}}/predict, "
                                                                 "/v1/features/online, /healthz, /readyz, /metrics, "
                                                                 "/openapi.json", path)));
}

HttpResponse method_not_allowed(std::string_view method, std::string_view path, std::string_view allowed) {
    HttpResponse r = json_response(405, error_body("InvalidArgument", fmt::format("{} {} is not served: use {}",
                                                                                  method, path, allowed)));
    r.headers.emplace_back("Allow", std::string(allowed));
    return r;
}

HttpResponse unauthorized(std::string_view why) {
    HttpResponse r = json_response(401, error_body("PermissionDenied", why));
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"keel\"");
    return r;
}

} // namespace

struct Service::Impl {
    std::shared_ptr<storage::Workspace> ws;
    ServiceOptions options;
    std::optional<Authenticator> auth;
    EndpointHost endpoints;
    FeatureRoutes features;
    Metrics metrics;
    std::string id_prefix = random_hex_id().substr(0, 8);
    std::atomic<uint64_t> next_id{0};

    Impl(std::shared_ptr<storage::Workspace> w, ServiceOptions o)
        : ws(w), options(std::move(o)), endpoints(w, options.endpoints), features(w) {
        if (options.auth.enabled()) auth.emplace(options.auth);
    }

    std::string request_id(const HttpRequest& request) {
        if (auto given = request.header("x-request-id"); usable_request_id(given)) return std::string(given);
        return fmt::format("{}-{:x}", id_prefix, next_id.fetch_add(1, std::memory_order_relaxed));
    }

    // Routes of an authenticated caller.
    HttpResponse route(Call& call) {
        const HttpRequest& request = call.request;
        const std::string_view path = request.path();
        const bool get = request.method == "GET" || request.method == "HEAD";
        if (path == kFeatures) {
            if (request.method != "POST") return method_not_allowed(request.method, path, "POST");
            return features.online(call);
        }
        if (path == kEndpoints) {
            if (!get) return method_not_allowed(request.method, path, "GET");
            return list_endpoints(endpoints, call);
        }
        if (!path.starts_with(kEndpoints) || path.size() <= kEndpoints.size() + 1 || path[kEndpoints.size()] != '/')
            return not_found(path);
        std::string_view rest = path.substr(kEndpoints.size() + 1);
        const size_t slash = rest.find('/');
        const std::string_view name = rest.substr(0, slash);
        if (slash == std::string_view::npos) {
            if (!get) return method_not_allowed(request.method, path, "GET");
            return describe_endpoint(endpoints, name, call);
        }
        if (rest.substr(slash) != "/predict") return not_found(path);
        if (request.method != "POST") return method_not_allowed(request.method, path, "POST");
        return predict(endpoints, options.requests, name, call);
    }

    HttpResponse open_route(const HttpRequest& request) {
        const std::string_view path = request.path();
        if (path == "/healthz") return json_response(200, "{\"status\":\"ok\"}");
        if (path == "/readyz") return readiness();
        if (path == "/metrics") {
            HttpResponse r;
            r.content_type = "text/plain; version=0.0.4; charset=utf-8";
            refresh_gauges();
            r.body = metrics.render();
            return r;
        }
        return {};
    }

    HttpResponse readiness() {
        const auto hosted = endpoints.all();
        const auto unservable = endpoints.unservable();
        const bool ready = is_ready(unservable);
        std::vector<std::pair<std::string, std::string>> degraded;
        std::string out = fmt::format("{{\"ready\":{},\"endpoints\":[", ready);
        for (size_t i = 0; i < hosted.size(); ++i) {
            if (i) out.push_back(',');
            append_json_string(out, hosted[i]->name());
            if (auto why = hosted[i]->rejected(); !why.empty()) degraded.emplace_back(hosted[i]->name(), std::move(why));
        }
        out.push_back(']');
        append_reasons(out, "unservable", unservable);
        append_reasons(out, "degraded", degraded);
        out.push_back('}');
        return json_response(ready ? 200 : 503, std::move(out));
    }

    // Named endpoints must all be served; in "every saved" mode one Python-only endpoint is reported
    // but does not keep the others out of rotation. A degraded endpoint still answers (on its last
    // good state): it is ready, and /readyz says why it is degraded.
    bool is_ready(const std::vector<std::pair<std::string, std::string>>& unservable) const {
        return !endpoints.fixed() || unservable.empty();
    }

    // ,"key":{"name":"why",...}
    static void append_reasons(std::string& out, std::string_view key,
                               const std::vector<std::pair<std::string, std::string>>& reasons) {
        out += fmt::format(",\"{}\":{{", key);
        for (size_t i = 0; i < reasons.size(); ++i) {
            if (i) out.push_back(',');
            append_json_string(out, reasons[i].first);
            out.push_back(':');
            append_json_string(out, reasons[i].second);
        }
        out.push_back('}');
    }

    // Gauges read when /metrics is asked for, not kept up to date on the request path.
    void refresh_gauges() {
        std::set<std::string> views;
        for (const auto& endpoint : endpoints.all()) {
            metrics.ready(endpoint->name(), true);
            metrics.degraded(endpoint->name(), !endpoint->rejected().empty());
            for (const auto& v : endpoint->variants())
                metrics.model_version(endpoint->name(), v.variant, v.model, v.version);
            for (const auto& view : endpoint->definition().views()) views.insert(view);
        }
        for (const auto& [name, _] : endpoints.unservable()) metrics.ready(name, false);
        const int64_t now = now_ms();
        for (const auto& view : views) {
            try {
                if (auto end = features.store("").info(view).materialized_end_ms)
                    metrics.staleness(view, double(now - *end) / 1000.0);
            } catch (const Error&) {
                // A view dropped meanwhile: no gauge until an endpoint reads it again.
            }
        }
    }
};

Service::Service(std::shared_ptr<storage::Workspace> ws, ServiceOptions options)
    : impl_(std::make_unique<Impl>(std::move(ws), std::move(options))) {}

Service::~Service() = default;

HttpResponse Service::handle(const HttpRequest& request) {
    const auto start = std::chrono::steady_clock::now();
    const std::string_view path = request.path();
    if (path == "/healthz" || path == "/readyz" || path == "/metrics") {
        HttpResponse r = impl_->open_route(request);
        impl_->metrics.request("", "", r.status,
                               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        return r;
    }
    Principal caller;
    if (impl_->auth) {
        try {
            caller = impl_->auth->authenticate(request.header("authorization"));
        } catch (const Error& e) {
            HttpResponse r = unauthorized(e.what());
            impl_->metrics.request("", "", r.status,
                                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            return r;
        }
    }
    return handle(request, caller);
}

HttpResponse Service::handle(const HttpRequest& request, const Principal& caller) {
    const auto start = std::chrono::steady_clock::now();
    const std::string id = impl_->request_id(request);
    Call call{request, caller, id, impl_->metrics, {}, {}};
    HttpResponse response;
    try {
        if (request.path() == "/openapi.json")
            response = json_response(200, openapi_document());
        else
            response = impl_->route(call);
    } catch (const Error& e) {
        response = error_response(e);
    } catch (const std::exception& e) {
        response = json_response(500, error_body("Internal", e.what()));
    }
    response.headers.emplace_back("X-Request-Id", id);
    impl_->metrics.request(call.endpoint, call.variant, response.status,
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return response;
}

bool Service::ready() const { return impl_->is_ready(impl_->endpoints.unservable()); }

Metrics& Service::metrics() { return impl_->metrics; }

} // namespace keel::server

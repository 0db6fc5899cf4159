// core/include/keel/server/metrics.hpp
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace keel::server {

//! What /metrics exposes, in the Prometheus text format (0.0.4). Counters and histograms are
//! updated lock-free on the request path once their label set has been seen; render() reads them.
//!
//!   keel_requests_total{endpoint,variant,status}         counter
//!   keel_request_errors_total{endpoint,status}           counter (status >= 400)
//!   keel_request_duration_seconds{endpoint}              histogram (buckets 50us .. 10s)
//!   keel_routing_fallbacks_total{endpoint,reason}        counter
//!   keel_model_version{endpoint,variant,model}           gauge: the version served
//!   keel_endpoint_ready{endpoint}                        gauge 0/1
//!   keel_endpoint_degraded{endpoint}                     gauge 0/1: a change it could not load is not served
//!   keel_online_staleness_seconds{view}                  gauge: age of the newest materialized value
//!   keel_http_connections                                gauge
class Metrics {
public:
    Metrics();
    ~Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    //! One answered request. `endpoint` is "" for routes that are not an endpoint's (then labelled
    //! by route), `variant` "" when none was served.
    void request(std::string_view endpoint, std::string_view variant, int status, double seconds);
    void fallback(std::string_view endpoint, std::string_view reason, int64_t count = 1);
    void model_version(std::string_view endpoint, std::string_view variant, std::string_view model, int64_t version);
    void ready(std::string_view endpoint, bool ready);
    void degraded(std::string_view endpoint, bool degraded);
    void staleness(std::string_view view, double seconds);
    void connections(int64_t open);

    std::string render() const;

    struct State;

private:
    std::unique_ptr<State> state_;
};

} // namespace keel::server

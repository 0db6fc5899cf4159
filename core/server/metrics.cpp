// core/server/metrics.cpp: placeholder of the server skeleton, replaced by its implementation.
#include "keel/server/metrics.hpp"

namespace keel::server {
struct Metrics::State {};
Metrics::Metrics() : state_(std::make_unique<State>()) {}
Metrics::~Metrics() = default;
void Metrics::request(std::string_view, std::string_view, int, double) {}
void Metrics::fallback(std::string_view, std::string_view, int64_t) {}
void Metrics::model_version(std::string_view, std::string_view, std::string_view, int64_t) {}
void Metrics::ready(std::string_view, bool) {}
void Metrics::staleness(std::string_view, double) {}
void Metrics::connections(int64_t) {}
std::string Metrics::render() const { return {}; }
} // namespace keel::server

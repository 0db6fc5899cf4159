// core/server/metrics.cpp
#include "keel/server/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace keel::server {
namespace {

//! Label sets per family, at most. A caller spraying endpoint names (every 404 is labelled by the
//! name asked for) would otherwise grow the map without end; past the cap a new label set has its
//! free-text labels folded into "(other)", which exists once per family.
constexpr size_t kMaxSeries = 10'000;
constexpr std::string_view kOther = "(other)";

//! Upper bounds of keel_request_duration_seconds, in seconds: a native answer takes tens of
//! microseconds, a cold model load seconds. Written as the `le` label shows them.
constexpr std::array<double, 16> kBuckets = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                             0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   10.0};
constexpr std::array<std::string_view, 16> kBucketLabels = {"0.00005", "0.0001", "0.00025", "0.0005",
                                                            "0.001",   "0.0025", "0.005",   "0.01",
                                                            "0.025",   "0.05",   "0.1",     "0.25",
                                                            "0.5",     "1",      "2.5",     "10"};

struct Counter {
    std::atomic<uint64_t> value{0};
};

struct IntGauge {
    std::atomic<int64_t> value{0};
};

struct DoubleGauge {
    std::atomic<double> value{0};
};

struct Histogram {
    std::array<std::atomic<uint64_t>, kBuckets.size() + 1> buckets{};  //!< per bucket, last: above 10s
    std::atomic<uint64_t> sum_ns{0};  //!< integer nanoseconds: concurrent adds stay exact

    void observe(double seconds) {
        if (!(seconds > 0)) seconds = 0;  // NaN and negative durations count as 0
        const auto bucket = std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds) - kBuckets.begin();
        buckets[static_cast<size_t>(bucket)].fetch_add(1, std::memory_order_relaxed);
        const double ns = std::min(seconds * 1e9, 1e18);
        sum_ns.fetch_add(static_cast<uint64_t>(std::llround(ns)), std::memory_order_relaxed);
    }
};

//! The series of one metric: label set -> node of atomics. The request path takes the read lock to
//! find a series it has seen before and the write lock only to add a new one.
template <typename Node>
class Family {
public:
    struct Series {
        std::vector<std::string> labels;
        Node node;
    };

    //! `bounded`: labels with few possible values (a status code), kept when a label set is folded.
    Family(std::string_view name, std::string_view help, std::string_view type,
           std::initializer_list<std::string_view> label_names, std::initializer_list<bool> bounded = {})
        : name_(name), help_(help), type_(type), label_names_(label_names.begin(), label_names.end()),
          bounded_(label_names.size(), false) {
        std::copy(bounded.begin(), bounded.end(), bounded_.begin());
    }

    Node& at(std::initializer_list<std::string_view> values) {
        thread_local std::string key;  // reused: no allocation for a series already seen
        encode(values, key);
        std::vector<std::string_view> folded;  // the "(other)" label set, once the family is full
        {
            std::shared_lock lock(mutex_);
            if (auto it = series_.find(key); it != series_.end()) return it->second->node;
            if (series_.size() >= kMaxSeries) {
                // Past the cap a sprayed name finds its "(other)" series under the read lock too.
                folded = fold(values);
                encode(folded, key);
                if (auto it = series_.find(key); it != series_.end()) return it->second->node;
            }
        }
        std::unique_lock lock(mutex_);
        if (auto it = series_.find(key); it != series_.end()) return it->second->node;
        if (folded.empty() && series_.size() >= kMaxSeries) {  // filled up since the read lock
            folded = fold(values);
            encode(folded, key);
            if (auto it = series_.find(key); it != series_.end()) return it->second->node;
        }
        // "(other)" series may go past the cap: one per value of the bounded labels at most.
        if (!folded.empty()) return insert(std::string(key), folded);
        return insert(std::string(key), values);
    }

    //! # HELP, # TYPE, then the series sorted by their label values.
    template <typename Write>
    void render(std::string& out, Write write) const {
        fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name_, help_, name_, type_);
        std::vector<const Series*> sorted;
        {
            std::shared_lock lock(mutex_);
            sorted.reserve(series_.size());
            for (const auto& [key, series] : series_) sorted.push_back(series.get());
        }
        // Series are never removed, so the pointers outlive the lock.
        std::sort(sorted.begin(), sorted.end(), [](const Series* a, const Series* b) { return a->labels < b->labels; });
        for (const Series* series : sorted) write(out, label_text(series->labels), series->node);
    }

    const std::string& name() const { return name_; }

private:
    std::vector<std::string_view> fold(std::initializer_list<std::string_view> values) const {
        std::vector<std::string_view> folded(values);
        for (size_t i = 0; i < folded.size(); ++i)
            if (!bounded_[i]) folded[i] = kOther;
        return folded;
    }

    template <typename Values>
    static void encode(const Values& values, std::string& key) {
        // Length-prefixed values: no label value can forge another label set's key.
        key.clear();
        for (std::string_view value : values) {
            const auto size = static_cast<uint32_t>(value.size());
            key.append(reinterpret_cast<const char*>(&size), sizeof size);
            key.append(value);
        }
    }

    template <typename Values>
    Node& insert(std::string key, const Values& values) {
        auto series = std::make_unique<Series>();
        series->labels.assign(values.begin(), values.end());
        Node& node = series->node;
        series_.emplace(std::move(key), std::move(series));
        return node;
    }

    //! `a="x",b="y"`: the values escaped as the text format wants (backslash, quote, newline).
    std::string label_text(const std::vector<std::string>& labels) const {
        std::string text;
        for (size_t i = 0; i < labels.size(); ++i) {
            if (i) text += ',';
            text += label_names_[i];
            text += "=\"";
            for (char c : labels[i]) {
                if (c == '\\') text += "\\\\";
                else if (c == '"') text += "\\\"";
                else if (c == '\n') text += "\\n";
                else text += c;
            }
            text += '"';
        }
        return text;
    }

    std::string name_, help_, type_;
    std::vector<std::string> label_names_;
    std::vector<bool> bounded_;
    mutable std::shared_mutex mutex_;
    std::unordered_map<std::string, std::unique_ptr<Series>> series_;
};

//! A sample value as Prometheus parses it (Go's ParseFloat): shortest round-trip, with its spelling
//! of the non-finite values.
std::string number(double value) {
    if (std::isnan(value)) return "NaN";
    if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
    return fmt::format("{}", value);
}

//! `name{labels} value`, the labels already escaped.
void sample(std::string& out, std::string_view name, std::string_view labels, std::string_view value) {
    out += name;
    if (!labels.empty()) {
        out += '{';
        out += labels;
        out += '}';
    }
    out += ' ';
    out += value;
    out += '\n';
}

std::string_view status_text(int status, std::array<char, 16>& buffer) {
    auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), status);
    return {buffer.data(), static_cast<size_t>(end - buffer.data())};
}

} // namespace

struct Metrics::State {
    Family<Counter> requests{"keel_requests_total", "Answered HTTP requests.", "counter",
                             {"endpoint", "variant", "status"}, {false, false, true}};
    Family<Counter> errors{"keel_request_errors_total", "Answered HTTP requests with a status of 400 or above.",
                           "counter", {"endpoint", "status"}, {false, true}};
    Family<Histogram> durations{"keel_request_duration_seconds", "Time from request read to answer written.",
                                "histogram", {"endpoint"}};
    Family<Counter> fallbacks{"keel_routing_fallbacks_total", "Answers served by a fallback, by reason.", "counter",
                              {"endpoint", "reason"}};
    Family<IntGauge> versions{"keel_model_version", "Model version served by each variant.", "gauge",
                              {"endpoint", "variant", "model"}};
    Family<IntGauge> ready{"keel_endpoint_ready", "1 once the endpoint is loaded and answering.", "gauge",
                           {"endpoint"}};
    Family<IntGauge> degraded{"keel_endpoint_degraded",
                              "1 while the endpoint serves its last good state because a change (a moved alias, "
                              "a new revision) could not be loaded.",
                              "gauge", {"endpoint"}};
    Family<DoubleGauge> staleness{"keel_online_staleness_seconds",
                                  "Age of the newest materialized online value of a feature view.", "gauge",
                                  {"view"}};
    std::atomic<int64_t> connections{0};
};

Metrics::Metrics() : state_(std::make_unique<State>()) {}
Metrics::~Metrics() = default;

void Metrics::request(std::string_view endpoint, std::string_view variant, int status, double seconds) {
    std::array<char, 16> buffer;
    const std::string_view code = status_text(status, buffer);
    state_->requests.at({endpoint, variant, code}).value.fetch_add(1, std::memory_order_relaxed);
    if (status >= 400) state_->errors.at({endpoint, code}).value.fetch_add(1, std::memory_order_relaxed);
    state_->durations.at({endpoint}).observe(seconds);
}

void Metrics::fallback(std::string_view endpoint, std::string_view reason, int64_t count) {
    if (count <= 0) return;  // a counter only goes up
    state_->fallbacks.at({endpoint, reason}).value.fetch_add(static_cast<uint64_t>(count), std::memory_order_relaxed);
}

void Metrics::model_version(std::string_view endpoint, std::string_view variant, std::string_view model,
                            int64_t version) {
    state_->versions.at({endpoint, variant, model}).value.store(version, std::memory_order_relaxed);
}

void Metrics::ready(std::string_view endpoint, bool ready) {
    state_->ready.at({endpoint}).value.store(ready ? 1 : 0, std::memory_order_relaxed);
}

void Metrics::degraded(std::string_view endpoint, bool degraded) {
    state_->degraded.at({endpoint}).value.store(degraded ? 1 : 0, std::memory_order_relaxed);
}

void Metrics::staleness(std::string_view view, double seconds) {
    state_->staleness.at({view}).value.store(seconds, std::memory_order_relaxed);
}

void Metrics::connections(int64_t open) { state_->connections.store(open, std::memory_order_relaxed); }

std::string Metrics::render() const {
    const State& s = *state_;
    std::string out;
    out.reserve(4096);
    auto counter = [](const std::string& name) {
        return [&name](std::string& text, const std::string& labels, const Counter& node) {
            sample(text, name, labels, std::to_string(node.value.load(std::memory_order_relaxed)));
        };
    };
    auto int_gauge = [](const std::string& name) {
        return [&name](std::string& text, const std::string& labels, const IntGauge& node) {
            sample(text, name, labels, std::to_string(node.value.load(std::memory_order_relaxed)));
        };
    };
    s.requests.render(out, counter(s.requests.name()));
    s.errors.render(out, counter(s.errors.name()));
    s.durations.render(out, [&name = s.durations.name()](std::string& text, const std::string& labels,
                                                            const Histogram& node) {
        // Cumulative buckets read once each; _count is the +Inf bucket, so the two always agree.
        const std::string prefix = labels.empty() ? std::string() : labels + ",";
        uint64_t cumulative = 0;
        for (size_t i = 0; i < kBuckets.size(); ++i) {
            cumulative += node.buckets[i].load(std::memory_order_relaxed);
            sample(text, name + "_bucket", fmt::format("{}le=\"{}\"", prefix, kBucketLabels[i]),
                   std::to_string(cumulative));
        }
        cumulative += node.buckets[kBuckets.size()].load(std::memory_order_relaxed);
        sample(text, name + "_bucket", prefix + "le=\"+Inf\"", std::to_string(cumulative));
        sample(text, name + "_sum", labels,
               number(static_cast<double>(node.sum_ns.load(std::memory_order_relaxed)) / 1e9));
        sample(text, name + "_count", labels, std::to_string(cumulative));
    });
    s.fallbacks.render(out, counter(s.fallbacks.name()));
    s.versions.render(out, int_gauge(s.versions.name()));
    s.ready.render(out, int_gauge(s.ready.name()));
    s.degraded.render(out, int_gauge(s.degraded.name()));
    s.staleness.render(out, [&name = s.staleness.name()](std::string& text, const std::string& labels,
                                                            const DoubleGauge& node) {
        sample(text, name, labels, number(node.value.load(std::memory_order_relaxed)));
    });
    out += "# HELP keel_http_connections Open HTTP connections.\n# TYPE keel_http_connections gauge\n";
    sample(out, "keel_http_connections", {}, std::to_string(s.connections.load(std::memory_order_relaxed)));
    return out;
}

} // namespace keel::server

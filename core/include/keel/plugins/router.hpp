// core/include/keel/plugins/router.hpp
#pragma once

#include "keel/plugins/host.hpp"
#include "keel/plugins/value.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace keel::plugins {

//! One variant of an A/B split: a name and its weight (weights need not sum to 1).
struct Variant {
    std::string name;
    double weight = 1.0;
};

//! What a router runs: the routing plugin, its variants, default and configuration.
struct RouterConfig {
    std::string plugin;               //!< e.g. "plugins/routing/sticky.lua"
    std::vector<Variant> variants;
    std::string default_variant;      //!< "" means the first listed
    Value config;                     //!< ctx.config (a map): salt, key, tenants, shadow, ...
    std::string name;                 //!< ctx.endpoint; the default hashing salt
    std::vector<std::string> issues;  //!< variants fed by a feature view with an open data issue
};

//! One field of a request, borrowed for the duration of a route() call.
struct Field {
    std::string_view name;
    std::variant<std::monostate, int64_t, double, bool, std::string_view> value;
};

//! Why a decision fell back to the default variant.
//! DataIssue: the plugin moved the request off the variant it would have chosen because that
//! variant reads a feature view with an open data issue (route() returned "data_issue" third).
//! Unavailable: the plugin chose a variant whose model could not be loaded (set_unavailable).
enum class Fallback : uint8_t { None, Error, UnknownVariant, Budget, Memory, DataIssue, Unavailable };
std::string_view fallback_name(Fallback f);

//! A routing decision: the variant index served, the shadows (bit i = variant i) and whether the
//! default was served because the plugin failed.
struct Decision {
    int variant = 0;
    uint64_t shadows = 0;
    Fallback fallback = Fallback::None;
};

//! Counters since the router was created.
struct RouterStats {
    int64_t decisions = 0;
    int64_t fallbacks = 0;
    int64_t errors = 0;
    int64_t unknown_variant = 0;
    int64_t budget = 0;
    int64_t memory = 0;
    int64_t data_issue = 0;   //!< rerouted off a variant with an open data issue (counted in fallbacks)
    int64_t unavailable = 0;  //!< chose a variant whose model could not be loaded (counted in fallbacks)
    std::vector<std::pair<std::string, int64_t>> served;  //!< per variant
    std::string last_error;
};

//! Runs a routing plugin's route(req, ctx). Thread-safe: each thread routes in its own Host;
//! req and ctx tables are reused across calls, so a decision allocates nothing in steady state.
//! A plugin that errors, returns an unknown variant or runs over budget never fails a request:
//! the default variant is served and the fallback is counted.
class Router {
public:
    //! Validates the configuration, loads the plugin once (PluginError if it does not load) and
    //! checks `config.config` against the schema the plugin declares (InvalidArgument, schema.hpp).
    explicit Router(RouterConfig config);
    ~Router();
    Router(const Router&) = delete;
    Router& operator=(const Router&) = delete;

    Decision route(std::span<const Field> request) { return route(request, Host::for_thread()); }
    Decision route(std::span<const Field> request, Host& host);

    //! Changes weights live (every later decision, every thread). Unknown names are refused.
    void set_weights(const std::vector<std::pair<std::string, double>>& weights);
    //! The variants currently fed by a feature view with an open data issue (ctx.issues).
    void set_issues(std::vector<std::string> variants);
    //! The variants whose model could not be loaded: a decision for one is served by the default
    //! variant (Fallback::Unavailable) and shadows to them are dropped. Unknown names are refused.
    void set_unavailable(const std::vector<std::string>& variants);

    RouterConfig config() const;
    const std::string& variant_name(int index) const { return names_.at(size_t(index)); }
    int variant_index(std::string_view name) const;
    RouterStats stats() const;

    struct Shared;  // config snapshot (internal)

private:
    void publish(std::shared_ptr<const Shared> next);

    uint64_t id_;
    std::vector<std::string> names_;  // fixed for the router's life
    int default_index_ = 0;
    mutable std::mutex mutex_;
    std::shared_ptr<const Shared> shared_;
    std::atomic<uint64_t> version_{0};
    std::atomic<int64_t> decisions_{0}, errors_{0}, unknown_{0}, budget_{0}, memory_{0}, data_issue_{0},
        unavailable_count_{0};
    std::atomic<uint64_t> unavailable_{0};  // bit i: variant i has no model
    std::unique_ptr<std::atomic<int64_t>[]> served_;
    std::string last_error_;
};

} // namespace keel::plugins

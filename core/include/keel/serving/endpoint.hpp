// core/include/keel/serving/endpoint.hpp
#pragma once

#include "keel/plugins/router.hpp"
#include "keel/serving/assignment_log.hpp"
#include "keel/serving/endpoint_definition.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::storage {
class Workspace;
}
namespace keel::features {
class FeatureStore;
}
namespace keel::registry {
struct ModelVersion;
}

namespace keel::serving {

//! A model the core cannot run (a scikit-learn estimator, any Python object), supplied by the host
//! through EndpointOptions::load_model. Called from any serving thread, possibly at once.
class VariantModel {
public:
    virtual ~VariantModel() = default;
    //! `n` rows of `width` model inputs (row-major, in signature order) -> n answers: what the
    //! endpoint serves (a classifier's probability of its last class, a regressor's value).
    virtual std::vector<double> predict(const double* rows, size_t n, size_t width) const = 0;
};

//! Loads a variant's model that the core does not serve itself: a version that is not
//! "keel-native", or a native one whose output the core does not give (`output` is the
//! definition's: "auto", "proba" or "predict"). Throws to refuse it.
using ModelLoader =
    std::function<std::shared_ptr<const VariantModel>(const registry::ModelVersion& version, const std::string& output)>;

struct EndpointOptions {
    AssignmentLogOptions log;
    //! How often what bumps no serving generation is looked for: online snapshots materialized by
    //! other processes, lineage edges that put a data issue upstream of a variant. 0: every request.
    std::chrono::milliseconds refresh_interval{500};
    //! Empty: only native models are served (a C++ host); the Python binding supplies one.
    ModelLoader load_model;
};

//! What an endpoint did since it was opened in this process.
struct EndpointStats {
    plugins::RouterStats router;   //!< of the current revision's router
    int64_t revision = 0;
    std::vector<std::string> issues;  //!< variants with an open data issue upstream (ctx.issues)
    int64_t missing = 0;           //!< requests answered with a model input missing
    int64_t stale = 0;             //!< ... with a model input past its view's TTL
    int64_t refused = 0;           //!< requests refused (no entity key, on_missing='error', bad field)
    int64_t shadow_errors = 0;     //!< shadow calls that failed (never seen by the caller)
    std::string last_shadow_error; //!< "variant: error" of the last one
    //! variant -> why its alias move was not followed; "" -> why the current revision is not served
    //! (it could not be loaded: the previous one goes on serving)
    std::vector<std::pair<std::string, std::string>> rejected;
    AssignmentLogStats log;
};

//! A saved endpoint served by the core: the current revision's variants are resolved through the
//! registry (an alias to the version it points at), native predictors loaded from the artifact
//! store (other models through the host's ModelLoader), and every request goes entity key -> online
//! features -> routing plugin -> inputs by name -> prediction (RequestPath) -> assignment log.
//!
//! What follows the workspace. A change-token check per request (Db::recent_change_token: this
//! handle's commits at once, other processes' within a millisecond); when the serving
//! generation moved (a new revision, a moved alias, a data issue opened or closed) the endpoint
//! reloads: a new revision gets a new router; a moved alias is followed per variant unless the
//! endpoint cannot feed the new version (that variant keeps serving its version, stats().rejected
//! says why); the `serves` lineage edges follow the versions served (live edges of versions no
//! longer served are ended, whoever wrote them); the variants whose model or whose online views
//! have an open data issue upstream are passed to the router (ctx.issues). Every `refresh_interval`
//! the same is checked without an announcement, and online snapshots of other processes are read.
//! A change that cannot be loaded (an alias moved onto, or a revision naming, a version whose artifact
//! is missing or corrupt) is not followed: what was served goes on serving and stats().rejected says
//! why, so a bad push degrades to the last good state instead of failing requests. A removal
//! (EndpointStore::remove) is the exception: from the reload that sees it, predict, predict_batch
//! and admits throw NotFound saying who removed it (keel-server answers 404) instead of serving
//! the revision loaded before; saving the endpoint again serves the new revision.
//!
//! Shadows the routing plugin asks for run after the answer, are logged with shadow=true and never
//! reach the answer: their errors are counted. Thread-safe. Every answer is appended to the
//! endpoint's assignment log (AssignmentLog: written within `max_age`, flushed when it closes).
class Endpoint {
public:
    //! Opens the saved endpoint `name` (NotFound when it is not defined). InvalidArgument when a
    //! variant cannot be fed or served (not native and no loader).
    Endpoint(std::shared_ptr<storage::Workspace> ws, std::string name, EndpointOptions options = {});
    Endpoint(std::shared_ptr<storage::Workspace> ws, std::string name, AssignmentLogOptions log_options);
    ~Endpoint();
    Endpoint(const Endpoint&) = delete;
    Endpoint& operator=(const Endpoint&) = delete;

    //! A served variant: its name and the version it resolved to.
    struct Served {
        std::string variant;
        std::string model;   //!< the version served, "churn/3"
        int64_t version = 0;
    };
    struct Answer {
        double prediction = 0;
        std::string variant;
        std::string model;   //!< the version served, "churn/3"
        int64_t version = 0;
        std::string fallback;  //!< "" when the routing plugin decided
        std::vector<std::string> missing, stale;  //!< model inputs without a fresh value
        std::vector<int64_t> items;  //!< top-k item ids, best first (a prediction table of items)
    };
    //! Serves one request. InvalidArgument when it lacks the entity key or (on_missing "error") an
    //! input has no fresh value (counted in stats().refused); NotFound once the endpoint is removed.
    Answer predict(std::span<const plugins::Field> request);

    //! Many requests in one call: one routing call each, one online lookup, one predict per variant,
    //! one append to the log. Answers equal predict()'s row by row.
    struct BatchAnswer {
        std::vector<Served> variants;               //!< per variant index, as served by this batch
        std::vector<plugins::Decision> decisions;   //!< per request
        std::vector<double> predictions;            //!< per request
        std::vector<std::vector<std::string>> missing, stale;  //!< per request
        std::vector<std::vector<int64_t>> items;    //!< per request; empty when no variant serves items
    };
    //! InvalidArgument ("request i: ...") refuses the whole batch, nothing logged.
    BatchAnswer predict_batch(std::span<const std::span<const plugins::Field>> requests);

    //! Picks up a new revision, moved aliases, data issues and online snapshots materialized by
    //! other processes now (those of this process are seen at once).
    void refresh();
    //! Saves a new revision with these weights and applies them at once (unknown names refused;
    //! NotFound when the endpoint was removed: weights do not bring it back).
    int64_t set_weights(const std::vector<std::pair<std::string, double>>& weights);

    const std::string& name() const { return name_; }
    int64_t revision() const;
    EndpointDefinition definition() const;
    //! The variants in definition order with the versions they serve now.
    std::vector<Served> variants() const;
    //! The entity key field (the sticky key logged with every assignment).
    std::string key() const;
    //! Whether a caller whose (verified) tenant is `tenant` may call the endpoint through a server:
    //! the definition lists no tenants, or lists this one. Follows a new revision first, so a tenant
    //! taken off the list is refused from the next request. Copies nothing.
    bool admits(std::string_view tenant);
    //! The request field that carries the tenant (the definition's tenant_field).
    std::string tenant_field() const;
    //! True when `variant` is served from a prediction table of top-k items (answers carry items).
    bool serves_items(std::string_view variant) const;
    //! The current revision's router (its stats, weights, default).
    std::shared_ptr<plugins::Router> router() const;
    //! True when every variant is served natively (no host model).
    bool native() const;
    EndpointStats stats() const;
    //! Why alias moves were not followed, and why the current revision is not served if it is not:
    //! "variant: why; ..." ("" when every change was followed).
    std::string rejected() const;
    //! Bumped whenever the set of rejected alias moves changes (a host warns about new ones).
    uint64_t rejections() const { return rejections_.load(std::memory_order_relaxed); }
    //! The assignment log every answer goes to (flush() it to read the rows back at once).
    AssignmentLog& log() { return log_; }

    struct State;  // one revision with its resolved models (internal)

private:
    std::shared_ptr<const State> current() const;
    void maybe_reload();
    void set_rejected(std::vector<std::pair<std::string, std::string>> rejected);  // mutex_ held
    void reload();
    void run_shadows(const State& s, uint64_t bits, std::span<const plugins::Field> request, int64_t ts);
    std::vector<std::string> variants_with_issues(const State& s) const;

    std::shared_ptr<storage::Workspace> ws_;
    std::string name_;
    EndpointOptions options_;
    std::unique_ptr<features::FeatureStore> features_;
    mutable std::mutex mutex_;   // guards state_, rejected_, last_shadow_error_
    std::mutex reload_mutex_;    // one reload at a time
    std::shared_ptr<const State> state_;
    std::vector<std::pair<std::string, std::string>> rejected_;
    std::string last_shadow_error_;
    std::atomic<uint64_t> token_{0};
    std::atomic<int64_t> generation_{0};
    std::atomic<int64_t> next_snapshot_check_{0};  // steady ms
    std::atomic<uint64_t> rejections_{0};
    std::atomic<int64_t> missing_{0}, stale_{0}, refused_{0}, shadow_errors_{0};
    AssignmentLog log_;  // last: destroyed first, so the final flush runs while everything else lives
};

} // namespace keel::serving

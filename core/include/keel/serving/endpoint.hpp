// core/include/keel/serving/endpoint.hpp
#pragma once

#include "keel/plugins/router.hpp"
#include "keel/serving/assignment_log.hpp"
#include "keel/serving/endpoint_definition.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace keel::storage {
class Workspace;
}
namespace keel::features {
class FeatureStore;
}

namespace keel::serving {

//! A saved endpoint served by the core alone, with no Python: the current revision's variants are
//! resolved through the registry (an alias to the version it points at), their native predictors
//! loaded from the artifact store, and every request goes entity key -> online features -> routing
//! plugin -> inputs by name -> prediction (RequestPath). A new revision or a moved alias is picked up
//! on the next request after the writer bumped the serving generation (one cheap change-token check
//! per request); an alias moved onto a version the endpoint cannot feed is not followed (the endpoint
//! keeps serving its version and rejected() says why). Only native models ("keel-native") can be
//! served here; output must be "auto" or what the model gives ("proba" for a classifier, "predict"
//! for a regressor). Thread-safe. Every answer is appended to the endpoint's assignment log
//! (AssignmentLog: written within `max_age` of the request, flushed when the endpoint closes);
//! shadow variants are not run here.
class Endpoint {
public:
    //! Opens the saved endpoint `name` (NotFound when it is not defined). InvalidArgument when a variant
    //! is not a native model or cannot be fed.
    Endpoint(std::shared_ptr<storage::Workspace> ws, std::string name, AssignmentLogOptions log_options = {});
    ~Endpoint();
    Endpoint(const Endpoint&) = delete;
    Endpoint& operator=(const Endpoint&) = delete;

    struct Answer {
        double prediction = 0;
        std::string variant;
        std::string model;   //!< the version served, "churn/3"
        int64_t version = 0;
        std::string fallback;  //!< "" when the routing plugin decided
        std::vector<std::string> missing, stale;  //!< model inputs without a fresh value
    };
    //! Serves one request. InvalidArgument when it lacks the entity key or (on_missing "error") an
    //! input has no fresh value.
    Answer predict(std::span<const plugins::Field> request);
    //! Picks up a new revision, moved aliases and online snapshots materialized by other processes
    //! now (those of this process are seen at once).
    void refresh();

    const std::string& name() const { return name_; }
    int64_t revision() const;
    EndpointDefinition definition() const;
    plugins::RouterStats stats() const;
    //! Why an alias move was not followed ("" when every move was).
    std::string rejected() const;
    //! The assignment log every answer goes to (flush() it to read the rows back at once).
    AssignmentLog& log() { return log_; }

    struct State;  // one revision with its resolved models (internal)

private:
    std::shared_ptr<const State> current() const;
    void reload();
    std::shared_ptr<storage::Workspace> ws_;
    std::string name_;
    std::unique_ptr<features::FeatureStore> features_;
    mutable std::mutex mutex_;   // guards state_ and rejected_
    std::mutex reload_mutex_;    // one reload at a time
    std::shared_ptr<const State> state_;
    std::string rejected_;
    std::atomic<uint64_t> token_{0};
    std::atomic<int64_t> generation_{0};
    AssignmentLog log_;  // last: destroyed first, so the final flush runs while everything else lives
};

} // namespace keel::serving

// core/include/keel/serving/endpoint_store.hpp
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace keel::storage {
class Workspace;
}

namespace keel::serving {

//! One saved revision of an endpoint's definition (JSON written and read by the caller).
struct EndpointRevision {
    std::string name;
    int64_t revision = 0;
    std::string definition_json;
    std::string created_by;
    int64_t created_at = 0;
};

//! One routing decision served by an endpoint: who, which variant and model version, and the answer.
struct Assignment {
    int64_t ts = 0;             //!< ms since the epoch
    std::string key;            //!< the sticky key's value (e.g. the player id), as text
    std::string tenant;
    std::string variant;
    std::string model;          //!< resolved ref, e.g. "churn/3"
    int64_t version = 0;
    std::string fallback;       //!< "" when the routing plugin decided
    bool shadow = false;        //!< a mirrored call whose answer was not served
    std::optional<double> prediction;
    int64_t revision = 0;       //!< endpoint revision that served it
    std::string missing;        //!< model inputs without a value (comma-separated), "" when none
    std::string stale;          //!< model inputs whose value was past its view's TTL
};

//! Saved endpoint definitions (with every revision) and the assignment log, in serving_* tables.
class EndpointStore {
public:
    explicit EndpointStore(storage::Workspace& ws);

    //! Saves a new revision (InvalidArgument for a malformed name: the rule models follow) unless `definition_json` equals the current one; returns the current revision.
    EndpointRevision save(const std::string& name, const std::string& definition_json);
    //! The newest revision; NotFound naming the endpoint when none is saved.
    EndpointRevision current(const std::string& name);
    //! The newest revision number, 0 when none (cheap: used to poll for changes).
    int64_t current_revision(const std::string& name);
    std::vector<EndpointRevision> revisions(const std::string& name);
    std::vector<std::string> names();

    //! Appends assignments in one transaction.
    void log(const std::string& name, const std::vector<Assignment>& rows);
    //! Oldest first; limit < 0 means all.
    std::vector<Assignment> assignments(const std::string& name, int64_t limit = -1);

private:
    storage::Workspace& ws_;
};

} // namespace keel::serving

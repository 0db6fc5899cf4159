// core/include/keel/serving/endpoint_store.hpp
#pragma once

#include "keel/serving/endpoint_definition.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace keel::storage {
class Workspace;
class Stmt;
struct ModuleSchema;
}

namespace keel::serving {

//! One saved revision of an endpoint's definition.
struct EndpointRevision {
    std::string name;
    int64_t revision = 0;
    EndpointDefinition definition;
    std::string created_by;
    int64_t created_at = 0;
};

//! Who removed an endpoint, when, and at which revision.
struct EndpointRemoval {
    int64_t revision = 0;
    std::string removed_by;
    int64_t removed_at = 0;
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
    int64_t latency_us = 0;     //!< time in the endpoint's request path (a batch's whole call for its rows)
    //! The model inputs sent, as a JSON object {name: value or null}, for the share of answers the
    //! definition's log_inputs asks for; "" for the others.
    std::string inputs;
};

//! Saved endpoint definitions (with every revision) and the assignment log, in serving_* tables.
//! Saving writes the endpoint's lineage in the revision's transaction: `feature_view:<view> -feeds->
//! endpoint:<name>` for every view read online (edges of views no longer read are ended) and
//! `model:<name>/<version> -serves-> endpoint:<name>` for the versions the variants resolve to at
//! save time (edges of versions no longer resolved are ended). An alias moved later is followed by
//! the hosting endpoint, which moves its serves edges then.
class EndpointStore {
public:
    explicit EndpointStore(storage::Workspace& ws);
    //! Its tables' migrations, applied when it is constructed (`keel admin migrate` lists them).
    static const storage::ModuleSchema& schema();

    //! Expands bare view names (expand_features), checks the definition against the workspace
    //! (check_definition: the plugin loads, every model ref resolves and can be fed) and saves it as a
    //! new revision with its lineage, all or nothing; an unchanged definition is no new revision
    //! (its lineage edges are still re-added). InvalidArgument for a malformed name (the rule models
    //! follow). Returns the current revision.
    EndpointRevision save(const std::string& name, const EndpointDefinition& definition);
    //! save() of a partial update over the current revision (EndpointDefinition::update): fields
    //! not given keep their saved values. The rule every caller (Python, CLI, server) shares.
    EndpointRevision define(const std::string& name, const plugins::Value& given);
    //! Re-adds the feeds edges of the views `definition` reads (no-op when live): a revision saved
    //! before endpoints recorded them gets them when it is opened.
    void link_views(const std::string& name, const EndpointDefinition& definition);
    //! `model:<name>/<version> -serves-> endpoint:<name>` for the versions served now (`served`: their
    //! lineage refs); every other live serves edge of the endpoint is ended, also those another
    //! process wrote (one ended meanwhile is fine). One transaction. A hosting endpoint calls it when
    //! it follows a moved alias.
    void link_serves(const std::string& name, const std::vector<std::string>& served);
    //! The newest revision; NotFound naming the endpoint when none is saved, or saying who removed it.
    EndpointRevision current(const std::string& name);
    //! The newest revision number, 0 when none or removed (cheap: used to poll for changes).
    int64_t current_revision(const std::string& name);
    //! Every revision ever saved, also of a removed endpoint (history).
    std::vector<EndpointRevision> revisions(const std::string& name);
    //! The endpoints not removed, by name.
    std::vector<std::string> names();
    //! names() in two halves: the query goes out now and, inside a write transaction on PostgreSQL,
    //! its rows arrive with the transaction's next wait; names(query) reads them.
    storage::Stmt query_names();
    static std::vector<std::string> names(storage::Stmt& query);
    //! Removes the endpoint: its revisions and assignment log stay as history, current() is then
    //! NotFound saying who removed it, names() leaves it out, and its feeds and serves lineage edges
    //! end, in one transaction. Hosting endpoints refuse its requests from their next reload on.
    //! Saving it again brings it back as revision N+1 (define() then starts from nothing). NotFound
    //! when it is not defined or already removed.
    void remove(const std::string& name);
    //! Set while the endpoint is removed (its newest revision was removed).
    std::optional<EndpointRemoval> removal(const std::string& name);

    //! Appends assignments in one transaction.
    void log(const std::string& name, const std::vector<Assignment>& rows);
    //! Oldest first; limit < 0 means all.
    std::vector<Assignment> assignments(const std::string& name, int64_t limit = -1);

private:
    std::optional<EndpointRevision> newest(const std::string& name);
    storage::Workspace& ws_;
};

} // namespace keel::serving

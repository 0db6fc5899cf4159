// core/include/keel/server/service.hpp
#pragma once

#include "keel/server/auth.hpp"
#include "keel/server/http.hpp"
#include "keel/server/metrics.hpp"
#include "keel/server/request_json.hpp"

#include <memory>
#include <string>
#include <vector>

namespace keel::storage {
class Workspace;
}

namespace keel::server {

struct ServiceOptions {
    std::vector<std::string> endpoints;  //!< hosted endpoints; empty: every saved one (opened on first use)
    AuthOptions auth;
    RequestLimits requests;
};

//! Keel's HTTP API over one workspace, with no Python in it:
//!
//!   POST /v1/endpoints/{name}/predict   one request object, or a list served as one batch
//!   POST /v1/features/online            online feature values for entity ids, PII masked by role
//!   GET  /v1/endpoints                  hosted endpoints, their revisions
//!   GET  /v1/endpoints/{name}           definition, revision, weights, counters
//!   GET  /healthz  /readyz  /metrics  /openapi.json
//!
//! Every route but /healthz, /readyz and /metrics needs a bearer token when auth is on. The
//! token's tenant is the tenant routing sees (a body's tenant field is overwritten), and an endpoint
//! whose definition lists tenants answers only those (403 otherwise). Errors are JSON
//! {"error": Kind, "message": ...} with the kind's status (400, 401, 403, 404, 409, 413, 500, 502).
class Service {
public:
    //! Opens the hosted endpoints (NotFound naming an unknown one).
    Service(std::shared_ptr<storage::Workspace> ws, ServiceOptions options);
    ~Service();
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    //! Authenticates, routes and answers; never throws.
    HttpResponse handle(const HttpRequest& request);
    //! The same after authentication, for a known principal (tests, embedders).
    HttpResponse handle(const HttpRequest& request, const Principal& caller);

    //! Every hosted endpoint loaded (what /readyz answers).
    bool ready() const;
    Metrics& metrics();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

} // namespace keel::server

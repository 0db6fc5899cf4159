// core/server/routes.hpp
#pragma once

#include "keel/common/error.hpp"
#include "keel/server/auth.hpp"
#include "keel/server/http.hpp"
#include "keel/server/request_json.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace keel::storage {
class Workspace;
}
namespace keel::features {
class FeatureStore;
}

namespace keel::server {

class EndpointHost;
class Metrics;

//! One authenticated call as the routes see it.
struct Call {
    const HttpRequest& request;
    const Principal& caller;  //!< caller.jwt: its tenant is verified (a static-token or anonymous
                              //!< caller is the operator and may name one in the body)
    std::string_view request_id;
    Metrics& metrics;
    std::string endpoint; //!< out: the endpoint's name once it was found (the metrics label)
    std::string variant;  //!< out: the variant served (the metrics label); "" for none or a batch
};

//! JSON answer with `status`.
HttpResponse json_response(int status, std::string body);
//! The JSON error answer of a keel::Error (its kind's status).
HttpResponse error_response(const Error& error);

//! POST /v1/endpoints/{name}/predict. Throws keel::Error (the service answers it).
HttpResponse predict(EndpointHost& host, const RequestLimits& limits, std::string_view name, Call& call);
//! GET /v1/endpoints: the hosted endpoints this caller's tenant may call.
HttpResponse list_endpoints(EndpointHost& host, Call& call);
//! GET /v1/endpoints/{name}: definition, revision, variants with the versions served, counters.
HttpResponse describe_endpoint(EndpointHost& host, std::string_view name, Call& call);

//! POST /v1/features/online: values, status, event time and age per entity; PII columns are
//! shown only when one of the caller's roles holds a grant. One FeatureStore per role, opened on
//! first use (a store's reads follow its workspace's role).
class FeatureRoutes {
public:
    explicit FeatureRoutes(std::shared_ptr<storage::Workspace> ws);
    ~FeatureRoutes();
    HttpResponse online(Call& call);
    //! The store that reads as `role` ("" for no role), opened on first use.
    features::FeatureStore& store(const std::string& role);

    struct Prepared;

private:
    //! What a request for these features by a caller with these roles needs (views, PII access,
    //! compiled readers), made once and kept until the workspace changes.
    std::shared_ptr<const Prepared> prepare(const std::vector<std::string>& features,
                                            const std::vector<std::string>& roles);

    std::shared_ptr<storage::Workspace> ws_;
    std::mutex mutex_;
    std::map<std::string, std::unique_ptr<features::FeatureStore>> stores_;
    std::mutex cache_mutex_;
    std::map<std::string, std::shared_ptr<const Prepared>> cache_;
};

} // namespace keel::server

// core/server/endpoint_host.hpp
#pragma once

#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::storage {
class Workspace;
}
namespace keel::serving {
class Endpoint;
}

namespace keel::server {

//! The endpoints one server hosts. Named ones are opened at start (an unknown or unservable one is
//! a start-up error). With no names, every saved endpoint is hosted: those saved now are opened at
//! start, one saved later on its first request; one that cannot be served by the core (a model
//! only Python runs) is reported by its requests and in /readyz, not fatal. Each serving::Endpoint
//! follows its own revisions, aliases and weights, so nothing here reloads.
class EndpointHost {
public:
    EndpointHost(std::shared_ptr<storage::Workspace> ws, std::vector<std::string> names);
    ~EndpointHost();

    //! The hosted endpoint; NotFound naming it when it is not hosted (or not saved), InvalidArgument
    //! saying why when it is saved but cannot be served here.
    std::shared_ptr<serving::Endpoint> find(std::string_view name);
    //! Every hosted endpoint, by name (in "every saved" mode: saved ones not opened yet are opened).
    std::vector<std::shared_ptr<serving::Endpoint>> all();
    //! Saved endpoints that could not be opened, with why.
    std::vector<std::pair<std::string, std::string>> unservable() const;
    //! Only the named endpoints are hosted.
    bool fixed() const { return fixed_; }

private:
    std::shared_ptr<serving::Endpoint> open(const std::string& name);

    std::shared_ptr<storage::Workspace> ws_;
    bool fixed_ = false;
    mutable std::shared_mutex mutex_;
    std::map<std::string, std::shared_ptr<serving::Endpoint>, std::less<>> open_;
    //! name -> (revision that failed, why): retried when a new revision is saved.
    std::map<std::string, std::pair<int64_t, std::string>, std::less<>> failed_;
};

} // namespace keel::server

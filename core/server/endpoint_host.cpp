// core/server/endpoint_host.cpp
#include "endpoint_host.hpp"

#include "keel/common/error.hpp"
#include "keel/serving/endpoint.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/storage/workspace.hpp"

#include <mutex>

namespace keel::server {

EndpointHost::EndpointHost(std::shared_ptr<storage::Workspace> ws, std::vector<std::string> names)
    : ws_(std::move(ws)), fixed_(!names.empty()) {
    if (fixed_) {
        for (const auto& name : names) open_.emplace(name, std::make_shared<serving::Endpoint>(ws_, name));
        return;
    }
    all();  // opens what is saved now; failures are kept in failed_
}

EndpointHost::~EndpointHost() = default;

std::shared_ptr<serving::Endpoint> EndpointHost::open(const std::string& name) {
    serving::EndpointStore store(*ws_);
    const int64_t revision = store.current_revision(name);
    if (revision == 0 && store.removal(name)) store.current(name);  // NotFound saying who removed it
    if (revision == 0)
        throw_error(ErrorKind::NotFound, "endpoint '{}' is not defined in workspace {}: define it with "
                    "ws.endpoint('{}', ...)", name, ws_->path().string(), name);
    std::unique_lock lock(mutex_);
    if (auto it = open_.find(name); it != open_.end()) return it->second;
    if (auto it = failed_.find(name); it != failed_.end() && it->second.first == revision)
        throw_error(ErrorKind::InvalidArgument, "endpoint '{}' cannot be served by keel-server: {}", name,
                    it->second.second);
    try {
        auto endpoint = std::make_shared<serving::Endpoint>(ws_, name);
        failed_.erase(name);
        return open_.emplace(name, std::move(endpoint)).first->second;
    } catch (const Error& e) {
        if (e.kind() == ErrorKind::NotFound) throw;
        failed_[name] = {revision, e.what()};
        throw_error(ErrorKind::InvalidArgument, "endpoint '{}' cannot be served by keel-server: {}", name, e.what());
    }
}

std::shared_ptr<serving::Endpoint> EndpointHost::find(std::string_view name) {
    {
        std::shared_lock lock(mutex_);
        if (auto it = open_.find(name); it != open_.end()) return it->second;
    }
    if (fixed_)
        throw_error(ErrorKind::NotFound, "endpoint '{}' is not served here (this server hosts only the endpoints "
                    "named at its start)", name);
    return open(std::string(name));
}

std::vector<std::shared_ptr<serving::Endpoint>> EndpointHost::all() {
    std::vector<std::string> names;
    if (fixed_) {
        std::shared_lock lock(mutex_);
        for (const auto& [name, _] : open_) names.push_back(name);
    } else {
        names = serving::EndpointStore(*ws_).names();
    }
    std::vector<std::shared_ptr<serving::Endpoint>> out;
    for (const auto& name : names) {
        try {
            out.push_back(find(name));
        } catch (const Error&) {
            // Unservable (kept in failed_) or deleted meanwhile: listed by unservable(), not here.
        }
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> EndpointHost::unservable() const {
    std::shared_lock lock(mutex_);
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [name, failure] : failed_) out.emplace_back(name, failure.second);
    return out;
}

} // namespace keel::server

// core/server/http_request.cpp
#include "keel/server/http.hpp"

namespace keel::server {

std::string_view HttpRequest::header(std::string_view lower_name) const {
    for (const auto& [name, value] : headers)
        if (name == lower_name) return value;
    return {};
}

std::string_view HttpRequest::path() const {
    std::string_view t = target;
    return t.substr(0, t.find('?'));
}

} // namespace keel::server

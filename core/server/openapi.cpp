// core/server/openapi.cpp: placeholder until the document lands.
#include "openapi.hpp"

namespace keel::server {
std::string openapi_document() {
    return R"({"openapi":"3.0.3","paths":{"/v1/endpoints/{name}/predict":{},"/v1/features/online":{}}})";
}
} // namespace keel::server

// core/server/openapi.hpp
#pragma once

#include <string>

namespace keel::server {

//! The OpenAPI 3 document of the server's routes (GET /openapi.json), built once.
std::string openapi_document();

} // namespace keel::server

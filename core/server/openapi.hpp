// core/server/openapi.hpp: the OpenAPI description of the server's routes (GET /openapi.json).
#pragma once

#include <string>

namespace keel::server {

//! The OpenAPI 3.0.3 document of the routes Service answers (keel/server/service.hpp), as JSON.
//! Built once, on the first call; every later call returns the same text.
std::string openapi_document();

} // namespace keel::server

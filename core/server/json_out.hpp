// core/server/json_out.hpp
#pragma once

#include "keel/common/error.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace keel::server {

//! Appends `text` as a JSON string (quotes, escapes; invalid UTF-8 bytes become U+FFFD so an answer
//! is always valid JSON, whatever a stored name holds).
void append_json_string(std::string& out, std::string_view text);
//! Appends the shortest text that reads back as `value`; null for NaN and infinities.
void append_json_number(std::string& out, double value);
void append_json_number(std::string& out, int64_t value);

//! {"error": "<Kind>", "message": "..."}: the body of every error answer.
std::string error_body(std::string_view kind, std::string_view message);
std::string error_body(const Error& error);

//! The HTTP status of an error kind: 400, 403, 404, 409, 500, 502.
int http_status(ErrorKind kind);

} // namespace keel::server

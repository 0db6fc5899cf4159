// core/include/keel/server/request_json.hpp
#pragma once

#include "keel/plugins/router.hpp"

#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace keel::server {

//! What a predict body may hold: one request object or a list of them (one batch).
struct RequestLimits {
    size_t max_rows = 10'000;      //!< requests in one batch
    size_t max_fields = 256;       //!< fields in one request
};

//! A parsed predict body. Fields point into `body` (names and strings without escapes, read in
//! place) or into `text` (the ones that needed unescaping), so the result is valid only while the
//! body it was parsed from lives, and the struct is moved, never copied.
struct ParsedRequests {
    bool batch = false;                                 //!< the body was a list
    std::vector<std::vector<plugins::Field>> rows;
    std::deque<std::string> text;
    ParsedRequests() = default;
    ParsedRequests(ParsedRequests&&) = default;
    ParsedRequests& operator=(ParsedRequests&&) = default;
    ParsedRequests(const ParsedRequests&) = delete;
};

//! Parses a predict body without recursion: request fields are numbers, strings, booleans or null
//! (objects and lists inside a request are refused, so nesting cannot exhaust the stack). Integers
//! beyond int64, invalid UTF-8, duplicate fields and trailing bytes are refused. InvalidArgument
//! names the byte offset, the request of a batch ("request 3: ", counting from 0), the field and
//! what is expected; nothing else is thrown (but std::bad_alloc). The result borrows from `body`
//! (see ParsedRequests).
ParsedRequests parse_predict_body(std::string_view body, const RequestLimits& limits = {});

} // namespace keel::server

// core/serving/json_value.hpp (private to core/serving)
#pragma once

#include "keel/plugins/value.hpp"

#include <string>
#include <string_view>

namespace keel::serving::detail {

//! Parses JSON text into a Value (objects keep their keys' order: a variants map lists the default
//! variant first). InvalidArgument
//! naming `what` and the parser's complaint when the text is not JSON or nests deeper than 32 levels.
plugins::Value parse_json(std::string_view text, std::string_view what);

//! Compact JSON with every object's keys sorted, so equal values always give equal text. NaN and
//! infinities have no JSON form: InvalidArgument naming `what`.
std::string dump_json(const plugins::Value& value, std::string_view what);

} // namespace keel::serving::detail

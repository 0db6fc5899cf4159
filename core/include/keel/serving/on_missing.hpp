// core/include/keel/serving/on_missing.hpp
#pragma once

#include <cstdint>
#include <string_view>

namespace keel::serving {

//! What an endpoint does when an input has no fresh value (unknown entity, null, past the view's
//! TTL, masked, or a request field that was not sent).
//! Error (the default): refuse the request, naming the inputs. Default: use the endpoint's declared
//! default for each such input. Flag: predict with NaN (trees route it down their missing-value
//! branch) and say so. Every answer lists its missing and stale inputs whatever the policy.
enum class OnMissing : uint8_t { Error, Default, Flag };
OnMissing parse_on_missing(std::string_view text);
std::string_view on_missing_name(OnMissing policy);

} // namespace keel::serving

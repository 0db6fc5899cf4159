// core/include/keel/common/names.hpp
#pragma once

#include <string_view>

namespace keel {

//! The one rule for names users give things (models, endpoints): 1-200 letters, digits, '_', '-'
//! and '.', not starting with '.'. So a name is safe in a ref ("churn/3", "churn@champion",
//! "endpoint:churn"), a URL path and a file name. InvalidArgument naming `what` and an example.
bool valid_name(std::string_view name);
void check_name(std::string_view name, std::string_view what, std::string_view example);

} // namespace keel

// core/common/names.cpp
#include "keel/common/names.hpp"

#include "keel/common/error.hpp"

#include <algorithm>
#include <cctype>

namespace keel {

bool valid_name(std::string_view name) {
    auto ok = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'; };
    return !name.empty() && name.size() <= 200 && name[0] != '.' && std::all_of(name.begin(), name.end(), ok);
}

void check_name(std::string_view name, std::string_view what, std::string_view example) {
    if (valid_name(name)) return;
    std::string shown(name.substr(0, 60));
    for (auto& c : shown)
        if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
    throw_error(ErrorKind::InvalidArgument,
                "{} name '{}'{} is malformed: use 1-200 letters, digits, '_', '-' and '.' (not starting with '.'; "
                "no '/', '@' or ':'), e.g. '{}'",
                what, shown, name.size() > 60 ? fmt::format("... ({} characters)", name.size()) : std::string(), example);
}

} // namespace keel

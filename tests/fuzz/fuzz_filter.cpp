// libFuzzer target: the run filter and order_by parsers (core/tracking/filter.cpp) on arbitrary text.
// Anything but a keel::Error (InvalidArgument) escaping, or a sanitizer report, is a bug.
#include "keel/common/error.hpp"
#include "keel/tracking/filter.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        for (const auto& term : keel::tracking::parse_filter(text)) {
            // A parsed term is whole: a key and an operator the SQL builder knows.
            if (term.op.empty()) __builtin_trap();
            if ((term.op == "IN" || term.op == "NOT IN") &&
                !std::holds_alternative<std::vector<std::string>>(term.value))
                __builtin_trap();
        }
    } catch (const keel::Error&) {
    }
    try {
        keel::tracking::parse_order_key(text);
    } catch (const keel::Error&) {
    }
    return 0;
}

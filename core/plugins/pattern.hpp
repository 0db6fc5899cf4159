// core/plugins/pattern.hpp
// Internal to core/plugins: the regular expressions of quality rules (pattern_share, schema
// arguments of type "pattern"), compiled by RE2 and cached. RE2's header stays in pattern.cpp.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace re2 {
class RE2;
}

namespace keel::plugins {

//! A compiled RE2 pattern: matching is linear in the text and memory is capped per pattern
//! (kPatternMaxMem), so no pattern can crash or stall the host.
class Pattern {
public:
    //! The cached compiled pattern (per thread, the most recent kPatternCacheSize kept), compiled on
    //! first use. Throws InvalidArgument naming the pattern and RE2's reason when it cannot be taken.
    static std::shared_ptr<const Pattern> get(std::string_view pattern);
    //! Empty when RE2 takes the pattern, else why not (RE2's reason, e.g. "invalid escape sequence: \1").
    static std::string error_of(std::string_view pattern);

    explicit Pattern(std::string_view pattern);
    ~Pattern();
    //! True when the pattern matches somewhere in `text` (anchor with ^ and $ to match all of it).
    bool search(std::string_view text) const;

private:
    std::unique_ptr<re2::RE2> re_;
};

inline constexpr size_t kPatternMaxMem = size_t(2) << 20;
inline constexpr size_t kPatternCacheSize = 16;
inline constexpr size_t kPatternMaxLength = 4096;

} // namespace keel::plugins

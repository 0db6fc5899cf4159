// core/plugins/pattern.cpp
#include "pattern.hpp"

#include "keel/common/error.hpp"

#include <re2/re2.h>

#include <deque>
#include <unordered_map>

namespace keel::plugins {

namespace {

RE2::Options options() {
    RE2::Options o;
    o.set_max_mem(int64_t(kPatternMaxMem));  // a pattern needing more is refused, not compiled
    o.set_log_errors(false);                 // errors come back to the caller, never to stderr
    return o;
}

} // namespace

Pattern::Pattern(std::string_view pattern) {
    if (pattern.size() > kPatternMaxLength)
        throw_error(ErrorKind::InvalidArgument, "pattern '{}...' cannot be used: it is longer than {} characters ({})",
                    pattern.substr(0, 60), kPatternMaxLength, pattern.size());
    re_ = std::make_unique<RE2>(re2::StringPiece(pattern.data(), pattern.size()), options());
    if (re_->error_code() == RE2::ErrorPatternTooLarge)
        throw_error(ErrorKind::InvalidArgument,
                    "pattern '{}' cannot be used: {} (its compiled form may take at most {} MiB: use fewer or "
                    "smaller repetitions)", pattern, re_->error(), kPatternMaxMem >> 20);
    if (!re_->ok())
        throw_error(ErrorKind::InvalidArgument,
                    "pattern '{}' cannot be used: {} (patterns are RE2 syntax: no backreferences or lookaround)",
                    pattern, re_->error());
}

Pattern::~Pattern() = default;

bool Pattern::search(std::string_view text) const {
    return RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

std::shared_ptr<const Pattern> Pattern::get(std::string_view pattern) {
    // Per thread, so no lock; a rule's pattern compiles once however many batches it checks.
    thread_local std::unordered_map<std::string, std::shared_ptr<const Pattern>> cache;
    thread_local std::deque<std::string> order;  // oldest first
    if (auto it = cache.find(std::string(pattern)); it != cache.end()) return it->second;
    auto compiled = std::make_shared<const Pattern>(pattern);
    if (cache.size() >= kPatternCacheSize) {
        cache.erase(order.front());
        order.pop_front();
    }
    order.emplace_back(pattern);
    cache.emplace(std::string(pattern), compiled);
    return compiled;
}

std::string Pattern::error_of(std::string_view pattern) {
    try {
        get(pattern);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

} // namespace keel::plugins

// core/include/keel/server/compact.hpp
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace keel::server {

//! The compact binary answer (`Accept: application/x-keel-compact`) for clients on slow links:
//! documented byte by byte in docs/compact.md, decoded by keel.compact in Python. Little-endian.
struct CompactAnswer {
    double prediction = 0;   //!< sent as float32
    int variant = 0;         //!< index in the endpoint's definition
    int64_t version = 0;     //!< model version served
    bool fallback = false;
    bool missing = false;    //!< an input had no fresh value
};

//! One answer: well under 16 bytes.
std::string encode_compact(const CompactAnswer& answer);
//! A batch: a count, then the answers.
std::string encode_compact_batch(std::span<const CompactAnswer> answers);
//! A batch of already encoded messages (answers or items: a batch from a prediction table of items).
std::string encode_compact_batch_messages(std::span<const std::string> messages);
//! Top-k item ids (a recommendation): a count, then varint-packed ids (delta-free, in rank order).
std::string encode_compact_items(std::span<const int64_t> items, int variant, int64_t version);

} // namespace keel::server

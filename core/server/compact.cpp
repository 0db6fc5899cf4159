// core/server/compact.cpp: the compact binary answer, byte by byte as docs/compact.md lays it out.
#include "keel/server/compact.hpp"

#include "keel/common/endian.hpp"
#include "keel/common/error.hpp"

#include <cmath>
#include <limits>

namespace keel::server {
namespace {

// The first byte: a tag in the low nibble, flags above it. Bits 6 and 7 stay 0 (a decoder refuses
// them): a later format revision sets them.
constexpr uint8_t kTagAnswer = 0x01;
constexpr uint8_t kTagBatch = 0x02;
constexpr uint8_t kTagItems = 0x03;
constexpr uint8_t kFlagFallback = 0x10;
constexpr uint8_t kFlagMissing = 0x20;

//! Unsigned LEB128: 7 bits a byte, least significant first, the high bit set on all but the last.
void put_varint(std::string& out, uint64_t value) {
    while (value >= 0x80) {
        out += static_cast<char>(static_cast<uint8_t>(value) | 0x80);
        value >>= 7;
    }
    out += static_cast<char>(value);
}

//! Zigzag: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..., so small negative ids stay one byte.
uint64_t zigzag(int64_t value) {
    return (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
}

void put_index(std::string& out, std::string_view what, int64_t value) {
    if (value < 0)
        throw_error(ErrorKind::InvalidArgument,
                    "compact answer: {} is {}, but the format carries it unsigned; a served answer has a "
                    "variant index and a model version of 0 or more",
                    what, value);
    put_varint(out, static_cast<uint64_t>(value));
}

void put_answer(std::string& out, const CompactAnswer& answer) {
    uint8_t head = kTagAnswer;
    if (answer.fallback) head |= kFlagFallback;
    if (answer.missing) head |= kFlagMissing;
    out += static_cast<char>(head);
    put_index(out, "the variant index", answer.variant);
    put_index(out, "the model version", answer.version);
    // A finite double beyond float32's range becomes an infinity of its sign, spelled out: the plain
    // conversion of an out-of-range value is undefined behaviour in C++.
    const double p = answer.prediction;
    constexpr float inf = std::numeric_limits<float>::infinity();
    const float value = std::isfinite(p) && std::fabs(p) > std::numeric_limits<float>::max() ? (p > 0 ? inf : -inf)
                                                                                            : static_cast<float>(p);
    char score[4];
    le::store(score, value);
    out.append(score, sizeof score);
}

} // namespace

std::string encode_compact(const CompactAnswer& answer) {
    std::string out;
    out.reserve(8);
    put_answer(out, answer);
    return out;
}

std::string encode_compact_batch(std::span<const CompactAnswer> answers) {
    std::string out;
    out.reserve(3 + answers.size() * 8);
    out += static_cast<char>(kTagBatch);
    put_varint(out, answers.size());
    for (const CompactAnswer& answer : answers) put_answer(out, answer);
    return out;
}

std::string encode_compact_batch_messages(std::span<const std::string> messages) {
    size_t size = 3;
    for (const auto& m : messages) size += m.size();
    std::string out;
    out.reserve(size);
    out += static_cast<char>(kTagBatch);
    put_varint(out, messages.size());
    for (const auto& m : messages) out += m;
    return out;
}

std::string encode_compact_items(std::span<const int64_t> items, int variant, int64_t version) {
    std::string out;
    out.reserve(5 + items.size() * 3);
    out += static_cast<char>(kTagItems);
    put_index(out, "the variant index", variant);
    put_index(out, "the model version", version);
    put_varint(out, items.size());
    for (int64_t item : items) put_varint(out, zigzag(item));
    return out;
}

} // namespace keel::server

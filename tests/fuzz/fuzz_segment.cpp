// libFuzzer target: the feature segment reader (core/features/segment.cpp) on arbitrary bytes.
// The checksum of a version 2 input is recomputed first, so mutations reach the structural checks
// behind it (the checksum is not a signature: those checks must hold on their own). A segment that
// opens is then read the way Keel's readers read it, every value, string and validity byte, and
// written back and reopened: the same rows and columns must come out.
#include "keel/common/error.hpp"
#include "keel/features/segment.hpp"

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

using keel::features::ColumnSpec;
using keel::features::DType;
using keel::features::Segment;

namespace {

// Folds every byte a reader may touch, so ASan sees each access.
uint64_t touch(const Segment& seg) {
    uint64_t sum = 0;
    for (const auto& col : seg.columns()) {
        const auto* values = static_cast<const uint8_t*>(col.values);
        if (col.dtype == DType::String) {
            for (size_t r = 0; r < seg.rows(); ++r) {
                const int64_t b = col.offsets[r], e = col.offsets[r + 1];
                if (e > b) sum += values[b] + values[e - 1];
            }
        } else {
            const size_t n = keel::features::dtype_width(col.dtype, col.dim) * seg.rows();
            for (size_t i = 0; i < n; ++i) sum += values[i];
        }
        for (size_t r = 0; r < seg.rows(); ++r) sum += col.is_valid(r);
    }
    return sum;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string bytes(reinterpret_cast<const char*>(data), size);
    uint32_t version = 0;
    if (size >= 12) std::memcpy(&version, bytes.data() + 8, 4);
    if (version == 2 && size >= 16) {
        const uint64_t sum = XXH3_64bits(bytes.data(), size - 8);
        std::memcpy(bytes.data() + size - 8, &sum, 8);
    }
    std::shared_ptr<const Segment> seg;
    try {
        seg = Segment::from_bytes(std::move(bytes));
    } catch (const keel::Error&) {
        return 0;
    }
    volatile uint64_t sink = touch(*seg);
    (void)sink;
    try {
        seg->check_columns({{"player_id", DType::Int64}, {"event_timestamp", DType::Timestamp}},
                           {{"spend", DType::Float64}, {"email", DType::String}, {"emb", DType::Vector, 2}});
    } catch (const keel::Error&) {
    }
    // What opens must write back and reopen as the same segment.
    auto again = Segment::from_bytes(Segment::to_bytes(seg->batch()));
    if (again->rows() != seg->rows() || again->columns().size() != seg->columns().size()) __builtin_trap();
    for (size_t c = 0; c < seg->columns().size(); ++c) {
        const auto &a = seg->columns()[c], &b = again->columns()[c];
        if (a.name != b.name || a.dtype != b.dtype || a.dim != b.dim) __builtin_trap();
        for (size_t r = 0; r < seg->rows(); ++r)
            if (a.is_valid(r) != b.is_valid(r)) __builtin_trap();
    }
    return 0;
}

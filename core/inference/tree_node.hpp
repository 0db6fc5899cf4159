// core/inference/tree_node.hpp: the node of Keel's general tree layout, shared by the tree walkers.
#pragma once

#include <cstdint>

namespace keel::inference::detail {

// 16 bytes, four to a cache line. Children are adjacent (right = left + 1) after renumbering in
// breadth-first order; a leaf has left == 0 and keeps its value in `threshold` (one value per leaf)
// or its index into the leaf values (several, e.g. class distributions); a leaf's meta is 0.
// When a walk compares floats, a split's `threshold` holds the float's bits in its first four bytes.
struct Node {
    double threshold;
    uint32_t meta;
    int32_t left;
};
static_assert(sizeof(Node) == 16);

constexpr uint32_t kFeatureMask = (1u << 24) - 1;
constexpr uint32_t kDefaultLeft = 1u << 24;
constexpr uint32_t kCategorical = 1u << 25;
constexpr uint32_t kMissingShift = 26;  // 2 bits: 0 NaN goes the default way; 1 NaN is 0.0; 2 zero or NaN default
constexpr uint32_t kMissingMask = 3u << kMissingShift;

} // namespace keel::inference::detail

// core/inference/perfect_forest.cpp: building and walking complete, interleaved trees.
#include "perfect_forest.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

namespace keel::inference::detail {

namespace {

constexpr uint32_t kGroup = 8;       // trees interleaved together, and walked together for one row
constexpr uint32_t kLanes = 16;      // rows walked together through one tree in a batch
constexpr uint32_t kMaxDepth = 16;   // 2^16 leaves a tree; deeper trees keep the general layout

template <typename V>
V threshold_of(const Node& n) {
    if constexpr (std::is_same_v<V, float>) {
        float f;
        std::memcpy(&f, &n.threshold, sizeof f);
        return f;
    } else {
        return n.threshold;
    }
}

// 1 when v goes right. Without missing values both rules reduce to one comparison; a padding split
// (NaN threshold, missing values left) fails it and so sends everything left.
template <typename V, bool Strict, bool Missing>
inline uint32_t go_right(V v, V t, uint16_t feature) {
    if constexpr (!Missing) {
        return Strict ? v >= t : v > t;
    } else {
        uint32_t missing_left = feature >> 15;
        uint32_t right_if_left = Strict ? v >= t : v > t;          // NaN: false
        uint32_t right_if_right = Strict ? !(v < t) : !(v <= t);   // NaN: true
        return (right_if_left & missing_left) | (right_if_right & (missing_left ^ 1u));
    }
}

template <typename V>
bool has_missing(const V* x, size_t count) {
    bool any = false;
    for (size_t i = 0; i < count; ++i) any |= std::isnan(x[i]);
    return any;
}

} // namespace

template <typename V>
std::unique_ptr<PerfectForest<V>> PerfectForest<V>::build(const std::vector<Node>& nodes,
                                                          const std::vector<uint32_t>& tree_start,
                                                          const std::vector<uint32_t>& tree_depth,
                                                          const std::vector<uint32_t>& tree_output, size_t n_inputs,
                                                          size_t n_raw, size_t leaf_width,
                                                          const std::vector<double>& leaf_values) {
    if (n_inputs >= kLeft || tree_output.empty()) return nullptr;
    auto f = std::make_unique<PerfectForest>();
    f->n_inputs_ = n_inputs;
    f->n_raw_ = n_raw;
    f->leaf_width_ = leaf_width;
    if (leaf_width > 1) f->leaf_values_ = leaf_values;
    f->output_ = tree_output;
    size_t n_trees = tree_output.size(), splits = 0, leaves = 0;
    for (uint32_t first = 0; first < n_trees; first += kGroup) {
        Group g{first, static_cast<uint32_t>(std::min<size_t>(kGroup, n_trees - first)), 0, splits, leaves};
        for (uint32_t k = 0; k < g.size; ++k) g.depth = std::max(g.depth, tree_depth[first + k]);
        if (g.depth > kMaxDepth) return nullptr;
        splits += static_cast<size_t>(g.size) * ((size_t{1} << g.depth) - 1);
        leaves += static_cast<size_t>(g.size) << g.depth;
        f->groups_.push_back(g);
    }
    // Padding pays while the padded forest is no larger than twice the general layout.
    size_t bytes = splits * (sizeof(V) + sizeof(uint16_t)) + leaves * sizeof(double);
    if (bytes > 2 * nodes.size() * sizeof(Node)) return nullptr;

    f->split_threshold_.resize(splits);
    f->split_feature_.resize(splits);
    f->leaf_.resize(leaves);
    for (const Group& g : f->groups_) {
        for (uint32_t k = 0; k < g.size; ++k) {
            const Node* tree = nodes.data() + tree_start[g.first_tree + k];
            // Complete-tree position `pos` at `level` takes source node `src`; a leaf above the last
            // level becomes padding splits over copies of itself.
            auto fill = [&](auto& self, int32_t src, uint32_t level, size_t pos) -> void {
                const Node& n = tree[src];
                if (level == g.depth) {
                    f->leaf_[g.leaves + (pos - ((size_t{1} << g.depth) - 1)) * g.size + k] = n.threshold;
                    return;
                }
                size_t at = g.splits + pos * g.size + k;
                if (n.left == 0) {
                    f->split_threshold_[at] = std::numeric_limits<V>::quiet_NaN();
                    f->split_feature_[at] = kLeft;
                    self(self, src, level + 1, 2 * pos + 1);
                    self(self, src, level + 1, 2 * pos + 2);
                } else {
                    f->split_threshold_[at] = threshold_of<V>(n);
                    f->split_feature_[at] = static_cast<uint16_t>((n.meta & kFeatureMask) |
                                                                  ((n.meta & kDefaultLeft) ? kLeft : 0));
                    self(self, n.left, level + 1, 2 * pos + 1);
                    self(self, n.left + 1, level + 1, 2 * pos + 2);
                }
            };
            fill(fill, 0, 0, 0);
        }
    }
    return f;
}

// One row through eight trees in lock step: eight independent chains of loads hide each other's latency.
template <typename V>
template <bool Strict, bool Missing, bool Wide>
void PerfectForest<V>::walk_row8(const Group& g, const V* x, double* out) const {
    const V* threshold = split_threshold_.data() + g.splits;
    const uint16_t* feature = split_feature_.data() + g.splits;
    uint32_t idx[kGroup] = {};
    for (uint32_t d = 0; d < g.depth; ++d) {
        for (uint32_t k = 0; k < kGroup; ++k) {
            size_t at = idx[k] * kGroup + k;
            uint16_t f = feature[at];
            idx[k] = 2 * idx[k] + 1 + go_right<V, Strict, Missing>(x[f & (kLeft - 1)], threshold[at], f);
        }
    }
    const double* leaf = leaf_.data() + g.leaves;
    uint32_t first_leaf = (1u << g.depth) - 1;
    for (uint32_t k = 0; k < kGroup; ++k)
        add_leaf<Wide>(leaf[(idx[k] - first_leaf) * kGroup + k], out + output_[g.first_tree + k]);
}

template <typename V>
template <bool Strict, bool Missing, bool Wide>
void PerfectForest<V>::walk_row(const Group& g, uint32_t k, const V* x, double* out) const {
    const V* threshold = split_threshold_.data() + g.splits;
    const uint16_t* feature = split_feature_.data() + g.splits;
    size_t idx = 0;
    for (uint32_t d = 0; d < g.depth; ++d) {
        size_t at = idx * g.size + k;
        uint16_t f = feature[at];
        idx = 2 * idx + 1 + go_right<V, Strict, Missing>(x[f & (kLeft - 1)], threshold[at], f);
    }
    size_t leaf = idx - ((size_t{1} << g.depth) - 1);
    add_leaf<Wide>(leaf_[g.leaves + leaf * g.size + k], out + output_[g.first_tree + k]);
}

// Sixteen rows through one tree in lock step (the batch path).
template <typename V>
template <bool Strict, bool Missing, bool Wide>
void PerfectForest<V>::walk_rows16(const Group& g, uint32_t k, const V* x, double* out) const {
    const V* threshold = split_threshold_.data() + g.splits;
    const uint16_t* feature = split_feature_.data() + g.splits;
    uint32_t idx[kLanes] = {};
    for (uint32_t d = 0; d < g.depth; ++d) {
        for (uint32_t r = 0; r < kLanes; ++r) {
            size_t at = idx[r] * g.size + k;
            uint16_t f = feature[at];
            V v = x[r * n_inputs_ + (f & (kLeft - 1))];
            idx[r] = 2 * idx[r] + 1 + go_right<V, Strict, Missing>(v, threshold[at], f);
        }
    }
    const double* leaf = leaf_.data() + g.leaves;
    uint32_t first_leaf = (1u << g.depth) - 1, o = output_[g.first_tree + k];
    for (uint32_t r = 0; r < kLanes; ++r)
        add_leaf<Wide>(leaf[(idx[r] - first_leaf) * g.size + k], out + r * n_raw_ + o);
}

template <typename V>
template <bool Strict>
void PerfectForest<V>::add(const V* x, size_t n, double* out) const {
    if (leaf_width_ == 1) add_rows<Strict, false>(x, n, out);
    else add_rows<Strict, true>(x, n, out);
}

template <typename V>
template <bool Strict, bool Wide>
void PerfectForest<V>::add_rows(const V* x, size_t n, double* out) const {
    // One row through tree k of group g, by the rule its missing values need.
    auto one = [&](const Group& g, uint32_t k, const V* row, double* o, bool missing) {
        if (missing) walk_row<Strict, true, Wide>(g, k, row, o);
        else walk_row<Strict, false, Wide>(g, k, row, o);
    };
    if (n < kLanes) {
        for (size_t i = 0; i < n; ++i) {
            const V* row = x + i * n_inputs_;
            double* o = out + i * n_raw_;
            bool missing = has_missing(row, n_inputs_);
            for (const Group& g : groups_) {
                if (g.size == kGroup && missing) walk_row8<Strict, true, Wide>(g, row, o);
                else if (g.size == kGroup) walk_row8<Strict, false, Wide>(g, row, o);
                else for (uint32_t k = 0; k < g.size; ++k) one(g, k, row, o, missing);
            }
        }
        return;
    }
    // Lanes of sixteen rows, each checked once for missing values; the rows left over walk one by one.
    size_t lanes = n / kLanes;
    thread_local std::vector<uint8_t> lane_missing;
    lane_missing.resize(lanes + 1);
    for (size_t l = 0; l < lanes; ++l)
        lane_missing[l] = has_missing(x + l * kLanes * n_inputs_, kLanes * n_inputs_);
    lane_missing[lanes] = has_missing(x + lanes * kLanes * n_inputs_, (n - lanes * kLanes) * n_inputs_);
    for (const Group& g : groups_) {
        for (uint32_t k = 0; k < g.size; ++k) {
            for (size_t l = 0; l < lanes; ++l) {
                const V* rows = x + l * kLanes * n_inputs_;
                double* o = out + l * kLanes * n_raw_;
                if (lane_missing[l]) walk_rows16<Strict, true, Wide>(g, k, rows, o);
                else walk_rows16<Strict, false, Wide>(g, k, rows, o);
            }
            for (size_t i = lanes * kLanes; i < n; ++i)
                one(g, k, x + i * n_inputs_, out + i * n_raw_, lane_missing[lanes]);
        }
    }
}

template class PerfectForest<float>;
template class PerfectForest<double>;
template void PerfectForest<float>::add<false>(const float*, size_t, double*) const;
template void PerfectForest<float>::add<true>(const float*, size_t, double*) const;
template void PerfectForest<double>::add<false>(const double*, size_t, double*) const;
template void PerfectForest<double>::add<true>(const double*, size_t, double*) const;

} // namespace keel::inference::detail

// core/inference/perfect_forest.hpp: shallow tree ensembles laid out as complete, interleaved trees.
#pragma once

#include "tree_node.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace keel::inference::detail {

//! Ensembles of shallow trees with plain numeric splits (XGBoost, LightGBM without categorical or
//! zero-as-missing rules, scikit-learn forests and boosting) as complete trees. A tree padded to depth D keeps
//! 2^D - 1 splits, each a threshold and a feature with no child links (node i's children are 2i+1 and
//! 2i+2), and 2^D leaf values; a padding split sends every value left. Eight consecutive trees share
//! one depth and are interleaved node by node, so one index reaches the same node of all eight and
//! their top levels share cache lines. A row without missing values walks a tree with one comparison
//! per level and no branch; the general walk's node is 16 bytes, a split here is 6 (float) or 10.
template <typename V>
class PerfectForest {
public:
    //! The forest for these trees (breadth-first Node arrays with `V` thresholds; a leaf holds its
    //! value, or with `leaf_width` > 1 its index into `leaf_values`), or null when they are too deep
    //! or too sparse for padding to pay.
    static std::unique_ptr<PerfectForest> build(const std::vector<Node>& nodes, const std::vector<uint32_t>& tree_start,
                                                const std::vector<uint32_t>& tree_depth,
                                                const std::vector<uint32_t>& tree_output, size_t n_inputs,
                                                size_t n_raw, size_t leaf_width,
                                                const std::vector<double>& leaf_values);

    //! Adds every tree's leaf to `out` (n rows of n_raw sums), tree by tree in order, so the sums are
    //! the general walk's to the last bit. Strict: a split sends v left when v < t (else v <= t).
    template <bool Strict>
    void add(const V* x, size_t n, double* out) const;

private:
    struct Group {
        uint32_t first_tree, size, depth;
        size_t splits, leaves;  // offsets into split_* and leaf_
    };
    static constexpr uint16_t kLeft = 0x8000;  // in split_feature_: missing values go left

    // Wide: several values a leaf (a compile-time choice: a branch per leaf costs the boosters ~10%).
    template <bool Wide>
    void add_leaf(double leaf, double* out) const {
        if constexpr (!Wide) {
            *out += leaf;
        } else {
            const double* v = leaf_values_.data() + static_cast<size_t>(leaf) * leaf_width_;
            for (size_t j = 0; j < leaf_width_; ++j) out[j] += v[j];
        }
    }
    template <bool Strict, bool Wide>
    void add_rows(const V* x, size_t n, double* out) const;
    template <bool Strict, bool Missing, bool Wide>
    void walk_row8(const Group& g, const V* x, double* out) const;
    template <bool Strict, bool Missing, bool Wide>
    void walk_row(const Group& g, uint32_t k, const V* x, double* out) const;
    template <bool Strict, bool Missing, bool Wide>
    void walk_rows16(const Group& g, uint32_t k, const V* x, double* out) const;

    size_t n_inputs_ = 0, n_raw_ = 0, leaf_width_ = 1;
    std::vector<Group> groups_;
    std::vector<V> split_threshold_;
    std::vector<uint16_t> split_feature_;
    std::vector<double> leaf_;         // a value, or with several a leaf an index into leaf_values_
    std::vector<double> leaf_values_;  // leaf_width_ values a leaf (class distributions)
    std::vector<uint32_t> output_;  // per tree: the raw output it adds to
};

extern template class PerfectForest<float>;
extern template class PerfectForest<double>;

} // namespace keel::inference::detail

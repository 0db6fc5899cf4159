// core/inference/trees.cpp: tree ensembles (scikit-learn, LightGBM, XGBoost): the general node layout, and
// the choice of the complete-tree layout (perfect_forest.cpp) for shallow trees with plain splits.
#include "models.hpp"
#include "perfect_forest.hpp"
#include "tree_node.hpp"

#include "keel/common/error.hpp"
#include "keel/inference/record_keys.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <type_traits>

namespace keel::inference::detail {

namespace {

#ifndef KEEL_TREE_LANES
#define KEEL_TREE_LANES 16
#endif

enum class Compare { Le, LeFloat, LtFloat };

class Trees : public Model {
public:
    Trees(const Record& r, size_t n_in) : n_in_(n_in) {
        const auto& offsets = ints(r, keys::kTreeOffsets);
        const auto& outputs = ints(r, keys::kTreeOutput);
        const auto& feature = ints(r, keys::kNodeFeature);
        const auto& threshold = reals(r, keys::kNodeThreshold);
        const auto& left = ints(r, keys::kNodeLeft);
        const auto& right = ints(r, keys::kNodeRight);
        const auto& value = reals(r, keys::kNodeValue);
        width_ = static_cast<size_t>(int_or(r, keys::kTreeLeafWidth, 1));
        n_raw_ = static_cast<size_t>(int_of(r, keys::kTreeNRaw));
        // Bound both by the leaf values the record holds before anything is sized by them (every
        // raw output is written by some leaf; a negative count turns huge as size_t).
        if (n_raw_ == 0 || n_raw_ > value.size() || width_ == 0 || width_ > n_raw_)
            throw_error(ErrorKind::InvalidArgument,
                        "tree ensemble: {} raw outputs with leaves of width {} do not fit its {} leaf values",
                        int64_t(n_raw_), int64_t(width_), value.size());
        base_ = has(r, keys::kTreeBase) ? reals(r, keys::kTreeBase) : std::vector<double>(n_raw_, 0.0);
        scale_ = real_or(r, keys::kTreeScale, 1.0) / real_or(r, keys::kTreeDivisor, 1.0);
        auto cmp = string_or(r, keys::kTreeCompare, "le");
        if (cmp == "le") compare_ = Compare::Le;
        else if (cmp == "le_float") compare_ = Compare::LeFloat;
        else if (cmp == "lt_float") compare_ = Compare::LtFloat;
        else throw_error(ErrorKind::InvalidArgument, "unknown tree comparison '{}': expected le, le_float or lt_float", cmp);

        size_t n_nodes = feature.size();
        if (n_raw_ == 0 || width_ == 0 || base_.size() != n_raw_)
            throw_error(ErrorKind::InvalidArgument, "tree ensemble: {} raw outputs with {} base values", n_raw_,
                        base_.size());
        if (threshold.size() != n_nodes || left.size() != n_nodes || right.size() != n_nodes ||
            value.size() != n_nodes * width_)
            throw_error(ErrorKind::InvalidArgument, "tree ensemble: node arrays of different lengths ({} features, {} "
                        "thresholds, {} left, {} right, {} values for leaf width {})",
                        n_nodes, threshold.size(), left.size(), right.size(), value.size(), width_);
        if (offsets.empty() || offsets.front() != 0 || static_cast<size_t>(offsets.back()) != n_nodes ||
            outputs.size() + 1 != offsets.size())
            throw_error(ErrorKind::InvalidArgument, "tree ensemble: tree offsets do not cover the {} nodes", n_nodes);
        auto opt = [&](std::string_view key) { return has(r, key) ? ints(r, key) : std::vector<int64_t>(n_nodes, 0); };
        auto default_left = opt(keys::kNodeDefaultLeft);
        auto missing = opt(keys::kNodeMissing);
        std::vector<int64_t> category = has(r, keys::kNodeCategory) ? ints(r, keys::kNodeCategory)
                                                                 : std::vector<int64_t>(n_nodes, -1);
        if (default_left.size() != n_nodes || missing.size() != n_nodes || category.size() != n_nodes)
            throw_error(ErrorKind::InvalidArgument, "tree ensemble: node flag arrays must have {} entries", n_nodes);
        if (has(r, keys::kCatOffsets)) {
            cat_offsets_ = ints(r, keys::kCatOffsets);
            for (auto w : ints(r, keys::kCatWords)) cat_words_.push_back(static_cast<uint32_t>(w));
            // Sets are slices [offsets[s], offsets[s + 1]) of the words: start at 0, never go back.
            bool ordered = !cat_offsets_.empty() && cat_offsets_.front() == 0 &&
                           std::is_sorted(cat_offsets_.begin(), cat_offsets_.end());
            if (!ordered || static_cast<size_t>(cat_offsets_.back()) != cat_words_.size())
                throw_error(ErrorKind::InvalidArgument, "tree ensemble: category offsets do not cover the words");
        }

        size_t n_trees = outputs.size();
        tree_start_.reserve(n_trees + 1);
        nodes_.reserve(n_nodes);
        for (size_t t = 0; t < n_trees; ++t) {
            int64_t begin = offsets[t], end = offsets[t + 1];
            if (end <= begin) throw_error(ErrorKind::InvalidArgument, "tree {} has no nodes", t);
            if (end > static_cast<int64_t>(n_nodes))
                throw_error(ErrorKind::InvalidArgument, "tree {} ends at node {} of {}", t, end, n_nodes);
            if (outputs[t] < 0 || static_cast<size_t>(outputs[t]) + width_ > n_raw_)
                throw_error(ErrorKind::InvalidArgument, "tree {} writes output {} of {}", t, outputs[t], n_raw_);
            tree_output_.push_back(static_cast<uint32_t>(outputs[t]));
            tree_start_.push_back(static_cast<uint32_t>(nodes_.size()));
            // Breadth-first renumbering so that siblings sit side by side.
            size_t base = nodes_.size();
            std::deque<std::pair<int64_t, size_t>> queue{{0, base}};
            nodes_.push_back({});
            size_t visited = 0;
            while (!queue.empty()) {
                auto [src, dst] = queue.front();
                queue.pop_front();
                if (++visited > static_cast<size_t>(end - begin))
                    throw_error(ErrorKind::InvalidArgument, "tree {} is not a tree (a node is reached twice)", t);
                size_t g = static_cast<size_t>(begin + src);
                Node n{};
                if (feature[g] < 0) {
                    n.left = 0;
                    if (width_ == 1) {
                        n.threshold = value[g];
                    } else {
                        n.threshold = static_cast<double>(leaf_values_.size() / width_);
                        leaf_values_.insert(leaf_values_.end(), value.begin() + g * width_,
                                            value.begin() + (g + 1) * width_);
                    }
                } else {
                    if (static_cast<size_t>(feature[g]) >= n_in_)
                        throw_error(ErrorKind::InvalidArgument, "tree {} splits on feature {} of {}", t, feature[g], n_in_);
                    auto l = left[g], rr = right[g];
                    if (l <= 0 || rr <= 0 || l >= end - begin || rr >= end - begin)
                        throw_error(ErrorKind::InvalidArgument, "tree {} node {} has children {} and {} out of range", t,
                                    src, l, rr);
                    n.meta = static_cast<uint32_t>(feature[g]);
                    if (default_left[g]) n.meta |= kDefaultLeft;
                    if (missing[g] < 0 || missing[g] > 2)
                        throw_error(ErrorKind::InvalidArgument, "tree {} node {} has missing type {}", t, src, missing[g]);
                    uint32_t miss = static_cast<uint32_t>(missing[g]);
                    if (miss == 1 && category[g] < 0) {
                        // LightGBM's "None": NaN is read as 0.0, so it goes where 0.0 goes.
                        miss = 0;
                        n.meta = (n.meta & ~kDefaultLeft) | (0.0 <= threshold[g] ? kDefaultLeft : 0u);
                    }
                    n.meta |= miss << kMissingShift;
                    if (miss != 0) complex_ = true;
                    if (category[g] >= 0) {
                        if (static_cast<size_t>(category[g]) + 1 >= cat_offsets_.size())
                            throw_error(ErrorKind::InvalidArgument, "tree {} node {} uses category set {} of {}", t, src,
                                        category[g], cat_offsets_.empty() ? 0 : cat_offsets_.size() - 1);
                        n.meta |= kCategorical;
                        n.threshold = static_cast<double>(category[g]);
                        complex_ = true;
                    } else {
                        n.threshold = threshold[g];
                    }
                    size_t child = nodes_.size();
                    n.left = static_cast<int32_t>(child - base);
                    nodes_.push_back({});
                    nodes_.push_back({});
                    queue.emplace_back(l, child);
                    queue.emplace_back(rr, child + 1);
                }
                nodes_[dst] = n;
            }
            depth_sum_ += std::log2(static_cast<double>(nodes_.size() - base) + 1.0);
            tree_depth_.push_back(depth_of(nodes_.data() + base));
        }
        tree_start_.push_back(static_cast<uint32_t>(nodes_.size()));
        for (size_t t = 0; t + 8 <= n_trees; t += 8)
            group_depth_.push_back(*std::max_element(tree_depth_.begin() + t, tree_depth_.begin() + t + 8));
        // Float comparisons without categorical or LightGBM missing rules walk a float copy of the
        // rows against float thresholds: the same decisions, half the conversions on the path.
        use_float_ = compare_ != Compare::Le && !complex_;
        if (use_float_) {
            for (auto& n : nodes_) {
                if (n.left == 0) continue;
                double t = n.threshold;
                float f = static_cast<float>(t);
                if (compare_ == Compare::LeFloat && static_cast<double>(f) > t)
                    f = std::nextafter(f, -std::numeric_limits<float>::infinity());  // x <= t iff x <= f
                if (compare_ == Compare::LtFloat && static_cast<double>(f) < t)
                    f = std::nextafter(f, std::numeric_limits<float>::infinity());   // x < t iff x < f
                n.threshold = 0;
                std::memcpy(&n.threshold, &f, sizeof f);
            }
        }
        // Shallow trees of plain splits walk as complete trees when padding pays.
        if (use_float_)
            perfect_float_ = PerfectForest<float>::build(nodes_, tree_start_, tree_depth_, tree_output_, n_in_,
                                                         n_raw_, width_, leaf_values_);
        else if (!complex_)
            perfect_double_ = PerfectForest<double>::build(nodes_, tree_start_, tree_depth_, tree_output_, n_in_,
                                                           n_raw_, width_, leaf_values_);
    }

    size_t n_inputs() const override { return n_in_; }
    size_t n_raw() const override { return n_raw_; }
    double cost_per_row() const override { return 4.0 * depth_sum_; }

    void raw(const double* x, size_t n, double* out, Scratch&) const override {
        if (use_float_) {
            thread_local std::vector<float> xf;
            if (xf.size() < n * n_in_) xf.resize(n * n_in_);
            for (size_t i = 0; i < n * n_in_; ++i) xf[i] = static_cast<float>(x[i]);
            if (compare_ == Compare::LeFloat) run_fast<float, false>(xf.data(), n, out);
            else run_fast<float, true>(xf.data(), n, out);
            return;
        }
        if (!complex_) {
            run_fast<double, false>(x, n, out);
            return;
        }
        switch (compare_) {
        case Compare::Le: run_general<Compare::Le>(x, n, out); break;
        case Compare::LeFloat: run_general<Compare::LeFloat>(x, n, out); break;
        case Compare::LtFloat: run_general<Compare::LtFloat>(x, n, out); break;
        }
    }

private:
    template <Compare C>
    static bool goes_left(double v, double t) {
        if constexpr (C == Compare::Le) return v <= t;
        else if constexpr (C == Compare::LeFloat) return static_cast<double>(static_cast<float>(v)) <= t;
        else return static_cast<double>(static_cast<float>(v)) < t;
    }

    bool category_left(const Node& n, double v) const {
        if (std::isnan(v)) return n.meta & kDefaultLeft;
        // Missing type 1 on a categorical node: invalid categories follow missing values (scikit-learn);
        // otherwise they go right (LightGBM).
        bool invalid_left = ((n.meta & kMissingMask) >> kMissingShift) == 1 && (n.meta & kDefaultLeft);
        if (v < 0 || v >= 2147483647.0) return invalid_left;
        auto c = static_cast<uint32_t>(static_cast<int32_t>(v));
        auto set = static_cast<size_t>(n.threshold);
        int64_t begin = cat_offsets_[set], words = cat_offsets_[set + 1] - begin;
        if (c / 32 >= static_cast<uint64_t>(words)) return invalid_left;
        return (cat_words_[begin + c / 32] >> (c % 32)) & 1u;
    }

    // The general rule at split n: categorical sets and LightGBM's zero-as-missing rules, with branches.
    template <Compare C>
    bool goes_left_general(const Node& n, double v) const {
        if (n.meta & kCategorical) return category_left(n, v);
        uint32_t missing = (n.meta & kMissingMask) >> kMissingShift;
        if (missing == 0) return std::isnan(v) ? (n.meta & kDefaultLeft) != 0 : goes_left<C>(v, n.threshold);
        if (std::isnan(v)) v = 0.0;
        if (missing == 2 && v > -1e-35f && v <= 1e-35f) return (n.meta & kDefaultLeft) != 0;
        return goes_left<C>(v, n.threshold);
    }

    template <Compare C>
    const Node* leaf(const Node* tree, const double* x) const {
        const Node* n = tree;
        while (n->left != 0) n = tree + n->left + (goes_left_general<C>(*n, x[n->meta & kFeatureMask]) ? 0 : 1);
        return n;
    }

    // R chains stepped together under the general rule until all sit on leaves (at most `depth`
    // steps): lane k walks the tree tree_of(k) with the row row_of(k). Callers pass either R rows
    // through one tree (batches) or one row through R trees (single rows); the lane functions are
    // inlined, so each keeps its own indexing, and a lane on a leaf computes no row.
    template <Compare C, size_t R, typename TreeOf, typename RowOf>
    void general_lanes(uint32_t depth, TreeOf tree_of, RowOf row_of, int32_t (&idx)[R]) const {
        for (uint32_t d = 0; d < depth; ++d) {
            bool active = false;
            for (size_t k = 0; k < R; ++k) {
                const Node& n = tree_of(k)[idx[k]];
                if (n.left == 0) continue;
                active = true;
                idx[k] = n.left + (goes_left_general<C>(n, row_of(k)[n.meta & kFeatureMask]) ? 0 : 1);
            }
            if (!active) break;
        }
    }

    // Eight rows through one tree at once under the general rule (the batch path).
    template <Compare C>
    void general_rows8(const Node* tree, uint32_t depth, const double* x, const Node** leaves) const {
        constexpr size_t R = 8;
        int32_t idx[R] = {};
        general_lanes<C>(depth, [&](size_t) { return tree; }, [&](size_t r) { return x + r * n_in_; }, idx);
        for (size_t r = 0; r < R; ++r) leaves[r] = tree + idx[r];
    }

    // One row through eight trees at once under the general rule: eight independent chains.
    template <Compare C>
    void general_trees8(size_t t0, uint32_t depth, const double* x, double* out) const {
        constexpr size_t R = 8;
        const Node* base[R];
        int32_t idx[R] = {};
        for (size_t k = 0; k < R; ++k) base[k] = nodes_.data() + tree_start_[t0 + k];
        general_lanes<C>(depth, [&](size_t k) { return base[k]; }, [&](size_t) { return x; }, idx);
        for (size_t k = 0; k < R; ++k) add_leaf(base[k][idx[k]], out + tree_output_[t0 + k]);
    }

    // The child a plain numeric split sends value v (of its feature) to, without a branch: its left
    // child's index plus 0 or 1. NaN fails every comparison, so a node whose missing values go left
    // asks !(v > t) (or !(v >= t) when strict) instead of v <= t (v < t).
    template <typename V, bool Strict>
    static int32_t fast_child(const Node& n, V v) {
        V t;
        if constexpr (std::is_same_v<V, float>) std::memcpy(&t, &n.threshold, sizeof t);
        else t = n.threshold;
        unsigned dl = (n.meta >> 24) & 1u;
        unsigned lt = Strict ? (v < t) : (v <= t);
        unsigned ngt = Strict ? !(v >= t) : !(v > t);
        unsigned right = ((lt & ~dl) | (ngt & dl)) ^ 1u;
        return n.left + static_cast<int32_t>(right);
    }

    // Branch-free walk of one row through one tree for plain numeric splits.
    template <typename V, bool Strict>
    static const Node* fast_leaf(const Node* tree, const V* x) {
        const Node* n = tree;
        while (n->left != 0) n = tree + fast_child<V, Strict>(*n, x[n->meta & kFeatureMask]);
        return n;
    }

    // R chains stepped together until all sit on leaves (at most `depth` steps), lane k walking the
    // tree tree_of(k) with the row at x + k * stride (stride 0: every lane reads the same row): no
    // branch per node, a leaf keeps its index, independent chains hide the memory latency. The row
    // is indexed as x[k * stride + feature], one address computation per step, as in the loops
    // this replaced (a row pointer per lane cost 5% more instructions).
    template <typename V, bool Strict, size_t R, typename TreeOf>
    static void fast_lanes(uint32_t depth, const V* x, size_t stride, TreeOf tree_of, int32_t (&idx)[R]) {
        for (uint32_t d = 0; d < depth; ++d) {
            bool active = false;
            for (size_t k = 0; k < R; ++k) {
                const Node* n = tree_of(k) + idx[k];
                active |= n->left != 0;
                int32_t next = fast_child<V, Strict>(*n, x[k * stride + (n->meta & kFeatureMask)]);
                idx[k] = n->left != 0 ? next : idx[k];
            }
            if (!active) break;
        }
    }

    static uint32_t depth_of(const Node* tree) {
        uint32_t best = 0;
        std::vector<std::pair<int32_t, uint32_t>> stack{{0, 0}};
        while (!stack.empty()) {
            auto [i, d] = stack.back();
            stack.pop_back();
            best = std::max(best, d);
            if (tree[i].left != 0) {
                stack.emplace_back(tree[i].left, d + 1);
                stack.emplace_back(tree[i].left + 1, d + 1);
            }
        }
        return best;
    }

    // KEEL_TREE_LANES (16) rows walk one tree in lock step (16 beat 8 and 32 on XGBoost/LightGBM).
    template <typename V, bool Strict, size_t R>
    void walk(const Node* tree, uint32_t depth, const V* x, const Node** leaves) const {
        int32_t idx[R] = {};
        fast_lanes<V, Strict>(depth, x, n_in_, [tree](size_t) { return tree; }, idx);
        for (size_t r = 0; r < R; ++r) leaves[r] = tree + idx[r];
    }

    // One row through eight trees in lock step (the single-row path) until all eight sit on leaves:
    // eight independent chains instead of one long one. Leaf-wise trees (LightGBM's default) are deep
    // but most paths are short, so stopping early saves a quarter of the walk.
    template <typename V, bool Strict>
    void walk_trees8(size_t t0, uint32_t depth, const V* x, double* out) const {
        constexpr size_t R = 8;
        const Node* base[R];
        int32_t idx[R] = {};
        for (size_t k = 0; k < R; ++k) base[k] = nodes_.data() + tree_start_[t0 + k];
        fast_lanes<V, Strict>(depth, x, 0, [&](size_t k) { return base[k]; }, idx);
        for (size_t k = 0; k < R; ++k) add_leaf(base[k][idx[k]], out + tree_output_[t0 + k]);
    }

    void add_leaf(const Node& leaf, double* out) const {
        if (width_ == 1) {
            *out += leaf.threshold;
        } else {
            const double* v = leaf_values_.data() + static_cast<size_t>(leaf.threshold) * width_;
            for (size_t k = 0; k < width_; ++k) out[k] += v[k];
        }
    }

    template <typename V, bool Strict>
    void run_fast(const V* x, size_t n, double* out) const {
        std::fill(out, out + n * n_raw_, 0.0);
        const PerfectForest<V>* perfect;
        if constexpr (std::is_same_v<V, float>) perfect = perfect_float_.get();
        else perfect = perfect_double_.get();
        if (perfect) {
            perfect->template add<Strict>(x, n, out);
        } else if (n < KEEL_TREE_LANES) {
            for (size_t i = 0; i < n; ++i) fast_row<V, Strict>(x + i * n_in_, out + i * n_raw_);
        } else {
            fast_batch<V, Strict>(x, n, out);
        }
        scale_sums(out, n);
    }

    template <typename V, bool Strict>
    void fast_row(const V* row, double* out) const {
        size_t n_trees = tree_output_.size(), t = 0;
        for (; t + 8 <= n_trees; t += 8) walk_trees8<V, Strict>(t, group_depth_[t / 8], row, out);
        for (; t < n_trees; ++t)
            add_leaf(*fast_leaf<V, Strict>(nodes_.data() + tree_start_[t], row), out + tree_output_[t]);
    }

    template <typename V, bool Strict>
    void fast_batch(const V* x, size_t n, double* out) const {
        constexpr size_t R = KEEL_TREE_LANES;
        const Node* leaves[R];
        for (size_t t = 0; t < tree_output_.size(); ++t) {
            const Node* tree = nodes_.data() + tree_start_[t];
            size_t o = tree_output_[t], i = 0;
            for (; i + R <= n; i += R) {
                walk<V, Strict, R>(tree, tree_depth_[t], x + i * n_in_, leaves);
                for (size_t r = 0; r < R; ++r) add_leaf(*leaves[r], out + (i + r) * n_raw_ + o);
            }
            for (; i < n; ++i) add_leaf(*fast_leaf<V, Strict>(tree, x + i * n_in_), out + i * n_raw_ + o);
        }
    }

    //! Sums of leaves -> raw margins: base + scale * sum, output by output.
    void scale_sums(double* out, size_t n) const {
        for (size_t i = 0; i < n; ++i)
            for (size_t k = 0; k < n_raw_; ++k) out[i * n_raw_ + k] = base_[k] + scale_ * out[i * n_raw_ + k];
    }

    template <Compare C>
    void run_general(const double* x, size_t n, double* out) const {
        std::fill(out, out + n * n_raw_, 0.0);
        size_t n_trees = tree_output_.size();
        if (n < 4) {
            for (size_t i = 0; i < n; ++i) {
                const double* row = x + i * n_in_;
                double* o = out + i * n_raw_;
                size_t t = 0;
                for (; t + 8 <= n_trees; t += 8) general_trees8<C>(t, group_depth_[t / 8], row, o);
                for (; t < n_trees; ++t) add_leaf(*leaf<C>(nodes_.data() + tree_start_[t], row), o + tree_output_[t]);
            }
            scale_sums(out, n);
            return;
        }
        constexpr size_t R = 8;
        const Node* leaves[R];
        for (size_t t = 0; t < n_trees; ++t) {
            const Node* tree = nodes_.data() + tree_start_[t];
            size_t o = tree_output_[t], i = 0;
            for (; i + R <= n; i += R) {
                general_rows8<C>(tree, tree_depth_[t], x + i * n_in_, leaves);
                for (size_t r = 0; r < R; ++r) add_leaf(*leaves[r], out + (i + r) * n_raw_ + o);
            }
            for (; i < n; ++i) add_leaf(*leaf<C>(tree, x + i * n_in_), out + i * n_raw_ + o);
        }
        scale_sums(out, n);
    }

    size_t n_in_, n_raw_ = 0, width_ = 1;
    std::vector<Node> nodes_;
    std::vector<uint32_t> tree_start_, tree_output_, tree_depth_, group_depth_;
    std::vector<double> leaf_values_, base_;
    std::vector<int64_t> cat_offsets_;
    std::vector<uint32_t> cat_words_;
    double scale_ = 1.0, depth_sum_ = 0;
    Compare compare_ = Compare::Le;
    bool complex_ = false, use_float_ = false;
    std::unique_ptr<PerfectForest<float>> perfect_float_;
    std::unique_ptr<PerfectForest<double>> perfect_double_;
};

} // namespace

std::unique_ptr<Model> make_trees(const Record& r, size_t n_inputs) { return std::make_unique<Trees>(r, n_inputs); }

} // namespace keel::inference::detail

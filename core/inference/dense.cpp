// core/inference/dense.cpp: linear models and multilayer perceptrons (Eigen lives only here).
#include "dense_avx2.hpp"
#include "models.hpp"

#include "keel/common/error.hpp"
#include "keel/inference/record_keys.hpp"

#include <Eigen/Dense>
#if defined(__SSE2__)
#include <emmintrin.h>  // SSE2: part of baseline x86-64
#endif

#include <algorithm>
#include <cmath>

namespace keel::inference::detail {

namespace {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatrix>;
using RowMap = Eigen::Map<RowMatrix>;

void grow(std::vector<double>& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

// raw = x W^T + b with W stored [n_raw x n_in] row-major (scikit-learn's coef_).
class Linear : public Model {
public:
    Linear(const Record& r, size_t n_in) : n_in_(n_in) {
        coef_ = reals(r, keys::kLinearCoef);
        intercept_ = reals(r, keys::kLinearIntercept);
        n_raw_ = intercept_.size();
        if (n_raw_ == 0 || coef_.size() != n_raw_ * n_in_)
            throw_error(ErrorKind::InvalidArgument, "linear model: {} coefficients do not make {} rows of {} inputs",
                        coef_.size(), n_raw_, n_in_);
    }
    size_t n_inputs() const override { return n_in_; }
    size_t n_raw() const override { return n_raw_; }
    double cost_per_row() const override { return static_cast<double>(n_in_ * n_raw_); }
    void raw(const double* x, size_t n, double* out, Scratch&) const override {
        if (n < 8) {
            for (size_t i = 0; i < n; ++i)
                for (size_t k = 0; k < n_raw_; ++k) {
                    const double* w = coef_.data() + k * n_in_;
                    const double* row = x + i * n_in_;
                    double s = 0;
                    for (size_t j = 0; j < n_in_; ++j) s += w[j] * row[j];
                    out[i * n_raw_ + k] = s + intercept_[k];
                }
            return;
        }
        ConstRowMap X(x, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n_in_));
        ConstRowMap W(coef_.data(), static_cast<Eigen::Index>(n_raw_), static_cast<Eigen::Index>(n_in_));
        RowMap Y(out, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n_raw_));
        Y.noalias() = X * W.transpose();
        Eigen::Map<const Eigen::RowVectorXd> b(intercept_.data(), static_cast<Eigen::Index>(n_raw_));
        Y.rowwise() += b;
    }

private:
    size_t n_in_, n_raw_ = 0;
    std::vector<double> coef_, intercept_;
};

enum class Activation { Identity, Logistic, Tanh, Relu };

Activation parse_activation(const std::string& s) {
    if (s == "identity") return Activation::Identity;
    if (s == "logistic") return Activation::Logistic;
    if (s == "tanh") return Activation::Tanh;
    if (s == "relu") return Activation::Relu;
    throw_error(ErrorKind::InvalidArgument, "unknown MLP activation '{}': expected identity, logistic, tanh or relu", s);
}

void activate(Activation a, double* v, size_t n) {
    switch (a) {
    case Activation::Identity: break;
    case Activation::Logistic:
        for (size_t i = 0; i < n; ++i) v[i] = 1.0 / (1.0 + std::exp(-v[i]));
        break;
    case Activation::Tanh:
        for (size_t i = 0; i < n; ++i) v[i] = std::tanh(v[i]);
        break;
    case Activation::Relu:
        for (size_t i = 0; i < n; ++i) v[i] = std::max(v[i], 0.0);
        break;
    }
}

// Layers as scikit-learn stores them: W [in x out] row-major, b [out]; hidden activation between
// layers, none after the last (the output transform applies logistic / softmax).
class Mlp : public Model {
public:
    Mlp(const Record& r, size_t n_in) : n_in_(n_in) {
        activation_ = parse_activation(string_or(r, keys::kMlpActivation, "relu"));
        auto n_layers = int_of(r, keys::kMlpLayers);
        if (n_layers < 1) throw_error(ErrorKind::InvalidArgument, "an MLP needs at least one layer");
        size_t width = n_in;
        for (int64_t i = 0; i < n_layers; ++i) {
            Layer l;
            l.w = reals(r, fmt::format(keys::kMlpLayerWeights, i));
            l.b = reals(r, fmt::format(keys::kMlpLayerBias, i));
            l.in = width;
            l.out = l.b.size();
            if (l.out == 0 || l.w.size() != l.in * l.out)
                throw_error(ErrorKind::InvalidArgument, "MLP layer {}: {} weights do not make a {} x {} matrix", i,
                            l.w.size(), l.in, l.out);
            if (cpu_has_avx2_fma()) l.panels = dense_panels(l.w, l.in, l.out);
            width = l.out;
            max_width_ = std::max(max_width_, width);
            layers_.push_back(std::move(l));
        }
    }
    size_t n_inputs() const override { return n_in_; }
    size_t n_raw() const override { return layers_.back().out; }
    double cost_per_row() const override {
        double c = 0;
        for (const auto& l : layers_) c += static_cast<double>(l.in * l.out);
        return c;
    }
    void raw(const double* x, size_t n, double* out, Scratch& s) const override {
        grow(s.c, n * max_width_);
        grow(s.d, n * max_width_);
        const double* cur = x;
        for (size_t li = 0; li < layers_.size(); ++li) {
            const auto& l = layers_[li];
            bool last = li + 1 == layers_.size();
            double* dst = last ? out : (cur == s.c.data() ? s.d.data() : s.c.data());
            if (n < 4) {
                for (size_t i = 0; i < n; ++i) small_layer(l, cur + i * l.in, dst + i * l.out);
            } else if (!l.panels.empty()) {
                dense_rows_avx2(cur, n, l.in, l.panels.data(), l.b.data(), l.out, dst, l.out);
                for (size_t j = l.out - l.out % 8; j < l.out; ++j)
                    for (size_t i = 0; i < n; ++i) small_output(l, j, cur + i * l.in, dst + i * l.out);
            } else {
                ConstRowMap H(cur, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(l.in));
                ConstRowMap W(l.w.data(), static_cast<Eigen::Index>(l.in), static_cast<Eigen::Index>(l.out));
                RowMap Y(dst, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(l.out));
                Y.noalias() = H * W;
                Y.rowwise() += Eigen::Map<const Eigen::RowVectorXd>(l.b.data(), static_cast<Eigen::Index>(l.out));
            }
            if (!last) activate(activation_, dst, n * l.out);
            cur = dst;
        }
    }

private:
    struct Layer {
        std::vector<double> w, b;
        std::vector<double> panels;  // for the AVX2 batch kernel, when the CPU has it
        size_t in = 0, out = 0;
    };

    // Output j of one row: the plain loop (for outputs left over from blocks of eight).
    static void small_output(const Layer& l, size_t j, const double* h, double* o) {
        double acc = l.b[j];
        const double* w = l.w.data() + j;
        for (size_t a = 0; a < l.in; ++a, w += l.out) acc += h[a] * w[0];
        o[j] = acc;
    }

    // One row through one layer: o = b + sum_a h[a] * W[a, :], accumulated in input order for every
    // output (the same sums as a plain loop), eight outputs at a time held in registers so that
    // only the weights stream from memory.
    static void small_layer(const Layer& l, const double* h, double* o) {
        size_t b0 = 0;
#if defined(__SSE2__)
        constexpr size_t C = 8;
        for (; b0 + C <= l.out; b0 += C) {
            __m128d a0 = _mm_loadu_pd(&l.b[b0]), a1 = _mm_loadu_pd(&l.b[b0 + 2]);
            __m128d a2 = _mm_loadu_pd(&l.b[b0 + 4]), a3 = _mm_loadu_pd(&l.b[b0 + 6]);
            const double* w = l.w.data() + b0;
            for (size_t a = 0; a < l.in; ++a, w += l.out) {
                __m128d v = _mm_set1_pd(h[a]);
                a0 = _mm_add_pd(a0, _mm_mul_pd(v, _mm_loadu_pd(w)));
                a1 = _mm_add_pd(a1, _mm_mul_pd(v, _mm_loadu_pd(w + 2)));
                a2 = _mm_add_pd(a2, _mm_mul_pd(v, _mm_loadu_pd(w + 4)));
                a3 = _mm_add_pd(a3, _mm_mul_pd(v, _mm_loadu_pd(w + 6)));
            }
            _mm_storeu_pd(o + b0, a0);
            _mm_storeu_pd(o + b0 + 2, a1);
            _mm_storeu_pd(o + b0 + 4, a2);
            _mm_storeu_pd(o + b0 + 6, a3);
        }
#endif
        for (; b0 < l.out; ++b0) small_output(l, b0, h, o);
    }

    size_t n_in_, max_width_ = 0;
    Activation activation_ = Activation::Relu;
    std::vector<Layer> layers_;
};

} // namespace

std::unique_ptr<Model> make_linear(const Record& r, size_t n_inputs) { return std::make_unique<Linear>(r, n_inputs); }
std::unique_ptr<Model> make_mlp(const Record& r, size_t n_inputs) { return std::make_unique<Mlp>(r, n_inputs); }

} // namespace keel::inference::detail

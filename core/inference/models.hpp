// core/inference/models.hpp: the inference module's private structures (not a public header).
#pragma once

#include "keel/inference/format.hpp"
#include "keel/inference/predictor.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace keel::inference::detail {

//! Record accessors that raise InvalidArgument naming the missing or ill-typed key.
const RecordValue& need(const Record& r, std::string_view key);
const std::vector<int64_t>& ints(const Record& r, std::string_view key);
const std::vector<double>& reals(const Record& r, std::string_view key);
const std::vector<std::string>& strings(const Record& r, std::string_view key);
int64_t int_of(const Record& r, std::string_view key);
int64_t int_or(const Record& r, std::string_view key, int64_t fallback);
double real_or(const Record& r, std::string_view key, double fallback);
std::string string_or(const Record& r, std::string_view key, std::string fallback);
bool has(const Record& r, std::string_view key);

//! Per-thread working memory; grows on first use and is then reused, so steady-state prediction
//! does not allocate.
struct Scratch {
    std::vector<double> a, b, c, d;
    static Scratch& local();
};

//! The estimator at the end of a pipeline: maps `n` contiguous rows of `n_inputs()` values to `n`
//! rows of `n_raw()` margins.
class Model {
public:
    virtual ~Model() = default;
    virtual size_t n_inputs() const = 0;
    virtual size_t n_raw() const = 0;
    //! Rough cost of one row in multiply-adds or node visits, to decide when threads pay off.
    virtual double cost_per_row() const = 0;
    virtual void raw(const double* x, size_t n, double* out, Scratch& scratch) const = 0;
};

std::unique_ptr<Model> make_linear(const Record& r, size_t n_inputs);
std::unique_ptr<Model> make_mlp(const Record& r, size_t n_inputs);
std::unique_ptr<Model> make_trees(const Record& r, size_t n_inputs);

//! Factorization model: users and items as indices; raw output of a (user, item) row is the score.
class Factorization : public Model {
public:
    explicit Factorization(const Record& r);
    size_t n_inputs() const override { return 2; }
    size_t n_raw() const override { return 1; }
    double cost_per_row() const override { return static_cast<double>(dim_); }
    void raw(const double* x, size_t n, double* out, Scratch& scratch) const override;
    double score(int64_t user, int64_t item) const;
    //! Scores of every item for one user into out (n_items values).
    void score_all(int64_t user, double* out) const;
    size_t n_users() const { return n_users_; }
    size_t n_items() const { return n_items_; }

private:
    size_t dim_ = 0, n_users_ = 0, n_items_ = 0;
    std::vector<double> users_, items_, user_bias_, item_bias_;
    double global_bias_ = 0;
};

//! One preprocessing stage: blocks of columns transformed and concatenated in order.
struct Block {
    enum class Kind { Passthrough, Scale, OneHot, Ordinal } kind = Kind::Passthrough;
    std::vector<int64_t> columns;
    std::vector<double> mean, scale;         // Scale
    std::vector<double> categories;          // OneHot / Ordinal, flattened per column
    std::vector<int64_t> offsets;            // per column into categories (size columns+1)
    std::vector<int64_t> drop;               // OneHot: dropped category index per column, -1 none
    bool unknown_error = true;               // OneHot / Ordinal: unknown category raises
    double unknown_value = 0;                // Ordinal: code for unknown categories
    double missing_value = 0;                // Ordinal: code for NaN when NaN is not a category
    size_t width = 0;                        // output values
};

// One preprocessing step of a pipeline (scale, one-hot, ordinal blocks); registry::Stage is a model
// version's lifecycle stage, a different thing.
struct PreprocessStage {
    size_t n_inputs = 0, n_outputs = 0;
    std::vector<Block> blocks;
    std::vector<std::string> input_names;    // for error messages
    void apply(const double* x, double* out) const;
};

enum class Transform { Identity, Exp, Sigmoid, BinarySigmoid, Binary, Softmax, OvrNormalized };

struct Pipeline {
    Task task = Task::Regression;
    std::string kind, metadata;
    std::vector<FeatureSpec> signature;
    std::vector<PreprocessStage> stages;
    std::unique_ptr<Model> model;
    Transform transform = Transform::Identity;
    double sigmoid_scale = 1.0;
    size_t n_features = 0, n_raw = 0, n_outputs = 0, max_width = 0;

    explicit Pipeline(const Record& r);
    //! n rows (row-major, n_features wide) -> n rows of outputs (or raw margins).
    template <typename T>
    void run(const T* x, size_t n, double* out, bool raw, Scratch& s) const;
    void finish(const double* raw, double* out) const;
};

} // namespace keel::inference::detail

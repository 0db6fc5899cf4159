// core/include/keel/inference/predictor.hpp
#pragma once

#include "keel/inference/format.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace keel::inference {

namespace detail {
struct Pipeline;
}

//! What a predictor's outputs mean.
enum class Task { Regression, Classification, Factorization };

//! One input column: its name and dtype ("float64", "float32", "int64", "category", "string").
struct FeatureSpec {
    std::string name;
    std::string dtype;
};

//! Top-k recommendations for a batch of users: row-major [users x k]; unused slots hold item -1.
struct Recommendations {
    size_t k = 0;
    std::vector<int64_t> items;
    std::vector<double> scores;
};

//! A native model: optional preprocessing (scaling, one-hot, ordinal) in front of a linear model, an
//! MLP, a tree ensemble or a factorization model, with its output transform. Immutable once built
//! and safe to share between threads. Single-row prediction does not allocate (after a thread's first
//! call); batches run on the caller's thread when small and on `threads` std::threads when large.
class Predictor {
public:
    //! Validates a record (see format.hpp) and builds the native structures; InvalidArgument names
    //! the first missing or inconsistent key.
    explicit Predictor(Record record);
    ~Predictor();
    Predictor(const Predictor&) = delete;
    Predictor& operator=(const Predictor&) = delete;

    Task task() const noexcept;
    //! Width of an input row (before preprocessing).
    size_t num_features() const noexcept;
    //! Values per output row: 1 for a regressor, one probability per class for a classifier.
    size_t num_outputs() const noexcept;
    //! Values per raw output row (margins before the output transform).
    size_t num_raw_outputs() const noexcept;
    const std::vector<FeatureSpec>& signature() const noexcept;
    //! Free-form JSON the importer attached (class labels, source library, ...).
    const std::string& metadata() const noexcept;
    //! Model family: "linear", "mlp", "trees" or "factorization".
    const std::string& kind() const noexcept;

    //! One row of num_features() values -> num_outputs() values (raw: num_raw_outputs()).
    void predict_row(const double* row, double* out, bool raw = false) const;
    //! `rows` row-major rows; threads 0 means all cores, 1 the caller's thread only.
    void predict(const double* rows, size_t n_rows, double* out, int threads = 0, bool raw = false) const;
    void predict(const float* rows, size_t n_rows, double* out, int threads = 0, bool raw = false) const;

    //! Factorization models only: top-k items per user (by index) excluding, for user i, the items
    //! exclude_indices[exclude_indptr[i] .. exclude_indptr[i+1]) (CSR; empty indptr means none).
    //! k is capped at the number of items (the result's k says what was used); k = 0 is InvalidArgument.
    Recommendations recommend(const int64_t* users, size_t n_users, size_t k, const int64_t* exclude_indptr,
                              const int64_t* exclude_indices, int threads = 0) const;
    //! Factorization models only: score of (user, item) pairs.
    void score_pairs(const int64_t* users, const int64_t* items, size_t n, double* out) const;

    //! The model's record, and the versioned checksummed bytes that load_predictor() reads back.
    const Record& record() const noexcept;
    std::string to_bytes() const;

private:
    Record record_;
    std::unique_ptr<detail::Pipeline> impl_;
};

//! Reads bytes written by Predictor::to_bytes(); Corrupt when truncated, tampered or from the future.
std::shared_ptr<const Predictor> load_predictor(std::string_view bytes);

} // namespace keel::inference

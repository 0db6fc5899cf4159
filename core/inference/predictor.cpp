// core/inference/predictor.cpp
#include "keel/inference/predictor.hpp"

#include "keel/common/error.hpp"
#include "keel/inference/record_keys.hpp"
#include "models.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

namespace keel::inference {

namespace detail {

// ---- record accessors ------------------------------------------------------------------------------

bool has(const Record& r, std::string_view key) { return r.find(key) != r.end(); }

const RecordValue& need(const Record& r, std::string_view key) {
    auto it = r.find(key);
    if (it == r.end()) throw_error(ErrorKind::InvalidArgument, "model record lacks the key '{}'", key);
    return it->second;
}

static std::string_view type_name(RecordValue::Type t) {
    switch (t) {
    case RecordValue::Type::Int: return "ints";
    case RecordValue::Type::Real: return "reals";
    case RecordValue::Type::Strings: return "strings";
    }
    return "?";
}

static const RecordValue& need_type(const Record& r, std::string_view key, RecordValue::Type t) {
    const auto& v = need(r, key);
    if (v.type != t)
        throw_error(ErrorKind::InvalidArgument, "model record key '{}' holds {}, expected {}", key, type_name(v.type),
                    type_name(t));
    return v;
}

const std::vector<int64_t>& ints(const Record& r, std::string_view key) {
    return need_type(r, key, RecordValue::Type::Int).ints;
}
const std::vector<double>& reals(const Record& r, std::string_view key) {
    return need_type(r, key, RecordValue::Type::Real).reals;
}
const std::vector<std::string>& strings(const Record& r, std::string_view key) {
    return need_type(r, key, RecordValue::Type::Strings).strings;
}
int64_t int_of(const Record& r, std::string_view key) {
    const auto& v = ints(r, key);
    if (v.size() != 1) throw_error(ErrorKind::InvalidArgument, "model record key '{}' must hold one int", key);
    return v[0];
}
int64_t int_or(const Record& r, std::string_view key, int64_t fallback) {
    return has(r, key) ? int_of(r, key) : fallback;
}
double real_or(const Record& r, std::string_view key, double fallback) {
    if (!has(r, key)) return fallback;
    const auto& v = reals(r, key);
    if (v.size() != 1) throw_error(ErrorKind::InvalidArgument, "model record key '{}' must hold one real", key);
    return v[0];
}
std::string string_or(const Record& r, std::string_view key, std::string fallback) {
    if (!has(r, key)) return fallback;
    const auto& v = strings(r, key);
    if (v.size() != 1) throw_error(ErrorKind::InvalidArgument, "model record key '{}' must hold one string", key);
    return v[0];
}

Scratch& Scratch::local() {
    thread_local Scratch s;
    return s;
}

static void grow(std::vector<double>& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

// ---- preprocessing ---------------------------------------------------------------------------------

static int64_t find_category(const double* cats, int64_t n, double v) {
    if (std::isnan(v)) {
        for (int64_t i = 0; i < n; ++i)
            if (std::isnan(cats[i])) return i;
        return -1;
    }
    for (int64_t i = 0; i < n; ++i)
        if (cats[i] == v) return i;
    return -1;
}

void PreprocessStage::apply(const double* x, double* out) const {
    for (const auto& b : blocks) {
        switch (b.kind) {
        case Block::Kind::Passthrough:
            for (auto c : b.columns) *out++ = x[c];
            break;
        case Block::Kind::Scale:
            for (size_t j = 0; j < b.columns.size(); ++j) *out++ = (x[b.columns[j]] - b.mean[j]) / b.scale[j];
            break;
        case Block::Kind::OneHot:
            for (size_t j = 0; j < b.columns.size(); ++j) {
                const double* cats = b.categories.data() + b.offsets[j];
                int64_t n = b.offsets[j + 1] - b.offsets[j];
                int64_t drop = b.drop[j];
                int64_t width = drop >= 0 ? n - 1 : n;
                std::fill(out, out + width, 0.0);
                int64_t hit = find_category(cats, n, x[b.columns[j]]);
                if (hit < 0 && b.unknown_error)
                    throw_error(ErrorKind::InvalidArgument,
                                "column '{}' has the category {} unseen in training: the encoder was fit with "
                                "handle_unknown='error'",
                                input_names[b.columns[j]], x[b.columns[j]]);
                if (hit >= 0 && hit != drop) out[drop >= 0 && hit > drop ? hit - 1 : hit] = 1.0;
                out += width;
            }
            break;
        case Block::Kind::Ordinal:
            for (size_t j = 0; j < b.columns.size(); ++j) {
                const double* cats = b.categories.data() + b.offsets[j];
                int64_t n = b.offsets[j + 1] - b.offsets[j];
                double v = x[b.columns[j]];
                int64_t hit = find_category(cats, n, v);
                if (hit >= 0) {
                    *out++ = static_cast<double>(hit);
                } else if (std::isnan(v)) {
                    *out++ = b.missing_value;
                } else if (b.unknown_error) {
                    throw_error(ErrorKind::InvalidArgument,
                                "column '{}' has the category {} unseen in training: the encoder was fit with "
                                "handle_unknown='error'",
                                input_names[b.columns[j]], v);
                } else {
                    *out++ = b.unknown_value;
                }
            }
            break;
        }
    }
}

static PreprocessStage make_stage(const Record& r, size_t index, size_t n_inputs, const std::vector<std::string>& names) {
    PreprocessStage st;
    st.n_inputs = n_inputs;
    st.input_names = names;
    auto n_blocks = int_of(r, fmt::format(keys::kPreStageBlocks, index));
    for (int64_t j = 0; j < n_blocks; ++j) {
        auto p = fmt::format(keys::kPreBlock, index, j);
        auto field = [&p](std::string_view name) { return p + std::string(name); };
        Block b;
        auto kind = string_or(r, field(keys::kBlockKind), "");
        b.columns = ints(r, field(keys::kBlockColumns));
        for (auto c : b.columns)
            if (c < 0 || static_cast<size_t>(c) >= n_inputs)
                throw_error(ErrorKind::InvalidArgument, "preprocessing block '{}' reads column {} of {}", p, c,
                            n_inputs);
        size_t nc = b.columns.size();
        if (kind == "passthrough") {
            b.kind = Block::Kind::Passthrough;
            b.width = nc;
        } else if (kind == "scale") {
            b.kind = Block::Kind::Scale;
            b.mean = reals(r, field(keys::kBlockMean));
            b.scale = reals(r, field(keys::kBlockScale));
            if (b.mean.size() != nc || b.scale.size() != nc)
                throw_error(ErrorKind::InvalidArgument, "scale block '{}' needs {} means and scales", p, nc);
            b.width = nc;
        } else if (kind == "onehot" || kind == "ordinal") {
            b.categories = reals(r, field(keys::kBlockCategories));
            b.offsets = ints(r, field(keys::kBlockOffsets));
            if (b.offsets.size() != nc + 1 || b.offsets.front() != 0 ||
                b.offsets.back() != static_cast<int64_t>(b.categories.size()) ||
                !std::is_sorted(b.offsets.begin(), b.offsets.end()))
                throw_error(ErrorKind::InvalidArgument, "encoder block '{}' has inconsistent category offsets", p);
            b.unknown_error = string_or(r, field(keys::kBlockHandleUnknown), "error") == "error";
            if (kind == "onehot") {
                b.kind = Block::Kind::OneHot;
                b.drop = has(r, field(keys::kBlockDrop)) ? ints(r, field(keys::kBlockDrop)) : std::vector<int64_t>(nc, -1);
                if (b.drop.size() != nc)
                    throw_error(ErrorKind::InvalidArgument, "one-hot block '{}' needs {} drop indices", p, nc);
                for (size_t c = 0; c < nc; ++c) b.width += (b.offsets[c + 1] - b.offsets[c]) - (b.drop[c] >= 0 ? 1 : 0);
            } else {
                b.kind = Block::Kind::Ordinal;
                b.unknown_value = real_or(r, field(keys::kBlockUnknownValue), std::numeric_limits<double>::quiet_NaN());
                b.missing_value = real_or(r, field(keys::kBlockMissingValue), std::numeric_limits<double>::quiet_NaN());
                b.width = nc;
            }
        } else {
            throw_error(ErrorKind::InvalidArgument, "preprocessing block '{}' has unknown kind '{}'", p, kind);
        }
        st.n_outputs += b.width;
        st.blocks.push_back(std::move(b));
    }
    return st;
}

// ---- factorization ---------------------------------------------------------------------------------

Factorization::Factorization(const Record& r) {
    dim_ = static_cast<size_t>(int_of(r, keys::kMfDim));
    users_ = reals(r, keys::kMfUserFactors);
    items_ = reals(r, keys::kMfItemFactors);
    if (dim_ == 0 || users_.size() % dim_ || items_.size() % dim_)
        throw_error(ErrorKind::InvalidArgument, "factor matrices of {} and {} values do not split into rows of {}",
                    users_.size(), items_.size(), dim_);
    n_users_ = users_.size() / dim_;
    n_items_ = items_.size() / dim_;
    user_bias_ = has(r, keys::kMfUserBias) ? reals(r, keys::kMfUserBias) : std::vector<double>(n_users_, 0.0);
    item_bias_ = has(r, keys::kMfItemBias) ? reals(r, keys::kMfItemBias) : std::vector<double>(n_items_, 0.0);
    if (user_bias_.size() != n_users_ || item_bias_.size() != n_items_)
        throw_error(ErrorKind::InvalidArgument, "biases must have one value per user ({}) and per item ({})", n_users_,
                    n_items_);
    global_bias_ = real_or(r, keys::kMfGlobalBias, 0.0);
}

double Factorization::score(int64_t user, int64_t item) const {
    if (user < 0 || static_cast<size_t>(user) >= n_users_)
        throw_error(ErrorKind::InvalidArgument, "user index {} is out of range: the model has {} users", user, n_users_);
    if (item < 0 || static_cast<size_t>(item) >= n_items_)
        throw_error(ErrorKind::InvalidArgument, "item index {} is out of range: the model has {} items", item, n_items_);
    const double* u = users_.data() + user * dim_;
    const double* v = items_.data() + item * dim_;
    double s = 0;
    for (size_t k = 0; k < dim_; ++k) s += u[k] * v[k];
    return s + global_bias_ + user_bias_[user] + item_bias_[item];
}

void Factorization::score_all(int64_t user, double* out) const {
    if (user < 0 || static_cast<size_t>(user) >= n_users_)
        throw_error(ErrorKind::InvalidArgument, "user index {} is out of range: the model has {} users", user, n_users_);
    const double* u = users_.data() + user * dim_;
    double base = global_bias_ + user_bias_[user];
    for (size_t i = 0; i < n_items_; ++i) {
        const double* v = items_.data() + i * dim_;
        double s = 0;
        for (size_t k = 0; k < dim_; ++k) s += u[k] * v[k];
        out[i] = s + base + item_bias_[i];
    }
}

void Factorization::raw(const double* x, size_t n, double* out, Scratch&) const {
    for (size_t i = 0; i < n; ++i) {
        double u = x[2 * i], v = x[2 * i + 1];
        if (std::isnan(u) || std::isnan(v) || u != std::floor(u) || v != std::floor(v))
            throw_error(ErrorKind::InvalidArgument, "row {} holds ({}, {}): user and item must be integer indices", i,
                        u, v);
        // Range-check as doubles: converting 1e300 to int64 would be undefined.
        if (u < 0 || u >= double(n_users_))
            throw_error(ErrorKind::InvalidArgument, "user index {} is out of range: the model has {} users", u, n_users_);
        if (v < 0 || v >= double(n_items_))
            throw_error(ErrorKind::InvalidArgument, "item index {} is out of range: the model has {} items", v, n_items_);
        out[i] = score(static_cast<int64_t>(u), static_cast<int64_t>(v));
    }
}

// ---- pipeline --------------------------------------------------------------------------------------

static Transform parse_transform(const std::string& s) {
    if (s == "identity") return Transform::Identity;
    if (s == "exp") return Transform::Exp;
    if (s == "sigmoid") return Transform::Sigmoid;
    if (s == "binary_sigmoid") return Transform::BinarySigmoid;
    if (s == "binary") return Transform::Binary;
    if (s == "softmax") return Transform::Softmax;
    if (s == "ovr_normalized") return Transform::OvrNormalized;
    throw_error(ErrorKind::InvalidArgument, "unknown output transform '{}'", s);
}

Pipeline::Pipeline(const Record& r) {
    auto task_name = string_or(r, keys::kTask, "regression");
    if (task_name == "regression") task = Task::Regression;
    else if (task_name == "classification") task = Task::Classification;
    else if (task_name == "factorization") task = Task::Factorization;
    else throw_error(ErrorKind::InvalidArgument, "unknown task '{}'", task_name);
    metadata = string_or(r, keys::kMetadata, "{}");
    const auto& names = strings(r, keys::kFeatureNames);
    const auto& dtypes = strings(r, keys::kFeatureDtypes);
    if (names.size() != dtypes.size())
        throw_error(ErrorKind::InvalidArgument, "signature has {} names but {} dtypes", names.size(), dtypes.size());
    for (size_t i = 0; i < names.size(); ++i) signature.push_back({names[i], dtypes[i]});
    n_features = names.size();
    if (n_features == 0 || n_features >= (1u << 24))
        throw_error(ErrorKind::InvalidArgument, "a model needs between 1 and 2^24 input features, not {}", n_features);

    size_t width = n_features;
    max_width = width;
    std::vector<std::string> stage_names = names;
    auto n_stages = int_or(r, keys::kPreCount, 0);
    for (int64_t i = 0; i < n_stages; ++i) {
        stages.push_back(make_stage(r, static_cast<size_t>(i), width, stage_names));
        width = stages.back().n_outputs;
        max_width = std::max(max_width, width);
        stage_names.assign(width, "");
        for (size_t j = 0; j < width; ++j) stage_names[j] = fmt::format("step{}[{}]", i + 1, j);
    }

    kind = string_or(r, keys::kModelKind, "");
    if (kind == "linear") model = make_linear(r, width);
    else if (kind == "mlp") model = make_mlp(r, width);
    else if (kind == "trees") model = make_trees(r, width);
    else if (kind == "factorization") model = std::make_unique<Factorization>(r);
    else throw_error(ErrorKind::InvalidArgument, "unknown model kind '{}'", kind);
    if (model->n_inputs() != width)
        throw_error(ErrorKind::InvalidArgument, "the model reads {} inputs but preprocessing yields {}",
                    model->n_inputs(), width);
    n_raw = model->n_raw();
    transform = parse_transform(string_or(r, keys::kOutputTransform, "identity"));
    sigmoid_scale = real_or(r, keys::kOutputSigmoidScale, 1.0);
    n_outputs = n_raw;
    if (transform == Transform::BinarySigmoid || transform == Transform::Binary) {
        if (n_raw != 1) throw_error(ErrorKind::InvalidArgument, "binary transforms need one raw output, not {}", n_raw);
        n_outputs = 2;
    }
}

void Pipeline::finish(const double* raw, double* out) const {
    switch (transform) {
    case Transform::Identity:
        std::copy(raw, raw + n_raw, out);
        break;
    case Transform::Exp:
        for (size_t k = 0; k < n_raw; ++k) out[k] = std::exp(raw[k]);
        break;
    case Transform::Sigmoid:
        for (size_t k = 0; k < n_raw; ++k) out[k] = 1.0 / (1.0 + std::exp(-sigmoid_scale * raw[k]));
        break;
    case Transform::BinarySigmoid: {
        double p = 1.0 / (1.0 + std::exp(-sigmoid_scale * raw[0]));
        out[0] = 1.0 - p;
        out[1] = p;
        break;
    }
    case Transform::Binary:  // raw is already the positive class's probability
        out[0] = 1.0 - raw[0];
        out[1] = raw[0];
        break;
    case Transform::Softmax: {
        double m = *std::max_element(raw, raw + n_raw), sum = 0;
        for (size_t k = 0; k < n_raw; ++k) sum += out[k] = std::exp(raw[k] - m);
        for (size_t k = 0; k < n_raw; ++k) out[k] /= sum;
        break;
    }
    case Transform::OvrNormalized: {
        double sum = 0;
        for (size_t k = 0; k < n_raw; ++k) sum += out[k] = 1.0 / (1.0 + std::exp(-raw[k]));
        for (size_t k = 0; k < n_raw; ++k) out[k] /= sum;
        break;
    }
    }
}

template <typename T>
void Pipeline::run(const T* x, size_t n, double* out, bool raw_only, Scratch& s) const {
    // Rows go through preprocessing into s.a (block of doubles), the model into s.b, the transform into out.
    const double* in = nullptr;
    bool convert = !std::is_same_v<T, double> || !stages.empty();
    if (convert) {
        grow(s.a, n * max_width);
        grow(s.c, max_width);
        grow(s.d, max_width);
        size_t width = stages.empty() ? n_features : stages.back().n_outputs;
        for (size_t i = 0; i < n; ++i) {
            const T* row = x + i * n_features;
            if (stages.empty()) {
                for (size_t j = 0; j < n_features; ++j) s.a[i * width + j] = static_cast<double>(row[j]);
                continue;
            }
            double* cur = s.c.data();
            for (size_t j = 0; j < n_features; ++j) cur[j] = static_cast<double>(row[j]);
            for (size_t k = 0; k < stages.size(); ++k) {
                double* dst = k + 1 == stages.size() ? s.a.data() + i * width : (cur == s.c.data() ? s.d.data() : s.c.data());
                stages[k].apply(cur, dst);
                cur = dst;
            }
        }
        in = s.a.data();
    } else {
        in = reinterpret_cast<const double*>(x);
    }
    if (raw_only || (transform == Transform::Identity)) {
        model->raw(in, n, out, s);
        return;
    }
    grow(s.b, n * n_raw);
    model->raw(in, n, s.b.data(), s);
    for (size_t i = 0; i < n; ++i) finish(s.b.data() + i * n_raw, out + i * n_outputs);
}

template void Pipeline::run<double>(const double*, size_t, double*, bool, Scratch&) const;
template void Pipeline::run<float>(const float*, size_t, double*, bool, Scratch&) const;

// Runs fn(begin, end) over [0, n) in blocks: on the caller's thread when the work is small or threads
// is 1, else on up to `threads` std::threads (0: all cores). Exceptions reach the caller.
template <typename Fn>
void parallel_blocks(size_t n, size_t block, double cost_per_row, int threads, Fn&& fn) {
    constexpr double kWorkPerThread = 200000.0;  // below this a thread costs more than it saves
    size_t hw = std::max(1u, std::thread::hardware_concurrency());
    size_t want = threads <= 0 ? hw : static_cast<size_t>(threads);
    size_t by_work = static_cast<size_t>(std::max(1.0, static_cast<double>(n) * cost_per_row / kWorkPerThread));
    size_t blocks = (n + block - 1) / block;
    size_t t = std::min({want, by_work, blocks});
    if (t <= 1) {
        for (size_t b = 0; b < n; b += block) fn(b, std::min(n, b + block));
        return;
    }
    std::atomic<size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&] {
        try {
            for (;;) {
                size_t b = next.fetch_add(1) * block;
                if (b >= n) break;
                fn(b, std::min(n, b + block));
            }
        } catch (...) {
            std::lock_guard lock(error_mutex);
            if (!error) error = std::current_exception();
            next.store(n);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(t - 1);
    for (size_t i = 1; i < t; ++i) pool.emplace_back(worker);
    worker();
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

} // namespace detail

// ---- Predictor -------------------------------------------------------------------------------------

using detail::Pipeline;
using detail::Scratch;

Predictor::Predictor(Record record) : record_(std::move(record)), impl_(std::make_unique<Pipeline>(record_)) {}
Predictor::~Predictor() = default;

Task Predictor::task() const noexcept { return impl_->task; }
size_t Predictor::num_features() const noexcept { return impl_->n_features; }
size_t Predictor::num_outputs() const noexcept { return impl_->n_outputs; }
size_t Predictor::num_raw_outputs() const noexcept { return impl_->n_raw; }
const std::vector<FeatureSpec>& Predictor::signature() const noexcept { return impl_->signature; }
const std::string& Predictor::metadata() const noexcept { return impl_->metadata; }
const std::string& Predictor::kind() const noexcept { return impl_->kind; }
const Record& Predictor::record() const noexcept { return record_; }
std::string Predictor::to_bytes() const { return serialize_record(record_); }

void Predictor::predict_row(const double* row, double* out, bool raw) const {
    impl_->run(row, 1, out, raw, Scratch::local());
}

template <typename T>
static void predict_batch(const Pipeline& p, const T* rows, size_t n, double* out, int threads, bool raw) {
    size_t width = raw ? p.n_raw : p.n_outputs;
    constexpr size_t kBlock = 64;
    detail::parallel_blocks(n, kBlock, p.model->cost_per_row() + 10.0, threads, [&](size_t b, size_t e) {
        p.run(rows + b * p.n_features, e - b, out + b * width, raw, Scratch::local());
    });
}

void Predictor::predict(const double* rows, size_t n, double* out, int threads, bool raw) const {
    predict_batch(*impl_, rows, n, out, threads, raw);
}
void Predictor::predict(const float* rows, size_t n, double* out, int threads, bool raw) const {
    predict_batch(*impl_, rows, n, out, threads, raw);
}

static const detail::Factorization& factorization_of(const Pipeline& p) {
    auto* f = dynamic_cast<const detail::Factorization*>(p.model.get());
    if (!f)
        throw_error(ErrorKind::InvalidArgument, "recommend() needs a factorization model; this predictor is a '{}' model",
                    p.kind);
    return *f;
}

void Predictor::score_pairs(const int64_t* users, const int64_t* items, size_t n, double* out) const {
    const auto& f = factorization_of(*impl_);
    for (size_t i = 0; i < n; ++i) out[i] = f.score(users[i], items[i]);
}

Recommendations Predictor::recommend(const int64_t* users, size_t n_users, size_t k, const int64_t* indptr,
                                     const int64_t* indices, int threads) const {
    const auto& f = factorization_of(*impl_);
    if (k == 0)
        throw_error(ErrorKind::InvalidArgument, "recommend() needs k >= 1 items per user; got k = 0");
    size_t n_items = f.n_items();
    // More than every item cannot be recommended: cap k so the result is users x min(k, items),
    // never users x k (k = 10**9 asked for gigabytes of -1 slots).
    k = std::min(k, n_items);
    Recommendations rec;
    rec.k = k;
    rec.items.assign(n_users * k, -1);
    rec.scores.assign(n_users * k, std::numeric_limits<double>::quiet_NaN());
    if (k == 0 || n_users == 0) return rec;
    detail::parallel_blocks(n_users, 16, static_cast<double>(n_items) * 4.0, threads, [&](size_t b, size_t e) {
        thread_local std::vector<double> scores;
        thread_local std::vector<int64_t> order;
        scores.resize(n_items);
        for (size_t u = b; u < e; ++u) {
            f.score_all(users[u], scores.data());
            if (indptr) {
                for (int64_t j = indptr[u]; j < indptr[u + 1]; ++j) {
                    int64_t item = indices[j];
                    if (item >= 0 && static_cast<size_t>(item) < n_items)
                        scores[item] = -std::numeric_limits<double>::infinity();
                }
            }
            order.resize(n_items);
            size_t m = 0;
            for (size_t i = 0; i < n_items; ++i)
                if (scores[i] != -std::numeric_limits<double>::infinity()) order[m++] = static_cast<int64_t>(i);
            size_t take = std::min(k, m);
            auto better = [&](int64_t a, int64_t c) { return scores[a] > scores[c] || (scores[a] == scores[c] && a < c); };
            std::partial_sort(order.begin(), order.begin() + take, order.begin() + m, better);
            for (size_t j = 0; j < take; ++j) {
                rec.items[u * k + j] = order[j];
                rec.scores[u * k + j] = scores[order[j]];
            }
        }
    });
    return rec;
}

std::shared_ptr<const Predictor> load_predictor(std::string_view bytes) {
    auto record = parse_record(bytes);
    try {
        return std::make_shared<const Predictor>(std::move(record));
    } catch (const Error& e) {
        if (e.kind() != ErrorKind::InvalidArgument) throw;
        throw_error(ErrorKind::Corrupt, "predictor bytes verify but hold an invalid model: {}", e.what());
    }
}

} // namespace keel::inference

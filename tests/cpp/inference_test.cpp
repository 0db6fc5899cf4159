// tests/cpp/inference_test.cpp
#include "keel/common/error.hpp"
#include "keel/inference/predictor.hpp"

#include "support/expect_error.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>

using keel::Error;
using keel::ErrorKind;
using namespace keel::inference;
using keel::testing::error_message;

namespace {

Record base_record(std::vector<std::string> names) {
    Record r;
    std::vector<std::string> dtypes(names.size(), "float64");
    r["features.names"] = RecordValue::of_strings(std::move(names));
    r["features.dtypes"] = RecordValue::of_strings(std::move(dtypes));
    return r;
}

// y = 1 + 2 x0 - 3 x1
Record linear_record() {
    auto r = base_record({"a", "b"});
    r["model.kind"] = RecordValue::of_string("linear");
    r["linear.coef"] = RecordValue::of_reals({2.0, -3.0});
    r["linear.intercept"] = RecordValue::of_reals({1.0});
    return r;
}

// One stump on feature 0 at 0.5 (NaN goes right) and one on feature 1 at 0 (NaN goes left).
Record stump_record(const std::string& compare = "le") {
    auto r = base_record({"a", "b"});
    r["model.kind"] = RecordValue::of_string("trees");
    r["tree.n_raw"] = RecordValue::of_ints({1});
    r["tree.compare"] = RecordValue::of_string(compare);
    r["tree.base"] = RecordValue::of_reals({10.0});
    r["tree.offsets"] = RecordValue::of_ints({0, 3, 6});
    r["tree.output"] = RecordValue::of_ints({0, 0});
    r["node.feature"] = RecordValue::of_ints({0, -1, -1, 1, -1, -1});
    r["node.threshold"] = RecordValue::of_reals({0.5, 0, 0, 0.0, 0, 0});
    r["node.left"] = RecordValue::of_ints({1, -1, -1, 1, -1, -1});
    r["node.right"] = RecordValue::of_ints({2, -1, -1, 2, -1, -1});
    r["node.value"] = RecordValue::of_reals({0, 1.0, 2.0, 0, 100.0, 200.0});
    r["node.default_left"] = RecordValue::of_ints({0, 0, 0, 1, 0, 0});
    return r;
}

// A random ensemble: leaves at mixed depths, splits on random features with random default
// directions, trees alternating between two outputs. A tree `chain_depth` deep (a chain) is added
// when asked, first, which keeps the ensemble in the general node layout and puts a deep tree among
// the shallow ones of the first group of eight.
struct RandomForest {
    Record record;
    std::vector<int64_t> offsets{0}, feature, left, right, default_left;
    std::vector<double> threshold, value;
    size_t n_features = 5, width = 1;

    int64_t grow(std::mt19937_64& rng, int depth, int max_depth) {
        int64_t id = static_cast<int64_t>(feature.size()) - offsets.back();
        feature.push_back(-1);
        threshold.push_back(0);
        left.push_back(-1);
        right.push_back(-1);
        default_left.push_back(0);
        for (size_t w = 0; w < width; ++w) value.push_back(std::uniform_real_distribution<double>(-1, 1)(rng));
        if (depth < max_depth && std::uniform_real_distribution<double>()(rng) < 0.8) {
            size_t at = feature.size() - 1;
            feature[at] = static_cast<int64_t>(rng() % n_features);
            threshold[at] = std::uniform_real_distribution<double>(-1, 1)(rng);
            default_left[at] = static_cast<int64_t>(rng() % 2);
            left[at] = grow(rng, depth + 1, max_depth);
            right[at] = grow(rng, depth + 1, max_depth);
        }
        return id;
    }

    // width 2: every leaf holds two values, one per output (a class distribution), every tree adds both.
    RandomForest(uint64_t seed, size_t n_trees, const std::string& compare, int chain_depth = 0, size_t leaf_width = 1)
        : width(leaf_width) {
        std::mt19937_64 rng(seed);
        std::vector<int64_t> output;
        for (int d = 0; d < chain_depth; ++d) {  // node 2d splits; its right child 2d+1 is a leaf
            int64_t base = offsets.back(), at = static_cast<int64_t>(feature.size()) - base;
            feature.insert(feature.end(), {static_cast<int64_t>(d % n_features), -1});
            threshold.insert(threshold.end(), {0.1 * d - 0.5, 0});
            left.insert(left.end(), {at + 2, -1});
            right.insert(right.end(), {at + 1, -1});
            default_left.insert(default_left.end(), {d % 2, 0});
            for (size_t w = 0; w < width; ++w) value.push_back(0);  // the split's (unused) values
            for (size_t w = 0; w < width; ++w) value.push_back(static_cast<double>(d + w));
        }
        if (chain_depth > 0) {
            feature.push_back(-1), threshold.push_back(0), left.push_back(-1), right.push_back(-1);
            default_left.push_back(0);
            for (size_t w = 0; w < width; ++w) value.push_back(42.0 + static_cast<double>(w));
            offsets.push_back(static_cast<int64_t>(feature.size()));
            output.push_back(0);
        }
        for (size_t t = 0; t < n_trees; ++t) {
            grow(rng, 0, static_cast<int>(1 + rng() % 6));
            offsets.push_back(static_cast<int64_t>(feature.size()));
            output.push_back(width == 1 ? static_cast<int64_t>(t % 2) : 0);
        }
        std::vector<std::string> names;
        for (size_t j = 0; j < n_features; ++j) names.push_back("f" + std::to_string(j));
        record = base_record(names);
        record["model.kind"] = RecordValue::of_string("trees");
        record["tree.n_raw"] = RecordValue::of_ints({2});
        record["tree.leaf_width"] = RecordValue::of_ints({static_cast<int64_t>(width)});
        record["tree.compare"] = RecordValue::of_string(compare);
        record["tree.base"] = RecordValue::of_reals({0.25, -0.5});
        record["tree.offsets"] = RecordValue::of_ints(offsets);
        record["tree.output"] = RecordValue::of_ints(output);
        record["node.feature"] = RecordValue::of_ints(feature);
        record["node.threshold"] = RecordValue::of_reals(threshold);
        record["node.left"] = RecordValue::of_ints(left);
        record["node.right"] = RecordValue::of_ints(right);
        record["node.value"] = RecordValue::of_reals(value);
        record["node.default_left"] = RecordValue::of_ints(default_left);
    }

    // The library's rule, written out plainly: NaN takes the default direction, else compare.
    void expected(const double* row, const std::string& compare, double* out) const {
        const auto& outputs = record.at("tree.output").ints;
        double sum[2] = {0, 0};
        for (size_t t = 0; t + 1 < offsets.size(); ++t) {
            int64_t base = offsets[t], i = 0;
            while (feature[base + i] >= 0) {
                double v = row[feature[base + i]], th = threshold[base + i];
                bool go_left;
                if (std::isnan(v)) go_left = default_left[base + i] != 0;
                else if (compare == "le") go_left = v <= th;
                else if (compare == "le_float") go_left = static_cast<double>(static_cast<float>(v)) <= th;
                else go_left = static_cast<double>(static_cast<float>(v)) < th;
                i = go_left ? left[base + i] : right[base + i];
            }
            for (size_t w = 0; w < width; ++w) sum[outputs[t] + w] += value[(base + i) * width + w];
        }
        out[0] = 0.25 + sum[0];
        out[1] = -0.5 + sum[1];
    }

    // Rows drawn around the thresholds: exact ties, their float roundings and NaN.
    std::vector<double> rows(std::mt19937_64& rng, size_t n) const {
        std::vector<double> x(n * n_features);
        for (auto& v : x) {
            switch (rng() % 5) {
            case 0: v = std::numeric_limits<double>::quiet_NaN(); break;
            case 1: v = threshold[rng() % threshold.size()]; break;
            case 2: v = static_cast<float>(threshold[rng() % threshold.size()]); break;
            default: v = std::uniform_real_distribution<double>(-1.2, 1.2)(rng);
            }
        }
        return x;
    }
};

} // namespace

TEST(InferenceFormat, RoundTripsEveryValueType) {
    Record r;
    r["i"] = RecordValue::of_ints({1, -2, 3});
    r["r"] = RecordValue::of_reals({0.5, std::numeric_limits<double>::quiet_NaN()});
    r["s"] = RecordValue::of_strings({"a", "", "c\nd"});
    auto back = parse_record(serialize_record(r));
    EXPECT_EQ(back.at("i").ints, (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(back.at("r").reals[0], 0.5);
    EXPECT_TRUE(std::isnan(back.at("r").reals[1]));
    EXPECT_EQ(back.at("s").strings, (std::vector<std::string>{"a", "", "c\nd"}));
}

TEST(InferenceFormat, EveryTruncationIsCorrupt) {
    auto bytes = Predictor(linear_record()).to_bytes();
    for (size_t n = 0; n < bytes.size(); ++n) {
        auto msg = error_message(ErrorKind::Corrupt, [&] { load_predictor(std::string_view(bytes).substr(0, n)); });
        EXPECT_NE(msg.find("truncated"), std::string::npos) << n << ": " << msg;
    }
}

TEST(InferenceFormat, TamperedBytesAreCorrupt) {
    auto bytes = Predictor(linear_record()).to_bytes();
    for (size_t i = 88; i < bytes.size(); i += 7) {
        auto copy = bytes;
        copy[i] ^= 0x20;
        auto msg = error_message(ErrorKind::Corrupt, [&] { load_predictor(copy); });
        EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
    }
    auto bad_magic = bytes;
    bad_magic[0] = 'X';
    EXPECT_NE(error_message(ErrorKind::Corrupt, [&] { load_predictor(bad_magic); }).find("magic"), std::string::npos);
    auto trailing = bytes + "x";
    EXPECT_NE(error_message(ErrorKind::Corrupt, [&] { load_predictor(trailing); }).find("trailing"), std::string::npos);
}

TEST(InferenceFormat, FutureVersionIsCorrupt) {
    auto bytes = Predictor(linear_record()).to_bytes();
    uint32_t future = kFormatVersion + 1;
    std::memcpy(bytes.data() + 8, &future, 4);
    auto msg = error_message(ErrorKind::Corrupt, [&] { load_predictor(bytes); });
    EXPECT_NE(msg.find("version 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("upgrade Keel"), std::string::npos) << msg;
}

TEST(InferenceFormat, ValidBytesWithAnInvalidModelAreCorrupt) {
    auto r = linear_record();
    r["linear.coef"] = RecordValue::of_reals({1.0});
    auto bytes = serialize_record(r);
    auto msg = error_message(ErrorKind::Corrupt, [&] { load_predictor(bytes); });
    EXPECT_NE(msg.find("linear model"), std::string::npos) << msg;
}

TEST(InferencePredictor, LinearSingleRowAndBatch) {
    auto p = load_predictor(Predictor(linear_record()).to_bytes());
    ASSERT_EQ(p->num_features(), 2u);
    double row[2] = {1.0, 1.0}, out = 0;
    p->predict_row(row, &out);
    EXPECT_DOUBLE_EQ(out, 0.0);
    std::vector<double> rows(2 * 1000), outs(1000);
    for (size_t i = 0; i < 1000; ++i) rows[2 * i] = static_cast<double>(i), rows[2 * i + 1] = 1.0;
    p->predict(rows.data(), 1000, outs.data(), 2);
    for (size_t i = 0; i < 1000; ++i) ASSERT_DOUBLE_EQ(outs[i], 1.0 + 2.0 * i - 3.0);
}

TEST(InferencePredictor, MissingKeyNamesIt) {
    auto r = linear_record();
    r.erase("linear.intercept");
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { Predictor p(r); });
    EXPECT_NE(msg.find("'linear.intercept'"), std::string::npos) << msg;
}

TEST(InferencePredictor, TreesFollowDefaultDirectionsForNaN) {
    Predictor p(stump_record());
    const double nan = std::numeric_limits<double>::quiet_NaN();
    struct Case { double a, b, expected; };
    for (auto c : {Case{0.0, -1.0, 10 + 1 + 100}, Case{0.5, 0.5, 10 + 1 + 200}, Case{0.6, 0.0, 10 + 2 + 100},
                   Case{nan, nan, 10 + 2 + 100}}) {
        double row[2] = {c.a, c.b}, out = 0;
        p.predict_row(row, &out);
        EXPECT_DOUBLE_EQ(out, c.expected) << c.a << "," << c.b;
    }
    // Strict comparison (XGBoost): 0.5 < 0.5 is false.
    Predictor lt(stump_record("lt_float"));
    double row[2] = {0.5, 1.0}, out = 0;
    lt.predict_row(row, &out);
    EXPECT_DOUBLE_EQ(out, 10 + 2 + 200);
}

// Shallow ensembles are walked as padded complete trees, deep ones in the general layout; both must
// agree with the plain rule to the last bit, one row at a time and in batches of every remainder.
TEST(InferencePredictor, RandomEnsemblesMatchThePlainRuleInEveryLayout) {
    for (std::string compare : {"le", "le_float", "lt_float"}) {
        for (int chain : {0, 20}) {
            for (uint64_t seed = 1; seed <= 6; ++seed) {
                RandomForest forest(seed, 21, compare, chain, seed > 4 ? 2 : 1);
                Predictor p(forest.record);
                std::mt19937_64 rng(seed * 7);
                for (size_t n : {1, 7, 16, 37, 100}) {
                    auto x = forest.rows(rng, n);
                    std::vector<double> batch(2 * n), one(2), want(2);
                    p.predict(x.data(), n, batch.data(), 1, true);
                    for (size_t i = 0; i < n; ++i) {
                        const double* row = x.data() + i * forest.n_features;
                        forest.expected(row, compare, want.data());
                        p.predict_row(row, one.data(), true);
                        for (size_t k = 0; k < 2; ++k) {
                            ASSERT_EQ(one[k], want[k]) << compare << " chain " << chain << " seed " << seed << " row " << i;
                            ASSERT_EQ(batch[2 * i + k], want[k]) << compare << " chain " << chain << " seed " << seed
                                                                 << " batch of " << n << " row " << i;
                        }
                    }
                }
            }
        }
    }
}

// Batches of rows go through the wide kernel where the CPU has one (eight outputs a panel, the rest
// one by one); every layer width and row count must give the plain sums, to rounding.
TEST(InferencePredictor, MlpBatchesMatchPlainSumsForEveryWidth) {
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> u(-1, 1);
    const std::vector<size_t> widths{7, 13, 16, 3};  // inputs, two hidden layers, outputs
    auto r = base_record({"a", "b", "c", "d", "e", "f", "g"});
    r["model.kind"] = RecordValue::of_string("mlp");
    r["mlp.layers"] = RecordValue::of_ints({3});
    r["mlp.activation"] = RecordValue::of_string("tanh");
    std::vector<std::vector<double>> weights, biases;
    for (size_t i = 0; i + 1 < widths.size(); ++i) {
        std::vector<double> w(widths[i] * widths[i + 1]), b(widths[i + 1]);
        for (auto& v : w) v = u(rng);
        for (auto& v : b) v = u(rng);
        r["mlp." + std::to_string(i) + ".weights"] = RecordValue::of_reals(w);
        r["mlp." + std::to_string(i) + ".bias"] = RecordValue::of_reals(b);
        weights.push_back(w);
        biases.push_back(b);
    }
    Predictor p(r);
    for (size_t n : {1, 4, 5, 6, 7, 13, 64, 100}) {
        std::vector<double> x(n * widths[0]), out(n * 3);
        for (auto& v : x) v = u(rng);
        p.predict(x.data(), n, out.data(), 1, true);
        for (size_t i = 0; i < n; ++i) {
            std::vector<double> h(x.begin() + i * widths[0], x.begin() + (i + 1) * widths[0]);
            for (size_t l = 0; l + 1 < widths.size(); ++l) {
                std::vector<double> next(biases[l]);
                for (size_t j = 0; j < widths[l + 1]; ++j)
                    for (size_t a = 0; a < widths[l]; ++a) next[j] += h[a] * weights[l][a * widths[l + 1] + j];
                if (l + 2 < widths.size())
                    for (auto& v : next) v = std::tanh(v);
                h = next;
            }
            for (size_t k = 0; k < 3; ++k) EXPECT_NEAR(out[i * 3 + k], h[k], 1e-12) << "batch of " << n << " row " << i;
        }
    }
}

TEST(InferencePredictor, CategoricalBitsetsSendListedCategoriesLeft) {
    auto r = stump_record();
    r["node.category"] = RecordValue::of_ints({0, -1, -1, -1, -1, -1});
    r["cat.offsets"] = RecordValue::of_ints({0, 2});
    r["cat.words"] = RecordValue::of_ints({(1 << 3) | (1 << 7), 1});  // categories 3, 7 and 32
    Predictor p(r);
    for (auto [cat, left] : std::vector<std::pair<double, bool>>{{3, true}, {7, true}, {32, true}, {4, false},
                                                                  {-1, false}, {1000, false}}) {
        double row[2] = {cat, -1.0}, out = 0;
        p.predict_row(row, &out);
        EXPECT_DOUBLE_EQ(out, 10 + (left ? 1 : 2) + 100) << cat;
    }
}

TEST(InferencePredictor, RejectsCyclesAndOutOfRangeChildren) {
    auto r = stump_record();
    r["node.left"] = RecordValue::of_ints({1, -1, -1, 7, -1, -1});
    EXPECT_NE(error_message(ErrorKind::InvalidArgument, [&] { Predictor p(r); }).find("out of range"), std::string::npos);
}

// Found by fuzz_predictor: a tree whose offsets end past the node arrays was walked out of bounds
// (SIGSEGV) before the next tree's offsets were checked.
TEST(InferencePredictor, RejectsTreeOffsetsPastTheNodes) {
    auto r = stump_record();
    r["tree.offsets"] = RecordValue::of_ints({0, 1000, 6});
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { Predictor p(r); });
    EXPECT_NE(msg.find("tree 0 ends at node 1000 of 6"), std::string::npos) << msg;
}

// Found by fuzz_predictor: tree.n_raw = 0x18000000... without tree.base allocated that many base
// values (out of memory); a leaf width of 2^63 made n_nodes * width wrap past the length check.
TEST(InferencePredictor, RejectsRawOutputCountsAndLeafWidthsTheLeavesCannotHold) {
    for (auto [n_raw, width] : std::vector<std::pair<int64_t, int64_t>>{
             {int64_t(1) << 60, 1}, {-1, 1}, {7, 1}, {1, int64_t(1) << 63}, {1, 2}, {1, 0}}) {
        auto r = stump_record();
        r.erase("tree.base");
        r["tree.n_raw"] = RecordValue::of_ints({n_raw});
        r["tree.leaf_width"] = RecordValue::of_ints({width});
        auto msg = error_message(ErrorKind::InvalidArgument, [&] { Predictor p(r); });
        EXPECT_NE(msg.find("do not fit its 6 leaf values"), std::string::npos) << n_raw << " x " << width << ": " << msg;
    }
}

// Category sets are slices of the words; offsets that go back (or start elsewhere than 0) would
// read outside them at predict time.
TEST(InferencePredictor, RejectsUnorderedCategoryOffsets) {
    auto r = stump_record();
    r["node.category"] = RecordValue::of_ints({1, -1, -1, -1, -1, -1});
    r["cat.words"] = RecordValue::of_ints({1, 1});
    for (auto offsets : {std::vector<int64_t>{0, -5, 2}, std::vector<int64_t>{1, 0, 2}, std::vector<int64_t>{0, 3, 2}}) {
        r["cat.offsets"] = RecordValue::of_ints(offsets);
        auto msg = error_message(ErrorKind::InvalidArgument, [&] { Predictor p(r); });
        EXPECT_NE(msg.find("category offsets do not cover the words"), std::string::npos) << msg;
    }
}

TEST(InferencePredictor, SoftmaxAndBinarySigmoid) {
    auto r = base_record({"a"});
    r["model.kind"] = RecordValue::of_string("linear");
    r["linear.coef"] = RecordValue::of_reals({1.0, 0.0, -1.0});
    r["linear.intercept"] = RecordValue::of_reals({0.0, 0.0, 0.0});
    r["output.transform"] = RecordValue::of_string("softmax");
    r["task"] = RecordValue::of_string("classification");
    Predictor p(r);
    ASSERT_EQ(p.num_outputs(), 3u);
    double x = std::log(2.0), out[3];
    p.predict_row(&x, out);
    EXPECT_NEAR(out[0], 2.0 / 3.5, 1e-15);
    EXPECT_NEAR(out[2], 0.5 / 3.5, 1e-15);
    auto b = linear_record();
    b["output.transform"] = RecordValue::of_string("binary_sigmoid");
    Predictor pb(b);
    double row[2] = {1.0, 1.0}, o2[2];
    pb.predict_row(row, o2);
    EXPECT_DOUBLE_EQ(o2[1], 0.5);
    EXPECT_DOUBLE_EQ(o2[0], 0.5);
}

TEST(InferencePredictor, OneHotAndScalingInFront) {
    auto r = base_record({"color", "size"});
    r["pre.count"] = RecordValue::of_ints({1});
    r["pre.0.blocks"] = RecordValue::of_ints({2});
    r["pre.0.0.kind"] = RecordValue::of_string("onehot");
    r["pre.0.0.columns"] = RecordValue::of_ints({0});
    r["pre.0.0.categories"] = RecordValue::of_reals({1, 2, 3});
    r["pre.0.0.offsets"] = RecordValue::of_ints({0, 3});
    r["pre.0.1.kind"] = RecordValue::of_string("scale");
    r["pre.0.1.columns"] = RecordValue::of_ints({1});
    r["pre.0.1.mean"] = RecordValue::of_reals({10});
    r["pre.0.1.scale"] = RecordValue::of_reals({2});
    r["model.kind"] = RecordValue::of_string("linear");
    r["linear.coef"] = RecordValue::of_reals({100, 200, 300, 1});
    r["linear.intercept"] = RecordValue::of_reals({0});
    Predictor p(r);
    double row[2] = {2, 14}, out = 0;
    p.predict_row(row, &out);
    EXPECT_DOUBLE_EQ(out, 202);
    double unknown[2] = {5, 10};
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { p.predict_row(unknown, &out); });
    EXPECT_NE(msg.find("column 'color' has the category 5"), std::string::npos) << msg;
    // The same error from a worker thread reaches the caller.
    std::vector<double> rows(2 * 5000, 2.0);
    rows[2 * 4321] = 9;
    std::vector<double> outs(5000);
    error_message(ErrorKind::InvalidArgument, [&] { p.predict(rows.data(), 5000, outs.data(), 2); });
}

TEST(InferencePredictor, RecommendSkipsOwnedItems) {
    auto r = base_record({"user", "item"});
    r["task"] = RecordValue::of_string("factorization");
    r["model.kind"] = RecordValue::of_string("factorization");
    r["mf.dim"] = RecordValue::of_ints({1});
    r["mf.user_factors"] = RecordValue::of_reals({1.0, -1.0});
    r["mf.item_factors"] = RecordValue::of_reals({1.0, 2.0, 3.0, 4.0});
    Predictor p(r);
    int64_t users[2] = {0, 1};
    int64_t indptr[3] = {0, 1, 1}, indices[1] = {3};
    auto rec = p.recommend(users, 2, 2, indptr, indices, 1);
    EXPECT_EQ(rec.items, (std::vector<int64_t>{2, 1, 0, 1}));
    EXPECT_EQ(rec.scores, (std::vector<double>{3, 2, -1, -2}));
    int64_t bad = 5;
    error_message(ErrorKind::InvalidArgument, [&] { p.recommend(&bad, 1, 2, nullptr, nullptr, 1); });
    Predictor lin(linear_record());
    error_message(ErrorKind::InvalidArgument, [&] { lin.recommend(users, 1, 2, nullptr, nullptr, 1); });
    // Indices beyond int64 are refused before any conversion (found by fuzz_predictor: the cast of
    // 1e300 to int64 was undefined behaviour).
    double huge[2] = {1e300, 0}, out = 0;
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { p.predict_row(huge, &out); });
    EXPECT_NE(msg.find("user index 1e+300 is out of range"), std::string::npos) << msg;
    double negative_item[2] = {0, -1e300};
    msg = error_message(ErrorKind::InvalidArgument, [&] { p.predict_row(negative_item, &out); });
    EXPECT_NE(msg.find("item index -1e+300 is out of range"), std::string::npos) << msg;
}

// tests/cpp/inference_test.cpp
#include "keel/common/error.hpp"
#include "keel/inference/predictor.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

using keel::Error;
using keel::ErrorKind;
using namespace keel::inference;

namespace {

std::string error_of(auto&& fn, ErrorKind expected) {
    try {
        fn();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), expected) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "expected keel::Error";
    return {};
}

Record base_record(std::vector<std::string> names) {
    Record r;
    std::vector<std::string> dtypes(names.size(), "float64");
    r["features.names"] = Value::of_strings(std::move(names));
    r["features.dtypes"] = Value::of_strings(std::move(dtypes));
    return r;
}

// y = 1 + 2 x0 - 3 x1
Record linear_record() {
    auto r = base_record({"a", "b"});
    r["model.kind"] = Value::of_string("linear");
    r["linear.coef"] = Value::of_reals({2.0, -3.0});
    r["linear.intercept"] = Value::of_reals({1.0});
    return r;
}

// One stump on feature 0 at 0.5 (NaN goes right) and one on feature 1 at 0 (NaN goes left).
Record stump_record(const std::string& compare = "le") {
    auto r = base_record({"a", "b"});
    r["model.kind"] = Value::of_string("trees");
    r["tree.n_raw"] = Value::of_ints({1});
    r["tree.compare"] = Value::of_string(compare);
    r["tree.base"] = Value::of_reals({10.0});
    r["tree.offsets"] = Value::of_ints({0, 3, 6});
    r["tree.output"] = Value::of_ints({0, 0});
    r["node.feature"] = Value::of_ints({0, -1, -1, 1, -1, -1});
    r["node.threshold"] = Value::of_reals({0.5, 0, 0, 0.0, 0, 0});
    r["node.left"] = Value::of_ints({1, -1, -1, 1, -1, -1});
    r["node.right"] = Value::of_ints({2, -1, -1, 2, -1, -1});
    r["node.value"] = Value::of_reals({0, 1.0, 2.0, 0, 100.0, 200.0});
    r["node.default_left"] = Value::of_ints({0, 0, 0, 1, 0, 0});
    return r;
}

} // namespace

TEST(InferenceFormat, RoundTripsEveryValueType) {
    Record r;
    r["i"] = Value::of_ints({1, -2, 3});
    r["r"] = Value::of_reals({0.5, std::numeric_limits<double>::quiet_NaN()});
    r["s"] = Value::of_strings({"a", "", "c\nd"});
    auto back = parse_record(serialize_record(r));
    EXPECT_EQ(back.at("i").ints, (std::vector<int64_t>{1, -2, 3}));
    EXPECT_EQ(back.at("r").reals[0], 0.5);
    EXPECT_TRUE(std::isnan(back.at("r").reals[1]));
    EXPECT_EQ(back.at("s").strings, (std::vector<std::string>{"a", "", "c\nd"}));
}

TEST(InferenceFormat, EveryTruncationIsCorrupt) {
    auto bytes = Predictor(linear_record()).to_bytes();
    for (size_t n = 0; n < bytes.size(); ++n) {
        auto msg = error_of([&] { load_predictor(std::string_view(bytes).substr(0, n)); }, ErrorKind::Corrupt);
        EXPECT_NE(msg.find("truncated"), std::string::npos) << n << ": " << msg;
    }
}

TEST(InferenceFormat, TamperedBytesAreCorrupt) {
    auto bytes = Predictor(linear_record()).to_bytes();
    for (size_t i = 88; i < bytes.size(); i += 7) {
        auto copy = bytes;
        copy[i] ^= 0x20;
        auto msg = error_of([&] { load_predictor(copy); }, ErrorKind::Corrupt);
        EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
    }
    auto bad_magic = bytes;
    bad_magic[0] = 'X';
    EXPECT_NE(error_of([&] { load_predictor(bad_magic); }, ErrorKind::Corrupt).find("magic"), std::string::npos);
    auto trailing = bytes + "x";
    EXPECT_NE(error_of([&] { load_predictor(trailing); }, ErrorKind::Corrupt).find("trailing"), std::string::npos);
}

TEST(InferenceFormat, FutureVersionIsCorrupt) {
    auto bytes = Predictor(linear_record()).to_bytes();
    uint32_t future = kFormatVersion + 1;
    std::memcpy(bytes.data() + 8, &future, 4);
    auto msg = error_of([&] { load_predictor(bytes); }, ErrorKind::Corrupt);
    EXPECT_NE(msg.find("version 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("upgrade Keel"), std::string::npos) << msg;
}

TEST(InferenceFormat, ValidBytesWithAnInvalidModelAreCorrupt) {
    auto r = linear_record();
    r["linear.coef"] = Value::of_reals({1.0});
    auto bytes = serialize_record(r);
    auto msg = error_of([&] { load_predictor(bytes); }, ErrorKind::Corrupt);
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
    auto msg = error_of([&] { Predictor p(r); }, ErrorKind::InvalidArgument);
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

TEST(InferencePredictor, CategoricalBitsetsSendListedCategoriesLeft) {
    auto r = stump_record();
    r["node.category"] = Value::of_ints({0, -1, -1, -1, -1, -1});
    r["cat.offsets"] = Value::of_ints({0, 2});
    r["cat.words"] = Value::of_ints({(1 << 3) | (1 << 7), 1});  // categories 3, 7 and 32
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
    r["node.left"] = Value::of_ints({1, -1, -1, 7, -1, -1});
    EXPECT_NE(error_of([&] { Predictor p(r); }, ErrorKind::InvalidArgument).find("out of range"), std::string::npos);
}

TEST(InferencePredictor, SoftmaxAndBinarySigmoid) {
    auto r = base_record({"a"});
    r["model.kind"] = Value::of_string("linear");
    r["linear.coef"] = Value::of_reals({1.0, 0.0, -1.0});
    r["linear.intercept"] = Value::of_reals({0.0, 0.0, 0.0});
    r["output.transform"] = Value::of_string("softmax");
    r["task"] = Value::of_string("classification");
    Predictor p(r);
    ASSERT_EQ(p.num_outputs(), 3u);
    double x = std::log(2.0), out[3];
    p.predict_row(&x, out);
    EXPECT_NEAR(out[0], 2.0 / 3.5, 1e-15);
    EXPECT_NEAR(out[2], 0.5 / 3.5, 1e-15);
    auto b = linear_record();
    b["output.transform"] = Value::of_string("binary_sigmoid");
    Predictor pb(b);
    double row[2] = {1.0, 1.0}, o2[2];
    pb.predict_row(row, o2);
    EXPECT_DOUBLE_EQ(o2[1], 0.5);
    EXPECT_DOUBLE_EQ(o2[0], 0.5);
}

TEST(InferencePredictor, OneHotAndScalingInFront) {
    auto r = base_record({"color", "size"});
    r["pre.count"] = Value::of_ints({1});
    r["pre.0.blocks"] = Value::of_ints({2});
    r["pre.0.0.kind"] = Value::of_string("onehot");
    r["pre.0.0.columns"] = Value::of_ints({0});
    r["pre.0.0.categories"] = Value::of_reals({1, 2, 3});
    r["pre.0.0.offsets"] = Value::of_ints({0, 3});
    r["pre.0.1.kind"] = Value::of_string("scale");
    r["pre.0.1.columns"] = Value::of_ints({1});
    r["pre.0.1.mean"] = Value::of_reals({10});
    r["pre.0.1.scale"] = Value::of_reals({2});
    r["model.kind"] = Value::of_string("linear");
    r["linear.coef"] = Value::of_reals({100, 200, 300, 1});
    r["linear.intercept"] = Value::of_reals({0});
    Predictor p(r);
    double row[2] = {2, 14}, out = 0;
    p.predict_row(row, &out);
    EXPECT_DOUBLE_EQ(out, 202);
    double unknown[2] = {5, 10};
    auto msg = error_of([&] { p.predict_row(unknown, &out); }, ErrorKind::InvalidArgument);
    EXPECT_NE(msg.find("column 'color' has the category 5"), std::string::npos) << msg;
    // The same error from a worker thread reaches the caller.
    std::vector<double> rows(2 * 5000, 2.0);
    rows[2 * 4321] = 9;
    std::vector<double> outs(5000);
    error_of([&] { p.predict(rows.data(), 5000, outs.data(), 2); }, ErrorKind::InvalidArgument);
}

TEST(InferencePredictor, RecommendSkipsOwnedItems) {
    auto r = base_record({"user", "item"});
    r["task"] = Value::of_string("factorization");
    r["model.kind"] = Value::of_string("factorization");
    r["mf.dim"] = Value::of_ints({1});
    r["mf.user_factors"] = Value::of_reals({1.0, -1.0});
    r["mf.item_factors"] = Value::of_reals({1.0, 2.0, 3.0, 4.0});
    Predictor p(r);
    int64_t users[2] = {0, 1};
    int64_t indptr[3] = {0, 1, 1}, indices[1] = {3};
    auto rec = p.recommend(users, 2, 2, indptr, indices, 1);
    EXPECT_EQ(rec.items, (std::vector<int64_t>{2, 1, 0, 1}));
    EXPECT_EQ(rec.scores, (std::vector<double>{3, 2, -1, -2}));
    int64_t bad = 5;
    error_of([&] { p.recommend(&bad, 1, 2, nullptr, nullptr, 1); }, ErrorKind::InvalidArgument);
    Predictor lin(linear_record());
    error_of([&] { lin.recommend(users, 1, 2, nullptr, nullptr, 1); }, ErrorKind::InvalidArgument);
}

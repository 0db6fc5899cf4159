// tests/cpp/arrow_rules_test.cpp: the rules applied to imported Arrow columns, with no Python: the
// one rule for time (common/time_columns.hpp), the columns quality rules see
// (plugins/quality_input.hpp) and model rows read by column name (inference/column_rows.hpp).
#include "keel/common/error.hpp"
#include "keel/common/time_columns.hpp"
#include "keel/inference/column_rows.hpp"
#include "keel/plugins/quality_input.hpp"
#include "support/arrow_builder.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

using keel::DType;
using keel::Error;
using keel::ImportedBatch;
using keel::ImportOptions;

namespace {

using keel::testing::Arrow;

template <typename T>
T at(const keel::ColumnView& v, size_t i) {
    return static_cast<const T*>(v.values)[i];
}

// The message of the InvalidArgument `f` throws ("" when it throws nothing).
template <typename F>
std::string refusal(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), keel::ErrorKind::InvalidArgument) << e.what();
        return e.what();
    }
    return "";
}

// A utf8 column of `values`; `valid` (one flag per row) marks nulls when given.
Arrow::Col text(Arrow& A, const std::string& name, const std::vector<std::string>& values, std::vector<int> valid = {}) {
    std::vector<int32_t> offsets{0};
    std::string chars;
    for (const auto& v : values) chars += v, offsets.push_back(int32_t(chars.size()));
    const int64_t nulls = valid.empty() ? 0 : int64_t(std::count(valid.begin(), valid.end(), 0));
    return {A.schema("u", name),
            A.array(int64_t(values.size()), nulls, {valid.empty() ? nullptr : A.bits(valid), A.buf(offsets), A.chars(chars)})};
}

Arrow::Col timestamps(Arrow& A, const std::string& name, const std::string& format, const std::vector<int64_t>& v) {
    return {A.schema(format, name), A.array(int64_t(v.size()), 0, {nullptr, A.buf(v)})};
}

constexpr int64_t kNewYear2026 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z in ms

// --- the one rule for time -----------------------------------------------------------------------

TEST(TimeColumns, NaiveTimestampsAreRefusedNamingTheColumnAndTheFix) {
    Arrow A;
    ImportedBatch b = A.import({timestamps(A, "ts", "tsm:", {kNewYear2026})}, 1);
    const std::string why = refusal([&] { keel::refuse_naive_timestamps(b.columns()[0], "column"); });
    EXPECT_NE(why.find("column 'ts' has timestamps without a time zone"), std::string::npos) << why;
    EXPECT_NE(why.find("df['ts'] = df['ts'].dt.tz_localize('UTC')"), std::string::npos) << why;
    EXPECT_EQ(refusal([&] { keel::require_zoned_timestamps(b.columns()[0], "label column"); }).rfind("label column 'ts'", 0),
              0u);
}

TEST(TimeColumns, ZonedTimestampsPassAndOtherColumnsAreNotTimes) {
    Arrow A;
    ImportedBatch b = A.import({timestamps(A, "utc", "tsm:UTC", {kNewYear2026}),
                                timestamps(A, "paris", "tsu:Europe/Paris", {kNewYear2026 * 1000}),
                                timestamps(A, "fine", "tsu:UTC", {kNewYear2026 * 1000 + 1}),
                                {A.schema("tdD", "day"), A.array(1, 0, {nullptr, A.buf<int32_t>({20454})})},
                                text(A, "name", {"x"})},
                               1);
    const auto& c = b.columns();
    EXPECT_EQ(refusal([&] { keel::require_zoned_timestamps(c[0], "column"); }), "");
    EXPECT_EQ(refusal([&] { keel::require_zoned_timestamps(c[1], "column"); }), "");
    EXPECT_NE(refusal([&] { keel::require_zoned_timestamps(c[2], "column"); }).find("sub-millisecond precision at row 0"),
              std::string::npos);
    EXPECT_NE(refusal([&] { keel::require_zoned_timestamps(c[3], "column"); }).find("holds dates, not timestamps"),
              std::string::npos);
    EXPECT_NE(refusal([&] { keel::require_zoned_timestamps(c[4], "column"); }).find("has type string"),
              std::string::npos);
    // Only naive timestamps are refused by the weaker rule: dates, text and zoned times pass.
    for (const auto& col : c) {
        if (col.view.name == "fine") continue;
        EXPECT_EQ(refusal([&] { keel::refuse_naive_timestamps(col, "column"); }), "") << col.view.name;
    }
}

TEST(TimeColumns, IsoTextWithItsZoneIsOneInstantWrittenManyWays) {
    Arrow A;
    const std::vector<std::string> forms{"2026-01-01T00:00:00Z",        "2026-01-01T00:00:00.000Z",
                                         "2026-01-01T01:00:00+01:00",   "2025-12-31T19:00-05:00",
                                         "2026-01-01 05:30:00+0530",    " 2026-01-01t00:00:00z ",
                                         "2026-01-01T00:00:00,000000Z", "2026-01-01 00:00:00 +00:00",
                                         "2026-01-01T03+03",            ""};
    ImportedBatch b = A.import({text(A, "ts", forms, {1, 1, 1, 1, 1, 1, 1, 1, 1, 0})}, int64_t(forms.size()));
    std::vector<int64_t> ms(forms.size(), -1);
    keel::parse_zoned_times(b.columns()[0].view, forms.size(), "column", ms.data());
    for (size_t i = 0; i + 1 < forms.size(); ++i) EXPECT_EQ(ms[i], kNewYear2026) << forms[i];
    EXPECT_EQ(ms.back(), 0);  // a null row: its validity says so

    ImportedBatch more = A.import({text(A, "ts", {"1969-12-31T23:59:59.999Z", "2024-02-29T12:00:00.123Z"})}, 2);
    keel::parse_zoned_times(more.columns()[0].view, 2, "column", ms.data());
    EXPECT_EQ(ms[0], -1);
    EXPECT_EQ(ms[1], 1'709'208'000'123);
}

TEST(TimeColumns, IsoTextWithoutAZoneOrMalformedIsRefusedNamingTheRow) {
    Arrow A;
    auto why = [&](const std::string& value) {
        ImportedBatch b = A.import({text(A, "event_timestamp", {"2026-01-01T00:00:00Z", value})}, 2);
        int64_t ms[2];
        return refusal([&] { keel::parse_zoned_times(b.columns()[0].view, 2, "column", ms); });
    };
    for (const std::string naive : {"2026-01-01T00:00:00", "2026-01-01", "2026-01-01 12:00"}) {
        const std::string w = why(naive);
        EXPECT_NE(w.find("column 'event_timestamp' has a timestamp without a time zone at row 1: '" + naive + "'"),
                  std::string::npos)
            << w;
    }
    for (const std::string bad : {"garbage", "", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-1-1T00:00Z",
                                  "2026-01-01T00:00:00+25:00", "2026-01-01T00:00:00Zjunk", "2026-01-01T00:00:00.Z"})
        EXPECT_NE(why(bad).find("has an unparseable timestamp at row 1"), std::string::npos) << bad;
    EXPECT_NE(why("2026-01-01T00:00:00.0001Z").find("sub-millisecond precision at row 1"), std::string::npos);
}

// --- import options: what quality checks read ---------------------------------------------------

TEST(ImportOptionsTest, ScalarsBeyondTheCoreTypesAreConvertedOnlyWhenAsked) {
    Arrow A;
    // 1.10 and -2.5 as decimal(5, 2); 1.5 and -0.25 as float16; 01:02:03.004 as time64[us]; -3723 s.
    __int128 d0 = 110, d1 = -250;
    auto columns = [&] {
        return std::vector<Arrow::Col>{
            {A.schema("d:5,2", "price"), A.array(2, 0, {nullptr, A.buf<__int128>({d0, d1})})},
            {A.schema("e", "half"), A.array(2, 0, {nullptr, A.buf<uint16_t>({0x3e00, 0xb400})})},
            {A.schema("ttu", "at"), A.array(2, 1, {A.bits({1, 0}), A.buf<int64_t>({3'723'004'000, 0})})},
            {A.schema("tDs", "took"), A.array(2, 0, {nullptr, A.buf<int64_t>({-3723, 5})})}};
    };
    EXPECT_NE(refusal([&] { A.import(columns(), 2); }).find("column 'price' has type decimal(5,2)"), std::string::npos);

    ImportOptions convert;
    convert.convert_scalars = true;
    ImportedBatch b = A.import(columns(), 2, 0, convert);
    const auto& c = b.columns();
    ASSERT_EQ(c.size(), 4u);
    EXPECT_EQ(c[0].view.dtype, DType::Float64);
    EXPECT_DOUBLE_EQ(at<double>(c[0].view, 0), 1.1);
    EXPECT_DOUBLE_EQ(at<double>(c[0].view, 1), -2.5);
    EXPECT_DOUBLE_EQ(at<double>(c[1].view, 0), 1.5);
    EXPECT_DOUBLE_EQ(at<double>(c[1].view, 1), -0.25);
    EXPECT_EQ(c[2].view.dtype, DType::String);
    EXPECT_EQ(c[2].view.str(0), "01:02:03.004000");
    EXPECT_FALSE(c[2].view.is_valid(1));
    EXPECT_EQ(c[3].view.str(0), "-3723");
    EXPECT_EQ(c[3].view.str(1), "5");
}

TEST(ImportOptionsTest, DictionariesOfNumbersAreDecodedWhenAsked) {
    Arrow A;
    auto column = [&] {
        ArrowArray* words = A.array(2, 0, {nullptr, A.buf<int64_t>({10, 20})});
        return Arrow::Col{A.schema("c", "code", {}, A.schema("l", "")),
                          A.array(3, 1, {A.bits({1, 0, 1}), A.buf<int8_t>({1, 0, 0})}, {}, 0, words)};
    };
    EXPECT_NE(refusal([&] { A.import({column()}, 3); }).find("decode it"), std::string::npos);
    ImportOptions convert;
    convert.convert_scalars = true;
    ImportedBatch b = A.import({column()}, 3, 0, convert);
    const auto& v = b.columns()[0].view;
    ASSERT_EQ(v.dtype, DType::Int64);
    EXPECT_EQ(at<int64_t>(v, 0), 20);
    EXPECT_FALSE(v.is_valid(1));
    EXPECT_EQ(at<int64_t>(v, 2), 10);
    EXPECT_TRUE(b.columns()[0].origin.is_integer);
}

TEST(ImportOptionsTest, BinaryAndNestedColumnsAreLeftOutWhenAsked) {
    Arrow A;
    auto columns = [&] {
        ArrowArray* field = A.array(1, 0, {nullptr, A.buf<int64_t>({1})});
        return std::vector<Arrow::Col>{
            {A.schema("z", "blob"), A.array(1, 0, {nullptr, A.buf<int32_t>({0, 1}), A.chars("x")})},
            {A.schema("+s", "point", {A.schema("l", "x")}), A.array(1, 0, {nullptr}, {field})},
            {A.schema("l", "n"), A.array(1, 0, {nullptr, A.buf<int64_t>({7})})}};
    };
    EXPECT_NE(refusal([&] { A.import(columns(), 1); }).find("column 'blob' has type binary"), std::string::npos);
    ImportOptions skip;
    skip.skip_unreadable = true;
    ImportedBatch b = A.import(columns(), 1, 0, skip);
    ASSERT_EQ(b.columns().size(), 1u);
    EXPECT_EQ(b.columns()[0].view.name, "n");
    EXPECT_EQ(b.skipped(), (std::vector<std::string>{"blob", "point"}));
    EXPECT_EQ(b.rows(), 1u);
}

TEST(ImportOptionsTest, StringViewsAreStringsShortOrLong) {
    Arrow A;
    // Row 0 inline ("short", 5 bytes), row 1 null, row 2 in data buffer 1 at offset 3 (20 bytes).
    const std::string longer = "a string past twelve";
    std::vector<uint8_t> views(48, 0);
    const int32_t short_len = 5, long_len = int32_t(longer.size()), buffer = 1, start = 3;
    std::memcpy(views.data(), &short_len, 4);
    std::memcpy(views.data() + 4, "short", 5);
    std::memcpy(views.data() + 32, &long_len, 4);
    std::memcpy(views.data() + 36, longer.data(), 4);
    std::memcpy(views.data() + 40, &buffer, 4);
    std::memcpy(views.data() + 44, &start, 4);
    const std::string data1 = "xyz" + longer;
    ImportedBatch b = A.import({{A.schema("vu", "name"),
                                 A.array(3, 1, {A.bits({1, 0, 1}), A.buf(views), A.chars("unused"), A.chars(data1),
                                                A.buf<int64_t>({6, int64_t(data1.size())})})}},
                               3);
    const auto& v = b.columns()[0].view;
    ASSERT_EQ(v.dtype, DType::String);
    EXPECT_EQ(v.str(0), "short");
    EXPECT_FALSE(v.is_valid(1));
    EXPECT_EQ(v.str(2), longer);
    std::memcpy(views.data() + 44, &long_len, 4);  // now past the end of its buffer
    EXPECT_NE(refusal([&] {
                  A.import({{A.schema("vu", "name"),
                             A.array(3, 0, {nullptr, A.buf(views), A.chars("unused"), A.chars(data1),
                                            A.buf<int64_t>({6, int64_t(data1.size())})})}},
                           3);
              }).find("points outside its data"),
              std::string::npos);
}

// --- the batch quality rules see ------------------------------------------------------------------

TEST(QualityInput, VectorsAreLeftOutAndNaiveTimestampsRefused) {
    Arrow A;
    ArrowArray* items = A.array(4, 0, {nullptr, A.buf<float>({1, 2, 3, 4})});
    std::vector<Arrow::Col> cols{
        {A.schema("+w:2", "emb", {A.schema("f", "item")}), A.array(2, 0, {nullptr}, {items})},
        {A.schema("z", "raw"), A.array(2, 0, {nullptr, A.buf<int32_t>({0, 1, 2}), A.chars("xy")})},
        timestamps(A, "ts", "tsm:UTC", {kNewYear2026, kNewYear2026}),
        {A.schema("d:5,2", "price"), A.array(2, 0, {nullptr, A.buf<__int128>({100, 200})})}};
    auto [s, a] = A.batch(cols, 2);
    keel::plugins::QualityBatch q =
        keel::plugins::quality_batch(keel::import_arrow(&s, &a, keel::plugins::quality_import_options()));
    ASSERT_EQ(q.batch.columns.size(), 2u);
    EXPECT_EQ(q.batch.columns[0].name, "ts");
    EXPECT_EQ(q.batch.columns[1].name, "price");
    EXPECT_EQ(q.batch.columns[1].dtype, DType::Float64);
    EXPECT_EQ(q.batch.rows, 2u);
    EXPECT_EQ(q.left_out, (std::vector<std::string>{"raw", "emb"}));

    auto [s2, a2] = A.batch({timestamps(A, "ts", "tsn:", {0, 0})}, 2);
    const std::string why = refusal([&] {
        keel::plugins::quality_batch(keel::import_arrow(&s2, &a2, keel::plugins::quality_import_options()));
    });
    EXPECT_NE(why.find("column 'ts' has timestamps without a time zone"), std::string::npos) << why;
}

// --- model rows by column name --------------------------------------------------------------------

TEST(ColumnRows, InputsAreReadByNameInSignatureOrderWithNullsAsNaN) {
    Arrow A;
    ImportedBatch b = A.import({{A.schema("i", "sessions"), A.array(2, 1, {A.bits({1, 0}), A.buf<int32_t>({3, 9})})},
                                text(A, "note", {"a", "b"}),
                                {A.schema("g", "spend"), A.array(2, 0, {nullptr, A.buf<double>({1.5, -2})})},
                                {A.schema("b", "vip"), A.array(2, 0, {nullptr, A.bits({0, 1})})}},
                               2);
    const std::vector<keel::inference::FeatureSpec> signature{{"spend", "float64"}, {"vip", "float64"},
                                                              {"sessions", "float64"}};
    const std::vector<double> rows = keel::inference::rows_from_columns(signature, b);
    ASSERT_EQ(rows.size(), 6u);
    EXPECT_EQ(rows[0], 1.5);
    EXPECT_EQ(rows[1], 0.0);
    EXPECT_EQ(rows[2], 3.0);
    EXPECT_EQ(rows[3], -2.0);
    EXPECT_EQ(rows[4], 1.0);
    EXPECT_TRUE(std::isnan(rows[5]));
}

TEST(ColumnRows, MissingWrongTypedAndDuplicateColumnsAreRefused) {
    Arrow A;
    const std::vector<keel::inference::FeatureSpec> signature{{"spend", "float64"}, {"country", "float64"},
                                                              {"age", "float64"}};
    ImportedBatch b = A.import({{A.schema("g", "spend"), A.array(1, 0, {nullptr, A.buf<double>({1})})},
                                text(A, "country", {"DE"})},
                               1);
    EXPECT_EQ(refusal([&] { keel::inference::rows_from_columns(signature, b); }),
              "the data lacks the column(s) ['age']: the model reads ['spend', 'country', 'age']");
    const std::vector<keel::inference::FeatureSpec> two{{"spend", "float64"}, {"country", "float64"}};
    EXPECT_NE(refusal([&] { keel::inference::rows_from_columns(two, b); })
                  .find("column 'country' has type string, which the model cannot read as numbers"),
              std::string::npos);
    ImportedBatch dup = A.import({{A.schema("g", "spend"), A.array(1, 0, {nullptr, A.buf<double>({1})})},
                                  {A.schema("g", "spend"), A.array(1, 0, {nullptr, A.buf<double>({2})})}},
                                 1);
    EXPECT_NE(refusal([&] { keel::inference::rows_from_columns({{"spend", "float64"}}, dup); })
                  .find("column 'spend' appears more than once"),
              std::string::npos);
}

} // namespace

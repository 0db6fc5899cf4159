// tests/cpp/arrow_import_test.cpp: the Arrow C Data Interface importer, fed arrays built by hand
// (as a producer such as pyarrow lays them out) and checked for values, nulls, slices, refusals and
// that every array handed over is released exactly once.
#include "keel/common/arrow_import.hpp"
#include "keel/common/error.hpp"
#include "support/arrow_builder.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

using keel::DType;
using keel::Error;
using keel::ImportedBatch;

namespace {

using namespace keel::testing;  // the Arrow builder and its release counters

class ArrowImport : public ::testing::Test {
protected:
    void SetUp() override { g_batch_releases = g_schema_releases = g_stream_releases = 0; }
    Arrow arrow;
};

template <typename T>
T at(const keel::ColumnView& v, size_t i) {
    return static_cast<const T*>(v.values)[i];
}

} // namespace

TEST_F(ArrowImport, IntegersOfEveryWidthBecomeInt32OrInt64) {
    auto& A = arrow;
    ImportedBatch b = A.import({{A.schema("c", "i8"), A.array(3, 0, {nullptr, A.buf<int8_t>({-1, 2, -128})})},
                                {A.schema("C", "u8"), A.array(3, 0, {nullptr, A.buf<uint8_t>({1, 255, 0})})},
                                {A.schema("s", "i16"), A.array(3, 0, {nullptr, A.buf<int16_t>({-300, 0, 7})})},
                                {A.schema("S", "u16"), A.array(3, 0, {nullptr, A.buf<uint16_t>({65535, 1, 2})})},
                                {A.schema("i", "i32"), A.array(3, 0, {nullptr, A.buf<int32_t>({5, -6, 7})})},
                                {A.schema("I", "u32"), A.array(3, 0, {nullptr, A.buf<uint32_t>({4000000000u, 1, 2})})},
                                {A.schema("l", "i64"), A.array(3, 0, {nullptr, A.buf<int64_t>({1LL << 40, -1, 0})})},
                                {A.schema("L", "u64"), A.array(3, 0, {nullptr, A.buf<uint64_t>({9, 8, 7})})}},
                               3);
    ASSERT_EQ(b.rows(), 3u);
    const auto& c = b.columns();
    ASSERT_EQ(c.size(), 8u);
    EXPECT_EQ(c[0].view.dtype, DType::Int32);
    EXPECT_EQ(at<int32_t>(c[0].view, 2), -128);
    EXPECT_EQ(at<int32_t>(c[1].view, 1), 255);
    EXPECT_EQ(at<int32_t>(c[2].view, 0), -300);
    EXPECT_EQ(at<int32_t>(c[3].view, 0), 65535);
    EXPECT_EQ(at<int32_t>(c[4].view, 1), -6);
    EXPECT_EQ(c[5].view.dtype, DType::Int64);
    EXPECT_EQ(at<int64_t>(c[5].view, 0), 4000000000LL);
    EXPECT_EQ(at<int64_t>(c[6].view, 0), 1LL << 40);
    EXPECT_EQ(c[7].view.dtype, DType::Int64);
    EXPECT_EQ(at<int64_t>(c[7].view, 2), 7);
    for (const auto& col : c) {
        EXPECT_TRUE(col.origin.is_integer) << col.view.name;
        EXPECT_EQ(col.view.valid, nullptr) << col.view.name;
    }
    EXPECT_EQ(c[0].origin.type, "int8");
    EXPECT_EQ(c[7].origin.type, "uint64");
}

TEST_F(ArrowImport, FloatsBoolsAndStrings) {
    auto& A = arrow;
    ImportedBatch b = A.import(
        {{A.schema("f", "f32"), A.array(2, 0, {nullptr, A.buf<float>({1.5f, -2})})},
         {A.schema("g", "f64"), A.array(2, 0, {nullptr, A.buf<double>({0.25, NAN})})},
         {A.schema("b", "flag"), A.array(2, 0, {nullptr, A.bits({0, 1})})},
         {A.schema("u", "s"), A.array(2, 0, {nullptr, A.buf<int32_t>({0, 2, 5}), A.chars("abcde")})},
         {A.schema("U", "ls"), A.array(2, 0, {nullptr, A.buf<int64_t>({0, 0, 3}), A.chars("xyz")})}},
        2);
    const auto& c = b.columns();
    EXPECT_EQ(c[0].view.dtype, DType::Float32);
    EXPECT_EQ(at<float>(c[0].view, 0), 1.5f);
    EXPECT_EQ(c[1].view.dtype, DType::Float64);
    EXPECT_TRUE(std::isnan(at<double>(c[1].view, 1)));
    EXPECT_TRUE(c[1].origin.is_float);
    EXPECT_EQ(c[2].view.dtype, DType::Bool);
    EXPECT_EQ(at<uint8_t>(c[2].view, 0), 0);
    EXPECT_EQ(at<uint8_t>(c[2].view, 1), 1);
    EXPECT_EQ(c[3].view.dtype, DType::String);
    EXPECT_EQ(c[3].view.str(0), "ab");
    EXPECT_EQ(c[3].view.str(1), "cde");
    EXPECT_EQ(c[3].origin.type, "string");
    EXPECT_EQ(c[4].view.str(0), "");
    EXPECT_EQ(c[4].view.str(1), "xyz");
}

TEST_F(ArrowImport, TimestampsBecomeMillisecondsAndKeepTheirZone) {
    auto& A = arrow;
    ImportedBatch b = A.import(
        {{A.schema("tsn:UTC", "ns"), A.array(3, 0, {nullptr, A.buf<int64_t>({1'000'000, -1'500'000, 2'000'000})})},
         {A.schema("tsu:+02:00", "us"), A.array(3, 0, {nullptr, A.buf<int64_t>({1000, 2000, 3000})})},
         {A.schema("tsm:", "naive"), A.array(3, 0, {nullptr, A.buf<int64_t>({7, 8, 9})})},
         {A.schema("tss:Europe/Paris", "s"), A.array(3, 0, {nullptr, A.buf<int64_t>({1, 2, 3})})},
         {A.schema("tdD", "day"), A.array(3, 0, {nullptr, A.buf<int32_t>({0, 1, -1})})},
         {A.schema("tdm", "day64"), A.array(3, 0, {nullptr, A.buf<int64_t>({0, 86'400'000, 0})})}},
        3);
    const auto& c = b.columns();
    for (const auto& col : c) EXPECT_EQ(col.view.dtype, DType::Timestamp) << col.view.name;
    EXPECT_EQ(at<int64_t>(c[0].view, 0), 1);
    EXPECT_EQ(at<int64_t>(c[0].view, 1), -2);  // toward minus infinity
    EXPECT_EQ(c[0].origin.sub_ms_row, 1);
    EXPECT_EQ(c[0].origin.zone, "UTC");
    EXPECT_TRUE(c[0].origin.has_zone);
    EXPECT_EQ(c[0].origin.type, "timestamp[ns, tz=UTC]");
    EXPECT_EQ(at<int64_t>(c[1].view, 2), 3);
    EXPECT_EQ(c[1].origin.sub_ms_row, -1);
    EXPECT_EQ(c[1].origin.zone, "+02:00");
    EXPECT_FALSE(c[2].origin.has_zone);
    EXPECT_EQ(at<int64_t>(c[2].view, 1), 8);
    EXPECT_EQ(at<int64_t>(c[3].view, 2), 3000);
    EXPECT_TRUE(c[4].origin.is_date);
    EXPECT_EQ(at<int64_t>(c[4].view, 2), -86'400'000);
    EXPECT_TRUE(c[5].origin.is_date);
    EXPECT_EQ(c[4].origin.type, "date32[day]");
}

TEST_F(ArrowImport, VectorsFromEveryListType) {
    auto& A = arrow;
    auto* f32 = A.array(4, 0, {nullptr, A.buf<float>({1, 2, 3, 4})});
    auto* f64 = A.array(4, 0, {nullptr, A.buf<double>({1, 2, 3, 4})});
    auto* i64 = A.array(4, 0, {nullptr, A.buf<int64_t>({5, 6, 7, 8})});
    ImportedBatch b = A.import(
        {{A.schema("+w:2", "fixed", {A.schema("f", "item")}), A.array(2, 0, {nullptr}, {f32})},
         {A.schema("+l", "list", {A.schema("g", "item")}), A.array(2, 0, {nullptr, A.buf<int32_t>({0, 2, 4})}, {f64})},
         {A.schema("+L", "large", {A.schema("l", "item")}), A.array(2, 0, {nullptr, A.buf<int64_t>({0, 2, 4})}, {i64})}},
        2);
    const auto& c = b.columns();
    for (const auto& col : c) {
        EXPECT_EQ(col.view.dtype, DType::Vector) << col.view.name;
        EXPECT_EQ(col.view.dim, 2u) << col.view.name;
    }
    EXPECT_EQ(at<float>(c[0].view, 3), 4.0f);
    EXPECT_EQ(at<float>(c[1].view, 2), 3.0f);
    EXPECT_EQ(at<float>(c[2].view, 0), 5.0f);
    EXPECT_EQ(c[1].origin.type, "list<item: double>");
}

TEST_F(ArrowImport, DictionaryOfStringsIsDecoded) {
    auto& A = arrow;
    auto* words = A.array(2, 0, {nullptr, A.buf<int32_t>({0, 2, 5}), A.chars("eufra")});
    auto* dict_schema = A.schema("u", "");
    ImportedBatch b = A.import({{A.schema("i", "country", {}, dict_schema),
                                 A.array(4, 1, {A.bits({1, 1, 0, 1}), A.buf<int32_t>({1, 0, 9, 1})}, {}, 0, words)}},
                               4);
    const auto& v = b.columns()[0].view;
    EXPECT_EQ(v.dtype, DType::String);
    EXPECT_EQ(v.str(0), "fra");
    EXPECT_EQ(v.str(1), "eu");
    EXPECT_FALSE(v.is_valid(2));  // its index (9) is never read
    EXPECT_EQ(v.str(3), "fra");
    EXPECT_EQ(b.columns()[0].origin.type, "dictionary<values=string, indices=int32>");
}

TEST_F(ArrowImport, NullsAreOneBytePerRowAndNullTypeIsAllNull) {
    auto& A = arrow;
    ImportedBatch b = A.import({{A.schema("l", "x"), A.array(3, 1, {A.bits({1, 0, 1}), A.buf<int64_t>({1, 0, 3})})},
                                {A.schema("u", "s"), A.array(3, 2, {A.bits({0, 1, 0}), A.buf<int32_t>({0, 0, 1, 1}), A.chars("a")})},
                                {A.schema("l", "no_nulls_counted"), A.array(3, 0, {A.bits({0, 0, 0}), A.buf<int64_t>({1, 2, 3})})},
                                {A.schema("n", "nothing"), A.array(3, 3, {})}},
                               3);
    const auto& c = b.columns();
    EXPECT_TRUE(c[0].view.is_valid(0));
    EXPECT_FALSE(c[0].view.is_valid(1));
    EXPECT_FALSE(c[1].view.is_valid(0));
    EXPECT_EQ(c[1].view.str(1), "a");
    EXPECT_EQ(c[2].view.valid, nullptr);  // null_count 0: the bitmap is not read
    EXPECT_TRUE(c[3].origin.is_null);
    EXPECT_EQ(c[3].view.dtype, DType::Float64);
    for (size_t i = 0; i < 3; ++i) EXPECT_FALSE(c[3].view.is_valid(i));
}

TEST_F(ArrowImport, SlicesApplyArrayAndBatchOffsets) {
    auto& A = arrow;
    // Column offset 1 and batch offset 1: rows start at physical row 2.
    ImportedBatch b = A.import(
        {{A.schema("l", "x"), A.array(4, 1, {A.bits({1, 1, 1, 0, 1}), A.buf<int64_t>({0, 1, 2, 3, 4})}, {}, 1)},
         {A.schema("u", "s"), A.array(4, 0, {nullptr, A.buf<int32_t>({0, 1, 2, 3, 4, 5}), A.chars("abcde")}, {}, 1)},
         {A.schema("b", "flag"), A.array(4, 0, {nullptr, A.bits({0, 0, 1, 0, 1})}, {}, 1)},
         {A.schema("tsn:UTC", "t"), A.array(4, 0, {nullptr, A.buf<int64_t>({0, 0, 5'000'000, 6'000'000, 7'000'000})}, {}, 1)},
         {A.schema("+w:1", "v", {A.schema("f", "item")}),
          A.array(4, 0, {nullptr}, {A.array(5, 0, {nullptr, A.buf<float>({0, 1, 2, 3, 4})})}, 1)}},
        3, 1);
    ASSERT_EQ(b.rows(), 3u);
    const auto& c = b.columns();
    EXPECT_EQ(at<int64_t>(c[0].view, 0), 2);
    EXPECT_FALSE(c[0].view.is_valid(1));
    EXPECT_EQ(at<int64_t>(c[0].view, 2), 4);
    EXPECT_EQ(c[1].view.str(0), "c");
    EXPECT_EQ(c[1].view.str(2), "e");
    EXPECT_EQ(at<uint8_t>(c[2].view, 0), 1);
    EXPECT_EQ(at<uint8_t>(c[2].view, 1), 0);
    EXPECT_EQ(at<int64_t>(c[3].view, 0), 5);
    EXPECT_EQ(at<float>(c[4].view, 2), 4.0f);
}

TEST_F(ArrowImport, ReleasesOnceWhenDestroyedAndNotOnMove) {
    auto& A = arrow;
    {
        ImportedBatch b = A.import({{A.schema("l", "x"), A.array(1, 0, {nullptr, A.buf<int64_t>({1})})}}, 1);
        ImportedBatch moved = std::move(b);
        EXPECT_EQ(g_batch_releases, 0);
        EXPECT_EQ(at<int64_t>(moved.columns()[0].view, 0), 1);
    }
    EXPECT_EQ(g_batch_releases, 1);
    EXPECT_EQ(g_schema_releases, 1);
}

TEST_F(ArrowImport, UnsupportedTypesNameColumnTypeAndWhatToDo) {
    auto& A = arrow;
    auto expect_refused = [&](const std::string& format, std::vector<ArrowSchema*> kids, const std::string& text) {
        int before = g_batch_releases;
        std::vector<ArrowArray*> akids;
        for (size_t i = 0; i < kids.size(); ++i) akids.push_back(A.array(1, 0, {nullptr, A.buf<double>({1})}));
        auto [s, a] = A.batch({{A.schema(format, "bad", kids), A.array(1, 0, {nullptr, A.buf<int64_t>({1}), A.chars("x")}, akids)}}, 1);
        try {
            keel::import_arrow(&s, &a);
            ADD_FAILURE() << format << " was accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), keel::ErrorKind::InvalidArgument);
            EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("column 'bad'"), std::string::npos) << e.what();
        }
        EXPECT_EQ(g_batch_releases, before + 1) << format;  // released on the error path too
        EXPECT_EQ(a.release, nullptr);
    };
    expect_refused("z", {}, "has type binary, which Keel cannot take: decode the bytes to strings");
    expect_refused("e", {}, "has type halffloat, which Keel cannot take: cast it to float32");
    expect_refused("d:10,2", {}, "has type decimal(10,2), which Keel cannot take: cast it to float64");
    expect_refused("+s", {A.schema("g", "a")}, "has type struct, which Keel cannot take: flatten it");
    expect_refused("+l", {A.schema("u", "item")}, "has type list<item: string>, which Keel cannot take: vectors are lists of numbers");
    expect_refused("tDm", {}, "cast it to int64 or to strings");
    EXPECT_EQ(g_schema_releases, 6);
}

TEST_F(ArrowImport, ValuesTheCoreCannotHoldAreRefusedNamingRowAndValue) {
    auto& A = arrow;
    auto refused = [&](Arrow::Col col, int64_t rows, const std::string& text) {
        auto [s, a] = A.batch({col}, rows);
        try {
            keel::import_arrow(&s, &a);
            ADD_FAILURE() << "accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
        }
        EXPECT_EQ(a.release, nullptr);
    };
    refused({A.schema("L", "big"), A.array(2, 0, {nullptr, A.buf<uint64_t>({1, ~uint64_t(0)})})}, 2,
            "column 'big' has the value 18446744073709551615 at row 1, out of int64 range");
    refused({A.schema("+l", "emb", {A.schema("f", "item")}),
             A.array(3, 0, {nullptr, A.buf<int32_t>({0, 2, 3, 5})}, {A.array(5, 0, {nullptr, A.buf<float>({1, 2, 3, 4, 5})})})},
            3, "column 'emb' has a vector of length 1 at row 1, expected 2");
    refused({A.schema("l", "short"), A.array(1, 0, {nullptr, A.buf<int64_t>({1})})}, 2, "malformed");
    refused({A.schema("l", "nobuf"), A.array(1, 0, {nullptr})}, 1, "malformed");
    EXPECT_EQ(g_batch_releases, 4);
    // A null uint64 above the int64 range is never read.
    ImportedBatch ok = A.import({{A.schema("L", "big"), A.array(2, 1, {A.bits({1, 0}), A.buf<uint64_t>({1, ~uint64_t(0)})})}}, 2);
    EXPECT_FALSE(ok.columns()[0].view.is_valid(1));
}

namespace {

// A stream over prepared batches, counting its own release.
struct Stream {
    Arrow* arrow;
    std::vector<std::pair<ArrowSchema, ArrowArray>> batches;
    size_t next = 0;
    ArrowSchema schema;
};

ArrowArrayStream make_stream(Stream* s) {
    ArrowArrayStream out{};
    out.private_data = s;
    out.get_schema = [](ArrowArrayStream* st, ArrowSchema* o) {
        *o = static_cast<Stream*>(st->private_data)->schema;
        return 0;
    };
    out.get_next = [](ArrowArrayStream* st, ArrowArray* o) {
        auto* s = static_cast<Stream*>(st->private_data);
        if (s->next == s->batches.size()) {
            o->release = nullptr;
            return 0;
        }
        *o = s->batches[s->next++].second;
        return 0;
    };
    out.get_last_error = [](ArrowArrayStream*) -> const char* { return "no error"; };
    out.release = [](ArrowArrayStream* st) {
        ++g_stream_releases;
        st->release = nullptr;
    };
    return out;
}

} // namespace

TEST_F(ArrowImport, StreamsOfSeveralBatchesBecomeOne) {
    auto& A = arrow;
    Stream s{&A};
    s.batches.push_back(A.batch({{A.schema("l", "x"), A.array(2, 0, {nullptr, A.buf<int64_t>({1, 2})})},
                                 {A.schema("u", "s"), A.array(2, 0, {nullptr, A.buf<int32_t>({0, 1, 3}), A.chars("abc")})}},
                                2));
    s.batches.push_back(A.batch({{A.schema("l", "x"), A.array(1, 1, {A.bits({0}), A.buf<int64_t>({0})})},
                                 {A.schema("u", "s"), A.array(1, 0, {nullptr, A.buf<int32_t>({4, 6}), A.chars("xxxxde")})}},
                                1));
    s.schema = s.batches[0].first;
    ArrowArrayStream stream = make_stream(&s);
    {
        ImportedBatch b = keel::import_arrow_stream(&stream);
        EXPECT_EQ(stream.release, nullptr);
        EXPECT_EQ(g_stream_releases, 1);
        ASSERT_EQ(b.rows(), 3u);
        const auto& c = b.columns();
        EXPECT_EQ(at<int64_t>(c[0].view, 1), 2);
        EXPECT_TRUE(c[0].view.is_valid(0));
        EXPECT_FALSE(c[0].view.is_valid(2));
        EXPECT_EQ(c[1].view.str(1), "bc");
        EXPECT_EQ(c[1].view.str(2), "de");
    }
    EXPECT_EQ(g_batch_releases, 2);
    EXPECT_EQ(g_schema_releases, 1);  // the stream's schema, once
}

TEST_F(ArrowImport, StreamWithoutBatchesGivesTypedEmptyColumns) {
    auto& A = arrow;
    Stream s{&A};
    s.schema = A.batch({{A.schema("tsn:UTC", "t"), A.array(0, 0, {nullptr, nullptr})},
                        {A.schema("u", "s"), A.array(0, 0, {nullptr, nullptr, nullptr})},
                        {A.schema("+w:3", "v", {A.schema("f", "item")}), A.array(0, 0, {nullptr})}},
                       0).first;
    ArrowArrayStream stream = make_stream(&s);
    ImportedBatch b = keel::import_arrow_stream(&stream);
    ASSERT_EQ(b.rows(), 0u);
    ASSERT_EQ(b.columns().size(), 3u);
    EXPECT_EQ(b.columns()[0].view.dtype, DType::Timestamp);
    EXPECT_TRUE(b.columns()[0].origin.has_zone);
    EXPECT_EQ(b.columns()[1].view.dtype, DType::String);
    EXPECT_EQ(b.columns()[2].view.dim, 3u);
    EXPECT_EQ(g_stream_releases, 1);
    EXPECT_EQ(g_schema_releases, 1);
}

TEST_F(ArrowImport, AStreamErrorIsReportedAndTheStreamReleased) {
    Stream s{&arrow};
    ArrowArrayStream stream = make_stream(&s);
    stream.get_schema = [](ArrowArrayStream*, ArrowSchema*) { return 5; };
    stream.get_last_error = [](ArrowArrayStream*) -> const char* { return "disk on fire"; };
    try {
        keel::import_arrow_stream(&stream);
        ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("disk on fire"), std::string::npos) << e.what();
    }
    EXPECT_EQ(g_stream_releases, 1);
}

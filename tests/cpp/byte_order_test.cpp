// tests/cpp/byte_order_test.cpp: the binary formats' bytes, pinned: every number little-endian, as
// their docs say (keel/common/endian.hpp), so files move between machines and Keel versions.
#include "keel/common/endian.hpp"
#include "keel/common/error.hpp"
#include "keel/features/segment.hpp"
#include "keel/inference/format.hpp"

#include "support/expect_error.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

using keel::testing::corrupt_message;

namespace {

std::string bytes(std::initializer_list<int> values) {
    std::string out;
    for (int v : values) out.push_back(char(v));
    return out;
}

} // namespace

TEST(ByteOrder, HelpersReadAndWriteLittleEndianAtAnyAlignment) {
    char buf[9] = {};
    keel::le::store(buf + 1, uint32_t(0x01020304));
    EXPECT_EQ(std::string(buf + 1, 4), bytes({0x04, 0x03, 0x02, 0x01}));
    EXPECT_EQ(keel::le::load<uint32_t>(buf + 1), 0x01020304u);
    keel::le::store(buf + 1, 1.0);
    EXPECT_EQ(std::string(buf + 1, 8), bytes({0, 0, 0, 0, 0, 0, 0xf0, 0x3f}));
    EXPECT_EQ(keel::le::load<double>(buf + 1), 1.0);
}

TEST(ByteOrder, ModelRecordBytesAreLittleEndian) {
    keel::inference::Record record;
    record.emplace("k", keel::inference::RecordValue::of_ints({0x0102}));
    record.emplace("r", keel::inference::RecordValue::of_reals({1.0}));
    const std::string out = keel::inference::serialize_record(record);
    const std::string body = bytes({2, 0, 0, 0,                      // u32 entry count
                                    1, 0, 'k', 1, 1, 0, 0, 0, 0, 0, 0, 0,  // u16 key size, key, u8 Int, u64 count
                                    0x02, 0x01, 0, 0, 0, 0, 0, 0,         // int64 0x0102
                                    1, 0, 'r', 2, 1, 0, 0, 0, 0, 0, 0, 0,  // u16 key size, key, u8 Real, u64 count
                                    0, 0, 0, 0, 0, 0, 0xf0, 0x3f});       // float64 1.0
    ASSERT_EQ(out.size(), 8u + 4 + 4 + 8 + 64 + body.size());
    EXPECT_EQ(out.substr(0, 8), "KEELPRED");
    EXPECT_EQ(out.substr(8, 16), bytes({1, 0, 0, 0, 0, 0, 0, 0, int(body.size()), 0, 0, 0, 0, 0, 0, 0}));
    EXPECT_EQ(out.substr(8 + 16 + 64), body);
    EXPECT_EQ(keel::inference::parse_record(out).at("k").ints, std::vector<int64_t>{0x0102});

    // The version written big-endian (as a big-endian host copying its own order would) is refused.
    std::string swapped = out;
    swapped.replace(8, 4, bytes({0, 0, 0, 1}));
    EXPECT_NE(corrupt_message([&] { keel::inference::parse_record(swapped); }).find("version 16777216"),
              std::string::npos);
}

TEST(ByteOrder, SegmentBytesAreLittleEndian) {
    const std::vector<int64_t> values = {1, 0x0102030405060708};
    keel::features::BatchView batch;
    batch.rows = values.size();
    keel::features::ColumnView col;
    col.name = "x";
    col.dtype = keel::features::DType::Int64;
    col.values = values.data();
    batch.columns.push_back(col);
    const std::string out = keel::features::Segment::to_bytes(batch);

    // Header: magic, u32 version 2, u32 one column, u64 two rows, u64 zero; values at 64; directory at 128.
    ASSERT_EQ(out.size(), 128u + 2 + 1 + 1 + 4 + 4 * 8 + 8 + 8);
    EXPECT_EQ(out.substr(0, 32), "KEELSEG1" + bytes({2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
                                                      0, 0, 0, 0, 0, 0, 0, 0}));
    EXPECT_EQ(out.substr(64, 16), bytes({1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1}));
    EXPECT_EQ(out.substr(128, 40), bytes({1, 0, 'x', 3, 0, 0, 0, 0,   // u16 name size, name, u8 Int64, u32 dim
                                          64, 0, 0, 0, 0, 0, 0, 0,     // values offset
                                          16, 0, 0, 0, 0, 0, 0, 0,     // values length
                                          0, 0, 0, 0, 0, 0, 0, 0,      // no string offsets
                                          0, 0, 0, 0, 0, 0, 0, 0}));   // no validity
    EXPECT_EQ(out.substr(168, 8), bytes({128, 0, 0, 0, 0, 0, 0, 0}));  // trailer: directory offset
    auto seg = keel::features::Segment::from_bytes(out);
    EXPECT_EQ(static_cast<const int64_t*>(seg->column("x")->values)[1], 0x0102030405060708);

    std::string swapped = out;
    swapped.replace(8, 4, bytes({0, 0, 0, 2}));
    EXPECT_NE(corrupt_message([&] { keel::features::Segment::from_bytes(swapped); }).find("format version 33554432"),
              std::string::npos);
}

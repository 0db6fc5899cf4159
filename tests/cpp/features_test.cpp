// tests/cpp/features_test.cpp
#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/features/segment.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/workspace.hpp"

#include "support/count_allocations.hpp"
#include "support/expect_error.hpp"
#include "support/temp_dir.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace keel::features;
using keel::testing::corrupt_message;
using keel::testing::error_message;
using keel::testing::TempDir;

namespace {

constexpr int64_t kDay = 86'400'000;

// A small owned batch of player rows: ids, event days, a float feature and a PII string.
struct Rows {
    std::vector<int64_t> ids, events, created;
    std::vector<double> spend;
    std::vector<int64_t> offsets{0};
    std::string emails;

    void add(int64_t id, int64_t day, double value, int64_t created_day = 0) {
        ids.push_back(id);
        events.push_back(day * kDay);
        created.push_back(created_day * kDay);
        spend.push_back(value);
        emails += "p" + std::to_string(id) + "@x";
        offsets.push_back(int64_t(emails.size()));
    }
    BatchView batch() const {
        BatchView b;
        b.rows = ids.size();
        b.columns.push_back({"player_id", DType::Int64, 0, ids.data()});
        b.columns.push_back({"event_timestamp", DType::Timestamp, 0, events.data()});
        b.columns.push_back({"created_timestamp", DType::Timestamp, 0, created.data()});
        b.columns.push_back({"spend", DType::Float64, 0, spend.data()});
        b.columns.push_back({"email", DType::String, 0, emails.data(), offsets.data()});
        return b;
    }
};

std::shared_ptr<FeatureStore> make_store(const fs::path& path) {
    auto ws = keel::testing::open_workspace(path);
    auto store = std::make_shared<FeatureStore>(ws);
    store->define_entity({"player", {{"player_id", DType::Int64}}, ""});
    ViewSpec v;
    v.name = "activity";
    v.entities = {"player"};
    v.features = {{"spend", DType::Float64}, {"email", DType::String, 0, true}};
    v.ttl_ms = 10 * kDay;
    store->define_view(v);
    return store;
}

} // namespace

TEST(Segment, RoundTripsAndDetectsCorruption) {
    TempDir dir;
    Rows rows;
    rows.add(3, 1, 1.5);
    rows.add(1, 2, 2.5);
    std::vector<uint8_t> valid{1, 0};
    BatchView b = rows.batch();
    b.columns[3].valid = valid.data();
    fs::path file = dir.path / "a.kseg";
    Segment::write(file, b, {1, 0});
    auto seg = Segment::open(file);
    ASSERT_EQ(seg->rows(), 2u);
    const ColumnView* ids = seg->column("player_id");
    EXPECT_EQ(static_cast<const int64_t*>(ids->values)[0], 1);
    const ColumnView* spend = seg->column("spend");
    EXPECT_FALSE(spend->is_valid(0));
    EXPECT_TRUE(spend->is_valid(1));
    const ColumnView* email = seg->column("email");
    EXPECT_EQ(std::string(static_cast<const char*>(email->values) + email->offsets[0], 4), "p1@x");
    EXPECT_EQ(seg->column("missing"), nullptr);

    std::ofstream(dir.path / "bad.kseg") << "KEELSEG1 but truncated";
    corrupt_message([&] { Segment::open(dir.path / "bad.kseg"); });
}

// Format version 2 carries a checksum; version 1 (no checksum, the trailer is the directory offset
// alone) still opens; every offset is checked without wrapping sums.
TEST(Segment, ChecksumVersionsAndOverflowSafeOffsets) {
    Rows rows;
    rows.add(3, 1, 1.5);
    rows.add(1, 2, 2.5);
    const std::string bytes = Segment::to_bytes(rows.batch());
    auto seg = Segment::from_bytes(bytes);
    EXPECT_EQ(seg->format_version(), 2u);

    std::string flipped = bytes;
    flipped[100] ^= 0x04;
    EXPECT_NE(corrupt_message([&] { Segment::from_bytes(flipped); }).find("checksum mismatch"), std::string::npos);

    std::string v1 = bytes.substr(0, bytes.size() - 8);
    v1[8] = 1;
    auto old = Segment::from_bytes(v1);
    EXPECT_EQ(old->format_version(), 1u);
    EXPECT_EQ(static_cast<const double*>(old->column("spend")->values)[1], 2.5);

    // The reported crash: a validity offset of 2^64-1 whose sum with the row count wrapped. Find the
    // "spend" entry in the directory and patch its validity offset (version 1: no checksum to pass).
    uint64_t dir_off;
    std::memcpy(&dir_off, v1.data() + v1.size() - 8, 8);
    size_t at = v1.find("spend", dir_off);
    ASSERT_NE(at, std::string::npos);
    std::string huge = v1;
    const uint64_t max = UINT64_MAX;
    std::memcpy(huge.data() + at + 5 + 1 + 4 + 24, &max, 8);
    EXPECT_NE(corrupt_message([&] { Segment::from_bytes(huge); }).find("validity at offset 18446744073709551615"),
              std::string::npos);
    // A huge column count is refused before anything is reserved for it.
    std::string cols = v1;
    const uint32_t many = 0xffffffffu;
    std::memcpy(cols.data() + 12, &many, 4);
    EXPECT_NE(corrupt_message([&] { Segment::from_bytes(cols); }).find("claims 4294967295 columns"), std::string::npos);
    // One column in the header: the directory has bytes left over.
    std::string one = v1;
    const uint32_t single = 1;
    std::memcpy(one.data() + 12, &single, 4);
    EXPECT_NE(corrupt_message([&] { Segment::from_bytes(one); }).find("unexpected bytes after the directory"),
              std::string::npos);
    // Rows without columns (found by fuzz_segment: such a segment did not survive a write-back).
    std::string empty("KEELSEG1", 8);
    const uint32_t version1 = 1, no_columns = 0;
    const uint64_t five_rows = 5, zero = 0, dir_at = 32;
    empty.append(reinterpret_cast<const char*>(&version1), 4).append(reinterpret_cast<const char*>(&no_columns), 4);
    empty.append(reinterpret_cast<const char*>(&five_rows), 8).append(reinterpret_cast<const char*>(&zero), 8);
    empty.append(reinterpret_cast<const char*>(&dir_at), 8);
    EXPECT_NE(corrupt_message([&] { Segment::from_bytes(empty); }).find("claims 5 rows but has no columns"),
              std::string::npos);
    // A future version asks for a newer Keel.
    std::string future = bytes;
    future[8] = 3;
    EXPECT_NE(corrupt_message([&] { Segment::from_bytes(future); }).find("upgrade Keel"), std::string::npos);

    // Columns are checked against what the view declares.
    seg->check_columns({{"player_id", DType::Int64}}, {{"spend", DType::Float64}, {"later", DType::Int32}});
    EXPECT_NE(corrupt_message([&] { seg->check_columns({{"player_id", DType::String}}, {}); })
                  .find("column 'player_id' is int64 but the view says string"),
              std::string::npos);
    EXPECT_NE(corrupt_message([&] { seg->check_columns({{"region", DType::String}}, {}); }).find("has no column 'region'"),
              std::string::npos);
}

TEST(FeatureStore, IngestRefusesNullKeysNamingTheRow) {
    TempDir dir;
    auto store = make_store(dir.path);
    Rows rows;
    rows.add(1, 0, 1.0);
    rows.add(2, 0, 2.0);
    std::vector<uint8_t> valid{1, 0};
    BatchView b = rows.batch();
    b.columns[0].valid = valid.data();
    EXPECT_EQ(error_message(keel::ErrorKind::InvalidArgument, [&] { store->ingest("activity", b); }),
              "join key 'player_id' is null at row 1: drop or fill those rows");
    EXPECT_EQ(store->info("activity").rows, 0);
}

TEST(FeatureStore, PointInTimeJoinTtlAndLatestCreated) {
    TempDir dir;
    auto store = make_store(dir.path);
    Rows rows;
    rows.add(1, 0, 10.0, 1);
    rows.add(1, 0, 11.0, 2);  // same event time, later created: wins
    rows.add(1, 5, 12.0, 5);
    rows.add(2, 3, 20.0, 3);
    store->ingest("activity", rows.batch());

    std::vector<int64_t> ids{1, 1, 2, 2, 1, 9};
    std::vector<int64_t> ts{1 * kDay, 5 * kDay, 2 * kDay, 13 * kDay, 16 * kDay, 1 * kDay};
    BatchView labels;
    labels.rows = ids.size();
    labels.columns.push_back({"player_id", DType::Int64, 0, ids.data()});
    labels.columns.push_back({"event_timestamp", DType::Timestamp, 0, ts.data()});
    TrainingSet t = store->training_set(labels, {"activity:spend"}, "event_timestamp", "");
    const Column& c = t.features.columns[0];
    const double* v = reinterpret_cast<const double*>(c.values.data());
    ASSERT_EQ(c.valid.size(), 6u);
    EXPECT_EQ(v[0], 11.0);
    EXPECT_EQ(v[1], 12.0);
    EXPECT_FALSE(c.valid[2]);  // before the first value
    EXPECT_EQ(v[3], 20.0);     // age exactly the TTL: kept
    EXPECT_FALSE(c.valid[4]);  // older than the TTL
    EXPECT_FALSE(c.valid[5]);  // unknown entity
    EXPECT_EQ(store->training_set_record(t.record.id).label_rows, 6);
}

TEST(FeatureStore, PiiMaskedInTheCoreUnlessGranted) {
    TempDir dir;
    auto store = make_store(dir.path);
    Rows rows;
    rows.add(1, 0, 1.0);
    store->ingest("activity", rows.batch());
    auto email_of = [&] {
        Table t = store->read("activity");
        for (const auto& c : t.columns)
            if (c.name == "email") return std::string(reinterpret_cast<const char*>(c.values.data()), c.values.size());
        return std::string();
    };
    EXPECT_EQ(email_of().rfind("pii:", 0), 0u);
    EXPECT_FALSE(store->can_read("", "activity", "email"));
    EXPECT_TRUE(store->can_read("", "activity", "spend"));
    store->grant("support", "activity", {"email"});
    store->workspace().set_role("support");
    EXPECT_EQ(email_of(), "p1@x");
    store->workspace().set_role("other");
    EXPECT_NE(email_of(), "p1@x");
}

TEST(FeatureStore, OnlineReaderLooksUpAndSwitchesSnapshots) {
    TempDir dir;
    auto store = make_store(dir.path);
    Rows rows;
    rows.add(1, 0, 1.0);
    rows.add(2, 1, 2.0);
    store->ingest("activity", rows.batch());
    store->materialize("activity", 2 * kDay);
    auto reader = store->online_reader({"activity:spend"});
    std::vector<int64_t> ids{2, 1, 7};
    std::vector<double> out(3);
    reader->lookup(ids.data(), ids.size(), out.data(), 3 * kDay);
    EXPECT_EQ(out[0], 2.0);
    EXPECT_EQ(out[1], 1.0);
    EXPECT_TRUE(std::isnan(out[2]));
    reader->lookup(ids.data(), ids.size(), out.data(), 11 * kDay + 1);  // id 1 is now stale
    EXPECT_TRUE(std::isnan(out[1]));

    Rows more;
    more.add(7, 2, 7.0);
    store->ingest("activity", more.batch());
    std::string before = reader->snapshot_key();
    store->materialize("activity", 3 * kDay);
    EXPECT_NE(reader->snapshot_key(), before);
    reader->lookup(ids.data(), ids.size(), out.data(), 3 * kDay);
    EXPECT_EQ(out[2], 7.0);
}

TEST(FeatureStore, OnlineLookupAllocatesNothing) {
    TempDir dir;
    auto store = make_store(dir.path);
    Rows rows;
    for (int i = 0; i < 100; ++i) rows.add(i, 0, double(i));
    store->ingest("activity", rows.batch());
    store->materialize("activity", kDay);
    auto reader = store->online_reader({"activity:spend"});
    std::vector<int64_t> ids{5, 50, 500};
    std::vector<double> out(3);
    reader->lookup(ids.data(), ids.size(), out.data(), kDay);
    long before = g_allocations.load();
    for (int i = 0; i < 1000; ++i) reader->lookup(ids.data(), ids.size(), out.data(), kDay);
    EXPECT_EQ(g_allocations.load(), before);
    EXPECT_EQ(out[1], 50.0);
    EXPECT_TRUE(std::isnan(out[2]));
}

TEST(FeatureStore, OnlineLookupWithStatusTellsMissingFromStale) {
    TempDir dir;
    auto store = make_store(dir.path);
    Rows rows;
    rows.add(1, 0, 1.0);
    rows.add(2, 10, 2.0);
    store->ingest("activity", rows.batch());
    store->materialize("activity", 11 * kDay);
    auto reader = store->online_reader({"activity:spend"});
    std::vector<int64_t> ids{1, 2, 7};
    std::vector<double> out(3);
    std::vector<OnlineReader::Status> st(3);
    reader->lookup(ids.data(), ids.size(), out.data(), st.data(), 11 * kDay + 1);  // id 1 is past the TTL
    EXPECT_EQ(st[0], OnlineReader::Status::Stale);
    EXPECT_TRUE(std::isnan(out[0]));
    EXPECT_EQ(st[1], OnlineReader::Status::Ok);
    EXPECT_EQ(out[1], 2.0);
    EXPECT_EQ(st[2], OnlineReader::Status::MissingEntity);
    long before = g_allocations.load();
    for (int i = 0; i < 1000; ++i) reader->lookup(ids.data(), ids.size(), out.data(), st.data(), 11 * kDay + 1);
    EXPECT_EQ(g_allocations.load(), before);
}

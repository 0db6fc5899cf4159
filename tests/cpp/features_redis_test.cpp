// tests/cpp/features_redis_test.cpp: the online store on Redis against a real redis-server (CTest
// features.redis runs it under tests/servers/with_servers.py --redis, which sets KEEL_TEST_REDIS_URL).
#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/workspace.hpp"

#include "support/expect_error.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

using namespace keel::features;
using keel::ErrorKind;
using keel::testing::error_message;
using keel::testing::TempDir;

namespace {

constexpr int64_t kDay = 86'400'000;

std::string redis_url() {
    const char* url = std::getenv("KEEL_TEST_REDIS_URL");
    return url ? url : "";
}

struct Rows {
    std::vector<int64_t> ids, events;
    std::vector<double> spend;
    std::vector<uint8_t> spend_valid;
    std::vector<int64_t> offsets{0};
    std::string notes;

    void add(int64_t id, int64_t day, double value, bool valid = true) {
        ids.push_back(id);
        events.push_back(day * kDay);
        spend.push_back(value);
        spend_valid.push_back(valid ? 1 : 0);
        notes += "note-" + std::to_string(id);
        offsets.push_back(int64_t(notes.size()));
    }
    BatchView batch() const {
        BatchView b;
        b.rows = ids.size();
        b.columns.push_back({"player_id", DType::Int64, 0, ids.data()});
        b.columns.push_back({"event_timestamp", DType::Timestamp, 0, events.data()});
        b.columns.push_back({"spend", DType::Float64, 0, spend.data(), nullptr, spend_valid.data()});
        b.columns.push_back({"note", DType::String, 0, notes.data(), offsets.data()});
        return b;
    }
};

std::shared_ptr<FeatureStore> make_store(const std::filesystem::path& path) {
    auto store = std::make_shared<FeatureStore>(keel::storage::Workspace::open(path));
    store->define_entity({"player", {{"player_id", DType::Int64}}, ""});
    ViewSpec v;
    v.name = "activity";
    v.entities = {"player"};
    v.features = {{"spend", DType::Float64}, {"note", DType::String}};
    v.ttl_ms = 10 * kDay;
    store->define_view(v);
    return store;
}

class RedisOnline : public ::testing::Test {
protected:
    void SetUp() override {
        if (redis_url().empty()) GTEST_SKIP() << "needs KEEL_TEST_REDIS_URL (CTest features.redis starts redis-server)";
    }
};

// Both stores fed the same rows, one materialized locally and one to Redis.
struct Twins {
    TempDir local_dir, redis_dir;
    std::shared_ptr<FeatureStore> local = make_store(local_dir.path);
    std::shared_ptr<FeatureStore> redis = make_store(redis_dir.path);
    void ingest(const Rows& rows) {
        local->ingest("activity", rows.batch());
        redis->ingest("activity", rows.batch());
    }
    void materialize(int64_t end) {
        local->materialize("activity", end);
        redis->materialize("activity", end, redis_url());
    }
};

void expect_same_lookups(OnlineReader& a, OnlineReader& b, const std::vector<int64_t>& ids, int64_t now) {
    const size_t n = ids.size() * a.width();
    std::vector<double> va(n), vb(n);
    std::vector<OnlineReader::Status> sa(n), sb(n);
    a.lookup(ids.data(), ids.size(), va.data(), sa.data(), now);
    b.lookup(ids.data(), ids.size(), vb.data(), sb.data(), now);
    for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(sa[i], sb[i]) << "at " << i;
        EXPECT_TRUE(va[i] == vb[i] || (std::isnan(va[i]) && std::isnan(vb[i]))) << va[i] << " vs " << vb[i];
    }
    std::vector<int64_t> ea(ids.size()), eb(ids.size());
    a.event_times(0, ids.data(), ids.size(), ea.data());
    b.event_times(0, ids.data(), ids.size(), eb.data());
    EXPECT_EQ(ea, eb);
}

} // namespace

TEST_F(RedisOnline, ReadsWhatTheLocalStoreReads) {
    Twins t;
    Rows rows;
    rows.add(1, 0, 1.5);
    rows.add(2, 1, 0, false);  // a null value
    rows.add(3, 4, 3.5);
    rows.add(1, 3, 1.75);
    t.ingest(rows);
    t.materialize(5 * kDay);
    auto lr = t.local->online_reader({"activity:spend"});
    auto rr = t.redis->online_reader({"activity:spend"});
    EXPECT_FALSE(lr->remote());
    EXPECT_TRUE(rr->remote());
    const std::vector<int64_t> ids{1, 2, 3, 9, 1};
    expect_same_lookups(*lr, *rr, ids, 6 * kDay);
    expect_same_lookups(*lr, *rr, ids, 12 * kDay);  // 1 and 2 past the TTL: stale in both

    std::vector<int64_t> keys{3, 1, 9};
    BatchView kb;
    kb.rows = keys.size();
    kb.columns.push_back({"player_id", DType::Int64, 0, keys.data()});
    Table a = t.local->get_online({"activity:spend", "activity:note"}, kb, 6 * kDay);
    Table b = t.redis->get_online({"activity:spend", "activity:note"}, kb, 6 * kDay);
    ASSERT_EQ(a.columns.size(), b.columns.size());
    for (size_t c = 0; c < a.columns.size(); ++c) {
        EXPECT_EQ(a.columns[c].name, b.columns[c].name);
        EXPECT_EQ(a.columns[c].values, b.columns[c].values) << a.columns[c].name;
        EXPECT_EQ(a.columns[c].offsets, b.columns[c].offsets) << a.columns[c].name;
        EXPECT_EQ(a.columns[c].valid, b.columns[c].valid) << a.columns[c].name;
    }

    Rows more;
    more.add(9, 5, 9.0);
    more.add(2, 5, 2.5);
    t.ingest(more);
    t.materialize(6 * kDay);
    expect_same_lookups(*lr, *rr, ids, 6 * kDay);
}

TEST_F(RedisOnline, IncrementalWritesAndAReaderOfAnotherHandleFollows) {
    TempDir dir;
    auto store = make_store(dir.path);
    Rows rows;
    for (int i = 0; i < 100; ++i) rows.add(i, 0, double(i));
    store->ingest("activity", rows.batch());
    MaterializeResult first = store->materialize("activity", kDay, redis_url());
    EXPECT_EQ(first.written, 100);
    EXPECT_EQ(first.online, redis_url());

    auto other = std::make_shared<FeatureStore>(keel::storage::Workspace::open(dir.path));
    auto reader = other->online_reader({"activity:spend"});
    std::vector<int64_t> ids{7};
    double out = 0;
    reader->lookup(ids.data(), 1, &out, kDay);
    EXPECT_EQ(out, 7.0);

    Rows change;
    change.add(7, 1, 70.0);
    store->ingest("activity", change.batch());
    MaterializeResult second = store->materialize("activity", 2 * kDay);  // stays on Redis
    EXPECT_EQ(second.written, 1);
    EXPECT_EQ(second.online, redis_url());
    reader->refresh();
    reader->lookup(ids.data(), 1, &out, 2 * kDay);
    EXPECT_EQ(out, 70.0);
}

TEST_F(RedisOnline, AnUnreachableRedisIsUnavailableAndRecordsNothing) {
    TempDir dir;
    auto store = make_store(dir.path);
    Rows rows;
    rows.add(1, 0, 1.0);
    store->ingest("activity", rows.batch());
    // Port 1 on loopback: nothing listens there.
    std::string msg = error_message(ErrorKind::Unavailable,
                                    [&] { store->materialize("activity", kDay, "redis://127.0.0.1:1/0"); });
    EXPECT_NE(msg.find("redis://127.0.0.1:1/0"), std::string::npos) << msg;
    std::vector<int64_t> keys{1};
    BatchView kb;
    kb.rows = 1;
    kb.columns.push_back({"player_id", DType::Int64, 0, keys.data()});
    error_message(ErrorKind::NotFound, [&] { store->get_online({"activity:spend"}, kb); });  // never materialized
}

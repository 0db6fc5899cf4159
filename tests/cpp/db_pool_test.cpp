// tests/cpp/db_pool_test.cpp
// The Db's connection pool. Its rules (a lease per thread, re-entrant; bounded waits; broken and
// idle connections closed) are checked on a stand-in backend; what only a real server shows
// (reads in parallel, the server's connection count, a restart, writes from many threads, the
// change token across connections) on PostgreSQL, where CTest's postgres.db_pool runs this file
// under tests/servers/with_servers.py.
#include "keel/common/error.hpp"
#include "keel/registry/registry.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"
#include "keel/tracking/tracker.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

using keel::ErrorKind;
using keel::storage::Backend;
using keel::storage::Cursor;
using keel::storage::Db;
using keel::storage::PoolOptions;
using keel::storage::Transaction;
using keel::testing::error_message;
using namespace std::chrono_literals;

namespace {

// ------------------------------------------------------------------- the pool on a stand-in backend

struct FakeCursor final : Cursor {
    void bind_int64(int, int64_t) override {}
    void bind_double(int, double) override {}
    void bind_text(int, std::string_view) override {}
    void bind_blob(int, const void*, size_t) override {}
    void bind_null(int) override {}
    bool step() override { return false; }
    void defer() override {}
    void reset() override {}
    int64_t affected() const override { return 0; }
    bool is_null(int) const override { return true; }
    int64_t int64(int) const override { return 0; }
    double real(int) const override { return 0; }
    std::string text(int) const override { return {}; }
    std::string blob(int) const override { return {}; }
};

struct Counters {
    std::atomic<int> opened{0}, closed{0};
};

struct FakeBackend final : Backend {
    explicit FakeBackend(Counters& c) : counters(c) { ++counters.opened; }
    ~FakeBackend() override { ++counters.closed; }
    keel::storage::Dialect dialect() const override { return keel::storage::Dialect::Postgres; }
    const std::string& location() const override { return where; }
    std::unique_ptr<Cursor> prepare(std::string_view, bool) override { return std::make_unique<FakeCursor>(); }
    void exec(std::string_view) override {}
    void begin_write() override { tx = true; }
    void begin_read_snapshot() override { tx = true; }
    void commit(bool) override { tx = false; }
    void rollback() noexcept override { tx = false; }
    bool in_transaction() const override { return tx; }
    bool broken() const override { return lost; }
    uint64_t others_change_token() override { return 0; }

    Counters& counters;
    std::string where = "fake://pool";
    bool tx = false;
    bool lost = false;
};

std::unique_ptr<Db> fake_pool(Counters& counters, size_t size, std::chrono::milliseconds wait,
                              std::chrono::milliseconds idle = 60s) {
    return std::make_unique<Db>([&counters] { return std::make_unique<FakeBackend>(counters); },
                                PoolOptions{size, wait, idle});
}

// Holds a lease on its own thread until released.
struct Holder {
    explicit Holder(Db& db) {
        thread = std::thread([&] {
            auto guard = db.lock();
            backend = &db.backend();
            held = true;
            while (!release) std::this_thread::sleep_for(1ms);
        });
        while (!held) std::this_thread::sleep_for(1ms);
    }
    ~Holder() {
        release = true;
        thread.join();
    }
    std::thread thread;
    std::atomic<bool> held{false}, release{false};
    Backend* backend = nullptr;
};

TEST(DbPool, ALeaseIsPerThreadReentrantAndThreadsGetTheirOwnConnection) {
    Counters counters;
    auto db = fake_pool(counters, 3, 1000ms);
    EXPECT_EQ(db->open_connections(), 1u);  // the first opens with the Db, the others when needed
    auto outer = db->lock();
    Backend* mine = &db->backend();
    {
        auto inner = db->lock();  // the same thread: the same connection, no second one opened
        Transaction tx(*db);
        EXPECT_EQ(&db->backend(), mine);
        EXPECT_TRUE(db->in_transaction());
    }
    EXPECT_FALSE(db->in_transaction());
    {
        Holder a(*db), b(*db);  // two more threads hold the other two connections at the same time
        EXPECT_EQ(std::set<Backend*>({mine, a.backend, b.backend}).size(), 3u);
        EXPECT_EQ(db->open_connections(), 3u);
    }
    // A thread without a lease has no transaction, whatever another thread's connection has open.
    Transaction tx(*db);
    bool other_sees_transaction = true;
    std::thread([&] { other_sees_transaction = db->in_transaction(); }).join();
    EXPECT_FALSE(other_sees_transaction);
}

TEST(DbPool, AnExhaustedPoolWaitsThenFailsNamingItsSize) {
    Counters counters;
    auto db = fake_pool(counters, 2, 300ms);
    Holder a(*db), b(*db);
    auto started = std::chrono::steady_clock::now();
    std::string msg;
    std::thread([&] { msg = error_message(ErrorKind::Unavailable, [&] { auto guard = db->lock(); }); }).join();
    auto waited = std::chrono::steady_clock::now() - started;
    EXPECT_GE(waited, 290ms);
    EXPECT_LT(waited, 3s);
    EXPECT_NE(msg.find("all 2 connections of the pool to fake://pool stayed in use for 300 ms"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("pool_size"), std::string::npos) << msg;
    EXPECT_EQ(db->open_connections(), 2u);

    // A connection given back within the wait goes to the waiter.
    std::atomic<bool> got{false};
    std::thread waiter([&] {
        auto guard = db->lock();
        got = true;
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(got);
    a.release = true;
    waiter.join();
    EXPECT_TRUE(got);
}

TEST(DbPool, ABrokenConnectionIsDroppedWithTheIdleOnesAndTheNextLeaseOpensANewOne) {
    Counters counters;
    auto db = fake_pool(counters, 3, 1000ms);
    {
        Holder a(*db), b(*db), c(*db);  // three open
    }
    EXPECT_EQ(db->open_connections(), 3u);
    {
        auto guard = db->lock();
        static_cast<FakeBackend&>(db->backend()).lost = true;  // as after a server restart
    }
    // The lost one and the idle ones (most likely lost with it) are closed; none is kept broken.
    EXPECT_EQ(db->open_connections(), 0u);
    EXPECT_EQ(counters.closed, 3);
    auto guard = db->lock();
    EXPECT_FALSE(db->backend().broken());
    EXPECT_EQ(counters.opened, 4);
    EXPECT_EQ(db->open_connections(), 1u);
}

TEST(DbPool, IdleConnectionsBeyondOneCloseAfterTheIdleTime) {
    Counters counters;
    auto db = fake_pool(counters, 4, 1000ms, 50ms);
    {
        Holder a(*db), b(*db), c(*db);
    }
    EXPECT_EQ(db->open_connections(), 3u);
    std::this_thread::sleep_for(80ms);
    { auto guard = db->lock(); }  // the pool tidies up when used
    EXPECT_EQ(db->open_connections(), 1u);
    EXPECT_EQ(counters.closed, 2);
}

TEST(DbPool, AStatementPreparedWithoutALeaseHoldsOneForItsLife) {
    Counters counters;
    auto db = fake_pool(counters, 1, 200ms);
    {
        auto st = db->prepare("SELECT 1");  // the thread held nothing: the statement leases
        std::string msg;
        std::thread([&] { msg = error_message(ErrorKind::Unavailable, [&] { auto guard = db->lock(); }); }).join();
        EXPECT_NE(msg.find("all 1 connections"), std::string::npos) << msg;
    }
    std::thread([&] { auto guard = db->lock(); }).join();  // given back with the statement
}

// ------------------------------------------------------------------------- on a real PostgreSQL

struct PgPoolTest : keel::testing::WorkspaceTest {
    void SetUp() override {
        if (!on_postgres()) GTEST_SKIP() << "PostgreSQL only (CTest's postgres.db_pool)";
    }
    // The test's workspace once more, through a pool of `size` connections named `app` on the server.
    std::shared_ptr<keel::storage::Workspace> pooled(size_t size, const std::string& app = "keel_pool_test",
                                                     const std::string& extra = "") {
        std::string location = ws->location().workspace;
        location += "&pool_size=" + std::to_string(size) + "&application_name=" + app + extra;
        return keel::storage::Workspace::open(location, dir);
    }
    int64_t server_connections(const std::string& app) {
        auto guard = ws->db().lock();
        auto st = ws->db().prepare("SELECT count(*) FROM pg_stat_activity WHERE application_name = ?");
        st.bind(1, app);
        return st.step() ? st.int64(0) : -1;
    }
};

// `threads` threads each hold a connection of `db` for a 0.3 s query; the seconds it all took.
double parallel_sleeps(Db& db, int threads) {
    auto started = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i)
        pool.emplace_back([&] {
            auto guard = db.lock();
            auto st = db.prepare("SELECT pg_sleep(0.3)");
            st.step();
        });
    for (auto& t : pool) t.join();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

TEST_F(PgPoolTest, ReadsOnDifferentConnectionsRunAtOnce) {
    auto four = pooled(4);
    EXPECT_EQ(four->db().pool().size, 4u);
    const double parallel = parallel_sleeps(four->db(), 4);
    EXPECT_LT(parallel, 0.9) << "4 slow reads through a pool of 4 should overlap";
    auto one = pooled(1);
    const double serial = parallel_sleeps(one->db(), 4);
    EXPECT_GE(serial, 1.15) << "a pool of 1 is one connection: the reads queue";
}

TEST_F(PgPoolTest, ServerConnectionsStayBoundedUnder32Threads) {
    auto shared = pooled(4, "keel_pool_bound");
    keel::tracking::Tracker tracker(*shared);
    auto run = tracker.start_run({.experiment = "bound"});
    std::atomic<bool> done{false};
    std::atomic<int64_t> most{0};
    std::thread monitor([&] {
        while (!done) {
            most = std::max<int64_t>(most, server_connections("keel_pool_bound"));
            std::this_thread::sleep_for(5ms);
        }
    });
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int i = 0; i < 32; ++i)
        threads.emplace_back([&, i] {
            try {
                for (int k = 0; k < 5; ++k) {
                    tracker.get_info(run.id);
                    auto guard = shared->db().lock();
                    shared->db().prepare("SELECT pg_sleep(0.01)").step();
                }
                tracker.log_metric(run.id, "loss", double(i), i);
            } catch (...) {
                ++failures;
            }
        });
    for (auto& t : threads) t.join();
    done = true;
    monitor.join();
    EXPECT_EQ(failures, 0);
    EXPECT_LE(most, 4);
    EXPECT_GE(most, 2) << "the 32 threads should have used more than one connection";
    EXPECT_LE(shared->db().open_connections(), 4u);
    EXPECT_EQ(tracker.metric_history(run.id, "loss").size(), 32u);
}

TEST_F(PgPoolTest, WritesFromManyThreadsStaySerializedAndComplete) {
    auto shared = pooled(4);
    keel::tracking::Tracker tracker(*shared);
    keel::registry::Registry registry(*shared);
    auto run = tracker.start_run({.experiment = "writers"});
    const std::string digest = shared->artifacts().put_bytes("weights");
    std::vector<std::thread> threads;
    std::mutex mu;
    std::vector<int64_t> versions;
    std::atomic<int> failures{0};
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&, i] {
            try {
                for (int k = 0; k < 25; ++k) tracker.log_metric(run.id, "m" + std::to_string(i), double(k), k);
                for (int k = 0; k < 3; ++k) {
                    auto v = registry.register_version("churn", {.digest = digest, .run_id = run.id});
                    std::lock_guard lk(mu);
                    versions.push_back(v.version);
                }
            } catch (const std::exception& e) {
                ADD_FAILURE() << e.what();
                ++failures;
            }
        });
    for (auto& t : threads) t.join();
    ASSERT_EQ(failures, 0);
    std::sort(versions.begin(), versions.end());
    std::vector<int64_t> expected(24);
    for (size_t i = 0; i < expected.size(); ++i) expected[i] = int64_t(i + 1);
    EXPECT_EQ(versions, expected);  // version numbers assigned once each, none skipped
    for (int i = 0; i < 8; ++i) EXPECT_EQ(tracker.metric_history(run.id, "m" + std::to_string(i)).size(), 25u);
    EXPECT_EQ(registry.versions("churn").size(), 24u);
}

TEST_F(PgPoolTest, ACommitOnOneConnectionMovesTheTokenOfAnotherAtOnce) {
    auto shared = pooled(2);
    auto& db = shared->db();
    auto guard = db.lock();  // this thread keeps one connection; the writer gets the other
    Backend* mine = &db.backend();
    const uint64_t before = db.change_token();
    const uint64_t recent = db.recent_change_token(1h);
    Backend* theirs = nullptr;
    std::thread([&] {
        Transaction tx(db);
        theirs = &db.backend();
        db.exec("CREATE TABLE pool_probe (id INTEGER)");
        tx.commit();
    }).join();
    EXPECT_NE(mine, theirs);
    EXPECT_NE(db.change_token(), before);
    EXPECT_NE(db.recent_change_token(1h), recent);  // any of the pool's commits is seen at once
    EXPECT_TRUE(db.has_table("pool_probe"));
}

TEST_F(PgPoolTest, AMigrationInsideATransactionReachesOtherConnectionsOnlyWhenItCommits) {
    auto shared = pooled(2);
    auto& db = shared->db();
    const keel::storage::ModuleSchema schema{"pool_demo", {"CREATE TABLE pool_demo (id INTEGER PRIMARY KEY)"}};
    std::atomic<bool> other_done{false};
    std::thread other;
    {
        Transaction tx(db);
        db.ensure_schema(schema);  // applied inside the open transaction: not committed yet
        other = std::thread([&] {
            db.ensure_schema(schema);  // must not trust the uncommitted migration: waits, then sees it
            auto guard = db.lock();
            db.prepare("SELECT count(*) FROM pool_demo").step();
            other_done = true;
        });
        std::this_thread::sleep_for(200ms);
        EXPECT_FALSE(other_done) << "another connection used a table whose migration had not committed";
        tx.commit();
    }
    other.join();
    EXPECT_TRUE(other_done);
}

TEST_F(PgPoolTest, AServerRestartIsOneRetryableErrorThenThePoolRecovers) {
    auto shared = pooled(3, "keel_pool_restart");
    keel::tracking::Tracker tracker(*shared);
    auto run = tracker.start_run({.experiment = "restart"});
    {
        std::vector<std::thread> warm;  // three connections open and idle
        for (int i = 0; i < 3; ++i) warm.emplace_back([&] { parallel_sleeps(shared->db(), 1); });
        for (auto& t : warm) t.join();
    }
    {
        // What a restart does to every connection: the backends end.
        auto killer = open_again();
        killer->db().exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                          "'keel_pool_restart'");
    }
    std::this_thread::sleep_for(100ms);
    auto msg = error_message(ErrorKind::Unavailable, [&] { tracker.log_metric(run.id, "loss", 1.0, 0, 0); });
    EXPECT_NE(msg.find("lost the connection to PostgreSQL"), std::string::npos) << msg;
    EXPECT_NE(msg.find("retry"), std::string::npos) << msg;
    // The idle connections went with the broken one: the threads after it all succeed.
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int i = 0; i < 6; ++i)
        threads.emplace_back([&, i] {
            try {
                tracker.log_metric(run.id, "loss", 2.0, i + 1, 0);
            } catch (...) {
                ++failures;
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(tracker.metric_history(run.id, "loss").size(), 6u);
}

// The session's server-side prepared statements after some tracking work through `shared`.
int64_t named_statements(keel::storage::Workspace& shared) {
    keel::tracking::Tracker tracker(shared);
    auto run = tracker.start_run({.experiment = "named"});
    tracker.log_metric(run.id, "loss", 1.0, 0, 0);
    tracker.get_info(run.id);
    auto guard = shared.db().lock();
    auto st = shared.db().prepare("SELECT count(*) FROM pg_prepared_statements");
    return st.step() ? st.int64(0) : -1;
}

TEST_F(PgPoolTest, PreparedOffRunsEveryStatementUnnamedForPgBouncersTransactionMode) {
    EXPECT_GT(named_statements(*pooled(1)), 0);
    EXPECT_EQ(named_statements(*pooled(1, "keel_unnamed", "&prepared=off")), 0);
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { pooled(1, "x", "&prepared=maybe"); });
    EXPECT_NE(msg.find("prepared=maybe"), std::string::npos) << msg;
}

TEST_F(PgPoolTest, PoolParametersInTheUrlAreCheckedAndKeptFromLibpq) {
    auto shared = pooled(2, "keel_pool_params", "&pool_timeout=0.25&pool_idle=5");
    EXPECT_EQ(shared->db().pool().wait, 250ms);
    EXPECT_EQ(shared->db().pool().idle, 5000ms);
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { pooled(0); });
    EXPECT_NE(msg.find("pool_size=0 in the workspace URL is not a positive whole number"), std::string::npos) << msg;
    msg = error_message(ErrorKind::InvalidArgument, [&] { pooled(2, "x", "&pool_timeout=soon"); });
    EXPECT_NE(msg.find("pool_timeout=soon"), std::string::npos) << msg;
    // The default: a few connections, a bounded wait.
    EXPECT_EQ(ws->db().pool().size, 4u);
    EXPECT_EQ(ws->db().pool().wait, 30000ms);
}

} // namespace

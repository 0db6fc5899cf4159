// tests/cpp/pg_backend_test.cpp
// The PostgreSQL backend against a real server (CTest runs it under tests/servers/with_servers.py
// --postgres, which exports KEEL_TEST_PG_URL): what only this backend has to get right — its URL,
// its errors, write serialization across connections, the change token across machines, schema
// versions and binary-safe values. The module tests run on it too (CTest's postgres.* entries).
#include "keel/storage/db.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/sql_dialect.hpp"
#include "keel/storage/workspace.hpp"
#include "keel/tracking/tracker.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>

#include <optional>

#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

using keel::ErrorKind;
using keel::storage::Db;
using keel::storage::ModuleSchema;
using keel::storage::Transaction;
using keel::storage::Workspace;
using keel::testing::error_message;

namespace {

struct PgTest : keel::testing::WorkspaceTest {
    void SetUp() override {
        ASSERT_TRUE(on_postgres()) << "run under tests/servers/with_servers.py --postgres (KEEL_TEST_PG_URL)";
    }
    // The server's URL with `user` (and nothing else) changed, e.g. for a role that does not exist.
    static std::string url_with(std::string_view user, std::string_view database) {
        std::string url = keel::testing::test_pg_url();  // postgresql://postgres@127.0.0.1:PORT/keel
        auto at = url.find('@'), slash = url.find('/', at);
        return "postgresql://" + std::string(user) + url.substr(at, slash - at) + "/" + std::string(database);
    }
};

int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

} // namespace

TEST_F(PgTest, ValuesRoundTripExactly) {
    auto& db = ws->db();
    auto guard = db.lock();
    db.exec(keel::storage::translate_schema("CREATE TABLE vals (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB)",
                                            db.dialect()));
    const std::string bytes("a\0b\xff\x00z", 6), text = "snow \xe2\x98\x83 'quoted' \\ ?";
    const double values[] = {0.1, -1e-300, 1.0 / 3, std::numeric_limits<double>::infinity(), 12345678901234.5};
    for (double r : values) {
        int64_t id = db.prepare("INSERT INTO vals (i, r, t, b) VALUES (?, ?, ?, ?) RETURNING id")
                         .bind(1, std::numeric_limits<int64_t>::min())
                         .bind(2, r)
                         .bind(3, text)
                         .bind_blob(4, bytes.data(), bytes.size())
                         .insert_id();
        auto st = db.prepare("SELECT i, r, t, b, NULL FROM vals WHERE id = ?");
        st.bind(1, id);
        ASSERT_TRUE(st.step());
        EXPECT_EQ(st.int64(0), std::numeric_limits<int64_t>::min());
        EXPECT_EQ(st.real(1), r);
        EXPECT_EQ(st.text(2), text);
        EXPECT_EQ(st.blob(3), bytes);
        EXPECT_TRUE(st.is_null(4));
    }
    // PostgreSQL text holds no NUL byte: refused, not truncated.
    auto msg = error_message(ErrorKind::InvalidArgument, [&] {
        db.prepare("INSERT INTO vals (t) VALUES (?)").bind(1, std::string_view("a\0b", 3)).run();
    });
    EXPECT_NE(msg.find("NUL"), std::string::npos) << msg;
    auto st = db.prepare("UPDATE vals SET i = 1 WHERE r > ?");
    st.bind(1, 0.5).run();
    EXPECT_EQ(st.affected(), 2);  // infinity and 12345678901234.5
}

TEST_F(PgTest, AUniqueViolationIsAConflict) {
    auto& db = ws->db();
    auto guard = db.lock();
    db.exec("CREATE TABLE u (k TEXT PRIMARY KEY)");
    db.prepare("INSERT INTO u (k) VALUES (?)").bind(1, "a").run();
    auto msg = error_message(ErrorKind::Conflict, [&] { db.prepare("INSERT INTO u (k) VALUES (?)").bind(1, "a").run(); });
    EXPECT_NE(msg.find("23505"), std::string::npos) << msg;
}

TEST_F(PgTest, AWorkspaceWrittenByANewerKeelIsRefusedNamingBothVersions) {
    const ModuleSchema v2{"widgets", {"CREATE TABLE widgets (id INTEGER PRIMARY KEY)", "ALTER TABLE widgets ADD COLUMN n INTEGER"}};
    const ModuleSchema v1{"widgets", {v2.steps[0]}};
    ws->db().ensure_schema(v2);
    auto older = open_again();
    auto msg = error_message(ErrorKind::Corrupt, [&] { older->db().ensure_schema(v1); });
    EXPECT_NE(msg.find("schema version 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("only up to version 1"), std::string::npos) << msg;
    older->db().ensure_schema(v2);  // the same version opens
}

TEST_F(PgTest, MigrationsFromManyConnectionsAtOnceApplyOnce) {
    const ModuleSchema schema{"counted", {"CREATE TABLE counted (id INTEGER PRIMARY KEY)",
                                          "INSERT INTO counted (id) VALUES (1)"}};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&] { open_again()->db().ensure_schema(schema); });
    for (auto& t : threads) t.join();
    auto& db = ws->db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT COUNT(*) FROM counted");
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.int64(0), 1);
}

TEST_F(PgTest, WritersOnManyConnectionsAreSerialized) {
    // Read-then-write inside a transaction (as version numbering does) never loses an update.
    {
        auto guard = ws->db().lock();
        ws->db().exec("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL); "
                      "INSERT INTO counter (id, n) VALUES (1, 0)");
    }
    constexpr int kThreads = 4, kEach = 50;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&] {
            auto mine = open_again();
            auto& db = mine->db();
            for (int i = 0; i < kEach; ++i) {
                Transaction tx(db);
                int64_t n = 0;
                {
                    auto st = db.prepare("SELECT n FROM counter WHERE id = 1");
                    st.step();
                    n = st.int64(0);
                }
                db.prepare("UPDATE counter SET n = ? WHERE id = 1").bind(1, n + 1).run();
                tx.commit();
            }
        });
    for (auto& t : threads) t.join();
    auto guard = ws->db().lock();
    auto st = ws->db().prepare("SELECT n FROM counter WHERE id = 1");
    st.step();
    EXPECT_EQ(st.int64(0), kThreads * kEach);
}

TEST_F(PgTest, AChangeOnAnotherConnectionMovesTheChangeToken) {
    auto other = open_again();
    keel::storage::read_generation(ws->db());  // the generation table exists
    uint64_t before = ws->db().change_token();
    EXPECT_EQ(ws->db().change_token(), before);
    keel::storage::bump_generation(other->db());
    EXPECT_NE(ws->db().change_token(), before);
    // The recent token sees it within its age, without a round trip per call meanwhile.
    uint64_t recent = ws->db().recent_change_token(std::chrono::milliseconds(50));
    keel::storage::bump_generation(other->db());
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    EXPECT_NE(ws->db().recent_change_token(std::chrono::milliseconds(50)), recent);
}

// Writes no cache reads (metric logging) commit without moving other connections' tokens; a nested
// announced write announces the whole transaction.
TEST_F(PgTest, AnUnannouncedCommitLeavesOtherConnectionsTokensWhereTheyWere) {
    using keel::storage::Transaction;
    auto other = open_again();
    {
        auto guard = other->db().lock();
        other->db().exec("CREATE TABLE quiet (n INTEGER)");
    }
    auto write = [&](Transaction::Announce outer, std::optional<Transaction::Announce> inner) {
        Transaction tx(other->db(), outer);
        other->db().prepare("INSERT INTO quiet(n) VALUES (1)").run();
        if (inner) Transaction(other->db(), *inner).commit();
        tx.commit();
    };
    uint64_t before = ws->db().change_token();
    write(Transaction::Unannounced, std::nullopt);
    write(Transaction::Unannounced, Transaction::Unannounced);
    EXPECT_EQ(ws->db().change_token(), before);
    write(Transaction::Unannounced, Transaction::Announced);
    const uint64_t after_nested = ws->db().change_token();
    EXPECT_NE(after_nested, before);
    write(Transaction::Announced, std::nullopt);
    EXPECT_NE(ws->db().change_token(), after_nested);
    auto guard = ws->db().lock();
    auto st = ws->db().prepare("SELECT COUNT(*) FROM quiet");
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.int64(0), 4);  // every write landed, announced or not
}

TEST_F(PgTest, ARolledBackTransactionLeavesNothing) {
    auto& db = ws->db();
    {
        auto guard = db.lock();
        db.exec("CREATE TABLE r (k TEXT)");
    }
    {
        Transaction tx(db);
        db.prepare("INSERT INTO r (k) VALUES (?)").bind(1, "gone").run();
    }
    auto guard = db.lock();
    auto st = db.prepare("SELECT COUNT(*) FROM r");
    st.step();
    EXPECT_EQ(st.int64(0), 0);
}

TEST_F(PgTest, ALostConnectionIsARetryableErrorAndTheNextCallReconnects) {
    keel::tracking::Tracker tracker(*ws);
    auto run = tracker.start_run({.experiment = "e"});
    {
        // What a server restart does to the connection: the backend process ends.
        auto killer = open_again();
        auto guard = killer->db().lock();
        killer->db().exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid()");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto msg = error_message(ErrorKind::Unavailable, [&] { tracker.log_metric(run.id, "loss", 1.0, 0, 0); });
    EXPECT_NE(msg.find("lost the connection to PostgreSQL"), std::string::npos) << msg;
    EXPECT_NE(msg.find("retry"), std::string::npos) << msg;
    tracker.log_metric(run.id, "loss", 2.0, 1, 0);  // reconnected
    EXPECT_EQ(tracker.metric_history(run.id, "loss").size(), 1u);
}

TEST_F(PgTest, BadLocationsFailQuicklyNamingTheFix) {
    auto started = std::chrono::steady_clock::now();
    auto msg = error_message(ErrorKind::Unavailable, [&] {
        Workspace::open("postgresql://postgres@127.0.0.1:" + std::to_string(free_port()) + "/keel", dir);
    });
    EXPECT_NE(msg.find("cannot reach PostgreSQL at 127.0.0.1:"), std::string::npos) << msg;
    msg = error_message(ErrorKind::PermissionDenied, [&] { Workspace::open(url_with("nobody", "keel"), dir); });
    EXPECT_NE(msg.find("refused user 'nobody'"), std::string::npos) << msg;
    msg = error_message(ErrorKind::NotFound, [&] { Workspace::open(url_with("postgres", "nowhere"), dir); });
    EXPECT_NE(msg.find("no database 'nowhere'"), std::string::npos) << msg;
    msg = error_message(ErrorKind::InvalidArgument,
                        [&] { Workspace::open("postgresql://u:secret@h/db?colour=blue", dir); });
    EXPECT_NE(msg.find("malformed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("colour"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("secret"), std::string::npos) << msg;
    msg = error_message(ErrorKind::InvalidArgument,
                        [&] { Workspace::open(keel::testing::test_pg_url() + "?schema=a;drop", dir); });
    EXPECT_NE(msg.find("schema 'a;drop'"), std::string::npos) << msg;
    msg = error_message(ErrorKind::InvalidArgument,
                        [&] { Workspace::open(keel::testing::test_pg_url() + "?schema=no_objects_given"); });
    EXPECT_NE(msg.find("artifacts=s3://bucket/prefix or a shared directory"), std::string::npos) << msg;
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

TEST_F(PgTest, TheObjectsLocationIsRecordedSoTheUrlAloneReopensIt) {
    const std::string url = keel::testing::test_pg_url() + "?schema=recorded_objects";
    auto first = Workspace::open(url, (dir / "shared").string());
    auto digest = first->artifacts().put_bytes("model bytes");
    auto again = Workspace::open(url);  // another machine, knowing only the URL
    EXPECT_EQ(again->location().artifacts, std::filesystem::absolute(dir / "shared").lexically_normal().string());
    EXPECT_EQ(again->artifacts().get_bytes(digest), "model bytes");
    auto msg = error_message(ErrorKind::InvalidArgument, [&] { Workspace::open(url, (dir / "elsewhere").string()); });
    EXPECT_NE(msg.find("keeps its artifacts in"), std::string::npos) << msg;
    EXPECT_NE(msg.find("keel admin copy"), std::string::npos) << msg;
}

// One artifacts location, one workspace: gc of either would delete the other's objects.
TEST_F(PgTest, ASecondWorkspaceOnTheSameArtifactsDirectoryIsRefused) {
    const std::string url = keel::testing::test_pg_url() + "?schema=second_ws";
    auto msg = error_message(ErrorKind::AlreadyExists, [&] { Workspace::open(url, dir); });
    EXPECT_NE(msg.find(dir.string()), std::string::npos) << msg;
    EXPECT_NO_THROW(Workspace::open(url, dir / "second"));  // not created by the refusal: opens elsewhere
}

TEST_F(PgTest, TheUrlsPasswordIsNeverShown) {
    std::string url = keel::testing::test_pg_url();
    url.insert(url.find('@'), ":s3cret");
    auto other = Workspace::open(url + "?schema=pw_test", dir / "pw");  // trust authentication ignores it
    EXPECT_EQ(other->db().path().find("s3cret"), std::string::npos) << other->db().path();
    EXPECT_NE(other->db().path().find("schema=pw_test"), std::string::npos) << other->db().path();
}

// A write transaction runs as one pipeline: queued statements travel together and the client waits
// at a read or at commit. What callers rely on must not change with it.
TEST_F(PgTest, QueuedStatementsLandAndAreSeenByLaterReadsInTheTransaction) {
    auto& db = ws->db();
    {
        auto guard = db.lock();
        db.exec("CREATE TABLE q (k TEXT PRIMARY KEY)");
    }
    {
        Transaction tx(db);
        for (int i = 0; i < 1000; ++i)  // more than the pipeline holds unread: it reads as it goes
            db.prepare("INSERT INTO q (k) VALUES (?)").bind(1, "k" + std::to_string(i)).queue();
        auto st = db.prepare("SELECT COUNT(*) FROM q");
        ASSERT_TRUE(st.step());
        EXPECT_EQ(st.int64(0), 1000);
        db.prepare("INSERT INTO q (k) VALUES (?)").bind(1, "last").queue();
        tx.commit();
    }
    auto other = open_again();
    auto guard = other->db().lock();
    auto st = other->db().prepare("SELECT COUNT(*) FROM q");
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.int64(0), 1001);
}

TEST_F(PgTest, AQueuedStatementsFailureSurfacesAtCommitAndRollsBackTheWholeTransaction) {
    auto& db = ws->db();
    auto count = [&] {
        auto guard = db.lock();
        auto st = db.prepare("SELECT COUNT(*) FROM q");
        st.step();
        return st.int64(0);
    };
    {
        auto guard = db.lock();
        db.exec("CREATE TABLE q (k TEXT PRIMARY KEY); INSERT INTO q (k) VALUES ('taken')");
    }
    auto msg = error_message(ErrorKind::Conflict, [&] {
        Transaction tx(db);
        db.prepare("INSERT INTO q (k) VALUES (?)").bind(1, "before").queue();
        db.prepare("INSERT INTO q (k) VALUES (?)").bind(1, "taken").queue();
        db.prepare("INSERT INTO q (k) VALUES (?)").bind(1, "after").queue();
        tx.commit();
    });
    EXPECT_NE(msg.find("23505"), std::string::npos) << msg;
    EXPECT_NE(msg.find("INSERT INTO q"), std::string::npos) << msg;  // names the statement that failed
    EXPECT_EQ(count(), 1);
    // At a read instead of the commit: the same error, the same nothing-written.
    msg = error_message(ErrorKind::Conflict, [&] {
        Transaction tx(db);
        db.prepare("INSERT INTO q (k) VALUES (?)").bind(1, "taken").queue();
        auto st = db.prepare("SELECT COUNT(*) FROM q");
        st.step();
        tx.commit();
    });
    EXPECT_NE(msg.find("23505"), std::string::npos) << msg;
    EXPECT_EQ(count(), 1);
    {
        Transaction tx(db);  // the connection goes on
        db.prepare("INSERT INTO q (k) VALUES (?)").bind(1, "fine").queue();
        tx.commit();
    }
    EXPECT_EQ(count(), 2);
}

TEST_F(PgTest, SeveralStatementsInOneExecRunInsideThePipelinedTransaction) {
    auto& db = ws->db();
    {
        Transaction tx(db);
        db.exec("CREATE TABLE a (k TEXT); CREATE TABLE b (k TEXT)");
        db.prepare("INSERT INTO a (k) VALUES (?)").bind(1, "x").queue();
        db.exec("INSERT INTO b (k) VALUES ('y'); INSERT INTO b (k) VALUES ('z')");
        db.prepare("INSERT INTO a (k) VALUES (?)").bind(1, "w").queue();
        // rolled back: neither table, nor any row, survives
    }
    auto guard = db.lock();
    auto st = db.prepare("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                         "AND table_name IN ('a', 'b')");
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.int64(0), 0);
}

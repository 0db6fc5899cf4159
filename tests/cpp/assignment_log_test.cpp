// tests/cpp/assignment_log_test.cpp: the buffered assignment log — written by count, by age, on
// flush/close/destruction; concurrent appenders lose nothing; failed writes keep rows and report.
#include "keel/common/error.hpp"
#include "keel/serving/assignment_log.hpp"
#include "keel/serving/endpoint_store.hpp"
#include "keel/storage/workspace.hpp"

#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using keel::testing::TempDir;
using namespace keel;
using namespace keel::serving;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

Assignment row(const std::string& key, int64_t version = 3) {
    Assignment a;
    a.ts = 1'767'225'600'000;
    a.key = key;
    a.tenant = "studio-a";
    a.variant = "champion";
    a.model = "churn/" + std::to_string(version);
    a.version = version;
    a.prediction = 0.25;
    a.revision = 1;
    return a;
}

// What another process would see: its own connection to the workspace.
struct Reader {
    std::shared_ptr<storage::Workspace> ws;
    explicit Reader(const fs::path& path) : ws(storage::Workspace::open(path)) {}
    size_t count() { return EndpointStore(*ws).assignments("churn").size(); }
};

// Polls `done` until it holds or `limit` passes; returns the time it took (or limit when it never held).
Clock::duration wait_for(const std::function<bool()>& done, Clock::duration limit) {
    auto start = Clock::now();
    while (Clock::now() - start < limit) {
        if (done()) return Clock::now() - start;
        std::this_thread::sleep_for(5ms);
    }
    return limit;
}

void set_read_only(storage::Workspace& ws, bool on) {
    auto guard = ws.db().lock();
    ws.db().exec(on ? "PRAGMA query_only = ON" : "PRAGMA query_only = OFF");
}

} // namespace

TEST(AssignmentLog, WritesWhenFlushRowsWaitWithoutWaitingForTheTimeBound) {
    TempDir dir;
    auto ws = storage::Workspace::open(dir.path / "ws");
    AssignmentLog log(ws, "churn", {.flush_rows = 100, .max_age = 60s});
    Reader other(dir.path / "ws");
    for (int i = 0; i < 99; ++i) log.append(row(std::to_string(i)));
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(other.count(), 0u) << "99 rows of 100, a minute from the time bound: nothing written yet";
    log.append(row("99"));
    auto took = wait_for([&] { return other.count() == 100; }, 5s);
    EXPECT_LT(took, 5s) << "the 100th row did not trigger a write";
    EXPECT_EQ(log.stats().written, 100u);
}

TEST(AssignmentLog, WritesAFewRowsWithinTheTimeBoundWithoutAnotherAppend) {
    TempDir dir;
    auto ws = storage::Workspace::open(dir.path / "ws");
    AssignmentLog log(ws, "churn"); // defaults: 512 rows or 1 s
    ASSERT_EQ(log.options().max_age, 1000ms);
    Reader other(dir.path / "ws");
    auto start = Clock::now();
    for (int i = 0; i < 3; ++i) log.append(row(std::to_string(i)));
    if (Clock::now() - start < 900ms) {
        EXPECT_EQ(other.count(), 0u) << "written before the oldest row was 1 s old";
    }
    wait_for([&] { return other.count() == 3; }, 10s);
    auto took = Clock::now() - start;
    EXPECT_EQ(other.count(), 3u);
    EXPECT_GE(took, 900ms);
    // 1 s bound plus scheduling slack: helpers share a loaded 2-core machine when this runs.
    EXPECT_LT(took, 1500ms) << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
    auto s = log.stats();
    EXPECT_EQ(s.appended, 3u);
    EXPECT_EQ(s.written, 3u);
    EXPECT_EQ(s.buffered, 0u);
}

TEST(AssignmentLog, DestructionAndFlushWriteEverythingAtOnce) {
    TempDir dir;
    auto ws = storage::Workspace::open(dir.path / "ws");
    Reader other(dir.path / "ws");
    {
        AssignmentLog log(ws, "churn", {.flush_rows = 10'000, .max_age = 60s});
        for (int i = 0; i < 10; ++i) log.append(row(std::to_string(i)));
        log.flush();
        EXPECT_EQ(other.count(), 10u);
        std::vector<Assignment> batch;
        for (int i = 10; i < 25; ++i) batch.push_back(row(std::to_string(i)));
        log.append(std::move(batch));
        EXPECT_EQ(other.count(), 10u);
    }
    auto rows = EndpointStore(*other.ws).assignments("churn");
    ASSERT_EQ(rows.size(), 25u);
    for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].key, std::to_string(i)); // append order
    EXPECT_EQ(rows[3].model, "churn/3");
    EXPECT_EQ(rows[3].prediction, 0.25);
}

TEST(AssignmentLog, AppendsAfterCloseAreWrittenAtOnce) {
    TempDir dir;
    auto ws = storage::Workspace::open(dir.path / "ws");
    AssignmentLog log(ws, "churn", {.flush_rows = 10'000, .max_age = 60s});
    Reader other(dir.path / "ws");
    log.append(row("a"));
    log.close();
    EXPECT_EQ(other.count(), 1u);
    log.append(row("b")); // e.g. a daemon thread still serving while the interpreter exits
    EXPECT_EQ(other.count(), 2u);
    log.close();
}

TEST(AssignmentLog, ConcurrentAppendersLoseNothingAndKeepTheirOrder) {
    TempDir dir;
    auto ws = storage::Workspace::open(dir.path / "ws");
    constexpr int kThreads = 6, kRows = 3000;
    {
        AssignmentLog log(ws, "churn", {.flush_rows = 64, .max_age = 5ms});
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&log, t] {
                for (int i = 0; i < kRows; ++i) {
                    if (i % 7 == 0) {
                        std::vector<Assignment> batch{row(std::to_string(t)), row(std::to_string(t))};
                        batch[0].version = i;
                        batch[1].version = ++i;
                        log.append(std::move(batch));
                    } else {
                        auto a = row(std::to_string(t));
                        a.version = i;
                        log.append(std::move(a));
                    }
                    if (t == 0 && i % 500 == 0) log.flush(); // explicit flushes race the flusher
                }
            });
        for (auto& th : threads) th.join();
        EXPECT_EQ(log.stats().appended, uint64_t(kThreads * kRows));
    }
    auto rows = EndpointStore(*ws).assignments("churn");
    ASSERT_EQ(rows.size(), size_t(kThreads * kRows));
    std::map<std::string, int64_t> next;
    for (const auto& a : rows) {
        EXPECT_EQ(a.version, next[a.key]) << "thread " << a.key << ": a row missing or out of order";
        next[a.key] = a.version + 1;
    }
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[std::to_string(t)], kRows);
}

TEST(AssignmentLog, FailedWritesKeepTheRowsReportAndRetry) {
    TempDir dir;
    auto ws = storage::Workspace::open(dir.path / "ws");
    AssignmentLog log(ws, "churn", {.flush_rows = 512, .max_age = 100ms});
    Reader other(dir.path / "ws");
    set_read_only(*ws, true);
    for (int i = 0; i < 5; ++i) log.append(row(std::to_string(i)));
    try {
        log.flush();
        ADD_FAILURE() << "flush() on a read-only connection did not throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("readonly"), std::string::npos) << e.what();
    }
    auto s = log.stats();
    EXPECT_EQ(s.buffered, 5u);
    EXPECT_EQ(s.written, 0u);
    EXPECT_GE(s.failed_writes, 1u);
    EXPECT_NE(s.last_error.find("readonly"), std::string::npos) << s.last_error;
    // The flusher keeps retrying every max_age (and never throws) while the workspace refuses writes.
    auto failed = s.failed_writes;
    wait_for([&] { return log.stats().failed_writes >= failed + 2; }, 5s);
    EXPECT_GE(log.stats().failed_writes, failed + 2);
    log.append(row("5"));
    EXPECT_EQ(other.count(), 0u);
    set_read_only(*ws, false);
    wait_for([&] { return other.count() == 6; }, 5s);
    auto rows = EndpointStore(*other.ws).assignments("churn");
    ASSERT_EQ(rows.size(), 6u);
    for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].key, std::to_string(i)); // kept in order
    s = log.stats();
    EXPECT_EQ(s.written, 6u);
    EXPECT_EQ(s.buffered, 0u);
    EXPECT_EQ(s.dropped, 0u);
    EXPECT_EQ(s.last_error, "");
}

TEST(AssignmentLog, PastMaxBufferedTheOldestRowsAreDroppedAndCounted) {
    TempDir dir;
    auto ws = storage::Workspace::open(dir.path / "ws");
    AssignmentLog log(ws, "churn", {.flush_rows = 10, .max_age = 60s, .max_buffered = 10});
    set_read_only(*ws, true);
    for (int i = 0; i < 15; ++i) log.append(row(std::to_string(i)));
    EXPECT_THROW(log.flush(), Error);
    auto s = log.stats();
    EXPECT_EQ(s.dropped, 5u);
    EXPECT_EQ(s.buffered, 10u);
    set_read_only(*ws, false);
    log.flush();
    auto rows = EndpointStore(*ws).assignments("churn");
    ASSERT_EQ(rows.size(), 10u);
    EXPECT_EQ(rows.front().key, "5");
    EXPECT_EQ(rows.back().key, "14");
    EXPECT_EQ(log.stats().dropped, 5u);
}

TEST(AssignmentLog, DestructorThatCannotWriteSaysHowManyRowsItLoses) {
    TempDir dir;
    auto ws = storage::Workspace::open(dir.path / "ws");
    ::testing::internal::CaptureStderr();
    {
        AssignmentLog log(ws, "churn", {.flush_rows = 100, .max_age = 60s});
        for (int i = 0; i < 4; ++i) log.append(row(std::to_string(i)));
        set_read_only(*ws, true);
    }
    auto err = ::testing::internal::GetCapturedStderr();
    set_read_only(*ws, false);
    EXPECT_NE(err.find("endpoint 'churn': 4 assignments could not be written"), std::string::npos) << err;
}

TEST(AssignmentLog, RefusesOptionsThatCannotWork) {
    TempDir dir;
    auto ws = storage::Workspace::open(dir.path / "ws");
    auto kind = [&](AssignmentLogOptions o) {
        try {
            AssignmentLog log(ws, "churn", o);
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("endpoint 'churn'"), std::string::npos) << e.what();
            return e.kind();
        }
        return ErrorKind::Internal;
    };
    EXPECT_EQ(kind({.flush_rows = 0}), ErrorKind::InvalidArgument);
    EXPECT_EQ(kind({.max_age = 0ms}), ErrorKind::InvalidArgument);
    EXPECT_EQ(kind({.flush_rows = 100, .max_buffered = 10}), ErrorKind::InvalidArgument);
}

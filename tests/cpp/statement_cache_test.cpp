// tests/cpp/statement_cache_test.cpp
// Db's statement cache stays bounded however many distinct SQL shapes run, and never finalizes or
// resets a statement under the caller stepping it.
#include "keel/storage/db.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>

#include <unistd.h>

namespace fs = std::filesystem;
using keel::storage::Db;

namespace {

struct TempDb {
    fs::path dir = fs::temp_directory_path() / ("keel-stmt-cache-" + std::to_string(::getpid()) + "-" +
                                                ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::unique_ptr<Db> db;
    TempDb() {
        fs::remove_all(dir);
        fs::create_directories(dir);
        db = std::make_unique<Db>((dir / "keel.db").string());
        auto guard = db->lock();
        db->exec("CREATE TABLE t (x INTEGER)");
        for (int i = 0; i < 10; ++i) db->exec("INSERT INTO t VALUES (" + std::to_string(i) + ")");
    }
    ~TempDb() {
        db.reset();
        fs::remove_all(dir);
    }
};

// A distinct, search-like shape per i: a different number and order of comparisons.
std::string shape(int i) {
    std::string sql = "SELECT x FROM t WHERE 1";
    for (int j = 0; j <= i % 40; ++j) sql += " AND x " + std::string(j % 2 ? "<" : ">") + " ?";
    sql += " AND x != " + std::to_string(i) + " ORDER BY x LIMIT 1";
    return sql;
}

} // namespace

TEST(StatementCache, StaysBoundedOverThousandsOfShapes) {
    TempDb t;
    auto guard = t.db->lock();
    int64_t after_warmup = 0;
    for (int i = 0; i < 5000; ++i) {
        auto st = t.db->prepare(shape(i));
        st.step();
        if (i == Db::kStatementCacheSize * 2) after_warmup = sqlite3_memory_used();
    }
    EXPECT_LE(t.db->cached_statements(), Db::kStatementCacheSize);
    // Unbounded, 4,500 more statements of a few KB each would add megabytes.
    EXPECT_LT(sqlite3_memory_used() - after_warmup, 512 * 1024);
}

TEST(StatementCache, StatementInUseIsNeverEvicted) {
    TempDb t;
    auto guard = t.db->lock();
    auto outer = t.db->prepare("SELECT x FROM t ORDER BY x");
    ASSERT_TRUE(outer.step());
    EXPECT_EQ(outer.int64(0), 0);
    for (int i = 0; i < 1000; ++i) t.db->prepare(shape(i)).step(); // pushes outer far past the LRU end
    for (int expected = 1; expected < 10; ++expected) {
        ASSERT_TRUE(outer.step());
        EXPECT_EQ(outer.int64(0), expected);
    }
    EXPECT_FALSE(outer.step());
}

TEST(StatementCache, SameSqlNestedGetsItsOwnStatement) {
    TempDb t;
    auto guard = t.db->lock();
    const char* sql = "SELECT x FROM t WHERE x >= ? ORDER BY x";
    auto outer = t.db->prepare(sql);
    outer.bind(1, int64_t(0));
    int seen = 0;
    while (outer.step()) {
        EXPECT_EQ(outer.int64(0), seen);
        auto inner = t.db->prepare(sql); // e.g. a helper called inside a loop over the same query
        inner.bind(1, int64_t(5));
        int inner_rows = 0;
        while (inner.step()) ++inner_rows;
        EXPECT_EQ(inner_rows, 5);
        ++seen;
    }
    EXPECT_EQ(seen, 10);
    // Afterwards the cached statement is reused as before.
    auto again = t.db->prepare(sql);
    again.bind(1, int64_t(9));
    ASSERT_TRUE(again.step());
    EXPECT_EQ(again.int64(0), 9);
}

// tests/cpp/copy_rows_test.cpp
// storage::copy_rows (a binary COPY on PostgreSQL from kCopyMinRows rows on, multi-row INSERTs
// below and on SQLite) and Stmt::defer (rows read after the commit), on both backends: CTest runs
// this file once on SQLite and once as postgres.copy_rows (KEEL_TEST_PG_URL).
#include "keel/storage/db.hpp"
#include "keel/storage/sql_dialect.hpp"

#include "support/expect_error.hpp"
#include "support/workspace_test.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using keel::ErrorKind;
using keel::storage::copy_rows;
using keel::storage::kCopyMinRows;
using keel::storage::RowWriter;
using keel::storage::Transaction;

namespace {

struct CopyRowsTest : keel::testing::WorkspaceTest {
    keel::storage::Db& db = ws->db();
    void SetUp() override {
        auto guard = db.lock();
        db.exec(keel::storage::translate_schema(
            "CREATE TABLE copied (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, \"user\" TEXT)", db.dialect()));
    }
    int64_t count() {
        auto guard = db.lock();
        auto st = db.prepare("SELECT count(*) FROM copied");
        st.step();
        return st.int64(0);
    }
};

void expect_error(ErrorKind kind, const std::string& part, const std::function<void()>& fn) {
    std::string message = keel::testing::error_message(kind, fn);
    EXPECT_NE(message.find(part), std::string::npos) << message;
}

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min(), kMax = std::numeric_limits<int64_t>::max();

// What a row holds: nullopt is NULL.
struct Row {
    std::optional<int64_t> i;
    std::optional<double> r;
    std::optional<std::string> t;
};

std::vector<Row> special_rows() {
    return {
        {kMin, -0.0, "tab\there"},
        {kMax, kInf, "new\nline and\r\nreturn"},
        {0, -kInf, "back\\slash \\N \\. end"},
        {-1, std::nan(""), "quotes ' \" and , ; |"},
        {std::nullopt, std::nullopt, std::nullopt},
        {42, 5e-324, ""},
        {1LL << 53, 1.7976931348623157e308, "snow \xe2\x98\x83, rocket \xf0\x9f\x9a\x80, \xe4\xb8\xad\xe6\x96\x87"},
        {-(1LL << 62), 0.1, std::string(100'000, 'x')},
        {7, 1.0 / 3, "\\"},
    };
}

void expect_round_trip(CopyRowsTest& t, size_t rows) {
    const auto specials = special_rows();
    auto row_at = [&](size_t k) {
        return k < specials.size() ? specials[k] : Row{int64_t(k) * 1'000'003, double(k) / 7, "row " + std::to_string(k)};
    };
    {
        Transaction tx(t.db);
        copy_rows(t.db, "copied", {"id", "i", "r", "t", "user"}, rows, [&](RowWriter& w, size_t k) {
            Row row = row_at(k);
            w.add(int64_t(k)).add(row.i).add(row.r).add(row.t).add("u");
        });
        tx.commit();
    }
    auto guard = t.db.lock();
    auto st = t.db.prepare("SELECT id, i, r, t, \"user\" FROM copied ORDER BY id");
    size_t k = 0;
    for (; st.step(); ++k) {
        Row want = row_at(k);
        SCOPED_TRACE("row " + std::to_string(k));
        ASSERT_EQ(st.int64(0), int64_t(k));
        EXPECT_EQ(st.opt_int64(1), want.i);
        EXPECT_EQ(st.opt_text(3), want.t);
        EXPECT_EQ(st.text(4), "u");
        if (!want.r) {
            EXPECT_TRUE(st.is_null(2));
        } else if (std::isnan(*want.r)) {
            // SQLite turns a bound NaN into NULL (its own rule; the tracker stores NaN as NULL anyway).
            if (t.on_postgres()) EXPECT_TRUE(std::isnan(st.real(2)));
            else EXPECT_TRUE(st.is_null(2));
        } else {
            EXPECT_EQ(st.real(2), *want.r);
            // SQLite keeps a REAL that is a whole number as an integer on disk: -0.0 comes back 0.0.
            if (t.on_postgres()) EXPECT_EQ(std::signbit(st.real(2)), std::signbit(*want.r));
        }
    }
    EXPECT_EQ(k, rows);
}

} // namespace

TEST_F(CopyRowsTest, EveryValueRoundTripsExactlyThroughCopy) { expect_round_trip(*this, kCopyMinRows + 17); }

TEST_F(CopyRowsTest, EveryValueRoundTripsExactlyThroughInserts) { expect_round_trip(*this, special_rows().size()); }

TEST_F(CopyRowsTest, AServerFailureMidBatchLeavesNothingAndNamesTheTable) {
    // Row 2,500 repeats a key: the server refuses it after taking the rows before it.
    const size_t rows = kCopyMinRows + 1'000;
    {
        Transaction tx(db);
        db.prepare("INSERT INTO copied (id, i) VALUES (?, ?)").bind_all(int64_t(-1), int64_t(1)).queue();
        std::string message = keel::testing::error_message(ErrorKind::Conflict, [&] {
            copy_rows(db, "copied", {"id", "i"}, rows,
                      [&](RowWriter& w, size_t k) { w.add(int64_t(k == 2'500 ? 7 : k)).add(int64_t(k)); });
        });
        EXPECT_NE(message.find("copied"), std::string::npos) << message;
    }
    EXPECT_EQ(count(), 0);  // the row queued before the batch went with it
    // The connection goes on: the next transaction writes.
    {
        Transaction tx(db);
        copy_rows(db, "copied", {"id"}, rows, [](RowWriter& w, size_t k) { w.add(int64_t(k)); });
        tx.commit();
    }
    EXPECT_EQ(count(), int64_t(rows));
}

TEST_F(CopyRowsTest, AClientFailureMidBatchLeavesNothing) {
    const size_t rows = kCopyMinRows * 2;
    {
        Transaction tx(db);
        db.prepare("INSERT INTO copied (id) VALUES (?)").bind(1, int64_t(-1)).queue();
        expect_error(ErrorKind::InvalidArgument, "row 3000 is bad", [&] {
            copy_rows(db, "copied", {"id", "t"}, rows, [](RowWriter& w, size_t k) {
                if (k == 3'000) keel::throw_error(ErrorKind::InvalidArgument, "row 3000 is bad");
                w.add(int64_t(k)).add("fine");
            });
        });
    }
    EXPECT_EQ(count(), 0);
    Transaction tx(db);
    copy_rows(db, "copied", {"id"}, rows, [](RowWriter& w, size_t k) { w.add(int64_t(k)); });
    tx.commit();
    EXPECT_EQ(count(), int64_t(rows));
}

TEST_F(CopyRowsTest, RefusesARowOfTheWrongWidthAndNamesThatAreNotPlain) {
    Transaction tx(db);
    for (size_t rows : {size_t(3), kCopyMinRows}) {
        expect_error(ErrorKind::Internal, "1 values for 2 columns", [&] {
            copy_rows(db, "copied", {"id", "i"}, rows, [](RowWriter& w, size_t k) { w.add(int64_t(k)); });
        });
    }
    expect_error(ErrorKind::Internal, "not a plain lower-case name", [&] {
        copy_rows(db, "copied; DROP TABLE copied", {"id"}, 1, [](RowWriter& w, size_t) { w.add(1); });
    });
}

TEST_F(CopyRowsTest, DeferredRowsAreReadAfterTheCommit) {
    Transaction tx(db);
    auto first = db.prepare("INSERT INTO copied (i) VALUES (?) RETURNING id, i");
    first.bind(1, int64_t(10)).defer();
    db.prepare("INSERT INTO copied (i) VALUES (?)").bind(1, int64_t(20)).queue();
    auto all = db.prepare("SELECT i FROM copied ORDER BY i");
    all.defer();  // runs here, inside the transaction: sees both rows
    tx.commit();
    ASSERT_TRUE(first.step());
    EXPECT_EQ(first.int64(1), 10);
    EXPECT_FALSE(first.step());
    std::vector<int64_t> seen;
    while (all.step()) seen.push_back(all.int64(0));
    EXPECT_EQ(seen, (std::vector<int64_t>{10, 20}));
}

TEST_F(CopyRowsTest, ADeferredStatementOfAFailedTransactionThrowsAndLeavesNothing) {
    {
        Transaction tx(db);
        auto ok = db.prepare("INSERT INTO copied (id, i) VALUES (?, ?) RETURNING id");
        ok.bind_all(int64_t(1), int64_t(1)).defer();
        EXPECT_THROW(
            {
                db.prepare("INSERT INTO copied (id, i) VALUES (?, ?)").bind_all(int64_t(1), int64_t(2)).run();
                tx.commit();
            },
            keel::Error);
    }
    EXPECT_EQ(count(), 0);
}

// core/include/keel/storage/sql_backend.hpp
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::storage {

//! The SQL engines Keel keeps its metadata in. Modules write one SQL for both (the subset both
//! accept, `?` placeholders, types written once: see sql_dialect.hpp); what differs is asked of
//! the dialect, never decided by a module.
enum class Dialect { Sqlite, Postgres };

//! One prepared statement of a backend. Binds are 1-based; after reset() the statement can run
//! again with new binds. Columns are read by 0-based index while step() is on a row.
class Cursor {
public:
    virtual ~Cursor() = default;
    virtual void bind_int64(int index, int64_t value) = 0;
    virtual void bind_double(int index, double value) = 0;
    virtual void bind_text(int index, std::string_view value) = 0;
    virtual void bind_blob(int index, const void* data, size_t size) = 0;
    virtual void bind_null(int index) = 0;
    //! Runs the statement on the first call; advances to the next row; false when done.
    virtual bool step() = 0;
    //! Clears the result and the binds.
    virtual void reset() = 0;
    //! Rows inserted, updated or deleted by the statement's last run.
    virtual int64_t affected() const = 0;
    //! Runs a statement whose rows and count nobody reads. Inside a write transaction a backend
    //! may send it with the statements that follow instead of waiting for it (PostgreSQL's
    //! pipeline: one round trip for a whole transaction); its error then surfaces at the next
    //! statement that waits, or at commit, and the transaction rolls back as for any error.
    virtual void queue() {
        while (step()) {
        }
    }
    //! Runs a statement whose rows are read later (an INSERT ... RETURNING whose key is needed only
    //! after commit): the rows are kept, and step() reads them afterwards, also after the
    //! transaction committed. Inside a write transaction PostgreSQL sends it with the statements
    //! that follow and reads its rows at the next wait; elsewhere it runs at once.
    virtual void defer() = 0;

    virtual bool is_null(int col) const = 0;
    virtual int64_t int64(int col) const = 0;
    virtual double real(int col) const = 0;
    virtual std::string text(int col) const = 0;
    virtual std::string blob(int col) const = 0;
};

//! The values of one row of a bulk load (storage::copy_rows), added column by column in the order
//! the load names its columns. Integers are 64-bit, reals doubles (NaN and infinities kept), text
//! UTF-8 without NUL bytes.
class RowWriter {
public:
    virtual ~RowWriter() = default;
    RowWriter& add(int64_t value) { return put_int64(value), *this; }
    RowWriter& add(int value) { return add(int64_t(value)); }
    RowWriter& add(double value) { return put_double(value), *this; }
    RowWriter& add(std::string_view value) { return put_text(value), *this; }
    RowWriter& add(const char* value) { return add(std::string_view(value)); }
    RowWriter& add(const std::string& value) { return add(std::string_view(value)); }
    RowWriter& add(std::nullptr_t) { return put_null(), *this; }
    template <typename T>
    RowWriter& add(const std::optional<T>& value) {
        return value ? add(*value) : add(nullptr);
    }

protected:
    virtual void put_int64(int64_t value) = 0;
    virtual void put_double(double value) = 0;
    virtual void put_text(std::string_view value) = 0;
    virtual void put_null() = 0;
};

//! Writes row `row`'s values (storage::copy_rows).
using RowSource = std::function<void(RowWriter&, size_t row)>;

//! One connection to a metadata database. `Db` owns it and leases it to one thread at a time, so a
//! backend is never called from two threads at once.
class Backend {
public:
    virtual ~Backend() = default;
    virtual Dialect dialect() const = 0;
    //! Where the metadata lives, for messages ("/ws/keel.db", "postgresql://user@host:5432/db").
    virtual const std::string& location() const = 0;

    //! `sql` uses `?` placeholders. `persistent`: the statement will be cached and run many times.
    virtual std::unique_ptr<Cursor> prepare(std::string_view sql, bool persistent) = 0;
    //! Runs one or more statements without parameters or results (schema steps, PRAGMAs).
    virtual void exec(std::string_view sql) = 0;

    //! A write transaction: one writer at a time per workspace, readers never blocked.
    virtual void begin_write() = 0;
    //! `announce`: whether other connections' change tokens move (false for writes no cache reads,
    //! such as metric logging: on PostgreSQL that is one UPDATE less per transaction).
    virtual void commit(bool announce) = 0;
    //! Never throws: a connection that failed has rolled back by itself.
    virtual void rollback() noexcept = 0;
    virtual bool in_transaction() const = 0;
    //! Whether the connection is lost (the server restarted or ended it): a pool drops it and opens
    //! a new one for the next caller.
    virtual bool broken() const { return false; }
    //! The connection is about to close: its statements need not be freed one by one on the
    //! server (closing frees them all).
    virtual void closing() noexcept {}
    //! A read-only transaction on one consistent snapshot of the whole database, taken now: commits
    //! made after it are not seen, and writers are never blocked (SQLite: a WAL read transaction;
    //! PostgreSQL: REPEATABLE READ READ ONLY). in_transaction() is true until rollback() ends it.
    virtual void begin_read_snapshot() = 0;

    //! Changes whenever another connection (any process, any machine) commits a write; commits
    //! through this connection are counted by the Db. May cost a round trip to the server.
    virtual uint64_t others_change_token() = 0;

    //! Bulk-loads `rows` rows into `table` (`columns` plain lower-case names) inside the open
    //! transaction, if the backend has a faster way than multi-row INSERTs (PostgreSQL's COPY);
    //! false when it has none and the caller should insert them. A failure throws, naming the table,
    //! and leaves the transaction to roll back whole.
    virtual bool copy_rows(std::string_view /*table*/, const std::vector<std::string>& /*columns*/, size_t /*rows*/,
                           const RowSource& /*write*/) {
        return false;
    }
};

} // namespace keel::storage

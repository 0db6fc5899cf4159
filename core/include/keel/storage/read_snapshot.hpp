// core/include/keel/storage/read_snapshot.hpp
#pragma once

#include "keel/storage/db.hpp"

namespace keel::storage {

//! A read-only transaction on one consistent snapshot of the workspace's metadata, for long reads
//! that must see one state (`keel admin copy`, `keel admin gc`) without stopping writers: other
//! connections (processes, machines) go on committing, and what they commit is not seen. SQLite: a
//! WAL read transaction; PostgreSQL: REPEATABLE READ READ ONLY. Holds the calling thread's lease on
//! one of the Db's connections for its whole life (on SQLite, the only one: use a Db of its own so
//! the process's other threads keep writing through theirs).
//! Ended (rolled back: it wrote nothing) by the destructor.
class ReadSnapshot {
public:
    //! Internal when a transaction is already open on `db` (its snapshot would not be a new one).
    explicit ReadSnapshot(Db& db);
    ~ReadSnapshot();
    ReadSnapshot(const ReadSnapshot&) = delete;
    ReadSnapshot& operator=(const ReadSnapshot&) = delete;

private:
    Db& db_;
    Lease lease_;
};

} // namespace keel::storage

// core/include/keel/storage/read_snapshot.hpp
#pragma once

#include "keel/storage/db.hpp"

#include <mutex>

namespace keel::storage {

//! A read-only transaction on one consistent snapshot of the workspace's metadata, for long reads
//! that must see one state (`keel admin copy`, `keel admin gc`) without stopping writers: other
//! connections (processes, machines) go on committing, and what they commit is not seen. SQLite: a
//! WAL read transaction; PostgreSQL: REPEATABLE READ READ ONLY. Holds the Db's lock for its whole
//! life, so use a Db of its own (other threads of the process keep writing through theirs).
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
    std::unique_lock<std::recursive_mutex> lock_;
};

} // namespace keel::storage

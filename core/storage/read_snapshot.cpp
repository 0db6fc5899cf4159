// core/storage/read_snapshot.cpp
#include "keel/storage/read_snapshot.hpp"

#include "keel/common/error.hpp"

namespace keel::storage {

ReadSnapshot::ReadSnapshot(Db& db) : db_(db), lease_(db.lock()) {
    if (db_.backend().in_transaction())
        throw_error(ErrorKind::Internal,
                    "cannot take a read snapshot of {}: a transaction is already open on this connection",
                    db_.path());
    db_.backend().begin_read_snapshot();
}

ReadSnapshot::~ReadSnapshot() { db_.backend().rollback(); }

} // namespace keel::storage

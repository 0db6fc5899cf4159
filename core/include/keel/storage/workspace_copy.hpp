// core/include/keel/storage/workspace_copy.hpp
#pragma once

#include "keel/storage/db.hpp"
#include "keel/storage/object_refs.hpp"
#include "keel/storage/workspace.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace keel::storage {

//! What a long copy or digest is doing: `phase` is "rows" (done/total rows), "objects" (done/total
//! bytes) or "verify" (done/total bytes read back from the destination); `item` the table or key.
struct CopyProgress {
    std::string phase;
    std::string item;
    int64_t done = 0;
    int64_t total = 0;
};
using CopyProgressFn = std::function<void(const CopyProgress&)>;

//! One table's rows, canonically: sha256 over its rows in primary-key order, each value tagged as
//! an integer, a double, text, bytes or NULL, so the same rows give the same digest on SQLite and
//! PostgreSQL. Tables without rows are left out (a destination has every module's tables).
struct TableDigest {
    std::string table;
    int64_t rows = 0;
    std::string sha256;
};

//! A workspace's content: its tables (keel_schema and the location settings left out: they
//! describe where a workspace is, not what it holds) and its objects (key, size, sha256), in order.
struct WorkspaceDigest {
    std::vector<TableDigest> tables;
    struct Object {
        std::string key;
        int64_t size = 0;
        std::string sha256;
    };
    std::vector<Object> objects;
    int64_t object_bytes() const;
    //! sha256 over the objects' "key size sha256" lines.
    std::string objects_sha256() const;
};

//! Reads every table and every object of `ws` (objects are downloaded and hashed).
WorkspaceDigest workspace_digest(Workspace& ws, const CopyProgressFn& progress = {});

//! Copies the workspace at `src` into a new one at `dst` (a directory or a PostgreSQL URL, with
//! its artifacts on S3 or in a directory), every table's rows with their ids (identity sequences
//! moved past them on PostgreSQL) and every object under artifacts/ and features/, then verifies:
//! each destination table's digest equals the source's, and the destination's objects, read back
//! (from S3, not a cache), equal the source's by key, size and sha256. Corrupt names the table or
//! object that differs, or a source artifact whose content does not match its sha256.
//!
//! `dst` must be new or empty (AlreadyExists naming what it holds). The source's tables must be at
//! this Keel's versions (`schemas`: every module's; `keel admin migrate` first). The source is read
//! from one consistent snapshot (ReadSnapshot): its writers are not blocked while the copy runs,
//! what they commit meanwhile is not copied, and the returned digest is the snapshot's. Until the
//! copy is verified, the destination carries a marker that makes Workspace::open refuse it, so a
//! copy that failed or was killed is never mistaken for a complete one.
//!
//! `refs` say which objects the rows name: each must have been copied. A writer that removed one
//! after the snapshot was taken (retiring a view, a newer online snapshot) fails the copy with
//! Conflict naming it: copy again.
WorkspaceDigest copy_workspace(const WorkspaceLocation& src, const WorkspaceLocation& dst,
                               const std::vector<const ModuleSchema*>& schemas, const CopyProgressFn& progress = {},
                               const ObjectRefsList& refs = {});

} // namespace keel::storage

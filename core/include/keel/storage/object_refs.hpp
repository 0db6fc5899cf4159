// core/include/keel/storage/object_refs.hpp
#pragma once

#include <string>
#include <unordered_set>
#include <vector>

namespace keel::storage {

class Db;

//! Where a module's rows name objects of the workspace's ObjectStore, declared by the module next to
//! its schema so that `keel admin gc` can tell objects some row names from orphans without reading
//! any module's tables itself. `sql` selects one text column; each value is the object's key in the
//! form `kind` says. Skipped while `table` does not exist (the module was never used).
struct ObjectRefs {
    enum class Kind {
        ArtifactDigest,  //!< a sha256: the object artifacts/sha256/<2>/<62>
        FeatureFile,     //!< a feature store file name: the object features/<file>
    };
    std::string table;
    Kind kind = Kind::ArtifactDigest;
    std::string sql;
};

//! The key prefixes every object a row may name lives under (artifact blobs, feature segments and
//! online snapshots): what gc sweeps and copy moves. Anything else in a store (the workspace's claim
//! on its location) is not a workspace object.
inline const std::vector<std::string> kObjectPrefixes = {"artifacts/", "features/"};

//! Every module's refs, as admin::object_refs() lists them.
using ObjectRefsList = std::vector<const std::vector<ObjectRefs>*>;

//! The keys of every object the rows of `db` name, by `refs`. Read under a ReadSnapshot (or a
//! transaction) for one consistent answer; holds db.lock() while it reads.
std::unordered_set<std::string> named_object_keys(Db& db, const ObjectRefsList& refs);

} // namespace keel::storage

// core/include/keel/storage/object_refs.hpp
#pragma once

#include <string>
#include <vector>

namespace keel::storage {

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

} // namespace keel::storage

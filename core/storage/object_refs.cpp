// core/storage/object_refs.cpp
#include "keel/storage/object_refs.hpp"

#include "keel/common/error.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/db.hpp"

namespace keel::storage {

std::unordered_set<std::string> named_object_keys(Db& db, const ObjectRefsList& refs) {
    auto guard = db.lock();
    std::unordered_set<std::string> names;
    for (const auto* list : refs)
        for (const auto& ref : *list) {
            if (!db.has_table(ref.table)) continue;
            auto st = db.prepare(ref.sql);
            while (st.step()) {
                const std::string value = st.text(0);
                if (ref.kind == ObjectRefs::Kind::FeatureFile) {
                    names.insert("features/" + value);
                    continue;
                }
                try {
                    names.insert(ArtifactStore::key_of(value));
                } catch (const Error&) {
                    // Not a digest: it names no object.
                }
            }
        }
    return names;
}

} // namespace keel::storage

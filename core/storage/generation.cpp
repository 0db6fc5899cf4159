// core/storage/generation.cpp
#include "keel/storage/generation.hpp"

#include "keel/storage/db.hpp"

namespace keel::storage {

namespace {
const ModuleSchema kSchema{"generation", {R"(
CREATE TABLE keel_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT INTO keel_generation (id, value) VALUES (1, 0);
)"}};
} // namespace

const ModuleSchema& generation_schema() { return kSchema; }

void bump_generation(Db& db) {
    db.ensure_schema(kSchema);
    Transaction tx(db); // joins the caller's transaction when there is one
    db.prepare("UPDATE keel_generation SET value = value + 1 WHERE id = 1").queue();
    tx.commit();
}

int64_t read_generation(Db& db) {
    db.ensure_schema(kSchema);
    auto guard = db.lock();
    auto st = db.prepare("SELECT value FROM keel_generation WHERE id = 1");
    return st.step() ? st.int64(0) : 0;
}

} // namespace keel::storage

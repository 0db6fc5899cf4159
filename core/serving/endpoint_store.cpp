// core/serving/endpoint_store.cpp
#include "keel/serving/endpoint_store.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/common/names.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"

namespace keel::serving {

namespace {

const storage::ModuleSchema kSchema{"serving", {R"(
CREATE TABLE serving_endpoint_revisions (
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, revision));
CREATE TABLE serving_assignments (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    ts INTEGER NOT NULL,
    key TEXT NOT NULL,
    tenant TEXT NOT NULL,
    variant TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    fallback TEXT NOT NULL,
    shadow INTEGER NOT NULL,
    prediction REAL,
    revision INTEGER NOT NULL);
CREATE INDEX serving_assignments_endpoint ON serving_assignments(endpoint, id);
)", R"(
ALTER TABLE serving_assignments ADD COLUMN missing TEXT NOT NULL DEFAULT '';
ALTER TABLE serving_assignments ADD COLUMN stale TEXT NOT NULL DEFAULT '';
)"}};

} // namespace

EndpointStore::EndpointStore(storage::Workspace& ws) : ws_(ws) { ws_.db().ensure_schema(kSchema); }

EndpointRevision EndpointStore::save(const std::string& name, const std::string& definition_json) {
    check_name(name, "endpoint", "churn");
    auto& db = ws_.db();
    storage::Transaction tx(db);
    EndpointRevision cur;
    {
        auto st = db.prepare("SELECT revision, definition, created_by, created_at FROM serving_endpoint_revisions "
                             "WHERE name = ? ORDER BY revision DESC LIMIT 1");
        st.bind_all(name);
        if (st.step()) cur = {name, st.int64(0), st.text(1), st.text(2), st.int64(3)};
    }
    if (cur.revision > 0 && cur.definition_json == definition_json) return cur;
    EndpointRevision next{name, cur.revision + 1, definition_json, ws_.user(), now_ms()};
    db.prepare("INSERT INTO serving_endpoint_revisions (name, revision, definition, created_by, created_at) "
               "VALUES (?,?,?,?,?)")
        .bind_all(name, next.revision, next.definition_json, next.created_by, next.created_at)
        .run();
    storage::bump_generation(db); // every hosting process picks the revision up on its next request
    tx.commit();
    return next;
}

EndpointRevision EndpointStore::current(const std::string& name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT revision, definition, created_by, created_at FROM serving_endpoint_revisions "
                         "WHERE name = ? ORDER BY revision DESC LIMIT 1");
    st.bind_all(name);
    if (!st.step())
        throw_error(ErrorKind::NotFound,
                    "endpoint '{}' is not defined: define it with ws.endpoint('{}', routing=..., variants=...)", name, name);
    return {name, st.int64(0), st.text(1), st.text(2), st.int64(3)};
}

int64_t EndpointStore::current_revision(const std::string& name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT MAX(revision) FROM serving_endpoint_revisions WHERE name = ?");
    st.bind_all(name);
    return st.step() && !st.is_null(0) ? st.int64(0) : 0;
}

std::vector<EndpointRevision> EndpointStore::revisions(const std::string& name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT revision, definition, created_by, created_at FROM serving_endpoint_revisions "
                         "WHERE name = ? ORDER BY revision");
    st.bind_all(name);
    std::vector<EndpointRevision> out;
    while (st.step()) out.push_back({name, st.int64(0), st.text(1), st.text(2), st.int64(3)});
    return out;
}

std::vector<std::string> EndpointStore::names() {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT DISTINCT name FROM serving_endpoint_revisions ORDER BY name");
    std::vector<std::string> out;
    while (st.step()) out.push_back(st.text(0));
    return out;
}

void EndpointStore::log(const std::string& name, const std::vector<Assignment>& rows) {
    if (rows.empty()) return;
    auto& db = ws_.db();
    storage::Transaction tx(db);
    for (const auto& a : rows) {
        db.prepare("INSERT INTO serving_assignments (endpoint, ts, key, tenant, variant, model, version, fallback, "
                   "shadow, prediction, revision, missing, stale) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")
            .bind_all(name, a.ts, a.key, a.tenant, a.variant, a.model, a.version, a.fallback, int64_t(a.shadow),
                      a.prediction, a.revision, a.missing, a.stale)
            .run();
    }
    tx.commit();
}

std::vector<Assignment> EndpointStore::assignments(const std::string& name, int64_t limit) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT ts, key, tenant, variant, model, version, fallback, shadow, prediction, revision, missing, stale "
                         "FROM serving_assignments WHERE endpoint = ? ORDER BY id LIMIT ?");
    st.bind_all(name, limit);
    std::vector<Assignment> out;
    while (st.step())
        out.push_back({st.int64(0), st.text(1), st.text(2), st.text(3), st.text(4), st.int64(5), st.text(6),
                       st.int64(7) != 0, st.opt_real(8), st.int64(9), st.text(10), st.text(11)});
    return out;
}

} // namespace keel::serving

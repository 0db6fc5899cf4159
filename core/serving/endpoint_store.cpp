// core/serving/endpoint_store.cpp
#include "keel/serving/endpoint_store.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/common/names.hpp"
#include "keel/features/store.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/registry/registry.hpp"
#include "keel/serving/definition_check.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"

#include <algorithm>
#include <limits>
#include <set>

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
)", R"(
ALTER TABLE serving_assignments ADD COLUMN latency_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE serving_assignments ADD COLUMN inputs TEXT NOT NULL DEFAULT '';
)", R"(
CREATE TABLE serving_endpoint_removals (
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    removed_by TEXT NOT NULL,
    removed_at INTEGER NOT NULL,
    PRIMARY KEY (name, revision));
)"}};
// Step 4: an endpoint is removed while its newest revision has a removal row. The revisions and the
// assignment log stay as history; saving it again writes revision N+1, which has none.

constexpr const char* kSelectRevision =
    "SELECT revision, definition, created_by, created_at FROM serving_endpoint_revisions WHERE name = ? ";

EndpointRevision read_revision(const std::string& name, storage::Stmt& st) {
    EndpointRevision r{name, st.int64(0), {}, st.text(2), st.int64(3)};
    try {
        r.definition = EndpointDefinition::from_json(st.text(1));
    } catch (const Error& e) {
        throw_error(ErrorKind::Corrupt, "endpoint '{}' revision {} is unreadable ({}): save the endpoint again", name,
                    r.revision, e.what());
    }
    return r;
}

// Ends a live edge; one another host (or an earlier save) already ended is fine, anything else is not.
void end_edge(lineage::Graph& graph, const std::string& from, const char* kind, const std::string& to) {
    try {
        graph.remove_edge(from, kind, to);
    } catch (const Error& e) {
        if (e.kind() != ErrorKind::NotFound) throw;
    }
}

// serves edges for the versions served now (lineage refs); every other live one is ended, whoever
// wrote it (another process, an earlier session).
void link_served(lineage::Graph& graph, const std::string& endpoint, const std::set<std::string>& served) {
    std::vector<std::string> live;
    if (graph.find_node(endpoint))
        for (const auto& hop : graph.upstream(endpoint, 1).edges)
            if (hop.kind == "serves" && hop.to == endpoint && !served.count(hop.from)) live.push_back(hop.from);
    for (const auto& ref : served) graph.add_edge(ref, "serves", endpoint);
    for (const auto& ref : live) end_edge(graph, ref, "serves", endpoint);
}

// feeds edges for the views read now (ending those of views `before` read and `now` does not) and
// serves edges for the versions served now (ending every other live one). Inside the caller's
// transaction: Graph's own transactions nest into it.
void link_lineage(lineage::Graph& graph, const std::string& name, const std::vector<std::string>& before,
                  const EndpointDefinition& now, const std::vector<registry::ModelVersion>& versions) {
    const std::string endpoint = "endpoint:" + name;
    auto views = now.views();
    for (const auto& view : views) graph.add_edge("feature_view:" + view, "feeds", endpoint);
    for (const auto& view : before)
        if (!std::binary_search(views.begin(), views.end(), view)) end_edge(graph, "feature_view:" + view, "feeds", endpoint);
    std::set<std::string> served;
    for (const auto& mv : versions) served.insert(mv.lineage_ref());
    link_served(graph, endpoint, served);
}

// A FeatureStore over the caller's workspace for the length of one call (the store wants shared
// ownership; the EndpointStore only borrows the workspace, which outlives the call).
std::shared_ptr<storage::Workspace> borrowed(storage::Workspace& ws) {
    return std::shared_ptr<storage::Workspace>(std::shared_ptr<storage::Workspace>{}, &ws);
}

} // namespace

const storage::ModuleSchema& EndpointStore::schema() { return kSchema; }

EndpointStore::EndpointStore(storage::Workspace& ws) : ws_(ws) { ws_.db().ensure_schema(kSchema); }

std::optional<EndpointRevision> EndpointStore::newest(const std::string& name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare(std::string(kSelectRevision) + "ORDER BY revision DESC LIMIT 1");
    st.bind_all(name);
    if (!st.step()) return std::nullopt;
    return read_revision(name, st);
}

std::optional<EndpointRemoval> EndpointStore::removal(const std::string& name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT r.revision, r.removed_by, r.removed_at FROM serving_endpoint_removals r WHERE r.name = ? "
                         "AND r.revision = (SELECT MAX(revision) FROM serving_endpoint_revisions WHERE name = r.name)");
    st.bind_all(name);
    if (!st.step()) return std::nullopt;
    return EndpointRemoval{st.int64(0), st.text(1), st.int64(2)};
}

void EndpointStore::remove(const std::string& name) {
    lineage::Graph graph(ws_);
    auto& db = ws_.db();
    storage::Transaction tx(db);
    auto cur = current(name);  // NotFound when never saved or already removed
    db.prepare("INSERT INTO serving_endpoint_removals (name, revision, removed_by, removed_at) VALUES (?,?,?,?)")
        .bind_all(name, cur.revision, ws_.user(), now_ms())
        .run();
    // It reads no view and serves no version any more; the ended edges stay for as_of queries.
    const std::string endpoint = "endpoint:" + name;
    for (const auto& view : cur.definition.views()) end_edge(graph, "feature_view:" + view, "feeds", endpoint);
    link_served(graph, endpoint, {});
    storage::bump_generation(db);  // every hosting process refuses its requests from the next one on
    tx.commit();
}

EndpointRevision EndpointStore::save(const std::string& name, const EndpointDefinition& given) {
    check_name(name, "endpoint", "churn");
    EndpointDefinition definition = given;
    {
        features::FeatureStore features(borrowed(ws_));
        expand_features(features, definition);
    }
    // Checked before the transaction (loading a plugin, reading the registry), so the write lock is
    // held only for the writes; nothing is written when a check fails.
    auto versions = check_definition(ws_, name, definition);
    lineage::Graph graph(ws_);
    auto& db = ws_.db();
    storage::Transaction tx(db);
    auto cur = newest(name);
    const bool removed = cur && removal(name);  // saved again: a new revision, its numbers continuing
    EndpointRevision out;
    if (cur && !removed && cur->definition == definition) {
        out = *cur;
    } else {
        out = {name, cur ? cur->revision + 1 : 1, definition, ws_.user(), now_ms()};
        db.prepare("INSERT INTO serving_endpoint_revisions (name, revision, definition, created_by, created_at) "
                   "VALUES (?,?,?,?,?)")
            .bind_all(name, out.revision, definition.to_json(), out.created_by, out.created_at)
            .run();
        storage::bump_generation(db); // every hosting process picks the revision up on its next request
    }
    link_lineage(graph, name, cur && !removed ? cur->definition.views() : std::vector<std::string>{}, definition,
                 versions);
    tx.commit();
    return out;
}

EndpointRevision EndpointStore::define(const std::string& name, const plugins::Value& given) {
    check_name(name, "endpoint", "churn");
    auto cur = newest(name);
    // A removed endpoint is defined afresh: nothing of the removed definition carries over.
    if (cur && removal(name)) cur.reset();
    return save(name, EndpointDefinition::update(cur ? &cur->definition : nullptr, given));
}

void EndpointStore::link_views(const std::string& name, const EndpointDefinition& definition) {
    lineage::Graph graph(ws_);
    storage::Transaction tx(ws_.db());
    for (const auto& view : definition.views()) graph.add_edge("feature_view:" + view, "feeds", "endpoint:" + name);
    tx.commit();
}

EndpointRevision EndpointStore::current(const std::string& name) {
    auto cur = newest(name);
    if (!cur)
        throw_error(ErrorKind::NotFound,
                    "endpoint '{}' is not defined: define it with ws.endpoint('{}', routing=..., variants=...)", name, name);
    if (auto gone = removal(name))
        throw_error(ErrorKind::NotFound, "endpoint '{}' was removed by {} at {}: define it again with ws.endpoint('{}', "
                    "...) to bring it back", name, gone->removed_by, utc_text(gone->removed_at), name);
    return *std::move(cur);
}

void EndpointStore::link_serves(const std::string& name, const std::vector<std::string>& served) {
    lineage::Graph graph(ws_);
    storage::Transaction tx(ws_.db());
    link_served(graph, "endpoint:" + name, std::set<std::string>(served.begin(), served.end()));
    tx.commit();
}

int64_t EndpointStore::current_revision(const std::string& name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT r.rev FROM (SELECT MAX(revision) AS rev FROM serving_endpoint_revisions WHERE name = ?1) r "
                         "WHERE NOT EXISTS (SELECT 1 FROM serving_endpoint_removals WHERE name = ?1 AND revision = r.rev)");
    st.bind_all(name);
    return st.step() && !st.is_null(0) ? st.int64(0) : 0;
}

std::vector<EndpointRevision> EndpointStore::revisions(const std::string& name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare(std::string(kSelectRevision) + "ORDER BY revision");
    st.bind_all(name);
    std::vector<EndpointRevision> out;
    while (st.step()) out.push_back(read_revision(name, st));
    return out;
}

std::vector<std::string> EndpointStore::names() {
    auto guard = ws_.db().lock();
    auto query = query_names();
    return names(query);
}

storage::Stmt EndpointStore::query_names() {
    auto st = ws_.db().prepare("SELECT e.name FROM (SELECT name, MAX(revision) AS rev FROM serving_endpoint_revisions "
                               "GROUP BY name) e WHERE NOT EXISTS (SELECT 1 FROM serving_endpoint_removals r WHERE "
                               "r.name = e.name AND r.revision = e.rev) ORDER BY e.name");
    st.defer();
    return st;
}

std::vector<std::string> EndpointStore::names(storage::Stmt& query) {
    std::vector<std::string> out;
    while (query.step()) out.push_back(query.text(0));
    return out;
}

void EndpointStore::log(const std::string& name, const std::vector<Assignment>& rows) {
    if (rows.empty()) return;
    auto& db = ws_.db();
    storage::Transaction tx(db);
    for (const auto& a : rows) {
        db.prepare("INSERT INTO serving_assignments (endpoint, ts, key, tenant, variant, model, version, fallback, "
                   "shadow, prediction, revision, missing, stale, latency_us, inputs) "
                   "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
            .bind_all(name, a.ts, a.key, a.tenant, a.variant, a.model, a.version, a.fallback, int64_t(a.shadow),
                      a.prediction, a.revision, a.missing, a.stale, a.latency_us, a.inputs)
            .run();
    }
    tx.commit();
}

std::vector<Assignment> EndpointStore::assignments(const std::string& name, int64_t limit) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT ts, key, tenant, variant, model, version, fallback, shadow, prediction, revision, missing, "
                         "stale, latency_us, inputs FROM serving_assignments WHERE endpoint = ? ORDER BY id LIMIT ?");
    // Negative: all of them (PostgreSQL refuses SQLite's LIMIT -1).
    st.bind_all(name, limit < 0 ? std::numeric_limits<int64_t>::max() : limit);
    std::vector<Assignment> out;
    while (st.step())
        out.push_back({st.int64(0), st.text(1), st.text(2), st.text(3), st.text(4), st.int64(5), st.text(6),
                       st.int64(7) != 0, st.opt_real(8), st.int64(9), st.text(10), st.text(11), st.int64(12),
                       st.text(13)});
    return out;
}

} // namespace keel::serving

// core/lineage/graph.cpp
#include "keel/lineage/graph.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"

#include <array>
#include <deque>
#include <unordered_map>
#include <unordered_set>

namespace keel::lineage {

namespace {

const storage::ModuleSchema kSchema{"lineage", {R"(
CREATE TABLE lineage_nodes (
    id INTEGER PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL);
CREATE INDEX lineage_nodes_kind ON lineage_nodes(kind, id);
CREATE TABLE lineage_node_tags (
    node_id INTEGER NOT NULL REFERENCES lineage_nodes(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (node_id, key));
CREATE TABLE lineage_edges (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    src INTEGER NOT NULL REFERENCES lineage_nodes(id),
    dst INTEGER NOT NULL REFERENCES lineage_nodes(id),
    created_at INTEGER NOT NULL,
    removed_at INTEGER);
CREATE INDEX lineage_edges_src ON lineage_edges(src, created_at);
CREATE INDEX lineage_edges_dst ON lineage_edges(dst, created_at);
)",
// 2: "is this edge already live?" (every add_edge asks) by its exact pair, not through every edge of
// its source: an experiment with a million runs made each new run's edge a million-row scan.
R"(
CREATE INDEX lineage_edges_pair ON lineage_edges(src, dst, kind);
)",
// 3: tags and edges without foreign keys on their nodes. Every writer names nodes by ref, resolved
// in its own transaction (a missing one is NULL, which the NOT NULL columns refuse), and nodes are
// never removed, so the keys guarded nothing, while PostgreSQL checked each as a query that also
// locks the node's row: six per model registration (two tags, two edges), 100 of its 450-550 us
// (alternating with and without, same server). SQLite rebuilds the tables; PostgreSQL drops the
// constraints in place.
R"(
CREATE TABLE lineage_node_tags_v3 (
    node_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (node_id, key));
INSERT INTO lineage_node_tags_v3(node_id, key, value) SELECT node_id, key, value FROM lineage_node_tags;
DROP TABLE lineage_node_tags;
ALTER TABLE lineage_node_tags_v3 RENAME TO lineage_node_tags;
CREATE TABLE lineage_edges_v3 (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    src INTEGER NOT NULL,
    dst INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    removed_at INTEGER);
INSERT INTO lineage_edges_v3(id, kind, src, dst, created_at, removed_at)
    SELECT id, kind, src, dst, created_at, removed_at FROM lineage_edges;
DROP TABLE lineage_edges;
ALTER TABLE lineage_edges_v3 RENAME TO lineage_edges;
CREATE INDEX lineage_edges_src ON lineage_edges(src, created_at);
CREATE INDEX lineage_edges_dst ON lineage_edges(dst, created_at);
CREATE INDEX lineage_edges_pair ON lineage_edges(src, dst, kind);
-- postgresql:
ALTER TABLE lineage_node_tags DROP CONSTRAINT IF EXISTS lineage_node_tags_node_id_fkey;
ALTER TABLE lineage_edges DROP CONSTRAINT IF EXISTS lineage_edges_src_fkey;
ALTER TABLE lineage_edges DROP CONSTRAINT IF EXISTS lineage_edges_dst_fkey;
)"}};

constexpr const char* kSelectNode =
    "SELECT ref, kind, name, version, owner, description, created_at, id FROM lineage_nodes ";

bool valid_kind(std::string_view kind) {
    if (kind.empty()) return false;
    for (char c : kind)
        if (!((c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9'))) return false;
    return true;
}

Node read_node(storage::Db& db, storage::Stmt& st) {
    Node n;
    n.ref = st.text(0);
    n.kind = st.text(1);
    n.name = st.text(2);
    n.version = st.text(3);
    n.owner = st.text(4);
    n.description = st.text(5);
    n.created_at = st.int64(6);
    auto tags = db.prepare("SELECT key, value FROM lineage_node_tags WHERE node_id = ? ORDER BY key");
    tags.bind(1, st.int64(7));
    while (tags.step()) n.tags[tags.text(0)] = tags.text(1);
    return n;
}

} // namespace

Ref Ref::parse(std::string_view text) {
    auto colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size() ||
        !valid_kind(text.substr(0, colon)))
        throw_error(ErrorKind::InvalidArgument,
                    "lineage ref '{}' is malformed: expected kind:name[/version] with a lowercase kind, "
                    "e.g. 'model:churn/3', 'run:<id>', 'feature_view:player_activity'",
                    text);
    Ref ref;
    ref.kind = std::string(text.substr(0, colon));
    std::string_view rest = text.substr(colon + 1);
    // An alias moves; a node must not. The registry resolves aliases to versions before the graph.
    if (ref.kind == "model" && rest.find('@') != std::string_view::npos)
        throw_error(ErrorKind::InvalidArgument,
                    "lineage ref '{}' names a model alias: the graph holds versions only; resolve it first with "
                    "keel::registry::resolve_lineage_ref (ws.lineage and the keel CLI do this for you)",
                    text);
    auto slash = rest.rfind('/');
    if (ref.kind == "model" && slash != std::string_view::npos && slash > 0 && slash + 1 < rest.size()) {
        ref.name = std::string(rest.substr(0, slash));
        ref.version = std::string(rest.substr(slash + 1));
    } else {
        ref.name = std::string(rest);
    }
    return ref;
}

std::string Ref::str() const { return version.empty() ? kind + ":" + name : kind + ":" + name + "/" + version; }

const storage::ModuleSchema& Graph::schema() { return kSchema; }

Graph::Graph(storage::Workspace& ws) : ws_(ws) { ws_.db().ensure_schema(kSchema); }

int64_t Graph::node_id(const std::string& ref, bool create) {
    auto& db = ws_.db();
    {
        auto st = db.prepare("SELECT id FROM lineage_nodes WHERE ref = ?");
        st.bind(1, ref);
        if (st.step()) return st.int64(0);
    }
    if (!create)
        throw_error(ErrorKind::NotFound, "lineage node '{}' not found: check the ref (kind:name[/version])", ref);
    ensure_node(ref);
    auto st = db.prepare("SELECT id FROM lineage_nodes WHERE ref = ?");
    st.bind(1, ref);
    st.step();
    return st.int64(0);
}

// Writes go by ref, never by a node id read first, so that a module's lineage travels with the rest
// of its transaction (queued: on PostgreSQL one round trip for all of it).
void Graph::ensure_node(const std::string& ref) {
    Ref parsed = Ref::parse(ref);
    ws_.db()
        .prepare("INSERT INTO lineage_nodes(ref, kind, name, version, created_at) VALUES(?, ?, ?, ?, ?) "
                 "ON CONFLICT(ref) DO NOTHING")
        .bind_all(ref, parsed.kind, parsed.name, parsed.version, now_ms())
        .queue();
}

std::string Graph::upsert_node(std::string_view ref_text, const NodeInfo& info) {
    std::string ref = Ref::parse(ref_text).str();
    record({{ref, info}}, {});
    return ref;
}

namespace {

void check_edge_kind(std::string_view kind) {
    if (!valid_kind(kind))
        throw_error(ErrorKind::InvalidArgument,
                    "lineage edge kind '{}' is malformed: use lowercase words joined by '_', e.g. 'produced'", kind);
}

// A node with an owner or a description: one statement whether it is new or not (NULL leaves a
// field as stored).
constexpr const char* kUpsertNode =
    "INSERT INTO lineage_nodes(ref, kind, name, version, owner, description, created_at) "
    "VALUES(?1, ?2, ?3, ?4, COALESCE(?5, ''), COALESCE(?6, ''), ?7) ON CONFLICT(ref) DO UPDATE SET "
    "owner = COALESCE(?5, lineage_nodes.owner), description = COALESCE(?6, lineage_nodes.description)";

} // namespace

void Graph::record(const std::vector<std::pair<std::string, NodeInfo>>& nodes, const std::vector<EdgeRef>& edges) {
    // Everything is checked before anything is written.
    struct NodeRow {
        std::string ref;
        Ref parsed;
        const NodeInfo* info;
    };
    std::vector<NodeRow> described, plain;  // plain: created if missing, left as they are otherwise
    std::vector<std::array<std::string, 3>> tags, edge_rows;
    std::unordered_set<std::string> seen, seen_edges;
    for (const auto& [text, info] : nodes) {
        Ref parsed = Ref::parse(text);
        std::string ref = parsed.str();
        if (!seen.insert(ref).second)
            throw_error(ErrorKind::InvalidArgument, "lineage node '{}' is given twice in one write: merge its info",
                        ref);
        for (const auto& [key, value] : info.tags) tags.push_back({ref, key, value});
        (info.owner || info.description ? described : plain).push_back({std::move(ref), std::move(parsed), &info});
    }
    for (const auto& e : edges) {
        check_edge_kind(e.kind);
        Ref src = Ref::parse(e.from), dst = Ref::parse(e.to);
        std::string src_ref = src.str(), dst_ref = dst.str();
        if (src_ref == dst_ref)
            throw_error(ErrorKind::InvalidArgument, "lineage edge from '{}' to itself: an edge joins two nodes",
                        src_ref);
        if (!seen_edges.insert(src_ref + '\n' + e.kind + '\n' + dst_ref).second) continue;  // once per write
        for (Ref* end : {&src, &dst}) {
            std::string ref = end->str();
            if (seen.insert(ref).second) plain.push_back({std::move(ref), std::move(*end), nullptr});
        }
        edge_rows.push_back({std::move(src_ref), e.kind, std::move(dst_ref)});
    }

    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    const int64_t now = now_ms();
    for (const auto& n : described)
        db.prepare(kUpsertNode)
            .bind_all(n.ref, n.parsed.kind, n.parsed.name, n.parsed.version, n.info->owner, n.info->description, now)
            .queue();
    storage::insert_few_rows(
        db, "INSERT INTO lineage_nodes(ref, kind, name, version, created_at) VALUES", "(?, ?, ?, ?, ?)", 5,
        plain.size(),
        [&](storage::Stmt& st, int i, size_t row) {
            const NodeRow& n = plain[row];
            st.bind(i, n.ref).bind(i + 1, n.parsed.kind).bind(i + 2, n.parsed.name).bind(i + 3, n.parsed.version);
            st.bind(i + 4, now);
        },
        "ON CONFLICT(ref) DO NOTHING");
    storage::insert_few_rows(
        db, "INSERT INTO lineage_node_tags(node_id, key, value) VALUES",
        "((SELECT id FROM lineage_nodes WHERE ref = ?), ?, ?)", 3, tags.size(),
        [&](storage::Stmt& st, int i, size_t row) {
            st.bind(i, tags[row][0]).bind(i + 1, tags[row][1]).bind(i + 2, tags[row][2]);
        },
        "ON CONFLICT(node_id, key) DO UPDATE SET value = excluded.value");
    // Each edge once: not where a live one of its kind joins the same two nodes. Asked per row as a
    // scalar subquery, looked up by the (src, dst, kind) index: as NOT EXISTS, PostgreSQL made it an
    // anti join and read every edge while its statistics said the table was small.
    storage::insert_few_rows(
        db, "WITH e(kind, src, dst) AS (VALUES",
        "(?, (SELECT id FROM lineage_nodes WHERE ref = ?), (SELECT id FROM lineage_nodes WHERE ref = ?))", 3,
        edge_rows.size(),
        [&](storage::Stmt& st, int i, size_t row) {
            st.bind(i, edge_rows[row][1]).bind(i + 1, edge_rows[row][0]).bind(i + 2, edge_rows[row][2]);
        },
        ") INSERT INTO lineage_edges(kind, src, dst, created_at) SELECT kind, src, dst, ? FROM e WHERE (SELECT 1 "
        "FROM lineage_edges x WHERE x.src = e.src AND x.dst = e.dst AND x.kind = e.kind AND x.removed_at IS NULL "
        "LIMIT 1) IS NULL",
        [&](storage::Stmt& st, int i) { st.bind(i, now); });
    tx.commit();
}

void Graph::add_edge(std::string_view from, std::string_view kind, std::string_view to) {
    record({}, {{std::string(from), std::string(kind), std::string(to)}});  // both nodes in one statement
}

void Graph::add_edges(std::string_view from, std::string_view kind, const std::vector<std::string>& to) {
    check_edge_kind(kind);
    std::string src_ref = Ref::parse(from).str();
    std::vector<std::string> dst_refs;
    std::vector<Ref> parsed;
    for (const auto& t : to) {
        parsed.push_back(Ref::parse(t));
        dst_refs.push_back(parsed.back().str());
        if (dst_refs.back() == src_ref)
            throw_error(ErrorKind::InvalidArgument, "lineage edge from '{}' to itself: an edge joins two nodes",
                        src_ref);
    }
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    ensure_node(src_ref);
    const int64_t now = now_ms();
    // A node made here has no edges yet, so its edge needs no look for a live one: a bulk import
    // must not look through every edge of `from` (all its earlier runs) once per new node.
    std::unordered_set<std::string> fresh;
    storage::insert_rows(
        db, "INSERT INTO lineage_nodes(ref, kind, name, version, created_at) VALUES", 5, dst_refs.size(),
        [&](storage::Stmt& st, int i, size_t row) {
            const Ref& r = parsed[row];
            st.bind(i, dst_refs[row]).bind(i + 1, r.kind).bind(i + 2, r.name).bind(i + 3, r.version).bind(i + 4, now);
        },
        "ON CONFLICT(ref) DO NOTHING RETURNING ref", [&](storage::Stmt& st) { fresh.insert(st.text(0)); });
    std::vector<std::string> known;
    for (const auto& ref : dst_refs)
        if (!fresh.contains(ref)) known.push_back(ref);
    std::vector<std::string> made(fresh.begin(), fresh.end());
    storage::insert_rows(
        db, "WITH refs(ref) AS (VALUES", 1, made.size(),
        [&](storage::Stmt& st, int i, size_t row) { st.bind(i, made[row]); },
        ") INSERT INTO lineage_edges(kind, src, dst, created_at) SELECT ?, s.id, d.id, ? FROM refs "
        "JOIN lineage_nodes d ON d.ref = refs.ref JOIN lineage_nodes s ON s.ref = ?",
        {}, [&](storage::Stmt& st, int i) { st.bind(i, kind).bind(i + 1, now).bind(i + 2, src_ref); });
    for (const auto& ref : known) add_edge(src_ref, kind, ref);  // each once: not where a live one is
    tx.commit();
}

void Graph::remove_edge(std::string_view from, std::string_view kind, std::string_view to) {
    std::string src_ref = Ref::parse(from).str(), dst_ref = Ref::parse(to).str();
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    int64_t src = node_id(src_ref, false), dst = node_id(dst_ref, false);
    auto st = db.prepare("UPDATE lineage_edges SET removed_at = ? WHERE src = ? AND dst = ? AND kind = ? AND "
                         "removed_at IS NULL");
    st.bind_all(now_ms(), src, dst, kind).run();
    if (st.affected() == 0)
        throw_error(ErrorKind::NotFound,
                    "no live lineage edge '{}' -{}-> '{}' to remove: it was never added or is already ended "
                    "(ws.lineage.downstream('{}', depth=1) lists the live ones)",
                    src_ref, kind, dst_ref, src_ref);
    tx.commit();
}

std::optional<Node> Graph::find_node(std::string_view ref_text) {
    std::string ref = Ref::parse(ref_text).str();
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare(std::string(kSelectNode) + "WHERE ref = ?");
    st.bind(1, ref);
    if (!st.step()) return std::nullopt;
    return read_node(db, st);
}

Node Graph::node(std::string_view ref) {
    auto n = find_node(ref);
    if (!n) throw_error(ErrorKind::NotFound, "lineage node '{}' not found: check the ref (kind:name[/version])", ref);
    return *n;
}

std::vector<Node> Graph::nodes(std::string_view kind) {
    auto& db = ws_.db();
    auto guard = db.lock();
    std::vector<Node> out;
    auto st = kind.empty() ? db.prepare(std::string(kSelectNode) + "ORDER BY id")
                           : db.prepare(std::string(kSelectNode) + "WHERE kind = ? ORDER BY id");
    if (!kind.empty()) st.bind(1, kind);
    while (st.step()) out.push_back(read_node(db, st));
    return out;
}

Subgraph Graph::upstream(std::string_view ref, int depth, std::optional<int64_t> as_of_ms) {
    return traverse(ref, true, depth, as_of_ms);
}

Subgraph Graph::downstream(std::string_view ref, int depth, std::optional<int64_t> as_of_ms) {
    return traverse(ref, false, depth, as_of_ms);
}

Subgraph Graph::traverse(std::string_view ref_text, bool upstream, int depth, std::optional<int64_t> as_of_ms) {
    std::string ref = Ref::parse(ref_text).str();
    int64_t at = as_of_ms.value_or(now_ms());
    auto& db = ws_.db();
    auto guard = db.lock();
    Subgraph out;
    out.root = ref;
    out.nodes.push_back(node(ref));
    if (out.nodes.front().created_at > at)
        throw_error(ErrorKind::NotFound, "lineage node '{}' did not exist yet at {} ms (created at {} ms)", ref, at,
                    out.nodes.front().created_at);

    // Breadth-first over the indexed edge table: the cost follows the answer, not the graph's size.
    const char* sql =
        upstream ? "SELECT e.kind, e.created_at, n.id, n.ref FROM lineage_edges e JOIN lineage_nodes n ON n.id = e.src "
                   "WHERE e.dst = ? AND e.created_at <= ? AND (e.removed_at IS NULL OR e.removed_at > ?)"
                 : "SELECT e.kind, e.created_at, n.id, n.ref FROM lineage_edges e JOIN lineage_nodes n ON n.id = e.dst "
                   "WHERE e.src = ? AND e.created_at <= ? AND (e.removed_at IS NULL OR e.removed_at > ?)";
    int64_t root_id = node_id(ref, false);
    std::unordered_map<int64_t, std::string> seen{{root_id, ref}};
    std::vector<int64_t> discovered; // in breadth-first order, for the node list
    std::deque<std::pair<int64_t, int>> queue{{root_id, 0}};
    while (!queue.empty()) {
        auto [id, d] = queue.front();
        queue.pop_front();
        if (depth >= 0 && d >= depth) continue;
        std::string here = seen[id];
        auto st = db.prepare(sql);
        st.bind_all(id, at, at);
        while (st.step()) {
            int64_t other = st.int64(2);
            std::string other_ref = st.text(3);
            out.edges.push_back(
                Hop{upstream ? other_ref : here, st.text(0), upstream ? here : other_ref, d + 1, st.int64(1)});
            if (seen.emplace(other, other_ref).second) {
                discovered.push_back(other);
                queue.emplace_back(other, d + 1);
            }
        }
    }
    for (int64_t id : discovered) out.nodes.push_back(node(seen[id]));
    return out;
}

} // namespace keel::lineage

// core/registry/registry.cpp
#include "keel/registry/registry.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/common/names.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"
#include "keel/tracking/tracker.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace keel::registry {

namespace {

const storage::ModuleSchema kSchema{"registry", {R"(
CREATE TABLE registry_models (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL DEFAULT '');
CREATE TABLE registry_model_tags (
    model_id INTEGER NOT NULL REFERENCES registry_models(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key));
CREATE TABLE registry_versions (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES registry_models(id),
    version INTEGER NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    digest TEXT NOT NULL,
    flavour TEXT NOT NULL,
    signature TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    stage TEXT NOT NULL DEFAULT 'None',
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    UNIQUE (model_id, version));
CREATE INDEX registry_versions_run ON registry_versions(run_id);
CREATE TABLE registry_version_tags (
    version_id INTEGER NOT NULL REFERENCES registry_versions(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (version_id, key));
CREATE TABLE registry_aliases (
    model_id INTEGER NOT NULL REFERENCES registry_models(id),
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (model_id, alias));
CREATE TABLE registry_events (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES registry_models(id),
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    from_value TEXT NOT NULL,
    to_value TEXT NOT NULL,
    "user" TEXT NOT NULL,
    at INTEGER NOT NULL);
CREATE INDEX registry_events_model ON registry_events(model_id, id);
)",
// 2: no foreign keys on models and versions. Every writer resolves them in its own transaction (a
// guessed version number is checked by the INSERT, which also refuses a model with no versions) and
// neither is ever removed, so the keys guarded nothing, while PostgreSQL ran each as a query that
// also locks the model's row: ~20 us of a registration's version INSERT (EXPLAIN ANALYZE), and of
// every alias move's audit event. SQLite rebuilds the tables, children first; PostgreSQL drops the
// constraints in place.
R"(
CREATE TABLE registry_model_tags_v2 (
    model_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key));
INSERT INTO registry_model_tags_v2 SELECT model_id, key, value FROM registry_model_tags;
DROP TABLE registry_model_tags;
ALTER TABLE registry_model_tags_v2 RENAME TO registry_model_tags;
CREATE TABLE registry_version_tags_v2 (
    version_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (version_id, key));
INSERT INTO registry_version_tags_v2 SELECT version_id, key, value FROM registry_version_tags;
DROP TABLE registry_version_tags;
ALTER TABLE registry_version_tags_v2 RENAME TO registry_version_tags;
CREATE TABLE registry_versions_v2 (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    digest TEXT NOT NULL,
    flavour TEXT NOT NULL,
    signature TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    stage TEXT NOT NULL DEFAULT 'None',
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    UNIQUE (model_id, version));
INSERT INTO registry_versions_v2(id, model_id, version, run_id, digest, flavour, signature, description, stage,
                                 created_at, created_by)
    SELECT id, model_id, version, run_id, digest, flavour, signature, description, stage, created_at, created_by
    FROM registry_versions;
DROP TABLE registry_versions;
ALTER TABLE registry_versions_v2 RENAME TO registry_versions;
CREATE INDEX registry_versions_run ON registry_versions(run_id);
CREATE TABLE registry_aliases_v2 (
    model_id INTEGER NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (model_id, alias));
INSERT INTO registry_aliases_v2 SELECT model_id, alias, version, updated_at FROM registry_aliases;
DROP TABLE registry_aliases;
ALTER TABLE registry_aliases_v2 RENAME TO registry_aliases;
CREATE TABLE registry_events_v2 (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    from_value TEXT NOT NULL,
    to_value TEXT NOT NULL,
    "user" TEXT NOT NULL,
    at INTEGER NOT NULL);
INSERT INTO registry_events_v2(id, model_id, action, subject, from_value, to_value, "user", at)
    SELECT id, model_id, action, subject, from_value, to_value, "user", at FROM registry_events;
DROP TABLE registry_events;
ALTER TABLE registry_events_v2 RENAME TO registry_events;
CREATE INDEX registry_events_model ON registry_events(model_id, id);
-- postgresql:
ALTER TABLE registry_model_tags DROP CONSTRAINT IF EXISTS registry_model_tags_model_id_fkey;
ALTER TABLE registry_version_tags DROP CONSTRAINT IF EXISTS registry_version_tags_version_id_fkey;
ALTER TABLE registry_versions DROP CONSTRAINT IF EXISTS registry_versions_model_id_fkey;
ALTER TABLE registry_aliases DROP CONSTRAINT IF EXISTS registry_aliases_model_id_fkey;
ALTER TABLE registry_events DROP CONSTRAINT IF EXISTS registry_events_model_id_fkey;
)"}};

constexpr const char* kSelectVersion =
    "SELECT m.name, v.version, v.run_id, v.digest, v.flavour, v.signature, v.description, v.created_at, "
    "v.created_by, v.stage, v.id, v.model_id FROM registry_versions v JOIN registry_models m ON m.id = v.model_id ";

constexpr std::string_view kRefShapes = "expected 'name', 'name/<version>' or 'name@<alias>', e.g. 'churn/3' or 'churn@champion'";

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'; }

void check_model_name(std::string_view name) {
    if (!valid_name(name))  // the rule every user-given name follows (keel/common/names.hpp)
        throw_error(ErrorKind::InvalidArgument,
                    "model name '{}' is malformed: use letters, digits, '_', '-' and '.' (no '/', '@' or ':'), "
                    "e.g. 'churn' or 'churn-lgbm'",
                    name);
}

bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void check_alias(std::string_view alias) {
    if (alias.empty() || alias.size() > 100 || !std::all_of(alias.begin(), alias.end(), name_char))
        throw_error(ErrorKind::InvalidArgument,
                    "alias '{}' is malformed: use letters, digits, '_', '-' and '.', e.g. 'champion'", alias);
    if (all_digits(alias))
        throw_error(ErrorKind::InvalidArgument,
                    "alias '{}' is a number and would read like a version: name versions as 'model/{}', "
                    "and give aliases a word such as 'champion'",
                    alias, alias);
    if (alias == "latest")
        throw_error(ErrorKind::InvalidArgument,
                    "alias 'latest' is reserved: 'model@latest' always means the highest version");
}

int64_t parse_version(std::string_view text, std::string_view ref) {
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (!all_digits(text) || ec != std::errc() || ptr != text.data() + text.size() || v <= 0)
        throw_error(ErrorKind::InvalidArgument,
                    "model ref '{}' has version '{}', which is not a positive whole number: {}", ref, text,
                    kRefShapes);
    return v;
}

void check_version_number(std::string_view name, int64_t version) {
    if (version <= 0)
        throw_error(ErrorKind::InvalidArgument, "version {} of model '{}' is invalid: versions start at 1", version,
                    name);
}

std::map<std::string, std::string> read_tags(storage::Db& db, const char* sql, int64_t id) {
    std::map<std::string, std::string> tags;
    auto st = db.prepare(sql);
    st.bind(1, id);
    while (st.step()) tags[st.text(0)] = st.text(1);
    return tags;
}

// A version's fields from a row of kSelectVersion's columns (no tags or aliases yet).
ModelVersion read_version_row(storage::Stmt& st) {
    ModelVersion v;
    v.name = st.text(0);
    v.version = st.int64(1);
    v.run_id = st.text(2);
    v.digest = st.text(3);
    v.flavour = st.text(4);
    v.signature = st.text(5);
    v.description = st.text(6);
    v.created_at = st.int64(7);
    v.created_by = st.text(8);
    v.stage = parse_stage(st.text(9));
    return v;
}

// Rows of (0, tag key, value) and (1, alias, ''), in that order, into a version's tags and aliases.
void take_version_extras(storage::Stmt& st, ModelVersion& v) {
    while (st.step()) {
        if (st.int64(0) == 0) v.tags[st.text(1)] = st.text(2);
        else v.aliases.push_back(st.text(1));
    }
}

// A version's tags and the aliases pointing at it, in one query (one round trip on PostgreSQL).
void read_version_extras(storage::Db& db, ModelVersion& v, int64_t version_id, int64_t model_id) {
    auto st = db.prepare("SELECT 0, key, value FROM registry_version_tags WHERE version_id = ? UNION ALL "
                         "SELECT 1, alias, '' FROM registry_aliases WHERE model_id = ? AND version = ? ORDER BY 1, 2");
    st.bind_all(version_id, model_id, v.version);
    take_version_extras(st, v);
}

ModelVersion read_version(storage::Db& db, storage::Stmt& st) {
    ModelVersion v = read_version_row(st);
    read_version_extras(db, v, st.int64(10), st.int64(11));
    return v;
}

RegisteredModel read_model(storage::Db& db, int64_t id) {
    auto st = db.prepare("SELECT name, description, owner, created_at, created_by FROM registry_models WHERE id = ?");
    st.bind(1, id);
    if (!st.step()) throw_error(ErrorKind::Internal, "registered model id {} vanished", id);
    RegisteredModel m;
    m.name = st.text(0);
    m.description = st.text(1);
    m.owner = st.text(2);
    m.created_at = st.int64(3);
    m.created_by = st.text(4);
    m.tags = read_tags(db, "SELECT key, value FROM registry_model_tags WHERE model_id = ? ORDER BY key", id);
    auto latest = db.prepare("SELECT MAX(version) FROM registry_versions WHERE model_id = ?");
    latest.bind(1, id);
    if (latest.step()) m.latest_version = latest.opt_int64(0);
    auto aliases = db.prepare("SELECT alias, version FROM registry_aliases WHERE model_id = ?");
    aliases.bind(1, id);
    while (aliases.step()) m.aliases[aliases.text(0)] = aliases.int64(1);
    return m;
}

void write_model_info(storage::Db& db, int64_t id, const ModelInfo& info) {
    if (info.description)
        db.prepare("UPDATE registry_models SET description = ? WHERE id = ?").bind_all(*info.description, id).queue();
    if (info.owner) db.prepare("UPDATE registry_models SET owner = ? WHERE id = ?").bind_all(*info.owner, id).queue();
    for (const auto& [key, value] : info.tags)
        db.prepare("INSERT INTO registry_model_tags(model_id, key, value) VALUES(?, ?, ?) "
                   "ON CONFLICT(model_id, key) DO UPDATE SET value = excluded.value")
            .bind_all(id, key, value)
            .queue();
}

std::string model_node(std::string_view name) { return "model:" + std::string(name); }

} // namespace

// ------------------------------------------------------------------------------------- Stage

std::string_view stage_name(Stage stage) {
    switch (stage) {
    case Stage::None: return "None";
    case Stage::Staging: return "Staging";
    case Stage::Production: return "Production";
    case Stage::Archived: return "Archived";
    }
    return "None";
}

Stage parse_stage(std::string_view text) {
    std::string lower(text);
    for (auto& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "none") return Stage::None;
    if (lower == "staging") return Stage::Staging;
    if (lower == "production") return Stage::Production;
    if (lower == "archived") return Stage::Archived;
    throw_error(ErrorKind::InvalidArgument, "stage '{}' is unknown: use None, Staging, Production or Archived", text);
}

// ------------------------------------------------------------------------------------ ModelRef

ModelRef ModelRef::parse(std::string_view text) {
    std::string_view body = text;
    if (body.starts_with("model:")) body.remove_prefix(6);
    ModelRef ref;
    auto at = body.find('@');
    auto slash = body.find('/');
    if (at != std::string_view::npos && slash != std::string_view::npos)
        throw_error(ErrorKind::InvalidArgument, "model ref '{}' has both a version and an alias: {}", text, kRefShapes);
    std::string_view name = body;
    if (at != std::string_view::npos) {
        name = body.substr(0, at);
        ref.alias = std::string(body.substr(at + 1));
        if (ref.alias.empty())
            throw_error(ErrorKind::InvalidArgument, "model ref '{}' has an empty alias after '@': {}", text, kRefShapes);
        if (!std::all_of(ref.alias.begin(), ref.alias.end(), name_char))
            throw_error(ErrorKind::InvalidArgument, "model ref '{}' has a malformed alias '{}': {}", text, ref.alias,
                        kRefShapes);
    } else if (slash != std::string_view::npos) {
        name = body.substr(0, slash);
        ref.version = parse_version(body.substr(slash + 1), text);
    }
    if (name.empty() || !std::all_of(name.begin(), name.end(), name_char))
        throw_error(ErrorKind::InvalidArgument, "model ref '{}' is malformed: {}", text, kRefShapes);
    ref.name = std::string(name);
    return ref;
}

std::string ModelRef::str() const {
    if (version) return name + "/" + std::to_string(*version);
    if (!alias.empty()) return name + "@" + alias;
    return name;
}

std::string ModelVersion::ref() const { return name + "/" + std::to_string(version); }
std::string ModelVersion::lineage_ref() const { return "model:" + ref(); }

// ------------------------------------------------------------------------------------ Registry

const storage::ModuleSchema& Registry::schema() { return kSchema; }

const std::vector<storage::ObjectRefs>& Registry::object_refs() {
    static const std::vector<storage::ObjectRefs> refs{
        {"registry_versions", storage::ObjectRefs::Kind::ArtifactDigest, "SELECT DISTINCT digest FROM registry_versions"}};
    return refs;
}

Registry::Registry(storage::Workspace& ws) : ws_(ws), graph_(std::make_unique<lineage::Graph>(ws)) {
    ws_.db().ensure_schema(kSchema);
}

Registry::~Registry() = default;

int64_t Registry::model_id(std::string_view name) {
    auto& db = ws_.db();
    auto st = db.prepare("SELECT id FROM registry_models WHERE name = ?");
    st.bind(1, name);
    if (st.step()) return st.int64(0);
    check_model_name(name);
    throw_error(ErrorKind::NotFound, "registered model '{}' not found: register a version with "
                "ws.models.register / run.log_model, or create it with ws.models.create", name);
}

void Registry::add_event(int64_t model_id, std::string_view action, std::string_view subject, std::string_view from,
                         std::string_view to) {
    ws_.db()
        .prepare("INSERT INTO registry_events(model_id, action, subject, from_value, to_value, \"user\", at) "
                 "VALUES(?, ?, ?, ?, ?, ?, ?)")
        .bind_all(model_id, action, subject, from, to, ws_.user(), now_ms())
        .queue();
    storage::bump_generation(ws_.db()); // live endpoints re-resolve their refs on the next request
}

RegisteredModel Registry::create_model(std::string_view name, const ModelInfo& info) {
    check_model_name(name);
    auto& db = ws_.db();
    storage::Transaction tx(db);
    {
        auto st = db.prepare("SELECT 1 FROM registry_models WHERE name = ?");
        st.bind(1, name);
        if (st.step())
            throw_error(ErrorKind::AlreadyExists,
                        "registered model '{}' already exists: pick another name or add versions to it", name);
    }
    int64_t id = db.prepare("INSERT INTO registry_models(name, owner, created_at, created_by) VALUES(?, ?, ?, ?) "
                            "RETURNING id")
                     .bind_all(name, ws_.user(), now_ms(), ws_.user())
                     .insert_id();
    write_model_info(db, id, info);
    auto model = read_model(db, id);
    graph_->upsert_node(model_node(name), {.owner = model.owner, .description = model.description, .tags = model.tags});
    tx.commit();
    return model;
}

RegisteredModel Registry::update_model(std::string_view name, const ModelInfo& info) {
    auto& db = ws_.db();
    storage::Transaction tx(db);
    int64_t id = model_id(name);
    write_model_info(db, id, info);
    auto model = read_model(db, id);
    graph_->upsert_node(model_node(name), {.owner = info.owner, .description = info.description, .tags = info.tags});
    tx.commit();
    return model;
}

std::optional<RegisteredModel> Registry::find_model(std::string_view name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT id FROM registry_models WHERE name = ?");
    st.bind(1, name);
    if (!st.step()) return std::nullopt;
    int64_t id = st.int64(0);
    return read_model(db, id);
}

RegisteredModel Registry::model(std::string_view name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    return read_model(db, model_id(name));
}

std::vector<RegisteredModel> Registry::models() {
    auto& db = ws_.db();
    auto guard = db.lock();
    std::vector<int64_t> ids;
    {
        auto st = db.prepare("SELECT id FROM registry_models ORDER BY name");
        while (st.step()) ids.push_back(st.int64(0));
    }
    std::vector<RegisteredModel> out;
    for (int64_t id : ids) out.push_back(read_model(db, id));
    return out;
}

ModelVersion Registry::register_version(std::string_view name, const NewVersion& nv, const ModelInfo& info) {
    check_model_name(name);
    if (nv.digest.empty() || !ws_.artifacts().contains(nv.digest))
        throw_error(ErrorKind::NotFound,
                    "artifact '{}' for model '{}' is not in the workspace's artifact store: store the model "
                    "bytes first (ws.put_artifact) and register the digest it returns",
                    nv.digest, name);
    if (nv.flavour.empty())
        throw_error(ErrorKind::InvalidArgument, "flavour of the new version of '{}' is empty: use e.g. 'python'", name);
    auto guard = ws_.db().lock();  // every attempt on one connection
    // Inside a caller's transaction nothing is guessed: a refused guess would abort that whole
    // transaction on PostgreSQL, and its rollback would leave known_ ahead of what is stored.
    const bool outermost = !ws_.db().in_transaction();
    const std::string key(name);
    for (int attempt = 0;; ++attempt) {
        // The first attempt guesses the version number (from what this handle registered last) and
        // that the source run exists, both checked by the INSERT, which refuses a wrong guess (a
        // Conflict, nothing written): no read, so on PostgreSQL one wait. The second attempt reads.
        const bool guessing = outermost && attempt == 0;
        std::optional<Known> guess;
        if (guessing) {
            std::lock_guard lk(known_mu_);
            if (auto it = known_.find(key); it != known_.end()) guess = it->second;
        }
        try {
            return write_version(name, nv, info, guess, /*read_run=*/!guessing, outermost);
        } catch (const Error& e) {
            {
                std::lock_guard lk(known_mu_);
                known_.erase(key);
            }
            // Another process, or another thread on another connection, registered a version of this
            // model since this handle last did, or the run is missing: once more, reading both (a
            // missing run is then a NotFound naming it).
            if (guessing && e.kind() == ErrorKind::Conflict) continue;
            throw;
        }
    }
}

ModelVersion Registry::write_version(std::string_view name, const NewVersion& nv, const ModelInfo& info,
                                     std::optional<Known> guess, bool read_run, bool remember) {
    auto& db = ws_.db();
    storage::Transaction tx(db); // one writer at a time: the version number below is ours until commit
    // The source run must exist: lineage and `mv.run` would otherwise point at nothing. Asked through
    // tracking's public API, here or in the INSERT below; runs are never deleted, so the answer holds
    // until commit.
    tracking::Tracker runs(ws_);  // per call: it ensures its tables in this transaction
    if (!nv.run_id.empty() && read_run) {
        try {
            runs.get_info(nv.run_id);
        } catch (const Error& e) {
            if (e.kind() != ErrorKind::NotFound) throw;
            throw_error(ErrorKind::NotFound,
                        "cannot register a version of '{}' from run '{}': no such run in this workspace. Pass the id "
                        "of a run here (run.id, ws.runs.search()), or no run_id",
                        name, nv.run_id);
        }
    }
    // The model and the number of its new version: from what this handle registered last when it
    // knows the model (models are never deleted; the INSERT below checks the number), otherwise
    // read. Every write after it is queued: on PostgreSQL the transaction waits only at commit.
    int64_t id = 0, number = 1;
    bool new_model = false;
    if (guess) {
        id = guess->id;
        number = guess->latest + 1;
    } else {
        auto st = db.prepare("SELECT m.id, (SELECT MAX(v.version) FROM registry_versions v WHERE v.model_id = m.id) "
                             "FROM registry_models m WHERE m.name = ?");
        st.bind(1, name);
        if (st.step()) {
            id = st.int64(0);
            number = st.opt_int64(1).value_or(0) + 1;
        }
    }
    if (id == 0) {
        id = db.prepare("INSERT INTO registry_models(name, owner, created_at, created_by) VALUES(?, ?, ?, ?) "
                        "RETURNING id")
                 .bind_all(name, ws_.user(), now_ms(), ws_.user())
                 .insert_id();
        new_model = true;
    }
    write_model_info(db, id, info);
    ModelVersion created;
    created.name = std::string(name);
    created.version = number;
    created.run_id = nv.run_id;
    created.digest = nv.digest;
    created.flavour = nv.flavour;
    created.signature = nv.signature;
    created.description = nv.description;
    created.tags = nv.tags;
    created.created_at = now_ms();
    created.created_by = ws_.user();
    // Gap-free whoever guessed the number: the version is 1 + the highest one, or NULL, which the
    // NOT NULL column refuses (a Conflict that rolls the whole transaction back). NULL too when the
    // source run is missing.
    db.prepare("INSERT INTO registry_versions(model_id, version, run_id, digest, flavour, signature, description, "
               "created_at, created_by) VALUES(?1, CASE WHEN (SELECT COALESCE(MAX(version), 0) + 1 FROM "
               "registry_versions WHERE model_id = ?1) = ?2 AND (?3 = '' OR " + tracking::Tracker::run_exists_sql(3) +
               ") THEN ?2 END, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
        .bind_all(id, number, nv.run_id, nv.digest, nv.flavour, nv.signature, nv.description, created.created_at,
                  created.created_by)
        .queue();
    std::vector<std::pair<std::string, std::string>> tags(nv.tags.begin(), nv.tags.end());
    storage::insert_few_rows(
        db, "INSERT INTO registry_version_tags(version_id, key, value) VALUES",
        "((SELECT id FROM registry_versions WHERE model_id = ? AND version = ?), ?, ?)", 4, tags.size(),
        [&](storage::Stmt& st, int i, size_t row) {
            st.bind(i, id).bind(i + 1, number).bind(i + 2, tags[row].first).bind(i + 3, tags[row].second);
        });

    // Lineage, in the same transaction: the version node carries its owner, flavour and digest;
    // the model node its owner, description and tags, written when they change (a new model, or
    // info given here; create_model and update_model write them otherwise); the run that
    // produced the version points at it.
    std::vector<std::pair<std::string, lineage::NodeInfo>> nodes;
    nodes.push_back({created.lineage_ref(), {.owner = ws_.user(),
                                             .description = nv.description,
                                             .tags = {{"flavour", nv.flavour}, {"digest", nv.digest}}}});
    if (new_model || info.owner || info.description || !info.tags.empty())
        nodes.push_back({model_node(name),
                         {.owner = new_model ? info.owner.value_or(ws_.user()) : info.owner,
                          .description = new_model ? info.description.value_or("") : info.description,
                          .tags = info.tags}});
    std::vector<lineage::EdgeRef> edges{{created.lineage_ref(), "version_of", model_node(name)}};
    if (!nv.run_id.empty()) edges.push_back({"run:" + nv.run_id, "produced", created.lineage_ref()});
    graph_->record(nodes, edges);
    storage::bump_generation(db); // "name" and "name@latest" now mean this version
    tx.commit();
    if (remember) {
        std::lock_guard lk(known_mu_);
        if (auto& known = known_[std::string(name)]; number > known.latest) known = {id, number};
    }
    return created;
}

ModelVersion Registry::version(std::string_view name, int64_t number) {
    check_version_number(name, number);
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare(std::string(kSelectVersion) + "WHERE m.name = ? AND v.version = ?");
    st.bind_all(name, number);
    if (!st.step()) {
        int64_t id = model_id(name);  // NotFound naming the model when it is the model that is missing
        auto latest = read_model(db, id).latest_version;
        throw_error(ErrorKind::NotFound, "model version '{}/{}' not found: model '{}' has {}", name, number, name,
                    latest ? fmt::format("versions 1 to {}", *latest) : std::string("no versions yet"));
    }
    return read_version(db, st);
}

std::vector<ModelVersion> Registry::versions(std::string_view name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    int64_t id = model_id(name);
    auto st = db.prepare(std::string(kSelectVersion) + "WHERE v.model_id = ? ORDER BY v.version");
    st.bind(1, id);
    std::vector<ModelVersion> out;
    while (st.step()) out.push_back(read_version(db, st));
    return out;
}

ModelVersion Registry::resolve(std::string_view text) {
    ModelRef ref = ModelRef::parse(text);
    auto& db = ws_.db();
    auto guard = db.lock();
    int64_t id = 0;
    {
        auto st = db.prepare("SELECT id FROM registry_models WHERE name = ?");
        st.bind(1, ref.name);
        if (st.step()) id = st.int64(0);
    }
    if (id == 0)
        throw_error(ErrorKind::NotFound, "model ref '{}': registered model '{}' not found", text, ref.name);
    if (ref.version) return version(ref.name, *ref.version);
    if (ref.alias.empty() || ref.alias == "latest") {
        auto latest = read_model(db, id).latest_version;
        if (!latest)
            throw_error(ErrorKind::NotFound, "model ref '{}': model '{}' has no versions yet", text, ref.name);
        return version(ref.name, *latest);
    }
    auto st = db.prepare("SELECT version FROM registry_aliases WHERE model_id = ? AND alias = ?");
    st.bind_all(id, ref.alias);
    if (!st.step()) {
        auto aliases = read_model(db, id).aliases;
        std::string known;
        for (const auto& [alias, v] : aliases) known += (known.empty() ? "" : ", ") + alias;
        throw_error(ErrorKind::NotFound, "model ref '{}': model '{}' has no alias '{}' ({}): set it with "
                    "ws.models.set_alias or 'keel models promote'",
                    text, ref.name, ref.alias, known.empty() ? "it has no aliases" : "its aliases: " + known);
    }
    int64_t number = st.int64(0);
    return version(ref.name, number);
}

std::string Registry::load_artifact(std::string_view ref) {
    auto v = resolve(ref);
    return ws_.artifacts().get_bytes(v.digest);
}

ModelVersion Registry::set_alias(std::string_view name, std::string_view alias, int64_t number,
                                 const AliasCheck& check) {
    check_alias(alias);
    check_version_number(name, number);
    auto& db = ws_.db();
    storage::Transaction tx(db);
    // The version's tags and the aliases naming it travel with the read below: one wait for both.
    auto extras = db.prepare(
        "SELECT 0, t.key, t.value FROM registry_version_tags t JOIN registry_versions v ON v.id = t.version_id "
        "JOIN registry_models m ON m.id = v.model_id WHERE m.name = ?1 AND v.version = ?2 UNION ALL "
        "SELECT 1, a.alias, '' FROM registry_aliases a JOIN registry_models m ON m.id = a.model_id "
        "WHERE m.name = ?1 AND a.version = ?2 ORDER BY 1, 2");
    extras.bind_all(name, number);
    extras.defer();
    // The model, the version's record and where the alias points now, in one read.
    int64_t id = 0;
    std::optional<ModelVersion> target;
    std::string from;
    {
        auto st = db.prepare("SELECT m.name, v.version, v.run_id, v.digest, v.flavour, v.signature, v.description, "
                             "v.created_at, v.created_by, v.stage, v.id, m.id, a.version FROM registry_models m "
                             "LEFT JOIN registry_versions v ON v.model_id = m.id AND v.version = ? "
                             "LEFT JOIN registry_aliases a ON a.model_id = m.id AND a.alias = ? WHERE m.name = ?");
        st.bind_all(number, alias, name);
        if (st.step()) {
            id = st.int64(11);
            if (!st.is_null(10)) target = read_version_row(st);
            if (!st.is_null(12)) from = std::to_string(st.int64(12));
        }
    }
    if (!target) {
        version(name, number);  // throws NotFound naming what is missing
        throw_error(ErrorKind::Internal, "model version '{}/{}' was found and then not", name, number);
    }
    take_version_extras(extras, *target);
    if (check) check(*target);
    std::string to = std::to_string(number);
    if (from != to) {
        db.prepare("INSERT INTO registry_aliases(model_id, alias, version, updated_at) VALUES(?, ?, ?, ?) "
                   "ON CONFLICT(model_id, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at")
            .bind_all(id, alias, number, now_ms())
            .queue();
        add_event(id, "alias", alias, from, to);
        // Read before the move: the alias joins the version's aliases, in their (byte) order.
        auto& aliases = target->aliases;
        aliases.insert(std::lower_bound(aliases.begin(), aliases.end(), alias), std::string(alias));
    }
    tx.commit();
    return std::move(*target);
}

void Registry::delete_alias(std::string_view name, std::string_view alias) {
    auto& db = ws_.db();
    storage::Transaction tx(db);
    int64_t id = model_id(name);
    std::string from;
    {
        auto st = db.prepare("SELECT version FROM registry_aliases WHERE model_id = ? AND alias = ?");
        st.bind_all(id, alias);
        if (!st.step())
            throw_error(ErrorKind::NotFound, "model '{}' has no alias '{}' to delete", name, alias);
        from = std::to_string(st.int64(0));
    }
    db.prepare("DELETE FROM registry_aliases WHERE model_id = ? AND alias = ?").bind_all(id, alias).run();
    add_event(id, "alias", alias, from, "");
    tx.commit();
}

ModelVersion Registry::transition_stage(std::string_view name, int64_t number, Stage stage, bool archive_existing) {
    auto& db = ws_.db();
    storage::Transaction tx(db);
    int64_t id = model_id(name);
    auto current = version(name, number);
    std::string to(stage_name(stage));
    if (current.stage != stage) {
        db.prepare("UPDATE registry_versions SET stage = ? WHERE model_id = ? AND version = ?")
            .bind_all(to, id, number)
            .run();
        add_event(id, "stage", std::to_string(number), stage_name(current.stage), to);
    }
    if (archive_existing && (stage == Stage::Staging || stage == Stage::Production)) {
        std::vector<int64_t> others;
        {
            auto st = db.prepare("SELECT version FROM registry_versions WHERE model_id = ? AND stage = ? AND version != ? "
                                 "ORDER BY version");
            st.bind_all(id, to, number);
            while (st.step()) others.push_back(st.int64(0));
        }
        for (int64_t other : others) {
            db.prepare("UPDATE registry_versions SET stage = 'Archived' WHERE model_id = ? AND version = ?")
                .bind_all(id, other)
                .run();
            add_event(id, "stage", std::to_string(other), to, "Archived");
        }
    }
    auto v = version(name, number);
    tx.commit();
    return v;
}

std::vector<Event> Registry::events(std::string_view name) {
    auto& db = ws_.db();
    auto guard = db.lock();
    constexpr const char* kSelect = "SELECT e.id, m.name, e.action, e.subject, e.from_value, e.to_value, e.\"user\", e.at "
                                    "FROM registry_events e JOIN registry_models m ON m.id = e.model_id ";
    auto st = name.empty() ? db.prepare(std::string(kSelect) + "ORDER BY e.id")
                           : db.prepare(std::string(kSelect) + "WHERE e.model_id = ? ORDER BY e.id");
    if (!name.empty()) st.bind(1, model_id(name));
    std::vector<Event> out;
    while (st.step())
        out.push_back(Event{st.int64(0), st.text(1), st.text(2), st.text(3), st.text(4), st.text(5), st.text(6),
                            st.int64(7)});
    return out;
}

} // namespace keel::registry

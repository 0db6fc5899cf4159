// core/plugins/quality_store.cpp
#include "keel/plugins/quality_store.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"

#include <limits>
#include <set>

namespace keel::plugins {

namespace {

const storage::ModuleSchema kSchema{"plugins", {R"(
CREATE TABLE plugins_quality_rules (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    plugin TEXT NOT NULL,
    args TEXT NOT NULL,
    severity TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    removed_at INTEGER);
CREATE INDEX plugins_quality_rules_target ON plugins_quality_rules(target);
CREATE TABLE plugins_quality_batches (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    rows INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    created_at INTEGER NOT NULL);
CREATE TABLE plugins_quality_results (
    id INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL REFERENCES plugins_quality_batches(id),
    target TEXT NOT NULL,
    rule TEXT NOT NULL,
    column_name TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    observed TEXT NOT NULL,
    expectation TEXT NOT NULL,
    message TEXT NOT NULL);
CREATE INDEX plugins_quality_results_target ON plugins_quality_results(target, batch);
CREATE TABLE plugins_data_issues (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    rule TEXT NOT NULL,
    column_name TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    closed_at INTEGER);
CREATE INDEX plugins_data_issues_target ON plugins_data_issues(target, closed_at);
CREATE TABLE plugins_quality_profiles (
    target TEXT NOT NULL,
    column_name TEXT NOT NULL,
    profile TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (target, column_name));
)",
                                       // 2: structured result details (offending values), the rule that opened
                                       // an issue (removing the rule closes it), and the PII columns whose raw
                                       // values a result or issue may quote (hidden from readers without a grant).
                                       R"(
ALTER TABLE plugins_quality_results ADD COLUMN detail TEXT NOT NULL DEFAULT '';
ALTER TABLE plugins_quality_results ADD COLUMN raw_pii TEXT NOT NULL DEFAULT '';
ALTER TABLE plugins_data_issues ADD COLUMN rule_id INTEGER;
ALTER TABLE plugins_data_issues ADD COLUMN raw_pii TEXT NOT NULL DEFAULT '';
)"}};

constexpr const char* kSelectIssue =
    "SELECT id, target, rule, column_name, severity, message, opened_at, closed_at, raw_pii FROM plugins_data_issues ";

// The label results carry for a rule without a name: its plugin's file stem.
std::string rule_stem(std::string s) {
    if (auto slash = s.find_last_of('/'); slash != std::string::npos) s = s.substr(slash + 1);
    if (s.size() > 4 && s.ends_with(".lua")) s.resize(s.size() - 4);
    return s;
}

DataIssue read_issue(storage::Stmt& st) {
    DataIssue d;
    d.id = st.int64(0);
    d.target = st.text(1);
    d.rule = st.text(2);
    d.column = st.text(3);
    d.severity = st.text(4);
    d.message = st.text(5);
    d.opened_at = st.int64(6);
    d.closed_at = st.opt_int64(7);
    d.raw_pii = st.text(8);
    return d;
}

} // namespace

const storage::ModuleSchema& QualityStore::schema() { return kSchema; }

QualityStore::QualityStore(storage::Workspace& ws) : ws_(ws) { ws_.db().ensure_schema(kSchema); }

int64_t QualityStore::add_rule(const std::string& target, const std::string& plugin, const std::string& args_json,
                               const std::string& severity, const std::string& name) {
    if (severity != "error" && severity != "warn")
        throw_error(ErrorKind::InvalidArgument, "severity '{}' must be 'error' or 'warn'", severity);
    auto& db = ws_.db();
    storage::Transaction tx(db);
    int64_t id = db.prepare("INSERT INTO plugins_quality_rules (target, plugin, args, severity, name, created_at) "
                            "VALUES (?,?,?,?,?,?) RETURNING id")
                     .bind_all(target, plugin, args_json, severity, name, now_ms())
                     .insert_id();
    tx.commit();
    return id;
}

std::vector<StoredRule> QualityStore::rules(const std::string& target) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT id, target, plugin, args, severity, name, created_at FROM plugins_quality_rules "
                         "WHERE target = ? AND removed_at IS NULL ORDER BY id");
    st.bind_all(target);
    std::vector<StoredRule> out;
    while (st.step()) out.push_back({st.int64(0), st.text(1), st.text(2), st.text(3), st.text(4), st.text(5), st.int64(6)});
    return out;
}

std::vector<DataIssue> QualityStore::remove_rule(const std::string& target, int64_t id) {
    auto& db = ws_.db();
    std::vector<DataIssue> closed;
    int64_t now = now_ms();
    {
        storage::Transaction tx(db);
        std::string label;
        {
            auto st = db.prepare("SELECT name, plugin FROM plugins_quality_rules WHERE id = ? AND target = ? AND "
                                 "removed_at IS NULL");
            st.bind_all(id, target);
            if (!st.step()) throw_error(ErrorKind::NotFound, "{} has no rule {}", target, id);
            label = st.text(0).empty() ? rule_stem(st.text(1)) : st.text(0);
        }
        db.prepare("UPDATE plugins_quality_rules SET removed_at = ? WHERE id = ?").bind_all(now, id).run();
        // The rule's open issues close with it. Issues recorded before rule ids were kept close too
        // when no remaining rule of the target goes by the same name.
        bool label_in_use = false;
        {
            auto st = db.prepare("SELECT name, plugin FROM plugins_quality_rules WHERE target = ? AND removed_at IS NULL");
            st.bind_all(target);
            while (st.step()) label_in_use |= (st.text(0).empty() ? rule_stem(st.text(1)) : st.text(0)) == label;
        }
        {
            auto st = db.prepare(std::string(kSelectIssue) +
                                 "WHERE target = ? AND closed_at IS NULL AND (rule_id = ? OR (rule_id IS NULL AND "
                                 "rule = ? AND NOT ?)) ORDER BY id");
            st.bind_all(target, id, label, int64_t(label_in_use));
            while (st.step()) closed.push_back(read_issue(st));
        }
        for (auto& d : closed) {
            d.closed_at = now;
            db.prepare("UPDATE plugins_data_issues SET closed_at = ? WHERE id = ?").bind_all(now, d.id).run();
        }
        if (!closed.empty()) storage::bump_generation(db);  // endpoints stop routing around them
        tx.commit();
    }
    if (!closed.empty()) {
        lineage::Graph g(ws_);
        g.upsert_node(target, {.tags = {{"data_issues", std::to_string(issues(target).size())}}});
    }
    return closed;
}

RecordOutcome QualityStore::record(const std::string& target, int64_t rows, bool accepted,
                                   const std::vector<StoredResult>& results) {
    auto& db = ws_.db();
    RecordOutcome out;
    int64_t now = now_ms();
    {
        storage::Transaction tx(db);
        out.batch = db.prepare("INSERT INTO plugins_quality_batches (target, rows, accepted, created_at) "
                               "VALUES (?,?,?,?) RETURNING id")
                        .bind_all(target, rows, int64_t(accepted), now)
                        .insert_id();
        for (const auto& r : results) {
            db.prepare("INSERT INTO plugins_quality_results (batch, target, rule, column_name, severity, status, observed, "
                       "expectation, message, detail, raw_pii) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
                .bind_all(out.batch, target, r.rule, r.column, r.severity, r.status, r.observed_json, r.expectation, r.message,
                          r.detail_json, r.raw_pii)
                .run();
            std::optional<DataIssue> open;
            {
                // The issue of this rule (by id; issues from before ids were kept match by name).
                auto st = db.prepare(std::string(kSelectIssue) +
                                     "WHERE target = ? AND rule = ? AND column_name = ? AND closed_at IS NULL AND "
                                     "(rule_id IS NULL OR rule_id = ? OR ? = 0) ORDER BY rule_id IS NULL, id");
                st.bind_all(target, r.rule, r.column, r.rule_id, r.rule_id);
                if (st.step()) open = read_issue(st);
            }
            bool failing = r.status == "fail" || r.status == "error";
            if (failing && !open) {
                int64_t issue = db.prepare("INSERT INTO plugins_data_issues (target, rule, column_name, severity, "
                                           "message, opened_at, rule_id, raw_pii) VALUES (?,?,?,?,?,?,?,?) RETURNING id")
                                    .bind_all(target, r.rule, r.column, r.severity, r.message, now,
                                              r.rule_id ? std::optional<int64_t>(r.rule_id) : std::nullopt, r.raw_pii)
                                    .insert_id();
                out.opened.push_back({issue, target, r.rule, r.column, r.severity, r.message, now, {}, r.raw_pii});
            } else if (r.status == "pass" && open) {
                db.prepare("UPDATE plugins_data_issues SET closed_at = ? WHERE id = ?").bind_all(now, open->id).run();
                open->closed_at = now;
                out.closed.push_back(*open);
            }
        }
        if (!out.opened.empty() || !out.closed.empty()) storage::bump_generation(db); // endpoints route away
        tx.commit();
    }
    if (!out.opened.empty() || !out.closed.empty()) {
        lineage::Graph g(ws_);
        auto n = issues(target).size();
        g.upsert_node(target, {.tags = {{"data_issues", std::to_string(n)}}});
    }
    return out;
}

std::vector<StoredResult> QualityStore::history(const std::string& target, int64_t limit) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare(
        "SELECT r.rule, r.column_name, r.severity, r.status, r.observed, r.expectation, r.message, b.id, b.rows, "
        "b.accepted, b.created_at, r.detail, r.raw_pii FROM plugins_quality_results r JOIN plugins_quality_batches b ON b.id = r.batch "
        "WHERE r.target = ? ORDER BY b.id DESC, r.id LIMIT ?");
    st.bind_all(target, limit < 0 ? std::numeric_limits<int64_t>::max() : limit);  // negative: all
    std::vector<StoredResult> out;
    while (st.step()) {
        StoredResult r{st.text(0), st.text(1), st.text(2), st.text(3), st.text(4), st.text(5), st.text(6)};
        r.detail_json = st.text(11);
        r.raw_pii = st.text(12);
        r.batch = st.int64(7);
        r.rows = st.int64(8);
        r.accepted = st.int64(9) != 0;
        r.created_at = st.int64(10);
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<DataIssue> QualityStore::issues(const std::string& target, bool include_closed) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare(std::string(kSelectIssue) + "WHERE target = ? AND (? OR closed_at IS NULL) ORDER BY id");
    st.bind_all(target, int64_t(include_closed));
    std::vector<DataIssue> out;
    while (st.step()) out.push_back(read_issue(st));
    return out;
}

std::vector<DataIssue> QualityStore::issues_affecting(const std::string& ref) {
    lineage::Graph g(ws_);
    std::vector<std::string> refs{ref};
    if (g.find_node(ref)) {
        auto up = g.upstream(ref);
        for (const auto& n : up.nodes)
            if (n.ref != ref) refs.push_back(n.ref);
    }
    std::vector<DataIssue> out;
    for (const auto& r : refs)
        for (auto& d : issues(r)) out.push_back(std::move(d));
    return out;
}

DataIssue QualityStore::close_issue(int64_t id) {
    auto& db = ws_.db();
    DataIssue d;
    {
        storage::Transaction tx(db);
        auto st = db.prepare(std::string(kSelectIssue) + "WHERE id = ? AND closed_at IS NULL");
        st.bind_all(id);
        if (!st.step()) throw_error(ErrorKind::NotFound, "data issue {} is not open", id);
        d = read_issue(st);
        d.closed_at = now_ms();
        db.prepare("UPDATE plugins_data_issues SET closed_at = ? WHERE id = ?").bind_all(*d.closed_at, id).run();
        storage::bump_generation(db);
        tx.commit();
    }
    lineage::Graph g(ws_);
    g.upsert_node(d.target, {.tags = {{"data_issues", std::to_string(issues(d.target).size())}}});
    return d;
}

void QualityStore::set_profile(const std::string& target, const std::string& column, const std::string& profile_json) {
    auto& db = ws_.db();
    storage::Transaction tx(db);
    db.prepare("INSERT INTO plugins_quality_profiles (target, column_name, profile, created_at) VALUES (?,?,?,?) "
               "ON CONFLICT(target, column_name) DO UPDATE SET profile = excluded.profile, created_at = excluded.created_at")
        .bind_all(target, column, profile_json, now_ms())
        .run();
    tx.commit();
}

std::vector<std::pair<std::string, std::string>> QualityStore::profiles(const std::string& target) {
    auto& db = ws_.db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT column_name, profile FROM plugins_quality_profiles WHERE target = ? ORDER BY column_name");
    st.bind_all(target);
    std::vector<std::pair<std::string, std::string>> out;
    while (st.step()) out.emplace_back(st.text(0), st.text(1));
    return out;
}

} // namespace keel::plugins

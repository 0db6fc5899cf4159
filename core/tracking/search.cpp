// core/tracking/search.cpp
// Tracker::search: a parsed filter and order_by list become one SQL query with bound parameters
// (values are never pasted into the SQL text), then one query per table fetches the page's params,
// latest metrics and tags.
#include "keel/tracking/tracker.hpp"

#include "keel/common/error.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/sql_dialect.hpp"
#include "keel/storage/workspace.hpp"
#include "keel/tracking/filter.hpp"

#include <variant>

namespace keel::tracking {

namespace {

using Bind = std::variant<double, int64_t, std::string>;

// SQLite's limit is 64 tables per join; runs, experiments and parents take three.
constexpr size_t kMaxSearchJoins = 60;
// Bound values stay far below SQLite's 32,766 together with the filter's own limits.
constexpr size_t kMaxSearchExperiments = 10'000;

const char* attribute_column(std::string_view name) {
    if (name == "status") return "r.status";
    if (name == "name") return "r.name";
    if (name == "run_id") return "r.run_id";
    if (name == "user") return "r.\"user\"";
    if (name == "start_time") return "r.start_time";
    if (name == "end_time") return "r.end_time";
    if (name == "experiment") return "e.name";
    if (name == "parent_id") return "p.run_id";
    throw_error(ErrorKind::InvalidArgument, "unknown run attribute '{}'", name);
}

struct Builder {
    storage::Dialect dialect;
    std::string joins;
    std::vector<Bind> join_binds;
    std::string where;
    std::vector<Bind> where_binds;
    std::string order;
    int alias = 0;

    // `column op ?` for one term's value, binding it.
    void comparison(std::string& sql, std::vector<Bind>& binds, const std::string& column, const Term& t) {
        if (t.op == "LIKE" || t.op == "ILIKE") {
            // MLflow's LIKE is case-sensitive, ILIKE not; each backend spells them its own way.
            auto like = storage::like_match(dialect, std::get<std::string>(t.value), t.op == "LIKE");
            sql += column + " " + like.op;
            binds.emplace_back(std::move(like.pattern));
        } else if (t.op == "IN" || t.op == "NOT IN") {
            const auto& items = std::get<std::vector<std::string>>(t.value);
            sql += column + (t.op == "IN" ? " IN (" : " NOT IN (");
            for (size_t i = 0; i < items.size(); ++i) {
                sql += i ? ", ?" : "?";
                binds.emplace_back(items[i]);
            }
            sql += ")";
        } else {
            if (auto* d = std::get_if<double>(&t.value)) {
                // Typed, so PostgreSQL compares as a number even with an integer column (start_time).
                sql += column + " " + t.op + " CAST(? AS DOUBLE PRECISION)";
                binds.emplace_back(*d);
            } else {
                sql += column + " " + t.op + " ?";
                binds.emplace_back(std::get<std::string>(t.value));
            }
        }
    }
};

} // namespace

std::vector<Run> Tracker::search(const SearchQuery& query) {
    if (query.max_results <= 0)
        throw_error(ErrorKind::InvalidArgument, "max_results is {}: ask for at least 1 run", query.max_results);
    if (query.offset < 0)
        throw_error(ErrorKind::InvalidArgument, "offset is {}: it cannot be negative", query.offset);
    std::vector<Term> terms = parse_filter(query.filter);
    std::vector<OrderKey> order;
    for (const auto& o : query.order_by) order.push_back(parse_order_key(o));
    // Every metric/param/tag term and order key is one join; SQLite joins at most 64 tables (three
    // are taken by runs, experiments and parents). Refuse clearly rather than fail inside SQLite.
    size_t joins = 0;
    for (const auto& t : terms) joins += t.entity != Entity::Attribute;
    for (const auto& o : order) joins += o.entity != Entity::Attribute;
    if (joins > kMaxSearchJoins)
        throw_error(ErrorKind::InvalidArgument,
                    "this search compares or orders by {} metric, param or tag keys; one search reads at most {}: "
                    "narrow the filter or order_by, or filter the rest in pandas",
                    joins, kMaxSearchJoins);
    if (query.experiments.size() > kMaxSearchExperiments)
        throw_error(ErrorKind::InvalidArgument,
                    "this search names {} experiments; one search takes at most {}: search fewer at a time",
                    query.experiments.size(), kMaxSearchExperiments);

    auto& db = ws_.db();
    auto guard = db.lock();
    Builder b{db.dialect()};

    // Experiments resolve to ids first, so a misspelt name is an error rather than an empty result.
    std::vector<int64_t> experiment_ids;
    for (const auto& name : query.experiments) experiment_ids.push_back(experiment_pk(name, false));
    std::string experiment_set;
    if (!experiment_ids.empty()) {
        experiment_set = "(";
        for (size_t i = 0; i < experiment_ids.size(); ++i) experiment_set += i ? ", ?" : "?";
        experiment_set += ")";
        b.where += " AND r.experiment_id IN " + experiment_set;
        b.where_binds.insert(b.where_binds.end(), experiment_ids.begin(), experiment_ids.end());
    }

    // Filter terms on metrics, params and tags are inner joins on (run, key): the indexed tables
    // hold one row per run and key, so their cost does not depend on metric history length. Each
    // names the experiments searched, if any, so an (experiment, key, value) index reads only their
    // rows; a search of every experiment goes by (key, value).
    std::map<std::string, std::string> metric_alias; // metric key -> alias of its inner join
    for (const auto& t : terms) {
        if (t.entity == Entity::Attribute && t.key == "parent_id" && t.op == "=") {
            // Children of one run: through the parent index rather than a scan.
            b.where += " AND r.parent_id = (SELECT id FROM tracking_runs WHERE run_id = ?)";
            b.where_binds.emplace_back(std::get<std::string>(t.value));
            continue;
        }
        if (t.entity == Entity::Attribute) {
            b.where += " AND ";
            b.comparison(b.where, b.where_binds, attribute_column(t.key), t);
            continue;
        }
        const char* table = t.entity == Entity::Metric ? "tracking_latest_metrics"
                            : t.entity == Entity::Param ? "tracking_params"
                                                        : "tracking_tags";
        std::string a = fmt::format("f{}", b.alias++);
        b.joins += fmt::format(" JOIN {0} {1} ON {1}.run = r.id AND ", table, a);
        if (!experiment_ids.empty()) {
            b.joins += a + ".experiment IN " + experiment_set + " AND ";
            b.join_binds.insert(b.join_binds.end(), experiment_ids.begin(), experiment_ids.end());
        }
        b.joins += a + ".key = ? AND ";
        b.join_binds.emplace_back(t.key);
        b.comparison(b.joins, b.join_binds, a + ".value", t);
        if (t.entity == Entity::Metric) metric_alias.emplace(t.key, a);
    }

    // Order: missing values (and NaN metrics) sort last in either direction, like MLflow; ties
    // break on start_time DESC (unless ordered by it) and then run_id.
    bool has_start = false;
    for (const auto& o : order) {
        std::string dir = o.ascending ? " ASC" : " DESC";
        if (!b.order.empty()) b.order += ", ";
        if (o.entity == Entity::Attribute) {
            const char* col = attribute_column(o.key);
            if (o.key == "start_time") has_start = true;
            b.order += fmt::format("({} IS NULL), {}{}", col, col, dir);
            continue;
        }
        if (o.entity == Entity::Metric) {
            if (auto it = metric_alias.find(o.key); it != metric_alias.end()) {
                // Already an inner join with a comparison: every row has a non-NaN value.
                b.order += it->second + ".value" + dir;
                continue;
            }
            std::string a = fmt::format("o{}", b.alias++);
            b.joins += fmt::format(" LEFT JOIN tracking_latest_metrics {} ON {}.run = r.id AND {}.key = ?", a, a, a);
            b.join_binds.emplace_back(o.key);
            b.order += fmt::format("(CASE WHEN {0}.run IS NULL THEN 2 WHEN {0}.value IS NULL THEN 1 ELSE 0 END), "
                                   "{0}.value{1}",
                                   a, dir);
            continue;
        }
        const char* table = o.entity == Entity::Param ? "tracking_params" : "tracking_tags";
        std::string a = fmt::format("o{}", b.alias++);
        b.joins += fmt::format(" LEFT JOIN {} {} ON {}.run = r.id AND {}.key = ?", table, a, a, a);
        b.join_binds.emplace_back(o.key);
        b.order += fmt::format("({0}.run IS NULL), {0}.value{1}", a, dir);
    }
    if (!has_start) b.order += std::string(b.order.empty() ? "" : ", ") + "r.start_time DESC";
    b.order += ", r.run_id ASC";

    std::string sql = "SELECT r.run_id, r.name, e.name, r.status, r.start_time, r.end_time, r.\"user\", r.source, "
                      "r.git_commit, r.git_dirty, p.run_id, r.error, r.id FROM tracking_runs r "
                      "JOIN tracking_experiments e ON e.id = r.experiment_id" +
                      b.joins + " LEFT JOIN tracking_runs p ON p.id = r.parent_id WHERE 1 = 1" + b.where +
                      " ORDER BY " + b.order + " LIMIT ? OFFSET ?";
    auto st = db.prepare(sql);
    int index = 0;
    auto bind = [&](const Bind& v) {
        ++index;
        if (auto* d = std::get_if<double>(&v)) st.bind(index, *d);
        else if (auto* i = std::get_if<int64_t>(&v)) st.bind(index, *i);
        else st.bind(index, std::get<std::string>(v));
    };
    for (const auto& v : b.join_binds) bind(v);
    for (const auto& v : b.where_binds) bind(v);
    st.bind(++index, query.max_results);
    st.bind(++index, query.offset);

    std::vector<Run> runs;
    std::vector<int64_t> pks;
    while (st.step()) {
        Run run;
        run.info.id = st.text(0);
        run.info.name = st.text(1);
        run.info.experiment = st.text(2);
        run.info.status = st.text(3);
        run.info.start_time = st.int64(4);
        run.info.end_time = st.opt_int64(5);
        run.info.user = st.text(6);
        run.info.source = st.text(7);
        run.info.git_commit = st.text(8);
        if (auto d = st.opt_int64(9)) run.info.git_dirty = *d != 0;
        run.info.parent_id = st.opt_text(10);
        run.info.error = st.opt_text(11);
        pks.push_back(st.int64(12));
        runs.push_back(std::move(run));
    }
    load_data(runs, pks);
    return runs;
}

} // namespace keel::tracking

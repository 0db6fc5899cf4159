// bindings/bind_plugins.cpp
#include "bindings.hpp"

#include "arrow_input.hpp"
#include "plugin_values.hpp"
#include "records.hpp"
#include "request_fields.hpp"

#include "keel/common/error.hpp"
#include "keel/plugins/host.hpp"
#include "keel/plugins/quality.hpp"
#include "keel/plugins/quality_input.hpp"
#include "keel/features/input.hpp"
#include "keel/features/store.hpp"
#include "keel/plugins/quality_store.hpp"
#include "keel/plugins/quality_target.hpp"
#include "keel/storage/workspace.hpp"
#include "keel/plugins/router.hpp"
#include "keel/plugins/schema.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <optional>

namespace py = pybind11;
using namespace keel::plugins;

namespace keel::bindings {

// Python data <-> plugins::Value (dicts keep their order; numpy scalars become numbers).
Value value_from_py(py::handle h, int depth) {
    if (depth > 32) throw_error(ErrorKind::InvalidArgument, "plugin argument nested deeper than 32 levels");
    if (h.is_none()) return Value{};
    if (py::isinstance<py::bool_>(h)) return Value(h.cast<bool>());
    if (py::isinstance<py::int_>(h)) return Value(h.cast<int64_t>());
    if (py::isinstance<py::float_>(h)) return Value(h.cast<double>());
    if (py::isinstance<py::str>(h)) return Value(h.cast<std::string>());
    if (py::isinstance<py::dict>(h)) {
        Value::Map map;
        for (auto item : h.cast<py::dict>()) map.emplace_back(py::str(item.first).cast<std::string>(), value_from_py(item.second, depth + 1));
        return Value(std::move(map));
    }
    if (py::isinstance<py::list>(h) || py::isinstance<py::tuple>(h) || py::isinstance<py::set>(h) ||
        py::isinstance<py::frozenset>(h)) {
        Value::Array arr;
        for (auto item : h) arr.push_back(value_from_py(item, depth + 1));
        return Value(std::move(arr));
    }
    // numpy scalars and arrays (and pandas Series): tolist() gives Python numbers, strs and lists.
    if (py::hasattr(h, "dtype") && py::hasattr(h, "tolist")) return value_from_py(h.attr("tolist")(), depth + 1);
    if (py::hasattr(h, "__index__")) return Value(py::int_(py::reinterpret_borrow<py::object>(h)).cast<int64_t>());
    if (py::hasattr(h, "__float__")) return Value(py::float_(py::reinterpret_borrow<py::object>(h)).cast<double>());
    if (py::hasattr(h, "tolist")) return value_from_py(h.attr("tolist")(), depth + 1);
    return Value(py::str(h).cast<std::string>());
}

py::object value_to_py(const Value& v) {
    return std::visit(
        [](const auto& x) -> py::object {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) return py::none();
            else if constexpr (std::is_same_v<T, bool>) return py::bool_(x);
            else if constexpr (std::is_same_v<T, int64_t>) return py::int_(x);
            else if constexpr (std::is_same_v<T, double>) return py::float_(x);
            else if constexpr (std::is_same_v<T, std::string>) return py::str(x);
            else if constexpr (std::is_same_v<T, Value::Array>) {
                py::list out;
                for (const auto& e : x) out.append(value_to_py(e));
                return out;
            } else {
                py::dict out;
                for (const auto& [k, e] : x) out[py::str(k)] = value_to_py(e);
                return out;
            }
        },
        v.data);
}

namespace {

// A request dict as borrowed fields; strings are copied into `storage` first.
struct PyRequest {
    std::vector<std::string> storage;  // only for values that are neither str nor number
    std::vector<Field> fields;
    explicit PyRequest(const py::dict& d) {
        storage.reserve(d.size());
        fields.reserve(d.size());
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(d.ptr(), &pos, &key, &value)) {
            // Borrowed UTF-8 views: the dict keeps its str keys and values alive for the call.
            Field f = request_field(key, value, storage);
            fields.push_back(f);
        }
    }
};

// A batch for quality rules: Arrow data (keel/_data.py prepares it from pandas, numpy, dicts and
// rows) imported as rules see it (plugins/quality_input.hpp), or a feature view's prepared ingest
// batch (columns already typed as the view declares them), borrowed while `owner` keeps it alive.
struct PyBatch {
    std::optional<QualityBatch> imported;
    py::object owner;
    Batch batch;
    explicit PyBatch(const py::handle& data) {
        if (py::isinstance<features::InputBatch>(data)) {
            owner = py::reinterpret_borrow<py::object>(data);
            batch = checkable_columns(data.cast<const features::InputBatch&>().batch);
            return;
        }
        ImportedBatch in = import_arrow_object(data, quality_import_options());
        imported = quality_batch(std::move(in));
        batch = imported->batch;
    }
};

// The quality store of a workspace, with what its rules need of the feature store: a target
// view's columns (checked at add_rule) and PII masking for the caller's role (the store's salt).
struct PyQualityStore {
    std::shared_ptr<storage::Workspace> ws;
    QualityStore store;
    std::shared_ptr<features::FeatureStore> fs;
    Masker mask;
    explicit PyQualityStore(std::shared_ptr<storage::Workspace> w) : ws(std::move(w)), store(*ws) {}
    std::mutex fs_mutex;  // run() builds the feature store without the GIL
    TargetColumns target(const std::string& ref) {
        std::lock_guard lock(fs_mutex);
        if (!fs) {
            fs = std::make_shared<features::FeatureStore>(ws);
            mask = [f = fs.get()](std::string_view v) { return f->mask_string(v); };
        }
        return target_columns(*fs, ref, ws->role());
    }
    //! What a reader without a grant sees instead of a stored text quoting raw values of the PII
    //! columns `raw_pii` (comma-separated), or "" when the workspace's role may read them all.
    std::string redaction(const std::string& ref, const std::string& raw_pii) {
        if (raw_pii.empty()) return "";
        auto it = masked_by_target.find(ref);
        if (it == masked_by_target.end()) it = masked_by_target.emplace(ref, target(ref).masked).first;
        std::string hidden;
        size_t start = 0;
        while (start <= raw_pii.size()) {
            size_t comma = std::min(raw_pii.find(',', start), raw_pii.size());
            std::string col = raw_pii.substr(start, comma - start);
            if (std::find(it->second.begin(), it->second.end(), col) != it->second.end())
                hidden += (hidden.empty() ? "" : ", ") + col;
            start = comma + 1;
        }
        if (hidden.empty()) return "";
        return fmt::format("(hidden: recorded with raw values of PII column(s) {}, which role '{}' may not read)", hidden,
                           ws->role());
    }
    //! Issues as the workspace's role may see them: every issue crossing to Python goes through here
    //! (also those a rule removal or a passing batch closes, which another role may have opened).
    std::vector<DataIssue> visible(std::vector<DataIssue> issues) {
        masked_by_target.clear();
        for (auto& d : issues)
            if (std::string note = redaction(d.target, d.raw_pii); !note.empty()) d.message = note;
        return issues;
    }
    //! History rows likewise: a row quoting unreadable raw values keeps its status, not what it saw.
    std::vector<StoredResult> visible(const std::string& target, std::vector<StoredResult> rows) {
        masked_by_target.clear();
        for (auto& r : rows)
            if (std::string note = redaction(target, r.raw_pii); !note.empty()) {
                r.observed_json = "null";
                r.detail_json = "";
                r.message = note;
            }
        return rows;
    }
    std::map<std::string, std::vector<std::string>> masked_by_target;  //!< per read call
};

// A rule's result stays a dict (QualityReport.results, its DataFrame and HTML table read them).
const auto kRuleResultFields = fields(
    field("rule", &RuleResult::rule), field("column", &RuleResult::column), field("severity", &RuleResult::severity),
    field("status", &RuleResult::status), field("observed", [](const RuleResult& r) { return value_to_py(r.observed); }),
    field("expectation", &RuleResult::expectation), field("message", &RuleResult::message),
    field("detail", [](const RuleResult& r) { return value_to_py(r.detail); }),
    field("rule_index", &RuleResult::rule_index), field("raw_pii", &RuleResult::raw_pii));

std::vector<Rule> rules_from_py(const py::list& rules) {
    std::vector<Rule> rs;
    for (auto item : rules) {
        auto t = item.cast<py::tuple>();
        rs.push_back({t[0].cast<std::string>(), value_from_py(t[1]), t[2].cast<std::string>(), t[3].cast<std::string>()});
    }
    return rs;
}

// A plugin's status, the host's limits and a router's counters cross as dicts (keel.plugins and the
// endpoint's stats() return them as they are).
const auto kStatusFields =
    fields(field("path", &PluginStatus::path), field("version", &PluginStatus::version),
           field("reloads_refused", &PluginStatus::reloads_refused), field("last_error", &PluginStatus::last_error));
const auto kLimitFields =
    fields(field("call_instructions", &Limits::call_instructions), field("load_instructions", &Limits::load_instructions),
           field("memory_bytes", &Limits::memory_bytes), field("string_bytes", &Limits::string_bytes),
           field("call_ms", &Limits::call_ms), field("reload_check_ms", &Limits::reload_check_ms));
const auto kRouterStatsFields = fields(
    field("decisions", &RouterStats::decisions), field("fallbacks", &RouterStats::fallbacks),
    field("errors", &RouterStats::errors), field("unknown_variant", &RouterStats::unknown_variant),
    field("budget", &RouterStats::budget), field("memory", &RouterStats::memory), field("data_issue", &RouterStats::data_issue),
    field("unavailable", &RouterStats::unavailable),
    field("served", [](const RouterStats& s) {
        py::dict served;
        for (const auto& [name, count] : s.served) served[py::str(name)] = count;
        return served;
    }),
    field("last_error", &RouterStats::last_error));

py::tuple decision_to_py(const Router& r, const Decision& d) {
    py::list shadows;
    for (int i = 0; i < 64; ++i)
        if (d.shadows & (uint64_t(1) << i)) shadows.append(r.variant_name(i));
    return py::make_tuple(r.variant_name(d.variant), shadows, std::string(fallback_name(d.fallback)));
}

} // namespace

py::dict router_stats_dict(const RouterStats& s) { return record_dict(s, kRouterStatsFields); }

// What the quality store keeps crosses as read-only records (keel.quality reads their attributes;
// a data issue and a history row also read like the dicts they used to be: issue["target"]).
static void bind_quality_records(py::module_& m) {
    auto issue = bind_record<DataIssue>(m, "DataIssueRecord", "A data issue: a rule failing on a target (read-only).",
        fields(field("id", &DataIssue::id), field("target", &DataIssue::target), field("rule", &DataIssue::rule),
               field("column", &DataIssue::column), field("severity", &DataIssue::severity),
               field("message", &DataIssue::message, "hidden when it quotes PII the caller's role may not read"),
               field("opened_at", &DataIssue::opened_at, "ms since the epoch"),
               field("closed_at", &DataIssue::closed_at, "ms since the epoch; None while open")));
    add_mapping_access(issue);
    auto rule = bind_record<StoredRule>(m, "QualityRuleRecord", "A rule attached to a target (read-only).",
        fields(field("id", &StoredRule::id), field("target", &StoredRule::target), field("plugin", &StoredRule::plugin),
               field("args_json", &StoredRule::args_json, "the plugin's arguments as JSON"),
               field("severity", &StoredRule::severity), field("name", &StoredRule::name),
               field("created_at", &StoredRule::created_at, "ms since the epoch")));
    add_mapping_access(rule);
    auto result = bind_record<StoredResult>(m, "QualityResultRecord", "One recorded rule result of a batch (read-only).",
        fields(field("batch", &StoredResult::batch), field("created_at", &StoredResult::created_at, "ms since the epoch"),
               field("rows", &StoredResult::rows), field("accepted", &StoredResult::accepted),
               field("rule", &StoredResult::rule), field("column", &StoredResult::column),
               field("severity", &StoredResult::severity), field("status", &StoredResult::status),
               field("observed_json", &StoredResult::observed_json, "what the rule observed, as JSON"),
               field("expectation", &StoredResult::expectation), field("message", &StoredResult::message),
               field("detail_json", &StoredResult::detail_json, "its structured details as JSON ('' when none)")));
    add_mapping_access(result);
}

void bind_plugins(py::module_& m) {
    m.def("plugins_bucket", [](py::handle key, const std::string& salt) {
        if (py::isinstance<py::int_>(key) || (py::hasattr(key, "__index__") && !py::isinstance<py::float_>(key)))
            return bucket(py::int_(py::reinterpret_borrow<py::object>(key)).cast<int64_t>(), salt);
        if (py::isinstance<py::float_>(key)) {
            double d = key.cast<double>();
            if (std::floor(d) == d && std::fabs(d) < 9.0e15) return bucket(int64_t(d), salt);
            char buf[40];
            int n = std::snprintf(buf, sizeof buf, "%.17g", d);
            return bucket(std::string_view(buf, size_t(n)), salt);
        }
        return bucket(py::str(key).cast<std::string>(), salt);
    }, py::arg("key"), py::arg("salt") = "");
    m.def("plugins_set_search_path", &set_search_path);
    m.def("plugins_search_path", &search_path);
    m.def("plugins_resolve", &resolve_plugin);
    m.def("plugins_call", [](const std::string& ref, const std::string& entry, py::list args) {
        std::vector<Value> values;
        for (auto a : args) values.push_back(value_from_py(a));
        Value out;
        {
            py::gil_scoped_release release;
            out = Host::for_thread().call(ref, entry, values);
        }
        return value_to_py(out);
    });
    m.def("plugins_eval_file", [](const std::string& ref) {
        Value out;
        {
            py::gil_scoped_release release;
            out = Host::for_thread().eval_file(ref);
        }
        return value_to_py(out);
    });
    m.def("plugins_schema", [](const std::string& ref, const std::string& entry) {
        Value v;
        {
            py::gil_scoped_release release;
            v = Host::for_thread().schema(ref, entry);
        }
        return value_to_py(v);
    });
    m.def("plugins_check_arguments", [](const std::string& ref, const std::string& entry, py::object args) {
        Value v = args.is_none() ? Value(Value::Map{}) : value_from_py(args);
        py::gil_scoped_release release;
        check_arguments(Host::for_thread(), ref, entry, v);
    }, "Checks arguments against the schema the plugin declares for entry (InvalidArgument naming the fault).");
    m.def("plugins_needs", [](const std::string& ref, const std::string& entry) {
        py::gil_scoped_release release;
        return plugin_needs(Host::for_thread(), ref, entry);
    });
    m.def("plugins_status", [](const std::string& ref) { return record_dict(Host::for_thread().status(ref), kStatusFields); });
    m.def("plugins_limits", []() { return record_dict(Host::for_thread().limits(), kLimitFields); });
    m.def("plugins_set_limits", [](py::dict given) {
        Limits l = Host::for_thread().limits();
        assign_fields(l, given, kLimitFields, "plugin limit");
        Host::for_thread().set_limits(l);
    }, "Limits of this thread's plugin host.");
    m.def("plugins_memory_used", []() { return Host::for_thread().memory_used(); });

    m.def("quality_run", [](py::object data, py::list rules, py::object context) {
        PyBatch pb(data);
        std::vector<Rule> rs = rules_from_py(rules);
        Value ctx = context.is_none() ? Value(Value::Map{}) : value_from_py(context);
        std::vector<RuleResult> results;
        {
            py::gil_scoped_release release;
            results = run_rules(pb.batch, rs, ctx);
        }
        return dict_list(results, kRuleResultFields);
    });
    m.def("quality_reference_columns", [](py::list rules) {
        std::vector<Rule> rs = rules_from_py(rules);
        py::gil_scoped_release release;
        return reference_columns(rs, Host::for_thread());
    }, "Columns the rules' plugins want a reference profile of (needs = {\"reference_profile\"}).");
    m.def("quality_profile", [](py::object data, int bins) {
        PyBatch pb(data);
        py::dict out;
        for (const auto& c : pb.batch.columns) {
            Value v;
            {
                py::gil_scoped_release release;
                v = profile_column(c, pb.batch.rows, bins);
            }
            out[py::str(c.name)] = value_to_py(v);
        }
        return out;
    });
    m.def("quality_psi", [](py::object data, py::object profile) {
        PyBatch pb(data);
        if (pb.batch.columns.empty())
            throw_error(ErrorKind::InvalidArgument, "the batch has no column a rule can read: binary, nested and vector "
                                                    "columns have no statistics");
        Value p = value_from_py(profile);
        py::gil_scoped_release release;
        return psi(pb.batch.columns.at(0), pb.batch.rows, p);
    });

    bind_quality_records(m);
    py::class_<PyQualityStore, std::shared_ptr<PyQualityStore>>(m, "QualityStore")
        .def(py::init<std::shared_ptr<storage::Workspace>>())
        .def("add_rule", [](PyQualityStore& s, const std::string& target, const std::string& plugin, py::dict args,
                            const std::string& args_json, const std::string& severity, const std::string& name) {
            Rule rule{plugin, value_from_py(args), severity, name};
            py::gil_scoped_release release;
            TargetColumns t = s.target(target);
            validate_rule(rule, t.columns, t.label, Host::for_thread());  // nothing is saved when it throws
            return s.store.add_rule(target, plugin, args_json, severity, name);
        }, "Validates the rule against its plugin's schema and the target's columns, then saves it.")
        .def("run", [](PyQualityStore& s, const std::string& target, py::object data, py::list rules,
                       py::object context) {
            PyBatch pb(data);
            std::vector<Rule> rs = rules_from_py(rules);
            Value ctx = context.is_none() ? Value(Value::Map{}) : value_from_py(context);
            std::vector<RuleResult> results;
            {
                py::gil_scoped_release release;
                mark_pii(pb.batch, s.target(target), s.mask);
                results = run_rules(pb.batch, rs, ctx);
            }
            return dict_list(results, kRuleResultFields);
        }, "Runs rules on a batch of the target, PII columns masked for the workspace's role.")
        .def("profile", [](PyQualityStore& s, const std::string& target, py::object data, int bins) {
            PyBatch pb(data);
            std::vector<std::pair<std::string, Value>> profiles;
            {
                py::gil_scoped_release release;
                mark_pii(pb.batch, s.target(target), s.mask);
                for (const auto& c : pb.batch.columns) profiles.emplace_back(c.name, profile_column(c, pb.batch.rows, bins));
            }
            py::dict out;
            for (const auto& [name, v] : profiles) out[py::str(name)] = value_to_py(v);
            return out;
        }, "Reference profiles of a batch of the target; those of PII columns hold masked values.")
        .def("rules", [](PyQualityStore& s, const std::string& target) { return s.store.rules(target); })
        .def("remove_rule", [](PyQualityStore& s, const std::string& target, int64_t id) {
            return s.visible(s.store.remove_rule(target, id));
        }, "Removes a rule; returns the issues it opened, closed with it.")
        .def("record", [](PyQualityStore& s, const std::string& target, int64_t rows, bool accepted, py::list results) {
            std::vector<StoredResult> rs;
            for (auto item : results) {
                auto d = item.cast<py::dict>();
                StoredResult r;
                r.rule = d["rule"].cast<std::string>();
                r.column = d["column"].cast<std::string>();
                r.severity = d["severity"].cast<std::string>();
                r.status = d["status"].cast<std::string>();
                r.observed_json = d["observed"].cast<std::string>();
                r.expectation = d["expectation"].cast<std::string>();
                r.message = d["message"].cast<std::string>();
                if (d.contains("detail")) r.detail_json = d["detail"].cast<std::string>();
                if (d.contains("rule_id") && !d["rule_id"].is_none()) r.rule_id = d["rule_id"].cast<int64_t>();
                if (d.contains("raw_pii")) r.raw_pii = d["raw_pii"].cast<std::string>();
                rs.push_back(std::move(r));
            }
            RecordOutcome o;
            {
                py::gil_scoped_release release;
                o = s.store.record(target, rows, accepted, rs);
            }
            return py::make_tuple(o.batch, s.visible(std::move(o.opened)), s.visible(std::move(o.closed)));
        })
        .def("history", [](PyQualityStore& s, const std::string& target, int64_t limit) {
            return s.visible(target, s.store.history(target, limit));
        }, "Recorded results, newest first.")
        .def("issues", [](PyQualityStore& s, const std::string& target, bool include_closed) {
            return s.visible(s.store.issues(target, include_closed));
        })
        .def("issues_affecting", [](PyQualityStore& s, const std::string& ref) {
            return s.visible(s.store.issues_affecting(ref));
        }, "Open issues on ref or anything upstream of it.")
        .def("close_issue", [](PyQualityStore& s, int64_t id) { return s.visible({s.store.close_issue(id)}).front(); })
        .def("set_profile", [](PyQualityStore& s, const std::string& target, const std::string& column,
                               const std::string& json) { s.store.set_profile(target, column, json); })
        .def("profiles", [](PyQualityStore& s, const std::string& target) { return s.store.profiles(target); });

    py::class_<Router, std::shared_ptr<Router>>(m, "Router")
        .def(py::init([](const std::string& plugin, const std::vector<std::pair<std::string, double>>& variants,
                         const std::string& default_variant, py::object config, const std::string& name,
                         const std::vector<std::string>& issues) {
                 RouterConfig c;
                 c.plugin = plugin;
                 for (const auto& [n, w] : variants) c.variants.push_back({n, w});
                 c.default_variant = default_variant;
                 c.config = config.is_none() ? Value(Value::Map{}) : value_from_py(config);
                 c.name = name;
                 c.issues = issues;
                 return std::make_shared<Router>(std::move(c));
             }),
             py::arg("plugin"), py::arg("variants"), py::arg("default") = "", py::arg("config") = py::none(),
             py::arg("name") = "", py::arg("issues") = std::vector<std::string>{})
        .def("route", [](Router& r, py::dict request) {
            // The GIL is released: a hostile plugin may run up to its time limit, and other Python
            // threads must not stall meanwhile. The fields borrow from a private copy of the dict,
            // so no other thread can free the strings they point into.
            py::dict own = py::reinterpret_steal<py::dict>(PyDict_Copy(request.ptr()));
            if (!own) throw py::error_already_set();
            PyRequest req(own);
            Decision d;
            {
                py::gil_scoped_release release;
                d = r.route(req.fields);
            }
            return decision_to_py(r, d);
        }, "(variant, shadows, fallback) for one request dict.")
        .def("route_many", [](Router& r, py::list requests) {
            std::vector<PyRequest> reqs;
            reqs.reserve(requests.size());
            for (auto item : requests) reqs.emplace_back(item.cast<py::dict>());
            std::vector<Decision> out(reqs.size());
            {
                py::gil_scoped_release release;
                for (size_t i = 0; i < reqs.size(); ++i) out[i] = r.route(reqs[i].fields);
            }
            py::list result;
            for (const auto& d : out) result.append(decision_to_py(r, d));
            return result;
        })
        .def("set_weights", &Router::set_weights)
        .def("set_issues", &Router::set_issues)
        .def_property_readonly("variants", [](const Router& r) {
            std::vector<std::pair<std::string, double>> out;
            for (const auto& v : r.config().variants) out.emplace_back(v.name, v.weight);
            return out;
        })
        .def_property_readonly("default", [](const Router& r) {
            auto c = r.config();
            return c.default_variant.empty() ? c.variants.front().name : c.default_variant;
        })
        .def_property_readonly("plugin", [](const Router& r) { return r.config().plugin; })
        .def("stats", [](const Router& r) { return router_stats_dict(r.stats()); });
}

} // namespace keel::bindings

// core/include/keel/plugins/quality_store.hpp
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace keel::storage {
class Workspace;
struct ModuleSchema;
}

namespace keel::plugins {

//! A rule attached to a target (a lineage ref such as `feature_view:player_activity`). Arguments
//! are stored as JSON text written and read by the caller.
struct StoredRule {
    int64_t id = 0;
    std::string target;
    std::string plugin;
    std::string args_json;
    std::string severity;
    std::string name;
    int64_t created_at = 0;
};

//! One rule result of one batch, as stored in the quality history.
struct StoredResult {
    std::string rule;
    std::string column;
    std::string severity;
    std::string status;
    std::string observed_json;
    std::string expectation;
    std::string message;
    std::string detail_json;  //!< structured details (e.g. not_allowed values), "" when none
    int64_t rule_id = 0;      //!< the stored rule that gave it (0: unknown); its issue closes with it
    std::string raw_pii;      //!< PII columns (comma-separated) whose raw values it may quote
    // Filled in by the store:
    int64_t batch = 0;
    int64_t rows = 0;
    bool accepted = false;
    int64_t created_at = 0;
};

//! An open (or closed) data issue: a rule failing on a target. Everything downstream of the
//! target in the lineage graph reports it.
struct DataIssue {
    int64_t id = 0;
    std::string target;
    std::string rule;
    std::string column;
    std::string severity;
    std::string message;
    int64_t opened_at = 0;
    std::optional<int64_t> closed_at;
    std::string raw_pii;  //!< PII columns (comma-separated) whose raw values the message may quote
};

//! What recording a batch changed.
struct RecordOutcome {
    int64_t batch = 0;
    std::vector<DataIssue> opened;
    std::vector<DataIssue> closed;
};

//! Quality rules, results, reference profiles and data issues in the workspace (plugins_* tables).
class QualityStore {
public:
    explicit QualityStore(storage::Workspace& ws);
    //! Its tables' migrations, applied when it is constructed (`keel admin migrate` lists them).
    static const storage::ModuleSchema& schema();

    int64_t add_rule(const std::string& target, const std::string& plugin, const std::string& args_json,
                     const std::string& severity, const std::string& name);
    std::vector<StoredRule> rules(const std::string& target);
    //! Removes a rule and closes the data issues it opened (returned). NotFound when the target has
    //! no such rule.
    std::vector<DataIssue> remove_rule(const std::string& target, int64_t id);

    //! Stores one batch's results. A result with status fail or error opens an issue on the target
    //! (unless one is open for the same rule and column) and tags the lineage node; a pass closes
    //! the open issue of its rule and column.
    RecordOutcome record(const std::string& target, int64_t rows, bool accepted, const std::vector<StoredResult>& results);
    //! Newest first.
    std::vector<StoredResult> history(const std::string& target, int64_t limit = 1000);

    std::vector<DataIssue> issues(const std::string& target, bool include_closed = false);
    //! Open issues on `ref` itself or on anything upstream of it in the lineage graph.
    std::vector<DataIssue> issues_affecting(const std::string& ref);
    //! Closes an issue by hand (e.g. after a backfill). NotFound when it is not open.
    DataIssue close_issue(int64_t id);

    void set_profile(const std::string& target, const std::string& column, const std::string& profile_json);
    //! column -> profile JSON
    std::vector<std::pair<std::string, std::string>> profiles(const std::string& target);

private:
    storage::Workspace& ws_;
};

} // namespace keel::plugins

// core/include/keel/plugins/quality.hpp
#pragma once

#include "keel/common/columns.hpp"
#include "keel/plugins/host.hpp"
#include "keel/plugins/value.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::plugins {

// Rules check the core's one column view (keel/common/columns.hpp): values as the feature store
// holds them, one validity byte per row (NaN floats count as nulls too), and for PII columns the
// masker (`mask`) and whether the caller's role may not read them (`masked`). Profiles of a PII
// column always hold masked values (so stored references never keep raw ones and PSI compares
// masked to masked); when `masked`, every helper that returns values gives masked text instead
// (not_allowed) or nil (min, max, mean, stddev, quantile).
using keel::ColumnView;
using keel::Masker;
using Batch = keel::BatchView;

//! A data-quality rule: a plugin defining check(batch, ctx), its arguments (ctx.args) and the
//! severity of a failure ("error" rejects the batch, "warn" is stored).
struct Rule {
    std::string plugin;
    Value args;
    std::string severity = "error";
    std::string name;  //!< shown in results; defaults to the plugin's file stem
};

//! One result of one rule. status is "pass", "warn", "fail" or "error" (the rule itself failed).
struct RuleResult {
    std::string rule;
    std::string column;
    std::string severity;
    std::string status;
    Value observed;
    std::string expectation;
    std::string message;
    Value detail;           //!< structured details a rule adds (e.g. allowed_values' not_allowed list)
    size_t rule_index = 0;  //!< which of the rules passed to run_rules gave this result
    //! PII columns whose raw values the rule was given (the caller's role holds a grant): whoever
    //! reads the stored result later without that grant sees it redacted.
    std::vector<std::string> raw_pii;
};

//! Runs every rule on the batch, each in the sandbox of `host`. `context` (a map) becomes part of
//! ctx: now (seconds since the epoch), references (column -> profile), target. Every rule's
//! arguments are checked first (validate_rule, the target's columns unknown): a refused argument
//! throws InvalidArgument and no rule runs. A rule whose plugin does not load, errors or runs over
//! budget yields status "error" naming the file and line; it never passes silently.
std::vector<RuleResult> run_rules(const Batch& batch, const std::vector<Rule>& rules, const Value& context,
                                  Host& host);
inline std::vector<RuleResult> run_rules(const Batch& batch, const std::vector<Rule>& rules, const Value& context) {
    return run_rules(batch, rules, context, Host::for_thread());
}

//! Checks a rule against its plugin's schema before it is saved or run: names, required arguments,
//! types, ranges and choices (check_arguments, schema.hpp), the plugin's `needs`, then the arguments
//! naming data: type "column" (must be one of `columns`), "columns" (a list of them) and "pattern"
//! (an RE2 regular expression, compiled now). `columns` empty means the target's columns are
//! unknown and not checked; `target` names it in messages. Throws InvalidArgument naming the
//! plugin, the argument, the value and what was expected (the columns there are, RE2's reason);
//! PluginError (or NotFound) when the plugin does not load or declares a malformed schema.
void validate_rule(const Rule& rule, const std::vector<std::string>& columns, std::string_view target, Host& host);

//! The columns the rules want a reference profile of: the values of the "column" and "columns"
//! arguments of every rule whose plugin declares `needs = {"reference_profile"}` (each once, in
//! rule order). A store records the first accepted batch's profiles of those it has none of. Rules
//! whose plugin does not load need nothing (running them reports the error).
std::vector<std::string> reference_columns(const std::vector<Rule>& rules, Host& host);

//! Reference profile of a column for PSI: {kind="numeric", edges={...}, shares={...}} from
//! quantile bins, or {kind="categorical", shares={value=share}} for strings and bools. A PII column
//! (column.mask set) gets a categorical profile over masked values, marked masked=true.
Value profile_column(const ColumnView& column, size_t rows, int bins = 10);
//! Population stability index of `column` (`rows` long) against a profile from profile_column.
double psi(const ColumnView& column, size_t rows, const Value& profile);

} // namespace keel::plugins

// core/plugins/quality_schema.cpp: checks a rule's data-naming arguments (columns, patterns) against
// its plugin's declared schema before the rule is saved, so a typo is refused at add_rule instead
// of blocking every later ingest.
#include "keel/common/error.hpp"
#include "keel/plugins/quality.hpp"
#include "pattern.hpp"

#include <algorithm>

namespace keel::plugins {

namespace {

std::string file_of(const std::string& plugin) {
    auto slash = plugin.find_last_of('/');
    return slash == std::string::npos ? plugin : plugin.substr(slash + 1);
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

void check_column(const std::string& file, const std::string& arg, const Value& v, const std::vector<std::string>& columns,
                  std::string_view target) {
    if (!v.is_string())
        throw_error(ErrorKind::InvalidArgument, "{} argument '{}' must be a column name (a string)", file, arg);
    if (columns.empty() || std::find(columns.begin(), columns.end(), v.str()) != columns.end()) return;
    throw_error(ErrorKind::InvalidArgument, "{} argument '{}' names column '{}', which {} does not have (columns: {})",
                file, arg, v.str(), target, joined(columns));
}

} // namespace

void validate_rule(const Rule& rule, const std::vector<std::string>& columns, std::string_view target, Host& host) {
    Value schema = host.schema(rule.plugin, "check");
    if (!schema.is_map()) return;
    const std::string file = file_of(rule.plugin);
    for (const auto& [arg, field] : schema.map()) {
        const Value* type = field.find("type");
        const Value* value = rule.args.find(arg);
        if (!type || !type->is_string() || !value || value->is_null()) continue;
        const std::string& kind = type->str();
        if (kind == "column") {
            check_column(file, arg, *value, columns, target);
        } else if (kind == "columns") {
            if (!value->is_array())
                throw_error(ErrorKind::InvalidArgument, "{} argument '{}' must be a list of column names", file, arg);
            for (const auto& v : value->array()) check_column(file, arg, v, columns, target);
        } else if (kind == "pattern") {
            if (!value->is_string())
                throw_error(ErrorKind::InvalidArgument, "{} argument '{}' must be a pattern (a string)", file, arg);
            try {
                Pattern::get(value->str());
            } catch (const Error& e) {
                throw_error(ErrorKind::InvalidArgument, "{} argument '{}': {}", file, arg, e.what());
            }
        }
    }
}

} // namespace keel::plugins

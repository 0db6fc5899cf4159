// core/plugins/quality_schema.cpp: checks a rule against its plugin's declared schema (names, types,
// ranges, then the arguments naming data: columns of the target, RE2 patterns) before the rule is
// saved or run, so a typo is refused at add_rule instead of blocking every later ingest; and reads
// which columns a rule wants a reference profile of.
#include "keel/common/error.hpp"
#include "keel/plugins/quality.hpp"
#include "keel/plugins/schema.hpp"
#include "pattern.hpp"

#include <algorithm>

namespace keel::plugins {

namespace {

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

void check_column(const std::string& file, const std::string& arg, const Value& v, const std::vector<std::string>& columns,
                  std::string_view target) {
    if (!v.is_string())
        throw_error(ErrorKind::InvalidArgument, "{} argument '{}' must name columns by strings, not {}", file, arg,
                    describe_value(v));
    if (columns.empty() || std::find(columns.begin(), columns.end(), v.str()) != columns.end()) return;
    throw_error(ErrorKind::InvalidArgument, "{} argument '{}' names column '{}', which {} does not have (columns: {})",
                file, arg, v.str(), target, joined(columns));
}

} // namespace

void validate_rule(const Rule& rule, const std::vector<std::string>& columns, std::string_view target, Host& host) {
    Value schema = host.schema(rule.plugin, "check");
    const std::string file = plugin_file_name(rule.plugin);
    check_arguments(schema, file, "check", rule.args);
    plugin_needs(host, rule.plugin, "check");  // an unknown need is refused with the rule
    if (!schema.is_map()) return;
    for (const auto& [arg, field] : schema.map()) {
        const Value* type = field.find("type");
        const Value* value = rule.args.find(arg);
        if (!type || !type->is_string() || !value || value->is_null()) continue;
        const std::string& kind = type->str();
        if (kind == "column") {
            check_column(file, arg, *value, columns, target);
        } else if (kind == "columns") {
            if (value->is_array())
                for (const auto& v : value->array()) check_column(file, arg, v, columns, target);
        } else if (kind == "pattern") {
            try {
                Pattern::get(value->str());
            } catch (const Error& e) {
                throw_error(ErrorKind::InvalidArgument, "{} argument '{}': {}", file, arg, e.what());
            }
        }
    }
}

std::vector<std::string> reference_columns(const std::vector<Rule>& rules, Host& host) {
    std::vector<std::string> out;
    auto add = [&](const Value& v) {
        if (v.is_string() && std::find(out.begin(), out.end(), v.str()) == out.end()) out.push_back(v.str());
    };
    for (const auto& rule : rules) {
        Value schema;
        try {
            auto needs = plugin_needs(host, rule.plugin, "check");
            if (std::find(needs.begin(), needs.end(), "reference_profile") == needs.end()) continue;
            schema = host.schema(rule.plugin, "check");
        } catch (const Error&) {
            continue;  // a plugin that does not load is its rule's error when run, and needs nothing
        }
        if (!schema.is_map()) continue;
        for (const auto& [arg, field] : schema.map()) {
            const Value* type = field.find("type");
            const Value* value = rule.args.find(arg);
            if (!type || !type->is_string() || !value) continue;
            if (type->str() == "column") add(*value);
            else if (type->str() == "columns" && value->is_array())
                for (const auto& v : value->array()) add(v);
        }
    }
    return out;
}

} // namespace keel::plugins

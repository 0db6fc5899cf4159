// core/plugins/schema.cpp: checks arguments against the `schema` a plugin declares, and reads what
// it `needs`, so every host of a plugin (Python, the CLI, a C++ server) refuses the same input with
// the same message before any plugin code runs.
#include "keel/plugins/schema.hpp"

#include "keel/common/error.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

namespace keel::plugins {

namespace {

constexpr size_t kShownChars = 60;

bool known(std::string_view name, const auto& names) {
    return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

std::string listed(const auto& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + std::string(n);
    return out;
}

std::string kind_of(const Value& v) {
    return std::visit(
        [](const auto& x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) return "nil";
            else if constexpr (std::is_same_v<T, bool>) return "boolean";
            else if constexpr (std::is_same_v<T, int64_t>) return "integer";
            else if constexpr (std::is_same_v<T, double>) return "number";
            else if constexpr (std::is_same_v<T, std::string>) return "string";
            else if constexpr (std::is_same_v<T, Value::Array>) return "list";
            else return "map";
        },
        v.data);
}

void append_text(std::string& out, const Value& v) {
    if (out.size() > kShownChars) return;
    std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) out += "nil";
            else if constexpr (std::is_same_v<T, bool>) out += x ? "true" : "false";
            else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) out += fmt::format("{}", x);
            else if constexpr (std::is_same_v<T, std::string>) out += "'" + x + "'";
            else if constexpr (std::is_same_v<T, Value::Array>) {
                out += "[";
                for (size_t i = 0; i < x.size() && out.size() <= kShownChars; ++i) {
                    if (i) out += ", ";
                    append_text(out, x[i]);
                }
                out += "]";
            } else {
                out += "{";
                for (size_t i = 0; i < x.size() && out.size() <= kShownChars; ++i) {
                    if (i) out += ", ";
                    out += x[i].first + ": ";
                    append_text(out, x[i].second);
                }
                out += "}";
            }
        },
        v.data);
}

std::string text_of(const Value& v) {
    std::string out;
    append_text(out, v);
    if (out.size() > kShownChars) out = out.substr(0, kShownChars) + "...";
    return out;
}

bool is_bool(const Value& v) { return std::holds_alternative<bool>(v.data); }

// Lua and JSON give an empty table no shape: an empty map passes as an empty list and back.
bool empty_table(const Value& v) {
    return (v.is_map() && v.map().empty()) || (v.is_array() && v.array().empty());
}

bool has_type(const Value& v, std::string_view type) {
    if (type == "any") return true;
    if (type == "string" || type == "column" || type == "pattern") return v.is_string();
    if (type == "number") return v.is_number();
    if (type == "integer") {
        if (std::holds_alternative<int64_t>(v.data)) return true;
        // A whole number that arrived as a float (JSON, numpy) is still an integer.
        if (auto* d = std::get_if<double>(&v.data)) return std::isfinite(*d) && std::floor(*d) == *d;
        return false;
    }
    if (type == "boolean") return is_bool(v);
    if (type == "list" || type == "columns") return v.is_array() || empty_table(v);
    if (type == "map") return v.is_map() || empty_table(v);
    return false;
}

// Choices are plain values: numbers compare by value (1 == 1.0), the rest by kind and content.
bool same_value(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) return a.number() == b.number();
    if (a.data.index() != b.data.index()) return false;
    if (a.is_string()) return a.str() == b.str();
    if (is_bool(a)) return std::get<bool>(a.data) == std::get<bool>(b.data);
    if (a.is_null()) return true;
    if (a.is_array()) {
        return std::equal(a.array().begin(), a.array().end(), b.array().begin(), b.array().end(), same_value);
    }
    return std::equal(a.map().begin(), a.map().end(), b.map().begin(), b.map().end(),
                      [](const auto& x, const auto& y) { return x.first == y.first && same_value(x.second, y.second); });
}

// One argument's declaration, checked for shape once per check.
struct Field {
    std::string_view name;
    std::string type = "any";
    bool required = false;
    std::string doc;
    std::optional<double> min, max;
    const Value::Array* choices = nullptr;
};

[[noreturn]] void bad_schema(std::string_view plugin, std::string_view entry, std::string_view arg, std::string_view what) {
    throw_error(ErrorKind::PluginError, "{}: the schema of {}() declares argument '{}' {}: fix the plugin's schema table",
                plugin, entry, arg, what);
}

Field read_field(std::string_view plugin, std::string_view entry, const std::string& arg, const Value& decl) {
    if (!decl.is_map())
        bad_schema(plugin, entry, arg, fmt::format("as {}, not as a table such as {{type = \"string\", doc = \"...\"}}",
                                                   describe_value(decl)));
    Field f;
    f.name = arg;
    for (const auto& [key, v] : decl.map()) {
        if (!known(key, kArgumentFields))
            bad_schema(plugin, entry, arg, fmt::format("with unknown field '{}' (fields: {})", key, listed(kArgumentFields)));
        if (key == "type") {
            if (!v.is_string() || !known(v.str(), kArgumentTypes))
                bad_schema(plugin, entry, arg, fmt::format("with type {} (types: {})", describe_value(v), listed(kArgumentTypes)));
            f.type = v.str();
        } else if (key == "required") {
            if (!is_bool(v)) bad_schema(plugin, entry, arg, fmt::format("with required = {} (true or false)", text_of(v)));
            f.required = std::get<bool>(v.data);
        } else if (key == "doc") {
            if (!v.is_string()) bad_schema(plugin, entry, arg, fmt::format("with doc = {} (a string)", text_of(v)));
            f.doc = v.str();
        } else if (key == "min" || key == "max") {
            if (!v.is_number() || std::isnan(v.number()))
                bad_schema(plugin, entry, arg, fmt::format("with {} = {} (a number)", key, text_of(v)));
            (key == "min" ? f.min : f.max) = v.number();
        } else if (key == "choices") {
            if (!v.is_array() || v.array().empty())
                bad_schema(plugin, entry, arg, fmt::format("with choices = {} (a non-empty list)", text_of(v)));
            f.choices = &v.array();
        }
    }
    if ((f.min || f.max) && f.type != "number" && f.type != "integer")
        bad_schema(plugin, entry, arg, fmt::format("of type {} with min/max (only numbers have a range)", f.type));
    if (f.min && f.max && *f.min > *f.max)
        bad_schema(plugin, entry, arg, fmt::format("with min {} above max {}", *f.min, *f.max));
    if (f.choices)
        for (const auto& c : *f.choices)
            if (!has_type(c, f.type))
                bad_schema(plugin, entry, arg, fmt::format("of type {} with choice {}", f.type, describe_value(c)));
    return f;
}

std::string range_text(const Field& f) {
    if (f.min && f.max) return fmt::format("between {} and {}", *f.min, *f.max);
    if (f.min) return fmt::format(">= {}", *f.min);
    return fmt::format("<= {}", *f.max);
}

void check_value(std::string_view plugin, const Field& f, const Value& v) {
    if (!has_type(v, f.type)) {
        std::string_view article = f.type == "integer" || f.type == "any" ? "an" : "a";
        throw_error(ErrorKind::InvalidArgument, "{} argument '{}' must be {} {}, not {}", plugin, f.name, article,
                    f.type == "columns" ? "list of columns" : f.type, describe_value(v));
    }
    if (f.min || f.max) {
        double x = v.number();
        // Written so NaN is outside every range.
        if (!((!f.min || x >= *f.min) && (!f.max || x <= *f.max)))
            throw_error(ErrorKind::InvalidArgument, "{} argument '{}' must be {}, not {}", plugin, f.name, range_text(f),
                        text_of(v));
    }
    if (f.choices) {
        for (const auto& c : *f.choices)
            if (same_value(c, v)) return;
        std::string options;
        for (const auto& c : *f.choices) options += (options.empty() ? "" : ", ") + text_of(c);
        throw_error(ErrorKind::InvalidArgument, "{} argument '{}' must be one of {}, not {}", plugin, f.name, options,
                    text_of(v));
    }
}

} // namespace

std::string plugin_file_name(std::string_view ref) {
    auto slash = ref.find_last_of('/');
    return std::string(slash == std::string_view::npos ? ref : ref.substr(slash + 1));
}

std::string describe_value(const Value& v) {
    if (v.is_null()) return "nil";
    return kind_of(v) + " " + text_of(v);
}

void check_arguments(const Value& schema, std::string_view plugin, std::string_view entry, const Value& args) {
    if (schema.is_null()) return;
    if (!schema.is_map() && !empty_table(schema))
        throw_error(ErrorKind::PluginError,
                    "{}: schema must be a table of argument name -> {{type = ..., doc = ...}}, not {}: fix the plugin",
                    plugin, describe_value(schema));
    if (!args.is_null() && !args.is_map() && !empty_table(args))
        throw_error(ErrorKind::InvalidArgument, "{} takes its arguments as a map of name -> value, not {}", plugin,
                    describe_value(args));
    static const Value::Map kNone;
    const Value::Map& decls = schema.is_map() ? schema.map() : kNone;
    std::vector<Field> fields;
    fields.reserve(decls.size());
    for (const auto& [arg, decl] : decls) fields.push_back(read_field(plugin, entry, arg, decl));

    const Value::Map& given = args.is_map() ? args.map() : kNone;
    for (const auto& [name, value] : given) {
        // The binding is captured by name: clang 14 (the fuzz build) refuses capturing it by [&].
        if (std::any_of(fields.begin(), fields.end(), [&, &name = name](const Field& f) { return f.name == name; }))
            continue;
        std::vector<std::string_view> names;
        for (const auto& f : fields) names.push_back(f.name);
        std::sort(names.begin(), names.end());
        throw_error(ErrorKind::InvalidArgument, "{} has no argument '{}' ({})", plugin, name,
                    names.empty() ? std::string("it takes none") : "arguments: " + listed(names));
    }
    for (const auto& f : fields) {
        const Value* v = args.find(f.name);
        if (!v || v->is_null()) {
            if (f.required)
                throw_error(ErrorKind::InvalidArgument, "{} needs argument '{}'{}", plugin, f.name,
                            f.doc.empty() ? "" : ": " + f.doc);
            continue;
        }
        check_value(plugin, f, *v);
    }
}

void check_arguments(Host& host, std::string_view ref, std::string_view entry, const Value& args) {
    check_arguments(host.schema(ref, entry), plugin_file_name(ref), entry, args);
}

std::vector<std::string> plugin_needs(Host& host, std::string_view ref, std::string_view entry) {
    Value declared = host.declared(ref, entry, "needs");
    std::vector<std::string> out;
    if (declared.is_null() || empty_table(declared)) return out;
    const std::string file = plugin_file_name(ref);
    if (!declared.is_array())
        throw_error(ErrorKind::PluginError, "{}: needs must be a list such as {{\"reference_profile\"}}, not {}", file,
                    describe_value(declared));
    for (const auto& need : declared.array()) {
        if (!need.is_string() || !known(need.str(), kPluginNeeds))
            throw_error(ErrorKind::PluginError, "{}: needs lists {}, which Keel does not provide (it provides: {})", file,
                        describe_value(need), listed(kPluginNeeds));
        out.push_back(need.str());
    }
    return out;
}

} // namespace keel::plugins

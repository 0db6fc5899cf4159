// core/include/keel/plugins/value.hpp
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace keel::plugins {

//! A plain data value crossing between C++ (and Python) and Lua: plugin configuration, rule
//! arguments, request fields, results. Maps keep their insertion order.
struct Value {
    using Array = std::vector<Value>;
    using Map = std::vector<std::pair<std::string, Value>>;
    std::variant<std::monostate, bool, int64_t, double, std::string, Array, Map> data;

    Value() = default;
    Value(std::nullptr_t) {}
    Value(bool b) : data(b) {}
    Value(int v) : data(int64_t(v)) {}
    Value(int64_t v) : data(v) {}
    Value(double v) : data(v) {}
    Value(const char* s) : data(std::string(s)) {}
    Value(std::string s) : data(std::move(s)) {}
    Value(Array a) : data(std::move(a)) {}
    Value(Map m) : data(std::move(m)) {}

    bool is_null() const { return std::holds_alternative<std::monostate>(data); }
    bool is_string() const { return std::holds_alternative<std::string>(data); }
    bool is_number() const { return std::holds_alternative<int64_t>(data) || std::holds_alternative<double>(data); }
    bool is_map() const { return std::holds_alternative<Map>(data); }
    bool is_array() const { return std::holds_alternative<Array>(data); }
    double number() const { return std::holds_alternative<int64_t>(data) ? double(std::get<int64_t>(data)) : std::get<double>(data); }
    const std::string& str() const { return std::get<std::string>(data); }
    const Map& map() const { return std::get<Map>(data); }
    const Array& array() const { return std::get<Array>(data); }
    //! The map entry named `key`, or nullptr (also when this is not a map).
    const Value* find(std::string_view key) const {
        if (!is_map()) return nullptr;
        for (const auto& [k, v] : map())
            if (k == key) return &v;
        return nullptr;
    }
};

} // namespace keel::plugins

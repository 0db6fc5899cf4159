// core/serving/json_value.cpp: JSON text <-> plugins::Value, the one place nlohmann/json is included
// (it is a large header: keep it out of every other file).
#include "json_value.hpp"

#include "keel/common/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

namespace keel::serving::detail {

namespace {

using Json = nlohmann::json;          // objects in a std::map: keys sorted on output
using OrderedJson = nlohmann::ordered_json;  // objects as written: read order matters (variants)
using plugins::Value;

constexpr int kMaxDepth = 32;

Value from_json(const OrderedJson& j, std::string_view what, int depth) {
    if (depth > kMaxDepth)
        throw_error(ErrorKind::InvalidArgument, "{} nests deeper than {} levels", what, kMaxDepth);
    switch (j.type()) {
    case OrderedJson::value_t::null: return Value{};
    case OrderedJson::value_t::boolean: return Value(j.get<bool>());
    case OrderedJson::value_t::number_integer: return Value(j.get<int64_t>());
    case OrderedJson::value_t::number_unsigned: {
        auto u = j.get<uint64_t>();
        if (u <= uint64_t(std::numeric_limits<int64_t>::max())) return Value(int64_t(u));
        return Value(double(u));
    }
    case OrderedJson::value_t::number_float: return Value(j.get<double>());
    case OrderedJson::value_t::string: return Value(j.get<std::string>());
    case OrderedJson::value_t::array: {
        Value::Array out;
        out.reserve(j.size());
        for (const auto& e : j) out.push_back(from_json(e, what, depth + 1));
        return Value(std::move(out));
    }
    case OrderedJson::value_t::object: {
        Value::Map out;
        out.reserve(j.size());
        for (auto it = j.begin(); it != j.end(); ++it) out.emplace_back(it.key(), from_json(it.value(), what, depth + 1));
        return Value(std::move(out));
    }
    default:
        throw_error(ErrorKind::InvalidArgument, "{} holds binary data, which JSON has no form for", what);
    }
}

Json to_json(const Value& v, std::string_view what, int depth) {
    if (depth > kMaxDepth)
        throw_error(ErrorKind::InvalidArgument, "{} nests deeper than {} levels", what, kMaxDepth);
    return std::visit(
        [&](const auto& x) -> Json {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) return Json(nullptr);
            else if constexpr (std::is_same_v<T, double>) {
                if (!std::isfinite(x))
                    throw_error(ErrorKind::InvalidArgument, "{} holds {}, which JSON cannot store: use a finite number",
                                what, x);
                return Json(x);
            } else if constexpr (std::is_same_v<T, Value::Array>) {
                Json out = Json::array();
                for (const auto& e : x) out.push_back(to_json(e, what, depth + 1));
                return out;
            } else if constexpr (std::is_same_v<T, Value::Map>) {
                Json out = Json::object();  // a std::map: keys sorted on output
                for (const auto& [k, e] : x) out[k] = to_json(e, what, depth + 1);
                return out;
            } else {
                return Json(x);
            }
        },
        v.data);
}

} // namespace

Value parse_json(std::string_view text, std::string_view what) {
    OrderedJson j;
    try {
        j = OrderedJson::parse(text.begin(), text.end());
    } catch (const OrderedJson::exception& e) {
        // nlohmann's message starts with "[json.exception.parse_error.101] parse error at line 1, ...".
        std::string detail = e.what();
        if (auto close = detail.find("] "); close != std::string::npos) detail = detail.substr(close + 2);
        throw_error(ErrorKind::InvalidArgument, "{} is not valid JSON: {}", what, detail);
    }
    return from_json(j, what, 0);
}

std::string dump_json(const Value& value, std::string_view what) { return to_json(value, what, 0).dump(); }

} // namespace keel::serving::detail

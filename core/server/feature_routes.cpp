// core/server/feature_routes.cpp: POST /v1/features/online.
#include "routes.hpp"

#include "json_out.hpp"
#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/workspace.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstring>

namespace keel::server {

namespace {

using Json = nlohmann::json;

constexpr size_t kMaxEntities = 10'000;
constexpr size_t kMaxFeatures = 256;

// The entity key columns of a request, owned, with their borrowed views.
struct Keys {
    std::vector<std::vector<int64_t>> ints;
    std::vector<std::vector<int64_t>> offsets;
    std::vector<std::string> bytes;
    BatchView view;
};

Keys read_keys(const Json& entities) {
    if (!entities.is_object() || entities.empty())
        throw_error(ErrorKind::InvalidArgument, "\"entities\" must map each join key to a list of ids, e.g. "
                    "{{\"player_id\": [1, 2]}}");
    Keys keys;
    keys.view.rows = SIZE_MAX;
    keys.ints.reserve(entities.size());
    keys.offsets.reserve(entities.size());
    keys.bytes.reserve(entities.size());
    for (const auto& [name, ids] : entities.items()) {
        if (!ids.is_array() || ids.empty())
            throw_error(ErrorKind::InvalidArgument, "entities[\"{}\"] must be a non-empty list of ids", name);
        if (ids.size() > kMaxEntities)
            throw_error(ErrorKind::InvalidArgument, "entities[\"{}\"] holds {} ids; ask for at most {} per request",
                        name, ids.size(), kMaxEntities);
        if (keys.view.rows != SIZE_MAX && ids.size() != keys.view.rows)
            throw_error(ErrorKind::InvalidArgument, "entities[\"{}\"] holds {} ids but the other keys hold {}: "
                        "every join key needs one value per entity", name, ids.size(), keys.view.rows);
        keys.view.rows = ids.size();
        ColumnView col;
        col.name = name;
        auto& ints = keys.ints.emplace_back();
        auto& offsets = keys.offsets.emplace_back();
        auto& bytes = keys.bytes.emplace_back();
        if (ids.front().is_number_integer()) {
            col.dtype = DType::Int64;
            for (const auto& id : ids) {
                if (!id.is_number_integer())
                    throw_error(ErrorKind::InvalidArgument, "entities[\"{}\"] mixes integer ids with {}: use one type",
                                name, id.dump());
                ints.push_back(id.get<int64_t>());
            }
            col.values = ints.data();
        } else if (ids.front().is_string()) {
            col.dtype = DType::String;
            offsets.push_back(0);
            for (const auto& id : ids) {
                if (!id.is_string())
                    throw_error(ErrorKind::InvalidArgument, "entities[\"{}\"] mixes string ids with {}: use one type",
                                name, id.dump());
                bytes += id.get_ref<const std::string&>();
                offsets.push_back(int64_t(bytes.size()));
            }
            col.values = bytes.data();
            col.offsets = offsets.data();
        } else {
            throw_error(ErrorKind::InvalidArgument, "entities[\"{}\"] holds {}: ids are integers or strings", name,
                        ids.front().dump());
        }
        keys.view.columns.push_back(std::move(col));
    }
    return keys;
}

// "2026-01-01T00:00:00.000Z"
void append_iso_time(std::string& out, int64_t ms) {
    using namespace std::chrono;
    const sys_time<milliseconds> t{milliseconds(ms)};
    const auto day = floor<days>(t);
    const year_month_day ymd{day};
    const hh_mm_ss hms{t - day};
    fmt::format_to(std::back_inserter(out), "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\"", int(ymd.year()),
                   unsigned(ymd.month()), unsigned(ymd.day()), hms.hours().count(), hms.minutes().count(),
                   hms.seconds().count(), hms.subseconds().count());
}

void append_value(std::string& out, const features::Column& c, size_t row) {
    if (!c.valid.empty() && !c.valid[row]) {
        out += "null";
        return;
    }
    const uint8_t* v = c.values.data();
    switch (c.dtype) {
    case DType::Bool: out += v[row] ? "true" : "false"; return;
    case DType::Int32: {
        int32_t x;
        std::memcpy(&x, v + row * 4, 4);
        append_json_number(out, int64_t(x));
        return;
    }
    case DType::Int64: {
        int64_t x;
        std::memcpy(&x, v + row * 8, 8);
        append_json_number(out, x);
        return;
    }
    case DType::Timestamp: {
        int64_t x;
        std::memcpy(&x, v + row * 8, 8);
        append_iso_time(out, x);
        return;
    }
    case DType::Float32: {
        float x;
        std::memcpy(&x, v + row * 4, 4);
        append_json_number(out, double(x));
        return;
    }
    case DType::Float64: {
        double x;
        std::memcpy(&x, v + row * 8, 8);
        append_json_number(out, x);
        return;
    }
    case DType::String:
        append_json_string(out, {reinterpret_cast<const char*>(v) + c.offsets[row],
                                 size_t(c.offsets[row + 1] - c.offsets[row])});
        return;
    case DType::Vector: {
        out.push_back('[');
        for (uint32_t k = 0; k < c.dim; ++k) {
            float x;
            std::memcpy(&x, v + (row * c.dim + k) * 4, 4);
            if (k) out.push_back(',');
            append_json_number(out, double(x));
        }
        out.push_back(']');
        return;
    }
    }
    out += "null";
}

int64_t int64_at(const features::Column& c, size_t row) {
    int64_t x;
    std::memcpy(&x, c.values.data() + row * 8, 8);
    return x;
}

bool valid_at(const features::Column& c, size_t row) { return c.valid.empty() || c.valid[row]; }

// One requested feature: where its values come from and whether the caller sees them.
struct Wanted {
    features::FeatureRef ref;
    std::string text;    // "view:column" as asked
    bool masked = false; // PII without a grant to any of the caller's roles
    std::string role;    // the store that reads it ("" for non-PII or masked columns)
};

} // namespace

FeatureRoutes::FeatureRoutes(std::shared_ptr<storage::Workspace> ws) : ws_(std::move(ws)) {}
FeatureRoutes::~FeatureRoutes() = default;

features::FeatureStore& FeatureRoutes::store(const std::string& role) {
    std::lock_guard lock(mutex_);
    auto& slot = stores_[role];
    if (!slot) {
        auto ws = role.empty() ? ws_ : storage::Workspace::open(ws_->path());
        if (!role.empty()) ws->set_role(role);
        slot = std::make_unique<features::FeatureStore>(ws);
    }
    return *slot;
}

HttpResponse FeatureRoutes::online(Call& call) {
    Json body;
    try {
        body = Json::parse(call.request.body);
    } catch (const Json::exception& e) {
        throw_error(ErrorKind::InvalidArgument, "the body is not valid JSON ({}): send {{\"features\": "
                    "[\"view:column\"], \"entities\": {{\"<join key>\": [ids]}}}}", e.what());
    }
    if (!body.is_object() || !body.contains("features") || !body.contains("entities"))
        throw_error(ErrorKind::InvalidArgument, "send {{\"features\": [\"view:column\", ...], \"entities\": "
                    "{{\"<join key>\": [ids]}}}}");
    const Json& names = body["features"];
    if (!names.is_array() || names.empty() || names.size() > kMaxFeatures)
        throw_error(ErrorKind::InvalidArgument, "\"features\" must list 1 to {} \"view:column\" names", kMaxFeatures);
    Keys keys = read_keys(body["entities"]);

    features::FeatureStore& open_store = store("");
    std::vector<Wanted> wanted;
    for (const auto& n : names) {
        if (!n.is_string())
            throw_error(ErrorKind::InvalidArgument, "\"features\" holds {}: each is a \"view:column\" string", n.dump());
        Wanted w{features::FeatureRef::parse(n.get<std::string>()), n.get<std::string>()};
        const auto spec = open_store.view(w.ref.view);
        const auto* column = spec.feature(w.ref.column);
        if (!column)
            throw_error(ErrorKind::NotFound, "feature view '{}' has no column '{}'", w.ref.view, w.ref.column);
        if (column->pii) {
            w.masked = true;
            for (const auto& role : call.caller.roles)
                if (open_store.can_read(role, w.ref.view, w.ref.column)) {
                    w.masked = false;
                    w.role = role;
                    break;
                }
        }
        wanted.push_back(std::move(w));
    }

    // One lookup per role the answer needs; results kept per feature.
    const size_t n = keys.view.rows;
    struct Result {
        features::Table table;
        std::vector<std::string> views;  // in the order get_online puts their time columns
    };
    std::map<std::string, Result> results;
    std::map<std::string, std::vector<std::string>> asked;
    for (const auto& w : wanted) asked[w.role].push_back(w.text);
    for (auto& [role, list] : asked) {
        Result& r = results[role];
        r.table = store(role).get_online(list, keys.view);
        for (const auto& f : list) {
            auto view = features::FeatureRef::parse(f).view;
            if (std::find(r.views.begin(), r.views.end(), view) == r.views.end()) r.views.push_back(view);
        }
    }

    std::string out = "{\"features\":{";
    std::map<std::string, size_t> used;  // role -> features of its table written so far
    for (size_t f = 0; f < wanted.size(); ++f) {
        const Wanted& w = wanted[f];
        const Result& r = results[w.role];
        const features::Column& values = r.table.columns[used[w.role]++];
        const size_t view_at = size_t(std::find(r.views.begin(), r.views.end(), w.ref.view) - r.views.begin());
        const size_t meta = asked[w.role].size() + 3 * view_at;
        const features::Column& event = r.table.columns[meta];
        const features::Column& age = r.table.columns[meta + 1];
        const features::Column& stale = r.table.columns[meta + 2];
        if (f) out.push_back(',');
        append_json_string(out, w.text);
        std::string status = "[", times = "[", ages = "[";
        out += ":{\"values\":[";
        for (size_t i = 0; i < n; ++i) {
            if (i) {
                out.push_back(',');
                status.push_back(',');
                times.push_back(',');
                ages.push_back(',');
            }
            const bool found = valid_at(event, i);
            const bool is_stale = found && stale.values[i];
            if (found) {
                append_iso_time(times, int64_at(event, i));
                append_json_number(ages, double(int64_at(age, i)) / 1000.0);
            } else {
                times += "null";
                ages += "null";
            }
            if (!found) status += "\"missing\"";
            else if (is_stale) status += "\"stale\"";
            else if (w.masked) status += "\"masked\"";
            else if (!valid_at(values, i)) status += "\"null\"";
            else status += "\"ok\"";
            if (found && !is_stale && !w.masked) append_value(out, values, i);
            else out += "null";
        }
        out += "],\"status\":" + status + "],\"event_timestamp\":" + times + "],\"age_seconds\":" + ages + "]}";
    }
    out += "}}";
    return json_response(200, std::move(out));
}

} // namespace keel::server

// core/server/feature_routes.cpp: POST /v1/features/online.
#include "routes.hpp"

#include "json_out.hpp"
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/online.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/workspace.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <limits>
#include <optional>
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
    DType dtype = DType::Float64;
    bool masked = false; // PII without a grant to any of the caller's roles
    std::string role;    // the store that reads it ("" for non-PII or masked columns)
    size_t column = 0;   // its index in its role's reader (fast path)
};

// One feature's four JSON lists, filled entity by entity.
struct FeatureJson {
    std::string values = "[", status = "[", times = "[", ages = "[";

    void next(size_t i) {
        if (!i) return;
        values.push_back(',');
        status.push_back(',');
        times.push_back(',');
        ages.push_back(',');
    }
    void when(std::optional<int64_t> event_ms, int64_t age_ms) {
        if (!event_ms) {
            times += "null";
            ages += "null";
            return;
        }
        append_iso_time(times, *event_ms);
        append_json_number(ages, double(age_ms) / 1000.0);
    }
    void write(std::string& out, std::string_view name) const {
        append_json_string(out, name);
        out += ":{\"values\":" + values + "],\"status\":" + status + "],\"event_timestamp\":" + times +
               "],\"age_seconds\":" + ages + "]}";
    }
};

void append_number(std::string& out, double value, DType dtype) {
    if (dtype == DType::Int64 || dtype == DType::Int32) append_json_number(out, int64_t(value));
    else if (dtype == DType::Bool) out += value != 0 ? "true" : "false";
    else if (dtype == DType::Timestamp) append_iso_time(out, int64_t(value));
    else append_json_number(out, value);
}

std::string_view status_name(features::OnlineReader::Status s) {
    using S = features::OnlineReader::Status;
    switch (s) {
    case S::Ok: return "\"ok\"";
    case S::MissingEntity: return "\"missing\"";
    case S::Null: return "\"null\"";
    case S::Stale: return "\"stale\"";
    case S::Masked: return "\"masked\"";
    }
    return "\"missing\"";
}

constexpr size_t kMaxPrepared = 1024;  // distinct (features, roles) requests kept compiled

} // namespace

struct FeatureRoutes::Prepared {
    uint64_t token = 0;  // the workspace's change token when prepared: any commit makes it stale
    std::vector<Wanted> wanted;
    //! Every feature numeric and every view keyed by one int64 column named `key`: compiled readers
    //! answer (no catalog read per request); else get_online() does, for any key and type.
    bool fast = false;
    std::string key;
    std::map<std::string, std::shared_ptr<features::OnlineReader>> readers;  // role -> reader of its features
};

FeatureRoutes::FeatureRoutes(std::shared_ptr<storage::Workspace> ws) : ws_(std::move(ws)) {}
FeatureRoutes::~FeatureRoutes() = default;

features::FeatureStore& FeatureRoutes::store(const std::string& role) {
    std::lock_guard lock(mutex_);
    auto& slot = stores_[role];
    if (!slot) {
        auto ws = role.empty() ? ws_ : storage::Workspace::open(ws_->location(), ws_->artifacts_location());
        if (!role.empty()) ws->set_role(role);
        slot = std::make_unique<features::FeatureStore>(ws);
    }
    return *slot;
}

std::shared_ptr<const FeatureRoutes::Prepared> FeatureRoutes::prepare(const std::vector<std::string>& names,
                                                                     const std::vector<std::string>& roles) {
    std::string cache_key;
    for (const auto& n : names) cache_key += n + '\n';
    cache_key += '|';
    for (const auto& r : roles) cache_key += r + '\n';
    const uint64_t token = ws_->db().recent_change_token(std::chrono::milliseconds(1));
    {
        std::lock_guard lock(cache_mutex_);
        if (auto it = cache_.find(cache_key); it != cache_.end() && it->second->token == token) return it->second;
    }
    auto p = std::make_shared<Prepared>();
    p->token = token;
    features::FeatureStore& open_store = store("");
    std::map<std::string, features::ViewSpec> specs;
    p->fast = true;
    for (const auto& name : names) {
        Wanted w{features::FeatureRef::parse(name), name};
        auto it = specs.find(w.ref.view);
        if (it == specs.end()) it = specs.emplace(w.ref.view, open_store.view(w.ref.view)).first;
        const features::ViewSpec& spec = it->second;
        const auto* column = spec.feature(w.ref.column);
        if (!column) throw_error(ErrorKind::NotFound, "feature view '{}' has no column '{}'", w.ref.view, w.ref.column);
        w.dtype = column->dtype;
        if (column->pii) {
            w.masked = true;
            for (const auto& role : roles)
                if (open_store.can_read(role, w.ref.view, w.ref.column)) {
                    w.masked = false;
                    w.role = role;
                    break;
                }
        }
        const std::string key = spec.int_key() ? spec.join_keys.front().name : std::string();
        if (w.dtype == DType::String || w.dtype == DType::Vector || key.empty() || (!p->key.empty() && key != p->key))
            p->fast = false;
        p->key = key;
        p->wanted.push_back(std::move(w));
    }
    if (p->fast) {
        std::map<std::string, std::vector<std::string>> by_role;
        for (auto& w : p->wanted) {
            auto& list = by_role[w.role];
            w.column = list.size();
            list.push_back(w.text);
        }
        for (const auto& [role, list] : by_role) p->readers[role] = store(role).online_reader(list);
    }
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kMaxPrepared) cache_.clear();
    cache_[cache_key] = p;
    return p;
}

namespace {

// Compiled readers: values and status per feature, event time per view row.
void answer_fast(const FeatureRoutes::Prepared& p, const int64_t* ids, size_t n, std::vector<FeatureJson>& out) {
    using Status = features::OnlineReader::Status;
    const int64_t now = now_ms();
    std::map<std::string, std::pair<std::vector<double>, std::vector<Status>>> looked_up;
    for (const auto& [role, reader] : p.readers) {
        auto& [values, status] = looked_up[role];
        values.resize(n * reader->width());
        status.resize(n * reader->width());
        reader->lookup(ids, n, values.data(), status.data(), now);
    }
    std::vector<int64_t> event(n);
    for (size_t f = 0; f < p.wanted.size(); ++f) {
        const Wanted& w = p.wanted[f];
        const auto& reader = *p.readers.at(w.role);
        const auto& [values, status] = looked_up.at(w.role);
        reader.event_times(w.column, ids, n, event.data());
        FeatureJson& j = out[f];
        for (size_t i = 0; i < n; ++i) {
            j.next(i);
            const size_t at = i * reader.width() + w.column;
            const bool found = event[i] != std::numeric_limits<int64_t>::min();
            j.when(found ? std::optional<int64_t>(event[i]) : std::nullopt, found ? now - event[i] : 0);
            j.status += status_name(status[at]);
            if (status[at] == Status::Ok) append_number(j.values, values[at], w.dtype);
            else j.values += "null";
        }
    }
}

// Any key and type, through get_online(): one call per role the answer needs.
void answer_general(FeatureRoutes& routes, const FeatureRoutes::Prepared& p, const BatchView& keys,
                    std::vector<FeatureJson>& out) {
    struct Result {
        features::Table table;
        std::vector<std::string> views;  // in the order get_online puts their time columns
    };
    std::map<std::string, Result> results;
    std::map<std::string, std::vector<std::string>> asked;
    for (const auto& w : p.wanted) asked[w.role].push_back(w.text);
    for (auto& [role, list] : asked) {
        Result& r = results[role];
        r.table = routes.store(role).get_online(list, keys);
        for (const auto& f : list) {
            auto view = features::FeatureRef::parse(f).view;
            if (std::find(r.views.begin(), r.views.end(), view) == r.views.end()) r.views.push_back(view);
        }
    }
    std::map<std::string, size_t> used;  // role -> features of its table written so far
    for (size_t f = 0; f < p.wanted.size(); ++f) {
        const Wanted& w = p.wanted[f];
        const Result& r = results[w.role];
        const features::Column& values = r.table.columns[used[w.role]++];
        const size_t view_at = size_t(std::find(r.views.begin(), r.views.end(), w.ref.view) - r.views.begin());
        const size_t meta = asked[w.role].size() + 3 * view_at;
        const features::Column& event = r.table.columns[meta];
        const features::Column& age = r.table.columns[meta + 1];
        const features::Column& stale = r.table.columns[meta + 2];
        FeatureJson& j = out[f];
        for (size_t i = 0; i < keys.rows; ++i) {
            j.next(i);
            const bool found = valid_at(event, i);
            const bool is_stale = found && stale.values[i];
            j.when(found ? std::optional<int64_t>(int64_at(event, i)) : std::nullopt, found ? int64_at(age, i) : 0);
            if (!found) j.status += "\"missing\"";
            else if (is_stale) j.status += "\"stale\"";
            else if (w.masked) j.status += "\"masked\"";
            else if (!valid_at(values, i)) j.status += "\"null\"";
            else j.status += "\"ok\"";
            if (found && !is_stale && !w.masked) append_value(j.values, values, i);
            else j.values += "null";
        }
    }
}

} // namespace

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
    const Json& given = body["features"];
    if (!given.is_array() || given.empty() || given.size() > kMaxFeatures)
        throw_error(ErrorKind::InvalidArgument, "\"features\" must list 1 to {} \"view:column\" names", kMaxFeatures);
    std::vector<std::string> names;
    for (const auto& n : given) {
        if (!n.is_string())
            throw_error(ErrorKind::InvalidArgument, "\"features\" holds {}: each is a \"view:column\" string", n.dump());
        names.push_back(n.get<std::string>());
    }
    Keys keys = read_keys(body["entities"]);
    const auto prepared = prepare(names, call.caller.roles);

    std::vector<FeatureJson> features(names.size());
    const auto& columns = keys.view.columns;
    if (prepared->fast && columns.size() == 1 && columns[0].dtype == DType::Int64 && columns[0].name == prepared->key)
        answer_fast(*prepared, keys.ints.front().data(), keys.view.rows, features);
    else
        answer_general(*this, *prepared, keys.view, features);
    std::string out = "{\"features\":{";
    for (size_t f = 0; f < features.size(); ++f) {
        if (f) out.push_back(',');
        features[f].write(out, names[f]);
    }
    out += "}}";
    return json_response(200, std::move(out));
}

} // namespace keel::server

// core/features/redis_online.cpp: materializations written to Redis and read back (layout in
// redis_online.hpp; the why in core/README.md).
#include "redis_online.hpp"

#include "keel/common/error.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <shared_mutex>
#include <unordered_map>

namespace keel::features::redis_online {

namespace {

constexpr size_t kBatch = 1000;  // commands per pipelined round trip
constexpr uint8_t kRowFormat = 1;

// Points readers at ARGV[2] only if they are still at ARGV[1] ('' = no pointer yet).
constexpr std::string_view kFlip = R"lua(
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1)lua";

// Drops the hash fields (materialization ids) older than ARGV[1].
constexpr std::string_view kPrune = R"lua(
local keep = tonumber(ARGV[1])
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local n = tonumber(f)
  if n and n < keep then redis.call('HDEL', KEYS[1], f) end
end
return 0)lua";

int64_t to_int(std::string_view s, bool& ok) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    ok = ec == std::errc() && p == s.data() + s.size();
    return v;
}

template <typename T>
void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

struct Reader {
    std::string_view in;
    std::string_view what;
    size_t at = 0;
    void need(size_t n) {
        if (in.size() - at < n)
            throw_error(ErrorKind::Corrupt, "online value of {} in Redis is truncated ({} bytes); materialize the "
                        "view again", what, in.size());
    }
    template <typename T>
    T get() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, in.data() + at, sizeof v);
        at += sizeof v;
        return v;
    }
    std::string_view bytes(size_t n) {
        need(n);
        auto s = in.substr(at, n);
        at += n;
        return s;
    }
};

} // namespace

std::string Pointer::text() const { return present ? fmt::format("{} {}", seq, base) : std::string(); }

std::string prefix(const std::string& ns, const ViewSpec& spec) {
    return fmt::format("keel:{}:{}:v{}:", ns, spec.name, spec.version);
}

std::string entity_key(const std::string& prefix, std::string_view entity) {
    std::string k;
    k.reserve(prefix.size() + entity.size() + 2);
    k += prefix;
    k += '{';
    k += entity;
    k += '}';
    return k;
}

std::optional<std::string> entity_of(const ViewSpec& spec, const BatchView& batch, size_t row) {
    std::string out;
    for (size_t k = 0; k < spec.join_keys.size(); ++k) {
        const ColumnView* c = batch.find(spec.join_keys[k].name);
        if (!c)
            throw_error(ErrorKind::InvalidArgument, "the keys have no column '{}' (a join key of feature view '{}')",
                        spec.join_keys[k].name, spec.name);
        if (!c->is_valid(row)) return std::nullopt;
        if (k) out += '\x1f';
        switch (c->dtype) {
            case DType::Int64: out += std::to_string(static_cast<const int64_t*>(c->values)[row]); break;
            case DType::Int32: out += std::to_string(static_cast<const int32_t*>(c->values)[row]); break;
            case DType::String: out += c->str(row); break;
            default:
                throw_error(ErrorKind::InvalidArgument, "join key '{}' of feature view '{}' is a {} column: the "
                            "online store keys entities by int64 or string keys", c->name, spec.name,
                            dtype_name(c->dtype));
        }
    }
    return out;
}

std::string encode_row(const ViewSpec& spec, const BatchView& batch, size_t row) {
    std::vector<const ColumnView*> cols;
    for (const auto* name : {&spec.event_column, &spec.created_column})
        if (const ColumnView* c = batch.find(*name)) cols.push_back(c);
    for (const auto& f : spec.features)
        if (const ColumnView* c = batch.find(f.name)) cols.push_back(c);
    std::string out;
    out.reserve(64 + cols.size() * 24);
    put<uint8_t>(out, kRowFormat);
    put<uint16_t>(out, uint16_t(cols.size()));
    for (const ColumnView* c : cols) {
        put<uint16_t>(out, uint16_t(c->name.size()));
        out += c->name;
        put<uint8_t>(out, uint8_t(c->dtype));
        put<uint32_t>(out, c->dim);
        const bool valid = c->is_valid(row);
        put<uint8_t>(out, valid ? 1 : 0);
        if (!valid) continue;
        if (c->dtype == DType::String) {
            std::string_view s = c->str(row);
            put<uint32_t>(out, uint32_t(s.size()));
            out += s;
        } else {
            const size_t w = dtype_width(c->dtype, c->dim);
            out.append(static_cast<const char*>(c->values) + row * w, w);
        }
    }
    return out;
}

Table decode_row(std::string_view bytes, std::string_view what) {
    Reader in{bytes, what};
    if (in.get<uint8_t>() != kRowFormat)
        throw_error(ErrorKind::Corrupt, "online value of {} in Redis has an unknown format; materialize the view "
                    "again with this version of Keel", what);
    Table t;
    t.rows = 1;
    const uint16_t n = in.get<uint16_t>();
    for (uint16_t i = 0; i < n; ++i) {
        Column c;
        c.rows = 1;
        c.name = std::string(in.bytes(in.get<uint16_t>()));
        const uint8_t dt = in.get<uint8_t>();
        if (dt < uint8_t(DType::Bool) || dt > uint8_t(DType::Vector))
            throw_error(ErrorKind::Corrupt, "online value of {} in Redis has a column of unknown type {}", what, dt);
        c.dtype = DType(dt);
        c.dim = in.get<uint32_t>();
        const bool valid = in.get<uint8_t>() != 0;
        if (c.dtype == DType::String) {
            c.offsets = {0, 0};
            if (valid) {
                std::string_view s = in.bytes(in.get<uint32_t>());
                c.values.assign(s.begin(), s.end());
                c.offsets[1] = int64_t(s.size());
            }
        } else {
            const size_t w = dtype_width(c.dtype, c.dim);
            if (valid) {
                std::string_view s = in.bytes(w);
                c.values.assign(s.begin(), s.end());
            } else {
                c.values.assign(w, 0);
            }
        }
        if (!valid) c.valid = {0};
        t.columns.push_back(std::move(c));
    }
    return t;
}

namespace {

// The online pointer from the reply to GET <prefix>current (absent: no materialization there).
Pointer parse_pointer(const redis::Reply& r, const redis::Location& where, const std::string& prefix) {
    Pointer p;
    if (r.type != redis::Reply::Type::String) return p;
    auto sp = r.str.find(' ');
    bool ok1 = false, ok2 = false;
    if (sp != std::string::npos) {
        p.seq = to_int(std::string_view(r.str).substr(0, sp), ok1);
        p.base = to_int(std::string_view(r.str).substr(sp + 1), ok2);
    }
    if (!ok1 || !ok2)
        throw_error(ErrorKind::Corrupt, "Redis at {} holds '{}' at {}current, not a Keel online pointer "
                    "('<seq> <base>'); was the key written by something else?", where.url, r.str, prefix);
    p.present = true;
    return p;
}

} // namespace

Pointer read_pointer(redis::Connection& c, const std::string& prefix) {
    return parse_pointer(c.call({"GET", prefix + "current"}, "reading the online pointer"), c.where(), prefix);
}

Write write(redis::Connection& c, const std::string& pre, const ViewSpec& spec, const BatchView& snapshot,
            const std::vector<size_t>& rows, std::optional<int64_t> recorded_seq) {
    Write w;
    w.previous = read_pointer(c, pre);
    redis::Reply started = c.call({"GET", pre + "seq"}, "reading the materialization counter");
    bool ok = false;
    const int64_t last_started = started.type == redis::Reply::Type::String ? to_int(started.str, ok) : 0;
    // Incremental only on top of the very materialization this store recorded, with no unfinished
    // one since (its fields could be read as newer values of entities this one does not write).
    w.full = !w.previous.present || !recorded_seq || *recorded_seq != w.previous.seq || last_started != w.previous.seq;
    redis::Reply seq = c.call({"INCR", pre + "seq"}, "starting a materialization");
    w.next.present = true;
    w.next.seq = seq.integer;
    w.next.base = w.full ? seq.integer : w.previous.base;

    std::vector<size_t> all;
    const std::vector<size_t>* todo = &rows;
    if (w.full) {
        all.resize(snapshot.rows);
        for (size_t i = 0; i < snapshot.rows; ++i) all[i] = i;
        todo = &all;
    }
    const std::string field = std::to_string(w.next.seq);
    const std::string ttl = std::to_string(spec.ttl_ms);
    w.keys.reserve(todo->size());
    for (size_t begin = 0; begin < todo->size(); begin += kBatch) {
        const size_t end = std::min(todo->size(), begin + kBatch);
        std::vector<std::string> values;
        values.reserve(end - begin);
        size_t sent = 0;
        for (size_t i = begin; i < end; ++i) {
            const size_t row = (*todo)[i];
            auto entity = entity_of(spec, snapshot, row);
            if (!entity) continue;
            w.keys.push_back(entity_key(pre, *entity));
            values.push_back(encode_row(spec, snapshot, row));
            c.append({"HSET", w.keys.back(), field, values.back()});
            ++sent;
            if (spec.ttl_ms > 0) {
                c.append({"PEXPIRE", w.keys.back(), ttl});
                ++sent;
            }
        }
        // Read every reply before raising the first error, so the connection stays in step.
        std::optional<redis::Reply> failed;
        for (size_t i = 0; i < sent; ++i) {
            redis::Reply r = c.read();
            if (r.type == redis::Reply::Type::Error && !failed) failed = std::move(r);
        }
        if (failed)
            throw_error(ErrorKind::Unavailable, "Redis at {} refused a write of materialization {} of feature view "
                        "'{}': {}; readers still see the previous one", c.where().url, w.next.seq, spec.name,
                        failed->str);
        w.written += int64_t(end - begin);
    }
    return w;
}

void flip(redis::Connection& c, const std::string& prefix, const Write& w) {
    redis::Reply r = c.call({"EVAL", kFlip, "1", prefix + "current", w.previous.text(), w.next.text()},
                            "switching readers to the new materialization");
    if (r.type != redis::Reply::Type::Integer || r.integer != 1)
        throw_error(ErrorKind::Conflict, "another materialization of {}* at {} finished while this one ran; readers "
                    "serve that one: materialize again to include what this one read", prefix, c.where().url);
}

void prune(redis::Connection& c, const std::string& prefix, const Write& w) noexcept {
    if (!w.previous.present) return;
    try {
        const std::string keep = std::to_string(w.previous.seq);
        for (size_t begin = 0; begin < w.keys.size(); begin += kBatch) {
            const size_t end = std::min(w.keys.size(), begin + kBatch);
            for (size_t i = begin; i < end; ++i) c.append({"EVAL", kPrune, "1", w.keys[i], keep});
            for (size_t i = begin; i < end; ++i) c.read();
        }
    } catch (const Error&) {
        // Leftover fields are older than what readers take; the next materialization prunes them.
    }
}

int64_t drop(redis::Connection& c, const std::string& prefix) {
    std::string pattern;  // the prefix taken literally by SCAN's glob, then anything
    for (char ch : prefix) {
        if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') pattern += '\\';
        pattern += ch;
    }
    pattern += '*';
    int64_t dropped = 0;
    std::string cursor = "0";
    do {
        redis::Reply page = c.call({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}, "listing a retired view's keys");
        if (page.type != redis::Reply::Type::Array || page.elements.size() != 2)
            throw_error(ErrorKind::Internal, "Redis answered SCAN with something other than [cursor, keys]");
        cursor = page.elements[0].str;
        std::vector<std::string_view> argv{"UNLINK"};
        for (const auto& key : page.elements[1].elements) argv.push_back(key.str);
        if (argv.size() > 1) dropped += c.call(argv, "deleting a retired view's keys").integer;
    } while (cursor != "0");
    return dropped;
}

std::vector<std::optional<std::string>> fetch(redis::Connection& c, const std::string& prefix,
                                              const std::vector<std::string>& entities, Pointer& at,
                                              std::string_view what) {
    for (int attempt = 0;; ++attempt) {
        // Without a pointer, its GET leads the first batch's pipeline: one round trip, not two
        // (Redis answers in order, so this reads exactly as the GET and then the HGETALLs).
        bool pointer_pending = !at.present;
        if (pointer_pending) c.append({"GET", prefix + "current"});
        std::vector<std::optional<std::string>> out(entities.size());
        bool moved = false;
        for (size_t begin = 0; begin < entities.size() || pointer_pending; begin += kBatch) {
            const size_t end = std::min(entities.size(), begin + kBatch);
            for (size_t i = begin; i < end; ++i) c.append({"HGETALL", entity_key(prefix, entities[i])});
            if (pointer_pending) {
                pointer_pending = false;
                redis::Reply r = c.read();
                redis::check(r, "reading the online pointer", c.where());
                at = parse_pointer(r, c.where(), prefix);
                if (!at.present) {
                    for (size_t i = begin; i < end; ++i) c.read();  // keep the connection in step
                    throw_error(ErrorKind::Unavailable, "Redis at {} holds no materialization of {} (restarted "
                                "without persistence, or flushed?): materialize it again", c.where().url, what);
                }
            }
            for (size_t i = begin; i < end; ++i) {
                redis::Reply r = c.read();
                redis::check(r, "reading online values", c.where());
                int64_t best = -1;
                size_t best_at = 0;
                bool newer = false;
                for (size_t e = 0; e + 1 < r.elements.size(); e += 2) {
                    bool ok = false;
                    int64_t f = to_int(r.elements[e].str, ok);
                    if (!ok) continue;
                    if (f > at.seq) newer = true;
                    else if (f >= at.base && f > best) {
                        best = f;
                        best_at = e + 1;
                    }
                }
                if (best >= 0) out[i] = std::move(r.elements[best_at].str);
                else if (newer) moved = true;  // pruned after a newer flip, or an unfinished write
            }
        }
        if (!moved || attempt >= 2) return out;
        Pointer now = read_pointer(c, prefix);
        if (now == at) return out;  // fields of an unfinished materialization: not values
        at = now;
        if (!at.present) continue;  // throws above
    }
}

// ---------------------------------------------------------------------------------------------
// NearCache

struct NearCache::Gen {
    Pointer at;
    mutable std::shared_mutex mu;
    std::unordered_map<int64_t, Entry> rows;
};

namespace {

constexpr size_t kMaxCached = size_t(1) << 20;  // entries per view before the cache starts over

int64_t steady_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

double number_at(const ColumnView& c) {
    switch (c.dtype) {
        case DType::Float64: return static_cast<const double*>(c.values)[0];
        case DType::Float32: return double(static_cast<const float*>(c.values)[0]);
        case DType::Int64:
        case DType::Timestamp: return double(static_cast<const int64_t*>(c.values)[0]);
        case DType::Int32: return double(static_cast<const int32_t*>(c.values)[0]);
        case DType::Bool: return static_cast<const uint8_t*>(c.values)[0] ? 1.0 : 0.0;
        default: return std::numeric_limits<double>::quiet_NaN();
    }
}

} // namespace

int64_t refresh_interval_ms() {
    if (const char* v = std::getenv("KEEL_ONLINE_REFRESH_MS"); v && *v) {
        bool ok = false;
        int64_t ms = to_int(v, ok);
        if (!ok || ms < 0)
            throw_error(ErrorKind::InvalidArgument, "KEEL_ONLINE_REFRESH_MS is '{}': expected milliseconds (>= 0)", v);
        return ms;
    }
    return 1000;
}

NearCache::NearCache(redis::Location where, std::string prefix, ViewSpec spec, std::vector<std::string> columns,
                     int64_t refresh_ms)
    : where_(std::move(where)), prefix_(std::move(prefix)), spec_(std::move(spec)), columns_(std::move(columns)),
      refresh_ms_(refresh_ms), pool_(redis::Pool::of(where_)) {
    gen_.store(std::make_shared<Gen>());
}

NearCache::~NearCache() = default;

std::shared_ptr<NearCache::Gen> NearCache::current(bool force) {
    auto gen = gen_.load();
    const int64_t now = steady_ms();
    if (!force && gen->at.present && now - checked_at_.load(std::memory_order_relaxed) < refresh_ms_) return gen;
    Pointer p = pool_->read([&](redis::Connection& c) { return read_pointer(c, prefix_); });
    if (!p.present) {
        gen_.store(std::make_shared<Gen>());  // never serve values Redis no longer holds
        throw_error(ErrorKind::Unavailable, "Redis at {} holds no materialization of feature view '{}' (version {}) "
                    "(restarted without persistence, or flushed?): run ws.features.materialize('{}') again",
                    where_.url, spec_.name, spec_.version, spec_.name);
    }
    checked_at_.store(now, std::memory_order_relaxed);
    if (p == gen->at) return gen;
    auto fresh = std::make_shared<Gen>();
    fresh->at = p;
    gen_.store(fresh);
    return fresh;
}

void NearCache::check_now() { current(true); }

std::shared_ptr<const NearCache::Gen> NearCache::entries(const int64_t* ids, size_t n, const Entry** out) {
    const std::string what = fmt::format("feature view '{}' (version {})", spec_.name, spec_.version);
    for (int attempt = 0;; ++attempt) {
        std::shared_ptr<Gen> gen = current(false);
        std::vector<int64_t> missing;
        {
            std::shared_lock lock(gen->mu);
            for (size_t i = 0; i < n; ++i) {
                auto it = gen->rows.find(ids[i]);
                out[i] = it == gen->rows.end() ? nullptr : &it->second;
                if (!out[i]) missing.push_back(ids[i]);
            }
        }
        if (missing.empty()) return gen;
        std::sort(missing.begin(), missing.end());
        missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
        std::vector<std::string> entities;
        entities.reserve(missing.size());
        for (int64_t id : missing) entities.push_back(std::to_string(id));
        Pointer at = gen->at;
        std::vector<std::optional<std::string>> blobs =
            pool_->read([&](redis::Connection& c) { return fetch(c, prefix_, entities, at, what); });
        if (!(at == gen->at)) {  // the pointer moved meanwhile: serve the new materialization only
            auto fresh = std::make_shared<Gen>();
            fresh->at = at;
            gen_.store(fresh);
            checked_at_.store(steady_ms(), std::memory_order_relaxed);
            if (attempt < 3) continue;
            throw_error(ErrorKind::Unavailable, "the online values of {} at Redis {} changed under every read "
                        "(materializations back to back?); retry", what, where_.url);
        }
        std::vector<Entry> decoded(missing.size());
        for (size_t k = 0; k < missing.size(); ++k) {
            Entry& e = decoded[k];
            e.values.assign(columns_.size(), std::numeric_limits<double>::quiet_NaN());
            e.null.assign(columns_.size(), 1);
            if (!blobs[k]) continue;
            Table row = decode_row(*blobs[k], fmt::format("entity {} of {}", missing[k], what));
            BatchView b = row.view();
            const ColumnView* ev = b.find(spec_.event_column);
            if (!ev || ev->dtype != DType::Timestamp || !ev->is_valid(0))
                throw_error(ErrorKind::Corrupt, "online value of entity {} of {} in Redis has no event time; "
                            "materialize the view again", missing[k], what);
            e.found = true;
            e.ev = static_cast<const int64_t*>(ev->values)[0];
            for (size_t j = 0; j < columns_.size(); ++j) {
                const ColumnView* c = b.find(columns_[j]);
                if (!c || !c->is_valid(0)) continue;
                e.values[j] = number_at(*c);
                e.null[j] = 0;
            }
        }
        if (gen->rows.size() + missing.size() > kMaxCached && attempt < 3) {
            // Full: start over at the same pointer (lookups still reading the old entries hold them).
            auto fresh = std::make_shared<Gen>();
            fresh->at = gen->at;
            gen_.compare_exchange_strong(gen, fresh);
            continue;
        }
        {
            std::unique_lock lock(gen->mu);
            for (size_t k = 0; k < missing.size(); ++k) gen->rows.try_emplace(missing[k], std::move(decoded[k]));
        }
        std::shared_lock lock(gen->mu);
        for (size_t i = 0; i < n; ++i) out[i] = &gen->rows.find(ids[i])->second;
        return gen;
    }
}

} // namespace keel::features::redis_online

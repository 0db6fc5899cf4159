// core/features/online.cpp: materialization, online reads and the compiled OnlineReader.
//
// The online store of a view version is a snapshot segment: one row per entity (its latest value at
// the materialization's end time), sorted by key, registered in features_online. A new
// materialization merges the previous snapshot with the rows that arrived since (new segments, and
// rows of old segments whose event time falls after the previous end), writes a new snapshot file
// and registers it; readers then switch to it. The previous snapshot file is kept (a reader in
// another process may still map it); older ones are removed.
#include "keel/features/online.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"
#include "redis_online.hpp"
#include "store_impl.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <thread>

namespace fs = std::filesystem;

namespace keel::features {

namespace {

struct OnlineRow {
    int64_t id = 0;
    std::string file;
    int64_t end_ms = 0;
    int64_t max_segment_id = 0;
    std::string online;      // '' for the local snapshot, else the Redis URL readers read
    int64_t online_seq = 0;  // the Redis materialization this row is
};

std::optional<OnlineRow> latest_online(FeatureStore& store, const ViewSpec& spec) {
    auto& db = store.workspace().db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT id, file, end_ms, max_segment_id, online, online_seq FROM features_online "
                         "WHERE view = ? AND version = ? ORDER BY id DESC LIMIT 1");
    st.bind_all(spec.name, spec.version);
    if (!st.step()) return std::nullopt;
    return OnlineRow{st.int64(0), st.text(1), st.int64(2), st.int64(3), st.text(4), st.int64(5)};
}

std::shared_ptr<const Segment> open_snapshot(FeatureStore& store, const ViewSpec& spec, const OnlineRow& row) {
    // Snapshots share the segment cache under negative ids.
    auto& impl = store.impl();
    {
        std::lock_guard lock(impl.mu);
        auto it = impl.segments.find(-row.id);
        if (it != impl.segments.end()) return it->second;
    }
    auto seg = detail::open_segment_file(store.workspace(), row.file);
    detail::check_segment_columns(*seg, spec);
    std::lock_guard lock(impl.mu);
    return impl.segments.emplace(-row.id, seg).first->second;
}

// The latest snapshot of a view version, opened. Another process may materialize twice and remove
// the file between our reading its row and opening it: then read the row again.
std::optional<std::pair<OnlineRow, std::shared_ptr<const Segment>>> load_latest(FeatureStore& store,
                                                                                const ViewSpec& spec) {
    for (int attempt = 0;; ++attempt) {
        auto row = latest_online(store, spec);
        if (!row) return std::nullopt;
        try {
            return std::make_pair(*row, open_snapshot(store, spec, *row));
        } catch (const Error&) {
            if (attempt >= 2) throw;
        }
    }
}

} // namespace

void FeatureStore::check_online(const std::string& online) {
    if (online.empty() || online == "local") return;
    redis::Pool::of(redis::Location::parse(online))->lease_live();  // a live connection, back to the pool
}

MaterializeResult FeatureStore::materialize(const std::string& name, std::optional<int64_t> end_opt,
                                            const std::optional<std::string>& online) {
    ViewSpec spec = view(name);
    const int64_t end = end_opt.value_or(now_ms());
    // Where readers read: as asked, else where the view's previous materialization went.
    std::string target;
    if (online && !online->empty() && *online != "local") target = redis::Location::parse(*online).url;
    else if (!online)
        if (auto last = latest_online(*this, spec)) target = last->online;
    std::optional<std::pair<OnlineRow, std::shared_ptr<const Segment>>> latest;
    try {
        latest = load_latest(*this, spec);
    } catch (const Error& e) {
        // A snapshot is derived data: when the previous one is damaged, rebuild from the segments.
        if (e.kind() != ErrorKind::Corrupt) throw;
    }
    std::optional<OnlineRow> prev;
    std::shared_ptr<const Segment> prev_snap;
    if (latest && latest->first.end_ms <= end) {  // going back in time: rebuild from scratch
        prev = latest->first;
        prev_snap = latest->second;
    }
    auto segs = detail::list_segments(*this, spec, std::nullopt);
    const int64_t max_seg = segs.empty() ? 0 : segs.back().id;

    std::vector<std::shared_ptr<const Segment>> sources;
    std::vector<detail::RowKeys> keys;
    std::vector<int64_t> source_ids;
    sources.push_back(prev_snap);
    keys.push_back(prev_snap ? detail::segment_keys(*this, spec, -prev->id, *prev_snap) : detail::RowKeys{});
    for (const auto& s : segs) {
        sources.push_back(s.seg);
        keys.push_back(detail::segment_keys(*this, spec, s.id, *s.seg));
        source_ids.push_back(s.id);
    }
    std::vector<detail::RowRef> cands;  // src 0: the previous snapshot, 1..: segments in id order
    int64_t changed = 0;
    for (size_t src = 0; src < sources.size(); ++src) {
        if (!sources[src]) continue;
        const Segment& seg = *sources[src];
        const int64_t* ev = static_cast<const int64_t*>(seg.column(spec.event_column)->values);
        const int64_t* cr = static_cast<const int64_t*>(seg.column(spec.created_column)->values);
        const bool old = src > 0 && prev && source_ids[src - 1] <= prev->max_segment_id;
        for (size_t r = 0; r < seg.rows(); ++r) {
            if (ev[r] > end) continue;
            if (old && ev[r] <= prev->end_ms) continue;  // already in the previous snapshot
            cands.push_back({int32_t(src), uint32_t(r), ev[r], cr[r]});
            if (src > 0) ++changed;
        }
    }
    detail::sort_by_key_and_time(cands, keys);
    std::vector<int32_t> seg_of;
    std::vector<uint32_t> row_of;
    for (size_t i = 0; i < cands.size(); ++i)
        if (i + 1 == cands.size() || detail::compare_keys(keys, cands[i], cands[i + 1]) != 0) {
            seg_of.push_back(cands[i].src);
            row_of.push_back(cands[i].row);
        }
    const size_t n = seg_of.size();
    std::vector<ColumnSpec> specs = spec.join_keys;
    specs.push_back({spec.event_column, DType::Timestamp});
    specs.push_back({spec.created_column, DType::Timestamp});
    specs.insert(specs.end(), spec.features.begin(), spec.features.end());
    Table snap;
    snap.rows = n;
    for (const auto& cs : specs) {
        std::vector<const ColumnView*> cols;
        for (const auto& s : sources) cols.push_back(s ? s->column(cs.name) : nullptr);
        Column out;
        detail::gather_column(out, cs, cols, seg_of.data(), row_of.data(), n);
        detail::compact_valid(out);
        snap.columns.push_back(std::move(out));
    }
    const std::string file = detail::write_segment_file(
        *ws_, fmt::format("online/{}/v{}/snap-{}-{}", name, spec.version, now_ms(), random_hex_id().substr(0, 8)),
        snap.view());
    MaterializeResult result{name, spec.version, end, int64_t(n), changed, 0, target, 0};
    std::vector<std::string> stale_files;
    // Redis: the new values are written first (invisible to readers), switched to inside the
    // transaction that records them, and older fields pruned after it.
    std::optional<redis::Pool::Lease> conn;
    std::optional<redis_online::Write> written;
    try {
        if (!target.empty()) {
            std::vector<size_t> rows;  // entities whose value came from a segment, not the previous snapshot
            for (size_t i = 0; i < n; ++i)
                if (seg_of[i] > 0) rows.push_back(i);
            std::optional<int64_t> recorded;
            if (prev && prev->online == target) recorded = prev->online_seq;
            conn.emplace(redis::Pool::of(redis::Location::parse(target))->lease_live());
            written = redis_online::write(**conn, redis_online::prefix(impl_->online_namespace, spec), spec,
                                          snap.view(), rows, recorded);
            result.written = int64_t(written->keys.size());
        }
    } catch (...) {
        detail::remove_segment_file(*ws_, file);
        throw;
    }
    try {
        auto& db = ws_->db();
        storage::Transaction tx(db);
        view(name);  // retired meanwhile (by another process): NotFound, and no snapshot registered
        result.snapshot_id = db.prepare("INSERT INTO features_online(view, version, file, end_ms, max_segment_id, "
                                        "entities, created_at, online, online_seq) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?) "
                                        "RETURNING id")
                                 .bind_all(name, spec.version, file, end, max_seg, int64_t(n), now_ms(), target,
                                           written ? written->next.seq : int64_t(0))
                                 .insert_id();
        // Keep this snapshot and the one before it; older files go.
        auto st = db.prepare("SELECT id, file FROM features_online WHERE view = ? AND id < ? ORDER BY id DESC");
        st.bind_all(name, result.snapshot_id);
        int kept = 0;
        std::vector<int64_t> drop;
        while (st.step()) {
            if (kept++ < 1) continue;
            drop.push_back(st.int64(0));
            stale_files.push_back(st.text(1));
        }
        for (int64_t id : drop) db.prepare("DELETE FROM features_online WHERE id = ?").bind_all(id).run();
        // Last before the commit: a failed switch rolls the record back, and a commit that fails
        // after it leaves Redis ahead of the record, which makes the next materialization a full one.
        if (written) redis_online::flip(**conn, redis_online::prefix(impl_->online_namespace, spec), *written);
        tx.commit();
    } catch (...) {
        detail::remove_segment_file(*ws_, file);
        throw;
    }
    if (written) redis_online::prune(**conn, redis_online::prefix(impl_->online_namespace, spec), *written);
    for (const auto& f : stale_files)
        detail::remove_segment_file(*ws_, f);  // mapped copies stay valid until unmapped
    detail::refresh_readers(*this);  // readers of this store switch to the new snapshot
    return result;
}

void detail::refresh_readers(FeatureStore& store) {
    std::vector<std::shared_ptr<OnlineReader>> live;
    {
        auto& impl = store.impl();
        std::lock_guard lock(impl.mu);
        auto& rs = impl.readers;
        rs.erase(std::remove_if(rs.begin(), rs.end(), [](auto& w) { return w.expired(); }), rs.end());
        for (auto& w : rs)
            if (auto r = w.lock()) live.push_back(r);
    }
    for (auto& r : live) {
        try {
            r->refresh();
        } catch (const Error&) {
            // A reader whose plan cannot be rebuilt (a view moved to a version not yet
            // materialized) keeps its last good snapshot; its owner sees the error on refresh().
        }
    }
}

namespace {

// Where get_online finds each key's row: sources[seg_of[i]] at row_of[i] (seg_of[i] < 0: none), and
// the row's event time.
struct Located {
    std::vector<const BatchView*> sources;
    std::vector<int32_t> seg_of;
    std::vector<uint32_t> row_of;
    std::vector<int64_t> ev;
    std::shared_ptr<const Segment> snap;  // local: the snapshot the rows are in
    std::vector<Table> fetched;           // Redis: one decoded row per entity found
};

// In the local snapshot: a binary search per key.
void locate_local(FeatureStore& store, const ViewSpec& spec, int64_t snapshot_id,
                  std::shared_ptr<const Segment> snap, const BatchView& keys, Located& at) {
    const size_t n = keys.rows;
    detail::RowKeys skeys = detail::segment_keys(store, spec, -snapshot_id, *snap);
    detail::RowKeys qkeys = detail::batch_keys(spec, keys, "the keys");
    const int64_t* sev = static_cast<const int64_t*>(snap->column(spec.event_column)->values);
    const size_t rows = snap->rows();
    for (size_t i = 0; i < n; ++i) {
        if (!qkeys.ok(i)) continue;
        size_t l = 0, r = rows;
        if (qkeys.is_int) {
            int64_t k = qkeys.ints[i];
            while (l < r) {
                size_t m = (l + r) / 2;
                if (skeys.ints[m] < k) l = m + 1; else r = m;
            }
            if (l >= rows || skeys.ints[l] != k) continue;
        } else {
            const std::string& k = (*qkeys.strs)[i];
            while (l < r) {
                size_t m = (l + r) / 2;
                if ((*skeys.strs)[m] < k) l = m + 1; else r = m;
            }
            if (l >= rows || (*skeys.strs)[l] != k) continue;
        }
        at.seg_of[i] = 0;
        at.row_of[i] = uint32_t(l);
        at.ev[i] = sev[l];
    }
    at.snap = std::move(snap);
    at.sources = {&at.snap->batch()};
}

// In Redis: one pipelined read of the distinct keys at the current materialization.
void locate_redis(FeatureStore& store, const ViewSpec& spec, const std::string& url, const BatchView& keys,
                  Located& at) {
    detail::batch_keys(spec, keys, "the keys");  // the same errors as locally for a missing or mistyped key
    const size_t n = keys.rows;
    std::map<std::string, size_t> index;
    std::vector<std::string> entities;
    std::vector<int64_t> entity_of_row(n, -1);
    for (size_t i = 0; i < n; ++i) {
        auto e = redis_online::entity_of(spec, keys, i);
        if (!e) continue;
        auto [it, added] = index.try_emplace(*e, entities.size());
        if (added) entities.push_back(*e);
        entity_of_row[i] = int64_t(it->second);
    }
    const std::string what = fmt::format("feature view '{}' (version {})", spec.name, spec.version);
    redis_online::Pointer ptr;
    const std::string pre = redis_online::prefix(store.impl().online_namespace, spec);
    std::vector<std::optional<std::string>> blobs = redis::Pool::of(redis::Location::parse(url))->read(
        [&](redis::Connection& c) { return redis_online::fetch(c, pre, entities, ptr, what); });
    // Decoded rows stay in at.fetched; the caller points at.sources at their views.
    std::vector<int32_t> source_of(entities.size(), -1);
    std::vector<int64_t> ev_of(entities.size(), 0);
    at.fetched.reserve(entities.size());
    for (size_t k = 0; k < entities.size(); ++k) {
        if (!blobs[k]) continue;
        const std::string whose = fmt::format("entity '{}' of {}", entities[k], what);
        Table t = redis_online::decode_row(*blobs[k], whose);
        bool has_ev = false;
        for (const auto& c : t.columns) {
            if (c.name == spec.event_column && c.dtype == DType::Timestamp && (c.valid.empty() || c.valid[0])) {
                std::memcpy(&ev_of[k], c.values.data(), sizeof(int64_t));
                has_ev = true;
            }
            // Rows decode as their writer's types; readers index them by the view's.
            const ColumnSpec* cs = spec.feature(c.name);
            if (cs && (cs->dtype != c.dtype || (cs->dtype == DType::Vector && cs->dim != c.dim)))
                throw_error(ErrorKind::Corrupt, "online value of {} in Redis has column '{}' as {}, the view "
                            "declares {}; materialize the view again", whose, c.name, dtype_name(c.dtype),
                            dtype_name(cs->dtype));
        }
        if (!has_ev)
            throw_error(ErrorKind::Corrupt, "online value of {} in Redis has no event time; materialize the view "
                        "again", whose);
        source_of[k] = int32_t(at.fetched.size());
        at.fetched.push_back(std::move(t));
    }
    at.sources.assign(at.fetched.size(), nullptr);
    for (size_t i = 0; i < n; ++i) {
        if (entity_of_row[i] < 0) continue;
        const size_t k = size_t(entity_of_row[i]);
        if (source_of[k] < 0) continue;
        at.seg_of[i] = source_of[k];
        at.row_of[i] = 0;
        at.ev[i] = ev_of[k];
    }
}

} // namespace

// What get_online reads of the catalog for one view: its spec, where its latest materialization is
// and, for the role, which PII columns read masked. Built once per change token; immutable.
struct FeatureStore::Impl::OnlineCatalog {
    struct View {
        ViewSpec spec;
        bool materialized = false;
        std::string online;        // the Redis URL readers read; '' for the local snapshot
        int64_t snapshot_id = 0;   // local: features_online.id of `snap`
        std::shared_ptr<const Segment> snap;
        std::set<std::string> masked;  // PII columns the role reads masked
    };
    uint64_t token = 0;
    std::string role;
    std::map<std::string, std::shared_ptr<const View>> views;
};

namespace {

using OnlineView = FeatureStore::Impl::OnlineCatalog::View;

std::shared_ptr<const OnlineView> load_online_view(FeatureStore& store, const std::string& name,
                                                   const std::string& role) {
    auto v = std::make_shared<OnlineView>();
    v->spec = store.view(name);
    if (const auto row = latest_online(store, v->spec)) {
        v->materialized = true;
        if (row->online.empty()) {
            auto latest = load_latest(store, v->spec);
            if (!latest) v->materialized = false;
            else {
                v->snapshot_id = latest->first.id;
                v->snap = latest->second;
            }
        } else {
            v->online = row->online;
        }
    }
    for (const auto& c : v->spec.features)
        if (c.pii && !store.can_read(role, name, c.name)) v->masked.insert(c.name);
    return v;
}

// The catalog entries of `views`, from the cache while the workspace's change token stays (every
// commit, in any process, moves it) and the role is the same. Inside an open transaction its own
// writes do not move the token yet: read through, and keep nothing.
std::vector<std::shared_ptr<const OnlineView>> online_views(FeatureStore& store, const std::vector<std::string>& views) {
    auto& db = store.workspace().db();
    // The token is read before the catalog it guards: a commit on another connection in between
    // only makes the next call read again.
    auto guard = db.lock();
    const std::string role = store.workspace().role();
    std::vector<std::shared_ptr<const OnlineView>> out;
    out.reserve(views.size());
    if (db.in_transaction()) {
        for (const auto& name : views) out.push_back(load_online_view(store, name, role));
        return out;
    }
    const uint64_t token = db.change_token();
    auto& impl = store.impl();
    std::shared_ptr<FeatureStore::Impl::OnlineCatalog> catalog;
    {
        std::lock_guard lock(impl.online_mu);
        if (!impl.online_catalog || impl.online_catalog->token != token || impl.online_catalog->role != role) {
            impl.online_catalog = std::make_shared<FeatureStore::Impl::OnlineCatalog>();
            impl.online_catalog->token = token;
            impl.online_catalog->role = role;
        }
        catalog = impl.online_catalog;
    }
    for (const auto& name : views) {
        std::shared_ptr<const OnlineView> v;
        {
            std::lock_guard lock(impl.online_mu);
            if (auto it = catalog->views.find(name); it != catalog->views.end()) v = it->second;
        }
        if (!v) {
            v = load_online_view(store, name, role);
            std::lock_guard lock(impl.online_mu);
            catalog->views.emplace(name, v);
        }
        out.push_back(std::move(v));
    }
    return out;
}

} // namespace

std::vector<ColumnSpec> FeatureStore::online_keys(const std::vector<std::string>& features) {
    std::vector<std::string> views;
    for (const auto& f : features) {
        std::string view = FeatureRef::parse(f).view;
        if (std::find(views.begin(), views.end(), view) == views.end()) views.push_back(std::move(view));
    }
    std::vector<ColumnSpec> keys;
    for (const auto& plan : online_views(*this, views))
        for (const auto& k : plan->spec.join_keys)
            if (std::none_of(keys.begin(), keys.end(), [&](const ColumnSpec& c) { return c.name == k.name; }))
                keys.push_back(k);
    return keys;
}

Table FeatureStore::get_online(const std::vector<std::string>& features, const BatchView& keys,
                               std::optional<int64_t> now_opt) {
    const int64_t now = now_opt.value_or(now_ms());
    if (features.empty()) throw_error(ErrorKind::InvalidArgument, "get_online needs at least one feature");
    std::vector<FeatureRef> refs;
    std::vector<std::string> views;
    for (const auto& f : features) {
        refs.push_back(FeatureRef::parse(f));
        if (std::find(views.begin(), views.end(), refs.back().view) == views.end()) views.push_back(refs.back().view);
    }
    std::map<std::string, int> name_count;
    for (const auto& r : refs) name_count[r.column]++;
    const size_t n = keys.rows;
    Table table;
    table.rows = n;
    std::vector<Column> feature_cols(refs.size());
    std::vector<Column> meta_cols;
    const auto plans = online_views(*this, views);
    for (size_t vi = 0; vi < views.size(); ++vi) {
        const std::string& vname = views[vi];
        const OnlineView& plan = *plans[vi];
        const ViewSpec& spec = plan.spec;
        for (const auto& r : refs)
            if (r.view == vname && !spec.feature(r.column))
                throw_error(ErrorKind::NotFound, "feature view '{}' has no column '{}'", vname, r.column);
        if (!plan.materialized)
            throw_error(ErrorKind::NotFound, "feature view '{}' (version {}) was never materialized: run "
                        "ws.features.materialize('{}') first", vname, spec.version, vname);
        Located at;
        at.seg_of.assign(n, -1);
        at.row_of.assign(n, 0);
        at.ev.assign(n, 0);
        std::vector<BatchView> fetched_views;
        if (plan.online.empty()) {
            locate_local(*this, spec, plan.snapshot_id, plan.snap, keys, at);
        } else {
            locate_redis(*this, spec, plan.online, keys, at);
            fetched_views.reserve(at.fetched.size());
            for (size_t s = 0; s < at.fetched.size(); ++s) {
                fetched_views.push_back(at.fetched[s].view());
                at.sources[s] = &fetched_views.back();
            }
        }
        Column ev_col, age_col, stale_col;
        detail::prepare_column(ev_col, {vname + "__" + spec.event_column, DType::Timestamp}, n);
        detail::prepare_column(age_col, {vname + "__age_ms", DType::Int64}, n);
        detail::prepare_column(stale_col, {vname + "__stale", DType::Bool}, n);
        stale_col.valid.assign(n, 1);
        for (size_t i = 0; i < n; ++i) {
            if (at.seg_of[i] < 0) continue;
            int64_t age = now - at.ev[i];
            reinterpret_cast<int64_t*>(ev_col.values.data())[i] = at.ev[i];
            ev_col.valid[i] = 1;
            reinterpret_cast<int64_t*>(age_col.values.data())[i] = age;
            age_col.valid[i] = 1;
            bool stale = spec.ttl_ms > 0 && age > spec.ttl_ms;
            stale_col.values[i] = stale ? 1 : 0;
            if (stale) at.seg_of[i] = -1;
        }
        for (size_t f = 0; f < refs.size(); ++f) {
            if (refs[f].view != vname) continue;
            const ColumnSpec& cs = *spec.feature(refs[f].column);
            std::vector<const ColumnView*> cols;
            for (const BatchView* b : at.sources) cols.push_back(b->find(cs.name));
            Column& out = feature_cols[f];
            detail::gather_column(out, cs, cols, at.seg_of.data(), at.row_of.data(), n);
            if (plan.masked.count(cs.name)) detail::mask(*this, out);
            detail::compact_valid(out);
            if (name_count[cs.name] > 1) out.name = vname + "__" + cs.name;
        }
        meta_cols.push_back(std::move(ev_col));
        meta_cols.push_back(std::move(age_col));
        meta_cols.push_back(std::move(stale_col));
    }
    for (auto& c : feature_cols) table.columns.push_back(std::move(c));
    for (auto& c : meta_cols) table.columns.push_back(std::move(c));
    return table;
}

// ---------------------------------------------------------------------------------------------
// OnlineReader

struct OnlineReader::Plan {
    struct View {
        std::shared_ptr<const Segment> snap;
        int64_t online_id = 0;
        int64_t ttl_ms = 0;
        const int64_t* ev = nullptr;
        // Open addressing: slots hold a row or kEmpty; keys read from the snapshot's key column.
        const int64_t* keys = nullptr;
        std::vector<uint32_t> slots;
        uint64_t mask = 0;
        int shift = 0;
        // A view materialized to Redis: no snapshot, its rows come from the near-cache.
        std::shared_ptr<redis_online::NearCache> cache;
    };
    struct Out {
        size_t view = 0;
        const ColumnView* col = nullptr;  // nullptr: missing, always NaN (masking is the reader's access_)
        DType dtype = DType::Float64;
        size_t slot = 0;  // Redis views: the index of the value in a near-cache entry
    };
    static constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();
    std::vector<View> views;
    std::vector<Out> outs;
    std::string key;
    bool remote = false;  // some view reads Redis

    uint32_t find(const View& v, int64_t id) const {
        if (v.slots.empty()) return kEmpty;
        uint64_t h = (uint64_t(id) * 0x9E3779B97F4A7C15ull) >> v.shift;
        while (true) {
            uint32_t r = v.slots[h];
            if (r == kEmpty || v.keys[r] == id) return r;
            h = (h + 1) & v.mask;
        }
    }
};

namespace {

// The live view `name`, or nullopt when it was retired and `allow_retired` (a reader refreshing: the
// view's values are gone, its features read NaN); otherwise a retired view is NotFound.
std::optional<ViewSpec> reader_view(FeatureStore& store, const std::string& name, bool allow_retired) {
    if (allow_retired && detail::retirement(store, name)) return std::nullopt;
    return store.view(name);
}

// A reader is built over live views only; a refresh (`allow_retired`) keeps a view retired since
// the reader was made as one without a snapshot, so no value of it is served any more.
std::shared_ptr<const OnlineReader::Plan> build_plan(FeatureStore& store, const std::vector<std::string>& features,
                                                     const std::string& role, bool allow_retired = false) {
    auto plan = std::make_shared<OnlineReader::Plan>();
    std::map<std::string, size_t> view_index;
    std::vector<std::optional<ViewSpec>> specs;
    for (const auto& f : features) {
        FeatureRef ref = FeatureRef::parse(f);
        auto it = view_index.find(ref.view);
        if (it == view_index.end()) {
            std::optional<ViewSpec> live = reader_view(store, ref.view, allow_retired);
            if (!live) {
                if (plan->views.size() >= 32)
                    throw_error(ErrorKind::InvalidArgument, "online_reader reads at most 32 feature views at once");
                plan->key += fmt::format("{}=retired;", ref.view);
                it = view_index.emplace(ref.view, plan->views.size()).first;
                plan->views.emplace_back();  // no snapshot: every lookup misses
                specs.push_back(std::nullopt);
                OnlineReader::Plan::Out out;
                out.view = it->second;
                plan->outs.push_back(out);
                continue;
            }
            ViewSpec spec = *live;
            if (!spec.int_key())
                throw_error(ErrorKind::InvalidArgument,
                            "online_reader needs a single int64 join key; feature view '{}' has another key: use "
                            "get_online()", ref.view);
            if (plan->views.size() >= 32)
                throw_error(ErrorKind::InvalidArgument, "online_reader reads at most 32 feature views at once");
            auto row = latest_online(store, spec);
            if (row && !row->online.empty()) {
                std::vector<std::string> columns;  // what this reader reads of the view, in order
                for (const auto& g : features) {
                    FeatureRef r = FeatureRef::parse(g);
                    if (r.view == ref.view) columns.push_back(r.column);
                }
                OnlineReader::Plan::View v;
                v.online_id = row->id;
                v.ttl_ms = spec.ttl_ms;
                v.cache = std::make_shared<redis_online::NearCache>(
                    redis::Location::parse(row->online), redis_online::prefix(store.impl().online_namespace, spec),
                    spec, columns, redis_online::refresh_interval_ms());
                v.cache->check_now();  // Redis down or without the view: say so now, not at the first lookup
                plan->remote = true;
                plan->key += fmt::format("{}={};", ref.view, row->id);
                it = view_index.emplace(ref.view, plan->views.size()).first;
                plan->views.push_back(std::move(v));
                specs.push_back(spec);
            } else {
                auto latest = load_latest(store, spec);
                if (!latest)
                    throw_error(ErrorKind::NotFound, "feature view '{}' (version {}) was never materialized: run "
                                "ws.features.materialize('{}') first", ref.view, spec.version, ref.view);
                OnlineReader::Plan::View v;
                const OnlineRow* row = &latest->first;
                v.snap = latest->second;
                v.online_id = row->id;
                v.ttl_ms = spec.ttl_ms;
                v.ev = static_cast<const int64_t*>(v.snap->column(spec.event_column)->values);
                v.keys = static_cast<const int64_t*>(v.snap->column(spec.join_keys[0].name)->values);
                size_t rows = v.snap->rows();
                size_t cap = 16;
                int bits = 4;
                while (cap < rows * 2) {
                    cap *= 2;
                    ++bits;
                }
                v.slots.assign(cap, OnlineReader::Plan::kEmpty);
                v.mask = cap - 1;
                v.shift = 64 - bits;
                for (size_t r = 0; r < rows; ++r) {
                    uint64_t h = (uint64_t(v.keys[r]) * 0x9E3779B97F4A7C15ull) >> v.shift;
                    while (v.slots[h] != OnlineReader::Plan::kEmpty) h = (h + 1) & v.mask;
                    v.slots[h] = uint32_t(r);
                }
                plan->key += fmt::format("{}={};", ref.view, row->id);
                it = view_index.emplace(ref.view, plan->views.size()).first;
                plan->views.push_back(std::move(v));
                specs.push_back(spec);
            }
        }
        OnlineReader::Plan::Out out;
        out.view = it->second;
        if (!specs[it->second]) {  // retired: nothing to read
            plan->outs.push_back(out);
            continue;
        }
        const ViewSpec& spec = *specs[it->second];
        const ColumnSpec* cs = spec.feature(ref.column);
        if (!cs) throw_error(ErrorKind::NotFound, "feature view '{}' has no column '{}'", ref.view, ref.column);
        if (cs->dtype == DType::String || cs->dtype == DType::Vector)
            throw_error(ErrorKind::InvalidArgument,
                        "feature '{}' is a {} column: online_reader returns numbers only; use get_online()", f,
                        dtype_name(cs->dtype));
        out.dtype = cs->dtype;
        if (plan->views[it->second].cache) {
            for (size_t j = 0; j < plan->outs.size(); ++j)
                if (plan->outs[j].view == it->second) ++out.slot;  // the view's columns, in order
        } else {
            out.col = plan->views[it->second].snap->column(cs->name);
        }
        plan->outs.push_back(out);
    }
    return plan;
}

inline double value_at(const ColumnView& c, DType t, uint32_t r) {
    if (c.valid && !c.valid[r]) return std::numeric_limits<double>::quiet_NaN();
    switch (t) {
        case DType::Float64: return static_cast<const double*>(c.values)[r];
        case DType::Float32: return double(static_cast<const float*>(c.values)[r]);
        case DType::Int64:
        case DType::Timestamp: return double(static_cast<const int64_t*>(c.values)[r]);
        case DType::Int32: return double(static_cast<const int32_t*>(c.values)[r]);
        case DType::Bool: return static_cast<const uint8_t*>(c.values)[r] ? 1.0 : 0.0;
        default: return std::numeric_limits<double>::quiet_NaN();
    }
}

} // namespace

std::atomic<uint64_t> detail::grants_epoch{1};

OnlineReader::OnlineReader(FeatureStore& store, std::vector<std::string> features)
    : store_(store), features_(std::move(features)), role_(store.workspace().role()) {
    if (features_.empty()) throw_error(ErrorKind::InvalidArgument, "online_reader needs at least one feature");
    access_ = std::make_unique<std::atomic<Access>[]>(features_.size());
    for (size_t j = 0; j < features_.size(); ++j) access_[j].store(Access::Masked);
    plan_.store(build_plan(store_, features_, role_));
    recheck_grants();
}

void OnlineReader::recheck_grants() {
    std::lock_guard lock(refresh_mu_);
    // Epoch and generation first: a change racing with this check is seen by the next one.
    uint64_t epoch = detail::grants_epoch.load(std::memory_order_acquire);
    checked_generation_.store(storage::read_generation(store_.workspace().db()));
    for (size_t j = 0; j < features_.size(); ++j) {
        FeatureRef ref = FeatureRef::parse(features_[j]);
        std::optional<ViewSpec> spec = reader_view(store_, ref.view, true);
        const ColumnSpec* cs = spec ? spec->feature(ref.column) : nullptr;
        Access a = Access::Masked;  // also for a retired view (it has no values to show)
        if (cs && !cs->pii) a = Access::Open;
        else if (cs && store_.can_read(role_, ref.view, ref.column)) a = Access::Granted;
        access_[j].store(a, std::memory_order_release);
    }
    checked_epoch_.store(epoch, std::memory_order_release);
}

OnlineReader::~OnlineReader() = default;

namespace {

// The one lookup loop: values, and with kStatus also why each NaN is one (the plain lookup compiles
// without the status stores, so it pays nothing for them).
template <bool kStatus>
void lookup_rows(const OnlineReader::Plan& plan, const std::atomic<OnlineReader::Access>* access,
                 bool grants_current, const int64_t* ids, size_t n, double* out, OnlineReader::Status* status,
                 int64_t now) {
    using Plan = OnlineReader::Plan;
    using Access = OnlineReader::Access;
    using Status = OnlineReader::Status;
    using Entry = redis_online::NearCache::Entry;
    constexpr size_t kMaxViews = 32;
    uint32_t rows[kMaxViews];
    Status why[kMaxViews];
    const Entry* entry[kMaxViews] = {};
    const size_t nv = std::min(plan.views.size(), kMaxViews);
    const size_t w = plan.outs.size();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // Views in Redis: every id's entry first (one round trip for the ones not cached), each view's
    // entries from one materialization; `held` keeps them alive for this call.
    std::vector<const Entry*> entries;
    std::vector<std::shared_ptr<const redis_online::NearCache::Gen>> held;
    if (plan.remote) {
        entries.assign(n * nv, nullptr);
        for (size_t v = 0; v < nv; ++v)
            if (plan.views[v].cache) held.push_back(plan.views[v].cache->entries(ids, n, entries.data() + v * n));
    }
    for (size_t i = 0; i < n; ++i) {
        for (size_t v = 0; v < nv; ++v) {
            const Plan::View& view = plan.views[v];
            if (view.cache) {
                const Entry* e = entries[v * n + i];
                const bool found = e && e->found;
                why[v] = found ? Status::Ok : Status::MissingEntity;
                entry[v] = found ? e : nullptr;
                if (found && view.ttl_ms > 0 && now - e->ev > view.ttl_ms) {
                    entry[v] = nullptr;
                    why[v] = Status::Stale;
                }
                rows[v] = entry[v] ? 0 : Plan::kEmpty;
                continue;
            }
            uint32_t r = plan.find(view, ids[i]);
            why[v] = r == Plan::kEmpty ? Status::MissingEntity : Status::Ok;
            if (r != Plan::kEmpty && view.ttl_ms > 0 && now - view.ev[r] > view.ttl_ms) {
                r = Plan::kEmpty;
                why[v] = Status::Stale;
            }
            rows[v] = r;
        }
        double* o = out + i * w;
        for (size_t j = 0; j < w; ++j) {
            const Plan::Out& c = plan.outs[j];
            const uint32_t r = c.view < nv ? rows[c.view] : Plan::kEmpty;
            const Access a = access[j].load(std::memory_order_relaxed);
            Status st = Status::Ok;
            if (r == Plan::kEmpty) {
                o[j] = nan;
                st = c.view < nv ? why[c.view] : Status::MissingEntity;
            } else if (!(a == Access::Open || (a == Access::Granted && grants_current))) {
                o[j] = nan;
                st = Status::Masked;
            } else if (plan.views[c.view].cache) {
                const Entry* e = entry[c.view];
                o[j] = e->values[c.slot];
                if (e->null[c.slot]) st = Status::Null;
            } else if (!c.col) {  // the snapshot has no such column (added to the view since)
                o[j] = nan;
                st = Status::Null;
            } else {
                o[j] = value_at(*c.col, c.dtype, r);
                if (c.col->valid && !c.col->valid[r]) st = Status::Null;
            }
            if constexpr (kStatus) status[i * w + j] = st;
        }
    }
}

} // namespace

bool OnlineReader::grants_current() const {
    // Granted PII shows only while no grant or revoke happened since the last check (fail closed).
    return checked_epoch_.load(std::memory_order_acquire) == detail::grants_epoch.load(std::memory_order_acquire);
}

void OnlineReader::lookup(const int64_t* ids, size_t n, double* out, int64_t now) const {
    lookup_rows<false>(*plan_.load(), access_.get(), grants_current(), ids, n, out, nullptr, now);
}

void OnlineReader::lookup(const int64_t* ids, size_t n, double* out) const { lookup(ids, n, out, now_ms()); }

void OnlineReader::lookup(const int64_t* ids, size_t n, double* out, Status* status, int64_t now) const {
    lookup_rows<true>(*plan_.load(), access_.get(), grants_current(), ids, n, out, status, now);
}

void OnlineReader::event_times(size_t feature, const int64_t* ids, size_t n, int64_t* out) const {
    const auto plan = plan_.load();
    const Plan::View& view = plan->views.at(plan->outs.at(feature).view);
    if (view.cache) {
        std::vector<const redis_online::NearCache::Entry*> entries(n);
        auto held = view.cache->entries(ids, n, entries.data());
        for (size_t i = 0; i < n; ++i)
            out[i] = entries[i]->found ? entries[i]->ev : std::numeric_limits<int64_t>::min();
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        const uint32_t r = plan->find(view, ids[i]);
        out[i] = r == Plan::kEmpty ? std::numeric_limits<int64_t>::min() : view.ev[r];
    }
}

bool OnlineReader::refresh() {
    bool switched = false;
    {
        std::lock_guard lock(refresh_mu_);
        std::string current = plan_.load()->key;
        std::string latest;
        std::set<std::string> seen;
        for (const auto& f : features_) {
            FeatureRef ref = FeatureRef::parse(f);
            if (!seen.insert(ref.view).second) continue;
            std::optional<ViewSpec> spec = reader_view(store_, ref.view, true);
            if (!spec) {
                latest += fmt::format("{}=retired;", ref.view);
                continue;
            }
            auto row = latest_online(store_, *spec);
            latest += fmt::format("{}={};", ref.view, row ? row->id : 0);
        }
        if (latest != current) {
            plan_.store(build_plan(store_, features_, role_, true));
            switched = true;
        } else {
            for (const auto& v : plan_.load()->views)
                if (v.cache) v.cache->check_now();  // a materialization by another process
        }
    }
    // Grants changed by another process (they bump the workspace generation) or by another handle
    // in this one, or a new view version that may mark other columns PII: check them again.
    if (switched || storage::read_generation(store_.workspace().db()) != checked_generation_.load() ||
        checked_epoch_.load() != detail::grants_epoch.load())
        recheck_grants();
    return switched;
}

std::string OnlineReader::snapshot_key() const { return plan_.load()->key; }

bool OnlineReader::remote() const { return plan_.load()->remote; }

std::shared_ptr<OnlineReader> FeatureStore::online_reader(const std::vector<std::string>& features) {
    auto reader = std::make_shared<OnlineReader>(*this, features);
    std::lock_guard lock(impl_->mu);
    auto& rs = impl_->readers;  // a long-lived store makes readers again and again: drop the dead ones
    rs.erase(std::remove_if(rs.begin(), rs.end(), [](auto& w) { return w.expired(); }), rs.end());
    rs.push_back(reader);
    return reader;
}

} // namespace keel::features

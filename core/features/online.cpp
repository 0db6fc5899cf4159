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
};

std::optional<OnlineRow> latest_online(FeatureStore& store, const ViewSpec& spec) {
    auto& db = store.workspace().db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT id, file, end_ms, max_segment_id FROM features_online WHERE view = ? AND version = ? "
                         "ORDER BY id DESC LIMIT 1");
    st.bind_all(spec.name, spec.version);
    if (!st.step()) return std::nullopt;
    return OnlineRow{st.int64(0), st.text(1), st.int64(2), st.int64(3)};
}

std::shared_ptr<const Segment> open_snapshot(FeatureStore& store, const ViewSpec& spec, const OnlineRow& row) {
    // Snapshots share the segment cache under negative ids.
    auto& impl = store.impl();
    {
        std::lock_guard lock(impl.mu);
        auto it = impl.segments.find(-row.id);
        if (it != impl.segments.end()) return it->second;
    }
    auto seg = Segment::open(store.workspace().module_dir("features") / row.file);
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

MaterializeResult FeatureStore::materialize(const std::string& name, std::optional<int64_t> end_opt) {
    ViewSpec spec = view(name);
    const int64_t end = end_opt.value_or(now_ms());
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
    fs::path rel = fs::path("online") / name / fmt::format("v{}", spec.version) /
                   fmt::format("snap-{}-{}.kseg", now_ms(), random_hex_id().substr(0, 8));
    fs::path full = ws_->module_dir("features") / rel;
    fs::create_directories(full.parent_path());
    Segment::write(full, snap.view());
    MaterializeResult result{name, spec.version, end, int64_t(n), changed, 0};
    std::vector<std::string> stale_files;
    try {
        auto& db = ws_->db();
        storage::Transaction tx(db);
        view(name);  // retired meanwhile (by another process): NotFound, and no snapshot registered
        result.snapshot_id = db.prepare("INSERT INTO features_online(view, version, file, end_ms, max_segment_id, "
                                        "entities, created_at) VALUES(?, ?, ?, ?, ?, ?, ?) RETURNING id")
                                 .bind_all(name, spec.version, rel.string(), end, max_seg, int64_t(n), now_ms())
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
        tx.commit();
    } catch (...) {
        std::error_code ec;
        fs::remove(full, ec);
        throw;
    }
    for (const auto& f : stale_files) {
        std::error_code ec;
        fs::remove(ws_->module_dir("features") / f, ec);  // mapped copies stay valid until unmapped
    }
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
    const std::string role = ws_->role();
    for (const auto& vname : views) {
        ViewSpec spec = view(vname);
        for (const auto& r : refs)
            if (r.view == vname && !spec.feature(r.column))
                throw_error(ErrorKind::NotFound, "feature view '{}' has no column '{}'", vname, r.column);
        auto latest = load_latest(*this, spec);
        if (!latest)
            throw_error(ErrorKind::NotFound, "feature view '{}' (version {}) was never materialized: run "
                        "ws.features.materialize('{}') first", vname, spec.version, vname);
        const OnlineRow* row = &latest->first;
        auto snap = latest->second;
        detail::RowKeys skeys = detail::segment_keys(*this, spec, -row->id, *snap);
        detail::RowKeys qkeys = detail::batch_keys(spec, keys, "the keys");
        const int64_t* sev = static_cast<const int64_t*>(snap->column(spec.event_column)->values);
        std::vector<int32_t> seg_of(n, -1);
        std::vector<uint32_t> row_of(n, 0);
        Column ev_col, age_col, stale_col;
        detail::prepare_column(ev_col, {vname + "__" + spec.event_column, DType::Timestamp}, n);
        detail::prepare_column(age_col, {vname + "__age_ms", DType::Int64}, n);
        detail::prepare_column(stale_col, {vname + "__stale", DType::Bool}, n);
        stale_col.valid.assign(n, 1);
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
            int64_t age = now - sev[l];
            reinterpret_cast<int64_t*>(ev_col.values.data())[i] = sev[l];
            ev_col.valid[i] = 1;
            reinterpret_cast<int64_t*>(age_col.values.data())[i] = age;
            age_col.valid[i] = 1;
            bool stale = spec.ttl_ms > 0 && age > spec.ttl_ms;
            stale_col.values[i] = stale ? 1 : 0;
            if (!stale) {
                seg_of[i] = 0;
                row_of[i] = uint32_t(l);
            }
        }
        for (size_t f = 0; f < refs.size(); ++f) {
            if (refs[f].view != vname) continue;
            const ColumnSpec& cs = *spec.feature(refs[f].column);
            std::vector<const ColumnView*> cols{snap->column(cs.name)};
            Column& out = feature_cols[f];
            detail::gather_column(out, cs, cols, seg_of.data(), row_of.data(), n);
            detail::mask_if_needed(*this, role, vname, cs, out);
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
    };
    struct Out {
        size_t view = 0;
        const ColumnView* col = nullptr;  // nullptr: missing, always NaN (masking is the reader's access_)
        DType dtype = DType::Float64;
    };
    static constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();
    std::vector<View> views;
    std::vector<Out> outs;
    std::string key;

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
            auto latest = load_latest(store, spec);
            if (!latest)
                throw_error(ErrorKind::NotFound, "feature view '{}' (version {}) was never materialized: run "
                            "ws.features.materialize('{}') first", ref.view, spec.version, ref.view);
            if (plan->views.size() >= 32)
                throw_error(ErrorKind::InvalidArgument, "online_reader reads at most 32 feature views at once");
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
        out.col = plan->views[it->second].snap->column(cs->name);
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
    constexpr size_t kMaxViews = 32;
    uint32_t rows[kMaxViews];
    Status why[kMaxViews];
    const size_t nv = std::min(plan.views.size(), kMaxViews);
    const size_t w = plan.outs.size();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (size_t i = 0; i < n; ++i) {
        for (size_t v = 0; v < nv; ++v) {
            const Plan::View& view = plan.views[v];
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

std::shared_ptr<OnlineReader> FeatureStore::online_reader(const std::vector<std::string>& features) {
    auto reader = std::make_shared<OnlineReader>(*this, features);
    std::lock_guard lock(impl_->mu);
    auto& rs = impl_->readers;  // a long-lived store makes readers again and again: drop the dead ones
    rs.erase(std::remove_if(rs.begin(), rs.end(), [](auto& w) { return w.expired(); }), rs.end());
    rs.push_back(reader);
    return reader;
}

} // namespace keel::features

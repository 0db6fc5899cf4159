// core/features/join.cpp: point-in-time training sets.
//
// Every segment is sorted by (key, event time, created time) when written. A join sorts the label
// rows by (key, time) once per key layout, then walks each segment with them: for each label key the
// matching run is found by binary search and the run is scanned forward as the label times grow, so
// the cost is O(labels * log + rows in matching runs) per segment, with no sort of feature rows at
// query time. Label rows are split across threads. Among segments the candidate with the larger
// (event time, created time, segment id) wins, which is the "latest created wins" rule.
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"
#include "store_impl.hpp"

#include <algorithm>
#include <numeric>
#include <set>
#include <thread>

namespace keel::features {

namespace {

constexpr size_t kThreads = 2;

struct LabelItem {
    int64_t key;
    int64_t ts;
    uint32_t idx;
    bool operator<(const LabelItem& o) const {
        if (key != o.key) return key < o.key;
        if (ts != o.ts) return ts < o.ts;
        return idx < o.idx;
    }
};

// Best candidate per label row, indexed by the row's position in the sorted label order (so the
// gather reads each segment nearly sequentially).
struct Best {
    std::vector<int32_t> seg;
    std::vector<uint32_t> row;
    std::vector<int64_t> ev;
    std::vector<int64_t> cr;
    explicit Best(size_t n) : seg(n, -1), row(n, 0), ev(n, 0), cr(n, 0) {}
    void offer(uint32_t i, int32_t s, uint32_t r, int64_t e, int64_t c) {
        if (seg[i] < 0 || e > ev[i] || (e == ev[i] && c >= cr[i])) {
            seg[i] = s;
            row[i] = r;
            ev[i] = e;
            cr[i] = c;
        }
    }
};

// Walks sorted labels [b, e) against one segment; label_key / seg_key give a row's key (int64 or
// encoded string), compared with == and <.
template <typename LK, typename SK>
void walk(const LK& label_key, const SK& seg_key, const std::vector<uint32_t>& sorted, const int64_t* label_ts,
          size_t b, size_t e, size_t seg_rows, const int64_t* sev, const int64_t* scr, int32_t seg_index, Best& best,
          const std::vector<uint8_t>& label_ok) {
    size_t pos = 0;  // segment rows before pos have keys below the current label key
    size_t lo = 0, hi = 0, p = 0;
    bool have = false;
    uint32_t prev = 0;
    for (size_t i = b; i < e; ++i) {
        const uint32_t li = sorted[i];
        if (!label_ok.empty() && !label_ok[li]) continue;
        if (!have || !(label_key(li) == label_key(prev))) {
            const auto& k = label_key(li);
            size_t l = pos, r = seg_rows;
            while (l < r) {
                size_t m = l + (r - l) / 2;
                if (seg_key(m) < k) l = m + 1; else r = m;
            }
            lo = l;
            // Gallop to the end of the key's run.
            size_t h = l, step = 1;
            while (h < seg_rows && seg_key(h) == k) {
                size_t probe = std::min(seg_rows, h + step);
                if (seg_key(probe - 1) == k) {
                    h = probe;
                    step *= 2;
                } else {
                    size_t l2 = h, r2 = probe - 1;
                    while (l2 < r2) {
                        size_t m = l2 + (r2 - l2) / 2;
                        if (seg_key(m) == k) l2 = m + 1; else r2 = m;
                    }
                    h = l2;
                    break;
                }
            }
            hi = h;
            p = lo;
            pos = lo;
            have = true;
            prev = li;
        }
        if (lo >= hi) continue;
        const int64_t t = label_ts[li];
        while (p < hi && sev[p] <= t) ++p;
        if (p > lo) best.offer(uint32_t(i), seg_index, uint32_t(p - 1), sev[p - 1], scr[p - 1]);
    }
}

std::string encode_map(const std::map<std::string, int64_t>& m) {
    std::string out;
    for (const auto& [k, v] : m) out += fmt::format("{}={}\n", k, v);
    return out;
}

std::map<std::string, int64_t> decode_map(const std::string& text) {
    std::map<std::string, int64_t> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        std::string line = text.substr(start, nl - start);
        auto eq = line.find('=');
        if (eq != std::string::npos) out[line.substr(0, eq)] = std::stoll(line.substr(eq + 1));
        start = nl + 1;
    }
    return out;
}

} // namespace

namespace {

TrainingSet build(FeatureStore& store, const BatchView& labels, const std::vector<std::string>& features,
                  const std::string& ts_column, const std::map<std::string, int64_t>* versions,
                  const std::map<std::string, int64_t>* cutoffs) {
    if (features.empty()) throw_error(ErrorKind::InvalidArgument, "a training set needs at least one feature");
    const ColumnView* ts_col = labels.find(ts_column);
    if (!ts_col)
        throw_error(ErrorKind::InvalidArgument, "labels have no timestamp column '{}': name it with timestamp_column=",
                    ts_column);
    if (ts_col->dtype != DType::Timestamp)
        throw_error(ErrorKind::InvalidArgument, "label column '{}' has type {}, expected timestamp", ts_column,
                    dtype_name(ts_col->dtype));
    if (ts_col->valid)
        for (size_t i = 0; i < labels.rows; ++i)
            if (!ts_col->valid[i])
                throw_error(ErrorKind::InvalidArgument, "label timestamp '{}' is null at row {}", ts_column, i);
    if (labels.rows > UINT32_MAX) throw_error(ErrorKind::InvalidArgument, "at most 4 billion label rows");
    const int64_t* ts = static_cast<const int64_t*>(ts_col->values);
    const size_t n = labels.rows;

    // Resolve features, grouped by view in first-use order.
    std::vector<FeatureRef> refs;
    std::vector<std::string> view_order;
    std::map<std::string, ViewSpec> specs;
    for (const auto& f : features) {
        FeatureRef ref = FeatureRef::parse(f);
        if (!specs.count(ref.view)) {
            std::optional<int64_t> version;
            if (versions) {
                auto it = versions->find(ref.view);
                if (it != versions->end()) version = it->second;
            }
            // A rebuild reads the recorded versions, also of a view retired since (its data is kept
            // for this); a new training set reads live views only.
            specs.emplace(ref.view, version ? store.recorded_view(ref.view, *version) : store.view(ref.view));
            view_order.push_back(ref.view);
        }
        if (!specs.at(ref.view).feature(ref.column))
            throw_error(ErrorKind::NotFound, "feature view '{}' has no column '{}'", ref.view, ref.column);
        refs.push_back(ref);
    }
    std::map<std::string, int> name_count;
    for (const auto& r : refs) name_count[r.column]++;

    TrainingSet result;
    result.record.features = features;
    result.record.timestamp_column = ts_column;
    result.record.label_rows = int64_t(n);
    for (size_t i = 0; i < n; ++i) {
        result.record.min_ts_ms = std::min(result.record.min_ts_ms.value_or(ts[i]), ts[i]);
        result.record.max_ts_ms = std::max(result.record.max_ts_ms.value_or(ts[i]), ts[i]);
    }
    result.features.rows = n;
    result.features.columns.resize(refs.size());
    const std::string role = store.workspace().role();

    // Label sort orders, shared by views with the same key layout.
    std::map<std::string, std::shared_ptr<std::vector<uint32_t>>> orders;
    for (const auto& vname : view_order) {
        const ViewSpec& spec = specs.at(vname);
        std::optional<int64_t> cutoff;
        if (cutoffs) {
            auto it = cutoffs->find(vname);
            cutoff = it != cutoffs->end() ? it->second : 0;
        } else {
            cutoff = detail::max_segment_id(store, spec);
        }
        result.record.view_versions[vname] = spec.version;
        result.record.segment_cutoffs[vname] = *cutoff;
        auto segs = detail::list_segments(store, spec, cutoff);
        detail::RowKeys lkeys = detail::batch_keys(spec, labels, "labels");

        std::string layout;
        for (const auto& k : spec.join_keys) layout += k.name + "\x1f";
        auto& order = orders[layout];
        if (!order) {
            order = std::make_shared<std::vector<uint32_t>>(n);
            if (lkeys.is_int) {
                std::vector<LabelItem> items(n);
                for (size_t i = 0; i < n; ++i) items[i] = {lkeys.ints[i], ts[i], uint32_t(i)};
                if (n >= 200000) {
                    auto mid = items.begin() + ptrdiff_t(n / 2);
                    std::thread t([&] { std::sort(items.begin(), mid); });
                    std::sort(mid, items.end());
                    t.join();
                    std::inplace_merge(items.begin(), mid, items.end());
                } else {
                    std::sort(items.begin(), items.end());
                }
                for (size_t i = 0; i < n; ++i) (*order)[i] = items[i].idx;
            } else {
                std::iota(order->begin(), order->end(), 0u);
                const auto& ks = *lkeys.strs;
                std::sort(order->begin(), order->end(), [&](uint32_t a, uint32_t b) {
                    int c = ks[a].compare(ks[b]);
                    if (c != 0) return c < 0;
                    if (ts[a] != ts[b]) return ts[a] < ts[b];
                    return a < b;
                });
            }
        }
        const auto& sorted = *order;

        Best best(n);
        for (size_t s = 0; s < segs.size(); ++s) {
            const Segment& seg = *segs[s].seg;
            detail::RowKeys skeys = detail::segment_keys(store, spec, segs[s].id, seg);
            const int64_t* sev = static_cast<const int64_t*>(seg.column(spec.event_column)->values);
            const int64_t* scr = static_cast<const int64_t*>(seg.column(spec.created_column)->values);
            // Threads split the sorted labels; each label row is written by one thread only.
            detail::parallel_for(n, kThreads, [&](size_t b, size_t e) {
                if (lkeys.is_int) {
                    const int64_t* lk = lkeys.ints;
                    const int64_t* sk = skeys.ints;
                    walk([lk](size_t i) { return lk[i]; }, [sk](size_t i) { return sk[i]; }, sorted, ts, b, e,
                         seg.rows(), sev, scr, int32_t(s), best, lkeys.valid);
                } else {
                    const auto* lk = lkeys.strs;
                    const auto* sk = skeys.strs;
                    walk([lk](size_t i) -> const std::string& { return (*lk)[i]; },
                         [sk](size_t i) -> const std::string& { return (*sk)[i]; }, sorted, ts, b, e, seg.rows(), sev,
                         scr, int32_t(s), best, lkeys.valid);
                }
            });
        }
        // TTL: a value older than the TTL at the label's time is null.
        if (spec.ttl_ms > 0)
            for (size_t i = 0; i < n; ++i)
                if (best.seg[i] >= 0 && ts[sorted[i]] - best.ev[i] > spec.ttl_ms) best.seg[i] = -1;
        // Strings are appended in label order, so they need the candidates in label order.
        std::vector<int32_t> seg_by_label;
        std::vector<uint32_t> row_by_label;

        for (size_t f = 0; f < refs.size(); ++f) {
            if (refs[f].view != vname) continue;
            const ColumnSpec& cs = *spec.feature(refs[f].column);
            std::vector<const ColumnView*> cols;
            for (const auto& s : segs) cols.push_back(s.seg->column(cs.name));
            Column& out = result.features.columns[f];
            detail::prepare_column(out, cs, n);
            if (cs.dtype == DType::String) {
                if (seg_by_label.empty() && n) {
                    seg_by_label.assign(n, -1);
                    row_by_label.assign(n, 0);
                    for (size_t i = 0; i < n; ++i) {
                        seg_by_label[sorted[i]] = best.seg[i];
                        row_by_label[sorted[i]] = best.row[i];
                    }
                }
                detail::gather_strings(out, cols, seg_by_label.data(), row_by_label.data(), n);
            } else {
                detail::parallel_for(n, kThreads, [&](size_t b, size_t e) {
                    detail::gather(out, cols, best.seg.data(), best.row.data(), b, e, sorted.data());
                });
            }
            detail::mask_if_needed(store, role, vname, cs, out);
            detail::compact_valid(out);
            if (name_count[cs.name] > 1) out.name = vname + "__" + cs.name;
        }
    }
    return result;
}

std::string make_id(const TrainingSetRecord& r) {
    std::string text = r.labels_digest + "\n" + r.timestamp_column + "\n";
    for (const auto& f : r.features) text += f + "\n";
    text += encode_map(r.view_versions) + encode_map(r.segment_cutoffs);
    return storage::sha256_hex(text).substr(0, 16);
}

} // namespace

TrainingSet FeatureStore::training_set(const BatchView& labels, const std::vector<std::string>& features,
                                       const std::string& timestamp_column, const std::string& labels_digest) {
    TrainingSet ts = build(*this, labels, features, timestamp_column, nullptr, nullptr);
    ts.record.labels_digest = labels_digest.empty() ? storage::sha256_hex(Segment::to_bytes(labels)) : labels_digest;
    ts.record = record_training_set(std::move(ts.record));
    return ts;
}

Table FeatureStore::join_at(const BatchView& labels, const TrainingSetRecord& at) {
    return build(*this, labels, at.features, at.timestamp_column, &at.view_versions, &at.segment_cutoffs).features;
}

TrainingSetRecord FeatureStore::record_training_set(TrainingSetRecord r) {
    if (r.features.empty()) throw_error(ErrorKind::InvalidArgument, "a training set needs at least one feature");
    if (r.labels_digest.empty())
        throw_error(ErrorKind::InvalidArgument, "a recorded training set needs the digest of its labels' artifact");
    for (const auto& f : r.features) {
        FeatureRef ref = FeatureRef::parse(f);
        if (!r.view_versions.count(ref.view) || !r.segment_cutoffs.count(ref.view))
            throw_error(ErrorKind::InvalidArgument, "training set record lacks the version or segment cutoff of view "
                        "'{}': take it from snapshot()", ref.view);
    }
    r.id = make_id(r);
    r.created_at_ms = now_ms();
    r.created_by = ws_->user();
    {
        auto& db = ws_->db();
        storage::Transaction tx(db);
        std::string feats;
        for (const auto& f : r.features) feats += f + "\n";
        db.prepare("INSERT INTO features_training_sets(id, features, view_versions, segment_cutoffs, "
                   "timestamp_column, labels_digest, label_rows, min_ts_ms, max_ts_ms, created_at, created_by) "
                   "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING")
            .bind_all(r.id, feats, encode_map(r.view_versions), encode_map(r.segment_cutoffs), r.timestamp_column,
                      r.labels_digest, r.label_rows, r.min_ts_ms, r.max_ts_ms, r.created_at_ms, r.created_by)
            .run();
        tx.commit();
    }
    // Lineage: training_set:<id> made from each feature view (at the recorded versions).
    std::map<std::string, std::string> tags;
    for (const auto& [view_name, version] : r.view_versions) tags["view." + view_name] = fmt::format("v{}", version);
    tags["rows"] = std::to_string(r.label_rows);
    detail::lineage_node(*this, "training_set:" + r.id, r.created_by,
                         fmt::format("{} label rows x {} features", r.label_rows, r.features.size()), tags);
    for (const auto& [view_name, version] : r.view_versions)
        detail::lineage_edge(*this, "feature_view:" + view_name, "feeds", "training_set:" + r.id);
    return r;
}

TrainingSetRecord FeatureStore::training_set_record(const std::string& id) {
    auto& db = ws_->db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT id, features, view_versions, segment_cutoffs, timestamp_column, labels_digest, "
                         "label_rows, min_ts_ms, max_ts_ms, created_at, created_by FROM features_training_sets "
                         "WHERE id = ?");
    st.bind_all(id);
    if (!st.step()) throw_error(ErrorKind::NotFound, "training set '{}' not found", id);
    TrainingSetRecord r;
    r.id = st.text(0);
    std::string feats = st.text(1);
    size_t start = 0;
    while (start < feats.size()) {
        size_t nl = feats.find('\n', start);
        if (nl == std::string::npos) nl = feats.size();
        if (nl > start) r.features.push_back(feats.substr(start, nl - start));
        start = nl + 1;
    }
    r.view_versions = decode_map(st.text(2));
    r.segment_cutoffs = decode_map(st.text(3));
    r.timestamp_column = st.text(4);
    r.labels_digest = st.text(5);
    r.label_rows = st.int64(6);
    r.min_ts_ms = st.opt_int64(7);
    r.max_ts_ms = st.opt_int64(8);
    r.created_at_ms = st.int64(9);
    r.created_by = st.text(10);
    return r;
}

TrainingSet FeatureStore::rebuild_training_set(const std::string& id, const BatchView& labels) {
    TrainingSetRecord rec = training_set_record(id);
    if (int64_t(labels.rows) != rec.label_rows)
        throw_error(ErrorKind::InvalidArgument, "training set '{}' was built from {} label rows, got {}", id,
                    rec.label_rows, labels.rows);
    TrainingSet ts = build(*this, labels, rec.features, rec.timestamp_column, &rec.view_versions, &rec.segment_cutoffs);
    ts.record = rec;
    return ts;
}

} // namespace keel::features

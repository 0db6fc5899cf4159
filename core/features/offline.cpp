// core/features/offline.cpp: ingest into immutable segments, reads, PII masking, access grants.
#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/lineage/graph.hpp"
#include "keel/storage/artifact_store.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/generation.hpp"
#include "keel/storage/workspace.hpp"
#include "store_impl.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <set>
#include <thread>
#include <unordered_set>

namespace fs = std::filesystem;

namespace keel::features {

namespace detail {

void sort_by_key_and_time(std::vector<RowRef>& refs, const std::vector<RowKeys>& keys) {
    std::sort(refs.begin(), refs.end(), [&](const RowRef& a, const RowRef& b) {
        if (int c = compare_keys(keys, a, b); c != 0) return c < 0;
        if (a.ev != b.ev) return a.ev < b.ev;
        if (a.cr != b.cr) return a.cr < b.cr;
        if (a.src != b.src) return a.src < b.src;
        return a.row < b.row;
    });
}

void parallel_for(size_t n, size_t threads, const std::function<void(size_t, size_t)>& fn) {
    threads = std::max<size_t>(1, std::min(threads, n / 4096 + 1));
    if (threads == 1) {
        fn(0, n);
        return;
    }
    std::vector<std::thread> pool;
    std::exception_ptr error;
    std::mutex mu;
    size_t step = (n + threads - 1) / threads;
    for (size_t t = 0; t < threads; ++t) {
        size_t b = t * step, e = std::min(n, b + step);
        if (b >= e) break;
        pool.emplace_back([&, b, e] {
            try {
                fn(b, e);
            } catch (...) {
                std::lock_guard lock(mu);
                error = std::current_exception();
            }
        });
    }
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

void prepare_column(Column& out, const ColumnSpec& spec, size_t rows) {
    out.name = spec.name;
    out.dtype = spec.dtype;
    out.dim = spec.dim;
    out.rows = rows;
    out.valid.assign(rows, 0);
    if (spec.dtype == DType::String) {
        out.values.clear();
        out.offsets.assign(rows + 1, 0);
    } else {
        out.values.resize(rows * dtype_width(spec.dtype, spec.dim));
    }
}

namespace {

template <size_t W>
void gather_fixed(uint8_t* dst, uint8_t* valid, size_t width, const std::vector<const ColumnView*>& cols,
                  const int32_t* seg_of, const uint32_t* row_of, size_t begin, size_t end, const uint32_t* dest) {
    const size_t w = W ? W : width;
    for (size_t i = begin; i < end; ++i) {
        const size_t o = dest ? dest[i] : i;
        if (i + 8 < end) {
            int32_t s8 = seg_of[i + 8];
            if (s8 >= 0 && cols[size_t(s8)])
                __builtin_prefetch(static_cast<const uint8_t*>(cols[size_t(s8)]->values) + size_t(row_of[i + 8]) * w);
        }
        const int32_t s = seg_of[i];
        const ColumnView* c = s >= 0 ? cols[size_t(s)] : nullptr;
        if (!c) {
            valid[o] = 0;
            std::memset(dst + o * w, 0, w);
            continue;
        }
        const size_t r = row_of[i];
        std::memcpy(dst + o * w, static_cast<const uint8_t*>(c->values) + r * w, w);
        valid[o] = c->valid ? c->valid[r] : 1;
    }
}

} // namespace

void gather(Column& out, const std::vector<const ColumnView*>& cols, const int32_t* seg_of, const uint32_t* row_of,
            size_t begin, size_t end, const uint32_t* dest) {
    const size_t width = dtype_width(out.dtype, out.dim);
    uint8_t* dst = out.values.data();
    uint8_t* valid = out.valid.data();
    if (width == 8)
        gather_fixed<8>(dst, valid, 8, cols, seg_of, row_of, begin, end, dest);
    else if (width == 4)
        gather_fixed<4>(dst, valid, 4, cols, seg_of, row_of, begin, end, dest);
    else if (width == 1)
        gather_fixed<1>(dst, valid, 1, cols, seg_of, row_of, begin, end, dest);
    else
        gather_fixed<0>(dst, valid, width, cols, seg_of, row_of, begin, end, dest);
}

void gather_strings(Column& out, const std::vector<const ColumnView*>& cols, const int32_t* seg_of,
                    const uint32_t* row_of, size_t rows) {
    out.values.clear();
    out.offsets.assign(rows + 1, 0);
    out.valid.assign(rows, 0);
    for (size_t i = 0; i < rows; ++i) {
        int32_t s = seg_of[i];
        const ColumnView* c = s >= 0 ? cols[size_t(s)] : nullptr;
        if (c) {
            size_t r = row_of[i];
            bool ok = c->valid ? c->valid[r] != 0 : true;
            if (ok) {
                const char* bytes = static_cast<const char*>(c->values);
                out.values.insert(out.values.end(), bytes + c->offsets[r], bytes + c->offsets[r + 1]);
                out.valid[i] = 1;
            }
        }
        out.offsets[i + 1] = int64_t(out.values.size());
    }
}

void gather_column(Column& out, const ColumnSpec& spec, const std::vector<const ColumnView*>& cols,
                   const int32_t* seg_of, const uint32_t* row_of, size_t rows) {
    prepare_column(out, spec, rows);
    if (spec.dtype == DType::String)
        gather_strings(out, cols, seg_of, row_of, rows);
    else
        gather(out, cols, seg_of, row_of, 0, rows);
}

void compact_valid(Column& out) {
    for (uint8_t v : out.valid)
        if (!v) return;
    out.valid.clear();
}

void mask_if_needed(FeatureStore& store, const std::string& role, const std::string& view, const ColumnSpec& spec,
                    Column& out) {
    if (!spec.pii || store.can_read(role, view, spec.name)) return;
    mask(store, out);
}

void mask(FeatureStore& store, Column& out) {
    out.masked = true;
    if (out.dtype == DType::String) {
        std::vector<uint8_t> values;
        std::vector<int64_t> offsets(out.rows + 1, 0);
        for (size_t i = 0; i < out.rows; ++i) {
            bool ok = out.valid.empty() || out.valid[i];
            if (ok) {
                std::string_view v(reinterpret_cast<const char*>(out.values.data()) + out.offsets[i],
                                   size_t(out.offsets[i + 1] - out.offsets[i]));
                std::string m = store.mask_string(v);
                values.insert(values.end(), m.begin(), m.end());
            }
            offsets[i + 1] = int64_t(values.size());
        }
        out.values = std::move(values);
        out.offsets = std::move(offsets);
    } else {
        out.valid.assign(out.rows, 0);
        std::fill(out.values.begin(), out.values.end(), 0);
    }
}

void lineage_node(FeatureStore& store, const std::string& ref, const std::string& owner, const std::string& description,
                  const std::map<std::string, std::string>& tags) {
    lineage::Graph graph(store.workspace());
    lineage::NodeInfo info;
    if (!owner.empty()) info.owner = owner;
    if (!description.empty()) info.description = description;
    info.tags = tags;
    graph.upsert_node(ref, info);
}

void lineage_edge(FeatureStore& store, const std::string& from, const std::string& kind, const std::string& to) {
    lineage::Graph graph(store.workspace());
    graph.add_edge(from, kind, to);
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// Access

void FeatureStore::grant(const std::string& role, const std::string& view_name, const std::vector<std::string>& columns) {
    if (role.empty()) throw_error(ErrorKind::InvalidArgument, "grant needs a role name");
    ViewSpec spec = view(view_name);
    for (const auto& c : columns)
        if (c != "*" && !spec.feature(c))
            throw_error(ErrorKind::NotFound, "feature view '{}' has no column '{}'", view_name, c);
    {
        auto& db = ws_->db();
        storage::Transaction tx(db);
        for (const auto& c : columns)
            db.prepare("INSERT INTO features_grants(role, view, column_name, granted_by, granted_at) "
                       "VALUES(?, ?, ?, ?, ?) ON CONFLICT(role, view, column_name) DO UPDATE SET "
                       "granted_by = excluded.granted_by, granted_at = excluded.granted_at")
                .bind_all(role, view_name, c, ws_->user(), now_ms())
                .run();
        storage::bump_generation(db); // readers and endpoints in other processes check grants again
        tx.commit();
    }
    grants_changed();
}

void FeatureStore::revoke(const std::string& role, const std::string& view_name, const std::vector<std::string>& columns) {
    {
        auto& db = ws_->db();
        storage::Transaction tx(db);
        for (const auto& c : columns)
            db.prepare("DELETE FROM features_grants WHERE role = ? AND view = ? AND column_name = ?")
                .bind_all(role, view_name, c)
                .run();
        storage::bump_generation(db); // readers and endpoints in other processes check grants again
        tx.commit();
    }
    grants_changed();
}

void FeatureStore::grants_changed() {
    // Every reader in this process stops showing PII at once; this store's readers check again
    // now (outside the transaction: a check takes the reader's lock, then the Db's).
    detail::grants_epoch.fetch_add(1, std::memory_order_acq_rel);
    std::vector<std::shared_ptr<OnlineReader>> live;
    {
        std::lock_guard lock(impl_->mu);
        for (auto& w : impl_->readers)
            if (auto r = w.lock()) live.push_back(r);
    }
    for (auto& r : live) {
        try {
            r->recheck_grants();
        } catch (const Error&) {
            // Its view is gone or unreadable: it stays masked (the epoch moved) until it refreshes.
        }
    }
}

bool FeatureStore::can_read(const std::string& role, const std::string& view_name, const std::string& column) {
    // Retired views too: a rebuilt training set masks what it masked when it was built.
    ViewSpec spec = detail::load_view(*this, view_name, std::nullopt, true);
    const ColumnSpec* c = spec.feature(column);
    if (!c || !c->pii) return true;
    if (role.empty()) return false;
    auto& db = ws_->db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT 1 FROM features_grants WHERE role = ? AND view = ? AND column_name IN (?, '*')");
    st.bind_all(role, view_name, column);
    return st.step();
}

std::vector<std::array<std::string, 3>> FeatureStore::grants() {
    auto& db = ws_->db();
    auto guard = db.lock();
    auto st = db.prepare("SELECT role, view, column_name FROM features_grants ORDER BY role, view, column_name");
    std::vector<std::array<std::string, 3>> out;
    while (st.step()) out.push_back({st.text(0), st.text(1), st.text(2)});
    return out;
}

std::string FeatureStore::mask_string(std::string_view value) {
    std::string input = impl_->salt;
    input.append(value);
    return "pii:" + storage::sha256_hex(input).substr(0, 16);
}

// ---------------------------------------------------------------------------------------------
// Ingest

namespace {

int64_t first_null(const ColumnView& col, size_t rows) {
    if (!col.valid) return -1;
    for (size_t i = 0; i < rows; ++i)
        if (!col.valid[i]) return int64_t(i);
    return -1;
}

struct SortItem {
    int64_t key;
    int64_t ev;
    int64_t cr;
    uint32_t idx;
    bool operator<(const SortItem& o) const {
        if (key != o.key) return key < o.key;
        if (ev != o.ev) return ev < o.ev;
        if (cr != o.cr) return cr < o.cr;
        return idx < o.idx;
    }
};

// Removes what a crashed ingest left behind in a view's folder: temporary files and segment files
// that were never registered, once they are an hour old (a live ingest finishes long before).
void sweep_orphans(storage::Workspace& ws, const std::string& view, int64_t version, const fs::path& dir) {
    std::set<std::string> registered;
    {
        auto& db = ws.db();
        auto guard = db.lock();
        auto st = db.prepare("SELECT file FROM features_segments WHERE view = ? AND version = ?");
        st.bind_all(view, version);
        while (st.step()) registered.insert(fs::path(st.text(0)).filename().string());
    }
    std::error_code ec;
    const auto cutoff = fs::file_time_type::clock::now() - std::chrono::hours(1);
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string file = entry.path().filename().string();
        if (registered.count(file)) continue;
        std::error_code ec2;
        auto mtime = fs::last_write_time(entry.path(), ec2);
        if (!ec2 && mtime < cutoff) fs::remove(entry.path(), ec2);
    }
}

// Sorts on two threads: each half, then a merge.
template <typename T>
void sort2(std::vector<T>& items) {
    if (items.size() < 200000) {
        std::sort(items.begin(), items.end());
        return;
    }
    auto mid = items.begin() + ptrdiff_t(items.size() / 2);
    std::thread t([&] { std::sort(items.begin(), mid); });
    std::sort(mid, items.end());
    t.join();
    std::inplace_merge(items.begin(), mid, items.end());
}

} // namespace

int64_t FeatureStore::ingest(const std::string& name, const BatchView& batch) {
    ViewSpec spec = view(name);
    const size_t rows = batch.rows;
    if (rows > UINT32_MAX) throw_error(ErrorKind::InvalidArgument, "ingest at most 4 billion rows at a time");
    std::set<std::string> expected;
    for (const auto& k : spec.join_keys) expected.insert(k.name);
    expected.insert(spec.event_column);
    expected.insert(spec.created_column);
    for (const auto& c : spec.features) expected.insert(c.name);
    for (const auto& c : batch.columns)
        if (!expected.count(c.name))
            throw_error(ErrorKind::InvalidArgument,
                        "column '{}' is not in feature view '{}' (version {}): drop it, or add it to the schema "
                        "with ws.features.feature_view()",
                        c.name, name, spec.version);
    for (const auto& n : expected)
        if (n != spec.created_column && !batch.find(n))
            throw_error(ErrorKind::InvalidArgument, "column '{}' of feature view '{}' is missing from the data", n,
                        name);

    detail::RowKeys keys = detail::batch_keys(spec, batch, "the data");
    for (const auto& k : spec.join_keys)
        if (int64_t r = first_null(*batch.find(k.name), rows); r >= 0)
            throw_error(ErrorKind::InvalidArgument, "join key '{}' is null at row {}: drop or fill those rows", k.name,
                        r);
    const ColumnView* ev = batch.find(spec.event_column);
    if (ev->dtype != DType::Timestamp)
        throw_error(ErrorKind::InvalidArgument, "column '{}' has type {}, expected timestamp", ev->name,
                    dtype_name(ev->dtype));
    if (int64_t r = first_null(*ev, rows); r >= 0)
        throw_error(ErrorKind::InvalidArgument, "event timestamp '{}' is null at row {}: every row needs one", ev->name, r);
    const ColumnView* cr = batch.find(spec.created_column);
    std::vector<int64_t> created_fill;
    if (cr) {
        if (cr->dtype != DType::Timestamp)
            throw_error(ErrorKind::InvalidArgument, "column '{}' has type {}, expected timestamp", cr->name,
                        dtype_name(cr->dtype));
        if (int64_t r = first_null(*cr, rows); r >= 0)
            throw_error(ErrorKind::InvalidArgument, "created timestamp '{}' is null at row {}: fill it or drop the column",
                        cr->name, r);
    } else {
        created_fill.assign(rows, now_ms());
    }
    for (const auto& f : spec.features) {
        const ColumnView* c = batch.find(f.name);
        if (c->dtype != f.dtype || (f.dtype == DType::Vector && c->dim != f.dim))
            throw_error(ErrorKind::InvalidArgument, "column '{}' has type {}{}, feature view '{}' expects {}{}: cast it first",
                        f.name, dtype_name(c->dtype), c->dtype == DType::Vector ? fmt::format("[{}]", c->dim) : "",
                        name, dtype_name(f.dtype), f.dtype == DType::Vector ? fmt::format("[{}]", f.dim) : "");
    }
    if (rows == 0) return 0;
    // Quality rules (Lua, keel::plugins) will run here, before anything is written.

    // The stored batch: keys, event time, created time, features in schema order.
    BatchView out;
    out.rows = rows;
    for (const auto& k : spec.join_keys) out.columns.push_back(*batch.find(k.name));
    out.columns.push_back(*ev);
    ColumnView created;
    if (cr) {
        created = *cr;
    } else {
        created.name = spec.created_column;
        created.dtype = DType::Timestamp;
        created.values = created_fill.data();
    }
    created.name = spec.created_column;
    out.columns.push_back(created);
    for (const auto& f : spec.features) out.columns.push_back(*batch.find(f.name));

    const int64_t* evs = static_cast<const int64_t*>(ev->values);
    const int64_t* crs = static_cast<const int64_t*>(created.values);
    std::vector<uint32_t> order(rows);
    if (keys.is_int) {
        std::vector<SortItem> items(rows);
        int64_t kmin = INT64_MAX, kmax = INT64_MIN;
        for (size_t i = 0; i < rows; ++i) {
            items[i] = {keys.ints[i], evs[i], crs[i], uint32_t(i)};
            kmin = std::min(kmin, keys.ints[i]);
            kmax = std::max(kmax, keys.ints[i]);
        }
        const uint64_t range = uint64_t(kmax) - uint64_t(kmin);
        if (rows > 1 && range < (uint64_t(1) << 26) && range <= 4 * uint64_t(rows)) {
            // Dense integer ids (the common case): bucket by key in O(n), then sort each key's rows
            // (contiguous and small) by (event, created, input order).
            std::vector<uint32_t> start(range + 2, 0);
            for (size_t i = 0; i < rows; ++i) ++start[uint64_t(items[i].key - kmin) + 1];
            for (size_t k = 1; k < start.size(); ++k) start[k] += start[k - 1];
            std::vector<SortItem> bucketed(rows);
            {
                std::vector<uint32_t> pos(start.begin(), start.end() - 1);
                for (size_t i = 0; i < rows; ++i) bucketed[pos[uint64_t(items[i].key - kmin)]++] = items[i];
            }
            items.clear();
            items.shrink_to_fit();
            detail::parallel_for(range + 1, 2, [&](size_t b, size_t e) {
                for (size_t k = b; k < e; ++k)
                    if (start[k + 1] - start[k] > 1)
                        std::sort(bucketed.begin() + start[k], bucketed.begin() + start[k + 1]);
            });
            for (size_t i = 0; i < rows; ++i) order[i] = bucketed[i].idx;
        } else {
            sort2(items);
            for (size_t i = 0; i < rows; ++i) order[i] = items[i].idx;
        }
    } else {
        std::iota(order.begin(), order.end(), 0u);
        const auto& ks = *keys.strs;
        std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
            int c = ks[a].compare(ks[b]);
            if (c != 0) return c < 0;
            if (evs[a] != evs[b]) return evs[a] < evs[b];
            return crs[a] < crs[b];
        });
    }
    int64_t min_ev = INT64_MAX, max_ev = INT64_MIN;
    for (size_t i = 0; i < rows; ++i) {
        min_ev = std::min(min_ev, evs[i]);
        max_ev = std::max(max_ev, evs[i]);
    }

    if (ws_->objects().is_local()) {
        const fs::path dir = ws_->path() / "features" / name / fmt::format("v{}", spec.version);
        fs::create_directories(dir);
        sweep_orphans(*ws_, name, spec.version, dir);
    }
    const std::string file = detail::write_segment_file(
        *ws_, fmt::format("{}/v{}/{}-{}", name, spec.version, now_ms(), random_hex_id().substr(0, 8)), out, order);
    try {
        auto& db = ws_->db();
        storage::Transaction tx(db);
        if (auto r = detail::retirement(*this, name))  // by another process, during the ingest
            throw_error(ErrorKind::NotFound, "feature view '{}' was retired by {} during the ingest; define it "
                        "again to bring it back", name, r->text());
        auto st = db.prepare("SELECT MAX(version) FROM features_views WHERE name = ?");
        st.bind_all(name);
        st.step();
        if (st.int64(0) != spec.version)
            throw_error(ErrorKind::Conflict,
                        "feature view '{}' moved to version {} during the ingest: ingest again against the new schema",
                        name, st.int64(0));
        int64_t id = db.prepare("INSERT INTO features_segments(view, version, file, rows, min_event_ms, max_event_ms, "
                                "created_at, created_by) VALUES(?, ?, ?, ?, ?, ?, ?, ?) RETURNING id")
                         .bind_all(name, spec.version, file, int64_t(rows), min_ev, max_ev, now_ms(), ws_->user())
                         .insert_id();
        tx.commit();
        return id;
    } catch (...) {
        detail::remove_segment_file(*ws_, file);
        throw;
    }
}

// ---------------------------------------------------------------------------------------------
// Reads

Table FeatureStore::read(const std::string& name, const ReadOptions& opt) {
    ViewSpec spec = view(name, opt.version);
    auto segs = detail::list_segments(*this, spec, std::nullopt);
    std::vector<detail::RowKeys> seg_keys;
    for (const auto& s : segs) seg_keys.push_back(detail::segment_keys(*this, spec, s.id, *s.seg));

    std::unordered_set<int64_t> want_ints;
    std::unordered_set<std::string> want_strs;
    if (opt.keys) {
        detail::RowKeys k = detail::batch_keys(spec, *opt.keys, "the keys");
        for (size_t i = 0; i < opt.keys->rows; ++i) {
            if (!k.ok(i)) continue;
            if (k.is_int)
                want_ints.insert(k.ints[i]);
            else
                want_strs.insert((*k.strs)[i]);
        }
    }
    std::vector<detail::RowRef> refs;
    for (size_t s = 0; s < segs.size(); ++s) {
        const Segment& seg = *segs[s].seg;
        const int64_t* ev = static_cast<const int64_t*>(seg.column(spec.event_column)->values);
        const int64_t* cr = static_cast<const int64_t*>(seg.column(spec.created_column)->values);
        const auto& k = seg_keys[s];
        for (size_t r = 0; r < seg.rows(); ++r) {
            if (opt.start_ms && ev[r] < *opt.start_ms) continue;
            if (opt.end_ms && ev[r] >= *opt.end_ms) continue;
            if (opt.as_of_ms && ev[r] > *opt.as_of_ms) continue;
            if (opt.keys && (k.is_int ? !want_ints.count(k.ints[r]) : !want_strs.count((*k.strs)[r]))) continue;
            refs.push_back({int32_t(s), uint32_t(r), ev[r], cr[r]});
        }
    }
    detail::sort_by_key_and_time(refs, seg_keys);
    // Keep the last row of each (key, event) group, or of each key for as_of.
    std::vector<detail::RowRef> kept;
    for (size_t i = 0; i < refs.size(); ++i) {
        bool last = i + 1 == refs.size() || detail::compare_keys(seg_keys, refs[i], refs[i + 1]) != 0 ||
                    (!opt.as_of_ms && refs[i].ev != refs[i + 1].ev);
        if (last) kept.push_back(refs[i]);
    }
    const size_t n = kept.size();
    std::vector<int32_t> seg_of(n);
    std::vector<uint32_t> row_of(n);
    for (size_t i = 0; i < n; ++i) {
        seg_of[i] = kept[i].src;
        row_of[i] = kept[i].row;
    }
    std::vector<ColumnSpec> out_specs = spec.join_keys;
    out_specs.push_back({spec.event_column, DType::Timestamp});
    if (opt.include_created) out_specs.push_back({spec.created_column, DType::Timestamp});
    out_specs.insert(out_specs.end(), spec.features.begin(), spec.features.end());
    return detail::gather_table(*this, name, out_specs, segs, seg_of, row_of, n);
}

Table detail::gather_table(FeatureStore& store, const std::string& view, const std::vector<ColumnSpec>& specs,
                           const std::vector<SegRef>& segs, const std::vector<int32_t>& seg_of,
                           const std::vector<uint32_t>& row_of, size_t n) {
    Table table;
    table.rows = n;
    const std::string role = store.workspace().role();
    for (const auto& cs : specs) {
        std::vector<const ColumnView*> cols;
        for (const auto& s : segs) cols.push_back(s.seg->column(cs.name));
        Column out;
        gather_column(out, cs, cols, seg_of.data(), row_of.data(), n);
        mask_if_needed(store, role, view, cs, out);
        compact_valid(out);
        table.columns.push_back(std::move(out));
    }
    return table;
}

} // namespace keel::features

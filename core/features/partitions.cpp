// core/features/partitions.cpp: what Spark and Dask jobs call (python/keel/engines/). A driver reads
// one snapshot (view versions and segment cutoffs) and key boundaries; each partition then reads a key
// range of a view, or joins its labels against the snapshot (FeatureStore::join_at in join.cpp), in
// its own process on the same workspace. Segments are sorted by key, so a range is found by binary
// search in each segment and a partition touches only its own slice of the offline data.
#include "keel/common/error.hpp"
#include "keel/features/store.hpp"
#include "keel/storage/workspace.hpp"
#include "store_impl.hpp"

#include <algorithm>
#include <cstring>

namespace keel::features {

namespace {

// Int keys cross as 8 big-endian bytes with the sign bit flipped (byte order = numeric order);
// other keys as the row encoding segment_keys uses (already order-consistent bytes).
std::string encode_int(int64_t v) {
    uint64_t u = uint64_t(v) ^ (uint64_t(1) << 63);
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char((u >> (56 - 8 * i)) & 0xff);
    return out;
}

int64_t decode_int(const std::string& bytes, const char* what) {
    if (bytes.size() != 8)
        throw_error(ErrorKind::InvalidArgument, "{} key bound has {} bytes, expected 8 (take it from key_splits)", what,
                    bytes.size());
    uint64_t u = 0;
    for (unsigned char c : bytes) u = (u << 8) | c;
    return int64_t(u ^ (uint64_t(1) << 63));
}

std::string key_bytes(const detail::RowKeys& keys, size_t row) {
    return keys.is_int ? encode_int(keys.ints[row]) : (*keys.strs)[row];
}

// The first row of a sorted segment whose key is not below `bound`.
size_t lower_bound_row(const detail::RowKeys& keys, size_t rows, const std::string& bound) {
    size_t l = 0, r = rows;
    if (keys.is_int) {
        const int64_t b = decode_int(bound, "a");
        while (l < r) {
            size_t m = l + (r - l) / 2;
            if (keys.ints[m] < b) l = m + 1; else r = m;
        }
        return l;
    }
    while (l < r) {
        size_t m = l + (r - l) / 2;
        if ((*keys.strs)[m] < bound) l = m + 1; else r = m;
    }
    return l;
}

} // namespace

TrainingSetRecord FeatureStore::snapshot(const std::vector<std::string>& features) {
    if (features.empty()) throw_error(ErrorKind::InvalidArgument, "a training set needs at least one feature");
    TrainingSetRecord r;
    r.features = features;
    std::map<std::string, ViewSpec> specs;
    for (const auto& f : features) {
        FeatureRef ref = FeatureRef::parse(f);
        auto it = specs.find(ref.view);
        if (it == specs.end()) {
            it = specs.emplace(ref.view, view(ref.view)).first;
            r.view_versions[ref.view] = it->second.version;
            r.segment_cutoffs[ref.view] = detail::max_segment_id(*this, it->second);
        }
        if (!it->second.feature(ref.column))
            throw_error(ErrorKind::NotFound, "feature view '{}' has no column '{}'", ref.view, ref.column);
    }
    return r;
}

std::vector<std::string> FeatureStore::key_splits(const std::string& name, int64_t version, int64_t cutoff,
                                                  size_t parts) {
    ViewSpec spec = view(name, version);
    auto segs = detail::list_segments(*this, spec, cutoff);
    size_t total = 0;
    for (const auto& s : segs) total += s.seg->rows();
    if (parts <= 1 || total == 0) return {};
    // Each segment is sorted by key: evenly spaced rows of it are its quantiles. Samples from all
    // segments, in proportion to their rows, then give the boundaries of the union.
    const size_t budget = std::min<size_t>(total, 256 * parts);
    std::vector<std::string> samples;
    for (const auto& s : segs) {
        const size_t rows = s.seg->rows();
        size_t k = std::max<size_t>(1, size_t(double(budget) * double(rows) / double(total)));
        k = std::min(k, rows);
        detail::RowKeys keys = detail::segment_keys(*this, spec, s.id, *s.seg);
        for (size_t i = 0; i < k; ++i) {
            size_t row = (2 * i + 1) * rows / (2 * k);
            if (keys.ok(row)) samples.push_back(key_bytes(keys, row));
        }
    }
    std::sort(samples.begin(), samples.end());
    std::vector<std::string> out;
    if (samples.empty()) return out;
    for (size_t p = 1; p < parts; ++p) {
        const std::string& b = samples[p * samples.size() / parts];
        if (out.empty() ? b != samples.front() : b != out.back()) out.push_back(b);
    }
    return out;
}

Table FeatureStore::read_range(const std::string& name, int64_t version, int64_t cutoff,
                               const std::optional<std::string>& lo, const std::optional<std::string>& hi,
                               std::optional<int64_t> start_ms, std::optional<int64_t> end_ms) {
    ViewSpec spec = view(name, version);
    auto segs = detail::list_segments(*this, spec, cutoff);
    std::vector<detail::RowKeys> seg_keys;
    for (const auto& s : segs) seg_keys.push_back(detail::segment_keys(*this, spec, s.id, *s.seg));

    std::vector<detail::RowRef> refs;
    for (size_t s = 0; s < segs.size(); ++s) {
        const Segment& seg = *segs[s].seg;
        const auto& keys = seg_keys[s];
        const size_t b = lo ? lower_bound_row(keys, seg.rows(), *lo) : 0;
        const size_t e = hi ? lower_bound_row(keys, seg.rows(), *hi) : seg.rows();
        const int64_t* ev = static_cast<const int64_t*>(seg.column(spec.event_column)->values);
        const int64_t* cr = static_cast<const int64_t*>(seg.column(spec.created_column)->values);
        for (size_t r = b; r < e; ++r) {
            if (start_ms && ev[r] < *start_ms) continue;
            if (end_ms && ev[r] >= *end_ms) continue;
            refs.push_back({int32_t(s), uint32_t(r), ev[r], cr[r]});
        }
    }
    // As read(): the last row of each (key, event time) group in this order wins.
    detail::sort_by_key_and_time(refs, seg_keys);
    std::vector<int32_t> seg_of;
    std::vector<uint32_t> row_of;
    for (size_t i = 0; i < refs.size(); ++i) {
        bool last = i + 1 == refs.size() || detail::compare_keys(seg_keys, refs[i], refs[i + 1]) != 0 ||
                    refs[i].ev != refs[i + 1].ev;
        if (!last) continue;
        seg_of.push_back(refs[i].src);
        row_of.push_back(refs[i].row);
    }
    const size_t n = seg_of.size();
    std::vector<ColumnSpec> out_specs = spec.join_keys;
    out_specs.push_back({spec.event_column, DType::Timestamp});
    out_specs.push_back({spec.created_column, DType::Timestamp});
    out_specs.insert(out_specs.end(), spec.features.begin(), spec.features.end());
    return detail::gather_table(*this, name, out_specs, segs, seg_of, row_of, n);
}

} // namespace keel::features

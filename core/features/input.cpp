// core/features/input.cpp
#include "keel/features/input.hpp"

#include "keel/common/error.hpp"
#include "keel/common/time_columns.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

namespace keel::features {

namespace {

template <typename T>
T* alloc(InputBatch& b, size_t n) {
    b.owned.emplace_back(std::max<size_t>(n, 1) * sizeof(T), 0);
    return reinterpret_cast<T*>(b.owned.back().data());
}

double number_at(const ColumnView& v, size_t i) {
    switch (v.dtype) {
        case DType::Int32: return double(static_cast<const int32_t*>(v.values)[i]);
        case DType::Int64: return double(static_cast<const int64_t*>(v.values)[i]);
        case DType::Float32: return double(static_cast<const float*>(v.values)[i]);
        case DType::Float64: return static_cast<const double*>(v.values)[i];
        default: return NAN;
    }
}

// Integers (int32 or int64 target) from any integer or float column: lossless or refused.
void to_integer(InputBatch& b, ColumnView& out, const ImportedColumn& c, const ColumnSpec& spec, std::string_view what,
                size_t rows) {
    const ColumnView& v = c.view;
    const bool to32 = spec.dtype == DType::Int32;
    const std::string_view name = dtype_name(spec.dtype);
    const int64_t lo = to32 ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int64_t>::min();
    const int64_t hi = to32 ? std::numeric_limits<int32_t>::max() : std::numeric_limits<int64_t>::max();
    if (v.dtype == spec.dtype && !v.valid) {
        out.values = v.values;  // already the declared type: borrowed
        return;
    }
    void* dst = to32 ? static_cast<void*>(alloc<int32_t>(b, rows)) : static_cast<void*>(alloc<int64_t>(b, rows));
    for (size_t i = 0; i < rows; ++i) {
        int64_t x = 0;
        if (v.is_valid(i)) {
            if (v.dtype == DType::Float32 || v.dtype == DType::Float64) {
                const double d = number_at(v, i);
                if (!std::isfinite(d) || d != std::round(d))
                    throw_error(ErrorKind::InvalidArgument,
                                "{} '{}' has the non-integer value {} at row {}, expected {}: round or cast it first", what,
                                v.name, d, i, name);
                // 2^63 is the first double past int64: compare as doubles before converting.
                if (d < double(lo) || d >= -double(std::numeric_limits<int64_t>::min()) || (to32 && d > double(hi)))
                    throw_error(ErrorKind::InvalidArgument, "{} '{}' has the value {} at row {}, out of {} range: drop or "
                                "correct that row, or declare the column with a wider type", what, v.name, d, i, name);
                x = int64_t(d);
            } else {
                x = v.dtype == DType::Int32 ? static_cast<const int32_t*>(v.values)[i]
                                            : static_cast<const int64_t*>(v.values)[i];
                if (x < lo || x > hi)
                    throw_error(ErrorKind::InvalidArgument, "{} '{}' has the value {} at row {}, out of {} range: drop or "
                                "correct that row, or declare the column with a wider type", what, v.name, x, i, name);
            }
        }
        if (to32) static_cast<int32_t*>(dst)[i] = int32_t(x);
        else static_cast<int64_t*>(dst)[i] = x;
    }
    out.values = dst;
}

void to_float(InputBatch& b, ColumnView& out, const ColumnView& v, DType target, size_t rows) {
    if (v.dtype == target && !v.valid) {
        out.values = v.values;
        return;
    }
    if (target == DType::Float32) {
        float* dst = alloc<float>(b, rows);
        for (size_t i = 0; i < rows; ++i) dst[i] = v.is_valid(i) ? float(number_at(v, i)) : 0.0f;
        out.values = dst;
    } else {
        double* dst = alloc<double>(b, rows);
        for (size_t i = 0; i < rows; ++i) dst[i] = v.is_valid(i) ? number_at(v, i) : 0.0;
        out.values = dst;
    }
}

// A fixed-width column whose null rows read 0 underneath (what readers and segments always held).
void zero_nulls(InputBatch& b, ColumnView& out, size_t rows) {
    if (!out.valid || !rows) return;
    const size_t w = dtype_width(out.dtype, out.dim);
    uint8_t* dst = alloc<uint8_t>(b, rows * w);
    std::memcpy(dst, out.values, rows * w);
    for (size_t i = 0; i < rows; ++i)
        if (!out.valid[i]) std::memset(dst + i * w, 0, w);
    out.values = dst;
}

ColumnView conform(InputBatch& b, const ImportedColumn& c, const ColumnSpec& spec, std::string_view what, size_t rows) {
    const ColumnView& v = c.view;
    const std::string& type = c.origin.type;
    ColumnView out = v;
    out.name = spec.name;
    out.dtype = spec.dtype;
    out.dim = spec.dim;
    switch (spec.dtype) {
        case DType::Timestamp:
            if (v.dtype == DType::String) {  // ISO 8601 text, each value with its zone
                int64_t* ms = alloc<int64_t>(b, rows);
                parse_zoned_times(v, rows, what, ms);
                out.values = ms;
                out.offsets = nullptr;
                return out;
            }
            require_zoned_timestamps(c, what);
            return out;
        case DType::String:
            if (v.dtype != DType::String)
                throw_error(ErrorKind::InvalidArgument, "{} '{}' has type {}, expected string: cast it with .astype(str) first",
                            what, v.name, type);
            return out;
        case DType::Bool:
            if (v.dtype != DType::Bool)
                throw_error(ErrorKind::InvalidArgument, "{} '{}' has type {}, expected bool: cast it first", what, v.name, type);
            zero_nulls(b, out, rows);
            return out;
        case DType::Vector: {
            if (v.dtype != DType::Vector)
                throw_error(ErrorKind::InvalidArgument, "{} '{}' has type {}, expected lists of {} floats", what, v.name, type,
                            spec.dim);
            size_t first = rows;
            for (size_t i = 0; i < rows && first == rows; ++i)
                if (v.is_valid(i)) first = i;
            if (first == rows) {  // no vector at all: zeros of the declared length
                out.values = alloc<float>(b, rows * spec.dim);
                return out;
            }
            if (v.dim != spec.dim)
                throw_error(ErrorKind::InvalidArgument, "{} '{}' has a vector of length {} at row {}, expected {}", what,
                            v.name, v.dim, first, spec.dim);
            zero_nulls(b, out, rows);
            return out;
        }
        case DType::Int32:
        case DType::Int64:
        case DType::Float32:
        case DType::Float64: {
            if (!c.origin.is_integer && !c.origin.is_float)
                throw_error(ErrorKind::InvalidArgument, "{} '{}' has type {}, expected {}: cast it first", what, v.name,
                            type == "null" ? "null (every value missing)" : type, dtype_name(spec.dtype));
            if (spec.dtype == DType::Int32 || spec.dtype == DType::Int64) to_integer(b, out, c, spec, what, rows);
            else to_float(b, out, v, spec.dtype, rows);
            return out;
        }
    }
    return out;
}

} // namespace

InputBatch conform_columns(ImportedBatch in, const std::vector<ColumnSpec>& specs, std::string_view what) {
    InputBatch b;
    b.source = std::move(in);
    b.batch.rows = b.source.rows();
    for (const ColumnSpec& spec : specs) {
        const ImportedColumn* c = b.source.find(spec.name);
        if (!c) throw_error(ErrorKind::InvalidArgument, "{} '{}' is missing", what, spec.name);
        b.batch.columns.push_back(conform(b, *c, spec, what, b.batch.rows));
    }
    return b;
}

InputBatch conform_ingest(ImportedBatch in, const ViewSpec& view) {
    std::set<std::string> seen;
    for (const auto& c : in.columns())
        if (!seen.insert(c.view.name).second)
            throw_error(ErrorKind::InvalidArgument,
                        "column '{}' appears more than once in the data: rename or drop the duplicate", c.view.name);
    std::vector<ColumnSpec> specs = view.join_keys;
    specs.push_back({view.event_column, DType::Timestamp});
    specs.push_back({view.created_column, DType::Timestamp});
    specs.insert(specs.end(), view.features.begin(), view.features.end());
    std::set<std::string> known;
    for (const auto& s : specs) known.insert(s.name);
    for (const auto& c : in.columns())
        if (!known.count(c.view.name))
            throw_error(ErrorKind::InvalidArgument,
                        "column '{}' is not in feature view '{}' (version {}): drop it, or add it to the schema", c.view.name,
                        view.name, view.version);
    InputBatch b;
    b.source = std::move(in);
    b.batch.rows = b.source.rows();
    for (size_t k = 0; k < specs.size(); ++k) {
        const ColumnSpec& spec = specs[k];
        const ImportedColumn* c = b.source.find(spec.name);
        if (!c) {
            if (spec.name == view.created_column) continue;  // optional: the ingest time
            if (spec.name == view.event_column)
                // The point-in-time join and the TTL need every row's event time; there is no safe default.
                throw_error(ErrorKind::InvalidArgument,
                            "the data has no '{0}' column, which feature view '{1}' requires: add a time-zone-aware "
                            "'{0}' column saying when each row's values were true (e.g. df['{0}'] = "
                            "pd.Timestamp.now(tz='UTC').floor('ms') for a snapshot taken now)",
                            spec.name, view.name);
            throw_error(ErrorKind::InvalidArgument, "column '{}' of feature view '{}' is missing from the data", spec.name,
                        view.name);
        }
        ColumnView v = conform(b, *c, spec, "column", b.batch.rows);
        if (k < view.join_keys.size())
            for (size_t i = 0; i < b.batch.rows; ++i)
                if (!v.is_valid(i))
                    throw_error(ErrorKind::InvalidArgument, "join key '{}' is null at row {}: drop or fill those rows",
                                spec.name, i);
        b.batch.columns.push_back(std::move(v));
    }
    return b;
}

} // namespace keel::features

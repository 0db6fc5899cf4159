// core/common/arrow_import.cpp
#include "keel/common/arrow_import.hpp"

#include "keel/common/error.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <utility>

namespace keel {

struct ImportedBatch::State {
    ArrowSchema schema{};  // owned: released once, in the destructor
    ArrowArray array{};    // owned likewise
    size_t rows = 0;
    std::vector<ImportedColumn> columns;
    std::vector<std::vector<uint8_t>> owned;  // converted buffers (a moved vector keeps its storage)
    ImportOptions options;
    std::vector<std::string> skipped;  // columns left out (options.skip_unreadable)

    State() = default;
    State(const State&) = delete;
    State& operator=(const State&) = delete;
    ~State() {
        if (array.release) array.release(&array);
        if (schema.release) schema.release(&schema);
    }

    template <typename T>
    T* alloc(size_t n) {
        owned.emplace_back(std::max<size_t>(n, 1) * sizeof(T));
        return reinterpret_cast<T*>(owned.back().data());
    }
};

ImportedBatch::ImportedBatch() : state_(std::make_unique<State>()) {}
ImportedBatch::~ImportedBatch() = default;
ImportedBatch::ImportedBatch(ImportedBatch&&) noexcept = default;
ImportedBatch& ImportedBatch::operator=(ImportedBatch&&) noexcept = default;

size_t ImportedBatch::rows() const { return state_->rows; }
const std::vector<ImportedColumn>& ImportedBatch::columns() const { return state_->columns; }
const std::vector<std::string>& ImportedBatch::skipped() const { return state_->skipped; }

const ImportedColumn* ImportedBatch::find(std::string_view name) const {
    for (const auto& c : state_->columns)
        if (c.view.name == name) return &c;
    return nullptr;
}

BatchView ImportedBatch::view() const {
    BatchView b;
    b.rows = state_->rows;
    for (const auto& c : state_->columns) b.columns.push_back(c.view);
    return b;
}

namespace {

using State = ImportedBatch::State;

constexpr char kEmpty[8] = {};
constexpr const char* kWhatToDo =
    "cast it to bool, an integer, float32, float64, string, a timestamp, date32, a list of floats (a vector) or a "
    "dictionary of strings, or drop it";

std::string integer_name(char f) {
    switch (f) {
        case 'c': return "int8";
        case 'C': return "uint8";
        case 's': return "int16";
        case 'S': return "uint16";
        case 'i': return "int32";
        case 'I': return "uint32";
        case 'l': return "int64";
        case 'L': return "uint64";
    }
    return "";
}

// The type as pyarrow prints it, so messages read like the user's own code.
std::string type_name(const ArrowSchema& s) {
    const std::string f = s.format ? s.format : "";
    if (s.dictionary) return fmt::format("dictionary<values={}, indices={}>", type_name(*s.dictionary), type_name({f.c_str()}));
    if (f.size() == 1) {
        if (!integer_name(f[0]).empty()) return integer_name(f[0]);
        switch (f[0]) {
            case 'n': return "null";
            case 'b': return "bool";
            case 'e': return "halffloat";
            case 'f': return "float";
            case 'g': return "double";
            case 'u': case 'U': return "string";
            case 'z': return "binary";
            case 'Z': return "large_binary";
        }
    }
    if (f == "tdD") return "date32[day]";
    if (f == "tdm") return "date64[ms]";
    if (f.rfind("ts", 0) == 0 && f.size() >= 4) {
        std::string unit = f[2] == 's' ? "s" : f[2] == 'm' ? "ms" : f[2] == 'u' ? "us" : "ns";
        std::string zone = f.substr(4);
        return zone.empty() ? fmt::format("timestamp[{}]", unit) : fmt::format("timestamp[{}, tz={}]", unit, zone);
    }
    auto child = [&]() -> std::string {
        if (s.n_children < 1 || !s.children || !s.children[0]) return "?";
        const char* n = s.children[0]->name;
        return fmt::format("{}: {}", n ? n : "", type_name(*s.children[0]));
    };
    if (f == "+l") return fmt::format("list<{}>", child());
    if (f == "+L") return fmt::format("large_list<{}>", child());
    if (f.rfind("+w:", 0) == 0) return fmt::format("fixed_size_list<{}>[{}]", child(), f.substr(3));
    if (f == "+s") return "struct";
    if (f.rfind("d:", 0) == 0) return fmt::format("decimal({})", f.substr(2));
    if (f == "vu") return "string_view";
    return fmt::format("Arrow format '{}'", f);
}

[[noreturn]] void unsupported(const std::string& name, const ArrowSchema& s, std::string_view what_to_do = kWhatToDo) {
    throw_error(ErrorKind::InvalidArgument, "column '{}' has type {}, which Keel cannot take: {}", name, type_name(s),
                what_to_do);
}

[[noreturn]] void malformed(const std::string& name, std::string_view why) {
    throw_error(ErrorKind::InvalidArgument, "the Arrow data of column '{}' is malformed: {}", name, why);
}

bool bit(const void* bits, int64_t i) { return (static_cast<const uint8_t*>(bits)[i >> 3] >> (i & 7)) & 1; }

// The array, checked to hold `buffers` buffers and rows [off, off + n).
void check_array(const std::string& name, const ArrowArray& a, int64_t buffers, int64_t off, size_t n) {
    if (a.n_buffers != buffers)
        malformed(name, fmt::format("{} buffers where its type has {}", a.n_buffers, buffers));
    if (a.length < 0 || a.offset < 0 || off < a.offset || off + int64_t(n) > a.offset + a.length)
        malformed(name, fmt::format("rows {} to {} asked of an array of {} rows from row {}", off, off + int64_t(n),
                                    a.length, a.offset));
    if (n > 0 && a.n_buffers > 1 && !a.buffers[1]) malformed(name, "its values buffer is missing");
}

// One byte per row of rows [off, off + n), or nullptr when none is null.
const uint8_t* validity(State& st, const ArrowArray& a, int64_t off, size_t n) {
    if (a.null_count == 0 || a.n_buffers < 1 || !a.buffers[0] || n == 0) return nullptr;
    uint8_t* out = st.alloc<uint8_t>(n);
    size_t nulls = 0;
    for (size_t i = 0; i < n; ++i) nulls += !(out[i] = bit(a.buffers[0], off + int64_t(i)));
    return nulls ? out : nullptr;
}

template <typename From, typename To>
To* widen(State& st, const void* src, int64_t off, size_t n) {
    To* out = st.alloc<To>(n);
    const From* p = static_cast<const From*>(src) + off;
    for (size_t i = 0; i < n; ++i) out[i] = To(p[i]);
    return out;
}

void import_integer(State& st, ImportedColumn& c, const ArrowArray& a, char f, int64_t off, size_t n) {
    const void* src = a.buffers[1];
    ColumnView& v = c.view;
    c.origin.is_integer = true;
    switch (f) {
        case 'i': v.dtype = DType::Int32; v.values = static_cast<const int32_t*>(src) + off; return;
        case 'l': v.dtype = DType::Int64; v.values = static_cast<const int64_t*>(src) + off; return;
        case 'c': v.dtype = DType::Int32; v.values = widen<int8_t, int32_t>(st, src, off, n); return;
        case 'C': v.dtype = DType::Int32; v.values = widen<uint8_t, int32_t>(st, src, off, n); return;
        case 's': v.dtype = DType::Int32; v.values = widen<int16_t, int32_t>(st, src, off, n); return;
        case 'S': v.dtype = DType::Int32; v.values = widen<uint16_t, int32_t>(st, src, off, n); return;
        case 'I': v.dtype = DType::Int64; v.values = widen<uint32_t, int64_t>(st, src, off, n); return;
        case 'L': {
            const uint64_t* p = static_cast<const uint64_t*>(src) + off;
            for (size_t i = 0; i < n; ++i)
                if (p[i] > uint64_t(std::numeric_limits<int64_t>::max()) && v.is_valid(i))
                    throw_error(ErrorKind::InvalidArgument, "column '{}' has the value {} at row {}, out of int64 range: "
                                "drop that row, or store the column as float64 or string",
                                v.name, p[i], i);
            v.dtype = DType::Int64;
            v.values = p;  // every value fits: the same bits read as int64
            return;
        }
    }
}

void import_timestamp(State& st, ImportedColumn& c, const ArrowArray& a, const std::string& f, int64_t off, size_t n) {
    ColumnView& v = c.view;
    v.dtype = DType::Timestamp;
    if (f == "tdD") {
        c.origin.is_date = true;
        int64_t* out = st.alloc<int64_t>(n);
        const int32_t* days = static_cast<const int32_t*>(a.buffers[1]) + off;
        for (size_t i = 0; i < n; ++i) out[i] = int64_t(days[i]) * 86'400'000;
        v.values = out;
        return;
    }
    if (f == "tdm") {
        c.origin.is_date = true;
        v.values = static_cast<const int64_t*>(a.buffers[1]) + off;
        return;
    }
    if (f.size() < 4 || f[3] != ':' || std::string_view("smun").find(f[2]) == std::string_view::npos)
        malformed(v.name, fmt::format("timestamp format '{}'", f));
    c.origin.zone = f.substr(4);
    c.origin.has_zone = !c.origin.zone.empty();
    const int64_t* src = static_cast<const int64_t*>(a.buffers[1]) + off;
    if (f[2] == 'm') {
        v.values = src;
        return;
    }
    int64_t* out = st.alloc<int64_t>(n);
    if (f[2] == 's') {
        constexpr int64_t lim = std::numeric_limits<int64_t>::max() / 1000;
        for (size_t i = 0; i < n; ++i) {
            if ((src[i] > lim || src[i] < -lim) && v.is_valid(i))
                throw_error(ErrorKind::InvalidArgument, "column '{}' has the timestamp {} s at row {}, out of range "
                                                        "(past year 292,000): drop or correct that row",
                            v.name, src[i], i);
            out[i] = src[i] * 1000;
        }
    } else {
        const int64_t per_ms = f[2] == 'u' ? 1000 : 1'000'000;
        for (size_t i = 0; i < n; ++i) {
            int64_t q = src[i] / per_ms, r = src[i] % per_ms;
            if (r < 0) --q, r += per_ms;  // toward minus infinity, like numpy's //
            if (r != 0 && c.origin.sub_ms_row < 0 && v.is_valid(i)) c.origin.sub_ms_row = int64_t(i);
            out[i] = q;
        }
    }
    v.values = out;
}

// Strings with int32 (utf8) or int64 (large_utf8) offsets.
void import_strings(State& st, ColumnView& v, const ArrowArray& a, bool large, int64_t off, size_t n) {
    const void* chars = a.buffers[2] ? a.buffers[2] : kEmpty;
    v.dtype = DType::String;
    if (!a.buffers[1] && n == 0) {  // no rows: the producer may leave the offsets out
        static const int64_t zero[1] = {0};
        v.values = chars;
        v.offsets = zero;
        return;
    }
    if (large) {
        v.offsets = static_cast<const int64_t*>(a.buffers[1]) + off;
    } else {
        v.offsets = widen<int32_t, int64_t>(st, a.buffers[1], off, n + 1);
    }
    for (size_t i = 0; i < n; ++i)
        if (v.offsets[i + 1] < v.offsets[i]) malformed(v.name, fmt::format("string offsets decrease at row {}", i));
    v.values = chars;
    v.dtype = DType::String;
}

// Text built row by row (`text(i)` for valid rows), as a string column the batch owns.
template <typename Text>
void to_text(State& st, ColumnView& v, size_t n, Text text) {
    int64_t* offsets = st.alloc<int64_t>(n + 1);
    std::string bytes;
    offsets[0] = 0;
    for (size_t i = 0; i < n; ++i) {
        if (v.is_valid(i)) bytes += text(i);
        offsets[i + 1] = int64_t(bytes.size());
    }
    char* chars = st.alloc<char>(bytes.size());
    std::memcpy(chars, bytes.data(), bytes.size());
    v.dtype = DType::String;
    v.values = chars;
    v.offsets = offsets;
}

// Strings as views (Arrow's string_view, "vu"): 16 bytes per row, a length then either the bytes
// themselves (up to 12) or a prefix, a data buffer's index and an offset into it. Copied into
// owned bytes with int64 offsets.
void import_string_views(State& st, ColumnView& v, const ArrowArray& a, int64_t off, size_t n) {
    // Validity, the views, the data buffers, then (C Data Interface) one int64 size per data buffer.
    if (a.n_buffers < 3) malformed(v.name, fmt::format("{} buffers where a string view has at least 3", a.n_buffers));
    const int64_t data_buffers = a.n_buffers - 3;
    const int64_t* sizes = static_cast<const int64_t*>(a.buffers[a.n_buffers - 1]);
    if (data_buffers > 0 && !sizes) malformed(v.name, "its buffer sizes are missing");
    if (n > 0 && !a.buffers[1]) malformed(v.name, "its views buffer is missing");
    const uint8_t* views = static_cast<const uint8_t*>(a.buffers[1]);
    to_text(st, v, n, [&](size_t i) {
        const uint8_t* view = views + (size_t(off) + i) * 16;
        int32_t length, buffer, start;
        std::memcpy(&length, view, 4);
        if (length < 0) malformed(v.name, fmt::format("a negative string length at row {}", i));
        if (length <= 12) return std::string_view(reinterpret_cast<const char*>(view + 4), size_t(length));
        std::memcpy(&buffer, view + 8, 4);
        std::memcpy(&start, view + 12, 4);
        if (buffer < 0 || buffer >= data_buffers || start < 0 || int64_t(start) + length > sizes[buffer] ||
            !a.buffers[2 + buffer])
            malformed(v.name, fmt::format("the string view at row {} points outside its data", i));
        return std::string_view(static_cast<const char*>(a.buffers[2 + buffer]) + start, size_t(length));
    });
}

int64_t index_at(const void* p, char f, size_t i) {
    switch (f) {
        case 'c': return static_cast<const int8_t*>(p)[i];
        case 'C': return static_cast<const uint8_t*>(p)[i];
        case 's': return static_cast<const int16_t*>(p)[i];
        case 'S': return static_cast<const uint16_t*>(p)[i];
        case 'i': return static_cast<const int32_t*>(p)[i];
        case 'I': return static_cast<const uint32_t*>(p)[i];
        case 'l': return static_cast<const int64_t*>(p)[i];
        case 'L': return int64_t(std::min<uint64_t>(static_cast<const uint64_t*>(p)[i], uint64_t(INT64_MAX)));
    }
    return -1;
}

ImportedColumn import_column(State& st, const ArrowSchema& s, const ArrowArray& a, int64_t off, size_t n);

// A dictionary of any other type the importer takes (ImportOptions::convert_scalars): the
// dictionary imported as a column, then its rows gathered by index.
void import_any_dictionary(State& st, ImportedColumn& c, const ArrowSchema& s, const ArrowArray& a, int64_t off,
                           size_t n) {
    ColumnView& v = c.view;
    const std::string idx = s.format ? s.format : "";
    if (idx.size() != 1 || integer_name(idx[0]).empty()) malformed(v.name, fmt::format("dictionary index format '{}'", idx));
    if (!a.dictionary) malformed(v.name, "a dictionary type without dictionary values");
    check_array(v.name, a, 2, off, n);
    ArrowSchema values_schema = *s.dictionary;
    values_schema.name = s.name;
    const ArrowArray& d = *a.dictionary;
    ImportedColumn words = import_column(st, values_schema, d, d.offset, size_t(d.length));
    const std::string type = c.origin.type, format = c.origin.format;
    c.origin = words.origin;
    c.origin.type = type;
    c.origin.format = format;
    c.origin.sub_ms_row = -1;
    const ColumnView& w = words.view;
    uint8_t* valid = nullptr;
    auto null_row = [&](size_t i) {
        if (!valid) {
            valid = st.alloc<uint8_t>(n);
            for (size_t j = 0; j < n; ++j) valid[j] = v.is_valid(j);
        }
        valid[i] = 0;
    };
    std::vector<int64_t> index(n, -1);
    for (size_t i = 0; i < n; ++i) {
        if (!v.is_valid(i)) continue;
        const int64_t k = index_at(a.buffers[1], idx[0], size_t(off) + i);
        if (k < 0 || k >= d.length) malformed(v.name, fmt::format("dictionary index {} at row {} is out of range", k, i));
        if (!w.is_valid(size_t(k))) null_row(i);
        else index[i] = k;
        if (c.origin.sub_ms_row < 0 && index[i] >= 0 && k == words.origin.sub_ms_row) c.origin.sub_ms_row = int64_t(i);
    }
    v.dtype = w.dtype;
    v.dim = w.dim;
    if (w.dtype == DType::String) {
        int64_t* offsets = st.alloc<int64_t>(n + 1);
        std::string bytes;
        offsets[0] = 0;
        for (size_t i = 0; i < n; ++i) {
            if (index[i] >= 0) bytes += w.str(size_t(index[i]));
            offsets[i + 1] = int64_t(bytes.size());
        }
        char* chars = st.alloc<char>(bytes.size());
        std::memcpy(chars, bytes.data(), bytes.size());
        v.values = chars;
        v.offsets = offsets;
    } else {
        const size_t width = dtype_width(w.dtype, w.dim);
        uint8_t* out = st.alloc<uint8_t>(n * width);
        for (size_t i = 0; i < n; ++i) {
            if (index[i] >= 0) std::memcpy(out + i * width, static_cast<const uint8_t*>(w.values) + size_t(index[i]) * width, width);
            else std::memset(out + i * width, 0, width);
        }
        v.values = out;
    }
    if (valid) v.valid = valid;
}

// Dictionary-encoded strings (pandas categories), decoded into owned bytes and int64 offsets.
void import_dictionary(State& st, ImportedColumn& c, const ArrowSchema& s, const ArrowArray& a, int64_t off, size_t n) {
    ColumnView& v = c.view;
    const ArrowSchema& ds = *s.dictionary;
    const std::string vf = ds.format ? ds.format : "";
    const std::string idx = s.format ? s.format : "";
    if ((vf != "u" && vf != "U") || idx.size() != 1 || integer_name(idx[0]).empty())
        unsupported(v.name, s, "decode it (e.g. .astype(str) or .cat.codes) first");
    if (!a.dictionary) malformed(v.name, "a dictionary type without dictionary values");
    const ArrowArray& d = *a.dictionary;
    check_array(v.name, a, 2, off, n);
    check_array(v.name, d, 3, d.offset, size_t(d.length));
    ColumnView words;
    words.name = v.name;
    import_strings(st, words, d, vf == "U", d.offset, size_t(d.length));
    const uint8_t* word_valid = validity(st, d, d.offset, size_t(d.length));
    uint8_t* valid = nullptr;
    int64_t* offsets = st.alloc<int64_t>(n + 1);
    // Two passes: the offsets (indices checked, null words marked), then each word copied once into
    // a buffer of the final size (a growing string would copy the bytes again as it grows). Rows
    // that are null, or whose word is, have no bytes.
    // Instantiated per index type, so the per-row loads are typed (no dispatch per row).
    char* chars = nullptr;
    auto decode = [&](const auto* indices) {
        indices += off;
        offsets[0] = 0;
        for (size_t i = 0; i < n; ++i) {
            int64_t length = 0;
            if (v.is_valid(i)) {
                const int64_t k = int64_t(indices[i]);  // uint64 past int64 wraps negative: refused below
                if (k < 0 || k >= d.length)
                    malformed(v.name, fmt::format("dictionary index {} at row {} is out of range", indices[i], i));
                if (word_valid && !word_valid[k]) {
                    if (!valid) {
                        valid = st.alloc<uint8_t>(n);
                        for (size_t j = 0; j < n; ++j) valid[j] = v.is_valid(j);
                    }
                    valid[i] = 0;
                } else {
                    length = words.offsets[k + 1] - words.offsets[k];
                }
            }
            offsets[i + 1] = offsets[i] + length;
        }
        chars = st.alloc<char>(size_t(offsets[n]));
        const char* source = static_cast<const char*>(words.values);
        for (size_t i = 0; i < n; ++i)
            if (offsets[i + 1] > offsets[i])
                std::memcpy(chars + offsets[i], source + words.offsets[int64_t(indices[i])], size_t(offsets[i + 1] - offsets[i]));
    };
    const void* p = a.buffers[1];
    switch (idx[0]) {
        case 'c': decode(static_cast<const int8_t*>(p)); break;
        case 'C': decode(static_cast<const uint8_t*>(p)); break;
        case 's': decode(static_cast<const int16_t*>(p)); break;
        case 'S': decode(static_cast<const uint16_t*>(p)); break;
        case 'i': decode(static_cast<const int32_t*>(p)); break;
        case 'I': decode(static_cast<const uint32_t*>(p)); break;
        case 'l': decode(static_cast<const int64_t*>(p)); break;
        case 'L': decode(static_cast<const uint64_t*>(p)); break;
    }
    if (valid) v.valid = valid;
    v.dtype = DType::String;
    v.values = chars;
    v.offsets = offsets;
}

// Lists of floats as fixed-length float32 vectors: every non-null row must have one length.
void import_vectors(State& st, ImportedColumn& c, const ArrowSchema& s, const ArrowArray& a, const std::string& f,
                    int64_t off, size_t n) {
    ColumnView& v = c.view;
    if (s.n_children != 1 || !s.children || !s.children[0]) malformed(v.name, "a list type without its item type");
    const std::string cf = s.children[0]->format ? s.children[0]->format : "";
    const bool int_items = cf.size() == 1 && !integer_name(cf[0]).empty();
    if (cf != "f" && cf != "g" && !int_items)
        unsupported(v.name, s, "vectors are lists of numbers: cast the items (e.g. to float32)");
    const bool fixed = f[1] == 'w';
    if (a.n_children != 1 || !a.children || !a.children[0]) malformed(v.name, "a list array without its items");
    check_array(v.name, a, fixed ? 1 : 2, off, n);
    const ArrowArray& items = *a.children[0];
    check_array(v.name, items, 2, items.offset, size_t(items.length));
    // Row i's items are [start(i), start(i) + len(i)) of the child.
    int64_t width = 0;
    if (fixed) {
        width = std::strtoll(f.c_str() + 3, nullptr, 10);
        if (width <= 0) malformed(v.name, fmt::format("fixed-size list format '{}'", f));
    }
    auto start = [&](size_t i) -> int64_t {
        if (fixed) return (off + int64_t(i)) * width;
        return f[1] == 'L' ? static_cast<const int64_t*>(a.buffers[1])[off + int64_t(i)]
                           : static_cast<const int32_t*>(a.buffers[1])[off + int64_t(i)];
    };
    auto len = [&](size_t i) { return fixed ? width : start(i + 1) - start(i); };
    int64_t dim = fixed ? width : -1;
    size_t first = 0;
    for (size_t i = 0; i < n; ++i) {
        if (!v.is_valid(i)) continue;
        if (dim < 0) dim = len(i), first = i;
        if (len(i) != dim)
            throw_error(ErrorKind::InvalidArgument,
                        "column '{}' has a vector of length {} at row {}, expected {} (the length at row {}): every "
                        "vector of a column has one length",
                        v.name, len(i), i, dim, first);
        if (start(i) < 0 || start(i) + dim > items.length) malformed(v.name, fmt::format("list offsets at row {}", i));
    }
    if (fixed && (off + int64_t(n)) * width > items.length) malformed(v.name, "fewer items than rows times the length");
    if (dim < 0) dim = 0;  // no value at all: any length will do
    if (dim > int64_t(UINT32_MAX)) malformed(v.name, "a vector longer than 2^32");
    v.dtype = DType::Vector;
    v.dim = uint32_t(dim);
    const int64_t base = items.offset;
    const bool item_nulls = items.null_count != 0 && items.buffers[0];
    if (fixed && cf == "f" && !item_nulls) {  // already float32 rows: borrow
        v.values = static_cast<const float*>(items.buffers[1]) + base + off * width;
        return;
    }
    float* out = st.alloc<float>(n * size_t(dim));
    for (size_t i = 0; i < n; ++i) {
        float* row = out + i * size_t(dim);
        if (!v.is_valid(i)) {
            std::fill(row, row + dim, 0.0f);
            continue;
        }
        const int64_t s0 = base + start(i);
        for (int64_t j = 0; j < dim; ++j) {
            const void* p = items.buffers[1];
            if (item_nulls && !bit(items.buffers[0], s0 + j)) row[j] = NAN;
            else if (cf == "f") row[j] = static_cast<const float*>(p)[s0 + j];
            else if (cf == "g") row[j] = float(static_cast<const double*>(p)[s0 + j]);
            else row[j] = float(index_at(p, cf[0], size_t(s0 + j)));  // integers, as float32 holds them
        }
    }
    v.values = out;
}

// IEEE 754 half precision to double.
double half_to_double(uint16_t h) {
    const int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    double x;
    if (exponent == 0) x = std::ldexp(double(mantissa), -24);
    else if (exponent == 31) x = mantissa ? std::numeric_limits<double>::quiet_NaN() : HUGE_VAL;
    else x = std::ldexp(double(mantissa | 0x400), exponent - 25);
    return sign ? -x : x;
}

// A little-endian two's-complement integer of `bytes` bytes (4, 8, 16 or 32), as a double.
double decimal_integer(const uint8_t* p, size_t bytes) {
    if (bytes == 4) {
        int32_t v;
        std::memcpy(&v, p, 4);
        return double(v);
    }
    if (bytes == 8) {
        int64_t v;
        std::memcpy(&v, p, 8);
        return double(v);
    }
    if (bytes == 16) {
        __int128 v;
        std::memcpy(&v, p, 16);
        return double(v);  // one correctly rounded conversion
    }
    unsigned __int128 low, high;  // decimal256: two halves, the magnitude first
    std::memcpy(&low, p, 16);
    std::memcpy(&high, p + 16, 16);
    const bool negative = high >> 127;
    if (negative) {
        low = ~low + 1;
        high = ~high + (low == 0 ? 1 : 0);
    }
    const double x = std::ldexp(double(high), 128) + double(low);
    return negative ? -x : x;
}

// Arrow decimals ("d:precision,scale[,bit width]") as float64, like pyarrow's cast.
void import_decimal(State& st, ColumnView& v, const ArrowArray& a, const std::string& f, int64_t off, size_t n) {
    int precision = 0, scale = 0, width = 128;
    if (std::sscanf(f.c_str(), "d:%d,%d,%d", &precision, &scale, &width) < 2 ||
        (width != 32 && width != 64 && width != 128 && width != 256))
        malformed(v.name, fmt::format("decimal format '{}'", f));
    const size_t bytes = size_t(width) / 8;
    const uint8_t* src = static_cast<const uint8_t*>(a.buffers[1]);
    const double ten_to_scale = std::pow(10.0, std::abs(scale));
    double* out = st.alloc<double>(n);
    for (size_t i = 0; i < n; ++i) {
        const double x = v.is_valid(i) ? decimal_integer(src + (size_t(off) + i) * bytes, bytes) : 0.0;
        out[i] = scale >= 0 ? x / ten_to_scale : x * ten_to_scale;
    }
    v.dtype = DType::Float64;
    v.values = out;
}

// Times of day ("tts", "ttm" int32; "ttu", "ttn" int64) as text, like pyarrow's cast to string.
void import_time_of_day(State& st, ColumnView& v, const ArrowArray& a, char unit, int64_t off, size_t n) {
    const int digits = unit == 's' ? 0 : unit == 'm' ? 3 : unit == 'u' ? 6 : 9;
    const int64_t per_second = unit == 's' ? 1 : unit == 'm' ? 1000 : unit == 'u' ? 1'000'000 : 1'000'000'000;
    const bool wide = unit == 'u' || unit == 'n';
    to_text(st, v, n, [&](size_t i) {
        const int64_t t = wide ? static_cast<const int64_t*>(a.buffers[1])[off + int64_t(i)]
                               : static_cast<const int32_t*>(a.buffers[1])[off + int64_t(i)];
        if (t < 0 || t >= 86'400 * per_second) return fmt::format("<value out of range: {}>", t);
        const int64_t s = t / per_second;
        std::string text = fmt::format("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
        if (digits) text += fmt::format(".{:0{}}", t % per_second, digits);
        return text;
    });
}

// Column `s`/`a`: rows [off, off + n) of it.
ImportedColumn import_column(State& st, const ArrowSchema& s, const ArrowArray& a, int64_t off, size_t n) {
    ImportedColumn c;
    ColumnView& v = c.view;
    v.name = s.name ? s.name : "";
    if (!s.format) malformed(v.name, "no format string");
    const std::string f = s.format;
    c.origin.format = f;
    c.origin.type = type_name(s);
    if (a.length < 0 || off < a.offset || off - a.offset + int64_t(n) > a.length)
        malformed(v.name, fmt::format("{} rows from row {} asked of an array of {} rows", n, off - a.offset, a.length));
    if (s.dictionary) {
        v.valid = validity(st, a, off, n);
        const std::string vf = s.dictionary->format ? s.dictionary->format : "";
        if (st.options.convert_scalars && vf != "u" && vf != "U" && !s.dictionary->dictionary)
            import_any_dictionary(st, c, s, a, off, n);
        else
            import_dictionary(st, c, s, a, off, n);
        return c;
    }
    if (f == "n") {
        if (a.n_buffers != 0) malformed(v.name, "a null array with buffers");
        c.origin.is_null = true;
        v.dtype = DType::Float64;
        double* zeros = st.alloc<double>(n);
        std::fill(zeros, zeros + n, 0.0);
        uint8_t* none = st.alloc<uint8_t>(n);
        std::fill(none, none + n, uint8_t(0));
        v.values = zeros;
        v.valid = n ? none : nullptr;
        return c;
    }
    if (f.size() == 1 && !integer_name(f[0]).empty()) {
        check_array(v.name, a, 2, off, n);
        v.valid = validity(st, a, off, n);
        if (n == 0) {
            c.origin.is_integer = true;
            v.dtype = (f[0] == 'l' || f[0] == 'L' || f[0] == 'I') ? DType::Int64 : DType::Int32;
            v.values = kEmpty;
            return c;
        }
        import_integer(st, c, a, f[0], off, n);
        return c;
    }
    if (f == "f" || f == "g") {
        check_array(v.name, a, 2, off, n);
        v.valid = validity(st, a, off, n);
        c.origin.is_float = true;
        v.dtype = f == "f" ? DType::Float32 : DType::Float64;
        v.values = n == 0 ? static_cast<const void*>(kEmpty)
                          : f == "f" ? static_cast<const void*>(static_cast<const float*>(a.buffers[1]) + off)
                                     : static_cast<const void*>(static_cast<const double*>(a.buffers[1]) + off);
        return c;
    }
    if (f == "b") {
        check_array(v.name, a, 2, off, n);
        v.valid = validity(st, a, off, n);
        uint8_t* out = st.alloc<uint8_t>(n);
        for (size_t i = 0; i < n; ++i) out[i] = bit(a.buffers[1], off + int64_t(i));
        v.dtype = DType::Bool;
        v.values = out;
        return c;
    }
    if (f == "u" || f == "U") {
        check_array(v.name, a, 3, off, n);
        v.valid = validity(st, a, off, n);
        import_strings(st, v, a, f == "U", off, n);
        return c;
    }
    if (f == "vu") {
        v.valid = validity(st, a, off, n);
        import_string_views(st, v, a, off, n);
        return c;
    }
    if (f == "tdD" || f == "tdm" || f.rfind("ts", 0) == 0) {
        check_array(v.name, a, 2, off, n);
        v.valid = validity(st, a, off, n);
        if (n == 0) {
            v.dtype = DType::Timestamp;
            v.values = kEmpty;
            c.origin.is_date = f[1] == 'd';
            c.origin.zone = f.size() > 4 ? f.substr(4) : "";
            c.origin.has_zone = !c.origin.zone.empty();
            return c;
        }
        import_timestamp(st, c, a, f, off, n);
        return c;
    }
    if (f == "+l" || f == "+L" || f.rfind("+w:", 0) == 0) {
        v.valid = validity(st, a, off, n);
        import_vectors(st, c, s, a, f, off, n);
        return c;
    }
    if (st.options.convert_scalars) {
        if (f == "e") {
            check_array(v.name, a, 2, off, n);
            v.valid = validity(st, a, off, n);
            c.origin.is_float = true;
            double* out = st.alloc<double>(n);
            for (size_t i = 0; i < n; ++i) out[i] = half_to_double(static_cast<const uint16_t*>(a.buffers[1])[off + int64_t(i)]);
            v.dtype = DType::Float64;
            v.values = out;
            return c;
        }
        if (f.rfind("d:", 0) == 0) {
            check_array(v.name, a, 2, off, n);
            v.valid = validity(st, a, off, n);
            c.origin.is_float = true;
            import_decimal(st, v, a, f, off, n);
            return c;
        }
        if (f.size() == 3 && f.rfind("tt", 0) == 0 && std::string_view("smun").find(f[2]) != std::string_view::npos) {
            check_array(v.name, a, 2, off, n);
            v.valid = validity(st, a, off, n);
            import_time_of_day(st, v, a, f[2], off, n);
            return c;
        }
        if (f.size() == 3 && f.rfind("tD", 0) == 0 && std::string_view("smun").find(f[2]) != std::string_view::npos) {
            check_array(v.name, a, 2, off, n);
            v.valid = validity(st, a, off, n);
            const int64_t* p = static_cast<const int64_t*>(a.buffers[1]) + off;
            to_text(st, v, n, [&](size_t i) { return fmt::format("{}", p[i]); });
            return c;
        }
    }
    if (f == "e") unsupported(v.name, s, "cast it to float32 or float64");
    if (f.rfind("d:", 0) == 0) unsupported(v.name, s, "cast it to float64");
    if (f == "z" || f == "Z" || f == "vz") unsupported(v.name, s, "decode the bytes to strings, or drop the column");
    if (f == "+s") unsupported(v.name, s, "flatten it into one column per field (e.g. pyarrow's Table.flatten())");
    if (f[0] == 't') unsupported(v.name, s, "cast it to int64 or to strings, or drop it");
    unsupported(v.name, s);
}

// Binary and nested types (but lists of numbers: vectors), which ImportOptions::skip_unreadable
// leaves out.
bool unreadable(const ArrowSchema& s) {
    if (s.dictionary) return unreadable(*s.dictionary);
    const std::string f = s.format ? s.format : "";
    if (f == "z" || f == "Z" || f == "vz" || f.rfind("w:", 0) == 0) return true;
    if (f == "+l" || f == "+L" || f.rfind("+w:", 0) == 0) {
        if (s.n_children != 1 || !s.children || !s.children[0] || !s.children[0]->format) return true;
        const std::string item = s.children[0]->format;
        return !(item == "f" || item == "g" || (item.size() == 1 && !integer_name(item[0]).empty()));
    }
    return f.rfind("+", 0) == 0;  // structs, maps, unions, list views, run-end encoded
}

// Takes over a record batch's structs into `st` and imports its columns.
void import_into(State& st, ArrowSchema* schema, ArrowArray* array) {
    // Moved first, so whatever happens next releases them exactly once (State's destructor).
    st.schema = *schema;
    schema->release = nullptr;
    st.array = *array;
    array->release = nullptr;
    const ArrowSchema& s = st.schema;
    const ArrowArray& a = st.array;
    if (!s.release || !a.release) throw_error(ErrorKind::InvalidArgument, "the Arrow data was already released");
    if (!s.format || std::string_view(s.format) != "+s")
        throw_error(ErrorKind::InvalidArgument, "expected a record batch (an Arrow struct of columns), got {}",
                    type_name(s));
    if (s.n_children != a.n_children)
        throw_error(ErrorKind::InvalidArgument, "the Arrow schema names {} columns but the data holds {}", s.n_children,
                    a.n_children);
    if (a.length < 0 || a.offset < 0) throw_error(ErrorKind::InvalidArgument, "the Arrow batch has a negative length");
    if (a.null_count != 0 && a.n_buffers > 0 && a.buffers[0])
        for (int64_t i = 0; i < a.length; ++i)
            if (!bit(a.buffers[0], a.offset + i))
                throw_error(ErrorKind::InvalidArgument, "row {} of the batch is null as a whole: drop it first", i);
    st.rows = size_t(a.length);
    for (int64_t k = 0; k < s.n_children; ++k) {
        const ArrowArray& ca = *a.children[k];
        if (st.options.skip_unreadable && unreadable(*s.children[k])) {
            st.skipped.push_back(s.children[k]->name ? s.children[k]->name : "");
            continue;
        }
        // A sliced struct's offset applies to its children on top of their own.
        st.columns.push_back(import_column(st, *s.children[k], ca, ca.offset + a.offset, st.rows));
    }
}

// Zero-row arrays shaped like a schema (buffers all absent), for a stream that sent no batch.
struct EmptyArrays {
    std::deque<ArrowArray> arrays;
    std::deque<std::vector<ArrowArray*>> children;
    const void* none[3] = {nullptr, nullptr, nullptr};
    ArrowArray* make(const ArrowSchema& s) {
        ArrowArray& a = arrays.emplace_back();
        a = ArrowArray{};
        a.buffers = none;
        const std::string f = s.format ? s.format : "";
        a.n_buffers = f == "n" ? 0 : (f == "u" || f == "U" || f == "z" || f == "Z" || f == "vu") ? 3
                      : (f == "+s" || f.rfind("+w:", 0) == 0) ? 1 : 2;
        if (s.dictionary) {
            a.n_buffers = 2;
            a.dictionary = make(*s.dictionary);
        }
        auto& kids = children.emplace_back();
        for (int64_t k = 0; k < s.n_children; ++k) kids.push_back(make(*s.children[k]));
        a.n_children = int64_t(kids.size());
        a.children = kids.data();
        return &a;
    }
};

// Copies fixed-width or string rows of `part` after `dst`'s existing rows.
void append(std::vector<uint8_t>& bytes, std::vector<int64_t>& offsets, std::vector<uint8_t>& valid, size_t done,
            const ColumnView& part, size_t n) {
    if (part.dtype == DType::String) {
        if (offsets.empty()) offsets.push_back(0);
        const int64_t base = part.offsets[0];
        const char* chars = static_cast<const char*>(part.values);
        bytes.insert(bytes.end(), chars + base, chars + part.offsets[n]);
        const int64_t shift = offsets.back() - base;
        for (size_t i = 1; i <= n; ++i) offsets.push_back(part.offsets[i] + shift);
    } else {
        const size_t w = dtype_width(part.dtype, part.dim);
        const uint8_t* p = static_cast<const uint8_t*>(part.values);
        bytes.insert(bytes.end(), p, p + n * w);
    }
    if (part.valid) {
        if (valid.empty()) valid.assign(done, 1);
        valid.insert(valid.end(), part.valid, part.valid + n);
    } else if (!valid.empty()) {
        valid.insert(valid.end(), n, 1);
    }
}

} // namespace

ImportedBatch import_arrow(ArrowSchema* schema, ArrowArray* array, const ImportOptions& options) {
    ImportedBatch out;
    out.state_->options = options;
    import_into(*out.state_, schema, array);
    return out;
}

ImportedBatch import_arrow_stream(ArrowArrayStream* stream, const ImportOptions& options) {
    if (!stream || !stream->release) throw_error(ErrorKind::InvalidArgument, "the Arrow stream was already released");
    ArrowArrayStream owned = *stream;
    stream->release = nullptr;
    struct Release {
        ArrowArrayStream* s;
        ~Release() {
            if (s->release) s->release(s);
        }
    } release{&owned};
    auto failed = [&](int rc, const char* what) {
        const char* why = owned.get_last_error ? owned.get_last_error(&owned) : nullptr;
        throw_error(ErrorKind::InvalidArgument, "reading the Arrow stream's {} failed ({}): {}", what, rc,
                    why ? why : std::strerror(rc));
    };
    std::vector<ImportedBatch> parts;
    ArrowSchema schema{};
    if (int rc = owned.get_schema(&owned, &schema)) failed(rc, "schema");
    struct SchemaRelease {
        ArrowSchema* s;
        ~SchemaRelease() {
            if (s->release) s->release(s);
        }
    } schema_release{&schema};
    for (;;) {
        ArrowArray array{};
        if (int rc = owned.get_next(&owned, &array)) failed(rc, "next batch");
        if (!array.release) break;
        // Every batch is read against the stream's one schema, which stays owned (and released) here:
        // the views copy what they need of it (names), so a borrowed copy with a no-op release will do.
        ArrowSchema borrowed = schema;
        borrowed.release = [](ArrowSchema* s) { s->release = nullptr; };
        parts.push_back(import_arrow(&borrowed, &array, options));
    }
    if (parts.size() == 1) return std::move(parts[0]);
    ImportedBatch out;
    State& st = *out.state_;
    st.options = options;
    if (parts.empty()) {
        // No batch at all: the schema's columns with no rows, read from empty arrays of its shape.
        if (!schema.format || std::string_view(schema.format) != "+s")
            throw_error(ErrorKind::InvalidArgument, "expected a stream of record batches, got {}", type_name(schema));
        EmptyArrays empty;
        for (int64_t k = 0; k < schema.n_children; ++k) {
            if (options.skip_unreadable && unreadable(*schema.children[k])) {
                st.skipped.push_back(schema.children[k]->name ? schema.children[k]->name : "");
                continue;
            }
            st.columns.push_back(import_column(st, *schema.children[k], *empty.make(*schema.children[k]), 0, 0));
        }
        return out;
    }
    // Several batches: one copy of each column, end to end.
    const ImportedBatch& first = parts[0];
    st.skipped = first.skipped();
    for (size_t k = 0; k < first.columns().size(); ++k) {
        const ImportedColumn& head = first.columns()[k];
        std::vector<uint8_t> bytes, valid;
        std::vector<int64_t> offsets;
        ImportedColumn c;
        c.view.name = head.view.name;
        c.view.dtype = head.view.dtype;
        c.origin = head.origin;
        c.origin.sub_ms_row = -1;
        size_t done = 0;
        uint32_t dim = 0;
        bool dim_known = false;
        for (const auto& part : parts) {
            const ImportedColumn& pc = part.columns()[k];
            if (pc.view.dtype == DType::Vector && part.rows() > 0) {
                bool any = false;
                for (size_t i = 0; i < part.rows() && !any; ++i) any = pc.view.is_valid(i);
                if (any) {
                    if (dim_known && pc.view.dim != dim)
                        throw_error(ErrorKind::InvalidArgument,
                                    "column '{}' has vectors of length {} from row {}, expected {}: every vector of a "
                                    "column has one length",
                                    c.view.name, pc.view.dim, done, dim);
                    dim = pc.view.dim;
                    dim_known = true;
                }
            }
            if (c.origin.sub_ms_row < 0 && pc.origin.sub_ms_row >= 0) c.origin.sub_ms_row = int64_t(done) + pc.origin.sub_ms_row;
            done += part.rows();
        }
        done = 0;
        for (const auto& part : parts) {
            ImportedColumn pc = part.columns()[k];
            if (pc.view.dtype == DType::Vector && pc.view.dim != dim) {
                // A part without values (all null) is zeros of the common length.
                std::vector<uint8_t> zeros(part.rows() * 4 * dim, 0);
                pc.view.dim = dim;
                pc.view.values = zeros.data();
                append(bytes, offsets, valid, done, pc.view, part.rows());
            } else {
                append(bytes, offsets, valid, done, pc.view, part.rows());
            }
            done += part.rows();
        }
        c.view.dim = dim;
        st.owned.push_back(std::move(bytes));
        c.view.values = st.owned.back().data();
        if (c.view.dtype == DType::String) {
            if (offsets.empty()) offsets.push_back(0);
            uint8_t* o = reinterpret_cast<uint8_t*>(st.alloc<int64_t>(offsets.size()));
            std::memcpy(o, offsets.data(), offsets.size() * 8);
            c.view.offsets = reinterpret_cast<const int64_t*>(o);
        }
        if (!valid.empty()) {
            st.owned.push_back(std::move(valid));
            c.view.valid = st.owned.back().data();
        }
        st.columns.push_back(std::move(c));
    }
    for (const auto& part : parts) st.rows += part.rows();
    return out;
}

} // namespace keel

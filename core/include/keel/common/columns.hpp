// core/include/keel/common/columns.hpp
#pragma once

// The one way columns are seen across the core: the feature store ingests, joins and reads them,
// the quality runner checks them, and the Arrow importer (arrow_import.hpp) produces them from
// whatever Python (or any Arrow producer) hands over.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace keel {

//! The value types a column can hold. Timestamps are int64 milliseconds since the epoch (UTC);
//! vectors are fixed-length float32 (embeddings); strings are UTF-8 bytes.
enum class DType : uint8_t { Bool = 1, Int32, Int64, Float32, Float64, String, Timestamp, Vector };

//! "bool", "int32", ... "vector": the names users write in schemas.
std::string_view dtype_name(DType type);
//! Parses a dtype name ("float64", "vector"); throws InvalidArgument naming the accepted ones.
DType parse_dtype(std::string_view name);
//! Bytes one row of this type takes in a fixed-width buffer (strings: 0; vectors: 4 * dim).
size_t dtype_width(DType type, uint32_t dim);

//! Turns a PII value (its text) into the masked form readers without a grant see (the feature
//! store's salted sha256, features::FeatureStore::mask_string).
using Masker = std::function<std::string(std::string_view)>;

//! A borrowed column. Fixed-width types: `values` holds rows * dtype_width bytes (bools one byte
//! each). Strings: `offsets` holds rows + 1 int64 offsets into the bytes at `values` (Arrow's
//! large_string layout; the first need not be 0). `valid` is one byte per row (1 = value, 0 = null)
//! or nullptr when every row has a value.
struct ColumnView {
    std::string name;
    DType dtype = DType::Float64;
    uint32_t dim = 0;  //!< vector length, 0 for other types
    const void* values = nullptr;
    const int64_t* offsets = nullptr;
    const uint8_t* valid = nullptr;
    //! Set on PII columns handed to quality rules (plugins::mark_pii): what the masked form is, and
    //! whether the caller's role may not read the raw values.
    const Masker* mask = nullptr;
    bool masked = false;

    bool is_valid(size_t row) const { return valid == nullptr || valid[row] != 0; }
    std::string_view str(size_t row) const {
        return {static_cast<const char*>(values) + offsets[row], size_t(offsets[row + 1] - offsets[row])};
    }
};

//! A batch of borrowed columns, all `rows` long.
struct BatchView {
    size_t rows = 0;
    std::vector<ColumnView> columns;
    //! The column called `name`, or nullptr.
    const ColumnView* find(std::string_view name) const;
};

} // namespace keel

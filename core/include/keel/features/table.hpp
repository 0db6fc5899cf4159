// core/include/keel/features/table.hpp
#pragma once

#include "keel/features/schema.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace keel::features {

//! A borrowed column handed to the core (from numpy/arrow buffers without copies).
//! Fixed-width types: `values` holds rows * dtype_width bytes. Strings: `offsets` holds rows + 1
//! int64 offsets into `values` (Arrow large_string layout). `valid` is one byte per row (1 = value,
//! 0 = null) or nullptr when every row has a value.
struct ColumnView {
    std::string name;
    DType dtype = DType::Float64;
    uint32_t dim = 0;
    const void* values = nullptr;
    const int64_t* offsets = nullptr;
    const uint8_t* valid = nullptr;

    bool is_valid(size_t row) const { return valid == nullptr || valid[row] != 0; }
};

//! A batch of borrowed columns, all `rows` long.
struct BatchView {
    size_t rows = 0;
    std::vector<ColumnView> columns;
    //! The column called `name`, or nullptr.
    const ColumnView* find(std::string_view name) const;
};

//! A column the core produced and owns (handed to Python without a copy).
struct Column {
    std::string name;
    DType dtype = DType::Float64;
    uint32_t dim = 0;
    size_t rows = 0;
    std::vector<uint8_t> values;   //!< fixed-width values, or string bytes
    std::vector<int64_t> offsets;  //!< strings only: rows + 1 offsets
    std::vector<uint8_t> valid;    //!< one byte per row; empty means all valid
    bool masked = false;           //!< PII column masked for the caller's role

    ColumnView view() const;
};

//! A result table: columns of equal length.
struct Table {
    size_t rows = 0;
    std::vector<Column> columns;
    BatchView view() const;
};

} // namespace keel::features

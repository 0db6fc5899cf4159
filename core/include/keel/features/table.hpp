// core/include/keel/features/table.hpp
#pragma once

#include "keel/common/columns.hpp"
#include "keel/features/schema.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace keel::features {

// Borrowed columns are the core's one column view (keel/common/columns.hpp).
using keel::BatchView;
using keel::ColumnView;

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

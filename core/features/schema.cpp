// core/features/schema.cpp
#include "keel/features/schema.hpp"

#include "keel/common/error.hpp"
#include "keel/features/table.hpp"

namespace keel::features {

const ColumnSpec* ViewSpec::feature(std::string_view name) const {
    for (const ColumnSpec& c : features)
        if (c.name == name) return &c;
    return nullptr;
}

ColumnView Column::view() const {
    ColumnView v;
    v.name = name;
    v.dtype = dtype;
    v.dim = dim;
    v.values = values.data();
    v.offsets = dtype == DType::String ? offsets.data() : nullptr;
    v.valid = valid.empty() ? nullptr : valid.data();
    return v;
}

BatchView Table::view() const {
    BatchView b;
    b.rows = rows;
    for (const Column& c : columns) b.columns.push_back(c.view());
    return b;
}

} // namespace keel::features

// core/inference/column_rows.cpp
#include "keel/inference/column_rows.hpp"

#include "keel/common/error.hpp"

#include <cmath>
#include <limits>
#include <string>

namespace keel::inference {

namespace {

std::string python_list(const std::vector<std::string>& names) {
    std::string out = "[";
    for (size_t i = 0; i < names.size(); ++i) out += fmt::format("{}'{}'", i ? ", " : "", names[i]);
    return out + "]";
}

// Column `c` into every `stride`-th value of `out` (one model input of every row).
template <typename T>
void scatter(const ColumnView& c, size_t rows, double* out, size_t stride) {
    const T* values = static_cast<const T*>(c.values);
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    if (!c.valid) {
        for (size_t i = 0; i < rows; ++i) out[i * stride] = double(values[i]);
        return;
    }
    for (size_t i = 0; i < rows; ++i) out[i * stride] = c.valid[i] ? double(values[i]) : nan;
}

} // namespace

std::vector<double> rows_from_columns(const std::vector<FeatureSpec>& signature, const ImportedBatch& batch) {
    std::vector<const ImportedColumn*> inputs;
    std::vector<std::string> missing, wanted;
    for (const FeatureSpec& f : signature) {
        wanted.push_back(f.name);
        const ImportedColumn* found = nullptr;
        for (const ImportedColumn& c : batch.columns()) {
            if (c.view.name != f.name) continue;
            if (found)
                throw_error(ErrorKind::InvalidArgument,
                            "column '{}' appears more than once in the data: rename or drop the duplicate so Keel "
                            "knows which one the model reads",
                            f.name);
            found = &c;
        }
        if (!found) missing.push_back(f.name);
        inputs.push_back(found);
    }
    if (!missing.empty())
        throw_error(ErrorKind::InvalidArgument, "the data lacks the column(s) {}: the model reads {}",
                    python_list(missing), python_list(wanted));
    const size_t rows = batch.rows(), width = signature.size();
    std::vector<double> out(rows * width);
    for (size_t k = 0; k < width; ++k) {
        const ImportedColumn& c = *inputs[k];
        double* first = out.data() + k;
        switch (c.view.dtype) {
            case DType::Int32: scatter<int32_t>(c.view, rows, first, width); break;
            case DType::Int64: scatter<int64_t>(c.view, rows, first, width); break;
            case DType::Float32: scatter<float>(c.view, rows, first, width); break;
            case DType::Float64: scatter<double>(c.view, rows, first, width); break;
            case DType::Bool: scatter<uint8_t>(c.view, rows, first, width); break;
            default:
                throw_error(ErrorKind::InvalidArgument,
                            "column '{}' has type {}, which the model cannot read as numbers: cast it to a numeric "
                            "type first{}",
                            c.view.name, c.origin.type,
                            c.view.dtype == DType::String ? " (the model keeps no vocabulary for this column)" : "");
        }
    }
    return out;
}

} // namespace keel::inference

// core/plugins/quality_input.cpp
#include "keel/plugins/quality_input.hpp"

#include "keel/common/time_columns.hpp"

#include <utility>

namespace keel::plugins {

ImportOptions quality_import_options() {
    ImportOptions options;
    options.convert_scalars = true;
    options.skip_unreadable = true;
    return options;
}

BatchView checkable_columns(const BatchView& batch) {
    BatchView out;
    out.rows = batch.rows;
    for (const ColumnView& c : batch.columns)
        if (c.dtype != DType::Vector) out.columns.push_back(c);  // a vector has no column statistics
    return out;
}

QualityBatch quality_batch(ImportedBatch imported) {
    for (const ImportedColumn& c : imported.columns()) refuse_naive_timestamps(c, "column");
    QualityBatch out;
    out.source = std::move(imported);
    out.left_out = out.source.skipped();
    for (const ImportedColumn& c : out.source.columns())
        if (c.view.dtype == DType::Vector) out.left_out.push_back(c.view.name);
    out.batch = checkable_columns(out.source.view());
    return out;
}

QualityBatch import_quality_batch(ArrowArrayStream* stream) {
    return quality_batch(import_arrow_stream(stream, quality_import_options()));
}

} // namespace keel::plugins

// core/include/keel/plugins/quality_input.hpp
#pragma once

// The batch quality rules read, from any Arrow data, so every host (Python, a C++ server) hands rules
// the same columns: categories decoded, decimals and float16 as float64, other scalar types (times
// of day, durations) as their text, and the columns rules have no statistics of (binary, nested,
// vectors) left out, so a rule cannot name them. Timestamps must name their zone (freshness
// rules compare instants): a naive column is refused by the core's one rule for time.

#include "keel/common/arrow_c.hpp"
#include "keel/common/arrow_import.hpp"
#include "keel/common/columns.hpp"

#include <string>
#include <vector>

namespace keel::plugins {

//! Columns as quality rules see them; `batch` borrows from `source`, alive as long as this object.
struct QualityBatch {
    ImportedBatch source;
    BatchView batch;
    //! Columns of the data rules cannot name: binary and nested ones, then vectors.
    std::vector<std::string> left_out;
};

//! How quality checks import Arrow data: every scalar type converted, binary and nested columns
//! left out (see ImportOptions).
ImportOptions quality_import_options();

//! Imported columns (imported with quality_import_options()) as rules see them. Throws
//! InvalidArgument for a timestamp column without a time zone, naming it and the fix.
QualityBatch quality_batch(ImportedBatch imported);
//! Imports a stream of record batches (a pyarrow Table) for quality checks; the stream is released.
QualityBatch import_quality_batch(ArrowArrayStream* stream);

//! Columns already typed by another module (a feature view's prepared ingest batch) as rules see
//! them: vectors left out.
BatchView checkable_columns(const BatchView& batch);

} // namespace keel::plugins

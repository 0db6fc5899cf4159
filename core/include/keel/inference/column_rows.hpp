// core/include/keel/inference/column_rows.hpp
#pragma once

// Model rows from named columns (Arrow data imported by keel/common/arrow_import.hpp), so a batch
// reaches a predictor by column name with no detour through another library's frames.

#include "keel/common/arrow_import.hpp"
#include "keel/inference/predictor.hpp"

#include <vector>

namespace keel::inference {

//! Row-major float64 rows, one value per input of `signature` in its order, each read from the
//! column of that name: integers, floats and bools as numbers, nulls as NaN; other columns are
//! ignored. Throws InvalidArgument naming every missing input and the model's inputs, a column of
//! another type (its Arrow type and the fix) and a name given twice.
std::vector<double> rows_from_columns(const std::vector<FeatureSpec>& signature, const ImportedBatch& batch);

} // namespace keel::inference

// core/include/keel/features/input.hpp
#pragma once

// Columns arriving from Arrow (keel/common/arrow_import.hpp), typed as a feature view declares
// them: the one place the feature store's input rules live (which Arrow types a declared type
// accepts, lossless integer casts, timestamps with a zone and millisecond precision, vector
// lengths, join keys without nulls), whoever the caller is.

#include "keel/common/arrow_import.hpp"
#include "keel/features/schema.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace keel::features {

//! Imported columns converted to declared types; `batch` borrows from `source` and `owned`.
struct InputBatch {
    BatchView batch;
    ImportedBatch source;
    std::vector<std::vector<uint8_t>> owned;
};

//! The one rule for timestamp data: a column meant as points in time must be Arrow timestamps
//! naming a time zone (naive ones are ambiguous), whole milliseconds. Throws InvalidArgument
//! naming `what` ("column", "key", "label column"), the column, the row and the fix.
void require_zoned_timestamps(const ImportedColumn& column, std::string_view what);

//! The columns named by `specs`, each converted to its declared type (see the rules above);
//! columns of `in` not named are dropped, a named one missing throws ("{what} '{name}' is missing").
InputBatch conform_columns(ImportedBatch in, const std::vector<ColumnSpec>& specs, std::string_view what);

//! A batch for FeatureStore::ingest into `view`: no column outside the view, every key, the event
//! timestamp and every feature present (the created timestamp is optional), each of its declared
//! type, join keys without nulls. Throws InvalidArgument naming the first problem and its fix.
InputBatch conform_ingest(ImportedBatch in, const ViewSpec& view);

} // namespace keel::features

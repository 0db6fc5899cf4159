// core/include/keel/features/input.hpp
#pragma once

// Columns arriving from Arrow (keel/common/arrow_import.hpp), typed as a feature view declares
// them: the one place the feature store's input rules live (which Arrow types a declared type
// accepts, lossless integer casts, vector lengths, join keys without nulls), whoever the caller is.
// Timestamp columns follow the core's one rule for time (keel/common/time_columns.hpp): Arrow
// timestamps naming a zone, or ISO 8601 text with one, in whole milliseconds.

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

//! The columns named by `specs`, each converted to its declared type (see the rules above);
//! columns of `in` not named are dropped, a named one missing throws ("{what} '{name}' is missing").
InputBatch conform_columns(ImportedBatch in, const std::vector<ColumnSpec>& specs, std::string_view what);

//! A batch for FeatureStore::ingest into `view`: no column outside the view, every key, the event
//! timestamp and every feature present (the created timestamp is optional), each of its declared
//! type, join keys without nulls. Throws InvalidArgument naming the first problem and its fix.
InputBatch conform_ingest(ImportedBatch in, const ViewSpec& view);

} // namespace keel::features

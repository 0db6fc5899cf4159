// core/include/keel/common/time_columns.hpp
#pragma once

// The one rule for columns of time, for every consumer of imported Arrow columns (feature ingest,
// keys and labels, quality checks): a point in time carries its zone. A timestamp column without
// one could mean UTC, the writer's local time or the zone the data was recorded in; guessing would
// shift results by hours, so it is refused with the fix. Single values (as_of=, a CLI flag) follow
// the same rule in the Python layer (keel/_time.py), which reads Python's own time types.

#include "keel/common/arrow_import.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace keel {

//! Refuses an Arrow timestamp column that names no time zone; other columns pass untouched.
//! InvalidArgument names `what` ("column", "label column"), the column and how to localize it.
void refuse_naive_timestamps(const ImportedColumn& column, std::string_view what);

//! A column meant as points in time: Arrow timestamps naming a zone, in whole milliseconds. Dates,
//! other types, naive timestamps and sub-millisecond values are refused (InvalidArgument naming
//! `what`, the column, the first offending row and the fix).
void require_zoned_timestamps(const ImportedColumn& column, std::string_view what);

//! ISO 8601 text as milliseconds since the epoch, for time columns written as strings: each value
//! is `YYYY-MM-DD`, then optionally `T` or a space and `HH[:MM[:SS[.fraction]]]`, then its zone
//! (`Z` or an offset `+HH:MM`, `+HHMM`, `+HH`). `out` gets one value for each of `rows` rows (0 for
//! nulls, whose validity stays the column's). A value without a zone, one that does not parse or one
//! finer than a millisecond is refused naming `what`, the column, the row and the value.
void parse_zoned_times(const ColumnView& text, size_t rows, std::string_view what, int64_t* out);

} // namespace keel

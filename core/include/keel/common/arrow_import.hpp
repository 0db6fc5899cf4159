// core/include/keel/common/arrow_import.hpp
#pragma once

// Columns handed over through the Arrow C Data Interface (arrow_c.hpp), seen as the core's column
// views (columns.hpp). Buffers the core can read as they are (int32/int64/float32/float64,
// large_utf8, fixed-size lists of float32, millisecond timestamps) are borrowed; the rest is
// converted once into buffers the imported batch owns: bit-packed booleans and validity to one
// byte per row, utf8's int32 offsets to int64, narrow integers widened, other time units to
// milliseconds, dictionaries of strings decoded, string views copied, lists of floats to float32
// rows. Other types are refused naming the column, unless the caller's ImportOptions ask for more.

#include "keel/common/arrow_c.hpp"
#include "keel/common/columns.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace keel {

//! What an imported column was on the Arrow side: consumers apply their own rules to it (feature
//! ingest refuses dates and naive timestamps where it wants timestamps; quality checks do not).
struct ArrowOrigin {
    std::string format;      //!< the Arrow format string, e.g. "tsn:UTC", "u", "+w:4"
    std::string type;        //!< readable: "int8", "string", "timestamp[ns, tz=UTC]", "list<float>"
    bool is_integer = false; //!< an integer type (its values came as DType Int32 or Int64)
    bool is_float = false;   //!< float32 / float64
    bool is_date = false;    //!< date32 / date64, imported as midnight UTC timestamps
    bool is_null = false;    //!< Arrow's null type: every row null (imported as float64)
    bool has_zone = false;   //!< timestamps: the type names a time zone
    std::string zone;        //!< timestamps: that zone ("UTC", "+02:00", "Europe/Paris")
    //! Timestamps finer than milliseconds: the first non-null row with a sub-millisecond part
    //! (imported rounded toward minus infinity), -1 when none.
    int64_t sub_ms_row = -1;
};

//! What the importer does with types beyond those it always takes. Feature ingest takes the
//! defaults (a declared type must match, so anything else is the user's to cast); quality checks
//! read whatever they can hold a statistic of (plugins/quality_input.hpp).
struct ImportOptions {
    //! Decimals and float16 become float64; dictionaries of any type it takes are decoded (not
    //! only of strings); times of day and durations become text as pyarrow prints them
    //! ("01:02:03.004000", "-3723").
    bool convert_scalars = false;
    //! Binary and nested columns (structs, maps, unions, lists of anything but numbers) are left
    //! out, their names listed in ImportedBatch::skipped(), instead of refused.
    bool skip_unreadable = false;
};

//! One imported column: the view the core reads and where it came from.
struct ImportedColumn {
    ColumnView view;
    ArrowOrigin origin;
};

//! Columns imported from Arrow, alive as long as this object: it holds the producer's arrays
//! (released exactly once, when it is destroyed) and the buffers converted from them. Movable.
class ImportedBatch {
public:
    ImportedBatch();
    ~ImportedBatch();
    ImportedBatch(ImportedBatch&&) noexcept;
    ImportedBatch& operator=(ImportedBatch&&) noexcept;
    ImportedBatch(const ImportedBatch&) = delete;
    ImportedBatch& operator=(const ImportedBatch&) = delete;

    size_t rows() const;
    const std::vector<ImportedColumn>& columns() const;
    //! The column called `name`, or nullptr.
    const ImportedColumn* find(std::string_view name) const;
    //! The views of every column, for the core's functions taking a BatchView.
    BatchView view() const;
    //! Columns left out (ImportOptions::skip_unreadable), in their order in the data.
    const std::vector<std::string>& skipped() const;

    struct State;

private:
    std::unique_ptr<State> state_;
    friend ImportedBatch import_arrow(ArrowSchema*, ArrowArray*, const ImportOptions&);
    friend ImportedBatch import_arrow_stream(ArrowArrayStream*, const ImportOptions&);
};

//! Imports a struct array (a record batch: one child per column). Takes both structs over: they
//! are moved (the caller's copies are marked released) and released by the result, or before an
//! error is thrown. Throws InvalidArgument naming the column, its Arrow type and what to do for a
//! type the core cannot hold, and for a batch the structs describe inconsistently.
ImportedBatch import_arrow(ArrowSchema* schema, ArrowArray* array, const ImportOptions& options = {});
//! Imports every record batch of a stream (a pyarrow Table) as one batch; the stream is released
//! before returning or throwing.
ImportedBatch import_arrow_stream(ArrowArrayStream* stream, const ImportOptions& options = {});

} // namespace keel

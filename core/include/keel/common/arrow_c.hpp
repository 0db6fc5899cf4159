// core/include/keel/common/arrow_c.hpp
#pragma once

// The Arrow C Data Interface and C Stream Interface, declared as their specification asks consumers
// to (https://arrow.apache.org/docs/format/CDataInterface.html and CStreamInterface.html): these
// structs are a stable ABI, so Keel declares them itself and never links libarrow. A producer
// (pyarrow's `__arrow_c_array__` / `__arrow_c_stream__`) fills them; the consumer that takes them
// over calls `release` exactly once. The guard macros are the specification's, so a translation
// unit that also includes Arrow's own declaration sees one definition.

#include <cstdint>

extern "C" {

#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

//! The type of one array: a format string ("l" int64, "u" utf8, "tsn:UTC" ...), a name, children.
struct ArrowSchema {
    const char* format;
    const char* name;
    const char* metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema** children;
    struct ArrowSchema* dictionary;
    void (*release)(struct ArrowSchema*);  //!< NULL once released (or moved away)
    void* private_data;
};

//! The data of one array: `length` rows starting `offset` rows into `buffers` (validity first).
struct ArrowArray {
    int64_t length;
    int64_t null_count;  //!< -1: not computed
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void** buffers;
    struct ArrowArray** children;
    struct ArrowArray* dictionary;
    void (*release)(struct ArrowArray*);  //!< NULL once released (or moved away)
    void* private_data;
};

#endif // ARROW_C_DATA_INTERFACE

#ifndef ARROW_C_STREAM_INTERFACE
#define ARROW_C_STREAM_INTERFACE

//! A stream of record batches sharing one schema (a pyarrow Table's chunks).
struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream*, struct ArrowSchema* out);
    //! 0 and out->release == NULL at the end of the stream; an errno value on error.
    int (*get_next)(struct ArrowArrayStream*, struct ArrowArray* out);
    const char* (*get_last_error)(struct ArrowArrayStream*);
    void (*release)(struct ArrowArrayStream*);
    void* private_data;
};

#endif // ARROW_C_STREAM_INTERFACE

} // extern "C"

// bindings/arrow_input.hpp
#pragma once

#include "keel/common/arrow_import.hpp"

#include <pybind11/pybind11.h>

namespace keel::bindings {

//! The columns of a Python object that exports Arrow data through the PyCapsule interface
//! (`__arrow_c_stream__`, e.g. a pyarrow Table, or `__arrow_c_array__`, a RecordBatch): the
//! structs are taken over from the capsules (which then release nothing) and imported by the core.
ImportedBatch import_arrow_object(const pybind11::handle& data, const ImportOptions& options = {});

} // namespace keel::bindings

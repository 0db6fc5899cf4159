// core/common/columns.cpp
#include "keel/common/columns.hpp"

#include "keel/common/error.hpp"

namespace keel {

std::string_view dtype_name(DType type) {
    switch (type) {
        case DType::Bool: return "bool";
        case DType::Int32: return "int32";
        case DType::Int64: return "int64";
        case DType::Float32: return "float32";
        case DType::Float64: return "float64";
        case DType::String: return "string";
        case DType::Timestamp: return "timestamp";
        case DType::Vector: return "vector";
    }
    return "unknown";
}

DType parse_dtype(std::string_view name) {
    for (DType t : {DType::Bool, DType::Int32, DType::Int64, DType::Float32, DType::Float64, DType::String,
                    DType::Timestamp, DType::Vector})
        if (dtype_name(t) == name) return t;
    throw_error(ErrorKind::InvalidArgument,
                "unknown feature type '{}': use bool, int32, int64, float32, float64, string, timestamp or vector",
                name);
}

size_t dtype_width(DType type, uint32_t dim) {
    switch (type) {
        case DType::Bool: return 1;
        case DType::Int32: return 4;
        case DType::Float32: return 4;
        case DType::Int64:
        case DType::Float64:
        case DType::Timestamp: return 8;
        case DType::String: return 0;
        case DType::Vector: return 4 * size_t(dim);
    }
    return 0;
}

const ColumnView* BatchView::find(std::string_view name) const {
    for (const ColumnView& c : columns)
        if (c.name == name) return &c;
    return nullptr;
}

} // namespace keel

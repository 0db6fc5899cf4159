// core/common/error.cpp
#include "keel/common/error.hpp"

namespace keel {

std::string_view error_kind_name(ErrorKind kind) {
    switch (kind) {
    case ErrorKind::NotFound: return "NotFound";
    case ErrorKind::AlreadyExists: return "AlreadyExists";
    case ErrorKind::InvalidArgument: return "InvalidArgument";
    case ErrorKind::Conflict: return "Conflict";
    case ErrorKind::Corrupt: return "Corrupt";
    case ErrorKind::PermissionDenied: return "PermissionDenied";
    case ErrorKind::PluginError: return "PluginError";
    case ErrorKind::Internal: return "Internal";
    case ErrorKind::Unavailable: return "Unavailable";
    }
    return "Internal";
}

int error_kind_exit_code(ErrorKind kind) {
    return 2 + static_cast<int>(kind);
}

} // namespace keel

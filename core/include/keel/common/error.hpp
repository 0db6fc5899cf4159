// core/include/keel/common/error.hpp
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace keel {

//! The kinds of failure Keel reports. Each maps to a Python exception of the same name
//! (under keel.KeelError), a CLI exit code and an HTTP status.
enum class ErrorKind {
    NotFound,
    AlreadyExists,
    InvalidArgument,
    Conflict,
    Corrupt,
    PermissionDenied,
    PluginError,
    Internal,
    //! A server Keel depends on (S3, PostgreSQL, Redis) cannot be reached or keeps failing: the call
    //! may succeed when retried later. HTTP 503.
    Unavailable,
};

//! "NotFound", "Conflict", ...: the name users see in Python and in CLI output.
std::string_view error_kind_name(ErrorKind kind);

//! Distinct exit code per kind for the CLI (2..10), so CI scripts can branch on it.
int error_kind_exit_code(ErrorKind kind);

//! The one exception type of the core. The message names the offending value and what to do.
class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, std::string message) : std::runtime_error(std::move(message)), kind_(kind) {}
    ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

//! throw_error(ErrorKind::NotFound, "run '{}' not found", id)
template <typename... Args>
[[noreturn]] void throw_error(ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
    throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

} // namespace keel

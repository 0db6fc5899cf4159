// core/server/auth.cpp: placeholder of the server skeleton, replaced by its implementation.
#include "keel/server/auth.hpp"
#include "keel/common/error.hpp"

namespace keel::server {
struct Authenticator::Keys {};
Authenticator::Authenticator(AuthOptions options) : options_(std::move(options)) {}
Authenticator::~Authenticator() = default;
Principal Authenticator::authenticate(std::string_view, int64_t) const {
    throw_error(ErrorKind::Internal, "JWT verification is not built yet");
}
Principal Authenticator::authenticate(std::string_view a) const { return authenticate(a, 0); }
const AuthOptions& Authenticator::options() const { return options_; }
} // namespace keel::server

// core/storage/s3_http.hpp: the S3 client's HTTP/1.1 transport: a small pool of keep-alive
// connections (plain or TLS) to one host, each request under a deadline. Beast stays in the .cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::storage::detail {

struct HttpRequest {
    std::string method;  //!< "GET", "PUT", "HEAD", "DELETE"
    std::string target;  //!< path and query, encoded
    std::vector<std::pair<std::string, std::string>> headers;
    std::string_view body;  //!< borrowed for the call
};

struct HttpResponse {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;  //!< names in lower case
    std::string body;
    //! The first header of that (lower-case) name, or "".
    std::string header(std::string_view name) const;
};

//! A request that got no HTTP answer. `connected` tells a dead endpoint (false: nothing was sent)
//! from a connection lost mid-request; `stale` marks a reused keep-alive connection that the server
//! had closed before any answer, which is safe to send again at once.
class TransportError : public std::runtime_error {
public:
    TransportError(std::string message, bool connected, bool stale, bool timed_out)
        : std::runtime_error(std::move(message)), connected(connected), stale(stale), timed_out(timed_out) {}
    bool connected;
    bool stale;
    bool timed_out;
};

struct HttpOptions {
    bool tls = false;
    std::string host;  //!< name or IP address (IPv6 without brackets)
    uint16_t port = 0;
    std::string ca_file;  //!< empty: the system's trust store
    std::chrono::milliseconds connect_timeout{5000};
    std::chrono::milliseconds request_timeout{60000};
    size_t max_idle = 8;
};

//! Thread-safe: each send() takes an idle connection (or opens one) and puts it back after a
//! complete keep-alive answer.
class HttpPool {
public:
    explicit HttpPool(HttpOptions options);
    ~HttpPool();
    HttpPool(const HttpPool&) = delete;
    HttpPool& operator=(const HttpPool&) = delete;

    //! Throws TransportError when no answer came; any HTTP status is an answer.
    HttpResponse send(const HttpRequest& request);

private:
    struct Connection;
    struct Tls;
    std::unique_ptr<Connection> acquire();
    void release(std::unique_ptr<Connection> connection);

    HttpOptions options_;
    std::unique_ptr<Tls> tls_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<Connection>> idle_;
};

} // namespace keel::storage::detail

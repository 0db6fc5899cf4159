// core/include/keel/server/http.hpp
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::server {

//! One HTTP/1.1 request as the routes see it: the transport (Beast, TLS) stays in http_server.cpp.
struct HttpRequest {
    std::string method;   //!< "GET", "POST", ...
    std::string target;   //!< path and query, as sent: "/v1/endpoints/churn/predict?x=1"
    std::vector<std::pair<std::string, std::string>> headers;  //!< names lower-cased
    std::string body;
    std::string peer;     //!< "127.0.0.1:51234"

    //! The first header of that (lower-case) name, "" when absent.
    std::string_view header(std::string_view lower_name) const;
    //! The target without its query string.
    std::string_view path() const;
};

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  //!< extra headers (WWW-Authenticate, ...)
};

//! Answers one request; called on a server thread, possibly on several at once. It must not throw:
//! the routes turn every failure into a response (an exception that escapes is answered 500).
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

//! What one connection and one request may cost the server.
struct HttpLimits {
    size_t max_body_bytes = 8u << 20;         //!< larger bodies: 413, connection closed
    size_t max_header_bytes = 16u << 10;      //!< larger header sections: 431
    std::chrono::milliseconds request_deadline{10'000};  //!< to read one whole request (slowloris)
    std::chrono::milliseconds idle_timeout{60'000};      //!< a keep-alive connection with no request
    size_t max_connections = 4096;            //!< beyond: new connections are closed at once
};

//! PEM files of the server's certificate chain and key; re-read by HttpServer::reload_tls().
struct TlsFiles {
    std::string certificate;
    std::string private_key;
};

struct HttpOptions {
    std::string host = "127.0.0.1";
    uint16_t port = 8080;                     //!< 0: any free port (see HttpServer::port())
    int threads = 0;                          //!< 0: one per core
    HttpLimits limits;
    std::optional<TlsFiles> tls;              //!< set: HTTPS only
    bool reuse_port = true;                   //!< SO_REUSEPORT: several processes share the port
    std::chrono::milliseconds drain_timeout{10'000};  //!< stop() waits this long for requests in flight
};

//! A multi-threaded HTTP/1.1 server (keep-alive; pipelined requests answered in order) on
//! Boost.Beast, optionally TLS (OpenSSL). TCP_NODELAY on every connection.
class HttpServer {
public:
    //! Binds and listens (InvalidArgument naming the address when it cannot: in use, bad host,
    //! unreadable TLS files). Serving starts with run().
    HttpServer(HttpOptions options, HttpHandler handler);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    //! The bound port (the one the OS chose for port 0).
    uint16_t port() const;
    //! Serves on options.threads threads until stop(); returns when every thread has finished.
    void run();
    //! Stops accepting, lets requests in flight finish (up to drain_timeout), closes idle
    //! connections, and makes run() return. Safe from any thread and from a signal-watching thread.
    void stop();
    //! Re-reads the TLS certificate and key for new connections; on a bad file throws
    //! InvalidArgument and keeps serving with the old ones.
    void reload_tls();
    //! Connections open now.
    size_t connections() const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

} // namespace keel::server

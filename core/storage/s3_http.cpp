// core/storage/s3_http.cpp: HttpPool on Boost.Beast. Each connection owns a one-thread io_context;
// a call runs the async operations on it to completion, under Beast's tcp_stream deadlines (connect,
// TLS handshake, then one deadline for writing the request and reading the whole answer), so a dead
// or stuck server ends a call with an error instead of a hang.
#include "s3_http.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <optional>

namespace keel::storage::detail {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

std::string HttpResponse::header(std::string_view name) const {
    for (const auto& [key, value] : headers)
        if (key == name) return value;
    return {};
}

struct HttpPool::Tls {
    ssl::context context{ssl::context::tls_client};
};

struct HttpPool::Connection {
    net::io_context ioc{1};
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;
    bool used = false;  // answered a request before: the server may since have closed it

    beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }
};

namespace {

// Starts one async operation with a handler that records its error, and runs the connection's
// io_context until it completes (its deadline, if any, completes it with beast::error::timeout).
template <typename Start>
beast::error_code run(net::io_context& ioc, Start&& start) {
    beast::error_code result;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
}

std::string where(const HttpOptions& o) {
    if (o.host.find(':') != std::string::npos) return fmt::format("[{}]:{}", o.host, o.port);
    return fmt::format("{}:{}", o.host, o.port);
}

bool is_timeout(const beast::error_code& ec) {
    return ec == beast::error::timeout;
}

// The server closed a kept-alive connection before it saw this request.
bool closed_by_peer(const beast::error_code& ec) {
    return ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
           ec == net::error::broken_pipe || ec == ssl::error::stream_truncated;
}

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

} // namespace

HttpPool::HttpPool(HttpOptions options) : options_(std::move(options)) {
    if (!options_.tls) return;
    tls_ = std::make_unique<Tls>();
    beast::error_code ec;
    tls_->context.set_verify_mode(ssl::verify_peer);
    if (options_.ca_file.empty()) {
        tls_->context.set_default_verify_paths(ec);
    } else {
        tls_->context.load_verify_file(options_.ca_file, ec);
    }
    if (ec)
        throw TransportError(fmt::format("cannot load the TLS certificates to verify {} with ({}): {}", where(options_),
                                         options_.ca_file.empty() ? "the system's" : options_.ca_file, ec.message()),
                             false, false, false);
}

HttpPool::~HttpPool() = default;

std::unique_ptr<HttpPool::Connection> HttpPool::acquire() {
    {
        std::lock_guard lock(mutex_);
        if (!idle_.empty()) {
            auto connection = std::move(idle_.back());
            idle_.pop_back();
            return connection;
        }
    }
    auto c = std::make_unique<Connection>();
    const auto fail = [&](std::string_view what, const beast::error_code& ec) -> TransportError {
        if (is_timeout(ec))
            return TransportError(fmt::format("{} {} timed out after {} ms", what, where(options_),
                                              options_.connect_timeout.count()),
                                  false, false, true);
        return TransportError(fmt::format("{} {} failed: {}", what, where(options_), ec.message()), false, false, false);
    };

    // An IP address needs no lookup; a name is resolved under the connect deadline.
    tcp::resolver::results_type endpoints;
    beast::error_code ec;
    auto address = net::ip::make_address(options_.host, ec);
    if (!ec) {
        endpoints = tcp::resolver::results_type::create(tcp::endpoint(address, options_.port), options_.host,
                                                        std::to_string(options_.port));
    } else {
        tcp::resolver resolver(c->ioc);
        bool done = false;
        resolver.async_resolve(options_.host, std::to_string(options_.port),
                               [&](beast::error_code e, tcp::resolver::results_type results) {
                                   ec = e;
                                   endpoints = std::move(results);
                                   done = true;
                               });
        c->ioc.restart();
        c->ioc.run_for(options_.connect_timeout);
        if (!done) {
            resolver.cancel();
            c->ioc.restart();
            c->ioc.run();
            throw fail("looking up", beast::error::timeout);
        }
        if (ec) throw fail("looking up", ec);
    }

    if (tls_) {
        c->secure.emplace(c->ioc, tls_->context);
        // SNI, and the certificate must name the host.
        if (!SSL_set_tlsext_host_name(c->secure->native_handle(), options_.host.c_str()))
            throw TransportError(fmt::format("cannot set the TLS server name {}", options_.host), false, false, false);
        c->secure->set_verify_callback(ssl::host_name_verification(options_.host));
    } else {
        c->plain.emplace(c->ioc);
    }
    c->lowest().expires_after(options_.connect_timeout);
    ec = run(c->ioc, [&](auto handler) { c->lowest().async_connect(endpoints, std::move(handler)); });
    if (ec) throw fail("connecting to", ec);
    if (tls_) {
        c->lowest().expires_after(options_.connect_timeout);
        ec = run(c->ioc, [&](auto handler) { c->secure->async_handshake(ssl::stream_base::client, std::move(handler)); });
        if (ec) {
            auto error = fail("TLS handshake with", ec);
            if (ec.category() == net::error::get_ssl_category())  // a certificate this machine does not trust
                throw TransportError(std::string(error.what()) + " (a private certificate authority goes in AWS_CA_BUNDLE)",
                                     false, false, false);
            throw error;
        }
    }
    return c;
}

void HttpPool::release(std::unique_ptr<Connection> connection) {
    connection->used = true;
    std::lock_guard lock(mutex_);
    if (idle_.size() < options_.max_idle) idle_.push_back(std::move(connection));
}

HttpResponse HttpPool::send(const HttpRequest& request) {
    auto c = acquire();
    const bool reused = c->used;

    http::request<http::span_body<const char>> req;
    req.method_string(request.method);
    req.target(request.target);
    req.version(11);
    for (const auto& [name, value] : request.headers) req.set(name, value);
    req.body() = beast::span<const char>(request.body.data(), request.body.size());
    if (request.method == "PUT" || request.method == "POST" || !request.body.empty()) req.prepare_payload();
    req.keep_alive(true);

    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.skip(request.method == "HEAD");  // its Content-Length describes a body that never comes

    c->lowest().expires_after(options_.request_timeout);
    beast::error_code ec;
    if (c->secure) {
        ec = run(c->ioc, [&](auto handler) { http::async_write(*c->secure, req, std::move(handler)); });
        if (!ec) ec = run(c->ioc, [&](auto handler) { http::async_read(*c->secure, c->buffer, parser, std::move(handler)); });
    } else {
        ec = run(c->ioc, [&](auto handler) { http::async_write(*c->plain, req, std::move(handler)); });
        if (!ec) ec = run(c->ioc, [&](auto handler) { http::async_read(*c->plain, c->buffer, parser, std::move(handler)); });
    }
    if (ec) {
        if (is_timeout(ec))
            throw TransportError(fmt::format("{} {} got no complete answer from {} within {} ms", request.method,
                                             request.target, where(options_), options_.request_timeout.count()),
                                 true, false, true);
        const bool stale = reused && !parser.got_some() && closed_by_peer(ec);
        throw TransportError(fmt::format("{} {}: connection to {} lost: {}", request.method, request.target,
                                         where(options_), ec.message()),
                             true, stale, false);
    }

    auto& message = parser.get();
    HttpResponse response;
    response.status = static_cast<int>(message.result_int());
    for (const auto& field : message) response.headers.emplace_back(lower({field.name_string().data(), field.name_string().size()}),
                                      std::string(field.value().data(), field.value().size()));
    const bool keep = message.keep_alive();
    response.body = std::move(message.body());
    c->lowest().expires_never();
    if (keep) release(std::move(c));
    return response;
}

} // namespace keel::storage::detail

// core/server/http_server.cpp: HttpServer, the transport of `keel serve`: listening (SO_REUSEPORT so
// several keel-server processes share a port), the accept loop, TLS contexts, graceful stop. One
// connection is in http_session.cpp.
#include "keel/server/http.hpp"

#include "http_session.hpp"
#include "keel/common/error.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace keel::server {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;

namespace {

using reuse_port = net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

std::string address_text(const std::string& host, uint16_t port) {
    if (host.find(':') != std::string::npos && host.front() != '[') return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

[[noreturn]] void listen_failed(const std::string& where, const boost::system::error_code& ec) {
    std::string hint;
    if (ec == net::error::address_in_use)
        hint = " (another server holds the port; pick another with --port)";
    else if (ec == net::error::access_denied)
        hint = " (ports below 1024 need privileges; pick another with --port)";
    else if (ec == boost::system::errc::address_not_available)
        hint = " (no network interface has this address; use 127.0.0.1, 0.0.0.0 or one of this host's addresses)";
    throw_error(ErrorKind::InvalidArgument, "cannot listen on {}: {}{}", where, ec.message(), hint);
}

tcp::endpoint endpoint_of(net::io_context& ioc, std::string host, uint16_t port) {
    const std::string where = address_text(host, port);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    boost::system::error_code ec;
    auto address = net::ip::make_address(host, ec);
    if (!ec) return {address, port};
    if (host == "localhost") return {net::ip::address_v4::loopback(), port};
    tcp::resolver resolver(ioc);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty())
        throw_error(ErrorKind::InvalidArgument,
                    "cannot listen on {}: unknown host '{}' ({}): give an IP address such as 127.0.0.1 "
                    "(this host only) or 0.0.0.0 (every interface)",
                    where, host, ec ? ec.message() : "no address");
    return results.begin()->endpoint();
}

void check_readable(const std::string& path, std::string_view what) {
    std::ifstream in(path);
    if (!in)
        throw_error(ErrorKind::InvalidArgument, "cannot read the TLS {} file '{}': {}", what, path,
                    std::strerror(errno));
}

//! A TLS server context (TLS 1.2 at least) from the PEM files; InvalidArgument naming a bad file.
std::shared_ptr<ssl::context> make_tls_context(const TlsFiles& files) {
    check_readable(files.certificate, "certificate");
    check_readable(files.private_key, "private key");
    auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
    SSL_CTX* native = context->native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    context->set_options(ssl::context::default_workarounds | ssl::context::single_dh_use);
    // An encrypted key would otherwise make OpenSSL prompt on the terminal.
    context->set_password_callback([](size_t, ssl::context::password_purpose) { return std::string(); });
    boost::system::error_code ec;
    context->use_certificate_chain_file(files.certificate, ec);
    if (ec) {
        ERR_clear_error();
        throw_error(ErrorKind::InvalidArgument,
                    "the TLS certificate file '{}' is not a PEM certificate chain ({}): give the server's "
                    "certificate, then its intermediates, in PEM",
                    files.certificate, ec.message());
    }
    context->use_private_key_file(files.private_key, ssl::context::pem, ec);
    if (ec) {
        ERR_clear_error();
        throw_error(ErrorKind::InvalidArgument,
                    "the TLS private key file '{}' is not an unencrypted PEM private key ({})",
                    files.private_key, ec.message());
    }
    if (SSL_CTX_check_private_key(native) != 1) {
        ERR_clear_error();
        throw_error(ErrorKind::InvalidArgument,
                    "the TLS private key file '{}' does not match the certificate in '{}'",
                    files.private_key, files.certificate);
    }
    return context;
}

int thread_count(const HttpOptions& options) {
    if (options.threads > 0) return options.threads;
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

} // namespace

struct HttpServer::Impl final : detail::ConnectionHost {
    HttpOptions options;
    uint16_t bound_port = 0;
    std::atomic<size_t> open{0};
    std::atomic<bool> stop_requested{false};
    std::atomic<bool> destroying{false};

    std::mutex mutex;  // guards tls and live
    std::shared_ptr<ssl::context> tls;
    std::unordered_map<uint64_t, std::weak_ptr<detail::Connection>> live;

    // After the state above: destroying the io_context destroys the connections still queued in it,
    // and they report to connection_ended().
    net::io_context ioc;
    net::strand<net::io_context::executor_type> accept_strand{net::make_strand(ioc)};
    tcp::acceptor acceptor{accept_strand};
    net::steady_timer retry_timer{accept_strand};
    net::steady_timer drain_timer{ioc};
    uint64_t next_id = 0;  // on accept_strand

    explicit Impl(HttpOptions o, HttpHandler h) : options(std::move(o)), ioc(thread_count(options)) {
        limits = options.limits;
        handler = std::move(h);
        if (options.tls) tls = make_tls_context(*options.tls);
        listen();
        accept();
    }

    void listen() {
        const std::string where = address_text(options.host, options.port);
        auto endpoint = endpoint_of(ioc, options.host, options.port);
        boost::system::error_code ec;
        acceptor.open(endpoint.protocol(), ec);
        if (ec) listen_failed(where, ec);
        acceptor.set_option(net::socket_base::reuse_address(true), ec);
        if (!ec && options.reuse_port) acceptor.set_option(reuse_port(true), ec);
        if (!ec) acceptor.bind(endpoint, ec);
        if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
        if (ec) listen_failed(where, ec);
        bound_port = acceptor.local_endpoint().port();
    }

    void accept() {
        acceptor.async_accept(net::make_strand(ioc), [this](boost::system::error_code ec, tcp::socket socket) {
            on_accept(ec, std::move(socket));
        });
    }

    void on_accept(boost::system::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
        if (ec) {
            // Out of file descriptors and the like: try again shortly rather than spin.
            retry_timer.expires_after(std::chrono::milliseconds(20));
            retry_timer.async_wait([this](boost::system::error_code e) {
                if (!e && acceptor.is_open()) accept();
            });
            return;
        }
        if (draining || open.load() >= limits.max_connections) {
            socket.close(ec);
            return accept();
        }
        socket.set_option(tcp::no_delay(true), ec);  // answers are small: no Nagle delay
        std::shared_ptr<ssl::context> context;
        const uint64_t id = ++next_id;
        {
            std::lock_guard lock(mutex);
            context = tls;
        }
        auto connection = detail::make_connection(*this, id, std::move(socket), std::move(context));
        {
            std::lock_guard lock(mutex);
            live.emplace(id, connection);
        }
        ++open;
        connection->start();
        accept();
    }

    void connection_ended(uint64_t id) override {
        bool none;
        {
            std::lock_guard lock(mutex);
            live.erase(id);
            none = live.empty();
        }
        --open;
        if (none && draining && !destroying) ioc.stop();
    }

    //! On accept_strand, after stop(): no new connections, the open ones drain.
    void begin_drain() {
        boost::system::error_code ec;
        acceptor.close(ec);
        retry_timer.cancel();
        std::vector<std::shared_ptr<detail::Connection>> connections;
        {
            std::lock_guard lock(mutex);
            for (auto& [id, weak] : live)
                if (auto c = weak.lock()) connections.push_back(std::move(c));
            if (live.empty()) return ioc.stop();
        }
        for (auto& c : connections) c->drain();
        drain_timer.expires_after(options.drain_timeout);
        drain_timer.async_wait([this](boost::system::error_code e) {
            if (!e) ioc.stop();
        });
    }

    void run_thread() {
        for (;;) {
            try {
                ioc.run();
                return;
            } catch (const std::exception& e) {
                // Nothing above should throw; if something does, keep serving the other connections.
                std::fprintf(stderr, "keel-server: unexpected error in the HTTP server: %s\n", e.what());
            }
        }
    }
};

HttpServer::HttpServer(HttpOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() {
    impl_->destroying = true;
    impl_->ioc.stop();
}

uint16_t HttpServer::port() const { return impl_->bound_port; }

void HttpServer::run() {
    const int threads = thread_count(impl_->options);
    std::vector<std::thread> extra;
    for (int i = 1; i < threads; ++i) extra.emplace_back([this] { impl_->run_thread(); });
    impl_->run_thread();
    for (auto& t : extra) t.join();
}

void HttpServer::stop() {
    if (impl_->stop_requested.exchange(true)) return;
    impl_->draining = true;  // answers from now on say Connection: close
    net::post(impl_->accept_strand, [impl = impl_.get()] { impl->begin_drain(); });
}

void HttpServer::reload_tls() {
    if (!impl_->options.tls)
        throw_error(ErrorKind::InvalidArgument,
                    "cannot reload TLS: this server was started without TLS (give a certificate and a key)");
    auto context = make_tls_context(*impl_->options.tls);  // throws before anything changes
    std::lock_guard lock(impl_->mutex);
    impl_->tls = std::move(context);
}

size_t HttpServer::connections() const { return impl_->open.load(); }

} // namespace keel::server

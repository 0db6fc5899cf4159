// core/server/http_session.hpp: one connection of HttpServer (private to core/server: Beast and Asio
// stay out of the public headers).
#pragma once

#include "keel/server/http.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace keel::server::detail {

//! What a connection needs of its server. The server outlives every connection it accepted.
struct ConnectionHost {
    HttpLimits limits;
    HttpHandler handler;
    //! Set by HttpServer::stop(): answers say `Connection: close`, no new request is read.
    std::atomic<bool> draining{false};

    //! Called once by each connection as it ends (from its destructor).
    virtual void connection_ended(uint64_t id) = 0;

protected:
    ~ConnectionHost() = default;
};

//! One accepted socket: reads requests, answers them through the host's handler, in order.
class Connection : public std::enable_shared_from_this<Connection> {
public:
    virtual ~Connection() = default;
    //! Starts the TLS handshake (if any) and the request loop.
    virtual void start() = 0;
    //! For stop(): an idle connection closes at once; one with a request in flight answers it with
    //! `Connection: close` and then closes. Thread-safe.
    virtual void drain() = 0;
};

//! A connection on `socket`, TLS with `tls` when it is set (the context is kept alive by the
//! connection, so HttpServer::reload_tls() can swap it for new connections only).
std::shared_ptr<Connection> make_connection(ConnectionHost& host, uint64_t id,
                                            boost::asio::ip::tcp::socket socket,
                                            std::shared_ptr<boost::asio::ssl::context> tls);

} // namespace keel::server::detail

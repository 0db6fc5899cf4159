// core/server/http_session.cpp: one HTTP/1.1 connection on Beast: read a request, answer it, read
// the next. Reading the next request only after the answer is written keeps pipelined requests in
// order; the flat_buffer keeps the bytes already received of the next one.
#include "http_session.hpp"

#include "json_out.hpp"

#include "keel/common/error.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <optional>
#include <type_traits>

namespace keel::server::detail {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr size_t kFirstRead = 8192;
//! After an error answer the client may still be sending its body: read (and drop) up to this much
//! for up to kCloseWait before closing, so its unread bytes do not turn the close into a reset that
//! loses the answer.
constexpr size_t kLingerBytes = 1u << 20;
constexpr std::chrono::milliseconds kCloseWait{1000};

std::string peer_of(const tcp::socket& socket) {
    beast::error_code ec;
    auto endpoint = socket.remote_endpoint(ec);
    if (ec) return "unknown";
    auto address = endpoint.address();
    if (address.is_v6() && !address.to_v6().is_v4_mapped())
        return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
    if (address.is_v6()) address = net::ip::make_address_v4(net::ip::v4_mapped, address.to_v6());
    return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

bool is_http_error(const beast::error_code& ec) {
    return &ec.category() == &http::make_error_code(http::error::bad_version).category();
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

template <class Stream>
class Session final : public Connection {
    static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

public:
    template <class... Args>
    Session(ConnectionHost& host, uint64_t id, std::string peer,
            std::shared_ptr<net::ssl::context> tls, Args&&... stream_args)
        : host_(host), id_(id), peer_(std::move(peer)), tls_(std::move(tls)),
          stream_(std::forward<Args>(stream_args)...) {}

    ~Session() override { host_.connection_ended(id_); }

    void start() override {
        net::dispatch(stream_.get_executor(), [self = self()] { self->begin(); });
    }

    void drain() override {
        net::post(stream_.get_executor(), [self = self()] {
            self->draining_ = true;
            // Idle (or still shaking hands): nothing in flight to finish.
            if (self->state_ == State::Idle || self->state_ == State::Handshake) self->lowest().close();
        });
    }

private:
    enum class State { Handshake, Idle, Reading, Writing, Closing };

    std::shared_ptr<Session> self() { return std::static_pointer_cast<Session>(shared_from_this()); }
    beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }
    bool stopping() const { return draining_ || host_.draining.load(); }

    void begin() {
        if constexpr (kTls) {
            state_ = State::Handshake;
            lowest().expires_after(host_.limits.request_deadline);
            stream_.async_handshake(net::ssl::stream_base::server, [self = self()](beast::error_code ec) {
                if (!ec) self->wait_request();
            });
        } else {
            wait_request();
        }
    }

    //! Between requests: the idle timeout runs until the first byte of the next request. A new
    //! connection gets request_deadline for its first byte (no request yet: nothing to be idle
    //! after), so connections opened and left silent cannot hold the server's slots for long.
    void wait_request() {
        if (stopping()) return close_gracefully(false);
        if (buffer_.size() > 0) return read_header();  // a pipelined request already arrived
        state_ = State::Idle;
        lowest().expires_after(answered_ ? host_.limits.idle_timeout : host_.limits.request_deadline);
        stream_.async_read_some(buffer_.prepare(kFirstRead), [self = self()](beast::error_code ec, size_t n) {
            if (ec) return;  // idle timeout, peer gone or stop(): the connection ends here
            self->buffer_.commit(n);
            self->read_header();
        });
    }

    //! From the request's first byte, the whole request must arrive within request_deadline.
    void read_header() {
        state_ = State::Reading;
        const auto& limits = host_.limits;
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(
            std::min<size_t>(limits.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
        parser_->body_limit(limits.max_body_bytes);
        lowest().expires_after(limits.request_deadline);
        http::async_read_header(stream_, buffer_, *parser_, [self = self()](beast::error_code ec, size_t) {
            if (ec) return self->on_read_error(ec);
            self->on_header();
        });
    }

    void on_header() {
        // curl and others wait (a second) for this before sending a body.
        if (!parser_->is_done() && beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
            net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                             [self = self()](beast::error_code ec, size_t) {
                                 if (!ec) self->read_body();
                             });
            return;
        }
        read_body();
    }

    void read_body() {
        if (parser_->is_done()) return answer();
        http::async_read(stream_, buffer_, *parser_, [self = self()](beast::error_code ec, size_t) {
            if (ec) return self->on_read_error(ec);
            self->answer();
        });
    }

    void on_read_error(const beast::error_code& ec) {
        const auto& limits = host_.limits;
        if (ec == http::error::body_limit)
            return refuse(http::status::payload_too_large,
                          fmt::format("the request body is over this server's limit of {} bytes "
                                      "(max_body_bytes): send batches of at most {} bytes",
                                      limits.max_body_bytes, limits.max_body_bytes));
        if (ec == http::error::header_limit)
            return refuse(http::status::request_header_fields_too_large,
                          fmt::format("the request's header section is over this server's limit of {} "
                                      "bytes (max_header_bytes): send fewer or shorter headers",
                                      limits.max_header_bytes));
        // A peer that leaves mid-request gets no answer; timeouts (slowloris) just close.
        if (ec == http::error::end_of_stream || ec == http::error::partial_message) return;
        if (is_http_error(ec))
            return refuse(http::status::bad_request,
                          fmt::format("malformed HTTP request: {}", ec.message()));
    }

    void refuse(http::status status, std::string message) {
        HttpResponse out;
        out.status = static_cast<int>(status);
        out.body = error_body("InvalidArgument", message);
        send(std::move(out), 11, false, false, true);
    }

    void answer() {
        auto& msg = parser_->get();
        HttpRequest request;
        request.method = std::string(msg.method_string());
        request.target = std::string(msg.target());
        for (const auto& field : msg) {
            auto name = field.name_string();
            request.headers.emplace_back(lower({name.data(), name.size()}), std::string(field.value()));
        }
        request.body = std::move(msg.body());
        request.peer = peer_;

        HttpResponse out;
        try {
            out = host_.handler(request);
        } catch (const std::exception& e) {
            out = HttpResponse{500, "application/json", error_body("Internal", e.what()), {}};
        } catch (...) {
            out = HttpResponse{500, "application/json", error_body("Internal", "the handler threw a non-standard exception"), {}};
        }
        send(std::move(out), msg.version(), msg.keep_alive() && !stopping(), msg.method() == http::verb::head, false);
    }

    void send(HttpResponse out, unsigned version, bool keep_alive, bool head, bool linger) {
        state_ = State::Writing;
        res_ = {};
        res_.version(version);
        if (out.status < 100 || out.status > 999) {
            out = HttpResponse{500, "application/json",
                               error_body("Internal", fmt::format("the handler answered status {}", out.status)), {}};
        }
        res_.result(static_cast<unsigned>(out.status));
        res_.set(http::field::server, "keel");
        if (!out.content_type.empty()) res_.set(http::field::content_type, out.content_type);
        for (auto& [name, value] : out.headers) res_.insert(name, value);
        const bool no_body = out.status < 200 || out.status == 204 || out.status == 304;
        if (head) {
            res_.content_length(out.body.size());
        } else if (!no_body) {
            res_.body() = std::move(out.body);
            res_.prepare_payload();
        }
        res_.keep_alive(keep_alive);
        lowest().expires_after(host_.limits.request_deadline);
        http::async_write(stream_, res_, [self = self(), keep_alive, linger](beast::error_code ec, size_t) {
            if (ec) return;
            self->answered_ = true;
            if (!keep_alive || self->stopping()) return self->close_gracefully(linger);
            self->wait_request();
        });
    }

    void close_gracefully(bool linger) {
        state_ = State::Closing;
        if constexpr (kTls) {
            lowest().expires_after(kCloseWait);
            stream_.async_shutdown([self = self()](beast::error_code) {});
        } else {
            beast::error_code ec;
            lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
            if (!linger || ec) return;  // the socket closes with the session
            lowest().expires_after(kCloseWait);
            discard();
        }
    }

    void discard() {
        buffer_.clear();
        stream_.async_read_some(buffer_.prepare(kFirstRead), [self = self()](beast::error_code ec, size_t n) {
            self->discarded_ += n;
            if (!ec && self->discarded_ < kLingerBytes) self->discard();
        });
    }

    ConnectionHost& host_;
    const uint64_t id_;
    const std::string peer_;
    std::shared_ptr<net::ssl::context> tls_;  // before stream_: outlives it
    Stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;
    State state_ = State::Idle;
    bool draining_ = false;
    bool answered_ = false;  // at least one answer written: between requests idle_timeout applies
    size_t discarded_ = 0;
};

} // namespace

std::shared_ptr<Connection> make_connection(ConnectionHost& host, uint64_t id, tcp::socket socket,
                                            std::shared_ptr<net::ssl::context> tls) {
    std::string peer = peer_of(socket);
    if (tls) {
        auto& context = *tls;
        return std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
            host, id, std::move(peer), std::move(tls), std::move(socket), context);
    }
    return std::make_shared<Session<beast::tcp_stream>>(host, id, std::move(peer), nullptr, std::move(socket));
}

} // namespace keel::server::detail

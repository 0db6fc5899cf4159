// tests/cpp/server_http_test.cpp: the HTTP transport of `keel serve` spoken to with raw bytes over
// POSIX sockets (and an Asio TLS client): keep-alive, pipelining, limits, slowloris, TLS, stop.
#include "keel/server/http.hpp"

#include "keel/common/error.hpp"

#include "support/expect_error.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <filesystem>
#include <map>
#include <thread>

using namespace keel;
using namespace keel::server;
using namespace std::chrono_literals;

namespace {

//! Echoes method, target and body; /throw throws, /slow sleeps 300 ms.
struct Echo {
    std::atomic<int> slow_started{0};

    HttpHandler handler() {
        return [this](const HttpRequest& r) {
            if (r.path() == "/throw") throw std::runtime_error("boom in the handler");
            if (r.path() == "/slow") {
                ++slow_started;
                std::this_thread::sleep_for(300ms);
            }
            HttpResponse out;
            out.content_type = "text/plain";
            out.body = r.method + " " + r.target + " " + r.body;
            out.headers.emplace_back("X-Test", std::string(r.header("x-test")));
            out.headers.emplace_back("X-Peer", r.peer);
            return out;
        };
    }
};

HttpOptions options() {
    HttpOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    return o;
}

//! A server running on its own thread, stopped and joined when the test ends.
struct Running {
    HttpServer server;
    std::thread thread;
    Running(HttpOptions o, HttpHandler h) : server(std::move(o), std::move(h)), thread([this] { server.run(); }) {}
    ~Running() {
        server.stop();
        thread.join();
    }
};

struct Response {
    int status = 0;
    std::string status_line;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
};

//! A client on a blocking POSIX socket (5 s receive timeout so a bug fails rather than hangs).
struct Client {
    int fd = -1;
    std::string pending;

    explicit Client(uint16_t port) {
        fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect failed";
        timeval tv{5, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ~Client() { ::close(fd); }
    Client(const Client&) = delete;

    bool send(std::string_view bytes) {
        while (!bytes.empty()) {
            ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n <= 0) return false;
            bytes.remove_prefix(static_cast<size_t>(n));
        }
        return true;
    }

    //! false at EOF, reset or timeout.
    bool fill() {
        char buf[16384];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return false;
        pending.append(buf, static_cast<size_t>(n));
        return true;
    }

    //! One response (status 0 when the connection ended first).
    Response read() {
        Response r;
        size_t end;
        while ((end = pending.find("\r\n\r\n")) == std::string::npos)
            if (!fill()) return r;
        std::string head = pending.substr(0, end);
        pending.erase(0, end + 4);
        size_t eol = head.find("\r\n");
        r.status_line = head.substr(0, eol);
        r.status = std::stoi(r.status_line.substr(9, 3));
        while (eol != std::string::npos) {
            size_t next = head.find("\r\n", eol + 2);
            std::string line = head.substr(eol + 2, next == std::string::npos ? std::string::npos : next - eol - 2);
            size_t colon = line.find(':');
            std::string name = line.substr(0, colon);
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            size_t value = line.find_first_not_of(' ', colon + 1);
            r.headers[name] = value == std::string::npos ? "" : line.substr(value);
            eol = next;
        }
        size_t length = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
        while (pending.size() < length)
            if (!fill()) return Response{};
        r.body = pending.substr(0, length);
        pending.erase(0, length);
        return r;
    }

    //! Whether the server closed the connection (EOF or reset) within `timeout`.
    bool closed_within(std::chrono::milliseconds timeout) {
        pollfd p{fd, POLLIN, 0};
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
            char buf[4096];
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) return true;
        }
    }
};

std::string get(std::string_view target, std::string_view extra = "") {
    return fmt::format("GET {} HTTP/1.1\r\nHost: x\r\n{}\r\n", target, extra);
}

std::string post(std::string_view target, std::string_view body, std::string_view extra = "") {
    return fmt::format("POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{}\r\n{}", target, body.size(), extra, body);
}

Response ask(uint16_t port, const std::string& request) {
    Client c(port);
    c.send(request);
    return c.read();
}

} // namespace

TEST(HttpServer, AnswersGetAndPostWithStatusTypeLengthAndExtraHeaders) {
    Echo echo;
    Running s(options(), echo.handler());
    Client c(s.server.port());
    c.send(get("/v1/ping?x=1", "X-Test: hello\r\n"));
    auto r = c.read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "GET /v1/ping?x=1 ");
    EXPECT_EQ(r.headers["content-type"], "text/plain");
    EXPECT_EQ(r.headers["server"], "keel");
    EXPECT_EQ(r.headers["x-test"], "hello");
    EXPECT_EQ(r.headers["x-peer"].rfind("127.0.0.1:", 0), 0u) << r.headers["x-peer"];

    c.send(post("/v1/predict", "{\"rows\": [1, 2]}"));
    r = c.read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "POST /v1/predict {\"rows\": [1, 2]}");
    EXPECT_EQ(r.headers["content-length"], std::to_string(r.body.size()));
}

TEST(HttpServer, ReadsAChunkedBody) {
    Echo echo;
    Running s(options(), echo.handler());
    auto r = ask(s.server.port(),
                 "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "POST /c abcde");
}

TEST(HttpServer, KeepsTheConnectionAliveForFiveRequests) {
    Echo echo;
    Running s(options(), echo.handler());
    Client c(s.server.port());
    for (int i = 0; i < 5; ++i) {
        c.send(post("/n", std::to_string(i)));
        auto r = c.read();
        EXPECT_EQ(r.status, 200);
        EXPECT_EQ(r.body, "POST /n " + std::to_string(i));
    }
    EXPECT_EQ(s.server.connections(), 1u);
}

TEST(HttpServer, AnswersTwoPipelinedRequestsInOrder) {
    Echo echo;
    Running s(options(), echo.handler());
    Client c(s.server.port());
    c.send(post("/first", "one") + get("/second"));
    auto first = c.read();
    auto second = c.read();
    EXPECT_EQ(first.body, "POST /first one");
    EXPECT_EQ(second.body, "GET /second ");
}

TEST(HttpServer, Http10AndConnectionCloseCloseAfterTheAnswer) {
    Echo echo;
    Running s(options(), echo.handler());
    {
        Client c(s.server.port());
        c.send("GET /old HTTP/1.0\r\n\r\n");
        auto r = c.read();
        EXPECT_EQ(r.status, 200);
        EXPECT_EQ(r.status_line.substr(0, 8), "HTTP/1.0");
        EXPECT_EQ(r.body, "GET /old ");
        EXPECT_TRUE(c.closed_within(2s));
    }
    {
        Client c(s.server.port());
        c.send(get("/bye", "Connection: close\r\n"));
        auto r = c.read();
        EXPECT_EQ(r.status, 200);
        EXPECT_EQ(r.headers["connection"], "close");
        EXPECT_TRUE(c.closed_within(2s));
    }
}

TEST(HttpServer, ABodyOverTheLimitIs413NamingTheLimitThenClosed) {
    Echo echo;
    auto o = options();
    o.limits.max_body_bytes = 1024;
    Running s(o, echo.handler());
    Client c(s.server.port());
    c.send(post("/big", std::string(5000, 'x')));
    auto r = c.read();
    EXPECT_EQ(r.status, 413);
    EXPECT_EQ(r.headers["content-type"], "application/json");
    EXPECT_NE(r.body.find("\"error\":\"InvalidArgument\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("send batches of at most 1024 bytes"), std::string::npos) << r.body;
    EXPECT_TRUE(c.closed_within(3s));

    // A chunked body over the limit too.
    Client d(s.server.port());
    d.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + std::string(2048, 'y') + "\r\n0\r\n\r\n");
    EXPECT_EQ(d.read().status, 413);
}

TEST(HttpServer, HugeHeadersAre431) {
    Echo echo;
    auto o = options();
    o.limits.max_header_bytes = 2048;
    Running s(o, echo.handler());
    auto r = ask(s.server.port(), get("/", "X-Big: " + std::string(4000, 'h') + "\r\n"));
    EXPECT_EQ(r.status, 431);
    EXPECT_NE(r.body.find("2048 bytes"), std::string::npos) << r.body;
}

TEST(HttpServer, EachBadContentLengthAndGarbageIs400) {
    Echo echo;
    Running s(options(), echo.handler());
    for (std::string length : {"-1", "abc", "99999999999999999999999", "1, 2"}) {
        Client c(s.server.port());
        c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + "\r\n\r\nab");
        auto r = c.read();
        EXPECT_EQ(r.status, 400) << length;
        EXPECT_NE(r.body.find("\"error\":\"InvalidArgument\""), std::string::npos) << r.body;
        EXPECT_TRUE(c.closed_within(3s)) << length;
    }
    EXPECT_EQ(ask(s.server.port(), "HELLO THERE\r\n\r\n").status, 400);
    EXPECT_EQ(ask(s.server.port(), "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n").status, 400);
}

TEST(HttpServer, ASlowlorisConnectionIsClosedWhileOthersAreServed) {
    Echo echo;
    auto o = options();
    o.limits.request_deadline = 300ms;
    Running s(o, echo.handler());
    Client slow(s.server.port());
    auto start = std::chrono::steady_clock::now();
    slow.send("GET / HTTP/1.1\r\nHost: x\r\n");
    std::atomic<bool> done{false};
    std::thread dribble([&] {
        for (int i = 0; i < 30 && !done; ++i) {
            if (!slow.send("X-A: b\r\n")) break;
            std::this_thread::sleep_for(50ms);
        }
    });
    EXPECT_EQ(ask(s.server.port(), get("/other")).body, "GET /other ");
    EXPECT_TRUE(slow.closed_within(3s));
    done = true;
    dribble.join();
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_LT(took, 1500ms);
}

TEST(HttpServer, AnIdleKeepAliveConnectionIsClosedAfterTheIdleTimeout) {
    Echo echo;
    auto o = options();
    o.limits.idle_timeout = 200ms;
    Running s(o, echo.handler());
    Client c(s.server.port());
    c.send(get("/"));
    EXPECT_EQ(c.read().status, 200);
    EXPECT_TRUE(c.closed_within(2s));
}

TEST(HttpServer, ANewConnectionThatSendsNothingIsClosedAfterTheRequestDeadline) {
    Echo echo;
    auto o = options();
    o.limits.request_deadline = 200ms;
    Running s(o, echo.handler());
    Client silent(s.server.port());
    EXPECT_TRUE(silent.closed_within(2s));
}

TEST(HttpServer, AnswersExpect100ContinueBeforeTheBodyIsSent) {
    Echo echo;
    Running s(options(), echo.handler());
    Client c(s.server.port());
    c.send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_EQ(c.read().status, 100);
    c.send("hello");
    auto r = c.read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "POST /e hello");
}

TEST(HttpServer, ConnectionsBeyondMaxAreClosedAtOnce) {
    Echo echo;
    auto o = options();
    o.limits.max_connections = 2;
    Running s(o, echo.handler());
    auto a = std::make_unique<Client>(s.server.port());
    Client b(s.server.port());
    a->send(get("/a"));
    b.send(get("/b"));
    EXPECT_EQ(a->read().status, 200);
    EXPECT_EQ(b.read().status, 200);
    EXPECT_EQ(s.server.connections(), 2u);
    Client refused(s.server.port());
    EXPECT_TRUE(refused.closed_within(2s));
    a.reset();
    for (int i = 0; i < 200 && s.server.connections() > 1; ++i) std::this_thread::sleep_for(5ms);
    EXPECT_EQ(s.server.connections(), 1u);
    EXPECT_EQ(ask(s.server.port(), get("/again")).status, 200);
}

TEST(HttpServer, ServesEightClientsAtOnceEachInOrder) {
    Echo echo;
    Running s(options(), echo.handler());
    std::atomic<int> good{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 8; ++t)
        clients.emplace_back([&, t] {
            Client c(s.server.port());
            for (int i = 0; i < 200; ++i) {
                std::string body = std::to_string(t) + "-" + std::to_string(i);
                c.send(post("/many", body) + get("/pipelined"));
                if (c.read().body == "POST /many " + body && c.read().body == "GET /pipelined ") ++good;
            }
        });
    for (auto& c : clients) c.join();
    EXPECT_EQ(good, 8 * 200);
}

TEST(HttpServer, AHandlerExceptionIs500Json) {
    Echo echo;
    Running s(options(), echo.handler());
    Client c(s.server.port());
    c.send(get("/throw"));
    auto r = c.read();
    EXPECT_EQ(r.status, 500);
    EXPECT_EQ(r.body, R"({"error":"Internal","message":"boom in the handler"})");
    c.send(get("/fine"));  // the connection is still good
    EXPECT_EQ(c.read().status, 200);
}

TEST(HttpServer, PortZeroReportsTheRealPort) {
    Echo echo;
    HttpServer server(options(), echo.handler());
    EXPECT_NE(server.port(), 0);
}

TEST(HttpServer, APortHeldByAnotherListenerIsInvalidArgumentNamingIt) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(fd, 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    auto o = options();
    o.port = ntohs(a.sin_port);
    Echo echo;
    auto message = keel::testing::error_message(ErrorKind::InvalidArgument, [&] { HttpServer server(o, echo.handler()); });
    EXPECT_NE(message.find("127.0.0.1:" + std::to_string(o.port)), std::string::npos) << message;
    EXPECT_NE(message.find("Address already in use"), std::string::npos) << message;
    EXPECT_NE(message.find("--port"), std::string::npos) << message;
    ::close(fd);
}

TEST(HttpServer, ABadHostIsInvalidArgument) {
    auto o = options();
    o.host = "no-such-host.invalid";
    Echo echo;
    auto message = keel::testing::error_message(ErrorKind::InvalidArgument, [&] { HttpServer server(o, echo.handler()); });
    EXPECT_NE(message.find("no-such-host.invalid"), std::string::npos) << message;
}

TEST(HttpServer, TwoServersWithReusePortShareAPort) {
    Echo echo;
    Running first(options(), echo.handler());
    auto o = options();
    o.port = first.server.port();
    Running second(o, echo.handler());
    EXPECT_EQ(second.server.port(), first.server.port());
    for (int i = 0; i < 4; ++i) EXPECT_EQ(ask(o.port, get("/shared")).status, 200);
}

TEST(HttpServer, ListensOnLocalhostAndIpv6Loopback) {
    Echo echo;
    auto o = options();
    o.host = "localhost";
    HttpServer v4(o, echo.handler());
    EXPECT_NE(v4.port(), 0);
    o.host = "::1";
    try {
        HttpServer v6(o, echo.handler());
        EXPECT_NE(v6.port(), 0);
    } catch (const Error& e) {
        GTEST_SKIP() << "no IPv6 here: " << e.what();
    }
}

TEST(HttpServer, StopLetsTheRequestInFlightFinishThenRunReturns) {
    Echo echo;
    auto server = std::make_unique<HttpServer>(options(), echo.handler());
    std::atomic<bool> returned{false};
    std::thread runner([&] {
        server->run();
        returned = true;
    });
    Client idle(server->port());
    idle.send(get("/warm"));
    EXPECT_EQ(idle.read().status, 200);
    Client busy(server->port());
    busy.send(get("/slow"));
    while (echo.slow_started == 0) std::this_thread::sleep_for(1ms);
    auto start = std::chrono::steady_clock::now();
    server->stop();
    server->stop();  // idempotent
    EXPECT_TRUE(idle.closed_within(1s));  // idle keep-alive connections close at once
    auto r = busy.read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "GET /slow ");
    EXPECT_EQ(r.headers["connection"], "close");
    EXPECT_TRUE(busy.closed_within(1s));
    runner.join();
    EXPECT_TRUE(returned);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
    EXPECT_EQ(server->connections(), 0u);
}

TEST(HttpServer, StopGivesUpOnAnUnfinishedRequestAfterTheDrainTimeout) {
    Echo echo;
    auto o = options();
    o.drain_timeout = 200ms;
    auto server = std::make_unique<HttpServer>(o, echo.handler());
    std::thread runner([&] { server->run(); });
    Client partial(server->port());
    partial.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");  // never finished
    for (int i = 0; i < 200 && server->connections() == 0; ++i) std::this_thread::sleep_for(5ms);
    auto start = std::chrono::steady_clock::now();
    server->stop();
    runner.join();
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_GE(took, 150ms);
    EXPECT_LT(took, 1500ms);
}

TEST(HttpServer, ARequestHalfReceivedAtStopIsAnsweredWithConnectionClose) {
    Echo echo;
    auto server = std::make_unique<HttpServer>(options(), echo.handler());
    std::thread runner([&] { server->run(); });
    Client c(server->port());
    c.send("POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc");
    for (int i = 0; i < 200 && server->connections() == 0; ++i) std::this_thread::sleep_for(5ms);
    std::this_thread::sleep_for(50ms);
    server->stop();
    c.send("def");
    auto r = c.read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "POST /late abcdef");
    EXPECT_EQ(r.headers["connection"], "close");
    runner.join();
}

TEST(HttpServer, AHeadRequestGetsTheLengthWithoutTheBody) {
    Echo echo;
    Running s(options(), echo.handler());
    Client c(s.server.port());
    c.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n" + get("/after"));
    auto head = c.read();  // (the client reads a Content-Length body: none must come before the next answer)
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.headers["content-length"], "8");  // "HEAD /h "
    EXPECT_EQ(head.body.substr(0, 4), "HTTP");        // what follows is already the next answer
}

TEST(HttpServer, StopBeforeRunMakesRunReturn) {
    Echo echo;
    HttpServer server(options(), echo.handler());
    server.stop();
    server.run();
}

TEST(HttpServer, KeepAliveRoundTripsHaveNoNagleDelay) {
    Echo echo;
    Running s(options(), echo.handler());
    Client c(s.server.port());
    const std::string request = post("/rt", "{\"x\":1}");
    c.send(request);
    c.read();
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) {
        c.send(request);
        ASSERT_EQ(c.read().status, 200);
    }
    auto us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / 1000;
    std::printf("[ measure  ] keep-alive round trip on loopback: %.1f us per request\n", us);
}

// ---- TLS ----

namespace {

namespace net = boost::asio;

struct Certificate {
    keel::testing::TempDir dir;
    std::string cert = (dir.path / "c.pem").string();
    std::string key = (dir.path / "k.pem").string();
    Certificate() {
        auto command = fmt::format(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout {} -out {} -days 1 -subj /CN=127.0.0.1 "
            "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
            key, cert);
        if (std::system(command.c_str()) != 0) ADD_FAILURE() << "openssl could not make a certificate";
    }
};

//! One request over TLS, verifying the server against `ca`; the whole answer as text.
std::string tls_ask(uint16_t port, const std::string& ca, const std::string& request) {
    net::io_context ioc;
    net::ssl::context ctx(net::ssl::context::tls_client);
    ctx.load_verify_file(ca);
    ctx.set_verify_mode(net::ssl::verify_peer);
    net::ssl::stream<net::ip::tcp::socket> stream(ioc, ctx);
    stream.set_verify_callback(net::ssl::host_name_verification("127.0.0.1"));
    stream.next_layer().connect({net::ip::make_address("127.0.0.1"), port});
    stream.handshake(net::ssl::stream_base::client);
    net::write(stream, net::buffer(request));
    std::string answer;
    boost::system::error_code ec;
    net::read(stream, net::dynamic_buffer(answer), ec);  // until the server closes
    return answer;
}

} // namespace

TEST(HttpServerTls, AnswersOverTlsVerifiedAgainstItsCertificate) {
    Certificate c;
    auto o = options();
    o.tls = TlsFiles{c.cert, c.key};
    Echo echo;
    Running s(o, echo.handler());
    auto answer = tls_ask(s.server.port(), c.cert, get("/secure", "Connection: close\r\n"));
    EXPECT_EQ(answer.substr(0, 15), "HTTP/1.1 200 OK") << answer;
    EXPECT_NE(answer.find("GET /secure "), std::string::npos) << answer;

    // Plain HTTP to a TLS port gets no answer.
    Client plain(s.server.port());
    plain.send(get("/"));
    EXPECT_EQ(plain.read().status, 0);
}

TEST(HttpServerTls, BadFilesAreInvalidArgumentNamingTheFile) {
    Certificate c;
    keel::testing::TempDir dir;
    auto junk = (dir.path / "junk.pem").string();
    std::ofstream(junk) << "not a certificate\n";
    Echo echo;
    auto o = options();
    o.tls = TlsFiles{junk, c.key};
    auto message = keel::testing::error_message(ErrorKind::InvalidArgument, [&] { HttpServer server(o, echo.handler()); });
    EXPECT_NE(message.find(junk), std::string::npos) << message;
    o.tls = TlsFiles{c.cert, (dir.path / "missing.pem").string()};
    message = keel::testing::error_message(ErrorKind::InvalidArgument, [&] { HttpServer server(o, echo.handler()); });
    EXPECT_NE(message.find("missing.pem"), std::string::npos) << message;
    o.tls = TlsFiles{c.cert, c.cert};
    message = keel::testing::error_message(ErrorKind::InvalidArgument, [&] { HttpServer server(o, echo.handler()); });
    EXPECT_NE(message.find("private key"), std::string::npos) << message;
}

TEST(HttpServerTls, ReloadWithABadFileThrowsAndKeepsServing) {
    Certificate c;
    keel::testing::TempDir dir;
    auto cert = (dir.path / "c.pem").string();
    auto key = (dir.path / "k.pem").string();
    std::filesystem::copy_file(c.cert, cert);
    std::filesystem::copy_file(c.key, key);
    auto o = options();
    o.tls = TlsFiles{cert, key};
    Echo echo;
    Running s(o, echo.handler());
    s.server.reload_tls();  // same files: fine
    std::ofstream(cert, std::ios::trunc) << "garbage\n";
    auto message = keel::testing::error_message(ErrorKind::InvalidArgument, [&] { s.server.reload_tls(); });
    EXPECT_NE(message.find(cert), std::string::npos) << message;
    auto answer = tls_ask(s.server.port(), c.cert, get("/still", "Connection: close\r\n"));
    EXPECT_EQ(answer.substr(0, 15), "HTTP/1.1 200 OK") << answer;
}

TEST(HttpServerTls, ReloadServesTheNewCertificateToNewConnections) {
    Certificate first, second;
    keel::testing::TempDir dir;
    auto cert = (dir.path / "c.pem").string();
    auto key = (dir.path / "k.pem").string();
    std::filesystem::copy_file(first.cert, cert);
    std::filesystem::copy_file(first.key, key);
    auto o = options();
    o.tls = TlsFiles{cert, key};
    Echo echo;
    Running s(o, echo.handler());
    EXPECT_EQ(tls_ask(s.server.port(), first.cert, get("/", "Connection: close\r\n")).substr(9, 3), "200");
    std::filesystem::copy_file(second.cert, cert, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(second.key, key, std::filesystem::copy_options::overwrite_existing);
    s.server.reload_tls();
    EXPECT_EQ(tls_ask(s.server.port(), second.cert, get("/", "Connection: close\r\n")).substr(9, 3), "200");
    EXPECT_THROW(tls_ask(s.server.port(), first.cert, get("/", "Connection: close\r\n")), boost::system::system_error);
}

TEST(HttpServerTls, ReloadOnAPlainServerIsInvalidArgument) {
    Echo echo;
    HttpServer server(options(), echo.handler());
    keel::testing::error_message(ErrorKind::InvalidArgument, [&] { server.reload_tls(); });
}

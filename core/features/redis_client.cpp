// core/features/redis_client.cpp: hiredis behind Keel's errors (Unavailable for anything the server or
// the network does, so a caller may retry), with a per-process pool of connections.
#include "redis_client.hpp"

#include "keel/common/error.hpp"

#include <hiredis/hiredis.h>

#include <charconv>
#include <cstdlib>
#include <map>
#include <sys/time.h>

namespace keel::features::redis {

namespace {

constexpr size_t kMaxIdle = 16;  // idle connections kept per server

Reply convert(const redisReply* r) {
    Reply out;
    switch (r->type) {
        case REDIS_REPLY_STRING: out.type = Reply::Type::String; out.str.assign(r->str, r->len); break;
        case REDIS_REPLY_STATUS: out.type = Reply::Type::Status; out.str.assign(r->str, r->len); break;
        case REDIS_REPLY_ERROR: out.type = Reply::Type::Error; out.str.assign(r->str, r->len); break;
        case REDIS_REPLY_INTEGER: out.type = Reply::Type::Integer; out.integer = r->integer; break;
        case REDIS_REPLY_ARRAY:
            out.type = Reply::Type::Array;
            out.elements.reserve(r->elements);
            for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
            break;
        default: out.type = Reply::Type::Nil;
    }
    return out;
}

int parse_int(std::string_view text, std::string_view url, const char* what) {
    int v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size() || v < 0)
        throw_error(ErrorKind::InvalidArgument, "online store URL '{}': the {} '{}' is not a number; expected "
                    "redis://host:port/db, e.g. redis://127.0.0.1:6379/0", url, what, text);
    return v;
}

} // namespace

Location Location::parse(std::string_view url) {
    constexpr std::string_view scheme = "redis://";
    if (url.substr(0, scheme.size()) != scheme)
        throw_error(ErrorKind::InvalidArgument, "online store '{}' is not a Redis URL: expected redis://host:port/db, "
                    "e.g. redis://127.0.0.1:6379/0", url);
    std::string_view rest = url.substr(scheme.size());
    if (rest.find('@') != std::string_view::npos)
        throw_error(ErrorKind::InvalidArgument, "online store URL '{}' carries credentials: they would be recorded "
                    "with the view; give redis://host:port/db and set KEEL_REDIS_PASSWORD instead", url);
    Location loc;
    std::string_view hostport = rest.substr(0, rest.find('/'));
    if (rest.find('/') != std::string_view::npos) {
        std::string_view db = rest.substr(rest.find('/') + 1);
        if (!db.empty()) loc.db = parse_int(db, url, "database");
    }
    auto colon = hostport.rfind(':');
    loc.host = std::string(hostport.substr(0, colon));
    if (colon != std::string_view::npos) loc.port = parse_int(hostport.substr(colon + 1), url, "port");
    if (loc.host.empty())
        throw_error(ErrorKind::InvalidArgument, "online store URL '{}' names no host: expected redis://host:port/db", url);
    loc.url = fmt::format("redis://{}:{}/{}", loc.host, loc.port, loc.db);
    return loc;
}

void check(const Reply& r, std::string_view what, const Location& where) {
    if (r.type == Reply::Type::Error)
        throw_error(ErrorKind::Unavailable, "Redis at {} refused {}: {}", where.url, what, r.str);
}

Connection::Connection(const Location& where) : where_(where) {
    timeval connect_timeout{2, 0};
    ctx_ = redisConnectWithTimeout(where_.host.c_str(), where_.port, connect_timeout);
    if (!ctx_) throw_error(ErrorKind::Unavailable, "cannot connect to Redis at {}: out of memory", where_.url);
    if (ctx_->err) {
        std::string why = ctx_->errstr;
        redisFree(ctx_);
        ctx_ = nullptr;
        throw_error(ErrorKind::Unavailable, "cannot connect to Redis at {} (the online store): {}; check that "
                    "redis-server runs there, then retry", where_.url, why);
    }
    timeval io_timeout{5, 0};
    redisSetTimeout(ctx_, io_timeout);
    if (const char* pw = std::getenv("KEEL_REDIS_PASSWORD"); pw && *pw) call({"AUTH", pw}, "the password of KEEL_REDIS_PASSWORD");
    if (where_.db != 0) {
        std::string db = std::to_string(where_.db);
        call({"SELECT", db}, "SELECT of the URL's database");
    }
}

Connection::~Connection() {
    if (ctx_) redisFree(ctx_);
}

void Connection::fail(std::string_view doing) {
    broken_ = true;
    std::string why = ctx_ && ctx_->err ? ctx_->errstr : "unknown error";
    if (why.empty() || why == "Success") why = "the connection was closed";
    throw_error(ErrorKind::Unavailable, "Redis at {} (the online store) failed while {}: {}; the next call "
                "reconnects", where_.url, doing, why);
}

void Connection::append(const std::vector<std::string_view>& argv) {
    if (broken_) fail("sending a command");
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    ptrs.reserve(argv.size());
    lens.reserve(argv.size());
    for (auto a : argv) {
        ptrs.push_back(a.data());
        lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_, int(argv.size()), ptrs.data(), lens.data()) != REDIS_OK) fail("sending a command");
    ++pending_;
}

Reply Connection::read() {
    if (broken_) fail("reading a reply");
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || !raw) fail("reading a reply");
    --pending_;
    auto* r = static_cast<redisReply*>(raw);
    Reply out = convert(r);
    freeReplyObject(r);
    return out;
}

Reply Connection::call(const std::vector<std::string_view>& argv, std::string_view what) {
    append(argv);
    Reply r = read();
    check(r, what, where_);
    return r;
}

std::shared_ptr<Pool> Pool::of(const Location& where) {
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<Pool>> pools;
    std::lock_guard lock(mu);
    auto& p = pools[where.url];
    if (!p) p = std::make_shared<Pool>(where);
    return p;
}

Pool::Lease Pool::lease(bool* reused) {
    {
        std::lock_guard lock(mu_);
        if (!idle_.empty()) {
            auto c = std::move(idle_.back());
            idle_.pop_back();
            if (reused) *reused = true;
            return Lease(shared_from_this(), std::move(c));
        }
    }
    if (reused) *reused = false;
    return Lease(shared_from_this(), std::make_unique<Connection>(where_));
}

Pool::Lease Pool::lease_live() {
    bool reused = false;
    {
        Lease c = lease(&reused);
        if (!reused) return c;
        try {
            c->call({"PING"}, "PING");
            return c;
        } catch (const Error&) {
            if (c->reusable()) throw;
        }
    }
    return lease();
}

void Pool::give_back(std::unique_ptr<Connection> c) {
    if (!c) return;
    std::lock_guard lock(mu_);
    if (!c->reusable()) {
        // A dead connection means the others idle beside it probably are too (a restart, a
        // network cut): drop them all, so that the next call connects anew.
        idle_.clear();
        return;
    }
    if (idle_.size() < kMaxIdle) idle_.push_back(std::move(c));
}

Pool::Lease::~Lease() {
    if (pool_ && c_) pool_->give_back(std::move(c_));
}

} // namespace keel::features::redis

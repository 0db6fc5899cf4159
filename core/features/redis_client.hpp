// core/features/redis_client.hpp: a small Redis client over hiredis for the online store (not installed).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

struct redisContext;
struct redisReply;

namespace keel::features::redis {

//! Where a Redis server is: parsed from "redis://host:port/db" (port 6379 and db 0 by default).
//! A password is never part of the URL (it would be recorded in the metadata with the view's
//! online state): it comes from KEEL_REDIS_PASSWORD when the server asks for one.
struct Location {
    std::string host;
    int port = 6379;
    int db = 0;
    std::string url;  //!< normalized: redis://host:port/db
    //! InvalidArgument naming `url` and the form expected.
    static Location parse(std::string_view url);
};

//! One reply, owned (a tree for arrays).
struct Reply {
    enum class Type { String, Array, Integer, Nil, Status, Error };
    Type type = Type::Nil;
    std::string str;   //!< String, Status, Error
    int64_t integer = 0;
    std::vector<Reply> elements;
};

//! One connection, used by one thread at a time (Pool hands them out). Every failure of the
//! connection (refused, reset, timed out, a server restarted) throws Unavailable naming the server,
//! and marks the connection broken so the pool drops it: the next call reconnects.
class Connection {
public:
    explicit Connection(const Location& where);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    //! Queues a command (no I/O until read()).
    void append(const std::vector<std::string_view>& argv);
    //! The reply of the oldest queued command (sends what is queued first).
    Reply read();
    //! append + read; an error reply throws (Unavailable, with the server's message and `what`).
    Reply call(const std::vector<std::string_view>& argv, std::string_view what);
    //! Broken, or with replies not read yet (a caller stopped mid-pipeline): not reusable.
    bool reusable() const { return !broken_ && pending_ == 0; }
    const Location& where() const { return where_; }

private:
    [[noreturn]] void fail(std::string_view doing);
    Location where_;
    redisContext* ctx_ = nullptr;
    bool broken_ = false;
    size_t pending_ = 0;  //!< commands appended whose replies were not read
};

//! Connections to one server, shared by the process: lease() reuses an idle one or connects.
class Pool : public std::enable_shared_from_this<Pool> {
public:
    //! The pool of a server (one per normalized URL in the process).
    static std::shared_ptr<Pool> of(const Location& where);

    //! A leased connection goes back to the pool when the lease ends, if it is reusable.
    class Lease {
    public:
        Lease(std::shared_ptr<Pool> pool, std::unique_ptr<Connection> c) : pool_(std::move(pool)), c_(std::move(c)) {}
        Lease(Lease&&) = default;
        ~Lease();
        Connection* operator->() { return c_.get(); }
        Connection& operator*() { return *c_; }

    private:
        std::shared_ptr<Pool> pool_;
        std::unique_ptr<Connection> c_;
    };
    //! `reused` (when given) says whether the connection was idle in the pool rather than new.
    Lease lease(bool* reused = nullptr);
    const Location& where() const { return where_; }

    //! A connection known to answer: an idle one is PINGed first, and replaced by a new one when it
    //! turns out dead (what a writer, which does not retry, leases).
    Lease lease_live();

    //! Runs an idempotent read `fn(Connection&)`; when a connection taken from the pool turns out
    //! dead (the server restarted since it was last used), once more on a new one.
    template <typename F>
    auto read(F&& fn) {
        bool reused = false;
        {
            Lease c = lease(&reused);
            try {
                return fn(*c);
            } catch (...) {
                if (!reused || c->reusable()) throw;  // a new connection failed, or Redis said no
            }
        }
        Lease fresh = lease();
        return fn(*fresh);
    }

    explicit Pool(Location where) : where_(std::move(where)) {}

private:
    void give_back(std::unique_ptr<Connection> c);
    Location where_;
    std::mutex mu_;
    std::vector<std::unique_ptr<Connection>> idle_;
};

//! Throws an error for an Error reply: Unavailable with Redis's message and what was being done.
void check(const Reply& r, std::string_view what, const Location& where);

} // namespace keel::features::redis

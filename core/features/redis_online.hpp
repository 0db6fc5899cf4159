// core/features/redis_online.hpp: the online store's layout in Redis (not installed; see core/README.md,
// "Online store on Redis", for why it is shaped this way).
//
// Per view version, with prefix P = "keel:<workspace namespace>:<view>:v<version>:":
//   P"current"      "<seq> <base>": the materialization readers serve, and the oldest one still valid
//   P"seq"          INCR counter: the id of each materialization started (committed or not)
//   P"{<entity>}"   a hash: field "<seq>" -> the entity's row as of materialization <seq>
// A reader at pointer (seq, base) takes, per entity, the newest field f with base <= f <= seq. The
// writer adds fields, flips "current" with one compare-and-set, then prunes fields older than the
// previous pointer, so a reader sees one whole materialization or the one before. The entity's key
// in braces is the Redis Cluster hash tag: all of an entity's keys hash to one slot.
#pragma once

#include "keel/features/schema.hpp"
#include "keel/features/table.hpp"
#include "redis_client.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::features::redis_online {

struct Pointer {
    int64_t seq = 0;
    int64_t base = 0;
    bool present = false;
    bool operator==(const Pointer& o) const { return seq == o.seq && base == o.base && present == o.present; }
    std::string text() const;  //!< as stored: "<seq> <base>"
};

//! "keel:<ns>:<view>:v<version>:" (ns: the workspace's features_meta 'online_namespace')
std::string prefix(const std::string& ns, const ViewSpec& spec);
//! P"{<entity>}"
std::string entity_key(const std::string& prefix, std::string_view entity);
//! The entity part of row `row`'s keys in `batch` (the view's join key columns, by name): an int64
//! key as its decimal, several keys joined by '\x1f'. nullopt when a key is null.
std::optional<std::string> entity_of(const ViewSpec& spec, const BatchView& batch, size_t row);

//! A stored row: the event, created and feature columns of `batch` at `row` (self-describing, so
//! a column added to the view later reads as null from rows written before it).
std::string encode_row(const ViewSpec& spec, const BatchView& batch, size_t row);
//! The one-row table of encode_row's bytes; Corrupt naming `what` when they are malformed.
Table decode_row(std::string_view bytes, std::string_view what);

//! The pointer as stored now (present = false when Redis holds none: never materialized there,
//! flushed, or restarted without persistence).
Pointer read_pointer(redis::Connection& c, const std::string& prefix);

//! What one materialization wrote (before its flip).
struct Write {
    Pointer previous;  //!< the pointer when it started
    Pointer next;      //!< the pointer it flips to
    bool full = false; //!< every entity written (a new base), not only the changed ones
    std::vector<std::string> keys;  //!< entity keys written
    int64_t written = 0;
};

//! Writes the rows `rows` of `snapshot` (all of them when the previous materialization that Redis
//! serves is not `recorded_seq`, or fields of an unfinished one may linger) as a new
//! materialization, pipelined, each key expiring `ttl_ms` after the write (0: never). Nothing is
//! visible to readers until flip().
Write write(redis::Connection& c, const std::string& prefix, const ViewSpec& spec, const BatchView& snapshot, const std::vector<size_t>& rows,
            std::optional<int64_t> recorded_seq);
//! Points readers at w.next if the pointer is still w.previous (one atomic script); Conflict when
//! another materialization flipped it meanwhile.
void flip(redis::Connection& c, const std::string& prefix, const Write& w);
//! Drops the fields of w.keys older than w.previous.seq (which no reader needs any more). Best
//! effort: a leftover field is never read (it is older than the base or the newest field).
void prune(redis::Connection& c, const std::string& prefix, const Write& w) noexcept;
//! Deletes every key under `prefix` (a retired view version: its pointer, counter and entities),
//! by SCAN and UNLINK, so keys without a TTL do not stay forever. Returns how many were deleted.
int64_t drop(redis::Connection& c, const std::string& prefix);

//! The rows of `entities` at pointer `at` (read first when not present): bytes, or nullopt when the
//! entity has no value at that materialization. When a value is gone because the pointer moved
//! since `at` (pruned), reads again at the new pointer; `at` is updated to the pointer served.
//! Unavailable when Redis holds no materialization of the view (restarted or flushed: `what` names
//! the view and the call that writes it again).
std::vector<std::optional<std::string>> fetch(redis::Connection& c, const std::string& prefix,
                                              const std::vector<std::string>& entities, Pointer& at,
                                              std::string_view what);

//! An online reader's near-cache of one view version in Redis: the rows it looked up, decoded, for
//! the materialization it serves. It re-reads the pointer at most every `refresh_ms` (or on
//! check_now()); when the pointer moved, it starts over with an empty cache at the new one, so
//! repeated lookups cost a hash-map probe and a new materialization is seen within refresh_ms.
class NearCache {
public:
    //! One entity: found, its event time, and per requested column its value (NaN) and null flag.
    struct Entry {
        bool found = false;
        int64_t ev = 0;
        std::vector<double> values;
        std::vector<uint8_t> null;
    };
    //! The rows of one materialization (entries never move or change once inserted).
    struct Gen;

    //! `columns`: the feature columns whose values entries hold, in this order.
    NearCache(redis::Location where, std::string prefix, ViewSpec spec, std::vector<std::string> columns,
              int64_t refresh_ms);
    ~NearCache();

    //! out[i] = the entry of ids[i]; fetches the ones not cached (one pipelined round trip). The
    //! entries stay valid while the returned generation lives. Unavailable when Redis cannot be
    //! reached (or holds no materialization of the view) and an entry or the pointer must be read.
    std::shared_ptr<const Gen> entries(const int64_t* ids, size_t n, const Entry** out);
    //! Re-reads the pointer now (what refresh() calls).
    void check_now();

private:
    std::shared_ptr<Gen> current(bool force);
    redis::Location where_;
    std::string prefix_;
    ViewSpec spec_;
    std::vector<std::string> columns_;
    int64_t refresh_ms_;
    std::shared_ptr<redis::Pool> pool_;
    std::atomic<std::shared_ptr<Gen>> gen_;
    std::atomic<int64_t> checked_at_{INT64_MIN};  //!< steady ms of the last pointer read
};

//! The near-cache's refresh interval: KEEL_ONLINE_REFRESH_MS, else 1000 ms.
int64_t refresh_interval_ms();

} // namespace keel::features::redis_online

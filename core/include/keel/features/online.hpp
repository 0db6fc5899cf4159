// core/include/keel/features/online.hpp
#pragma once

#include "keel/features/schema.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace keel::features {

class FeatureStore;

//! A compiled online reader: resolves "view:column" features once, keeps each view's online
//! snapshot memory-mapped with an open-addressing index on the (int64) join key, and answers
//! lookups without touching SQLite or allocating.
//!
//!     auto reader = store.online_reader({"player_activity:spend_30d", "player_activity:sessions_7d"});
//!     std::vector<double> out(n * reader->width());
//!     reader->lookup(ids, n, out.data());   // row-major, NaN where missing, stale or masked
//!
//! A materialization builds a new snapshot beside the old one; refresh() (called by materialize() in
//! this process, or by the owner from time to time) loads it and switches atomically, so concurrent
//! lookups always see one whole snapshot. Thread-safe.
//!
//! A view materialized to Redis (FeatureStore::materialize with online="redis://...") is read
//! through a near-cache instead (core/features/redis_online.hpp): ids not cached cost one pipelined
//! round trip, cached ones a hash probe; the cache follows the view's materialization pointer, read
//! again at most every KEEL_ONLINE_REFRESH_MS (1000) or on refresh(). Those lookups allocate, and
//! throw Unavailable when Redis cannot be reached (never a half or stale-pointer value). The FeatureStore that made the reader must
//! outlive it (FeatureStore::online_reader keeps a weak reference to notify it).
class OnlineReader {
public:
    struct Plan;

    OnlineReader(FeatureStore& store, std::vector<std::string> features);
    ~OnlineReader();
    OnlineReader(const OnlineReader&) = delete;
    OnlineReader& operator=(const OnlineReader&) = delete;

    //! Number of doubles per looked-up id.
    size_t width() const { return features_.size(); }
    const std::vector<std::string>& features() const { return features_; }

    //! For ids[0..n): writes n * width() doubles into out, row-major. NaN for an unknown entity, a
    //! null value, a value older than the view's TTL at `now_ms`, or a PII column not granted to the
    //! role the reader was built with — as granted now, not when the reader was made: a grant or
    //! revoke in this process masks from the next lookup (readers of other FeatureStore handles
    //! mask every PII column until their next refresh), and one in another process from the next
    //! refresh(). Allocation-free.
    void lookup(const int64_t* ids, size_t n, double* out, int64_t now_ms) const;
    //! Same, at the current time.
    void lookup(const int64_t* ids, size_t n, double* out) const;

    //! Why a looked-up value is NaN (serving reports missing and stale inputs apart).
    enum class Status : uint8_t { Ok = 0, MissingEntity, Null, Stale, Masked };
    //! As lookup(), and also writes n * width() statuses into `status`. Allocation-free; the same
    //! loop as lookup(), compiled a second time with the status stores.
    void lookup(const int64_t* ids, size_t n, double* out, Status* status, int64_t now_ms) const;

    //! For ids[0..n): the event time (ms) of the row feature `feature` (an index into features())
    //! reads for each id in the current snapshot, whatever its TTL; INT64_MIN for an entity it does
    //! not hold. What a caller reports as a value's age. Allocation-free.
    void event_times(size_t feature, const int64_t* ids, size_t n, int64_t* out) const;

    //! Loads newer snapshots if any were materialized, and re-reads the grants when any process
    //! changed them; returns true when the reader switched snapshots.
    bool refresh();
    //! Re-reads which PII columns the reader's role may see (grant() and revoke() call it for the
    //! live readers of their store).
    void recheck_grants();
    //! Identifies the snapshots in use (changes when refresh() switches).
    std::string snapshot_key() const;
    //! True when some view is read from Redis (lookups of ids not near-cached do network I/O).
    bool remote() const;

    //! What lookup() may show of one output column, as of the last grants check.
    enum class Access : uint8_t { Masked, Open, Granted };

private:
    bool grants_current() const;
    FeatureStore& store_;
    std::vector<std::string> features_;
    std::string role_;
    std::atomic<std::shared_ptr<const Plan>> plan_;
    std::unique_ptr<std::atomic<Access>[]> access_; //!< one per output column
    std::atomic<uint64_t> checked_epoch_{0};       //!< grants_epoch() when access_ was computed
    std::mutex refresh_mu_;                         //!< one refresh or grants check at a time
    std::atomic<int64_t> checked_generation_{-1};   //!< workspace generation at the last check
};

} // namespace keel::features

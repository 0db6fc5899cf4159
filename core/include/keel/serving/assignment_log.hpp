// core/include/keel/serving/assignment_log.hpp
#pragma once

#include "keel/serving/endpoint_store.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace keel::storage {
class Workspace;
}

namespace keel::serving {

//! When an assignment log writes its buffered rows.
struct AssignmentLogOptions {
    //! Write as soon as this many rows wait.
    size_t flush_rows = 512;
    //! Write once the oldest waiting row is this old, however few rows wait: the loss bound.
    std::chrono::milliseconds max_age{1000};
    //! Rows kept while writes fail. Past it the oldest are dropped, and counted in stats().dropped.
    size_t max_buffered = 1'000'000;
};

//! What a log did so far (since it was constructed, in this process).
struct AssignmentLogStats {
    uint64_t appended = 0;       //!< rows accepted by append()
    uint64_t written = 0;        //!< rows committed to the workspace
    uint64_t dropped = 0;        //!< rows discarded because writes kept failing with max_buffered waiting
    uint64_t failed_writes = 0;  //!< write attempts that failed (their rows were kept)
    size_t buffered = 0;         //!< rows waiting now (including a write in progress)
    std::string last_error;      //!< the last failed write's error; "" once a write succeeds again
};

//! The assignment log of one endpoint in this process: appends go to a memory buffer (a mutex and a
//! vector move, no I/O on the request path) and a background thread writes them to the workspace
//! (`EndpointStore::log`, one transaction per write) when `flush_rows` rows wait or the oldest waiting
//! row is `max_age` old, whichever comes first; also on flush(), close() and destruction.
//!
//! Loss bound. A row appended at time t is committed by t + max_age + the time the write takes (a few
//! milliseconds; up to the workspace's 60 s busy timeout while another process holds the write lock),
//! as long as writes succeed. So a process killed with SIGKILL (or crashing) loses at most the rows
//! appended in the last max_age (default 1 s) plus those of the write in progress; on a clean exit
//! (close() or the destructor) it loses nothing. Committed rows survive a process crash (WAL,
//! synchronous=NORMAL); an OS crash may lose the last commits.
//!
//! Failures. A failed write keeps its rows, in order, ahead of newer ones; the flusher retries every
//! max_age and records the error in stats() (it never throws). flush() and close() throw the write's
//! error to their caller, rows still kept. While writes fail the buffer grows up to max_buffered
//! rows; beyond that the oldest rows are dropped and counted in stats().dropped, so a loss is always
//! visible. A destructor that cannot write reports the rows it loses on stderr.
//!
//! One flusher thread per log: endpoints in a process are few (tens), the thread sleeps on a
//! condition variable while its buffer is empty, and a log whose workspace is locked or failing
//! delays no other log. Thread-safe: any number of threads may append, flush and read stats.
class AssignmentLog {
public:
    AssignmentLog(std::shared_ptr<storage::Workspace> ws, std::string endpoint, AssignmentLogOptions options = {});
    //! close(); a failure is reported on stderr with the number of rows lost.
    ~AssignmentLog();
    AssignmentLog(const AssignmentLog&) = delete;
    AssignmentLog& operator=(const AssignmentLog&) = delete;

    void append(Assignment row);
    void append(std::vector<Assignment> rows);

    //! Writes every row appended before the call (waiting for a write the flusher has in progress).
    //! Throws the write's keel::Error on failure; the rows stay buffered for the next attempt.
    void flush();
    //! Stops the flusher thread (after the write it has in progress), then flush(). Appends after
    //! close() are written at once by the appending thread. Idempotent.
    void close();

    AssignmentLogStats stats() const;
    const std::string& endpoint() const { return endpoint_; }
    const AssignmentLogOptions& options() const { return options_; }

private:
    using Clock = std::chrono::steady_clock;

    void run();
    //! Takes the buffer and writes it; on failure puts the rows back and records the error.
    void write_buffered(bool rethrow);
    //! Puts a failed write's rows back ahead of newer ones, records the error, wakes the flusher.
    void keep_failed(std::vector<Assignment>& rows, Clock::time_point oldest, const char* error);
    //! Moves rows into the buffer; true when the log is closed and the caller must write them.
    bool enqueue(std::vector<Assignment>& rows);

    std::shared_ptr<storage::Workspace> ws_;
    std::string endpoint_;
    AssignmentLogOptions options_;
    EndpointStore store_;

    std::mutex write_mutex_; //!< one write at a time, so rows commit in append order
    mutable std::mutex mutex_; //!< guards everything below
    std::condition_variable wake_;
    std::vector<Assignment> buffer_;
    Clock::time_point oldest_;   //!< when the oldest buffered row was appended
    Clock::time_point retry_at_; //!< no write before this after a failure
    size_t in_flight_ = 0;       //!< rows taken by a write not finished yet
    bool stop_ = false;          //!< the flusher thread should end
    bool closed_ = false;        //!< close() ran: appends write through
    AssignmentLogStats stats_;
    std::thread flusher_;        //!< last: starts once everything above is built
};

} // namespace keel::serving

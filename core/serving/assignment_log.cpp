// core/serving/assignment_log.cpp
#include "keel/serving/assignment_log.hpp"

#include "keel/common/error.hpp"
#include "keel/storage/workspace.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <iterator>

namespace keel::serving {

AssignmentLog::AssignmentLog(std::shared_ptr<storage::Workspace> ws, std::string endpoint,
                             AssignmentLogOptions options)
    : ws_(std::move(ws)), endpoint_(std::move(endpoint)), options_(options), store_(*ws_) {
    if (options_.flush_rows == 0)
        throw_error(ErrorKind::InvalidArgument,
                    "assignment log of endpoint '{}': flush_rows must be at least 1 (it is the number of "
                    "buffered rows that triggers a write)", endpoint_);
    if (options_.max_age.count() <= 0)
        throw_error(ErrorKind::InvalidArgument,
                    "assignment log of endpoint '{}': max_age must be positive, got {} ms (it bounds how long "
                    "a row waits before it is written)", endpoint_, options_.max_age.count());
    if (options_.max_buffered < options_.flush_rows)
        throw_error(ErrorKind::InvalidArgument,
                    "assignment log of endpoint '{}': max_buffered ({}) must be at least flush_rows ({})",
                    endpoint_, options_.max_buffered, options_.flush_rows);
    flusher_ = std::thread([this] { run(); });
}

AssignmentLog::~AssignmentLog() {
    try {
        close();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "[keel] endpoint '%s': %zu assignments could not be written and are lost: %s\n",
                     endpoint_.c_str(), stats().buffered, e.what());
    }
}

bool AssignmentLog::enqueue(std::vector<Assignment>& rows) {
    if (rows.empty()) return false;
    bool wake = false;
    bool write_through = false;
    {
        std::lock_guard lock(mutex_);
        const size_t before = buffer_.size();
        if (before == 0) oldest_ = Clock::now();
        if (buffer_.empty()) {
            buffer_ = std::move(rows);
        } else {
            buffer_.insert(buffer_.end(), std::make_move_iterator(rows.begin()), std::make_move_iterator(rows.end()));
        }
        stats_.appended += buffer_.size() - before;
        // The flusher needs to know only when a deadline appears (first row) or the count is reached.
        wake = before == 0 || (before < options_.flush_rows && buffer_.size() >= options_.flush_rows);
        write_through = closed_;
        if (closed_) wake = false;
    }
    if (wake) wake_.notify_one();
    return write_through;
}

void AssignmentLog::append(Assignment row) {
    std::vector<Assignment> rows;
    rows.push_back(std::move(row));
    append(std::move(rows));
}

void AssignmentLog::append(std::vector<Assignment> rows) {
    if (enqueue(rows)) flush();  // closed: no flusher thread any more
}

void AssignmentLog::flush() { write_buffered(true); }

void AssignmentLog::close() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
        closed_ = true;
    }
    wake_.notify_one();
    if (flusher_.joinable()) flusher_.join();
    flush();
}

AssignmentLogStats AssignmentLog::stats() const {
    std::lock_guard lock(mutex_);
    AssignmentLogStats s = stats_;
    s.buffered = buffer_.size() + in_flight_;
    return s;
}

void AssignmentLog::write_buffered(bool rethrow) {
    std::lock_guard writing(write_mutex_);
    std::vector<Assignment> rows;
    Clock::time_point oldest;
    {
        std::lock_guard lock(mutex_);
        rows.swap(buffer_);
        oldest = oldest_;
        in_flight_ = rows.size();
    }
    if (rows.empty()) return;
    try {
        store_.log(endpoint_, rows);
    } catch (const std::exception& e) {
        keep_failed(rows, oldest, e.what());
        if (rethrow) throw;
        return;
    }
    std::lock_guard lock(mutex_);
    stats_.written += rows.size();
    stats_.last_error.clear();
    in_flight_ = 0;
}

void AssignmentLog::keep_failed(std::vector<Assignment>& rows, Clock::time_point oldest, const char* error) {
    {
        std::lock_guard lock(mutex_);
        // Kept ahead of the rows appended meanwhile, so the log stays in append order.
        if (!buffer_.empty())
            rows.insert(rows.end(), std::make_move_iterator(buffer_.begin()), std::make_move_iterator(buffer_.end()));
        buffer_ = std::move(rows);
        oldest_ = oldest;
        in_flight_ = 0;
        if (buffer_.size() > options_.max_buffered) {
            const size_t excess = buffer_.size() - options_.max_buffered;
            buffer_.erase(buffer_.begin(), buffer_.begin() + std::ptrdiff_t(excess));
            stats_.dropped += excess;
        }
        ++stats_.failed_writes;
        stats_.last_error = error;
        retry_at_ = Clock::now() + options_.max_age;
    }
    // The flusher may have gone to sleep while the buffer was empty (taken by this write): wake it,
    // or the rows would wait for the next append however long that takes.
    wake_.notify_one();
}

void AssignmentLog::run() {
    std::unique_lock lock(mutex_);
    while (!stop_) {
        if (buffer_.empty()) {
            wake_.wait(lock, [this] { return stop_ || !buffer_.empty(); });
            continue;
        }
        // Due when the count is reached or the oldest row is max_age old; never before a retry time.
        auto due = buffer_.size() >= options_.flush_rows ? retry_at_ : std::max(oldest_ + options_.max_age, retry_at_);
        if (Clock::now() < due) {
            wake_.wait_until(lock, due); // an append reaching flush_rows, or close(), wakes it earlier
            continue;
        }
        lock.unlock();
        try {
            write_buffered(false); // a failed write is kept in stats_ and retried
        } catch (...) {
            // Only out of memory while keeping the rows gets here: nothing may leave this thread.
        }
        lock.lock();
    }
}

} // namespace keel::serving

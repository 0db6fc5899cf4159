// core/tracking/process.hpp (internal to the tracking module)
#pragma once

#include <cstdint>
#include <string>

namespace keel::tracking::detail {

//! Who is running a run: enough to tell later whether that process still exists.
struct ProcessIdentity {
    std::string host;
    int64_t pid = 0;
    int64_t start = 0; //!< start time in clock ticks since boot (Linux /proc), 0 when unknown
};

//! This process.
ProcessIdentity this_process();

enum class ProcessState {
    Alive,  //!< the pid exists and (when its start time is known) is the same process
    Gone,   //!< no such pid, or a zombie waiting to be reaped
    Reused, //!< the pid now belongs to a process started at another time
};

//! The state of a process on this host.
ProcessState local_process_state(int64_t pid, int64_t start);

} // namespace keel::tracking::detail

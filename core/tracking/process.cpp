// core/tracking/process.cpp
#include "process.hpp"

#include <cerrno>
#include <csignal>
#include <fstream>
#include <optional>
#include <sstream>
#include <unistd.h>

namespace keel::tracking::detail {

namespace {

// /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and ')', so fields are counted
// from the last ')'. Field 3 is the state, field 22 the start time in clock ticks since boot.
struct ProcStat {
    char state = '?';
    int64_t start = 0;
};

std::optional<ProcStat> read_proc_stat(int64_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    if (!in) return std::nullopt;
    std::string line;
    std::getline(in, line);
    auto close = line.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream fields(line.substr(close + 1));
    ProcStat st;
    std::string skip;
    fields >> st.state;
    for (int field = 4; field < 22 && fields; ++field) fields >> skip;
    if (!(fields >> st.start)) return std::nullopt;
    return st;
}

bool proc_available() {
    static const bool available = static_cast<bool>(std::ifstream("/proc/self/stat"));
    return available;
}

} // namespace

ProcessIdentity this_process() {
    // Asked by every start_run: read once per thread and process (a forked child has its own pid).
    thread_local std::optional<ProcessIdentity> known;
    if (known && known->pid == static_cast<int64_t>(getpid())) return *known;
    ProcessIdentity id;
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) == 0) id.host = host;
    id.pid = static_cast<int64_t>(getpid());
    if (auto st = read_proc_stat(id.pid)) id.start = st->start;
    known = id;
    return id;
}

ProcessState local_process_state(int64_t pid, int64_t start) {
    if (pid <= 0) return ProcessState::Gone;
    if (proc_available()) {
        auto st = read_proc_stat(pid);
        if (!st || st->state == 'Z' || st->state == 'X') return ProcessState::Gone;
        if (start != 0 && st->start != start) return ProcessState::Reused;
        return ProcessState::Alive;
    }
    // Without /proc: the pid's existence is all we can tell (EPERM means it exists, as another user's).
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) return ProcessState::Alive;
    return ProcessState::Gone;
}

} // namespace keel::tracking::detail

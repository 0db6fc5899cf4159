// core/tracking/stale.cpp: runs whose process died (kill -9, a lost machine) found and closed.
#include "keel/tracking/tracker.hpp"

#include "keel/common/clock.hpp"
#include "keel/common/error.hpp"
#include "keel/storage/db.hpp"
#include "keel/storage/workspace.hpp"
#include "process.hpp"

namespace keel::tracking {

namespace {

RunProcess read_process(storage::Stmt& st, int col) {
    return RunProcess{st.text(col), st.int64(col + 1), st.int64(col + 2), st.int64(col + 3)};
}

// Why the run's process is gone, or "" while it may be alive.
std::string gone_reason(const RunProcess& p, const std::string& this_host, int64_t now, int64_t timeout_ms) {
    if (p.host == this_host) {
        switch (detail::local_process_state(p.pid, p.process_start)) {
        case detail::ProcessState::Alive: return "";
        case detail::ProcessState::Gone: return fmt::format("process {} on {} has exited", p.pid, p.host);
        case detail::ProcessState::Reused:
            return fmt::format("process {} on {} has exited (the pid now belongs to another process)", p.pid, p.host);
        }
    }
    int64_t silent = now - p.heartbeat_at;
    if (silent <= timeout_ms) return "";
    return fmt::format("no heartbeat from process {} on {} for {} s (timeout {} s)", p.pid, p.host, silent / 1000,
                       timeout_ms / 1000);
}

} // namespace

void Tracker::heartbeat(std::span<const std::string> run_ids) {
    if (run_ids.empty()) return;
    auto& db = ws_.db();
    storage::Transaction tx(db, storage::Transaction::Unannounced);
    int64_t now = now_ms();
    for (const auto& id : run_ids)
        db.prepare("UPDATE tracking_run_processes SET heartbeat_at = ? "
                   "WHERE run = (SELECT id FROM tracking_runs WHERE run_id = ?)")
            .bind_all(now, id)
            .run();
    tx.commit();
}

std::optional<RunProcess> Tracker::run_process(std::string_view run_id) {
    auto& db = ws_.db();
    auto guard = db.lock();
    int64_t pk = run_pk(run_id);
    auto st = db.prepare("SELECT host, pid, process_start, heartbeat_at FROM tracking_run_processes WHERE run = ?");
    st.bind(1, pk);
    if (!st.step()) return std::nullopt;
    return read_process(st, 0);
}

std::vector<StaleRun> Tracker::stale_runs(int64_t heartbeat_timeout_ms) {
    if (heartbeat_timeout_ms <= 0)
        throw_error(ErrorKind::InvalidArgument,
                    "heartbeat timeout {} ms is not positive: give how long a run on another host may stay silent, "
                    "e.g. 300000 (5 minutes)",
                    heartbeat_timeout_ms);
    const std::string this_host = detail::this_process().host;
    std::vector<std::pair<std::string, StaleRun>> found; // run id -> what we know
    {
        auto& db = ws_.db();
        auto guard = db.lock();
        int64_t now = now_ms();
        auto st = db.prepare("SELECT r.run_id, p.host, p.pid, p.process_start, p.heartbeat_at "
                             "FROM tracking_runs r JOIN tracking_run_processes p ON p.run = r.id "
                             "WHERE r.status = ? ORDER BY r.start_time, r.id");
        st.bind(1, kRunning);
        while (st.step()) {
            StaleRun stale;
            stale.process = read_process(st, 1);
            stale.reason = gone_reason(stale.process, this_host, now, heartbeat_timeout_ms);
            if (!stale.reason.empty()) found.emplace_back(st.text(0), std::move(stale));
        }
    }
    std::vector<StaleRun> out;
    for (auto& [id, stale] : found) {
        stale.info = get_info(id);
        out.push_back(std::move(stale));
    }
    return out;
}

std::vector<StaleRun> Tracker::close_stale_runs(int64_t heartbeat_timeout_ms) {
    std::vector<StaleRun> closed;
    auto& db = ws_.db();
    for (auto& stale : stale_runs(heartbeat_timeout_ms)) {
        {
            storage::Transaction tx(db, storage::Transaction::Unannounced);
            // Only if still RUNNING: a run that ended by itself since the check keeps its own ending.
            auto st = db.prepare("UPDATE tracking_runs SET status = ?, end_time = CASE WHEN start_time > ? THEN "
                                 "start_time ELSE ? END, error = ? WHERE run_id = ? AND status = ?");
            st.bind_all(kKilled, stale.process.heartbeat_at, stale.process.heartbeat_at,
                        "closed as stale: " + stale.reason, stale.info.id, kRunning)
                .run();
            bool changed = st.affected() > 0;
            tx.commit();
            if (!changed) continue;
        }
        stale.info = get_info(stale.info.id);
        closed.push_back(std::move(stale));
    }
    return closed;
}

} // namespace keel::tracking

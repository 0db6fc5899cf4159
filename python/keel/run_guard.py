"""Keeps this process's active runs honest: ended KILLED on SIGTERM, and kept alive by a heartbeat.

CI systems cancel a job with SIGTERM, which Python does not turn into an exception: without this a
run stayed RUNNING forever. While at least one run started here is active, a SIGTERM handler is
installed (only from the main thread, where Python allows it) that ends every active run KILLED and
then hands the signal on to the handler that was there before: the default one, so the process
still dies of SIGTERM with the usual exit status, or the program's own handler. It is put back when
the last run ends. A process that ignores SIGTERM keeps ignoring it, and its runs go on.

A daemon thread beats every active run's heartbeat (every $KEEL_HEARTBEAT_SECONDS, default 30 s),
so ``keel runs close-stale`` can tell a silent run on another host from a working one; on this host
it checks the recorded pid directly.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from keel import _core
    from keel.tracking import Run

HEARTBEAT_SECONDS = 30.0
SIGTERM_ERROR = "SIGTERM: the process was asked to stop (a cancelled CI job, a shutdown)"

_lock = threading.RLock()  # re-entrant: the handler runs on the main thread, maybe inside started()
_active: dict[str, Run] = {}
_previous = None  # the SIGTERM handler ours replaced, while ours is installed
_installed = False
_beat_thread: threading.Thread | None = None


def _forget_after_fork() -> None:
    """A forked child (a multiprocessing or DataLoader worker) does not own its parent's runs: its
    SIGTERM (pool.terminate() sends one) must not end them. Its handler, inherited, only chains."""
    global _lock, _beat_thread
    _lock = threading.RLock()  # another thread may have held it at the fork
    _active.clear()
    _beat_thread = None


_fork_hook_registered = False


def _register_fork_hook() -> None:
    """Once, when the first run starts (not on import): fork children forget their parent's runs."""
    global _fork_hook_registered
    if not _fork_hook_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_after_fork)
        _fork_hook_registered = True


def started(run: Run) -> None:
    """Called when this process starts a run."""
    with _lock:
        _register_fork_hook()
        _active[run.id] = run
        _install()
        _ensure_heartbeat()


def ended(run: Run) -> None:
    """Called when this process ends a run (in any state)."""
    with _lock:
        _active.pop(run.id, None)
        if not _active:
            _restore()


def active_run_ids() -> list[str]:
    with _lock:
        return list(_active)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install() -> None:
    global _previous, _installed
    if _installed or not _in_main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    # SIG_IGN: the process means to go on, and so do its runs. None: a handler installed from C,
    # which Python could neither call nor put back.
    if previous is signal.SIG_IGN or previous is None:
        return
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main interpreter
        return
    _previous, _installed = previous, True


def _restore() -> None:
    global _previous, _installed
    if not _installed or not _in_main_thread():
        return  # from a worker thread: left installed; with no active runs it only passes the signal on
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:  # someone else's handler on top of ours stays
        signal.signal(signal.SIGTERM, _previous)
    _previous, _installed = None, False


def _on_sigterm(signum, frame) -> None:
    previous = _previous
    with _lock:
        runs = list(_active.values())
    for run in runs:
        try:
            if run.status == "RUNNING":
                run.end("KILLED", SIGTERM_ERROR)  # also drops it from _active
        except Exception:  # noqa: BLE001 - a failing store must not stop the signal from being passed on
            pass
    with _lock:
        _active.clear()
        _restore()
    if callable(previous):
        previous(signum, frame)
    elif previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # die of SIGTERM, as the process would have without Keel


def _heartbeat_interval() -> float:
    try:
        return max(0.05, float(os.environ.get("KEEL_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)))
    except ValueError:
        return HEARTBEAT_SECONDS


def _ensure_heartbeat() -> None:
    global _beat_thread
    if _beat_thread is not None and _beat_thread.is_alive():
        return
    _beat_thread = threading.Thread(target=_beat_forever, name="keel-run-heartbeat", daemon=True)
    _beat_thread.start()


def _beat_forever() -> None:
    stop = threading.Event()  # never set: the daemon thread ends with the process
    while not stop.wait(_heartbeat_interval()):
        with _lock:
            by_tracker: dict[int, tuple[_core.Tracker, list[str]]] = {}
            for run_id, run in _active.items():
                by_tracker.setdefault(id(run.tracker), (run.tracker, []))[1].append(run_id)
        for tracker, ids in by_tracker.values():
            try:
                tracker.heartbeat(ids)
            except Exception:  # noqa: BLE001 - a busy or vanished workspace: try again next beat
                pass

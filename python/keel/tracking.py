"""Experiment tracking: experiments, runs, params, metrics, tags and artifacts.

``ws.start_run(experiment="churn", name="lgbm")`` starts a run; used as a context manager it ends
FINISHED, FAILED (the error recorded, the exception still raised) or KILLED (Ctrl-C). SIGTERM ends
every active run KILLED too (see keel.run_guard), and a run whose process died without a word
(kill -9) is found by ``ws.runs.stale()`` and closed by ``ws.runs.close_stale()``. Every call is
one transaction in the workspace's SQLite store, done in C++ with the GIL released, so logging a
metric costs microseconds and several processes can log to one workspace at once.

``ws.runs.search(experiment=, filter=, order_by=, max_results=)`` finds runs with an MLflow-style
filter (``metrics.auc > 0.8 and params.lr = '0.1' and tags.team = 'growth' and status = 'FINISHED'``)
and returns a :class:`RunList` (iterate it, or ``.to_pandas()``).
"""

from __future__ import annotations

import contextvars
import functools
import os
import subprocess
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keel import _core, run_guard
from keel._time import to_epoch_ms, to_epoch_ms_array
from keel.display import format_ms, html_table

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from keel.workspace import Workspace

RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"

# Runs entered with ``with`` in this thread / async context; ended ones are skipped and pruned.
_ENTERED: contextvars.ContextVar[tuple] = contextvars.ContextVar("keel_entered_runs", default=())


def active_run() -> Run | None:
    """The innermost ``with ws.start_run(...)`` block still RUNNING here, else None."""
    for run in reversed(_ENTERED.get()):
        if run.status == RUNNING:
            return run
    return None

__all__ = ["Runs", "Run", "RunList", "plot_metric_history", "active_run", "RUNNING", "FINISHED", "FAILED", "KILLED"]


# --------------------------------------------------------------------------- source and git capture

def _source_file() -> str:
    """The script that started this process, '<notebook>' in Jupyter, '' when unknown."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path:
        return os.path.abspath(path)
    if "ipykernel" in sys.modules:
        return "<notebook>"
    return sys.argv[0] if sys.argv and sys.argv[0] else ""


@functools.lru_cache(maxsize=32)
def _git_info(directory: str) -> tuple[str, bool | None]:
    """(commit, dirty) of the checkout holding `directory`, ('', None) outside git.

    Cached per process and directory: creating a run must stay cheap, and a process rarely
    commits while it trains.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return "", None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                                capture_output=True, text=True, timeout=10)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return commit.stdout.strip(), dirty
    except (OSError, subprocess.SubprocessError):
        return "", None


def _capture_source() -> tuple[str, str, bool | None]:
    source = _source_file()
    directory = os.path.dirname(source) if os.path.isabs(source) else os.getcwd()
    commit, dirty = _git_info(directory if os.path.isdir(directory) else os.getcwd())
    return source, commit, dirty


# --------------------------------------------------------------------------------------------- runs

class Run:
    """One run: attributes, params, latest metrics, tags and artifacts.

    A run from :meth:`Runs.start` is a context manager::

        with ws.start_run(experiment="churn", name="lgbm") as run:
            run.log_params({"lr": 0.1, "depth": 6})
            run.log_metric("auc", 0.91, step=10)
    """

    def __init__(self, runs: Runs, record: _core.RunRecord):
        self._runs = runs
        self._t = runs.native
        self._info: _core.RunInfo = record.info  # attributes; replaced when the run ends
        self._record = record  # params, latest metrics, tags: re-read once something was logged
        self._id = record.info.id
        self._stale = False

    # ---- attributes
    @property
    def id(self) -> str:
        return self._id

    run_id = id

    @property
    def workspace(self) -> Workspace:
        """The workspace the run lives in."""
        return self._runs.workspace

    @property
    def tracker(self) -> _core.Tracker:
        """The ``keel._core.Tracker`` this run writes through (its heartbeat goes through it too)."""
        return self._t

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def experiment(self) -> str:
        return self._info.experiment

    @property
    def status(self) -> str:
        return self._info.status

    @property
    def start_time(self) -> int:
        """Milliseconds since the epoch."""
        return self._info.start_time

    @property
    def end_time(self) -> int | None:
        return self._info.end_time

    @property
    def user(self) -> str:
        return self._info.user

    @property
    def source(self) -> str:
        return self._info.source

    @property
    def git_commit(self) -> str:
        return self._info.git_commit

    @property
    def git_dirty(self) -> bool | None:
        return self._info.git_dirty

    @property
    def parent_id(self) -> str | None:
        return self._info.parent_id

    @property
    def error(self) -> str | None:
        """Why a FAILED run failed (the exception and its traceback)."""
        return self._info.error

    @property
    def params(self) -> dict[str, str]:
        return self._fresh().params

    @property
    def metrics(self) -> dict[str, float]:
        """The latest value of each metric (highest step, then latest timestamp)."""
        return self._fresh().metrics

    @property
    def tags(self) -> dict[str, str]:
        return self._fresh().tags

    def _fresh(self) -> _core.RunRecord:
        if self._stale:
            self.refresh()
        return self._record

    def refresh(self) -> Run:
        """Re-read the run from the workspace (to see what other processes logged)."""
        self._record = self._t.get_run(self._id)
        self._info = self._record.info
        self._stale = False
        return self

    # ---- logging
    def log_param(self, key: str, value: Any) -> None:
        """Params are immutable: the same value again is fine, another value raises Conflict."""
        self._t.log_param(self._id, key, str(value))
        self._stale = True

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._t.log_params(self._id, {k: str(v) for k, v in params.items()})
        self._stale = True

    def log_metric(self, key: str, value: float, step: int | None = None, timestamp=None) -> None:
        """One metric point; step defaults to 0 and timestamp to now (ms since the epoch, or a
        zone-aware datetime). NaN and inf are kept."""
        self._t.log_metric(self._id, key, float(value), step or 0, to_epoch_ms(timestamp, "timestamp"))
        self._stale = True

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, timestamp=None) -> None:
        """Several metrics at one step, in one transaction."""
        if not metrics:
            return
        n = len(metrics)
        timestamp = to_epoch_ms(timestamp, "timestamp")
        self._t.log_metrics(self._id, list(metrics), np.fromiter((float(v) for v in metrics.values()), float, n),
                            None if step is None else np.full(n, step, dtype=np.int64),
                            None if timestamp is None else np.full(n, timestamp, dtype=np.int64))
        self._stale = True

    def log_batch(self, key: str | list[str], values, steps=None, timestamps=None) -> None:
        """Many points in one transaction: one key for all values (or one key per value), numpy
        arrays (or sequences) of values, steps and ms timestamps. Read without copying when the
        arrays are contiguous float64 / int64. Timestamps may also be a zone-aware pandas Series;
        numpy datetime64 (naive) is refused."""
        keys = [key] if isinstance(key, str) else list(key)
        self._t.log_metrics(self._id, keys, np.asarray(values, dtype=np.float64),
                            None if steps is None else np.asarray(steps, dtype=np.int64),
                            None if timestamps is None else to_epoch_ms_array(timestamps, "timestamps"))
        self._stale = True

    def set_tag(self, key: str, value: Any) -> None:
        self._t.set_tags(self._id, {key: str(value)})
        self._stale = True

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._t.set_tags(self._id, {k: str(v) for k, v in tags.items()})
        self._stale = True

    def delete_tag(self, key: str) -> None:
        self._t.delete_tag(self._id, key)
        self._stale = True

    def children(self) -> RunList:
        """The runs nested under this one (``parent=`` this run), newest first."""
        return self._runs.search(filter=f"parent_id = '{self._id}'", max_results=50_000)

    def metric_history(self, key: str) -> pd.DataFrame:
        """Every point of a metric: a DataFrame with columns step, value, timestamp (ms)."""
        import pandas as pd
        steps, values, stamps = self._t.metric_history(self._id, key)
        return pd.DataFrame({"step": steps, "value": values, "timestamp": stamps})

    # ---- artifacts
    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> list[dict]:
        """Store a file or a whole directory with the run, under ``artifact_path/<name>``.

        Content goes to the workspace's verified, content-addressed artifact store. Returns the
        entries recorded (path, digest, size)."""
        return self._t.log_artifact(self._id, os.fspath(path), artifact_path or "")

    def artifacts(self) -> list[dict]:
        """The run's artifact files: path, digest (sha256), size."""
        return self._t.artifacts(self._id)

    def download_artifacts(self, dest: str | os.PathLike | None = None, path: str | None = None) -> str:
        """Copy the run's artifacts (or those under ``path``) to ``dest``, each verified against its
        digest; returns ``dest``. Without ``dest``, downloads into a fresh temporary folder and returns
        its path (like MLflow). Nothing is ever written outside ``dest``."""
        if dest is None:
            import tempfile
            dest = tempfile.mkdtemp(prefix=f"keel-artifacts-{self._id[:8]}-")
        self._t.download_artifacts(self._id, os.fspath(dest), path or "")
        return os.fspath(dest)

    def log_model(self, obj, name: str, **kwargs):
        """Store a model as an artifact of this run and register a version of `name`."""
        from keel.registry import log_model
        return log_model(self, obj, name=name, **kwargs)

    def log_input(self, obj) -> str:
        """Record that this run consumed `obj` (a training set, or any lineage ref string such as
        ``"training_set:<id>"``): adds the lineage edge ``<ref> -consumed-> run:<id>``."""
        ref = obj if isinstance(obj, str) else getattr(obj, "lineage_ref", None)
        if not ref:
            raise TypeError(f"log_input takes a lineage ref or an object with .lineage_ref, not {type(obj).__name__}")
        # A model alias names the version it points at now; the tracker writes the edge (C++).
        self._t.log_input(self._id, self.workspace.lineage.resolve(ref))
        return ref

    # ---- lifecycle
    def end(self, status: str = FINISHED, error: str | None = None) -> Run:
        """End the run as FINISHED, FAILED (with `error`) or KILLED."""
        self._info = self._t.end_run(self._id, status, error)
        run_guard.ended(self)
        return self

    @property
    def process(self) -> dict | None:
        """The process running the run: host, pid, process_start and heartbeat_at (ms); None when
        the run was recorded without one."""
        return self._t.run_process(self._id)

    def __enter__(self) -> Run:
        # Remembered so keel.autolog adds to the run the user is inside (see active_run).
        _ENTERED.set(tuple(r for r in _ENTERED.get() if r.status == RUNNING) + (self,))
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if self.status != RUNNING:
            return False  # ended inside the block
        if exc_type is None:
            self.end(FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(KILLED, "KeyboardInterrupt")
        else:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self.end(FAILED, text[-20000:])
        return False

    # ---- display
    def to_dict(self) -> dict:
        record, i = self._fresh(), self._info
        return {"id": i.id, "name": i.name, "experiment": i.experiment, "status": i.status,
                "start_time": i.start_time, "end_time": i.end_time, "user": i.user, "source": i.source,
                "git_commit": i.git_commit, "git_dirty": i.git_dirty, "parent_id": i.parent_id, "error": i.error,
                "params": record.params, "metrics": record.metrics, "tags": record.tags}

    def __eq__(self, other) -> bool:
        return isinstance(other, Run) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"<keel.Run {self.name!r} {self._id} {self.status} experiment={self.experiment!r}>"

    def _repr_html_(self) -> str:
        d = self.to_dict()
        rows = [
            {"field": "run_id", "value": d["id"]},
            {"field": "name", "value": d["name"]},
            {"field": "experiment", "value": d["experiment"]},
            {"field": "status", "value": d["status"]},
            {"field": "start_time", "value": format_ms(d["start_time"])},
            {"field": "end_time", "value": format_ms(d["end_time"])},
            {"field": "user", "value": d["user"]},
        ]
        if d["parent_id"]:
            rows.append({"field": "parent_id", "value": d["parent_id"]})
        if d["git_commit"]:
            rows.append({"field": "git_commit",
                         "value": d["git_commit"][:12] + (" (dirty)" if d["git_dirty"] else "")})
        rows += [{"field": f"params.{k}", "value": v} for k, v in sorted(d["params"].items())]
        rows += [{"field": f"metrics.{k}", "value": v} for k, v in sorted(d["metrics"].items())]
        rows += [{"field": f"tags.{k}", "value": v} for k, v in sorted(d["tags"].items())]
        if d["error"]:
            rows.append({"field": "error", "value": d["error"].strip().splitlines()[-1]})
        return html_table(rows, title=f"Run {d['name']}", max_rows=200)


class RunList:
    """Runs returned by :meth:`Runs.search`: iterate for :class:`Run` objects, ``.to_pandas()`` for a
    table with one row a run (``run_id, experiment, name, status, start_time, end_time``, then
    ``params.*``, ``metrics.*`` with the latest value, ``tags.*``)."""

    def __init__(self, runs: list[Run]):
        self._runs = runs

    def __iter__(self):
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return RunList(self._runs[index])
        return self._runs[index]

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self._runs]

    def _rows(self) -> tuple[list[dict], list[str]]:
        rows = _core.run_rows([r._fresh() for r in self._runs])  # one dict per run, built in C++
        keys: set[str] = set().union(*rows)
        columns = ["run_id", "experiment", "name", "status", "start_time", "end_time"]
        for group in ("params.", "metrics.", "tags."):
            columns += sorted(k for k in keys if k.startswith(group))
        return rows, columns

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd
        rows, columns = self._rows()
        df = pd.DataFrame(rows, columns=columns)
        for col in ("start_time", "end_time"):
            df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
        for col in columns:
            if col.startswith("metrics."):
                df[col] = df[col].astype("float64")
        return df

    def __repr__(self) -> str:
        return f"<keel.RunList of {len(self._runs)} runs>"

    def _repr_html_(self) -> str:
        rows, columns = self._rows()
        for row in rows:
            row["run_id"] = row["run_id"][:8]
            row["start_time"] = format_ms(row["start_time"])
            row["end_time"] = format_ms(row["end_time"])
        ordered = [{c: row.get(c) for c in columns} for row in rows]
        return html_table(ordered, title=f"{len(rows)} runs")


class Experiments(list):
    """``ws.runs.experiments()``: a list of dicts (name, created_at, created_by, runs)."""

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd
        df = pd.DataFrame(list(self), columns=["name", "created_at", "created_by", "runs"])
        df["created_at"] = pd.to_datetime(df["created_at"], unit="ms", utc=True)
        return df

    def _repr_html_(self) -> str:
        return html_table([{**e, "created_at": format_ms(e["created_at"])} for e in self], title="Experiments")


class Runs:
    """``ws.runs``: start, get and search runs in a workspace."""

    def __init__(self, ws: Workspace):
        self._ws = ws
        self._tracker = _core.Tracker(ws.native)

    @property
    def workspace(self) -> Workspace:
        """The workspace these runs live in."""
        return self._ws

    @property
    def native(self) -> _core.Tracker:
        """The ``keel._core.Tracker`` every run of this workspace writes through."""
        return self._tracker

    def start(self, experiment: str = "Default", name: str | None = None, parent: Run | str | None = None,
              tags: Mapping[str, Any] | None = None, *, capture_source: bool = True) -> Run:
        """Start a RUNNING run in `experiment` (created on first use).

        `parent` (a Run or run id) nests this run under another (a sweep's trials under the sweep).
        The source file, git commit and dirty flag are captured unless ``capture_source=False``.
        """
        source, commit, dirty = _capture_source() if capture_source else ("", "", None)
        parent_id = parent.id if isinstance(parent, Run) else parent
        record = self._tracker.start_run(experiment, name or "", parent_id,
                                         {k: str(v) for k, v in (tags or {}).items()}, source, commit, dirty)
        run = Run(self, record)
        run_guard.started(run)  # SIGTERM ends it KILLED; a heartbeat shows it alive
        return run

    def stale(self, heartbeat_timeout: float = 300) -> list[dict]:
        """RUNNING runs whose process is gone: on this host its pid has exited (or was reused); on
        another host no heartbeat for ``heartbeat_timeout`` seconds. Each: the run's attributes,
        ``process`` (host, pid, heartbeat_at) and ``reason``."""
        return self._tracker.stale_runs(_timeout_ms(heartbeat_timeout))

    def close_stale(self, heartbeat_timeout: float = 300, dry_run: bool = False) -> list[dict]:
        """End every stale run (see :meth:`stale`) KILLED, its end time the last sign of life and
        the reason as its error; returns them. ``dry_run`` only lists them."""
        return self._tracker.stale_runs(_timeout_ms(heartbeat_timeout), close=not dry_run)

    def log_runs(self, experiment: str, names: Iterable[str], params: Mapping[str, Iterable[Any]] | None = None,
                 metrics: Mapping[str, Any] | None = None, tags: Mapping[str, Iterable[Any]] | None = None,
                 step: int = 0, start_time=None, end_time=None, status: str = FINISHED) -> list[str]:
        """Record many ended runs at once (a sweep's results, runs brought over from another tracker):
        ``names`` (one per run; "" for a generated one) and, per key, one value per run in the same
        order, e.g. ``params={"model": ["x", "y"]}, metrics={"acc": np.array([0.9, 0.8])}``. Each run
        ends up as start + log_params + log_metrics (at ``step``) + end would leave it, lineage
        included, all in one transaction of bulk loads (multi-row INSERTs; on PostgreSQL a COPY from
        2,000 runs): 100,000 runs take seconds, not minutes. Times default to now. Returns the new run ids in order."""
        names = [str(n) for n in names]
        return self._tracker.log_runs(
            experiment, names, {k: [str(v) for v in vs] for k, vs in (params or {}).items()},
            {k: np.asarray(vs, dtype=np.float64) for k, vs in (metrics or {}).items()},
            {k: [str(v) for v in vs] for k, vs in (tags or {}).items()}, int(step),
            to_epoch_ms(start_time, "start_time"), to_epoch_ms(end_time, "end_time"), status)

    def get(self, run_id: str) -> Run:
        """The run with this id; NotFound naming it otherwise."""
        return Run(self, self._tracker.get_run(run_id))

    def search(self, experiment: str | Iterable[str] | None = None, filter: str = "",  # noqa: A002
               order_by: str | Iterable[str] | None = None, max_results: int = 1000, offset: int = 0) -> RunList:
        """Runs matching `filter`, in `order_by` order (default: newest first).

        ``filter``: terms joined by AND, e.g. ``metrics.auc > 0.8 and params.lr = '0.1' and
        tags.team = 'growth' and status = 'FINISHED'``; keys with spaces in back quotes
        (``metrics.`val loss` < 0.3``); operators = != < <= > >= LIKE ILIKE IN. ``order_by``: items
        like ``"metrics.auc DESC"`` or ``"start_time"``. A malformed filter raises InvalidArgument
        naming the bad token; so does one past the limits of a single query (50 terms, 10,000 IN
        values, 60 metric/param/tag keys across filter and order_by).
        """
        if experiment is None:
            experiments: list[str] = []
        elif isinstance(experiment, str):
            experiments = [experiment]
        else:
            experiments = list(experiment)
        if order_by is None:
            order = []
        elif isinstance(order_by, str):
            order = [order_by]
        else:
            order = list(order_by)
        rows = self._tracker.search(experiments, filter or "", order, max_results, offset)
        return RunList([Run(self, d) for d in rows])

    def experiments(self) -> Experiments:
        """Every experiment with its run count."""
        return Experiments(self._tracker.experiments())

    def __repr__(self) -> str:
        return f"<keel.Runs of {self._ws.path!r}>"


def _timeout_ms(seconds: float) -> int:
    if not isinstance(seconds, (int, float)) or not seconds > 0:
        from keel.errors import InvalidArgument
        raise InvalidArgument(f"heartbeat_timeout {seconds!r} must be a positive number of seconds, e.g. 300")
    return int(seconds * 1000)


# ---------------------------------------------------------------------------------------- plotting

def plot_metric_history(runs: Run | Iterable[Run], key: str, ax=None, label: str = "name"):
    """Plot one metric's history (value against step) for each run, one line a run.

    `runs`: a Run, a RunList or any iterable of runs. `label`: the run attribute naming each line
    (``"name"``, ``"id"``) or ``"params.<key>"``. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    if isinstance(runs, Run):
        runs = [runs]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for run in runs:
        hist = run.metric_history(key)
        if hist.empty:
            continue
        if label.startswith("params."):
            text = f"{label[7:]}={run.params.get(label[7:], '?')}"
        else:
            text = str(getattr(run, label))
        ax.plot(hist["step"], hist["value"], label=text, marker="." if len(hist) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"{key} by step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    else:  # an empty frame would look like a plotting bug: say what is missing
        ax.set_title(f"{key} by step: no points")
        ax.text(0.5, 0.5, f"no run here has logged '{key}'\n(check the metric name and the runs passed)",
                transform=ax.transAxes, ha="center", va="center", color="0.4")
    return ax

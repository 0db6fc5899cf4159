"""What the benchmarks against MLflow share: the workloads (the same calls on both sides, results
checked equal), opening both stores, and the ratio table printed last.

Imported by bench_tracking.py, bench_registry.py (both on SQLite) and bench_tracking_pg.py (both on
one PostgreSQL): a workload takes a Keel workspace and an MLflow client and does not care where
either keeps its data. bench/ is on sys.path when they run; MLflow is imported only inside, so the
module loads where MLflow is not installed.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
import uuid
import warnings

import numpy as np

import keel


def quiet_mlflow() -> None:
    """MLflow's deprecation and migration chatter would bury the timings."""
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    # MLflow's usage telemetry is a thread in this process: waking to send events while Keel's side
    # runs, it takes the GIL Keel's calls hand back (alias moves measured 2x slower with it on).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Through a tracking server its client prints each run's and experiment's URL on every run end.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def open_both(name: str):
    """A fresh work folder with a Keel workspace and an MLflow client whose tracking and registry
    store is a SQLite file in it; prints which versions run where. Returns (root, ws, client)."""
    quiet_mlflow()
    import mlflow
    from mlflow.tracking import MlflowClient
    root = tempfile.mkdtemp(prefix=f"keel-bench-{name}-")
    print(f"keel {keel.__version__} vs mlflow {mlflow.__version__} (SQLite backend); workdir {root}", flush=True)
    uri = f"sqlite:///{root}/mlflow.db"
    return root, keel.open(os.path.join(root, "ws.keel")), MlflowClient(tracking_uri=uri, registry_uri=uri)


class Table:
    """The rows a bench prints as it goes and as the Markdown table bench/README.md quotes."""

    def __init__(self, peer: str):
        self.peer = peer
        self.rows: list[tuple[str, str, str, str]] = []

    def record(self, name: str, keel_s: float, mlflow_s: float, unit: str) -> None:
        """One workload's times in seconds, shown in `unit` ("us", "ms" or "s")."""
        scale, keel_digits = {"us": (1e6, 1), "ms": (1e3, 1), "s": (1, 3)}[unit]
        k, m = f"{keel_s * scale:,.{keel_digits}f} {unit}", f"{mlflow_s * scale:,.{max(keel_digits - 1, 0)}f} {unit}"
        ratio = mlflow_s / keel_s
        self.rows.append((name, k, m, f"{ratio:,.0f}x"))
        print(f"{name:<60} keel {k:>12}   mlflow {m:>12}   keel is {ratio:,.1f}x faster", flush=True)

    def print(self) -> None:
        print(f"\n| workload | Keel | MLflow ({self.peer}) | Keel speed-up |\n| --- | --- | --- | --- |")
        for name, k, m, ratio in self.rows:
            print(f"| {name} | {k} | {m} | {ratio} |")


def timed(fn, calls: int) -> float:
    """Seconds per call of fn(i) for i in range(calls)."""
    t0 = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - t0) / calls


ROUND = 50  # MLflow calls per round (the two sides alternate)


def alternating(keel_call, mlflow_call, calls: int, mlflow_calls: int | None = None) -> tuple[float, float]:
    """Seconds per call of each side (keel_call(i) for i < calls, mlflow_call(i) for i < mlflow_calls,
    by default as many), run in rounds of ROUND MLflow calls and Keel's same share, Keel then MLflow,
    so both see the same load: a shared machine, the server's autovacuum after a bulk load."""
    mlflow_calls = calls if mlflow_calls is None else mlflow_calls
    rounds = max(1, -(-mlflow_calls // ROUND))
    keel_s = mlflow_s = 0.0
    for r in range(rounds):
        t0 = time.perf_counter()
        for i in range(r * calls // rounds, (r + 1) * calls // rounds):
            keel_call(i)
        t1 = time.perf_counter()
        for i in range(r * mlflow_calls // rounds, (r + 1) * mlflow_calls // rounds):
            mlflow_call(i)
        keel_s, mlflow_s = keel_s + t1 - t0, mlflow_s + time.perf_counter() - t1
    return keel_s / calls, mlflow_s / mlflow_calls


def timed_median(fn, repeat: int) -> tuple[float, object]:
    """The median of `repeat` timed calls after one warm-up (statement caches, the server's buffers),
    and the last call's result."""
    fn()
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# --------------------------------------------------------------------------------------- tracking

def log_metric_calls(table: Table, ws, client, exp_id, keel_calls: int, mlflow_calls: int) -> None:
    """One-by-one log_metric calls; MLflow's side is scaled down (milliseconds a call) and the rows
    compare per-call times."""
    run = ws.start_run(experiment="per-call", capture_source=False)
    mrun = client.create_run(exp_id).info.run_id
    keel_per, mlflow_per = alternating(lambda i: run.log_metric("loss", 1.0 / (i + 1), step=i),
                                       lambda i: client.log_metric(mrun, "loss", 1.0 / (i + 1), step=i),
                                       keel_calls, mlflow_calls)
    kh = run.metric_history("loss")
    mh = sorted(client.get_metric_history(mrun, "loss"), key=lambda m: m.step)
    assert len(kh) == keel_calls and len(mh) == mlflow_calls
    assert np.allclose(kh["value"].to_numpy()[:mlflow_calls], [m.value for m in mh])
    table.record(f"log_metric, one call (keel {keel_calls:,} / mlflow {mlflow_calls:,} calls)", keel_per,
                 mlflow_per, "us")


def log_batch_points(table: Table, ws, client, exp_id, points: int) -> None:
    """`points` metric points into one run: one Keel log_batch, MLflow's log_batch of 1,000 (its limit)."""
    from mlflow.entities import Metric
    rng = np.random.default_rng(1)
    values = rng.random(points)
    steps = np.arange(points, dtype=np.int64)
    stamps = np.full(points, int(time.time() * 1000), dtype=np.int64)
    run = ws.start_run(experiment="batch", capture_source=False)
    t0 = time.perf_counter()
    run.log_batch("val_loss", values, steps=steps, timestamps=stamps)
    keel_s = time.perf_counter() - t0
    mrun = client.create_run(exp_id).info.run_id
    metrics = [Metric("val_loss", float(v), int(ts), int(s)) for v, s, ts in zip(values, steps, stamps)]
    t0 = time.perf_counter()
    for start in range(0, points, 1000):
        client.log_batch(mrun, metrics=metrics[start:start + 1000])
    mlflow_s = time.perf_counter() - t0
    kh = run.metric_history("val_loss")
    mh = sorted(client.get_metric_history(mrun, "val_loss"), key=lambda m: m.step)
    assert len(kh) == len(mh) == points
    assert np.array_equal(kh["value"].to_numpy(), np.array([m.value for m in mh]))
    assert run.refresh().metrics["val_loss"] == client.get_run(mrun).data.metrics["val_loss"]
    table.record(f"batched logging, {points:,} points (mlflow: log_batch of 1,000)", keel_s, mlflow_s, "s")


def create_runs(table: Table, ws, client, keel_runs: int, mlflow_runs: int) -> None:
    """Runs started and ended, per run."""
    exp_id = client.create_experiment("create")

    def mlflow_run(i):
        r = client.create_run(exp_id, run_name=f"run-{i}")
        client.set_terminated(r.info.run_id, "FINISHED")
    keel_per, mlflow_per = alternating(
        lambda i: ws.start_run(experiment="create", name=f"run-{i}", capture_source=False).end(), mlflow_run,
        keel_runs, mlflow_runs)
    assert len(ws.runs.search(experiment="create", max_results=50_000)) == keel_runs
    assert len(client.search_runs([exp_id], max_results=50_000)) == mlflow_runs
    table.record(f"create a run, start + end (keel {keel_runs:,} / mlflow {mlflow_runs:,} runs)", keel_per,
                 mlflow_per, "us")


SEARCH_FILTER = "metrics.acc > 0.9 and params.model = 'x'"
SEARCH_ORDER = ["metrics.acc DESC"]
SEARCH_MAX = 100
FILL_CHUNK = 50_000  # runs per ws.runs.log_runs call while filling


class Runs:
    """The search's runs: acc and loss metrics, model and lr params, a team tag."""

    def __init__(self, n: int, seed: int = 2):
        rng = np.random.default_rng(seed)
        self.acc = rng.uniform(0.5, 1.0, n)
        self.loss = rng.uniform(0.1, 0.9, n)
        self.model = rng.choice(["x", "y", "z"], n)
        self.lr = rng.choice(["0.01", "0.03", "0.1", "0.3"], n)
        self.team = rng.choice(["growth", "core"], n)

    def expected_top(self, n: int) -> list[float]:
        """The acc values the search finds among the first n runs, in order."""
        acc = self.acc[:n]
        return sorted(acc[(acc > 0.9) & (self.model[:n] == "x")], reverse=True)[:SEARCH_MAX]


def keel_fill(ws, experiment: str, runs: Runs, start: int, stop: int, now: int) -> None:
    """Runs through Keel's bulk API (ws.runs.log_runs: one transaction of multi-row statements per
    call), FILL_CHUNK runs a call."""
    for lo in range(start, stop, FILL_CHUNK):
        hi = min(stop, lo + FILL_CHUNK)
        ws.runs.log_runs(experiment, [f"run-{i:07d}" for i in range(lo, hi)],
                         params={"model": runs.model[lo:hi], "lr": runs.lr[lo:hi]},
                         metrics={"acc": runs.acc[lo:hi], "loss": runs.loss[lo:hi]},
                         tags={"team": runs.team[lo:hi]}, step=10, start_time=now, end_time=now)


def mlflow_fill(client, exp_id: str, runs: Runs, start: int, stop: int, now: int) -> None:
    """The rows MLflow's create_run + log_batch + set_terminated write, inserted in bulk with its own
    SQLAlchemy models (its API takes milliseconds a run)."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    store = client._tracking_client.store
    artifact_root = client.get_experiment(exp_id).artifact_location
    user = client.get_run(client.search_runs([exp_id], max_results=1)[0].info.run_id).info.user_id
    for chunk in range(start, stop, 10_000):
        rows, tags, params, metrics, latest = [], [], [], [], []
        for i in range(chunk, min(stop, chunk + 10_000)):
            rid = uuid.uuid4().hex
            name = f"run-{i:07d}"
            rows.append(dict(run_uuid=rid, name=name, experiment_id=int(exp_id), user_id=user, status="FINISHED",
                             start_time=now, end_time=now, lifecycle_stage="active", source_type="UNKNOWN",
                             source_name="", entry_point_name="", source_version="",
                             artifact_uri=f"{artifact_root}/{rid}/artifacts"))
            tags += [dict(run_uuid=rid, key="mlflow.runName", value=name),
                     dict(run_uuid=rid, key="team", value=str(runs.team[i]))]
            params += [dict(run_uuid=rid, key="model", value=str(runs.model[i])),
                       dict(run_uuid=rid, key="lr", value=str(runs.lr[i]))]
            for key, value in (("acc", float(runs.acc[i])), ("loss", float(runs.loss[i]))):
                point = dict(run_uuid=rid, key=key, value=value, timestamp=now, step=10, is_nan=False)
                metrics.append(point)
                latest.append(dict(point))
        with store.ManagedSessionMaker() as session:
            for model, mappings in ((SqlRun, rows), (SqlTag, tags), (SqlParam, params), (SqlMetric, metrics),
                                    (SqlLatestMetric, latest)):
                session.bulk_insert_mappings(model, mappings)


def keel_search(ws, experiment: str):
    return ws.runs.search(experiment=experiment, filter=SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=SEARCH_MAX)


def search_runs(table: Table, ws, client, n: int, repeat: int, now: int, to_pandas: bool = False,
                filler=None, settle=None) -> None:
    """Search over n runs with a metric and a param filter, ordered by the metric, top SEARCH_MAX;
    both sides must find the same runs in the same order. Filling is not timed: Keel through its bulk
    API, MLflow's first 100 runs through its API and the rest as bulk inserts of its own models
    (through `filler`, a client on MLflow's SQL store, when `client` talks to a tracking server).
    `settle()`, if given, runs between filling and searching."""
    from mlflow.entities import Metric, Param
    runs = Runs(n)
    exp_id = client.create_experiment("search")
    api_runs = min(n, 100)
    for i in range(api_runs):  # through MLflow's API, so the bulk rows are checked against them
        r = client.create_run(exp_id, run_name=f"run-{i:07d}", tags={"team": str(runs.team[i])}, start_time=now)
        client.log_batch(r.info.run_id,
                         metrics=[Metric("acc", float(runs.acc[i]), now, 10),
                                  Metric("loss", float(runs.loss[i]), now, 10)],
                         params=[Param("model", str(runs.model[i])), Param("lr", str(runs.lr[i]))])
        client.set_terminated(r.info.run_id, "FINISHED", end_time=now)
    t0 = time.perf_counter()
    mlflow_fill(filler or client, exp_id, runs, api_runs, n, now)
    mlflow_fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    keel_fill(ws, "search", runs, 0, n, now)
    keel_fill_s = time.perf_counter() - t0
    print(f"  (filling {n:,} runs, not timed below: keel {keel_fill_s:.1f} s through ws.runs.log_runs of "
          f"{FILL_CHUNK:,} runs a call; mlflow {mlflow_fill_s:.1f} s, the first {api_runs} through its API "
          "and the rest as bulk inserts of its own SQLAlchemy models)", flush=True)
    if settle:
        settle()

    def mlflow_search():
        return client.search_runs([exp_id], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER,
                                  max_results=SEARCH_MAX)
    keel_s, found = timed_median(lambda: keel_search(ws, "search"), repeat)
    mlflow_s, mfound = timed_median(mlflow_search, repeat)
    assert [r.name for r in found] == [r.info.run_name for r in mfound], "different runs or order"
    assert [r.metrics["acc"] for r in found] == [r.data.metrics["acc"] for r in mfound] == runs.expected_top(n)
    assert [r.params for r in found] == [r.data.params for r in mfound]
    print(f"  (search returned {len(found)} identical runs in identical order on both)")
    table.record(f"search {n:,} runs: {SEARCH_FILTER}, order by acc, top {SEARCH_MAX} (median of {repeat})",
                 keel_s, mlflow_s, "ms")
    if not to_pandas:
        return
    import mlflow
    mlflow.set_tracking_uri(client.tracking_uri)
    keel_s, keel_df = timed_median(lambda: keel_search(ws, "search").to_pandas(), repeat)
    mlflow_s, mlflow_df = timed_median(lambda: mlflow.search_runs([exp_id], filter_string=SEARCH_FILTER,
                                                                  order_by=SEARCH_ORDER, max_results=SEARCH_MAX),
                                       repeat)
    assert list(keel_df["name"]) == list(mlflow_df["tags.mlflow.runName"])
    table.record("the same search into a pandas DataFrame (to_pandas() vs mlflow.search_runs)", keel_s, mlflow_s,
                 "ms")


# --------------------------------------------------------------------------------------- registry

def register_versions(table: Table, ws, client, name: str, versions: int) -> None:
    """Versions of one model, each from its own run (both sides are given the run's id; Keel also checks
    that the run exists). MLflow records a source URI in the run's artifacts (where log_model puts a
    model; a tracking server refuses a local path outside them); Keel registers an artifact digest
    already stored, so neither side copies model bytes."""
    digest = ws.put_artifact(b"model bytes")
    ws.models.create(name)
    client.create_registered_model(name)
    # Ended source runs: runs left RUNNING get a heartbeat from a thread every 30 s, which would
    # hold the workspace's connection for a while in the middle of the timed loop.
    runs, mlflow_runs, sources = [], [], []
    mlflow_experiment = client.create_experiment(f"{name}-sources")
    for _ in range(versions):
        run = ws.start_run(experiment="registry", capture_source=False)
        run.end()
        runs.append(run.id)
        mlflow_run = client.create_run(mlflow_experiment)
        client.set_terminated(mlflow_run.info.run_id)
        mlflow_runs.append(mlflow_run.info.run_id)
        sources.append(f"{mlflow_run.info.artifact_uri}/model")
    # One version of another model first on each side, untimed: Keel's first write that moves the
    # serving generation creates its table (100+ ms once per workspace), as MLflow made its tables
    # when its client first connected.
    ws.models.register(f"{name}-warm-up", digest)
    client.create_registered_model(f"{name}-warm-up")
    client.create_model_version(f"{name}-warm-up", sources[0], run_id=mlflow_runs[0])
    keel_s, mlflow_s = alternating(lambda i: ws.models.register(name, digest, run_id=runs[i]),
                                   lambda i: client.create_model_version(name, sources[i], run_id=mlflow_runs[i]),
                                   versions)
    assert [v.version for v in ws.models.versions(name)] == list(range(1, versions + 1))
    assert sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'", max_results=versions + 10)) \
        == list(range(1, versions + 1))
    table.record(f"register a model version ({versions:,})", keel_s, mlflow_s, "us")


def move_alias(table: Table, ws, client, name: str, versions: int, moves: int) -> None:
    """An alias moved back and forth between `versions` versions (Keel audits every move)."""
    target = lambda i: 1 + i % versions  # noqa: E731
    # Untimed, on register_versions' warm-up model: Keel's first alias move creates serving's tables
    # (it vets each move against the endpoints that follow the alias), ~20 ms once per workspace.
    ws.models.set_alias(f"{name}-warm-up", "champion", version=1)
    client.set_registered_model_alias(f"{name}-warm-up", "champion", "1")
    keel_s, mlflow_s = alternating(lambda i: ws.models.set_alias(name, "champion", version=target(i)),
                                   lambda i: client.set_registered_model_alias(name, "champion", str(target(i))),
                                   moves)
    assert ws.models.get(f"{name}@champion").version == int(client.get_model_version_by_alias(name, "champion").version)
    table.record(f"move an alias ({moves:,} moves, audited in Keel)", keel_s, mlflow_s, "us")

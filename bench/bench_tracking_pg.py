#!/usr/bin/env python3
"""Keel vs MLflow with both on PostgreSQL: one throwaway server, same machine, same run.

MLflow is configured the way its teams run it: its SQLAlchemy tracking and registry store on
PostgreSQL through psycopg2 (tracking URI postgresql://...), artifacts in a local folder. Keel opens
a team workspace on the same server (``keel.open("postgresql://...?schema=keel", artifacts=...)``).

Workloads, each checked for equal results on both sides:
  1. one-by-one log_metric calls (per-call time),
  2. batched logging of BATCH_POINTS points into one run,
  3. creating runs (start + end),
  4. search over SEARCH_RUNS runs: a metric and a param filter, ordered by the metric, top 100,
  5. registering model versions, 6. moving an alias.
Then Keel's search time alone at 10k / 100k / 1M runs (SCALE_RUNS): MLflow is filled only up to
SEARCH_RUNS, since filling it costs minutes per 100k runs.

Run it with ``bench/run.sh tracking_pg`` (MLflow and psycopg2 live only in bench/.work/venv-tracking_pg).
Environment knobs: KEEL_CALLS, MLFLOW_CALLS, BATCH_POINTS, KEEL_CREATE, MLFLOW_CREATE, SEARCH_RUNS,
SCALE_RUNS (comma-separated), SEARCH_REPEAT, VERSIONS, ALIAS_MOVES.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "servers"))

import keel  # noqa: E402
from servers import PostgresServer  # noqa: E402

KEEL_CALLS = int(os.environ.get("KEEL_CALLS", 20_000))
MLFLOW_CALLS = int(os.environ.get("MLFLOW_CALLS", 1_000))
BATCH_POINTS = int(os.environ.get("BATCH_POINTS", 100_000))
KEEL_CREATE = int(os.environ.get("KEEL_CREATE", 2_000))
MLFLOW_CREATE = int(os.environ.get("MLFLOW_CREATE", 300))
SEARCH_RUNS = int(os.environ.get("SEARCH_RUNS", 100_000))
SCALE_RUNS = [int(n) for n in os.environ.get("SCALE_RUNS", "10000,100000,1000000").split(",") if n]
SEARCH_REPEAT = int(os.environ.get("SEARCH_REPEAT", 5))
VERSIONS = int(os.environ.get("VERSIONS", 300))
ALIAS_MOVES = int(os.environ.get("ALIAS_MOVES", 500))
ROUND = 50  # registry calls per side per round (the two sides alternate)
SEARCH_FILTER = "metrics.acc > 0.9 and params.model = 'x'"
SEARCH_ORDER = ["metrics.acc DESC"]
SEARCH_MAX = 100
FILL_CHUNK = 50_000  # runs per ws.runs.log_runs call while filling

rows: list[tuple[str, str, str, str]] = []


def record(name: str, keel_s: float, mlflow_s: float, unit: str) -> None:
    ratio = mlflow_s / keel_s
    if unit == "us":
        k, m = f"{keel_s * 1e6:,.1f} us", f"{mlflow_s * 1e6:,.0f} us"
    elif unit == "ms":
        k, m = f"{keel_s * 1e3:,.1f} ms", f"{mlflow_s * 1e3:,.0f} ms"
    else:
        k, m = f"{keel_s:.3f} s", f"{mlflow_s:.2f} s"
    rows.append((name, k, m, f"{ratio:,.0f}x"))
    print(f"{name:<60} keel {k:>12}   mlflow {m:>12}   keel is {ratio:,.1f}x faster", flush=True)


def per_call(ws, client, exp_id) -> None:
    run = ws.start_run(experiment="per-call", capture_source=False)
    t0 = time.perf_counter()
    for i in range(KEEL_CALLS):
        run.log_metric("loss", 1.0 / (i + 1), step=i)
    keel_per = (time.perf_counter() - t0) / KEEL_CALLS
    mrun = client.create_run(exp_id).info.run_id
    t0 = time.perf_counter()
    for i in range(MLFLOW_CALLS):
        client.log_metric(mrun, "loss", 1.0 / (i + 1), step=i)
    mlflow_per = (time.perf_counter() - t0) / MLFLOW_CALLS
    kh = run.metric_history("loss")
    mh = sorted(client.get_metric_history(mrun, "loss"), key=lambda m: m.step)
    assert len(kh) == KEEL_CALLS and len(mh) == MLFLOW_CALLS
    assert np.allclose(kh["value"].to_numpy()[:MLFLOW_CALLS], [m.value for m in mh])
    record(f"log_metric, one call (keel {KEEL_CALLS:,} / mlflow {MLFLOW_CALLS:,} calls)", keel_per, mlflow_per,
           "us")


def batched(ws, client, exp_id) -> None:
    from mlflow.entities import Metric
    rng = np.random.default_rng(1)
    values = rng.random(BATCH_POINTS)
    steps = np.arange(BATCH_POINTS, dtype=np.int64)
    stamps = np.full(BATCH_POINTS, int(time.time() * 1000), dtype=np.int64)
    run = ws.start_run(experiment="batch", capture_source=False)
    t0 = time.perf_counter()
    run.log_batch("val_loss", values, steps=steps, timestamps=stamps)
    keel_s = time.perf_counter() - t0
    mrun = client.create_run(exp_id).info.run_id
    metrics = [Metric("val_loss", float(v), int(ts), int(s)) for v, s, ts in zip(values, steps, stamps)]
    t0 = time.perf_counter()
    for start in range(0, BATCH_POINTS, 1000):  # MLflow's limit: 1,000 metrics per log_batch
        client.log_batch(mrun, metrics=metrics[start:start + 1000])
    mlflow_s = time.perf_counter() - t0
    kh = run.metric_history("val_loss")
    mh = sorted(client.get_metric_history(mrun, "val_loss"), key=lambda m: m.step)
    assert len(kh) == len(mh) == BATCH_POINTS
    assert np.array_equal(kh["value"].to_numpy(), np.array([m.value for m in mh]))
    assert run.refresh().metrics["val_loss"] == client.get_run(mrun).data.metrics["val_loss"]
    record(f"batched logging, {BATCH_POINTS:,} points (mlflow: log_batch of 1,000)", keel_s, mlflow_s, "s")


def create_runs(ws, client) -> None:
    exp_id = client.create_experiment("create")
    t0 = time.perf_counter()
    for i in range(KEEL_CREATE):
        ws.start_run(experiment="create", name=f"run-{i}", capture_source=False).end()
    keel_per = (time.perf_counter() - t0) / KEEL_CREATE
    t0 = time.perf_counter()
    for i in range(MLFLOW_CREATE):
        r = client.create_run(exp_id, run_name=f"run-{i}")
        client.set_terminated(r.info.run_id, "FINISHED")
    mlflow_per = (time.perf_counter() - t0) / MLFLOW_CREATE
    assert len(ws.runs.search(experiment="create", max_results=50_000)) == KEEL_CREATE
    assert len(client.search_runs([exp_id], max_results=50_000)) == MLFLOW_CREATE
    record(f"create a run, start + end (keel {KEEL_CREATE:,} / mlflow {MLFLOW_CREATE:,} runs)", keel_per,
           mlflow_per, "us")


class Data:
    """The search's runs: acc and loss metrics, model and lr params, a team tag."""

    def __init__(self, n: int, seed: int = 2):
        rng = np.random.default_rng(seed)
        self.acc = rng.uniform(0.5, 1.0, n)
        self.loss = rng.uniform(0.1, 0.9, n)
        self.model = rng.choice(["x", "y", "z"], n)
        self.lr = rng.choice(["0.01", "0.03", "0.1", "0.3"], n)
        self.team = rng.choice(["growth", "core"], n)


def keel_fill(ws, experiment: str, data: Data, start: int, stop: int, now: int) -> None:
    """Runs through Keel's bulk API (ws.runs.log_runs: one transaction of multi-row statements per
    call), FILL_CHUNK runs a call."""
    for lo in range(start, stop, FILL_CHUNK):
        hi = min(stop, lo + FILL_CHUNK)
        ws.runs.log_runs(experiment, [f"run-{i:07d}" for i in range(lo, hi)],
                         params={"model": data.model[lo:hi], "lr": data.lr[lo:hi]},
                         metrics={"acc": data.acc[lo:hi], "loss": data.loss[lo:hi]},
                         tags={"team": data.team[lo:hi]}, step=10, start_time=now, end_time=now)


def mlflow_fill(client, exp_id: str, data: Data, start: int, stop: int, now: int) -> None:
    """The rows MLflow's create_run + log_batch + set_terminated write, inserted in bulk with its own
    SQLAlchemy models (its API takes several ms a run)."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    store = client._tracking_client.store
    artifact_root = client.get_experiment(exp_id).artifact_location
    user = client.get_run(client.search_runs([exp_id], max_results=1)[0].info.run_id).info.user_id
    for chunk in range(start, stop, 10_000):
        runs, tags, params, metrics, latest = [], [], [], [], []
        for i in range(chunk, min(stop, chunk + 10_000)):
            rid = uuid.uuid4().hex
            name = f"run-{i:07d}"
            runs.append(dict(run_uuid=rid, name=name, experiment_id=int(exp_id), user_id=user, status="FINISHED",
                             start_time=now, end_time=now, lifecycle_stage="active", source_type="UNKNOWN",
                             source_name="", entry_point_name="", source_version="",
                             artifact_uri=f"{artifact_root}/{rid}/artifacts"))
            tags += [dict(run_uuid=rid, key="mlflow.runName", value=name),
                     dict(run_uuid=rid, key="team", value=str(data.team[i]))]
            params += [dict(run_uuid=rid, key="model", value=str(data.model[i])),
                       dict(run_uuid=rid, key="lr", value=str(data.lr[i]))]
            for key, value in (("acc", float(data.acc[i])), ("loss", float(data.loss[i]))):
                point = dict(run_uuid=rid, key=key, value=value, timestamp=now, step=10, is_nan=False)
                metrics.append(point)
                latest.append(dict(point))
        with store.ManagedSessionMaker() as session:
            for model, mappings in ((SqlRun, runs), (SqlTag, tags), (SqlParam, params), (SqlMetric, metrics),
                                    (SqlLatestMetric, latest)):
                session.bulk_insert_mappings(model, mappings)


def keel_search(ws, experiment: str):
    return ws.runs.search(experiment=experiment, filter=SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=SEARCH_MAX)


def timed_median(fn) -> tuple[float, object]:
    fn()  # warm: statement caches, the server's buffers
    times, out = [], None
    for _ in range(SEARCH_REPEAT):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def search(ws, client, data: Data, now: int) -> None:
    from mlflow.entities import Metric, Param
    exp_id = client.create_experiment("search")
    api_runs = 100
    for i in range(api_runs):  # the first runs through MLflow's API, so the bulk rows match them
        r = client.create_run(exp_id, run_name=f"run-{i:07d}", tags={"team": str(data.team[i])}, start_time=now)
        client.log_batch(r.info.run_id,
                         metrics=[Metric("acc", float(data.acc[i]), now, 10),
                                  Metric("loss", float(data.loss[i]), now, 10)],
                         params=[Param("model", str(data.model[i])), Param("lr", str(data.lr[i]))])
        client.set_terminated(r.info.run_id, "FINISHED", end_time=now)
    t0 = time.perf_counter()
    mlflow_fill(client, exp_id, data, api_runs, SEARCH_RUNS, now)
    mlflow_fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    keel_fill(ws, "search", data, 0, SEARCH_RUNS, now)
    keel_fill_s = time.perf_counter() - t0
    print(f"  (filling {SEARCH_RUNS:,} runs, not timed below: keel {keel_fill_s:.1f} s through its API, "
          f"ws.runs.log_runs of {FILL_CHUNK:,} runs a call; mlflow {mlflow_fill_s:.1f} s, the first {api_runs} "
          "through its API "
          "and the rest as bulk inserts of its own SQLAlchemy models)", flush=True)

    keel_s, found = timed_median(lambda: keel_search(ws, "search"))
    mlflow_s, mfound = timed_median(lambda: client.search_runs([exp_id], filter_string=SEARCH_FILTER,
                                                               order_by=SEARCH_ORDER, max_results=SEARCH_MAX))
    assert [r.name for r in found] == [r.info.run_name for r in mfound], "different runs or order"
    assert [r.metrics["acc"] for r in found] == [r.data.metrics["acc"] for r in mfound]
    assert [r.params for r in found] == [r.data.params for r in mfound]
    print(f"  (search returned {len(found)} identical runs in identical order on both)")
    record(f"search {SEARCH_RUNS:,} runs: {SEARCH_FILTER}, order by acc, top {SEARCH_MAX}", keel_s, mlflow_s, "ms")


def scale(ws, now: int) -> list[tuple[int, float, float]]:
    """Keel's search time as one experiment grows (runs added through the API between sizes)."""
    out = []
    largest = max(SCALE_RUNS, default=0)
    data = Data(largest, seed=3)
    have = 0
    for n in sorted(SCALE_RUNS):
        t0 = time.perf_counter()
        keel_fill(ws, "scale", data, have, n, now)
        fill_s = time.perf_counter() - t0
        have = n
        s, found = timed_median(lambda: keel_search(ws, "scale"))
        assert len(found) == SEARCH_MAX
        expect = sorted(data.acc[:n][(data.acc[:n] > 0.9) & (data.model[:n] == "x")], reverse=True)[:SEARCH_MAX]
        assert [r.metrics["acc"] for r in found] == list(expect)
        print(f"  keel search over {n:>9,} runs: {s * 1e3:7.1f} ms (filled {n:,} so far, the last "
              f"{fill_s:.1f} s)", flush=True)
        out.append((n, s, fill_s))
    return out


def register(ws, client, source: str) -> None:
    name = "churn"
    digest = ws.put_artifact(b"model bytes")
    ws.models.create(name)
    client.create_registered_model(name)
    # Ended source runs: runs left RUNNING get a heartbeat from a thread every 30 s, which would
    # hold the workspace's connection for a while in the middle of the timed loop.
    runs = []
    for _ in range(VERSIONS):
        run = ws.start_run(experiment="registry", capture_source=False)
        run.end()
        runs.append(run.id)
    # One version of another model first on each side, untimed: Keel's first write that moves the
    # serving generation creates its table (100+ ms once per workspace), as MLflow made its tables
    # when its client first connected.
    ws.models.register("warm-up", digest)
    client.create_registered_model("warm-up")
    client.create_model_version("warm-up", source, run_id=None)
    # In rounds, Keel then MLflow, so both sides see the same load on a shared machine.
    keel_s = mlflow_s = 0.0
    for start in range(0, VERSIONS, ROUND):
        stop = min(start + ROUND, VERSIONS)
        t0 = time.perf_counter()
        for i in range(start, stop):
            ws.models.register(name, digest, run_id=runs[i])
        t1 = time.perf_counter()
        for _ in range(start, stop):
            client.create_model_version(name, source, run_id=None)
        keel_s, mlflow_s = keel_s + t1 - t0, mlflow_s + time.perf_counter() - t1
    keel_s, mlflow_s = keel_s / VERSIONS, mlflow_s / VERSIONS
    assert [v.version for v in ws.models.versions(name)] == list(range(1, VERSIONS + 1))
    assert sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'", max_results=VERSIONS + 10)) \
        == list(range(1, VERSIONS + 1))
    record(f"register a model version ({VERSIONS:,})", keel_s, mlflow_s, "us")

    target = lambda i: 1 + i % VERSIONS  # noqa: E731
    keel_s = mlflow_s = 0.0
    for start in range(0, ALIAS_MOVES, ROUND):
        stop = min(start + ROUND, ALIAS_MOVES)
        t0 = time.perf_counter()
        for i in range(start, stop):
            ws.models.set_alias(name, "champion", version=target(i))
        t1 = time.perf_counter()
        for i in range(start, stop):
            client.set_registered_model_alias(name, "champion", str(target(i)))
        keel_s, mlflow_s = keel_s + t1 - t0, mlflow_s + time.perf_counter() - t1
    keel_s, mlflow_s = keel_s / ALIAS_MOVES, mlflow_s / ALIAS_MOVES
    assert ws.models.get(f"{name}@champion").version == int(client.get_model_version_by_alias(name, "champion").version)
    record(f"move an alias ({ALIAS_MOVES:,} moves, audited in Keel)", keel_s, mlflow_s, "us")


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    # MLflow's usage telemetry is a thread in this process: waking to send events while Keel's side
    # runs, it takes the GIL Keel's calls hand back (alias moves measured 2x slower with it on).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    import psycopg2
    from mlflow.tracking import MlflowClient
    root = tempfile.mkdtemp(prefix="keel-bench-pg-")
    os.chdir(root)  # MLflow's default experiment puts ./mlruns in the working directory
    with PostgresServer() as pg:
        conn = psycopg2.connect(pg.url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mlflow")
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        conn.close()
        base = pg.url.rsplit("/", 1)[0]
        print(f"keel {keel.__version__} vs mlflow {mlflow.__version__} (psycopg2 {psycopg2.__version__.split()[0]}),"
              f" both on PostgreSQL {version} at {base} (fsync=off, as the tests' throwaway cluster); workdir {root}",
              flush=True)
        ws = keel.open(f"{pg.url}?schema=keel", artifacts=os.path.join(root, "keel-artifacts"))
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; MLflow's docs spell the driver out.
        uri = f"{base.replace('postgresql://', 'postgresql+psycopg2://')}/mlflow"
        t0 = time.perf_counter()
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp_id = client.create_experiment("bench", artifact_location=f"file://{root}/mlflow-artifacts")
        print(f"  (mlflow created its schema in {time.perf_counter() - t0:.1f} s)", flush=True)
        now = int(time.time() * 1000)
        per_call(ws, client, exp_id)
        batched(ws, client, exp_id)
        create_runs(ws, client)
        search(ws, client, Data(SEARCH_RUNS), now)
        source = os.path.join(root, "model")
        os.makedirs(source)
        register(ws, client, source)
        print("\n| workload | Keel | MLflow (PostgreSQL) | Keel speed-up |\n| --- | --- | --- | --- |")
        for name, k, m, ratio in rows:
            print(f"| {name} | {k} | {m} | {ratio} |")
        sizes = scale(ws, now)
        print("\n| runs in the experiment | Keel search (median) | filling them through the API |\n| --- | --- | --- |")
        before = 0
        for n, s, fill_s in sizes:
            print(f"| {n:,} | {s * 1e3:.1f} ms | {fill_s:.1f} s for {n - before:,} more |")
            before = n


if __name__ == "__main__":
    main()

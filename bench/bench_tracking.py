#!/usr/bin/env python3
"""Keel tracking vs MLflow (SQLite backend), same machine, same run.

Four workloads, each checked for equal results:
  1. one-by-one log_metric calls (per-call rate),
  2. batched logging of 100,000 metric points into one run,
  3. creating 1,000 runs (start + end),
  4. search over 10,000 runs with a metric filter and ordering (identical run sets and order).

MLflow is much slower per call, so its side of workload 1 times fewer calls (MLFLOW_CALLS) and the
per-call rates are compared; every other workload runs in full on both sides. Run it with
``bench/run.sh tracking`` (MLflow lives only in bench/.work/venv-tracking).
Environment knobs: KEEL_CALLS, MLFLOW_CALLS, BATCH_POINTS, CREATE_RUNS, SEARCH_RUNS, SEARCH_REPEAT.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

# The in-tree keel package (mlflow_peer, beside this file, imports it).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from mlflow_peer import open_both, print_table

KEEL_CALLS = int(os.environ.get("KEEL_CALLS", 100_000))
MLFLOW_CALLS = int(os.environ.get("MLFLOW_CALLS", 2_000))
BATCH_POINTS = int(os.environ.get("BATCH_POINTS", 100_000))
CREATE_RUNS = int(os.environ.get("CREATE_RUNS", 1_000))
SEARCH_RUNS = int(os.environ.get("SEARCH_RUNS", 10_000))
SEARCH_REPEAT = int(os.environ.get("SEARCH_REPEAT", 5))
SEARCH_API_RUNS = int(os.environ.get("SEARCH_API_RUNS", 300))
SEARCH_FILTER = "metrics.auc > 0.8 and params.depth = '6'"
SEARCH_ORDER = ["metrics.auc DESC"]
SEARCH_MAX = 1000

rows: list[tuple[str, str, str, str]] = []


def record(name: str, keel_s: float, mlflow_s: float, unit: str = "s") -> None:
    ratio = mlflow_s / keel_s
    if unit == "us/call":
        k, m = f"{keel_s * 1e6:.1f} us/call", f"{mlflow_s * 1e6:.0f} us/call"
    else:
        k, m = f"{keel_s:.4f} s", f"{mlflow_s:.3f} s"
    rows.append((name, k, m, f"{ratio:,.0f}x"))
    print(f"{name:<48} keel {k:>16}   mlflow {m:>16}   keel is {ratio:,.1f}x faster", flush=True)


def bench_per_call(ws, client, exp_id) -> None:
    run = ws.start_run(experiment="per-call")
    t0 = time.perf_counter()
    for i in range(KEEL_CALLS):
        run.log_metric("loss", 1.0 / (i + 1), step=i)
    keel_per = (time.perf_counter() - t0) / KEEL_CALLS
    mrun = client.create_run(exp_id).info.run_id
    t0 = time.perf_counter()
    for i in range(MLFLOW_CALLS):
        client.log_metric(mrun, "loss", 1.0 / (i + 1), step=i)
    mlflow_per = (time.perf_counter() - t0) / MLFLOW_CALLS
    # Equal results on the common prefix.
    kh = run.metric_history("loss")
    mh = sorted(client.get_metric_history(mrun, "loss"), key=lambda m: m.step)
    assert len(kh) == KEEL_CALLS and len(mh) == MLFLOW_CALLS
    assert np.allclose(kh["value"].to_numpy()[:MLFLOW_CALLS], [m.value for m in mh])
    record(f"log_metric, one by one (keel {KEEL_CALLS:,} / mlflow {MLFLOW_CALLS:,} calls)", keel_per,
           mlflow_per, unit="us/call")


def bench_batch(ws, client, exp_id) -> None:
    from mlflow.entities import Metric
    rng = np.random.default_rng(1)
    values = rng.random(BATCH_POINTS)
    steps = np.arange(BATCH_POINTS, dtype=np.int64)
    stamps = np.full(BATCH_POINTS, int(time.time() * 1000), dtype=np.int64)
    run = ws.start_run(experiment="batch")
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
    assert run.metrics["val_loss"] == client.get_run(mrun).data.metrics["val_loss"]
    record(f"batched logging, {BATCH_POINTS:,} points", keel_s, mlflow_s)


def bench_create(ws, client, exp_id) -> None:
    t0 = time.perf_counter()
    for i in range(CREATE_RUNS):
        ws.start_run(experiment="create", name=f"run-{i}").end()
    keel_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(CREATE_RUNS):
        r = client.create_run(exp_id, run_name=f"run-{i}")
        client.set_terminated(r.info.run_id, "FINISHED")
    mlflow_s = time.perf_counter() - t0
    assert len(ws.runs.search(experiment="create", max_results=50_000)) == CREATE_RUNS
    assert len(client.search_runs([exp_id], max_results=50_000)) == CREATE_RUNS
    record(f"create {CREATE_RUNS:,} runs (start + end)", keel_s, mlflow_s)


def mlflow_bulk_fill(client, exp_id, indices, aucs, losses, lrs, depths, teams, now) -> None:
    """Rows exactly as create_run + log_batch + set_terminated write them, in one session."""
    import uuid

    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    store = client._tracking_client.store
    artifact_root = client.get_experiment(exp_id).artifact_location
    user = client.get_run(client.search_runs([exp_id], max_results=1)[0].info.run_id).info.user_id
    with store.ManagedSessionMaker() as session:
        objects = []
        for i in indices:
            rid = uuid.uuid4().hex
            name = f"run-{i:05d}"
            objects.append(SqlRun(run_uuid=rid, name=name, experiment_id=int(exp_id), user_id=user,
                                  status="FINISHED", start_time=now, end_time=now, lifecycle_stage="active",
                                  source_type="UNKNOWN", source_name="", entry_point_name="", source_version="",
                                  artifact_uri=f"{artifact_root}/{rid}/artifacts"))
            objects.append(SqlTag(run_uuid=rid, key="mlflow.runName", value=name))
            objects.append(SqlTag(run_uuid=rid, key="team", value=str(teams[i])))
            objects.append(SqlParam(run_uuid=rid, key="lr", value=str(lrs[i])))
            objects.append(SqlParam(run_uuid=rid, key="depth", value=str(depths[i])))
            for key, value in (("auc", float(aucs[i])), ("loss", float(losses[i]))):
                objects.append(SqlMetric(run_uuid=rid, key=key, value=value, timestamp=now, step=10, is_nan=False))
                objects.append(SqlLatestMetric(run_uuid=rid, key=key, value=value, timestamp=now, step=10,
                                               is_nan=False))
        session.add_all(objects)


def bench_search(ws, client) -> None:
    from mlflow.entities import Metric, Param
    rng = np.random.default_rng(2)
    aucs = rng.uniform(0.5, 1.0, SEARCH_RUNS)
    losses = rng.uniform(0.1, 0.9, SEARCH_RUNS)
    lrs = rng.choice(["0.01", "0.03", "0.1", "0.3"], SEARCH_RUNS)
    depths = rng.choice(["4", "6", "8"], SEARCH_RUNS)
    teams = rng.choice(["growth", "core"], SEARCH_RUNS)
    exp_id = client.create_experiment("search")
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    for i in range(SEARCH_RUNS):
        run = ws.start_run(experiment="search", name=f"run-{i:05d}", tags={"team": teams[i]},
                           capture_source=False)
        run.log_params({"lr": lrs[i], "depth": depths[i]})
        run.log_metrics({"auc": aucs[i], "loss": losses[i]}, step=10, timestamp=now)
        run.end()
    keel_fill = time.perf_counter() - t0
    t0 = time.perf_counter()
    api_runs = min(SEARCH_RUNS, SEARCH_API_RUNS)
    for i in range(api_runs):
        r = client.create_run(exp_id, run_name=f"run-{i:05d}", tags={"team": str(teams[i])})
        client.log_batch(r.info.run_id,
                         metrics=[Metric("auc", float(aucs[i]), now, 10), Metric("loss", float(losses[i]), now, 10)],
                         params=[Param("lr", str(lrs[i])), Param("depth", str(depths[i]))])
        client.set_terminated(r.info.run_id, "FINISHED")
    mlflow_fill = time.perf_counter() - t0
    if api_runs < SEARCH_RUNS:
        mlflow_bulk_fill(client, exp_id, range(api_runs, SEARCH_RUNS), aucs, losses, lrs, depths, teams, now)
    print(f"  (filling {SEARCH_RUNS:,} runs, not timed below: keel {keel_fill:.1f} s through its API; mlflow "
          f"{mlflow_fill:.1f} s for the first {api_runs:,} through its API, the rest inserted in bulk with "
          f"MLflow's own SQLAlchemy models, because its API takes ~0.1 s a run here)")

    def keel_search():
        return ws.runs.search(experiment="search", filter=SEARCH_FILTER, order_by=SEARCH_ORDER,
                              max_results=SEARCH_MAX)

    def mlflow_search():
        return client.search_runs([exp_id], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER,
                                  max_results=SEARCH_MAX)

    keel_times, mlflow_times = [], []
    for _ in range(SEARCH_REPEAT):
        t0 = time.perf_counter()
        found = keel_search()
        keel_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mfound = mlflow_search()
        mlflow_times.append(time.perf_counter() - t0)
    keel_names = [r.name for r in found]
    mlflow_names = [r.info.run_name for r in mfound]
    assert keel_names == mlflow_names, "Keel and MLflow returned different runs or order"
    assert [r.metrics["auc"] for r in found] == [r.data.metrics["auc"] for r in mfound]
    assert [r.params for r in found] == [r.data.params for r in mfound]
    print(f"  (search returned {len(found)} identical runs in identical order on both)")
    record(f"search {SEARCH_RUNS:,} runs: metric+param filter, order by metric, top {SEARCH_MAX} (median of "
           f"{SEARCH_REPEAT})", statistics.median(keel_times), statistics.median(mlflow_times))
    # The same query to pandas, as a notebook user would look at it.
    t0 = time.perf_counter()
    keel_df = keel_search().to_pandas()
    keel_pd = time.perf_counter() - t0
    import mlflow
    mlflow.set_tracking_uri(client.tracking_uri)
    t0 = time.perf_counter()
    mlflow_df = mlflow.search_runs([exp_id], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER,
                                   max_results=SEARCH_MAX)
    mlflow_pd = time.perf_counter() - t0
    assert list(keel_df["name"]) == list(mlflow_df["tags.mlflow.runName"])
    record("same search into a pandas DataFrame", keel_pd, mlflow_pd)


def main() -> None:
    _, ws, client = open_both("tracking")
    exp_id = client.create_experiment("bench")
    bench_per_call(ws, client, exp_id)
    bench_batch(ws, client, exp_id)
    bench_create(ws, client, client.create_experiment("create"))
    bench_search(ws, client)
    print_table(rows)


if __name__ == "__main__":
    main()

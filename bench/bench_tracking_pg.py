#!/usr/bin/env python3
"""Keel vs MLflow with both on PostgreSQL: one throwaway server, same machine, same run.

MLflow is configured the way its teams run it: its SQLAlchemy tracking and registry store on
PostgreSQL through psycopg2 (tracking URI postgresql://...), artifacts in a local folder. Keel opens
a team workspace on the same server (``keel.open("postgresql://...?schema=keel", artifacts=...)``).

Workloads (bench/mlflow_peer.py, the same ones bench_tracking.py and bench_registry.py run on
SQLite), each checked for equal results on both sides:
  1. one-by-one log_metric calls (per-call time),
  2. batched logging of BATCH_POINTS points into one run,
  3. creating runs (start + end),
  4. search over SEARCH_RUNS runs: a metric and a param filter, ordered by the metric, top 100,
  5. registering model versions, 6. moving an alias.
Then Keel's search time alone at 10k / 100k / 1M runs (SCALE_RUNS): MLflow is filled only up to
SEARCH_RUNS, since filling it costs minutes per 100k runs.

Run it with ``bench/run.sh tracking_pg`` (MLflow and psycopg2 live only in bench/.work/venv-tracking_pg).
Environment knobs: KEEL_CALLS, MLFLOW_CALLS, BATCH_POINTS, KEEL_CREATE, MLFLOW_CREATE, SEARCH_RUNS,
SCALE_RUNS (comma-separated), SEARCH_REPEAT, VERSIONS, ALIAS_MOVES, ONLY (comma-separated workloads:
per_call, batched, create, search, register, scale).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "servers"))

import keel  # noqa: E402
import mlflow_peer as peer  # noqa: E402
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
ONLY = set(filter(None, os.environ.get("ONLY", "per_call,batched,create,search,register,scale").split(",")))


def scale(ws, now: int) -> list[tuple[int, float, float]]:
    """Keel's search time as one experiment grows (runs added through the bulk API between sizes)."""
    out = []
    runs = peer.Runs(max(SCALE_RUNS, default=0), seed=3)
    have = 0
    for n in sorted(SCALE_RUNS):
        t0 = time.perf_counter()
        peer.keel_fill(ws, "scale", runs, have, n, now)
        fill_s = time.perf_counter() - t0
        have = n
        s, found = peer.timed_median(lambda: peer.keel_search(ws, "scale"), SEARCH_REPEAT)
        assert [r.metrics["acc"] for r in found] == runs.expected_top(n)
        print(f"  keel search over {n:>9,} runs: {s * 1e3:7.1f} ms (filled {n:,} so far, the last "
              f"{fill_s:.1f} s)", flush=True)
        out.append((n, s, fill_s))
    return out


def main() -> None:
    peer.quiet_mlflow()
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
        table = peer.Table("PostgreSQL")
        if "per_call" in ONLY:
            peer.log_metric_calls(table, ws, client, exp_id, KEEL_CALLS, MLFLOW_CALLS)
        if "batched" in ONLY:
            peer.log_batch_points(table, ws, client, exp_id, BATCH_POINTS)
        if "create" in ONLY:
            peer.create_runs(table, ws, client, KEEL_CREATE, MLFLOW_CREATE)
        if "search" in ONLY:
            peer.search_runs(table, ws, client, SEARCH_RUNS, SEARCH_REPEAT, now)
        if "register" in ONLY:
            source = os.path.join(root, "model")
            os.makedirs(source)
            peer.register_versions(table, ws, client, "churn", source, VERSIONS)
            peer.move_alias(table, ws, client, "churn", VERSIONS, ALIAS_MOVES)
        table.print()
        if "scale" in ONLY:
            sizes = scale(ws, now)
            print("\n| runs in the experiment | Keel search (median) | filling them through the API |\n"
                  "| --- | --- | --- |")
            before = 0
            for n, s, fill_s in sizes:
                print(f"| {n:,} | {s * 1e3:.1f} ms | {fill_s:.1f} s for {n - before:,} more |")
                before = n


if __name__ == "__main__":
    main()

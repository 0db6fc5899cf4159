#!/usr/bin/env python3
"""Keel vs MLflow with both on PostgreSQL: one throwaway server, same machine, same run.

MLflow runs in the two ways its users run it on PostgreSQL, each in its own database, each with its
own table: first its SQLAlchemy tracking and registry store in this process (tracking URI
postgresql+psycopg2://..., no server in between: MLflow's fastest setup, the conservative column), then
the team setup its `mlflow server --help` names, a tracking server with a PostgreSQL backend store
(`mlflow server --backend-store-uri postgresql://...`, default workers) that clients reach by HTTP.
Keel opens a team workspace on the same server (``keel.open("postgresql://...?schema=...",
artifacts=...)``), a fresh schema for each table, since its clients talk to PostgreSQL themselves.

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
per_call, batched, create, search, register, scale), PEERS (store, server; both by default).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

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
PEERS = [p for p in ("store", "server") if p in os.environ.get("PEERS", "store,server").split(",")]


def scale(ws, now: int, settle) -> list[tuple[int, float, float]]:
    """Keel's search time as one experiment grows (runs added through the bulk API between sizes,
    then `settle()`, as before the search row)."""
    out = []
    runs = peer.Runs(max(SCALE_RUNS, default=0), seed=3)
    have = 0
    for n in sorted(SCALE_RUNS):
        t0 = time.perf_counter()
        peer.keel_fill(ws, "scale", runs, have, n, now)
        fill_s = time.perf_counter() - t0
        have = n
        settle()
        s, found = peer.timed_median(lambda: peer.keel_search(ws, "scale"), SEARCH_REPEAT)
        assert [r.metrics["acc"] for r in found] == runs.expected_top(n)
        print(f"  keel search over {n:>9,} runs: {s * 1e3:7.1f} ms (filled {n:,} so far, the last "
              f"{fill_s:.1f} s)", flush=True)
        out.append((n, s, fill_s))
    return out


def wait_until_idle(timeout_s: float = 180) -> None:
    """Until the machine's CPUs are idle for a second (at most `timeout_s`, then a warning): a new
    `mlflow server` also starts job consumers that import MLflow for half a minute after it answers,
    which would take the 2 cores from both sides of the first rows."""
    def busy_and_total() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:]]
        idle = ticks[3] + ticks[4]  # idle, iowait
        return sum(ticks) - idle, sum(ticks)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        b0, t0 = busy_and_total()
        time.sleep(1)
        b1, t1 = busy_and_total()
        if (b1 - b0) < 0.1 * max(t1 - t0, 1):
            return
    # Timed anyway, but not silently: the table's first rows ran on a busy machine.
    print(f"  (WARNING: the machine stayed busy for {timeout_s:.0f} s after mlflow server started; the "
          "rows below share its CPUs with something else)", flush=True)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, root: str):
    """`mlflow server` on `backend_uri` and a free local port, as a team runs it (default workers,
    artifacts served from a folder); yields its URL once /health answers, stops it on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    log_path = os.path.join(root, "mlflow-server.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([mlflow_cli, "server", "--backend-store-uri", backend_uri, "--host", "127.0.0.1",
                                 "--port", str(port),
                                 "--artifacts-destination", os.path.join(root, "mlflow-server-artifacts")],
                                stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not come up (exit {proc.poll()}); see {log_path}")
            time.sleep(0.2)
        # Each worker opens its tracking and registry stores at its first request to them (seconds:
        # engine, schema check): untimed, 64 of each from fresh connections, which the kernel deals
        # to the workers, so that every worker has both before anything is measured.
        for _ in range(64):
            for path in ("experiments/search", "registered-models/search"):
                with urllib.request.urlopen(f"{url}/api/2.0/mlflow/{path}?max_results=1", timeout=60) as answer:
                    answer.read()
        wait_until_idle()
        yield url
    finally:
        # The whole group: the CLI, uvicorn's workers and the job consumers it started.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def workloads(table, ws, client, now: int, filler=None, settle=None) -> None:
    """The six rows of one table, Keel's `ws` against one MLflow `client`."""
    exp_id = client.create_experiment("bench")
    if "per_call" in ONLY:
        peer.log_metric_calls(table, ws, client, exp_id, KEEL_CALLS, MLFLOW_CALLS)
    if "batched" in ONLY:
        peer.log_batch_points(table, ws, client, exp_id, BATCH_POINTS)
    if "create" in ONLY:
        peer.create_runs(table, ws, client, KEEL_CREATE, MLFLOW_CREATE)
    if "search" in ONLY:
        peer.search_runs(table, ws, client, SEARCH_RUNS, SEARCH_REPEAT, now, filler=filler, settle=settle)
    if "register" in ONLY:
        peer.register_versions(table, ws, client, "churn", VERSIONS)
        peer.move_alias(table, ws, client, "churn", VERSIONS, ALIAS_MOVES)
    table.print()


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
            for peer_name in PEERS:
                cur.execute(f"CREATE DATABASE mlflow_{peer_name}")
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        conn.close()
        base, keel_db = pg.url.rsplit("/", 1)
        print(f"keel {keel.__version__} vs mlflow {mlflow.__version__} (psycopg2 {psycopg2.__version__.split()[0]}),"
              f" both on PostgreSQL {version} at {base} (fsync=off, as the tests' throwaway cluster); workdir {root}",
              flush=True)
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; MLflow's docs spell the driver out.
        sql_uri = lambda db: f"{base.replace('postgresql://', 'postgresql+psycopg2://')}/{db}"  # noqa: E731
        now = int(time.time() * 1000)

        def vacuum(*databases: str) -> None:
            """What autovacuum does within a minute of a bulk load, done before the searches so that
            it does not run during one side's: VACUUM (ANALYZE) of Keel's and MLflow's databases."""
            t0 = time.perf_counter()
            for db in databases:
                conn = psycopg2.connect(f"{base}/{db}")
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("VACUUM (ANALYZE)")
                conn.close()
            print(f"  (VACUUM (ANALYZE) of {', '.join(databases)} after the fill: {time.perf_counter() - t0:.1f} s)",
                  flush=True)

        ws = None
        for peer_name in PEERS:
            ws = keel.open(f"{pg.url}?schema=keel_{peer_name}", artifacts=os.path.join(root, f"keel-{peer_name}"))
            uri = sql_uri(f"mlflow_{peer_name}")
            t0 = time.perf_counter()
            store = MlflowClient(tracking_uri=uri, registry_uri=uri)
            store.search_experiments()  # creates MLflow's schema
            print(f"\n== MLflow {'SQL store in this process' if peer_name == 'store' else 'tracking server'} "
                  f"(schema made in {time.perf_counter() - t0:.1f} s)", flush=True)
            if peer_name == "store":
                workloads(peer.Table("PostgreSQL, SQL store"), ws, store, now,
                          settle=lambda: vacuum(keel_db, "mlflow_store"))
                continue
            with mlflow_server(uri, root) as url:
                workloads(peer.Table("PostgreSQL, mlflow server"), ws, MlflowClient(tracking_uri=url), now,
                          filler=store, settle=lambda: vacuum(keel_db, "mlflow_server"))
        if "scale" in ONLY and ws is not None:
            sizes = scale(ws, now, lambda: vacuum(keel_db))
            print("\n| runs in the experiment | Keel search (median) | filling them through the API |\n"
                  "| --- | --- | --- |")
            before = 0
            for n, s, fill_s in sizes:
                print(f"| {n:,} | {s * 1e3:.1f} ms | {fill_s:.1f} s for {n - before:,} more |")
                before = n


if __name__ == "__main__":
    main()

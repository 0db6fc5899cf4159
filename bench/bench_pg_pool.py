#!/usr/bin/env python3
"""Keel's PostgreSQL connection pool: one workspace shared by many threads, pool of 1 vs 4.

The question is MLflow's complaint of connection exhaustion turned around: a serving or API process
with one Keel workspace and many threads, on one throwaway PostgreSQL 15 (tests/servers/servers.py).
Each row runs the same work with `?pool_size=1` (one connection: what every Keel workspace had
before the pool) and `?pool_size=4`, with 1 and 16 concurrent clients, and prints the ratio:
  1. registry reads in-process: `ws.models.get("churn@champion")` from Python threads (the GIL is
     released around the call), calls/s;
  2. a search in-process: `ws.runs.search` with a filter and an order over SEARCH_RUNS runs, calls/s;
  3. keel-server on the workspace: POST /v1/endpoints/churn/predict (features + model) with wrk,
     requests/s.
Every server connection Keel holds is counted (pg_stat_activity) after each row.

Environment knobs: DURATION (seconds per measurement, default 4), SEARCH_RUNS (default 20,000),
SERVER_THREADS (keel-server --threads, default 4).
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "servers"))

import keel  # noqa: E402
from servers import PostgresServer  # noqa: E402

DURATION = float(os.environ.get("DURATION", 4))
SEARCH_RUNS = int(os.environ.get("SEARCH_RUNS", 20_000))
SERVER_THREADS = int(os.environ.get("SERVER_THREADS", 4))
CLIENTS = (1, 16)
POOLS = (1, 4)
PLAYERS = 1000

rows: list[tuple[str, int, float, float, str]] = []


def url(server: PostgresServer, schema: str, pool: int, app: str) -> str:
    return f"{server.url}?schema={schema}&pool_size={pool}&application_name={app}"


def connections(server: PostgresServer, app: str) -> int:
    out = subprocess.run([str(server.bin / "psql"), "-At", "-c",
                          f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'", server.url],
                         check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def calls_per_second(fn, clients: int) -> float:
    """Calls of fn() per second over DURATION, from `clients` threads at once."""
    stop = time.perf_counter() + DURATION
    counts = [0] * clients
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            while time.perf_counter() < stop:
                fn()
                counts[i] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - began)


def wrk_rps(port: int, token: str, connections_: int) -> float:
    env = {**os.environ, "WRK_PATH": "/v1/endpoints/churn/predict", "WRK_TOKEN": token,
           "WRK_PLAYERS": str(PLAYERS)}
    threads = 1 if connections_ == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{connections_}", f"-d{DURATION:.0f}s", "--timeout", "10s",
           "-s", os.path.join(HERE, "wrk_post.lua"), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def build(server: PostgresServer, schema: str, files: str) -> None:
    """The workspace every row reads: a model with an alias, an endpoint on online features, runs."""
    from sklearn.linear_model import LinearRegression

    ws = keel.open(f"{server.url}?schema={schema}", artifacts=files)
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("activity", entities=["player"], ttl="3650d",
                         schema={"sessions": "int64", "spend": "float64"})
    ids = np.arange(PLAYERS)
    fv.ingest(pd.DataFrame({"player_id": ids, "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
                            "sessions": ids % 7, "spend": ids * 1.0}))
    fs.materialize("activity")
    x = pd.DataFrame({"sessions": [0.0, 1.0, 0.0], "spend": [0.0, 0.0, 1.0]})
    ws.models.log_model(None, LinearRegression().fit(x, x.to_numpy() @ np.array([1.0, 2.0])), "churn")
    ws.models.set_alias("churn", "champion", 1)
    ws.endpoint("churn", model="churn@champion", features=["activity:sessions", "activity:spend"])
    rng = np.random.default_rng(7)
    ws.runs.log_runs("search", [f"run-{i:06d}" for i in range(SEARCH_RUNS)],
                     params={"model": rng.choice(["x", "y", "z"], SEARCH_RUNS)},
                     metrics={"acc": rng.random(SEARCH_RUNS), "loss": rng.random(SEARCH_RUNS)}, step=1)


def main() -> None:
    with PostgresServer() as server, tempfile.TemporaryDirectory() as files:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        began = time.perf_counter()
        build(server, schema, files)
        print(f"PostgreSQL 15 on this machine; workspace built in {time.perf_counter() - began:.1f} s "
              f"({SEARCH_RUNS:,} runs); {DURATION:.0f} s per measurement.", flush=True)

        def in_process(label: str, call) -> None:
            for clients in CLIENTS:
                rate, held = {}, {}
                for pool in POOLS:
                    app = f"keel_bench_{len(rows)}_{pool}"  # one name per measurement: its own connections
                    ws = keel.open(url(server, schema, pool, app), artifacts=files)
                    call(ws)  # warm: statements prepared, caches filled
                    rate[pool] = calls_per_second(lambda ws=ws: call(ws), clients)
                    held[pool] = connections(server, app)
                    del ws
                    gc.collect()  # closes that workspace's connections before the next measurement
                rows.append((label, clients, rate[1], rate[4],
                             f"connections held: {held[1]} / {held[4]}"))
                print(f"  {label}, {clients} clients: pool 1 {rate[1]:,.0f}/s, pool 4 {rate[4]:,.0f}/s "
                      f"({rate[4] / rate[1]:.2f}x); server connections {held[1]} / {held[4]}", flush=True)

        in_process("registry read `ws.models.get(\"churn@champion\")`", lambda ws: ws.models.get("churn@champion"))
        in_process(f"search over {SEARCH_RUNS:,} runs (`metrics.acc > 0.5 and params.model = 'x'`, "
                   "by acc, top 100)",
                   lambda ws: ws.runs.search("search", filter="metrics.acc > 0.5 and params.model = 'x'",
                                             order_by=["metrics.acc DESC"], max_results=100))

        for clients in CLIENTS:
            rate, held = {}, {}
            for pool in POOLS:
                app = f"keel_serve_{pool}_{clients}"
                with keel.serve(url(server, schema, pool, app), threads=SERVER_THREADS,
                                env={"KEEL_ARTIFACTS": files}) as running:
                    running.predict("churn", {"player_id": 1})  # warm
                    rate[pool] = wrk_rps(running.port, running.token, clients)
                    held[pool] = connections(server, app)
            rows.append((f"keel-server `POST /v1/endpoints/churn/predict` (wrk, {SERVER_THREADS} server threads)",
                         clients, rate[1], rate[4], f"connections held: {held[1]} / {held[4]}"))
            print(f"  keel-server, {clients} connections: pool 1 {rate[1]:,.0f} req/s, pool 4 {rate[4]:,.0f} req/s "
                  f"({rate[4] / rate[1]:.2f}x); server connections {held[1]} / {held[4]}", flush=True)

    print("\n| workload | clients | pool_size=1 | pool_size=4 | pool 4 / pool 1 | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, clients, one, four, note in rows:
        print(f"| {label} | {clients} | {one:,.0f}/s | {four:,.0f}/s | {four / one:.2f}x | {note} |")


if __name__ == "__main__":
    main()

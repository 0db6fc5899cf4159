#!/usr/bin/env python3
"""Keel tracking vs MLflow (SQLite backend), same machine, same run.

Four workloads (bench/mlflow_peer.py, the same ones bench_tracking_pg.py runs on PostgreSQL), each
checked for equal results:
  1. one-by-one log_metric calls (per-call time),
  2. batched logging of BATCH_POINTS metric points into one run,
  3. creating runs (start + end),
  4. search over SEARCH_RUNS runs with a metric and a param filter and an order (identical runs and
     order), then the same search into a pandas DataFrame.

MLflow is much slower per call, so its side of workloads 1 and 3 runs fewer calls and the rows compare
per-call times; the others run in full on both sides. Run it with ``bench/run.sh tracking`` (MLflow
lives only in bench/.work/venv-tracking).
Environment knobs: KEEL_CALLS, MLFLOW_CALLS, BATCH_POINTS, KEEL_CREATE, MLFLOW_CREATE, SEARCH_RUNS,
SEARCH_REPEAT.
"""

from __future__ import annotations

import os
import sys
import time

# The in-tree keel package (mlflow_peer, beside this file, imports it).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import mlflow_peer as peer

KEEL_CALLS = int(os.environ.get("KEEL_CALLS", 100_000))
MLFLOW_CALLS = int(os.environ.get("MLFLOW_CALLS", 2_000))
BATCH_POINTS = int(os.environ.get("BATCH_POINTS", 100_000))
KEEL_CREATE = int(os.environ.get("KEEL_CREATE", 2_000))
MLFLOW_CREATE = int(os.environ.get("MLFLOW_CREATE", 300))
SEARCH_RUNS = int(os.environ.get("SEARCH_RUNS", 10_000))
SEARCH_REPEAT = int(os.environ.get("SEARCH_REPEAT", 5))


def main() -> None:
    _, ws, client = peer.open_both("tracking")
    table = peer.Table("SQLite")
    exp_id = client.create_experiment("bench")
    peer.log_metric_calls(table, ws, client, exp_id, KEEL_CALLS, MLFLOW_CALLS)
    peer.log_batch_points(table, ws, client, exp_id, BATCH_POINTS)
    peer.create_runs(table, ws, client, KEEL_CREATE, MLFLOW_CREATE)
    peer.search_runs(table, ws, client, SEARCH_RUNS, SEARCH_REPEAT, int(time.time() * 1000), to_pandas=True)
    table.print()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Keel model registry vs MLflow's (SQLite backend), same machine, same run.

Four workloads, each checked for equal results:
  1. registering versions of one model (MLflow records a source URI; Keel registers an artifact
     digest that is already stored, so neither side copies model bytes),
  2. moving an alias back and forth between versions,
  3. resolving ``name@alias`` to a version (what a server does on every reload),
  4. stage transitions with archiving of the previous Production version.

Run it with ``bench/run.sh registry`` (MLflow lives only in bench/.work/venv-registry).
Environment knobs: VERSIONS, ALIAS_MOVES, RESOLVES, TRANSITIONS.
"""

from __future__ import annotations

import os
import sys
import time

# The in-tree keel package (mlflow_peer, beside this file, imports it).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from mlflow_peer import open_both, print_table

VERSIONS = int(os.environ.get("VERSIONS", 300))
ALIAS_MOVES = int(os.environ.get("ALIAS_MOVES", 500))
RESOLVES = int(os.environ.get("RESOLVES", 2_000))
TRANSITIONS = int(os.environ.get("TRANSITIONS", 100))
NAME = "churn"

rows: list[tuple[str, str, str, str]] = []


def record(name: str, keel_s: float, mlflow_s: float, calls: int) -> None:
    k, m = keel_s / calls * 1e6, mlflow_s / calls * 1e6
    rows.append((name, f"{k:,.1f} us/call", f"{m:,.0f} us/call", f"{mlflow_s / keel_s:,.0f}x"))
    print(f"{name:<44} keel {k:>10,.1f} us/call   mlflow {m:>10,.0f} us/call   "
          f"keel is {mlflow_s / keel_s:,.1f}x faster", flush=True)


def timed(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for i in range(calls):
        fn(i)
    return time.perf_counter() - t0


def bench_register(ws, client, source: str) -> None:
    digest = ws.put_artifact(b"model bytes")
    ws.models.create(NAME)
    client.create_registered_model(NAME)
    runs = [ws.start_run(experiment="bench").id for _ in range(VERSIONS)]  # a source run must exist
    keel_s = timed(lambda i: ws.models.register(NAME, digest, run_id=runs[i]), VERSIONS)
    mlflow_s = timed(lambda i: client.create_model_version(NAME, source, run_id=None), VERSIONS)
    keel_numbers = [v.version for v in ws.models.versions(NAME)]
    mlflow_numbers = sorted(int(v.version) for v in client.search_model_versions(f"name='{NAME}'",
                                                                                max_results=VERSIONS + 10))
    assert keel_numbers == mlflow_numbers == list(range(1, VERSIONS + 1))
    record(f"register a version ({VERSIONS:,} versions)", keel_s, mlflow_s, VERSIONS)


def bench_alias(ws, client) -> None:
    target = lambda i: 1 + i % VERSIONS  # noqa: E731
    keel_s = timed(lambda i: ws.models.set_alias(NAME, "champion", version=target(i)), ALIAS_MOVES)
    mlflow_s = timed(lambda i: client.set_registered_model_alias(NAME, "champion", str(target(i))), ALIAS_MOVES)
    assert ws.models.get(f"{NAME}@champion").version == int(client.get_model_version_by_alias(NAME, "champion").version)
    record(f"move an alias ({ALIAS_MOVES:,} moves, audited in Keel)", keel_s, mlflow_s, ALIAS_MOVES)


def bench_resolve(ws, client) -> None:
    keel_s = timed(lambda i: ws.models.get(f"{NAME}@champion"), RESOLVES)
    mlflow_s = timed(lambda i: client.get_model_version_by_alias(NAME, "champion"), RESOLVES)
    k, m = ws.models.get(f"{NAME}@champion"), client.get_model_version_by_alias(NAME, "champion")
    assert k.version == int(m.version)
    record(f"resolve {NAME}@champion ({RESOLVES:,} lookups)", keel_s, mlflow_s, RESOLVES)


def bench_stages(ws, client) -> None:
    version = lambda i: 1 + i % VERSIONS  # noqa: E731
    keel_s = timed(lambda i: ws.models.transition_stage(NAME, version(i), "Production", archive_existing=True),
                   TRANSITIONS)
    mlflow_s = timed(lambda i: client.transition_model_version_stage(NAME, str(version(i)), "Production",
                                                                     archive_existing_versions=True), TRANSITIONS)
    keel_stages = {v.version: v.stage for v in ws.models.versions(NAME)}
    mlflow_stages = {int(v.version): v.current_stage
                     for v in client.search_model_versions(f"name='{NAME}'", max_results=VERSIONS + 10)}
    assert keel_stages == mlflow_stages, "stages differ"
    record(f"move to Production, archive the rest ({TRANSITIONS:,})", keel_s, mlflow_s, TRANSITIONS)


def main() -> None:
    root, ws, client = open_both("registry")
    source = os.path.join(root, "model")
    os.makedirs(source)
    bench_register(ws, client, source)
    bench_alias(ws, client)
    bench_resolve(ws, client)
    bench_stages(ws, client)
    print_table(rows)


if __name__ == "__main__":
    main()

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

# The in-tree keel package (mlflow_peer, beside this file, imports it).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import mlflow_peer as peer

VERSIONS = int(os.environ.get("VERSIONS", 300))
ALIAS_MOVES = int(os.environ.get("ALIAS_MOVES", 500))
RESOLVES = int(os.environ.get("RESOLVES", 2_000))
TRANSITIONS = int(os.environ.get("TRANSITIONS", 100))
NAME = "churn"

table = peer.Table("SQLite")


def bench_resolve(ws, client) -> None:
    keel_s = peer.timed(lambda i: ws.models.get(f"{NAME}@champion"), RESOLVES)
    mlflow_s = peer.timed(lambda i: client.get_model_version_by_alias(NAME, "champion"), RESOLVES)
    k, m = ws.models.get(f"{NAME}@champion"), client.get_model_version_by_alias(NAME, "champion")
    assert k.version == int(m.version)
    table.record(f"resolve {NAME}@champion ({RESOLVES:,} lookups)", keel_s, mlflow_s, "us")


def bench_stages(ws, client) -> None:
    version = lambda i: 1 + i % VERSIONS  # noqa: E731
    keel_s = peer.timed(lambda i: ws.models.transition_stage(NAME, version(i), "Production", archive_existing=True),
                        TRANSITIONS)
    mlflow_s = peer.timed(lambda i: client.transition_model_version_stage(NAME, str(version(i)), "Production",
                                                                          archive_existing_versions=True), TRANSITIONS)
    keel_stages = {v.version: v.stage for v in ws.models.versions(NAME)}
    mlflow_stages = {int(v.version): v.current_stage
                     for v in client.search_model_versions(f"name='{NAME}'", max_results=VERSIONS + 10)}
    assert keel_stages == mlflow_stages, "stages differ"
    table.record(f"move to Production, archive the rest ({TRANSITIONS:,})", keel_s, mlflow_s, "us")


def main() -> None:
    _, ws, client = peer.open_both("registry")
    peer.register_versions(table, ws, client, NAME, VERSIONS)
    peer.move_alias(table, ws, client, NAME, VERSIONS, ALIAS_MOVES)
    bench_resolve(ws, client)
    bench_stages(ws, client)
    table.print()


if __name__ == "__main__":
    main()

"""What the benchmarks against MLflow share: a work folder holding a Keel workspace beside an MLflow
client on SQLite, and the ratio table printed last.

Imported by bench_registry.py and bench_tracking.py (bench/ is on sys.path when they run); MLflow is
imported only inside, so the module loads where MLflow is not installed.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings

import keel


def open_both(name: str):
    """A fresh work folder with a Keel workspace and an MLflow client whose tracking and registry
    store is a SQLite file in it; prints which versions run where. Returns (root, ws, client)."""
    warnings.filterwarnings("ignore")  # MLflow's deprecation chatter would bury the timings
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    import mlflow
    from mlflow.tracking import MlflowClient
    root = tempfile.mkdtemp(prefix=f"keel-bench-{name}-")
    print(f"keel {keel.__version__} vs mlflow {mlflow.__version__} (SQLite backend); workdir {root}", flush=True)
    uri = f"sqlite:///{root}/mlflow.db"
    return root, keel.open(os.path.join(root, "ws.keel")), MlflowClient(tracking_uri=uri, registry_uri=uri)


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    """The Markdown table bench/README.md quotes: workload, Keel, MLflow, speed-up."""
    print("\n| workload | Keel | MLflow (SQLite) | Keel speed-up |\n| --- | --- | --- | --- |")
    for name, k, m, ratio in rows:
        print(f"| {name} | {k} | {m} | {ratio} |")

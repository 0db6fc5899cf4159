#!/usr/bin/env python3
"""The cost of autologging: a LightGBM fit of 500 rounds plain, under keel.autolog() and under
mlflow.autolog(), same data, same process, same run.

Each repeat runs the three fits back to back (so machine load hits all three alike) and the median
of each is compared. Both autologgers run with their defaults: params, per-iteration metrics of the
validation set, the model (Keel: converted to its native format and registered; MLflow: its
LightGBM flavour), tags. Both booster outputs are checked equal to the plain fit's. Keel converts
and registers the model on a background thread (the fit returns first); the time to wait for that
(``keel.autolog_flush()``) is measured and shown on its own row too.
Run it with ``bench/run.sh autolog`` (MLflow lives only in bench/.work/venv-autolog).
Environment knobs: ROWS, FEATURES, ROUNDS, REPEAT, THREADS.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import keel

ROWS = int(os.environ.get("ROWS", 50_000))
FEATURES = int(os.environ.get("FEATURES", 20))
ROUNDS = int(os.environ.get("ROUNDS", 500))
REPEAT = int(os.environ.get("REPEAT", 5))
THREADS = int(os.environ.get("THREADS", 2))


def make_data():
    import pandas as pd
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(ROWS, FEATURES)), columns=[f"f{i}" for i in range(FEATURES)])
    logit = X["f0"] * 1.5 - X["f1"] + 0.5 * X["f2"] * X["f3"] + rng.normal(scale=0.5, size=ROWS)
    y = (logit > 0).astype(int)
    cut = int(ROWS * 0.8)
    return X.iloc[:cut], y.iloc[:cut], X.iloc[cut:], y.iloc[cut:]


def fit(data):
    import lightgbm as lgb
    X, y, Xv, yv = data
    params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "verbose": -1,
              "num_threads": THREADS, "seed": 1, "deterministic": True}
    train = lgb.Dataset(X, y)
    valid = lgb.Dataset(Xv, yv, reference=train)
    t0 = time.perf_counter()
    booster = lgb.train(params, train, ROUNDS, valid_sets=[valid], valid_names=["valid"])
    return time.perf_counter() - t0, booster


def main() -> None:
    import lightgbm as lgb
    import mlflow
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    root = tempfile.mkdtemp(prefix="keel-bench-autolog-")
    load = os.getloadavg()[0]
    print(f"keel {keel.__version__} vs mlflow {mlflow.__version__}, lightgbm {lgb.__version__}; "
          f"{ROWS:,} rows x {FEATURES} features, {ROUNDS} rounds, {THREADS} threads, median of {REPEAT}; "
          f"load average {load:.1f} on {os.cpu_count()} cores; workdir {root}", flush=True)
    data = make_data()
    Xv = data[2]
    ws = keel.open(os.path.join(root, "ws.keel"))
    os.chdir(root)  # MLflow puts its artifacts under ./mlruns: keep them in the workdir
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    mlflow.set_experiment("bench")
    fit(data)  # warm-up: LightGBM, the first Keel run (git capture) and MLflow's imports are not measured
    plain, keel_t, mlflow_t, keel_bg = [], [], [], []
    reference = None
    for i in range(REPEAT + 1):
        t, booster = fit(data)
        reference = booster.predict(Xv, raw_score=True)
        keel.autolog(workspace=ws, experiment="bench")
        tk, kb = fit(data)
        t0 = time.perf_counter()
        assert keel.autolog_flush(timeout=600)  # the model, converted and registered in the background
        tb = time.perf_counter() - t0
        keel.autolog(disable=True)
        mlflow.autolog(silent=True)
        tm, mb = fit(data)
        mlflow.autolog(disable=True)
        assert np.allclose(kb.predict(Xv, raw_score=True), reference)
        assert np.allclose(mb.predict(Xv, raw_score=True), reference)
        if i == 0:
            continue  # the first autologged fits pay one-time costs (imports, patching, git capture)
        plain.append(t)
        keel_t.append(tk)
        keel_bg.append(tb)
        mlflow_t.append(tm)
        print(f"  repeat {i}: plain {t:.3f} s, keel.autolog {tk:.3f} s (+{tb:.3f} s in the background), "
              f"mlflow.autolog {tm:.3f} s", flush=True)
    # What each autologger recorded, so the comparison is of like with like.
    runs = list(ws.runs.search(experiment="bench", max_results=100))
    run = runs[0]
    hist = run.metric_history("valid-binary_logloss")
    assert len(hist) == ROUNDS and len(runs) == REPEAT + 1 and run.status == "FINISHED"
    assert run.tags["autolog.model"].startswith("lightgbm.Booster/")
    mrun = mlflow.search_runs(max_results=1, output_format="list")[0]
    assert len(mlflow.MlflowClient().get_metric_history(mrun.info.run_id, "valid-binary_logloss")) == ROUNDS
    p, k, m = statistics.median(plain), statistics.median(keel_t), statistics.median(mlflow_t)
    bg = statistics.median(keel_bg)
    keel_over, mlflow_over = k - p, m - p
    print(f"\nplain fit {p:.3f} s; keel.autolog {k:.3f} s ({keel_over / p:+.1%}); "
          f"mlflow.autolog {m:.3f} s ({mlflow_over / p:+.1%})")
    less = mlflow_over / keel_over if keel_over > 0 else float("inf")
    print(f"keel's overhead is {less:,.1f}x less than mlflow's" if keel_over > 0 else
          "keel's overhead is below the noise of this machine (median autologged fit <= median plain fit)")
    print("\n| fit (median) | time | over the plain fit |\n| --- | --- | --- |")
    print(f"| plain `lgb.train`, {ROUNDS} rounds | {p:.3f} s | - |")
    print(f"| with `keel.autolog()` | {k:.3f} s | {keel_over * 1000:+.0f} ms ({keel_over / p:+.1%}) |")
    print(f"| with `keel.autolog()`, then waiting for the model's background logging | {k + bg:.3f} s | "
          f"{(keel_over + bg) * 1000:+.0f} ms ({(keel_over + bg) / p:+.1%}) |")
    print(f"| with `mlflow.autolog()` | {m:.3f} s | {mlflow_over * 1000:+.0f} ms ({mlflow_over / p:+.1%}) |")


if __name__ == "__main__":
    main()

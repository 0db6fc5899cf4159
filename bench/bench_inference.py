#!/usr/bin/env python3
"""Keel's native inference vs each model's own runtime, onnxruntime and treelite, same data, same run.

Models (100 features, binary churn-like target): logistic regression, an MLP 100-64-32-1, LightGBM
and XGBoost with 500 trees of depth 8, a random forest of 200 trees. For each:
  1. single-row latency from Python (one row per call, as a server would), and from C++ (the same
     predict_row call timed in a C++ loop by keel._bench); each runtime is timed in a fresh
     process of its own,
  2. batch throughput on 100,000 rows with 1 and 2 threads.
Outputs are checked against the source library before any timing. Ratios are peer time / Keel
time (above 1: Keel is faster).

Run it with ``bench/run.sh inference`` (peers live only in bench/.work/venv-inference).
Environment knobs: ROWS (batch rows), SINGLE (single-row calls), TREES, QUICK=1 (smaller models).
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

import keel  # noqa: E402
import keel.inference  # noqa: E402
from keel import _bench  # noqa: E402  (timing loops in C++; not part of `import keel`)

QUICK = os.environ.get("QUICK") == "1"
ROWS = int(os.environ.get("ROWS", 100_000))
SINGLE = int(os.environ.get("SINGLE", 2_000))
TREES = int(os.environ.get("TREES", 50 if QUICK else 500))
FOREST = 20 if QUICK else 200
TRAIN = 5_000 if QUICK else 20_000
D = 100

rows_single: list[tuple] = []
rows_batch: list[tuple] = []


def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    logit = X[:, :10] @ rng.normal(size=10) + 0.5 * X[:, 10] * X[:, 11] - 0.3 * X[:, 12] ** 2
    y = (logit + rng.logistic(size=n) > 0).astype(int)
    return X, y


def per_call(fn, calls: int) -> float:
    """Median of 5 repetitions of `calls` calls, in microseconds per call."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return float(np.median(times))


def per_batch(fn, repeat: int = 3) -> float:
    """Best of `repeat` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def onnx_session(onx, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    data = onx if isinstance(onx, bytes) else onx.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _single_row_worker(runtime: str, blob: bytes, row: np.ndarray, calls: int) -> tuple[float, float]:
    """Times one runtime on one model in a fresh process: (us from Python, us from C++ or NaN)."""
    if runtime == "keel":
        p = keel.inference.load_predictor(blob)
        return per_call(lambda: p.predict_proba(row), calls), _bench.time_single_row(p.native, row, calls * 10) / 1000.0
    if runtime == "own":
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)  # BLAS and OpenMP pools: one thread, like every other runtime here
        model, native_fn = pickle.loads(blob)
        return per_call(lambda: native_fn(model, row[None, :], 1), max(50, calls // 10)), float("nan")
    sess = onnx_session(blob, 1)
    feed = {sess.get_inputs()[0].name: row[None, :].astype(np.float32)}
    return per_call(lambda: sess.run(None, feed), calls), float("nan")


def single_row(runtime: str, blob: bytes, row: np.ndarray, calls: int) -> tuple[float, float]:
    """Each runtime is timed in its own process: a peer's leftover thread pools and CPU state (an
    onnxruntime run made later Python calls in the same process twice as slow) must not tax another."""
    import concurrent.futures
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(_single_row_worker, runtime, blob, row, calls).result()


def to_onnx(name: str, model):
    try:
        if name in ("lightgbm", "xgboost"):
            import onnxmltools
            from onnxmltools.convert.common.data_types import FloatTensorType
            types = [("input", FloatTensorType([None, D]))]
            if name == "lightgbm":
                return onnxmltools.convert_lightgbm(model, initial_types=types, target_opset=15, zipmap=False)
            return onnxmltools.convert_xgboost(model, initial_types=types, target_opset=15)
        from skl2onnx import to_onnx as sk_to_onnx
        return sk_to_onnx(model, np.zeros((1, D), dtype=np.float32), target_opset=15,
                          options={id(model): {"zipmap": False}})
    except Exception as e:  # noqa: BLE001 - a peer that cannot convert is reported, not fatal
        print(f"  onnx export of {name} failed: {type(e).__name__}: {e}", flush=True)
        return None


def treelite_model(name: str, model):
    try:
        import treelite
        if name == "lightgbm":
            return treelite.frontend.from_lightgbm(model.booster_)
        if name == "xgboost":
            return treelite.frontend.from_xgboost(model.get_booster())
        if name == "random_forest":
            return treelite.sklearn.import_model(model)
    except Exception as e:  # noqa: BLE001
        print(f"  treelite import of {name} failed: {type(e).__name__}: {e}", flush=True)
    return None


def proba1(out):
    if isinstance(out, list) and out and isinstance(out[0], dict):  # a ZipMap output
        out = [[d[k] for k in sorted(d)] for d in out]
    out = np.asarray(out, dtype=np.float64)
    if out.ndim == 2:
        return out[:, -1]
    return out.reshape(-1)


def bench(name: str, model, native_fn, X: np.ndarray) -> None:
    print(f"== {name}", flush=True)
    p = keel.convert(model)
    X32 = X.astype(np.float32)
    expected = proba1(model.predict_proba(X[:2000]))
    got = proba1(p.predict_proba(X[:2000]))
    err = np.max(np.abs(expected - got))
    print(f"  keel vs {native_fn.__name__}: max abs difference {err:.2e}", flush=True)
    assert err < 1e-5, f"{name}: Keel differs from the source library by {err}"

    onx = to_onnx(name, model)
    sess1 = onnx_session(onx, 1) if onx is not None else None
    sess2 = onnx_session(onx, 2) if onx is not None else None
    if sess1 is not None:
        ort_out = sess1.run(None, {sess1.get_inputs()[0].name: X32[:2000]})
        ort_p = proba1(ort_out[-1])
        print(f"  onnxruntime vs source: max abs difference {np.max(np.abs(ort_p - expected)):.2e}", flush=True)
    tl = treelite_model(name, model)

    # -- single row
    row = np.ascontiguousarray(X[7])
    keel_py, keel_cpp = single_row("keel", p.to_bytes(), row, SINGLE)
    own, _ = single_row("own", pickle.dumps((model, native_fn)), row, SINGLE)
    ort = single_row("onnxruntime", onx.SerializeToString(), row, SINGLE)[0] if onx is not None else float("nan")
    rows_single.append((name, keel_py, keel_cpp, own, ort))
    print(f"  single row: keel python {keel_py:8.2f} us  keel C++ {keel_cpp:8.2f} us  {native_fn.__name__} "
          f"{own:9.1f} us ({own / keel_py:6.1f}x)  onnxruntime {ort:8.2f} us ({ort / keel_py:6.1f}x)", flush=True)

    # -- batch (BLAS and OpenMP pools limited too: scikit-learn's n_jobs does not reach the BLAS under
    # LogisticRegression and MLP)
    from threadpoolctl import threadpool_limits
    for threads in (1, 2):  # each lambda below runs within its iteration: no late-binding surprise
        with threadpool_limits(threads):
            keel_s = per_batch(lambda: p.predict_proba(X, threads=threads))  # noqa: B023
            own_s = per_batch(lambda: native_fn(model, X, threads), repeat=1 if name == "random_forest" else 3)  # noqa: B023
            sess = sess1 if threads == 1 else sess2
            ort_s = per_batch(lambda: sess.run(None, {sess.get_inputs()[0].name: X32})) if sess else float("nan")  # noqa: B023
            tl_s = float("nan")
            if tl is not None:
                import treelite
                tl_s = per_batch(lambda: treelite.gtil.predict(tl, X32, nthread=threads), repeat=1)  # noqa: B023
            rows_batch.append((name, threads, keel_s, own_s, ort_s, tl_s))
            print(f"  batch {len(X):,} rows, {threads} thread(s): keel {len(X) / keel_s / 1e6:7.2f} M rows/s  "
                  f"{native_fn.__name__} {own_s / keel_s:6.2f}x  onnxruntime {ort_s / keel_s:6.2f}x  "
                  f"treelite {tl_s / keel_s:6.2f}x", flush=True)


def sklearn_predict(model, X, threads):
    if hasattr(model, "n_jobs"):
        model.n_jobs = threads
    return model.predict_proba(X)


def lightgbm_predict(model, X, threads):
    return model.booster_.predict(X, num_threads=threads)


def xgboost_predict(model, X, threads):
    booster = model.get_booster()
    if getattr(booster, "keel_bench_threads", None) != threads:  # set_param costs ~0.9 ms: once, not a call
        booster.set_param({"nthread": threads})
        booster.keel_bench_threads = threads
    return booster.inplace_predict(X)


def main() -> None:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    X_train, y_train = data(TRAIN, 0)
    X, _ = data(ROWS, 1)
    print(f"training on {TRAIN:,} rows x {D} features; batches of {ROWS:,} rows; {SINGLE:,} single-row calls",
          flush=True)

    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=500).fit(X_train, y_train)
    bench("logistic_regression", lr, sklearn_predict, X)
    mlp = MLPClassifier((64, 32), max_iter=30, random_state=0).fit(X_train, y_train)
    bench("mlp", mlp, sklearn_predict, X)
    gbm = lgb.LGBMClassifier(n_estimators=TREES, max_depth=8, num_leaves=255, learning_rate=0.05,
                             min_child_samples=5, verbose=-1, n_jobs=2).fit(X_train, y_train)
    bench("lightgbm", gbm, lightgbm_predict, X)
    xg = xgb.XGBClassifier(n_estimators=TREES, max_depth=8, learning_rate=0.05, n_jobs=2,
                           tree_method="hist").fit(X_train, y_train)
    bench("xgboost", xg, xgboost_predict, X)
    rf = RandomForestClassifier(FOREST, max_depth=10, n_jobs=2, random_state=0).fit(X_train, y_train)
    bench("random_forest", rf, sklearn_predict, X)
    print(f"total {time.perf_counter() - t0:.0f} s", flush=True)

    print("\n| model | Keel from Python (us) | Keel from C++ (us) | own runtime (us) | onnxruntime (us) | "
          "vs own | vs onnxruntime |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, kp, kc, own, ort in rows_single:
        print(f"| {name} | {kp:.2f} | {kc:.2f} | {own:.1f} | {ort:.2f} | {own / kp:.1f}x | {ort / kp:.1f}x |")
    print("\n| model | threads | Keel (M rows/s) | own runtime | onnxruntime | treelite (gtil) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, t, ks, own, ort, tl in rows_batch:
        print(f"| {name} | {t} | {ROWS / ks / 1e6:.2f} | {own / ks:.2f}x | {ort / ks:.2f}x | {tl / ks:.2f}x |")


if __name__ == "__main__":
    main()

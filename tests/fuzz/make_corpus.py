"""Writes the fuzzers' seed corpora under tests/fuzz/corpus/<target>/ from the current Keel build:
small valid segments (every column type, nulls, string keys, an online snapshot, a version 1 copy),
predictor bodies (linear, MLP, trees from scikit-learn, LightGBM and XGBoost, factorization) and run
filters. Seeds are named seed-*; regression inputs a fuzzer found (named after the bug they caught)
sit beside them and are never rewritten. Run: PYTHONPATH=python python3 tests/fuzz/make_corpus.py"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import struct
import sys
import tempfile
import warnings

import numpy as np
import pandas as pd

import keel

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
T0 = pd.Timestamp("2024-01-01", tz="UTC")
PRED_HEADER = 8 + 4 + 4 + 8 + 64


def write(target: str, name: str, data: bytes) -> None:
    with open(os.path.join(HERE, target, f"seed-{name}"), "wb") as f:
        f.write(data)


def clear_seeds(target: str) -> None:
    for path in glob.glob(os.path.join(HERE, target, "seed-*")):
        os.remove(path)


def segments(tmp: str) -> None:
    clear_seeds("fuzz_segment")
    ws = keel.open(os.path.join(tmp, "seg.keel"))
    ws.features.entity("player", join_keys=["player_id"])
    ws.features.entity("shop", join_keys={"region": "string", "shop_id": "int64"})
    typed = ws.features.feature_view(
        "typed", entities=["player"],
        schema={"b": "bool", "i32": "int32", "i64": "int64", "f32": "float32", "f64": "float64", "s": "string",
                "ts": "timestamp", "emb": keel.Vector(3)})
    for n in (1, 3, 9):
        typed.ingest(pd.DataFrame({
            "player_id": np.arange(n, dtype=np.int64),
            "event_timestamp": [T0 + pd.Timedelta(minutes=i) for i in range(n)],
            "b": [bool(i % 2) for i in range(n)], "i32": np.arange(n, dtype=np.int32),
            "i64": np.arange(n, dtype=np.int64) * 1000, "f32": np.linspace(0, 1, n, dtype=np.float32),
            "f64": [None if i % 3 == 1 else i / 7 for i in range(n)],
            "s": [None if i % 4 == 2 else "x" * i for i in range(n)],
            "ts": [T0 + pd.Timedelta(days=i) for i in range(n)],
            "emb": [[float(i), 0.5, -1.0] for i in range(n)]}))
    shops = ws.features.feature_view("shops", entities=["shop"], schema={"revenue": "float64", "name": "string"})
    shops.ingest(pd.DataFrame({"region": ["eu", "us", "eu", ""], "shop_id": [1, 2, 3, 4],
                               "event_timestamp": [T0] * 4, "revenue": [1.0, None, 3.5, 0.0],
                               "name": ["a", "b", "", "dd"]}))
    ws.features.materialize("typed", end=T0 + pd.Timedelta(days=1))
    files = sorted(glob.glob(os.path.join(tmp, "seg.keel", "features", "**", "*.kseg"), recursive=True))
    for i, path in enumerate(files):
        data = open(path, "rb").read()
        write("fuzz_segment", f"{i:02d}-{'snapshot' if '/online/' in path else 'segment'}.kseg", data)
        if i < 2:  # as the Keel before checksums wrote it: version 1, no checksum trailer
            write("fuzz_segment", f"{i:02d}-version1.kseg", data[:8] + struct.pack("<I", 1) + data[12:-8])


def predictors() -> None:
    clear_seeds("fuzz_predictor")
    from keel.inference import FactorizationModel, convert

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    yr = X @ np.array([1.0, -2.0, 0.5, 0.0])
    y3 = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    models = {}
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models["linear"] = LinearRegression().fit(X, yr)
        models["logistic"] = LogisticRegression().fit(X, y)
        models["logistic3"] = LogisticRegression().fit(X, y3)
        models["scaled"] = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
        models["mlp"] = MLPClassifier(hidden_layer_sizes=(3,), max_iter=50, random_state=0).fit(X, y)
        models["tree"] = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y3)
        models["forest"] = RandomForestRegressor(n_estimators=2, max_depth=3, random_state=0).fit(X, yr)
        models["gbm"] = GradientBoostingClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, y)
        try:
            import lightgbm as lgb
            models["lightgbm"] = lgb.LGBMClassifier(n_estimators=3, num_leaves=4, min_child_samples=2,
                                                    verbose=-1).fit(X, y)
        except ImportError:
            pass
        try:
            import xgboost as xgb
            models["xgboost"] = xgb.XGBRegressor(n_estimators=2, max_depth=2).fit(X, yr)
        except ImportError:
            pass
    preds = {name: convert(m) for name, m in models.items()}
    preds["factorization"] = FactorizationModel(rng.normal(size=(3, 2)), rng.normal(size=(4, 2)),
                                                user_bias=[0.0, 0.1, 0.2], item_bias=[1.0, 0.0, 0.0, 0.5])
    for name, p in preds.items():
        data = p.to_bytes()
        body = data[PRED_HEADER:]
        assert hashlib.sha256(body).hexdigest().encode() == data[24:PRED_HEADER]
        write("fuzz_predictor", f"{name}.body", body)


FILTERS = [
    "", "metrics.auc > 0.8", "params.num_leaves = '31'", "metrics.auc > 0.8 and params.num_leaves = '31'",
    "tags.team != 'growth' AND attributes.status = 'FINISHED'", "status IN ('RUNNING', 'FAILED')",
    "tags.x NOT IN ('a', 'b', 'c')", "metrics.`weird key` <= -1.5e10", 'params."lr" LIKE \'0.%\'',
    "run_name ILIKE '%base%'", "start_time >= 1704067200000 and end_time < 1.7e12", "user = 'ana'",
    "metrics.loss != 0 AND metrics.acc >= .5 AND metrics.f1 < 1 AND metrics.p = 1e-3",
    "attributes.run_id = 'abc123' and experiment = 'churn'", "parent_id = ''", "metrics.auc == 3",
    "params.a <> 'b'", "metrics.auc DESC", "start_time ASC", "params.lr", "metrics.auc >", "tags.'q' = 'x'",
    "metrics.auc > 'x'", "params.k IN ()", "metrics.m IN ('1')", "name = 'it''s'", "tags.a = 'unterminated",
]


def filters() -> None:
    clear_seeds("fuzz_filter")
    for i, text in enumerate(FILTERS):
        write("fuzz_filter", f"{i:02d}.txt", text.encode())


def main() -> int:
    tmp = tempfile.mkdtemp(prefix="keel-corpus-")
    try:
        segments(tmp)
        predictors()
        filters()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for target in sorted(os.listdir(HERE)):
        files = os.listdir(os.path.join(HERE, target))
        size = sum(os.path.getsize(os.path.join(HERE, target, f)) for f in files)
        print(f"{target}: {len(files)} files, {size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

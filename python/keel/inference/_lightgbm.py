"""LightGBM importer: a Booster (or a fitted LGBMModel) read from its JSON dump into a model record,
with pandas category columns kept as label vocabularies."""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.inference._common import K, TreeBuilder, plain, qualname, set_task, unsupported


def booster_of(est: Any) -> Any:
    """The lightgbm.Booster of a Booster or a fitted LGBMModel; None for anything else."""
    qn = qualname(est)
    if qn == "lightgbm.Booster":
        return est
    if qn.startswith("lightgbm."):
        return getattr(est, "booster_", None) or getattr(est, "_Booster", None)
    return None


def add_estimator(rec: dict, meta: dict, est: Any, width: int, names: list[str], dtypes: list[str],
                  vocab: dict) -> None:
    """Writes a LightGBM model's trees, objective and category vocabularies into the record."""
    booster = booster_of(est)
    if booster is None:
        raise unsupported(est, "it is not fitted")
    dump = booster.dump_model()
    objective = str(dump.get("objective", "regression")).split()
    obj = objective[0] if objective else "regression"
    params = dict(p.split(":", 1) for p in objective[1:] if ":" in p)
    n_raw = int(dump.get("num_tree_per_iteration", 1))
    trees = dump["tree_info"]
    b = TreeBuilder(1)
    text = booster.model_to_string(num_iteration=1)
    if (booster.params or {}).get("linear_tree") or "is_linear=1" in text or "[linear_tree: 1]" in text:
        raise unsupported("LightGBM linear trees (linear_tree=True)")
    for i, info in enumerate(trees):
        _add_lgb_tree(b, info["tree_structure"], i % n_raw)
    divisor = max(1, len(trees) // n_raw) if dump.get("average_output") else 1
    classifier = hasattr(est, "classes_")
    if obj == "binary":
        transform = "binary_sigmoid"
        rec[K.OUTPUT_SIGMOID_SCALE] = float(params.get("sigmoid", 1.0))
        classifier = True
    elif obj in ("multiclass", "softmax"):
        transform, classifier = "softmax", True
    elif obj in ("multiclassova", "multiclass_ova", "ova", "ovr"):
        transform, classifier = "sigmoid", True
        rec[K.OUTPUT_SIGMOID_SCALE] = float(params.get("sigmoid", 1.0))
    elif obj in ("regression", "regression_l2", "l2", "mean_squared_error", "mse", "regression_l1", "l1",
                 "mean_absolute_error", "mae", "huber", "fair", "quantile", "mape", "lambdarank", "rank_xendcg",
                 "custom", "none"):
        transform, classifier = "identity", False
    elif obj in ("poisson", "gamma", "tweedie"):
        transform, classifier = "exp", False
    elif obj in ("cross_entropy", "xentropy"):
        transform, classifier = "sigmoid", False
    else:
        raise unsupported(f"the LightGBM objective {obj!r}")
    set_task(rec, meta, est, classifier, n_raw, transform)
    # Pandas category columns: LightGBM keeps each one's categories and codes values by position.
    pandas_cats = getattr(booster, "pandas_categorical", None) or []
    if pandas_cats:
        cat_idx = _lgb_categorical_features(booster, len(names))
        for col, cats in zip(cat_idx, pandas_cats):
            vocab[names[col]] = {"labels": [plain(v) for v in cats], "unknown": "nan", "nan_code": None}
            dtypes[col] = "category"
    b.write(rec, n_raw, np.zeros(n_raw), "le", divisor=divisor)


def _lgb_categorical_features(booster: Any, n: int) -> list[int]:
    params = getattr(booster, "params", {}) or {}
    cf = params.get("categorical_feature") or params.get("categorical_column")
    if cf:
        if isinstance(cf, str):
            cf = [c for c in cf.split(",") if c]
        names = booster.feature_name()
        return sorted(names.index(c) if isinstance(c, str) and not c.isdigit() else int(c) for c in cf)
    # Fall back on the model text, which lists categorical features by index.
    for line in booster.model_to_string(num_iteration=1).splitlines():
        if line.startswith("[categorical_feature: "):
            return [int(c) for c in line[len("[categorical_feature: "):-1].split(",") if c]
    return []


def _add_lgb_tree(b: TreeBuilder, root: dict, output: int) -> None:
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    right: list[int] = []
    value: list[float] = []
    dleft: list[int] = []
    missing: list[int] = []
    category: list[int] = []

    def visit(node: dict) -> int:
        i = len(feature)
        for lst in (feature, threshold, left, right, value, dleft, missing, category):
            lst.append(0)
        if "split_feature" not in node:
            feature[i], left[i], right[i], category[i] = -1, -1, -1, -1
            value[i] = float(node["leaf_value"])
            return i
        feature[i] = int(node["split_feature"])
        mt = node.get("missing_type", "None")
        if node.get("decision_type") == "==":
            cats = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
            category[i] = b.add_category_set(cats)
            dleft[i] = 0  # LightGBM sends NaN and negative categories right
            missing[i] = 0
        else:
            category[i] = -1
            threshold[i] = float(node["threshold"])
            dleft[i] = 1 if node.get("default_left") else 0
            missing[i] = {"NaN": 0, "None": 1, "Zero": 2}.get(mt, 1)
        left[i] = visit(node["left_child"])
        right[i] = visit(node["right_child"])
        return i

    visit(root)
    b.add(output, feature, threshold, left, right, value, default_left=dleft, missing=missing, category=category)

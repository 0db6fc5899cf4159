"""XGBoost importer: a Booster (or a fitted XGBModel) read from its JSON model into a model record."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from keel.inference._common import TreeBuilder, qualname, set_task, unsupported


def booster_of(est: Any) -> Any:
    """The xgboost.Booster of a Booster or a fitted XGBModel; None for anything else."""
    qn = qualname(est)
    if qn == "xgboost.Booster":
        return est
    if qn.startswith("xgboost."):
        try:
            return est.get_booster()
        except Exception:  # noqa: BLE001 - an unfitted estimator
            return None
    return None


def _parse_floats(v: Any) -> list[float]:
    if isinstance(v, (int, float)):
        return [float(v)]
    s = str(v).strip().strip("[]")
    return [float(x) for x in s.split(",") if x.strip()]


def add_estimator(rec: dict, meta: dict, est: Any, width: int) -> None:
    """Writes an XGBoost model's trees (gbtree or dart), base score and objective into the record."""
    booster = booster_of(est)
    if booster is None:
        raise unsupported(est, "it is not fitted")
    missing = getattr(est, "missing", np.nan)
    if missing is not None and not (isinstance(missing, float) and math.isnan(missing)):
        raise unsupported(f"XGBoost with missing={missing!r} (only NaN marks missing values)")
    model = json.loads(bytes(booster.save_raw(raw_format="json")))
    learner = model["learner"]
    gb = learner["gradient_booster"]
    name = gb.get("name")
    weights = None
    if name == "dart":
        weights = gb.get("weight_drop")
        gb = gb["gbtree"]
    elif name != "gbtree":
        raise unsupported(f"the XGBoost booster {name!r} (gbtree and dart are supported)")
    gmodel = gb["model"]
    mp = learner["learner_model_param"]
    n_class = int(mp.get("num_class", "0"))
    n_target = int(mp.get("num_target", "1"))
    if n_target > 1:
        raise unsupported("XGBoost multi-target models")
    n_raw = max(1, n_class)
    obj = learner["objective"]["name"]
    scores = _parse_floats(mp.get("base_score", "0.5"))
    if len(scores) == 1:
        scores = scores * n_raw
    base = np.asarray(scores[:n_raw], dtype=np.float64)
    if obj in ("binary:logistic", "reg:logistic"):
        base = np.log(base / (1.0 - base))
    elif obj in ("count:poisson", "reg:gamma", "reg:tweedie", "survival:cox", "survival:aft"):
        base = np.log(base)
    base = base.astype(np.float32).astype(np.float64)
    classifier = False
    if obj == "binary:logistic":
        transform, classifier = "binary_sigmoid", True
    elif obj == "reg:logistic":
        transform = "sigmoid"
    elif obj in ("multi:softprob", "multi:softmax"):
        transform, classifier = "softmax", True
    elif obj in ("count:poisson", "reg:gamma", "reg:tweedie"):
        transform = "exp"
    elif obj.startswith(("reg:", "rank:")) or obj == "binary:logitraw":
        transform = "identity"
    else:
        raise unsupported(f"the XGBoost objective {obj!r}")
    trees = gmodel["trees"]
    info = gmodel.get("tree_info", [0] * len(trees))
    n_trees = len(trees)
    if qualname(est) != "xgboost.Booster":
        best = booster.attributes().get("best_iteration")
        if best is not None:
            n_trees = min(n_trees, (int(best) + 1) * n_raw)
    b = TreeBuilder(1)
    for t in range(n_trees):
        tree = trees[t]
        w = 1.0 if weights is None else float(weights[t])
        _add_xgb_tree(b, tree, int(info[t]), w)
    set_task(rec, meta, est, classifier, n_raw, transform)
    b.write(rec, n_raw, base, "lt_float")


def _add_xgb_tree(b: TreeBuilder, tree: dict, output: int, weight: float) -> None:
    left = np.asarray(tree["left_children"], dtype=np.int64)
    right = np.asarray(tree["right_children"], dtype=np.int64)
    split = np.asarray(tree["split_indices"], dtype=np.int64)
    cond = np.asarray(tree["split_conditions"], dtype=np.float32).astype(np.float64)
    dleft = np.asarray(tree["default_left"], dtype=np.int64)
    leaf = left < 0
    values = np.where(leaf, cond, 0.0)
    if weight != 1.0:
        values = (values.astype(np.float32) * np.float32(weight)).astype(np.float64)
    category = np.full(len(left), -1, np.int64)
    split_type = tree.get("split_type") or [0] * len(left)
    if any(int(s) == 1 for s in split_type):
        cats = tree.get("categories", [])
        seg = tree.get("categories_segments", [])
        sizes = tree.get("categories_sizes", [])
        for j, node in enumerate(tree.get("categories_nodes", [])):
            right_set = cats[seg[j]:seg[j] + sizes[j]]
            # XGBoost sends the listed categories right; Keel's bitsets send theirs left: swap.
            category[node] = b.add_category_set(right_set)
            left[node], right[node] = right[node], left[node]
            dleft[node] = 1 - dleft[node]
    b.add(output, np.where(leaf, -1, split), np.where(leaf, 0.0, cond), left, right, values, default_left=dleft,
          category=category)

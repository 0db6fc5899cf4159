"""Helpers every importer shares: record keys, label handling, the "unsupported" error, and the
builder of the flat tree node layout that scikit-learn, LightGBM and XGBoost trees all go into."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keel import _core
from keel.errors import InvalidArgument

#: The model record's keys, declared once in the core (core/include/keel/inference/record_keys.hpp).
K = _core.model_keys


def plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def label_key(v: Any) -> Any:
    v = plain(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool):
        return int(v)
    return v


def is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return (isinstance(v, float) and math.isnan(v)) or (isinstance(v, np.floating) and np.isnan(v))
    except TypeError:
        return False


def to_float(v: Any, name: str) -> float:
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InvalidArgument(f"feature '{name}' has the value {v!r}, expected a number") from None


def qualname(obj: Any) -> str:
    cls = type(obj)
    module = cls.__module__.split(".")[0]
    return f"{module}.{cls.__name__}"


def unsupported(obj: Any, why: str = "") -> InvalidArgument:
    what = obj if isinstance(obj, str) else qualname(obj)
    return InvalidArgument(f"keel.convert does not support {what}{': ' + why if why else ''}. Supported: "
                           "scikit-learn linear/logistic regression, MLPs, decision trees, random forests, extra "
                           "trees, (hist) gradient boosting, LightGBM and XGBoost models, and Pipelines of "
                           "StandardScaler / OneHotEncoder / OrdinalEncoder / ColumnTransformer in front of them")


def set_task(rec: dict, meta: dict, est: Any, classifier: bool, n_raw: int, transform: str) -> None:
    """The task and output transform of a boosted model (LightGBM, XGBoost), with a classifier's
    classes: the estimator's own, or 0..n-1 for a booster trained without the sklearn API."""
    if classifier:
        classes = getattr(est, "classes_", None)
        if classes is None:
            classes = np.arange(max(2, n_raw))
        meta[K.META_CLASSES] = [plain(c) for c in classes]
    rec[K.TASK] = "classification" if classifier else "regression"
    rec[K.OUTPUT_TRANSFORM] = transform


class TreeBuilder:
    """Collects trees into the record's flat node arrays."""

    def __init__(self, leaf_width: int = 1):
        self.width = leaf_width
        self.feature: list[np.ndarray] = []
        self.threshold: list[np.ndarray] = []
        self.left: list[np.ndarray] = []
        self.right: list[np.ndarray] = []
        self.value: list[np.ndarray] = []
        self.default_left: list[np.ndarray] = []
        self.missing: list[np.ndarray] = []
        self.category: list[np.ndarray] = []
        self.output: list[int] = []
        self.sizes: list[int] = []
        self.cat_words: list[int] = []
        self.cat_offsets: list[int] = [0]

    def add(self, output: int, feature, threshold, left, right, value, default_left=None, missing=None,
            category=None) -> None:
        n = len(feature)
        self.feature.append(np.asarray(feature, dtype=np.int64))
        self.threshold.append(np.asarray(threshold, dtype=np.float64))
        self.left.append(np.asarray(left, dtype=np.int64))
        self.right.append(np.asarray(right, dtype=np.int64))
        self.value.append(np.asarray(value, dtype=np.float64).reshape(n * self.width))
        self.default_left.append(np.zeros(n, np.int64) if default_left is None else np.asarray(default_left, np.int64))
        self.missing.append(np.zeros(n, np.int64) if missing is None else np.asarray(missing, np.int64))
        self.category.append(np.full(n, -1, np.int64) if category is None else np.asarray(category, np.int64))
        self.output.append(int(output))
        self.sizes.append(n)

    def add_category_set(self, categories) -> int:
        """A bitset of the given non-negative integer categories; returns its index."""
        cats = [int(c) for c in categories]
        n_words = (max(cats) // 32 + 1) if cats else 1
        words = [0] * n_words
        for c in cats:
            words[c // 32] |= 1 << (c % 32)
        self.cat_words.extend(words)
        self.cat_offsets.append(len(self.cat_words))
        return len(self.cat_offsets) - 2

    def add_bitset(self, words) -> int:
        self.cat_words.extend(int(w) for w in words)
        self.cat_offsets.append(len(self.cat_words))
        return len(self.cat_offsets) - 2

    def write(self, rec: dict, n_raw: int, base, compare: str, scale: float = 1.0, divisor: float = 1.0) -> None:
        if not self.sizes:
            # A model without trees predicts its base score: one leaf per output.
            for k in range(0, n_raw, self.width):
                self.add(k, [-1], [0.0], [-1], [-1], np.zeros(self.width))
        rec.update({
            K.MODEL_KIND: "trees", K.TREE_N_RAW: int(n_raw), K.TREE_LEAF_WIDTH: int(self.width),
            K.TREE_BASE: np.asarray(base, dtype=np.float64).reshape(n_raw),
            K.TREE_SCALE: float(scale), K.TREE_DIVISOR: float(divisor), K.TREE_COMPARE: compare,
            K.TREE_OFFSETS: np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64),
            K.TREE_OUTPUT: np.asarray(self.output, dtype=np.int64),
            K.NODE_FEATURE: np.concatenate(self.feature), K.NODE_THRESHOLD: np.concatenate(self.threshold),
            K.NODE_LEFT: np.concatenate(self.left), K.NODE_RIGHT: np.concatenate(self.right),
            K.NODE_VALUE: np.concatenate(self.value), K.NODE_DEFAULT_LEFT: np.concatenate(self.default_left),
            K.NODE_MISSING: np.concatenate(self.missing), K.NODE_CATEGORY: np.concatenate(self.category),
        })
        if len(self.cat_offsets) > 1:
            rec[K.CAT_OFFSETS] = np.asarray(self.cat_offsets, dtype=np.int64)
            rec[K.CAT_WORDS] = np.asarray(self.cat_words, dtype=np.int64)

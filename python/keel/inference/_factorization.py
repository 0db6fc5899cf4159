"""Factorization recommenders built from embeddings (no library to import from)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from keel import _core
from keel.errors import InvalidArgument
from keel.inference._common import K, label_key, plain
from keel.inference.predictor import Predictor


def FactorizationModel(user_factors: Any, item_factors: Any, user_bias: Any = None, item_bias: Any = None,
                       global_bias: float = 0.0, user_ids: Any = None, item_ids: Any = None) -> Predictor:
    """A recommender from embeddings: score(u, i) = global_bias + user_bias[u] + item_bias[i] +
    user_factors[u] . item_factors[i]. ``user_ids`` / ``item_ids`` name the rows (default: positions).
    ``predictor.recommend(user_ids, k=10, exclude=owned)`` gives the top-k unseen items."""
    U = np.ascontiguousarray(user_factors, dtype=np.float64)
    V = np.ascontiguousarray(item_factors, dtype=np.float64)
    if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
        raise InvalidArgument(f"user_factors {U.shape} and item_factors {V.shape} must be 2-D with the same width")
    rec: dict[str, Any] = {K.TASK: "factorization", K.MODEL_KIND: "factorization", K.MF_DIM: int(U.shape[1]),
                           K.MF_USER_FACTORS: U.ravel(), K.MF_ITEM_FACTORS: V.ravel(),
                           K.MF_GLOBAL_BIAS: float(global_bias),
                           K.FEATURE_NAMES: ["user", "item"], K.FEATURE_DTYPES: ["int64", "int64"]}
    if user_bias is not None:
        rec[K.MF_USER_BIAS] = np.asarray(user_bias, dtype=np.float64).ravel()
    if item_bias is not None:
        rec[K.MF_ITEM_BIAS] = np.asarray(item_bias, dtype=np.float64).ravel()
    meta: dict[str, Any] = {K.META_SOURCE: "keel.FactorizationModel"}
    for key, ids, n in ((K.META_USER_IDS, user_ids, U.shape[0]), (K.META_ITEM_IDS, item_ids, V.shape[0])):
        if ids is not None:
            ids = [plain(v) for v in np.asarray(ids).tolist()]
            if len(ids) != n:
                raise InvalidArgument(f"{key} has {len(ids)} entries for {n} rows of factors")
            if len(set(map(label_key, ids))) != n:
                raise InvalidArgument(f"{key} holds duplicates: each row needs its own id")
            meta[key] = ids
    rec[K.METADATA] = json.dumps(meta)
    return Predictor(_core.NativePredictor(rec))

"""keel.convert: a trained model -> a model record -> a native Predictor. Pipelines are taken apart
here; each library's importer (_sklearn, _lightgbm, _xgboost) writes its estimator's part."""

from __future__ import annotations

import json
from typing import Any

from keel import _core
from keel.errors import InvalidArgument
from keel.inference import _lightgbm, _sklearn, _xgboost
from keel.inference._common import K, plain, qualname, unsupported
from keel.inference.predictor import FLAVOUR, Predictor


def convert(model: Any, feature_names: list[str] | None = None) -> Predictor:
    """A native predictor for a trained scikit-learn, LightGBM or XGBoost model (or a scikit-learn
    Pipeline of StandardScaler / OneHotEncoder / OrdinalEncoder / ColumnTransformer steps ending in
    one). Raises keel.InvalidArgument naming anything unsupported."""
    if isinstance(model, Predictor):
        return model
    rec: dict[str, Any] = {}
    meta: dict[str, Any] = {K.META_SOURCE: qualname(model)}
    pre: list[Any] = []
    est = model
    if qualname(model) == "sklearn.Pipeline":
        steps = [s for _, s in model.steps if s is not None and s != "passthrough"]
        if not steps:
            raise InvalidArgument("the Pipeline has no estimator")
        pre, est = steps[:-1], steps[-1]
        meta[K.META_SOURCE] = f"sklearn.pipeline.Pipeline({', '.join(qualname(s).rsplit('.', 1)[-1] for s in steps)})"
    n_in = _n_features_in(model, est)
    names = list(feature_names) if feature_names is not None else _feature_names(model, est, n_in)
    if len(names) != n_in:
        raise InvalidArgument(f"{len(names)} feature names for a model of {n_in} features")
    dtypes = ["float64"] * n_in
    vocab: dict[str, Any] = {}
    width = n_in
    stage = 0
    for step in pre:
        width = _sklearn.add_stage(rec, stage, step, width, names if stage == 0 else None, dtypes, vocab)
        stage += 1
    hgb_pre = getattr(est, "_preprocessor", None) if "HistGradientBoosting" in type(est).__name__ else None
    if hgb_pre is not None:
        # Category columns from pandas dtypes: the estimator's own ordinal encoder runs in front.
        width = _sklearn.add_stage(rec, stage, hgb_pre, width, names if stage == 0 else None, dtypes, vocab)
        stage += 1
    rec[K.PRE_COUNT] = stage
    _add_estimator(rec, meta, est, width, names, dtypes, vocab)
    rec[K.FEATURE_NAMES] = [str(n) for n in names]
    rec[K.FEATURE_DTYPES] = dtypes
    if vocab:
        meta[K.META_VOCABULARIES] = vocab
    rec[K.METADATA] = json.dumps(meta, default=plain)
    return Predictor(_core.NativePredictor(rec))


def _n_features_in(model: Any, est: Any) -> int:
    for obj in (model, est):
        n = getattr(obj, "n_features_in_", None)
        if n is not None:
            return int(n)
    booster = _lightgbm.booster_of(est)
    if booster is not None:
        return int(booster.num_feature())
    xgb = _xgboost.booster_of(est)
    if xgb is not None:
        return int(xgb.num_features())
    raise unsupported(est, "it is not fitted, or Keel cannot tell its number of features")


def _feature_names(model: Any, est: Any, n: int) -> list[str]:
    for obj in (model, est):
        names = getattr(obj, "feature_names_in_", None)
        if names is not None:
            return [str(x) for x in names]
    booster = _lightgbm.booster_of(est)
    if booster is not None:
        return list(booster.feature_name())
    xgb = _xgboost.booster_of(est)
    if xgb is not None and xgb.feature_names:
        return list(xgb.feature_names)
    return [f"x{i}" for i in range(n)]


def _add_estimator(rec: dict, meta: dict, est: Any, width: int, names: list[str], dtypes: list[str],
                   vocab: dict) -> None:
    """Hands the estimator to its library's importer."""
    qn = qualname(est)
    if qn.startswith("lightgbm.") or _lightgbm.booster_of(est) is not None:
        return _lightgbm.add_estimator(rec, meta, est, width, names, dtypes, vocab)
    if qn.startswith("xgboost.") or _xgboost.booster_of(est) is not None:
        return _xgboost.add_estimator(rec, meta, est, width)
    if qn.startswith("sklearn."):
        return _sklearn.add_estimator(rec, meta, est, width)
    raise unsupported(est)


def native_flavour(obj: Any) -> tuple[str, bytes, dict] | None:
    """For the registry: ("keel-native", predictor bytes, signature) when Keel can run ``obj``
    natively (a supported model or a Predictor), else None."""
    if isinstance(obj, Predictor):
        p = obj
    else:
        try:
            p = convert(obj)
        except InvalidArgument:
            return None
    signature = {"inputs": [{"name": n, "dtype": d} for n, d in p.signature], "task": p.task, "kind": p.kind,
                 "source": p.source}
    if p.classes_ is not None:
        signature["classes"] = [plain(c) for c in p.classes_]
    return FLAVOUR, p.to_bytes(), signature

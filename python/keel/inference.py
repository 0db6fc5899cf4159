"""Native inference: turn scikit-learn, LightGBM and XGBoost models into Keel predictors.

``keel.convert(model)`` reads a trained model's parameters into a *model record* (plain arrays),
which the C++ core validates and compiles into a native predictor: linear models, multilayer
perceptrons, tree ensembles in one flat node layout, and factorization recommenders, with optional
scaling / one-hot / ordinal encoding in front (from a scikit-learn ``Pipeline``). Predictors take
numpy arrays, pandas DataFrames (columns matched by name) and single rows, release the GIL, pickle,
and round-trip through a versioned, checksummed binary format (``to_bytes`` / ``load_predictor``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from keel import _core
from keel.errors import Corrupt, InvalidArgument

__all__ = ["convert", "Predictor", "FactorizationModel", "load_predictor", "native_flavour"]

FLAVOUR = "keel-native"


# ---- the predictor ----------------------------------------------------------------------------------


class Predictor:
    """A native predictor. ``predict(X)`` and ``predict_proba(X)`` accept a 2-D numpy array (float64
    or float32, read in place when C-contiguous), a pandas DataFrame (columns matched to the signature
    by name), a dict (one row by feature name) or a 1-D array (one row). A single row gives a single
    value (a label, a number, or a 1-D array of class probabilities)."""

    def __init__(self, native: Any):
        self._native = native
        try:  # the native record verified its checksum; what Python reads from it is checked here
            self._names = [name for name, _ in native.signature]
            self._task = native.task
            _ = native.kind  # read now, so a name that is not UTF-8 fails here
            self._meta = _read_metadata(native.metadata, self._task, native.num_outputs)
        except UnicodeDecodeError as exc:
            raise Corrupt(f"predictor is malformed: a name or its metadata is not valid UTF-8 ({exc})") from None
        self._index = {name: i for i, name in enumerate(self._names)}
        classes = self._meta.get("classes")
        self.classes_ = np.asarray(classes) if classes is not None else None
        # Columns that arrive as labels (strings, pandas categories) and are mapped to codes here.
        self._vocab = {name: v for name, v in self._meta.get("vocabularies", {}).items()}
        self._predict_native = native.predict

    # -- description
    @property
    def signature(self) -> list[tuple[str, str]]:
        """Input columns as (name, dtype) pairs, in the order the model reads them."""
        return list(self._native.signature)

    @property
    def feature_names(self) -> list[str]:
        return list(self._names)

    @property
    def task(self) -> str:
        """"regression", "classification" or "factorization"."""
        return self._native.task

    @property
    def kind(self) -> str:
        """Model family: "linear", "mlp", "trees" or "factorization"."""
        return self._native.kind

    @property
    def source(self) -> str:
        """The estimator the predictor was converted from, e.g. "lightgbm.LGBMClassifier"."""
        return self._meta.get("source", "")

    @property
    def n_features(self) -> int:
        return self._native.num_features

    def __repr__(self) -> str:
        return (f"keel.inference.Predictor({self.kind}, task={self.task}, source={self.source!r}, "
                f"features={self.n_features}, outputs={self._native.num_outputs})")

    def _repr_html_(self) -> str:
        from keel.display import html_table
        rows = [("family", self.kind), ("task", self.task), ("source", self.source),
                ("features", str(self.n_features)), ("outputs", str(self._native.num_outputs))]
        if self.classes_ is not None:
            rows.append(("classes", ", ".join(map(str, self.classes_[:20]))))
        return html_table([{"property": k, "value": v} for k, v in rows], title="Keel predictor")

    # -- serialization
    def to_bytes(self) -> bytes:
        """The versioned, checksummed binary form; ``load_predictor`` reads it back."""
        return self._native.to_bytes()

    def __reduce__(self):
        return (load_predictor, (self.to_bytes(),))

    # -- inputs
    def _rows(self, X: Any) -> tuple[np.ndarray, bool]:
        """X as a 2-D (or, for one row, 1-D) float array in signature order; True when one row."""
        if isinstance(X, np.ndarray) and X.dtype.kind == "f" and not self._vocab:
            if X.ndim == 1:
                return X, True
            return X, False
        if isinstance(X, dict):
            missing = [n for n in self._names if n not in X]
            if missing:
                raise InvalidArgument(f"row lacks the feature(s) {missing}: the model reads {self._names}")
            row = np.empty(len(self._names), dtype=np.float64)
            for i, name in enumerate(self._names):
                v = X[name]
                row[i] = self._encode_value(name, v) if name in self._vocab else _to_float(v, name)
            return row, True
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            pd = None
        if pd is not None and isinstance(X, pd.Series):
            return self._rows(X.to_dict())
        if pd is not None and isinstance(X, pd.DataFrame):
            dup = X.columns[X.columns.duplicated()]
            if len(dup):
                raise InvalidArgument(f"column '{dup[0]}' appears more than once in X: rename or drop the "
                                      f"duplicate so Keel knows which one the model reads")
            missing = [n for n in self._names if n not in X.columns]
            if missing:
                raise InvalidArgument(f"DataFrame lacks the column(s) {missing}: the model reads {self._names}")
            out = np.empty((len(X), len(self._names)), dtype=np.float64)
            for i, name in enumerate(self._names):
                col = X[name]
                if name in self._vocab:
                    out[:, i] = self._encode_column(name, col.to_numpy(dtype=object))
                elif isinstance(col.dtype, pd.CategoricalDtype):
                    codes = col.cat.codes.to_numpy().astype(np.float64)
                    codes[codes < 0] = np.nan
                    out[:, i] = codes
                else:
                    try:
                        out[:, i] = col.to_numpy(dtype=np.float64, na_value=np.nan)
                    except (TypeError, ValueError) as e:
                        raise InvalidArgument(f"column '{name}' of dtype {col.dtype} is not numeric: {e}") from None
            return out, False
        arr = np.asarray(X)
        if arr.ndim not in (1, 2):
            raise InvalidArgument(f"X has {arr.ndim} dimensions: pass one row (1-D) or rows (2-D)")
        if self._vocab:
            two = arr.reshape(1, -1) if arr.ndim == 1 else arr
            if two.shape[1] != len(self._names):
                raise InvalidArgument(f"X has {two.shape[1]} columns but the model reads {len(self._names)} features")
            out = np.empty(two.shape, dtype=np.float64)
            for i, name in enumerate(self._names):
                out[:, i] = (self._encode_column(name, two[:, i].astype(object)) if name in self._vocab
                             else two[:, i].astype(np.float64))
            return (out[0], True) if arr.ndim == 1 else (out, False)
        if arr.dtype.kind not in "fiub":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise InvalidArgument(f"X of dtype {arr.dtype} is not numeric: pass numbers, or a DataFrame "
                                      f"whose label columns the model knows") from None
        return arr, arr.ndim == 1

    def _encode_value(self, name: str, v: Any) -> float:
        return float(self._encode_column(name, np.array([v], dtype=object))[0])

    def _encode_column(self, name: str, values: np.ndarray) -> np.ndarray:
        spec = self._vocab[name]
        lookup = spec.get("_lookup")
        if lookup is None:
            lookup = spec["_lookup"] = {_label_key(v): i for i, v in enumerate(spec["labels"])}
        unknown = float("nan") if spec.get("unknown") == "nan" else -1.0
        nan_code = spec.get("nan_code")
        out = np.empty(len(values), dtype=np.float64)
        for j, v in enumerate(values):
            if _is_missing(v):
                out[j] = float("nan") if nan_code is None else nan_code
            else:
                out[j] = lookup.get(_label_key(v), unknown)
        return out

    # -- prediction
    def _run(self, X: Any, threads: int, raw: bool = False) -> tuple[np.ndarray, bool]:
        rows, single = self._rows(X)
        return self._native.predict(rows, threads, raw), single

    def predict(self, X: Any, threads: int = 0) -> Any:
        """Predictions: class labels for a classifier, values for a regressor (a column per target
        when there are several). ``threads``: 0 uses all cores for large batches, 1 the caller's only."""
        out, single = self._run(X, threads)
        if self.task == "classification":
            assert self.classes_ is not None  # a classifier's record always carries its classes
            labels = self.classes_[np.argmax(out, axis=1)]
            return labels[0] if single else labels
        if out.shape[1] == 1:
            return float(out[0, 0]) if single else out[:, 0]
        return out[0] if single else out

    @property
    def predict_proba(self):
        """Class probabilities, a column per class in ``classes_`` order (classifiers only: like
        scikit-learn, a regressor has no such attribute, so ``hasattr`` tells them apart)."""
        if self._task != "classification":
            raise AttributeError(f"predict_proba needs a classifier; this predictor does {self.task}")
        return self._predict_proba

    def _predict_proba(self, X: Any, threads: int = 0) -> np.ndarray:
        if type(X) is np.ndarray and X.ndim == 1 and not self._vocab:  # one numeric row: the short path
            return self._predict_native(X, threads, False)[0]
        out, single = self._run(X, threads)
        return out[0] if single else out

    def predict_raw(self, X: Any, threads: int = 0) -> np.ndarray:
        """Margins before the output transform (decision_function / output_margin / raw_score)."""
        out, single = self._run(X, threads, raw=True)
        return out[0] if single else out

    # -- recommendation (factorization models)
    def recommend(self, user_ids: Any, k: int = 10, exclude: Any = None, threads: int = 0):
        """Top-k items per user, best first, skipping items in ``exclude``. ``exclude`` is a dict
        {user_id: items}, a list of item collections aligned with ``user_ids``, or a scipy sparse
        user x item matrix (indexed by user position in the model). Returns (items, scores), each
        [len(user_ids) x min(k, number of items)]; missing slots (fewer candidates) hold -1 and NaN."""
        if self.task != "factorization":
            raise InvalidArgument(f"recommend() needs a factorization model; this predictor is a '{self.kind}' model")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgument(f"recommend() needs k, the number of items per user, as an integer >= 1; got {k!r}")
        single = np.isscalar(user_ids)
        users = np.atleast_1d(np.asarray(user_ids))
        uidx = self._map_ids(users, "user")
        indptr = indices = None
        if exclude is not None:
            indptr, indices = self._exclusions(users, uidx, exclude)
        items, scores = self._native.recommend(uidx, min(int(k), 2**63 - 1), indptr, indices, threads)
        item_ids = self._meta.get("item_ids")
        if item_ids is not None:
            labels = np.asarray(item_ids)
            if items.size and items.max() >= len(labels):
                raise Corrupt(f"predictor metadata is malformed: it names {len(labels)} items but the model "
                              f"scores item {int(items.max())}; convert and log the model again")
            mapped = np.where(items >= 0, labels[np.maximum(items, 0)], -1 if labels.dtype.kind in "iu" else None)
            items = mapped
        return (items[0], scores[0]) if single else (items, scores)

    def score(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Scores of (user, item) pairs of a factorization model."""
        users = self._map_ids(np.atleast_1d(np.asarray(user_ids)), "user")
        items = self._map_ids(np.atleast_1d(np.asarray(item_ids)), "item")
        return self._native.score_pairs(users, items)

    def _map_ids(self, ids: np.ndarray, what: str) -> np.ndarray:
        known = self._meta.get(f"{what}_ids")
        if known is None:
            try:
                return ids.astype(np.int64)
            except (TypeError, ValueError, OverflowError):
                raise InvalidArgument(f"{what} ids {ids[:3].tolist()!r} are not positions: this model names no "
                                      f"{what}s, so pass integer {what} positions") from None
        lookup = self._meta.get(f"_{what}_lookup")
        if lookup is None:
            lookup = self._meta[f"_{what}_lookup"] = {_label_key(v): i for i, v in enumerate(known)}
        out = np.empty(len(ids), dtype=np.int64)
        for j, v in enumerate(ids):
            i = lookup.get(_label_key(v))
            if i is None:
                raise InvalidArgument(f"unknown {what} id {_plain(v)!r}: the model knows {len(known)} {what}s")
            out[j] = i
        return out

    def _exclusions(self, users: np.ndarray, uidx: np.ndarray, exclude: Any) -> tuple[np.ndarray, np.ndarray]:
        if hasattr(exclude, "tocsr"):
            csr = exclude.tocsr()
            rows = [csr.indices[csr.indptr[u]:csr.indptr[u + 1]] for u in uidx]
            lists = [np.asarray(r, dtype=np.int64) for r in rows]
        else:
            if isinstance(exclude, dict):
                seqs = [exclude.get(_plain(u), ()) for u in users]
            else:
                seqs = list(exclude)
                if len(seqs) != len(users):
                    raise InvalidArgument(f"exclude has {len(seqs)} entries for {len(users)} users: pass one "
                                          f"collection per user, or a dict by user id")
            lists = []
            for s in seqs:
                arr = np.asarray(list(s))
                if len(arr) == 0:
                    lists.append(np.empty(0, dtype=np.int64))
                    continue
                if self._meta.get("item_ids") is not None:
                    known = self._meta.get("_item_lookup") or {}
                    if not known:
                        self._map_ids(arr[:1], "item")
                        known = self._meta["_item_lookup"]
                    lists.append(np.array([known.get(_label_key(v), -1) for v in arr], dtype=np.int64))
                else:
                    lists.append(arr.astype(np.int64))
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(x) for x in lists])
        indices = np.concatenate(lists) if lists else np.empty(0, dtype=np.int64)
        return indptr, indices.astype(np.int64)

    # -- timing hook for the benchmark: one predict_row call timed inside C++
    def _time_single_row(self, row: np.ndarray, iterations: int = 10000) -> float:
        return self._native.time_single_row(np.asarray(row, dtype=np.float64), iterations)


_SCALARS = (str, int, float, bool, type(None))


def _read_metadata(text: str, task: str, num_outputs: int) -> dict:
    """The predictor's metadata (JSON written by the importers), checked for every field Python
    reads later, so that a malformed model is keel.Corrupt at load and never a stray TypeError or
    JSONDecodeError at predict time."""
    def bad(why: str) -> Corrupt:
        return Corrupt(f"predictor metadata is malformed: {why}; the model bytes were altered or written by a "
                       f"broken importer. Convert and log the model again")

    try:
        meta = json.loads(text or "{}")
    except (ValueError, RecursionError) as exc:
        raise bad(f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(meta, dict):
        raise bad(f"expected a JSON object, found {type(meta).__name__}")
    if not isinstance(meta.get("source", ""), str):
        raise bad("'source' is not a string")

    def scalar_list(key: str, value: Any) -> list:
        if not isinstance(value, list) or not all(isinstance(v, _SCALARS) for v in value):
            raise bad(f"'{key}' is not a list of labels")
        return value

    classes = meta.get("classes")
    if classes is not None:
        scalar_list("classes", classes)
    if task == "classification" and (classes is None or len(classes) != num_outputs):
        raise bad(f"a classifier with {num_outputs} outputs lists "
                  f"{'no' if classes is None else len(classes)} classes")
    for key in ("user_ids", "item_ids"):
        if meta.get(key) is not None:
            scalar_list(key, meta[key])
    vocab = meta.get("vocabularies", {})
    if not isinstance(vocab, dict):
        raise bad("'vocabularies' is not an object")
    for name, spec in vocab.items():
        if not isinstance(spec, dict):
            raise bad(f"the vocabulary of '{name}' is not an object")
        scalar_list(f"vocabularies.{name}.labels", spec.get("labels"))
        if spec.get("unknown") not in ("nan", "minus_one", None):
            raise bad(f"the vocabulary of '{name}' has unknown={spec.get('unknown')!r}")
        nan_code = spec.get("nan_code")
        if nan_code is not None and (isinstance(nan_code, bool) or not isinstance(nan_code, (int, float))):
            raise bad(f"the vocabulary of '{name}' has nan_code={nan_code!r}")
    return meta


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _label_key(v: Any) -> Any:
    v = _plain(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool):
        return int(v)
    return v


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return (isinstance(v, float) and math.isnan(v)) or (isinstance(v, np.floating) and np.isnan(v))
    except TypeError:
        return False


def _to_float(v: Any, name: str) -> float:
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InvalidArgument(f"feature '{name}' has the value {v!r}, expected a number") from None


def load_predictor(data: bytes) -> Predictor:
    """Reads bytes from ``Predictor.to_bytes()``; raises keel.Corrupt when truncated, altered or written
    by a newer Keel."""
    return Predictor(_core.NativePredictor.from_bytes(bytes(data)))


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
        signature["classes"] = [_plain(c) for c in p.classes_]
    return FLAVOUR, p.to_bytes(), signature


# ---- factorization ----------------------------------------------------------------------------------


def FactorizationModel(user_factors: Any, item_factors: Any, user_bias: Any = None, item_bias: Any = None,
                       global_bias: float = 0.0, user_ids: Any = None, item_ids: Any = None) -> Predictor:
    """A recommender from embeddings: score(u, i) = global_bias + user_bias[u] + item_bias[i] +
    user_factors[u] . item_factors[i]. ``user_ids`` / ``item_ids`` name the rows (default: positions).
    ``predictor.recommend(user_ids, k=10, exclude=owned)`` gives the top-k unseen items."""
    U = np.ascontiguousarray(user_factors, dtype=np.float64)
    V = np.ascontiguousarray(item_factors, dtype=np.float64)
    if U.ndim != 2 or V.ndim != 2 or U.shape[1] != V.shape[1]:
        raise InvalidArgument(f"user_factors {U.shape} and item_factors {V.shape} must be 2-D with the same width")
    rec: dict[str, Any] = {"task": "factorization", "model.kind": "factorization", "mf.dim": int(U.shape[1]),
                           "mf.user_factors": U.ravel(), "mf.item_factors": V.ravel(),
                           "mf.global_bias": float(global_bias),
                           "features.names": ["user", "item"], "features.dtypes": ["int64", "int64"]}
    if user_bias is not None:
        rec["mf.user_bias"] = np.asarray(user_bias, dtype=np.float64).ravel()
    if item_bias is not None:
        rec["mf.item_bias"] = np.asarray(item_bias, dtype=np.float64).ravel()
    meta: dict[str, Any] = {"source": "keel.FactorizationModel"}
    for key, ids, n in (("user_ids", user_ids, U.shape[0]), ("item_ids", item_ids, V.shape[0])):
        if ids is not None:
            ids = [_plain(v) for v in np.asarray(ids).tolist()]
            if len(ids) != n:
                raise InvalidArgument(f"{key} has {len(ids)} entries for {n} rows of factors")
            if len(set(map(_label_key, ids))) != n:
                raise InvalidArgument(f"{key} holds duplicates: each row needs its own id")
            meta[key] = ids
    rec["metadata"] = json.dumps(meta)
    return Predictor(_core.NativePredictor(rec))


# ---- conversion -------------------------------------------------------------------------------------


def convert(model: Any, feature_names: list[str] | None = None) -> Predictor:
    """A native predictor for a trained scikit-learn, LightGBM or XGBoost model (or a scikit-learn
    Pipeline of StandardScaler / OneHotEncoder / OrdinalEncoder / ColumnTransformer steps ending in
    one). Raises keel.InvalidArgument naming anything unsupported."""
    if isinstance(model, Predictor):
        return model
    rec: dict[str, Any] = {}
    meta: dict[str, Any] = {"source": _qualname(model)}
    pre: list[Any] = []
    est = model
    if _qualname(model) == "sklearn.Pipeline":
        steps = [s for _, s in model.steps if s is not None and s != "passthrough"]
        if not steps:
            raise InvalidArgument("the Pipeline has no estimator")
        pre, est = steps[:-1], steps[-1]
        meta["source"] = f"sklearn.pipeline.Pipeline({', '.join(_qualname(s).rsplit('.', 1)[-1] for s in steps)})"
    n_in = _n_features_in(model, est)
    names = list(feature_names) if feature_names is not None else _feature_names(model, est, n_in)
    if len(names) != n_in:
        raise InvalidArgument(f"{len(names)} feature names for a model of {n_in} features")
    dtypes = ["float64"] * n_in
    vocab: dict[str, Any] = {}
    width = n_in
    stage = 0
    for step in pre:
        width = _add_stage(rec, stage, step, width, names if stage == 0 else None, dtypes, vocab)
        stage += 1
    hgb_pre = getattr(est, "_preprocessor", None) if "HistGradientBoosting" in type(est).__name__ else None
    if hgb_pre is not None:
        # Category columns from pandas dtypes: the estimator's own ordinal encoder runs in front.
        width = _add_stage(rec, stage, hgb_pre, width, names if stage == 0 else None, dtypes, vocab)
        stage += 1
    rec["pre.count"] = stage
    _add_estimator(rec, meta, est, width, names, dtypes, vocab)
    rec["features.names"] = [str(n) for n in names]
    rec["features.dtypes"] = dtypes
    if vocab:
        meta["vocabularies"] = vocab
    rec["metadata"] = json.dumps(meta, default=_plain)
    return Predictor(_core.NativePredictor(rec))


def _qualname(obj: Any) -> str:
    cls = type(obj)
    module = cls.__module__.split(".")[0]
    return f"{module}.{cls.__name__}"


def _unsupported(obj: Any, why: str = "") -> InvalidArgument:
    what = obj if isinstance(obj, str) else _qualname(obj)
    return InvalidArgument(f"keel.convert does not support {what}{': ' + why if why else ''}. Supported: "
                           "scikit-learn linear/logistic regression, MLPs, decision trees, random forests, extra "
                           "trees, (hist) gradient boosting, LightGBM and XGBoost models, and Pipelines of "
                           "StandardScaler / OneHotEncoder / OrdinalEncoder / ColumnTransformer in front of them")


def _n_features_in(model: Any, est: Any) -> int:
    for obj in (model, est):
        n = getattr(obj, "n_features_in_", None)
        if n is not None:
            return int(n)
    booster = _lgb_booster(est)
    if booster is not None:
        return int(booster.num_feature())
    xgb = _xgb_booster(est)
    if xgb is not None:
        return int(xgb.num_features())
    raise _unsupported(est, "it is not fitted, or Keel cannot tell its number of features")


def _feature_names(model: Any, est: Any, n: int) -> list[str]:
    for obj in (model, est):
        names = getattr(obj, "feature_names_in_", None)
        if names is not None:
            return [str(x) for x in names]
    booster = _lgb_booster(est)
    if booster is not None:
        return list(booster.feature_name())
    xgb = _xgb_booster(est)
    if xgb is not None and xgb.feature_names:
        return list(xgb.feature_names)
    return [f"x{i}" for i in range(n)]


# -- preprocessing steps


def _add_stage(rec: dict, stage: int, step: Any, width: int, names: list[str] | None, dtypes: list[str],
               vocab: dict) -> int:
    """Adds preprocessing stage `stage` for `step` reading `width` columns; returns its output width."""
    qn = _qualname(step)
    blocks: list[tuple[str, Any, list[int]]] = []
    if qn == "sklearn.ColumnTransformer":
        mapping = getattr(step, "_transformer_to_input_indices", None)
        if mapping is None:
            raise _unsupported(step, "this scikit-learn version does not expose its column mapping")
        for name, trans, _cols in step.transformers_:
            cols = [int(c) for c in mapping.get(name, [])]
            if trans == "drop" or not cols:
                continue
            if trans == "passthrough" or _is_identity(trans):
                blocks.append(("passthrough", None, cols))
            elif _qualname(trans) in ("sklearn.StandardScaler", "sklearn.OneHotEncoder", "sklearn.OrdinalEncoder"):
                blocks.append((_qualname(trans), trans, cols))
            else:
                raise _unsupported(trans, f"inside ColumnTransformer (transformer '{name}')")
    elif qn in ("sklearn.StandardScaler", "sklearn.OneHotEncoder", "sklearn.OrdinalEncoder"):
        blocks.append((qn, step, list(range(width))))
    else:
        raise _unsupported(step, "as a Pipeline step")
    out = 0
    for j, (kind, trans, cols) in enumerate(blocks):
        p = f"pre.{stage}.{j}."
        rec[p + "columns"] = np.asarray(cols, dtype=np.int64)
        if kind == "passthrough":
            rec[p + "kind"] = "passthrough"
            out += len(cols)
        elif kind == "sklearn.StandardScaler":
            rec[p + "kind"] = "scale"
            mean = trans.mean_ if getattr(trans, "mean_", None) is not None and trans.with_mean else np.zeros(len(cols))
            scale = trans.scale_ if getattr(trans, "scale_", None) is not None else np.ones(len(cols))
            rec[p + "mean"] = np.asarray(mean, dtype=np.float64)
            rec[p + "scale"] = np.asarray(scale, dtype=np.float64)
            out += len(cols)
        else:
            cats, offsets = _encoder_categories(trans, cols, names, dtypes, vocab, stage)
            rec[p + "categories"] = cats
            rec[p + "offsets"] = offsets
            if kind == "sklearn.OneHotEncoder":
                infrequent = getattr(trans, "infrequent_categories_", None)
                if infrequent is not None and any(x is not None for x in infrequent):
                    raise _unsupported("OneHotEncoder with infrequent categories (min_frequency / max_categories)")
                if trans.handle_unknown not in ("error", "ignore", "infrequent_if_exist"):
                    raise _unsupported(f"OneHotEncoder(handle_unknown={trans.handle_unknown!r})")
                rec[p + "kind"] = "onehot"
                rec[p + "handle_unknown"] = "error" if trans.handle_unknown == "error" else "ignore"
                drop = getattr(trans, "drop_idx_", None)
                drops = [-1 if drop is None or drop[c] is None else int(drop[c]) for c in range(len(cols))]
                rec[p + "drop"] = np.asarray(drops, dtype=np.int64)
                out += sum(len(trans.categories_[c]) - (1 if drops[c] >= 0 else 0) for c in range(len(cols)))
            else:
                rec[p + "kind"] = "ordinal"
                if trans.handle_unknown == "use_encoded_value":
                    rec[p + "handle_unknown"] = "use_encoded_value"
                    rec[p + "unknown_value"] = float(trans.unknown_value)
                else:
                    rec[p + "handle_unknown"] = "error"
                rec[p + "missing_value"] = float(trans.encoded_missing_value)
                if getattr(trans, "infrequent_categories_", None) is not None and any(
                        x is not None for x in trans.infrequent_categories_):
                    raise _unsupported("OrdinalEncoder with infrequent categories (min_frequency / max_categories)")
                out += len(cols)
    rec[f"pre.{stage}.blocks"] = len(blocks)
    return out


def _is_identity(trans: Any) -> bool:
    """FunctionTransformer() (a passthrough remainder) or HistGradientBoosting's check_array step."""
    if _qualname(trans) != "sklearn.FunctionTransformer":
        return False
    func = trans.func
    return func is None or getattr(getattr(func, "func", None), "__name__", "") == "check_array"


def _encoder_categories(trans: Any, cols: list[int], names: list[str] | None, dtypes: list[str], vocab: dict,
                        stage: int) -> tuple[np.ndarray, np.ndarray]:
    values: list[float] = []
    offsets = [0]
    for c, cats in enumerate(trans.categories_):
        cats = list(cats)
        if np.asarray(cats).dtype.kind in "fiub":
            values.extend(float(v) for v in cats)
        else:
            # Label categories: the predictor maps labels to positions before the native code runs,
            # which is only possible where the encoder reads the model's own input columns.
            if names is None:
                raise _unsupported("an encoder of string categories after another preprocessing step")
            col = cols[c]
            labels = [v for v in cats if not _is_missing(v)]
            nan_code = float(len(labels)) if len(labels) < len(cats) else None
            vocab[names[col]] = {"labels": [_plain(v) for v in labels], "unknown": "minus_one", "nan_code": nan_code}
            dtypes[col] = "string"
            codes = [float(i) for i in range(len(labels))]
            if nan_code is not None:
                codes.append(float("nan"))
            values.extend(codes)
        offsets.append(len(values))
    return np.asarray(values, dtype=np.float64), np.asarray(offsets, dtype=np.int64)


# -- estimators


def _add_estimator(rec: dict, meta: dict, est: Any, width: int, names: list[str], dtypes: list[str],
                   vocab: dict) -> None:
    qn = _qualname(est)
    cls = type(est).__name__
    if qn.startswith("lightgbm.") or _lgb_booster(est) is not None:
        return _add_lightgbm(rec, meta, est, width, names, dtypes, vocab)
    if qn.startswith("xgboost.") or _xgb_booster(est) is not None:
        return _add_xgboost(rec, meta, est, width)
    if not qn.startswith("sklearn."):
        raise _unsupported(est)
    if cls in ("LinearRegression", "Ridge", "Lasso", "ElasticNet", "LassoLars", "Lars", "BayesianRidge",
               "ARDRegression", "HuberRegressor", "SGDRegressor", "RidgeCV", "LassoCV", "ElasticNetCV",
               "LinearSVR", "TheilSenRegressor"):
        return _add_linear_regressor(rec, est, width)
    if cls in ("LogisticRegression", "LogisticRegressionCV"):
        return _add_logistic(rec, meta, est, width)
    if cls == "OneVsRestClassifier":
        return _add_one_vs_rest(rec, meta, est, width)
    if cls in ("MLPClassifier", "MLPRegressor"):
        return _add_mlp(rec, meta, est, width)
    if cls in ("DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
               "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor"):
        return _add_sklearn_forest(rec, meta, est, width)
    if cls in ("GradientBoostingClassifier", "GradientBoostingRegressor"):
        return _add_sklearn_gb(rec, meta, est, width)
    if cls in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        return _add_sklearn_hgb(rec, meta, est, width)
    raise _unsupported(est)


def _add_linear_regressor(rec: dict, est: Any, width: int) -> None:
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    if intercept.size == 1 and coef.shape[0] > 1:
        intercept = np.repeat(intercept, coef.shape[0])
    rec.update({"task": "regression", "model.kind": "linear", "linear.coef": coef.ravel(),
                "linear.intercept": intercept, "output.transform": "identity"})


def _add_logistic(rec: dict, meta: dict, est: Any, width: int) -> None:
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    classes = est.classes_
    meta["classes"] = [_plain(c) for c in classes]
    if len(classes) <= 2:
        transform = "binary_sigmoid"
    else:
        multi = getattr(est, "multi_class", "auto")
        ovr = multi == "ovr" or (multi in ("auto", "deprecated") and getattr(est, "solver", "") == "liblinear")
        transform = "ovr_normalized" if ovr else "softmax"
    rec.update({"task": "classification", "model.kind": "linear", "linear.coef": coef.ravel(),
                "linear.intercept": intercept, "output.transform": transform})


def _add_one_vs_rest(rec: dict, meta: dict, est: Any, width: int) -> None:
    if getattr(est, "label_binarizer_", None) is not None and est.label_binarizer_.y_type_ == "multilabel-indicator":
        raise _unsupported("OneVsRestClassifier for multi-label targets")
    inner = est.estimators_
    if len(est.classes_) <= 2 or not all(type(e).__name__ == "LogisticRegression" for e in inner):
        raise _unsupported(est, "only multiclass one-vs-rest over LogisticRegression is supported")
    coef = np.vstack([np.asarray(e.coef_, dtype=np.float64).reshape(1, -1) for e in inner])
    intercept = np.concatenate([np.atleast_1d(np.asarray(e.intercept_, dtype=np.float64)) for e in inner])
    meta["classes"] = [_plain(c) for c in est.classes_]
    rec.update({"task": "classification", "model.kind": "linear", "linear.coef": coef.ravel(),
                "linear.intercept": intercept, "output.transform": "ovr_normalized"})


def _add_mlp(rec: dict, meta: dict, est: Any, width: int) -> None:
    rec.update({"model.kind": "mlp", "mlp.layers": len(est.coefs_), "mlp.activation": est.activation})
    for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        rec[f"mlp.{i}.weights"] = np.asarray(w, dtype=np.float64).ravel()
        rec[f"mlp.{i}.bias"] = np.asarray(b, dtype=np.float64).ravel()
    out = est.out_activation_
    if type(est).__name__ == "MLPClassifier":
        meta["classes"] = [_plain(c) for c in est.classes_]
        if out == "logistic" and len(est.classes_) == 2 and est.coefs_[-1].shape[1] == 1:
            transform = "binary_sigmoid"
        elif out == "softmax":
            transform = "softmax"
        else:
            raise _unsupported("MLPClassifier for multi-label targets")
        rec["task"] = "classification"
    else:
        if out not in ("identity", "exp"):
            raise _unsupported(f"MLPRegressor with output activation {out!r}")
        transform = out
        rec["task"] = "regression"
    rec["output.transform"] = transform


class _TreeBuilder:
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
            "model.kind": "trees", "tree.n_raw": int(n_raw), "tree.leaf_width": int(self.width),
            "tree.base": np.asarray(base, dtype=np.float64).reshape(n_raw),
            "tree.scale": float(scale), "tree.divisor": float(divisor), "tree.compare": compare,
            "tree.offsets": np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64),
            "tree.output": np.asarray(self.output, dtype=np.int64),
            "node.feature": np.concatenate(self.feature), "node.threshold": np.concatenate(self.threshold),
            "node.left": np.concatenate(self.left), "node.right": np.concatenate(self.right),
            "node.value": np.concatenate(self.value), "node.default_left": np.concatenate(self.default_left),
            "node.missing": np.concatenate(self.missing), "node.category": np.concatenate(self.category),
        })
        if len(self.cat_offsets) > 1:
            rec["cat.offsets"] = np.asarray(self.cat_offsets, dtype=np.int64)
            rec["cat.words"] = np.asarray(self.cat_words, dtype=np.int64)


def _add_sklearn_tree(b: _TreeBuilder, tree: Any, output: int, values: np.ndarray) -> None:
    t = tree.tree_
    feature = np.where(t.children_left < 0, -1, t.feature)
    missing_left = getattr(t, "missing_go_to_left", None)
    default_left = np.zeros(t.node_count, np.int64) if missing_left is None else np.asarray(missing_left, np.int64)
    b.add(output, feature, t.threshold, t.children_left, t.children_right, values, default_left=default_left)


def _add_sklearn_forest(rec: dict, meta: dict, est: Any, width: int) -> None:
    trees = getattr(est, "estimators_", None)
    if trees is None:
        trees = [est]
    if getattr(est, "n_outputs_", 1) != 1:
        raise _unsupported(est, "multi-output trees")
    classifier = hasattr(est, "classes_")
    if classifier and len(est.classes_) == 2:
        # Binary: one probability per leaf (the positive class's), the other is its complement.
        meta["classes"] = [_plain(c) for c in est.classes_]
        b = _TreeBuilder(1)
        for tree in trees:
            v = np.asarray(tree.tree_.value[:, 0, :2], dtype=np.float64)
            norm = v.sum(axis=1)
            norm[norm == 0] = 1.0
            _add_sklearn_tree(b, tree, 0, v[:, 1] / norm)
        rec["task"] = "classification"
        b.write(rec, 1, [0.0], "le_float", divisor=len(trees))
        rec["output.transform"] = "binary"
        return
    if classifier:
        n_classes = len(est.classes_)
        meta["classes"] = [_plain(c) for c in est.classes_]
        b = _TreeBuilder(n_classes)
        for tree in trees:
            v = np.asarray(tree.tree_.value[:, 0, :n_classes], dtype=np.float64)
            norm = v.sum(axis=1, keepdims=True)
            norm[norm == 0] = 1.0
            _add_sklearn_tree(b, tree, 0, v / norm)
        rec["task"] = "classification"
        b.write(rec, n_classes, np.zeros(n_classes), "le_float", divisor=len(trees))
    else:
        b = _TreeBuilder(1)
        for tree in trees:
            _add_sklearn_tree(b, tree, 0, tree.tree_.value[:, 0, 0])
        rec["task"] = "regression"
        b.write(rec, 1, [0.0], "le_float", divisor=len(trees))
    rec["output.transform"] = "identity"


def _link_transform(loss: Any, n_raw: int, classifier: bool) -> str:
    link = type(getattr(loss, "link", None)).__name__
    if link == "IdentityLink":
        return "identity"
    if link == "LogLink":
        return "exp"
    if link == "LogitLink":
        return "binary_sigmoid" if classifier else "sigmoid"
    if link in ("MultinomialLogit", "SymmetricMultinomialLogit"):
        return "softmax"
    raise _unsupported(f"the loss {type(loss).__name__} (link {link})")


def _add_sklearn_gb(rec: dict, meta: dict, est: Any, width: int) -> None:
    classifier = hasattr(est, "classes_")
    stages = est.estimators_
    n_raw = stages.shape[1]
    init = est.init_
    if not (init == "zero" or type(init).__name__ in ("DummyClassifier", "DummyRegressor")):
        raise _unsupported(est, f"a custom init estimator ({type(init).__name__})")
    base = np.asarray(est._raw_predict_init(np.zeros((1, est.n_features_in_), dtype=np.float32)),
                      dtype=np.float64).reshape(n_raw)
    b = _TreeBuilder(1)
    for i in range(stages.shape[0]):
        for k in range(n_raw):
            _add_sklearn_tree(b, stages[i, k], k, stages[i, k].tree_.value[:, 0, 0])
    loss = est._loss
    if classifier:
        meta["classes"] = [_plain(c) for c in est.classes_]
        rec["task"] = "classification"
        if type(loss).__name__ == "ExponentialLoss":
            rec["output.transform"] = "binary_sigmoid"
            rec["output.sigmoid_scale"] = 2.0
        else:
            rec["output.transform"] = _link_transform(loss, n_raw, True)
    else:
        rec["task"] = "regression"
        rec["output.transform"] = _link_transform(loss, n_raw, False)
    b.write(rec, n_raw, base, "le_float", scale=float(est.learning_rate))


def _add_sklearn_hgb(rec: dict, meta: dict, est: Any, width: int) -> None:
    classifier = hasattr(est, "classes_")
    n_raw = int(est.n_trees_per_iteration_)
    base = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(n_raw)
    known, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
    b = _TreeBuilder(1)
    for iteration in est._predictors:
        for k, pred in enumerate(iteration):
            nodes = pred.nodes
            leaf = nodes["is_leaf"].astype(bool)
            categorical = nodes["is_categorical"].astype(bool) & ~leaf
            category = np.full(len(nodes), -1, np.int64)
            missing = np.zeros(len(nodes), np.int64)
            for i in np.flatnonzero(categorical):
                words = np.asarray(pred.raw_left_cat_bitsets[nodes["bitset_idx"][i]], dtype=np.uint64)
                if nodes["missing_go_to_left"][i]:
                    # Unknown categories follow missing values: they join the left set.
                    kn = np.asarray(known[f_idx_map[nodes["feature_idx"][i]]], dtype=np.uint64)
                    words = words | (~kn & np.uint64(0xFFFFFFFF))
                category[i] = b.add_bitset(words)
                missing[i] = 1  # negative or out-of-range categories follow missing values
            b.add(k, np.where(leaf, -1, nodes["feature_idx"]), nodes["num_threshold"],
                  np.where(leaf, -1, nodes["left"]), np.where(leaf, -1, nodes["right"]), nodes["value"],
                  default_left=nodes["missing_go_to_left"], missing=missing, category=category)
    loss = est._loss
    if classifier:
        meta["classes"] = [_plain(c) for c in est.classes_]
        rec["task"] = "classification"
    else:
        rec["task"] = "regression"
    rec["output.transform"] = _link_transform(loss, n_raw, classifier)
    b.write(rec, n_raw, base, "le")


# -- LightGBM


def _lgb_booster(est: Any) -> Any:
    qn = _qualname(est)
    if qn == "lightgbm.Booster":
        return est
    if qn.startswith("lightgbm."):
        return getattr(est, "booster_", None) or getattr(est, "_Booster", None)
    return None


def _add_lightgbm(rec: dict, meta: dict, est: Any, width: int, names: list[str], dtypes: list[str],
                  vocab: dict) -> None:
    booster = _lgb_booster(est)
    if booster is None:
        raise _unsupported(est, "it is not fitted")
    dump = booster.dump_model()
    objective = str(dump.get("objective", "regression")).split()
    obj = objective[0] if objective else "regression"
    params = dict(p.split(":", 1) for p in objective[1:] if ":" in p)
    n_raw = int(dump.get("num_tree_per_iteration", 1))
    trees = dump["tree_info"]
    b = _TreeBuilder(1)
    text = booster.model_to_string(num_iteration=1)
    if (booster.params or {}).get("linear_tree") or "is_linear=1" in text or "[linear_tree: 1]" in text:
        raise _unsupported("LightGBM linear trees (linear_tree=True)")
    for i, info in enumerate(trees):
        _add_lgb_tree(b, info["tree_structure"], i % n_raw)
    divisor = max(1, len(trees) // n_raw) if dump.get("average_output") else 1
    classifier = hasattr(est, "classes_")
    if obj == "binary":
        transform = "binary_sigmoid"
        rec["output.sigmoid_scale"] = float(params.get("sigmoid", 1.0))
        classifier = True
    elif obj in ("multiclass", "softmax"):
        transform, classifier = "softmax", True
    elif obj in ("multiclassova", "multiclass_ova", "ova", "ovr"):
        transform, classifier = "sigmoid", True
        rec["output.sigmoid_scale"] = float(params.get("sigmoid", 1.0))
    elif obj in ("regression", "regression_l2", "l2", "mean_squared_error", "mse", "regression_l1", "l1",
                 "mean_absolute_error", "mae", "huber", "fair", "quantile", "mape", "lambdarank", "rank_xendcg",
                 "custom", "none"):
        transform, classifier = "identity", False
    elif obj in ("poisson", "gamma", "tweedie"):
        transform, classifier = "exp", False
    elif obj in ("cross_entropy", "xentropy"):
        transform, classifier = "sigmoid", False
    else:
        raise _unsupported(f"the LightGBM objective {obj!r}")
    if classifier:
        classes = getattr(est, "classes_", None)
        if classes is None:
            classes = np.arange(max(2, n_raw))
        meta["classes"] = [_plain(c) for c in classes]
    rec["task"] = "classification" if classifier else "regression"
    rec["output.transform"] = transform
    # Pandas category columns: LightGBM keeps each one's categories and codes values by position.
    pandas_cats = getattr(booster, "pandas_categorical", None) or []
    if pandas_cats:
        cat_idx = _lgb_categorical_features(booster, len(names))
        for col, cats in zip(cat_idx, pandas_cats):
            vocab[names[col]] = {"labels": [_plain(v) for v in cats], "unknown": "nan", "nan_code": None}
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


def _add_lgb_tree(b: _TreeBuilder, root: dict, output: int) -> None:
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


# -- XGBoost


def _xgb_booster(est: Any) -> Any:
    qn = _qualname(est)
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


def _add_xgboost(rec: dict, meta: dict, est: Any, width: int) -> None:
    booster = _xgb_booster(est)
    if booster is None:
        raise _unsupported(est, "it is not fitted")
    missing = getattr(est, "missing", np.nan)
    if missing is not None and not (isinstance(missing, float) and math.isnan(missing)):
        raise _unsupported(f"XGBoost with missing={missing!r} (only NaN marks missing values)")
    model = json.loads(bytes(booster.save_raw(raw_format="json")))
    learner = model["learner"]
    gb = learner["gradient_booster"]
    name = gb.get("name")
    weights = None
    if name == "dart":
        weights = gb.get("weight_drop")
        gb = gb["gbtree"]
    elif name != "gbtree":
        raise _unsupported(f"the XGBoost booster {name!r} (gbtree and dart are supported)")
    gmodel = gb["model"]
    mp = learner["learner_model_param"]
    n_class = int(mp.get("num_class", "0"))
    n_target = int(mp.get("num_target", "1"))
    if n_target > 1:
        raise _unsupported("XGBoost multi-target models")
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
        raise _unsupported(f"the XGBoost objective {obj!r}")
    trees = gmodel["trees"]
    info = gmodel.get("tree_info", [0] * len(trees))
    n_trees = len(trees)
    if _qualname(est) != "xgboost.Booster":
        best = booster.attributes().get("best_iteration")
        if best is not None:
            n_trees = min(n_trees, (int(best) + 1) * n_raw)
    b = _TreeBuilder(1)
    for t in range(n_trees):
        tree = trees[t]
        w = 1.0 if weights is None else float(weights[t])
        _add_xgb_tree(b, tree, int(info[t]), w)
    if classifier:
        classes = getattr(est, "classes_", None)
        if classes is None:
            classes = np.arange(max(2, n_raw))
        meta["classes"] = [_plain(c) for c in classes]
    rec["task"] = "classification" if classifier else "regression"
    rec["output.transform"] = transform
    b.write(rec, n_raw, base, "lt_float")


def _add_xgb_tree(b: _TreeBuilder, tree: dict, output: int, weight: float) -> None:
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

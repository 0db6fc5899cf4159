"""The native predictor wrapper: what ``keel.convert`` and ``keel.inference.load_predictor`` return.

It reads inputs (numpy, pandas, dicts, single rows), maps label columns to codes with the vocabularies
the importer stored in the model's metadata, and hands float rows to the C++ predictor.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from keel import _core, _data
from keel.errors import Corrupt, InvalidArgument
from keel.inference._common import K, is_missing, label_key, plain, to_float

FLAVOUR = "keel-native"


# ---- the predictor ----------------------------------------------------------------------------------


class Predictor:
    """A native predictor. ``predict(X)`` and ``predict_proba(X)`` accept a 2-D numpy array (float64
    or float32, read in place when C-contiguous), a pandas DataFrame or pyarrow Table or list of row
    dicts (columns matched to the signature by name), a dict (one row by feature name) or a 1-D array
    (one row). A single row gives a single
    value (a label, a number, or a 1-D array of class probabilities)."""

    def __init__(self, native: Any):
        self._native = native
        try:  # the native record verified its checksum; what Python reads from it is checked here
            self._names = [name for name, _ in native.signature]
            self._task = native.task
            _ = native.kind  # read it: a malformed record fails here, not on first use
            self._meta = _read_metadata(native.metadata, self._task, native.num_outputs)
        except UnicodeDecodeError as exc:
            raise Corrupt(f"predictor is malformed: a name or its metadata is not valid UTF-8 ({exc})") from None
        self._index = {name: i for i, name in enumerate(self._names)}
        classes = self._meta.get(K.META_CLASSES)
        self.classes_ = np.asarray(classes) if classes is not None else None
        # Columns that arrive as labels (strings, pandas categories) and are mapped to codes here.
        self._vocab = {name: v for name, v in self._meta.get(K.META_VOCABULARIES, {}).items()}
        self._predict_native = native.predict

    # -- description
    @property
    def native(self) -> _core.NativePredictor:
        """The ``keel._core.NativePredictor`` this wraps (what an endpoint's request path runs)."""
        return self._native

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
        return self._meta.get(K.META_SOURCE, "")

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

    def spark_udf(self, spark=None, result: str = "predict"):
        """An Arrow UDF scoring Spark rows with this native predictor in the executors (it ships
        pickled; no per-row Python): ``df.withColumn("score", udf(*cols))`` with the input columns in
        signature order, like MLflow's ``spark_udf``, or ``udf(F.struct(*cols))`` by field name.
        ``result="proba"`` gives a classifier's probabilities as arrays. See keel.engines.spark."""
        from keel.engines.spark import udf
        del spark  # accepted for MLflow's call shape: the UDF needs no session to be defined
        return udf(self, result)

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
                row[i] = self._encode_value(name, v) if name in self._vocab else to_float(v, name)
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
            lookup = spec["_lookup"] = {label_key(v): i for i, v in enumerate(spec["labels"])}
        unknown = float("nan") if spec.get("unknown") == "nan" else -1.0
        nan_code = spec.get("nan_code")
        out = np.empty(len(values), dtype=np.float64)
        for j, v in enumerate(values):
            if is_missing(v):
                out[j] = float("nan") if nan_code is None else nan_code
            else:
                out[j] = lookup.get(label_key(v), unknown)
        return out

    def _coded(self, table: pa.Table) -> pa.Table:
        """An Arrow table whose label columns are replaced by their codes (float64, NaN for missing):
        columns with a vocabulary in the model's metadata, and dictionary (category) columns by
        their index, as a DataFrame's categories give their codes. Other columns pass untouched:
        the core reads them by name (core/inference/column_rows.cpp)."""
        for name in self._names:
            if name not in table.column_names:
                continue  # the core names every missing input at once
            i = table.column_names.index(name)
            column = table.column(i)
            if name in self._vocab:
                codes = self._encode_column(name, np.array(column.to_pylist(), dtype=object))
            elif pa.types.is_dictionary(column.type):
                unified = table.select([i]).unify_dictionaries().column(0)
                indices = pa.chunked_array([chunk.indices for chunk in unified.chunks], unified.type.index_type)
                codes = indices.cast(pa.float64()).to_numpy()  # nulls become NaN
            else:
                continue
            table = table.set_column(i, name, pa.array(codes, pa.float64()))
        return table

    # -- prediction
    def _run(self, X: Any, threads: int, raw: bool = False) -> tuple[np.ndarray, bool]:
        if _data.is_arrow(X) or _data.is_rows(X):  # pyarrow, other Arrow producers, a list of row dicts
            # Straight to the core by column name (the Arrow C Data Interface), no pandas in between.
            return self._native.predict_arrow(self._coded(_data.to_table(X)), threads, raw), False
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
        item_ids = self._meta.get(K.META_ITEM_IDS)
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
        known = self._meta.get(K.META_USER_IDS if what == "user" else K.META_ITEM_IDS)
        if known is None:
            try:
                return ids.astype(np.int64)
            except (TypeError, ValueError, OverflowError):
                raise InvalidArgument(f"{what} ids {ids[:3].tolist()!r} are not positions: this model names no "
                                      f"{what}s, so pass integer {what} positions") from None
        lookup = self._meta.get(f"_{what}_lookup")
        if lookup is None:
            lookup = self._meta[f"_{what}_lookup"] = {label_key(v): i for i, v in enumerate(known)}
        out = np.empty(len(ids), dtype=np.int64)
        for j, v in enumerate(ids):
            i = lookup.get(label_key(v))
            if i is None:
                raise InvalidArgument(f"unknown {what} id {plain(v)!r}: the model knows {len(known)} {what}s")
            out[j] = i
        return out

    def _exclusions(self, users: np.ndarray, uidx: np.ndarray, exclude: Any) -> tuple[np.ndarray, np.ndarray]:
        if hasattr(exclude, "tocsr"):
            csr = exclude.tocsr()
            rows = [csr.indices[csr.indptr[u]:csr.indptr[u + 1]] for u in uidx]
            lists = [np.asarray(r, dtype=np.int64) for r in rows]
        else:
            if isinstance(exclude, dict):
                seqs = [exclude.get(plain(u), ()) for u in users]
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
                if self._meta.get(K.META_ITEM_IDS) is not None:
                    known = self._meta.get("_item_lookup") or {}
                    if not known:
                        self._map_ids(arr[:1], "item")
                        known = self._meta["_item_lookup"]
                    lists.append(np.array([known.get(label_key(v), -1) for v in arr], dtype=np.int64))
                else:
                    lists.append(arr.astype(np.int64))
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(x) for x in lists])
        indices = np.concatenate(lists) if lists else np.empty(0, dtype=np.int64)
        return indptr, indices.astype(np.int64)


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
    if not isinstance(meta.get(K.META_SOURCE, ""), str):
        raise bad(f"'{K.META_SOURCE}' is not a string")

    def scalar_list(key: str, value: Any) -> list:
        if not isinstance(value, list) or not all(isinstance(v, _SCALARS) for v in value):
            raise bad(f"'{key}' is not a list of labels")
        return value

    classes = meta.get(K.META_CLASSES)
    if classes is not None:
        scalar_list(K.META_CLASSES, classes)
    if task == "classification" and (classes is None or len(classes) != num_outputs):
        raise bad(f"a classifier with {num_outputs} outputs lists "
                  f"{'no' if classes is None else len(classes)} classes")
    for key in (K.META_USER_IDS, K.META_ITEM_IDS):
        if meta.get(key) is not None:
            scalar_list(key, meta[key])
    vocab = meta.get(K.META_VOCABULARIES, {})
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


def load_predictor(data: bytes) -> Predictor:
    """Reads bytes from ``Predictor.to_bytes()``; raises keel.Corrupt when truncated, altered or written
    by a newer Keel."""
    return Predictor(_core.NativePredictor.from_bytes(bytes(data)))

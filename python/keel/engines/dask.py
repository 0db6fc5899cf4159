"""Keel on Dask: training sets, view reads, ingest and batch scoring run in the workers through
``map_partitions`` / ``from_map``, by Keel's native code on Arrow tables; the client only plans and records.

Workers open the workspace by the client's path (the local schedulers, or a file system every worker
mounts at the same path) and import ``keel`` (installed on every worker).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.engines import _partition, _plan
from keel.engines._partition import ROW
from keel.errors import InvalidArgument


def _dd():
    import dask.dataframe as dd
    return dd


def is_dataframe(data: Any) -> bool:
    return type(data).__module__.startswith(("dask.", "dask_expr")) and type(data).__name__ == "DataFrame"


# Feature columns reach pandas with one dtype whatever a partition holds (an int column with no null
# in one partition and a null in the next must not change type): nullable integers and booleans.
_PANDAS = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}


def _to_pandas(table: pa.Table, index=None) -> pd.DataFrame:
    frame = table.to_pandas(types_mapper=_PANDAS.get)
    if index is not None:
        frame.index = index
    return frame


def _arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


# ---- training sets ---------------------------------------------------------------------------------


def _number_rows(frame: pd.DataFrame, partition_info=None) -> pd.DataFrame:
    # Row numbers in label order without counting partitions first: partition number, then position.
    base = (partition_info["number"] if partition_info else 0) << 40
    return frame.assign(**{ROW: np.arange(base, base + len(frame), dtype=np.int64)})


def training_set(store, labels, features: list[str], timestamp_column: str, *, record: bool = True):
    """Point-in-time join of a Dask DataFrame of labels in the workers."""
    from keel.engines import TrainingSetResult
    if not is_dataframe(labels):
        raise InvalidArgument(f"engine='dask' takes labels as a Dask DataFrame, not {type(labels).__name__}")
    meta = labels._meta
    p = _plan.plan(store, features, timestamp_column, _arrow(meta).schema)
    numbered = labels.map_partitions(_number_rows, meta=meta.assign(**{ROW: np.array([], dtype=np.int64)}))

    recorded = None
    if record:
        where, names = p.jobs[0].where, list(labels.columns)

        def write_part(frame: pd.DataFrame) -> pd.DataFrame:
            part = _partition.write_labels(where, _arrow(frame[names]), timestamp_column)
            first = int(frame[ROW].iloc[0]) if len(frame) else -1
            return pd.DataFrame([{"first": first, **part}])

        part_meta = pd.DataFrame({"first": pd.Series([], dtype="int64"), "digest": pd.Series([], dtype=object),
                                  "rows": pd.Series([], dtype="int64"), "min_ts": pd.Series([], dtype=object),
                                  "max_ts": pd.Series([], dtype=object)})
        parts = numbered.map_partitions(write_part, meta=part_meta).compute()
        recorded = _plan.record(store, p, parts.sort_values("first").to_dict("records"))

    fields = {f.name: f for f in _plan.feature_types(store, p, spark_types=False)}
    frame = numbered
    for job, keys in zip(p.jobs, p.keys):
        empty = pa.Table.from_arrays([pa.array([], type=fields[n].type) for n in job.names], names=job.names)
        job_meta = pd.concat([frame._meta, _to_pandas(empty, frame._meta.index)], axis=1)

        def run(part: pd.DataFrame, job=job) -> pd.DataFrame:
            joined = _partition.join(job, _arrow(part))
            added = joined.select(job.names)
            return pd.concat([part, _to_pandas(added, part.index)], axis=1)

        # Co-partitioned by entity key: each partition holds whole keys, so a worker reads only the
        # runs of its keys in every (key-sorted) segment.
        frame = frame.shuffle(on=keys).map_partitions(run, meta=job_meta)
    result = frame.sort_values(ROW)
    result = result[list(labels.columns) + p.output]
    return TrainingSetResult(result, recorded, p.record, engine="dask")


# ---- views: read and ingest ------------------------------------------------------------------------


def read_view(fv, start_ms: int | None = None, end_ms: int | None = None, partitions: int | None = None):
    """``fv.to_dask()``: a key range of the view per partition, in ``fv.to_pandas()`` order."""
    native = fv._store.native
    cutoff = int(native.snapshot([f"{fv.name}:{next(iter(fv.schema))}"]).segment_cutoffs[fv.name])
    n = partitions or 8
    job = _partition.ReadJob(where=_plan.where(fv._store.workspace), view=fv.name, version=fv.version,
                             cutoff=cutoff, bounds=list(native.key_splits(fv.name, fv.version, cutoff, n)),
                             start_ms=start_ms, end_ms=end_ms)
    meta = _view_pandas(_partition.empty_read(job))
    return _dd().from_map(_read_part, list(range(job.ranges)), job=job, meta=meta, enforce_metadata=False)


def _view_pandas(table: pa.Table) -> pd.DataFrame:
    from keel.features import _arrow_to_pandas
    return _arrow_to_pandas(table)


def _read_part(index: int, job: _partition.ReadJob) -> pd.DataFrame:
    return _view_pandas(_partition.read_range(job, index))


def ingest(fv, ddf, transform=None) -> dict:
    """``fv.ingest(dask_df)``: each partition ingested by its worker as its own segment, after
    ``transform`` (pandas frame -> Arrow table, e.g. a prediction table's shaping) when given."""
    where, view = _plan.where(fv._store.workspace), fv.name

    def run(frame: pd.DataFrame) -> pd.DataFrame:
        table = transform(frame) if transform is not None else _arrow(frame)
        return pd.DataFrame([_partition.ingest(where, view, table)])

    meta = pd.DataFrame({"rows": pd.Series([], dtype="int64"), "segment": pd.Series([], dtype="int64")})
    out = ddf.map_partitions(run, meta=meta).compute()
    return {"view": fv.name, "version": fv.version, "rows": int(out["rows"].sum()),
            "segments": sorted(int(s) for s, r in zip(out["segment"], out["rows"]) if r)}


# ---- prediction tables -----------------------------------------------------------------------------


def prediction_items(ddf, name: str, keys: list[str]) -> int:
    """The longest ``items`` list of a frame of predictions, counted by the workers, which check every
    item id first (a bad one fails the write before any partition is ingested)."""
    from keel.predictions import _item_lists
    if pd.api.types.is_string_dtype(ddf._meta["items"].dtype) and ddf._meta["items"].dtype != object:
        # Dask's dataframe.convert-string turns columns of Python lists into their text ("[1, 2]").
        raise InvalidArgument(f"prediction table '{name}': the 'items' column holds strings, not lists of item "
                              "ids (Dask converts object columns to strings, lists included): build the frame "
                              "under dask.config.set({'dataframe.convert-string': False})")

    def longest(frame: pd.DataFrame) -> pd.Series:
        return pd.Series([max((len(v) for v in _item_lists(frame, keys, name)), default=0)], dtype="int64")

    return int(ddf[[*keys, "items"]].map_partitions(longest, meta=pd.Series([], dtype="int64")).max().compute())


def check_prediction_column(ddf, name: str) -> None:
    """Nothing to tell from the metadata: the workers convert the column as the pandas path does."""


# ---- batch scoring ---------------------------------------------------------------------------------


def predict(predictor, ddf, columns: list[str] | None = None, *, result: str = "predict"):
    """Scores a Dask DataFrame with the native predictor in the workers: a Dask Series of predictions
    (or of probability arrays with ``result="proba"``), aligned with ``ddf``'s index. ``columns``
    (default: the model's signature names) are the input columns, in signature order."""
    names = list(predictor.feature_names)
    cols = list(columns) if columns is not None else names
    missing = [c for c in cols if c not in ddf.columns]
    if missing:
        raise InvalidArgument(f"the frame lacks the column(s) {missing}: the model reads {names}")
    if len(cols) != len(names):
        raise InvalidArgument(f"columns= names {len(cols)} columns, the model reads {len(names)} ({names})")

    def run(frame: pd.DataFrame) -> pd.Series:
        table = pa.Table.from_arrays([pa.array(frame[c], from_pandas=True) for c in cols], names=names)
        out = _partition.score(predictor, table, result)  # what the Spark UDF runs
        values = out.to_pylist() if pa.types.is_list(out.type) else out.to_numpy(zero_copy_only=False)
        return pd.Series(values, index=frame.index, name="prediction")

    if result == "proba" or (predictor.task != "classification" and predictor.native.num_outputs > 1):
        dtype: Any = object
    elif predictor.task == "classification":
        dtype = predictor.classes_.dtype if predictor.classes_.dtype.kind in "iufb" else object
    else:
        dtype = np.float64
    return ddf.map_partitions(run, meta=pd.Series([], dtype=dtype, name="prediction"))

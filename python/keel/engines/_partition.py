"""What one partition of a Spark or Dask job runs, engine-agnostic: Arrow in, Arrow out.

Each function takes a small, picklable job description made by the driver (the workspace's path and
who is working, the snapshot to work against) and one partition's data as a pyarrow Table. The
workspace is opened once per worker process and kept: Spark and Dask reuse their Python workers, so a
task pays no open after the first.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from keel.errors import InvalidArgument, NotFound

_OPEN: dict[tuple[str, str, str], object] = {}

#: Labels' row numbers, in label order: the column a job adds to put its result back in that order.
ROW = "__keel_row"
#: The manifest of a training set's labels written part by part (an artifact): their digests in order.
LABEL_PARTS = "keel.labels-parts"


@dataclass(frozen=True)
class Where:
    """The workspace a partition opens, and as whom (PII masking follows the role)."""

    path: str
    user: str
    role: str


def workspace(where: Where):
    """The workspace at ``where.path`` in this worker process (opened once, then reused)."""
    key = (where.path, where.user, where.role)
    ws = _OPEN.get(key)
    if ws is None:
        # keel.open creates a missing workspace: here a missing one means the executor does not see
        # the driver's file system, and an empty workspace would answer with nothing.
        # (A team workspace's URL reaches the same metadata from every executor.)
        from keel.workspace import is_database_url
        if not is_database_url(where.path) and not os.path.exists(os.path.join(where.path, "keel.db")):
            raise NotFound(f"workspace {where.path!r} is not there on this executor ({socket.gethostname()}): "
                           "put the workspace on a file system every executor mounts at the same path, or use a "
                           "team workspace (postgresql:// metadata, s3:// artifacts)")
        import keel
        ws = _OPEN[key] = keel.open(where.path, user=where.user or None, role=where.role or None)
    return ws


@dataclass(frozen=True)
class JoinJob:
    """A point-in-time join of label partitions against one snapshot, for the views of one key layout."""

    where: Where
    features: list[str]              # "view:column" of this key layout's views
    names: list[str]                 # the output name of each (view__column where names clash)
    timestamp_column: str
    view_versions: dict[str, int]
    segment_cutoffs: dict[str, int]
    label_specs: list[tuple]         # (name, dtype, dim) of the label columns the join reads
    spark_types: bool = False        # timestamps in microseconds and vectors as lists, as Spark wants
    extra: dict = field(default_factory=dict)


def join(job: JoinJob, labels: pa.Table) -> pa.Table:
    """``labels`` with this job's feature columns appended, row for row."""
    from keel.features import _to_table
    fs = workspace(job.where).features
    keys = labels.select([s[0] for s in job.label_specs])
    columns = fs.native.join_at(keys, job.label_specs, job.features, job.timestamp_column, job.view_versions,
                                job.segment_cutoffs)
    out = labels
    for name, column in zip(job.names, _to_table(columns).columns):
        out = out.append_column(name, spark_array(column) if job.spark_types else column)
    return out


def spark_array(column):
    """An Arrow column as Spark reads it: timestamps in microseconds, vectors as variable lists."""
    t = column.type
    if pa.types.is_timestamp(t):
        return column.cast(pa.timestamp("us", tz="UTC"))
    if pa.types.is_fixed_size_list(t):
        return column.cast(pa.list_(pa.float32()))
    return column


@dataclass(frozen=True)
class ReadJob:
    """Key ranges of one view version, read up to a segment cutoff."""

    where: Where
    view: str
    version: int
    cutoff: int
    bounds: list                     # key boundaries from key_splits: range i is [bounds[i-1], bounds[i])
    start_ms: int | None = None
    end_ms: int | None = None
    spark_types: bool = False

    @property
    def ranges(self) -> int:
        return len(self.bounds) + 1


def read_range(job: ReadJob, index: int) -> pa.Table:
    """The rows of key range ``index``, as ``fv.to_arrow()`` holds them (sorted by key and time)."""
    from keel.features import _to_table
    fs = workspace(job.where).features
    lo = job.bounds[index - 1] if index > 0 else None
    hi = job.bounds[index] if index < len(job.bounds) else None
    table = _to_table(fs.native.read_range(job.view, job.version, job.cutoff, lo, hi, job.start_ms, job.end_ms))
    if job.spark_types:
        table = pa.Table.from_arrays([spark_array(c) for c in table.columns], names=table.column_names)
    return table


def empty_read(job: ReadJob) -> pa.Table:
    """No rows, the columns' types: a read of no segment (cutoff 0)."""
    from dataclasses import replace
    return read_range(replace(job, cutoff=0, bounds=[]), 0)


def ingest(where: Where, view: str, data: pa.Table) -> dict:
    """Ingests one partition as its own segment (quality rules first; all or nothing for the partition)."""
    if data.num_rows == 0:
        return {"rows": 0, "segment": 0}
    fv = workspace(where).features.view(view)
    result = fv.ingest(data)
    return {"rows": int(result["rows"]), "segment": int(result["segment"])}


def write_labels(where: Where, labels: pa.Table, timestamp_column: str) -> dict:
    """Stores one partition of a training set's labels as an artifact (an Arrow IPC stream, what the
    local engine stores for the whole frame); returns its digest, rows and time range in ms."""
    if labels.num_rows == 0:
        return {"digest": "", "rows": 0, "min_ts": None, "max_ts": None}
    labels = labels.replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, labels.schema) as writer:
        writer.write_table(labels)
    digest = workspace(where).put_artifact(sink.getvalue().to_pybytes())
    ts = labels.column(timestamp_column)
    if not pa.types.is_timestamp(ts.type):
        raise InvalidArgument(f"label column '{timestamp_column}' has type {ts.type}, expected timestamps with a "
                              "time zone")
    bounds = pc.min_max(ts.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()))
    return {"digest": digest, "rows": labels.num_rows, "min_ts": bounds["min"].as_py(),
            "max_ts": bounds["max"].as_py()}


def labels_manifest(parts: list[str]) -> bytes:
    """The artifact naming a training set's label parts in order (keel.features reads it back)."""
    return json.dumps({"keel": LABEL_PARTS, "format": "arrow-ipc-stream", "parts": parts}).encode()


def read_labels(ws, blob: bytes) -> pa.Table:
    """The label frame a recorded training set stored: one Arrow IPC stream, or a manifest of parts."""
    if blob[:1] == b"{":
        manifest = json.loads(blob)
        if manifest.get("keel") == LABEL_PARTS:
            tables = [pa.ipc.open_stream(pa.py_buffer(ws.get_artifact(d))).read_all() for d in manifest["parts"]]
            return pa.concat_tables(tables)
    return pa.ipc.open_stream(pa.py_buffer(blob)).read_all()


def score(predictor, table: pa.Table, result: str) -> pa.Array:
    """Predictions for one Arrow batch, as the Arrow array the UDF returns."""
    import numpy as np
    if result == "proba":
        out = predictor._predict_proba(table)
    else:
        out = predictor.predict(table)
    out = np.asarray(out)
    if out.ndim == 2:
        flat = pa.array(np.ascontiguousarray(out, dtype=np.float64).reshape(-1))
        return pa.ListArray.from_arrays(pa.array(np.arange(0, out.size + 1, out.shape[1], dtype=np.int32)), flat)
    if out.dtype.kind in "iu":
        return pa.array(out.astype(np.int64))
    if out.dtype.kind in "fb":
        return pa.array(out)
    return pa.array(out.astype(str))

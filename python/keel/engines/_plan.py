"""What an engine's driver decides before any partition runs: the snapshot, the key layouts, the
output names, and the local engine's checks run on the labels' schema (so a missing view, a missing
column or a naive timestamp fails on the driver with the local engine's error, before a job starts).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from keel import _core
from keel.engines._partition import ROW, JoinJob, Where
from keel.errors import InvalidArgument


@dataclass
class Plan:
    record: _core.TrainingSetRecord  # the snapshot (no id yet)
    jobs: list[JoinJob]             # one per key layout, in the order of first use
    keys: list[list[str]]           # each job's join key columns (what labels are partitioned by)
    output: list[str]               # feature column names in the requested order


def where(ws) -> Where:
    return Where(path=ws.location, user=ws.user, role=ws.role)  # a directory or a PostgreSQL URL


def plan(store, features: list[str], timestamp_column: str, schema: pa.Schema, *,
         spark_types: bool = False) -> Plan:
    """The join plan for labels of Arrow ``schema``; raises the local engine's errors."""
    if not features:
        raise InvalidArgument("training_set needs labels and features=[\"view:column\", ...] or spec=\"name\"")
    if ROW in schema.names:
        raise InvalidArgument(f"labels have a column named '{ROW}': Keel's engines use that name, rename it")
    empty = pa.Table.from_batches([], schema=schema)
    # The local engine's checks, in its order: the views and their join keys in the labels, the
    # timestamp column (keel.features.FeatureStore._label_columns), then the core's own on a batch
    # of no rows (types, zones, the views' columns).
    keys, specs = store._label_columns(empty, features, timestamp_column)
    record = store.native.snapshot(list(features))
    store.native.join_at(keys, specs, list(features), timestamp_column, dict(record.view_versions),
                         dict(record.segment_cutoffs))
    ts_type = schema.field(timestamp_column).type
    if not pa.types.is_timestamp(ts_type):
        raise InvalidArgument(f"label column '{timestamp_column}' has type {ts_type}: on Spark and Dask give it as "
                              "timestamps with a time zone (Spark: F.to_timestamp(col); pandas: "
                              "pd.to_datetime(col, utc=True))")

    clashes = Counter(f.split(":", 1)[1] for f in features)
    layouts: dict[tuple, list[str]] = {}
    for f in features:
        view = f.split(":", 1)[0]
        spec = store.native.recorded_view(view, record.view_versions[view])
        layouts.setdefault(tuple(k.name for k in spec.join_keys), []).append(f)
    jobs, key_lists = [], []
    for layout, group in layouts.items():
        _, group_specs = store._label_columns(empty, group, timestamp_column)
        views = {f.split(":", 1)[0] for f in group}
        names = [f.replace(":", "__") if clashes[f.split(":", 1)[1]] > 1 else f.split(":", 1)[1] for f in group]
        jobs.append(JoinJob(where=where(store.workspace), features=list(group), names=names,
                            timestamp_column=timestamp_column,
                            view_versions={v: int(record.view_versions[v]) for v in views},
                            segment_cutoffs={v: int(record.segment_cutoffs[v]) for v in views},
                            label_specs=list(group_specs), spark_types=spark_types))
        key_lists.append(list(layout))
    output = [f.replace(":", "__") if clashes[f.split(":", 1)[1]] > 1 else f.split(":", 1)[1] for f in features]
    clash = set(output) & set(schema.names)
    if clash:
        raise InvalidArgument(f"label column(s) {sorted(clash)} have the same name as requested features: "
                              "rename them in the label frame")
    return Plan(record=record, jobs=jobs, keys=key_lists, output=output)


def feature_types(store, plan_: Plan, *, spark_types: bool) -> list[pa.Field]:
    """The Arrow fields of the feature columns a join appends, in output order."""
    from keel.engines._partition import spark_array
    from keel.features import _to_table
    fields: list[pa.Field] = []
    for job in plan_.jobs:
        # A join of no rows gives the columns' types exactly as a partition's join does.
        empty = pa.Table.from_arrays([pa.array([], type=_arrow_type(s)) for s in job.label_specs],
                                     names=[s[0] for s in job.label_specs])
        cols = _to_table(store.native.join_at(empty, job.label_specs, job.features, job.timestamp_column,
                                              job.view_versions, job.segment_cutoffs))
        for name, col in zip(job.names, cols.columns):
            fields.append(pa.field(name, (spark_array(col) if spark_types else col).type))
    order = {f.name: f for f in fields}
    return [order[n] for n in plan_.output]


def _arrow_type(spec: tuple) -> pa.DataType:
    return {"int64": pa.int64(), "string": pa.string(), "timestamp": pa.timestamp("ms", tz="UTC")}[spec[1]]


def record(store, plan_: Plan, parts: list[dict]) -> _core.TrainingSetRecord:
    """Records the training set whose labels were stored as ``parts`` (in label order), with lineage."""
    from keel.engines._partition import labels_manifest
    parts = [p for p in parts if p["rows"]]
    digest = store.workspace.put_artifact(labels_manifest([p["digest"] for p in parts]))
    mins = [p["min_ts"] for p in parts if p["min_ts"] is not None]
    maxs = [p["max_ts"] for p in parts if p["max_ts"] is not None]
    r = plan_.record
    return store.native.record_training_set(list(r.features), dict(r.view_versions), dict(r.segment_cutoffs),
                                            plan_.jobs[0].timestamp_column, digest, sum(p["rows"] for p in parts),
                                            min(mins) if mins else None, max(maxs) if maxs else None)

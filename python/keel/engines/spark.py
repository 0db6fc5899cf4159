"""Keel on Spark: training sets, view reads, ingest and batch scoring run in the executors through
``mapInArrow`` and Arrow UDFs, by Keel's native code; the driver only plans and records.

Executors open the workspace by the driver's path (local mode, or a file system every executor
mounts at the same path), import ``keel`` (installed on every executor) and work on Arrow batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from keel.engines import _partition, _plan
from keel.engines._partition import ROW
from keel.errors import InvalidArgument


def _types():
    from pyspark.sql.pandas import types as pandas_types
    return pandas_types


def session(spark=None):
    """The Spark session to use: ``spark``, else the active one."""
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession
    active = SparkSession.getActiveSession()
    if active is None:
        raise InvalidArgument("no active Spark session: pass spark=SparkSession.builder...getOrCreate()")
    return active


def is_dataframe(data: Any) -> bool:
    """A Spark DataFrame (classic or Connect), told without importing pyspark."""
    return type(data).__module__.startswith("pyspark.sql") and type(data).__name__ == "DataFrame"


def _batches(table: pa.Table, rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    yield from table.to_batches(max_chunksize=rows)


def _concat(batches: Iterator[pa.RecordBatch]) -> pa.Table | None:
    held = list(batches)
    return pa.Table.from_batches(held) if held else None


def _arrow_schema(df) -> pa.Schema:
    return _types().to_arrow_schema(df.schema, timezone="UTC")  # zone: metadata only, the instants are UTC


def _rethrowing(action):
    """Runs a Spark action; a Keel error raised in an executor comes back as the same Keel error (a
    quality gate's DataQualityError as the InvalidArgument it is)."""
    from keel import errors
    try:
        return action()
    except Exception as exc:
        import re
        found = re.findall(r"keel\.[\w.]*?\.?(\w+): (.*)", str(exc))
        for name, message in reversed(found):
            kind = getattr(errors, name, None)
            if name == "DataQualityError":
                kind = errors.InvalidArgument
            if isinstance(kind, type) and issubclass(kind, errors.KeelError):
                raise kind(message.strip()) from exc
        raise


# ---- training sets ---------------------------------------------------------------------------------


def training_set(store, labels, features: list[str], timestamp_column: str, *, record: bool = True, spark=None,
                 partitions: int | None = None):
    """Point-in-time join of a Spark DataFrame of labels (or a path of Parquet) on the executors."""
    from pyspark.sql import functions as F
    from keel.engines import TrainingSetResult
    if isinstance(labels, str) or hasattr(labels, "__fspath__"):
        labels = session(spark).read.parquet(str(labels))
    if not is_dataframe(labels):
        raise InvalidArgument(f"engine='spark' takes labels as a Spark DataFrame or a Parquet path, not "
                              f"{type(labels).__name__}")
    schema = _arrow_schema(labels)
    p = _plan.plan(store, features, timestamp_column, schema, spark_types=True)
    df = labels.withColumn(ROW, F.monotonically_increasing_id())
    spark = labels.sparkSession
    n = partitions or max(spark.sparkContext.defaultParallelism, labels.rdd.getNumPartitions())

    recorded = None
    if record:
        where, ts = p.jobs[0].where, timestamp_column
        names = labels.columns

        def write_parts(batches):
            table = _concat(batches)
            if table is None:
                return
            first = table.column(ROW)[0].as_py()
            part = _partition.write_labels(where, table.select(names), ts)
            yield pa.RecordBatch.from_pylist([{"first": first, **part}], schema=_PART_SCHEMA)

        rows = _rethrowing(lambda: df.mapInArrow(write_parts, _types().from_arrow_schema(_PART_SCHEMA)).collect())
        parts = sorted((r.asDict() for r in rows), key=lambda r: r["first"])
        recorded = _plan.record(store, p, parts)

    fields = {f.name: f for f in _plan.feature_types(store, p, spark_types=True)}
    for job, keys in zip(p.jobs, p.keys):
        out_schema = pa.schema(list(_arrow_schema(df)) + [fields[name] for name in job.names])

        def run(batches, job=job, out_schema=out_schema):
            table = _concat(batches)
            if table is None:
                return
            yield from _batches(_partition.join(job, table).cast(out_schema))

        # Co-partitioned by entity key: each task holds a range of keys, so it reads only its own
        # slice of every (key-sorted) segment.
        df = df.repartitionByRange(n, *keys).mapInArrow(run, _types().from_arrow_schema(out_schema))
    result = df.orderBy(ROW).drop(ROW).select(*labels.columns, *p.output)
    return TrainingSetResult(result, recorded, p.record, engine="spark", rethrow=_rethrowing)


_PART_SCHEMA = pa.schema([("first", pa.int64()), ("digest", pa.string()), ("rows", pa.int64()),
                          ("min_ts", pa.int64()), ("max_ts", pa.int64())])


# ---- views: read and ingest ------------------------------------------------------------------------


def read_view(fv, spark, start_ms: int | None = None, end_ms: int | None = None, partitions: int | None = None):
    """``fv.to_spark(spark)``: the view's rows read on the executors, a key range per task, in the order
    ``fv.to_pandas()`` gives them."""
    spark = session(spark)
    native = fv._store.native
    cutoff = int(native.snapshot([f"{fv.name}:{next(iter(fv.schema))}"]).segment_cutoffs[fv.name])
    n = partitions or max(2, spark.sparkContext.defaultParallelism * 2)
    job = _partition.ReadJob(where=_plan.where(fv._store.workspace), view=fv.name, version=fv.version,
                             cutoff=cutoff, bounds=list(native.key_splits(fv.name, fv.version, cutoff, n)),
                             start_ms=start_ms, end_ms=end_ms, spark_types=True)
    schema = _partition.empty_read(job).schema

    def run(batches):
        for batch in batches:
            for index in batch.column(0).to_pylist():
                yield from _batches(_partition.read_range(job, index).cast(schema))

    ids = spark.range(0, job.ranges, 1, numPartitions=job.ranges)
    return ids.mapInArrow(run, _types().from_arrow_schema(schema))


def ingest(fv, df, transform=None) -> dict:
    """``fv.ingest(spark_df)``: each partition ingested by its executor as its own segment, after
    ``transform`` (pandas frame -> Arrow table, e.g. a prediction table's shaping) when given."""
    where, view = _plan.where(fv._store.workspace), fv.name

    def run(batches):
        table = _concat(batches)
        if table is not None:
            if transform is not None:
                table = transform(table.to_pandas())
            yield pa.RecordBatch.from_pylist([_partition.ingest(where, view, table)], schema=_INGEST_SCHEMA)

    rows = _rethrowing(lambda: df.mapInArrow(run, _types().from_arrow_schema(_INGEST_SCHEMA)).collect())
    segments = sorted(r["segment"] for r in rows if r["rows"])
    return {"view": fv.name, "version": fv.version, "rows": sum(r["rows"] for r in rows), "segments": segments}


_INGEST_SCHEMA = pa.schema([("rows", pa.int64()), ("segment", pa.int64())])


# ---- prediction tables -----------------------------------------------------------------------------


def prediction_items(df, name: str, keys: list[str]) -> int:
    """The longest ``items`` list of a frame of predictions, counted by the executors, which check every
    item id first (a bad one fails the write before any partition is ingested). Spark computes the
    ``items`` column for this pass and again for the write: persist() a frame that is costly to compute."""
    from pyspark.sql import types as T
    from keel.predictions import _item_lists
    kind = df.schema["items"].dataType
    if not isinstance(kind, T.ArrayType) or not isinstance(kind.elementType, T.NumericType):
        raise InvalidArgument(f"prediction table '{name}': the 'items' column must hold arrays of item ids "
                              f"(integers), got {kind.simpleString()}")

    def longest(batches):
        for batch in batches:
            lists = _item_lists(batch.to_pandas(), keys, name)
            yield pa.RecordBatch.from_pydict({"longest": [max((len(v) for v in lists), default=0)]},
                                             schema=_LONGEST_SCHEMA)

    rows = _rethrowing(lambda: df.select(*keys, "items").mapInArrow(
        longest, _types().from_arrow_schema(_LONGEST_SCHEMA)).collect())
    return max((int(r["longest"]) for r in rows), default=0)


_LONGEST_SCHEMA = pa.schema([("longest", pa.int64())])


def check_prediction_column(df, name: str) -> None:
    """A ``prediction`` column of arrays, maps or structs (e.g. ``result="proba"``) is refused up front;
    numbers (and numeric strings, as in pandas) are converted in the executors."""
    from pyspark.sql import types as T
    kind = df.schema["prediction"].dataType
    if not isinstance(kind, (T.NumericType, T.StringType)):
        raise InvalidArgument(f"prediction table '{name}': the 'prediction' column must hold numbers (a score "
                              f"per entity), got {kind.simpleString()}")


# ---- batch scoring ---------------------------------------------------------------------------------


def _result_type(predictor, result: str):
    """The Spark type of a prediction: doubles, a classifier's labels, or arrays of probabilities."""
    from pyspark.sql import types as T
    if result == "proba":
        return T.ArrayType(T.DoubleType(), containsNull=False)
    if result != "predict":
        raise InvalidArgument(f"result={result!r}: use 'predict' or 'proba'")
    if predictor.task == "classification":
        kind = predictor.classes_.dtype.kind
        return {"i": T.LongType(), "u": T.LongType(), "f": T.DoubleType(), "b": T.BooleanType()}.get(kind,
                                                                                                    T.StringType())
    width = predictor.native.num_outputs
    return T.DoubleType() if width == 1 else T.ArrayType(T.DoubleType(), containsNull=False)


def udf(predictor, result: str = "predict"):
    """``predictor.spark_udf(spark)``: an Arrow UDF scoring with the native predictor in the executors.

    Call it with the model's input columns in signature order (``udf(*cols)``, like MLflow's
    spark_udf), or with one struct column whose fields are named as the signature
    (``udf(F.struct(*cols))``)."""
    from pyspark.sql.functions import ArrowUDFType, arrow_udf
    names = list(predictor.feature_names)
    kind = result
    return_type = _result_type(predictor, kind)

    def predict(*arrays: pa.Array) -> pa.Array:
        if len(arrays) == 1 and pa.types.is_struct(arrays[0].type):
            struct = arrays[0]
            table = pa.Table.from_arrays(struct.flatten(), names=[f.name for f in struct.type])
        else:
            if len(arrays) != len(names):
                raise InvalidArgument(f"the UDF got {len(arrays)} columns, the model reads {len(names)} "
                                      f"({names}): pass them in this order, or one struct of named fields")
            table = pa.Table.from_arrays(list(arrays), names=names)
        return _partition.score(predictor, table, kind)

    return arrow_udf(predict, return_type, ArrowUDFType.SCALAR)

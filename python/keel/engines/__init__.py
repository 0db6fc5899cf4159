"""Keel on Spark and Dask: training sets, offline reads, ingest and batch scoring run inside the
engine's executors, on Arrow batches, by Keel's native code (the point-in-time join, the segment
reader, the predictor). Keel builds no cluster of its own.

    train = ws.features.training_set(labels_sdf, features=[...], engine="spark")   # or engine="dask"
    fv.to_spark(spark); fv.to_dask(); fv.ingest(spark_df)
    df.withColumn("score", predictor.spark_udf(spark)(*cols)); keel.engines.dask.predict(predictor, ddf)

The driver reads one snapshot of the feature store (view versions and segment cutoffs, key
boundaries) and ships it with the workspace's path; every partition opens the workspace by that
path (keel.engines._partition) and works against the snapshot, so the result is the local engine's,
row for row, whatever is ingested while the job runs. pyspark and dask are imported only here, on
first use: ``import keel`` imports neither.
"""

from __future__ import annotations

ENGINES = ("local", "spark", "dask")


class TrainingSetResult:
    """A training set built by Spark or Dask: ``.to_spark()`` / ``.to_dask()`` is the engine's frame
    (the label columns then one column per feature, in label order), ``.record`` the recorded set
    (None with ``record=False``), rebuilt locally by ``ws.features.training_set(id=...)``."""

    def __init__(self, frame, record, snapshot, *, engine: str, rethrow=None):
        self._frame = frame
        self.record = record
        self.snapshot = snapshot
        self.engine = engine
        self._rethrow = rethrow or (lambda action: action())

    @property
    def id(self) -> str | None:
        return self.record.id if self.record is not None else None

    @property
    def lineage_ref(self) -> str | None:
        """``training_set:<id>`` (for ``run.log_input``); None when not recorded."""
        return f"training_set:{self.id}" if self.record is not None else None

    @property
    def features(self) -> list[str]:
        return list(self.snapshot.features)

    @property
    def view_versions(self) -> dict[str, int]:
        return dict(self.snapshot.view_versions)

    def to_spark(self):
        if self.engine != "spark":
            raise TypeError(f"this training set was built on {self.engine}: use to_{self.engine}()")
        return self._frame

    def to_dask(self):
        if self.engine != "dask":
            raise TypeError(f"this training set was built on {self.engine}: use to_{self.engine}()")
        return self._frame

    def to_pandas(self):
        """Collected on the driver (small sets, tests): in label order."""
        frame = self._frame
        df = self._rethrow(frame.toPandas if self.engine == "spark" else frame.compute)
        if self.id:
            df.attrs["keel.training_set"] = self.id
        return df

    def __repr__(self) -> str:
        what = self.id or "not recorded"
        return f"<keel.TrainingSet {what} on {self.engine}: {len(self.features)} features>"

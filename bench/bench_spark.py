"""Keel on Spark benchmark: training sets and batch scoring on Spark local[n], against Spark peers.

1. Point-in-time training set, labels x feature rows (5 float features), each result written to
   Spark's `noop` sink (every row computed, nothing collected):
   Keel on Spark (`training_set(..., engine="spark")`), a hand-written Spark SQL point-in-time join
   (labels and feature rows unioned, `last(..., ignorenulls)` over a window per entity ordered by
   time: the usual window-function form), Feast's Spark offline store (`get_historical_features`
   on a SparkSource of the same Parquet), and Keel's local engine (to a pandas frame) for reference.
2. Batch scoring, the same scikit-learn model: `predictor.spark_udf` against MLflow's
   `mlflow.pyfunc.spark_udf`.
3. Scaling: Keel on Spark and the SQL join on local[1] and local[2].

Outputs are checked equal to the local engine's (Keel on Spark, the SQL join on a sample).
Sizes: 10M feature rows (100k entities) x 1M labels and 2M rows scored by default (what `make bench`
runs); `--rows N` (labels N/10 unless `--labels`, `--score`) or QUICK=1 (200k x 20k) for quick runs.
`--repeat K --no-peers` times Keel on Spark and the SQL join K times on local[1] and local[2] (medians),
without Feast and scoring: the 1-vs-2-executor comparison on its own.
Run: bench/run.sh spark (peers from bench/requirements-spark.txt, in bench/.work/venv-spark), or
bench/.work/venv-spark/bin/python bench/bench_spark.py --rows 1000000 once that venv exists.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import keel

QUICK = os.environ.get("QUICK") == "1"
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors run this venv: the peers are in it
N_ROWS = int(os.environ.get("SPARK_BENCH_ROWS", 200_000 if QUICK else 10_000_000))
N_LABELS = int(os.environ.get("SPARK_BENCH_LABELS", max(N_ROWS // 10, 1000)))
N_ENTITIES = max(N_ROWS // 100, 100)
N_SCORE = int(os.environ.get("SPARK_BENCH_SCORE", 100_000 if QUICK else 2_000_000))
FEATS = [f"f{i}" for i in range(5)]
REPEAT = 1    # --repeat
PEERS = True  # --no-peers turns off Feast and scoring
T0 = pd.Timestamp("2026-01-01", tz="UTC")


class Results(list):
    def append(self, row):  # printed as measured: a later failure keeps what was measured
        print(f"  {row[0]} | {row[1]} | {row[2]:.2f} s", flush=True)
        super().append(row)


results = Results()


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def timed_median(fn, label: str):
    """timed(fn) REPEAT times: the median time and the last output (each time printed when > 1)."""
    times, out = [], None
    for _ in range(REPEAT):
        t, out = timed(fn)
        times.append(t)
    if REPEAT > 1:
        print(f"    {label}: " + ", ".join(f"{t:.2f}" for t in times) + " s", flush=True)
    return float(np.median(times)), out


def spark_session(cores: int):
    from pyspark.sql import SparkSession
    return (SparkSession.builder.master(f"local[{cores}]").appName(f"keel-bench-{cores}")
            .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g")
            .config("spark.sql.shuffle.partitions", str(4 * cores)).config("spark.sql.session.timeZone", "UTC")
            .getOrCreate())


def make_data(root: str):
    rng = np.random.default_rng(0)
    ent = rng.integers(0, N_ENTITIES, N_ROWS)
    secs = rng.integers(0, 90 * 86400, N_ROWS)
    key = ent * (90 * 86400) + secs  # unique (entity, event time): every engine sees one candidate
    _, first = np.unique(key, return_index=True)
    first.sort()
    features = pd.DataFrame({"player_id": ent[first],
                             "event_timestamp": T0 + pd.to_timedelta(secs[first], unit="s"),
                             **{f: rng.random(len(first)) for f in FEATS}})
    features["created_timestamp"] = T0
    labels = pd.DataFrame({"player_id": rng.integers(0, N_ENTITIES, N_LABELS),
                           "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 100 * 86400, N_LABELS), unit="s"),
                           "label": rng.integers(0, 2, N_LABELS)})
    features.to_parquet(f"{root}/features.parquet", coerce_timestamps="us")  # Spark reads no nanoseconds
    labels.to_parquet(f"{root}/labels.parquet", coerce_timestamps="us")
    ws = keel.open(f"{root}/ws.keel")
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("player_stats", entities=["player"], schema=dict.fromkeys(FEATS, "float64"))
    fv.ingest(features)
    return ws, features, labels


def keel_spark(ws, spark, root):
    labels = spark.read.parquet(f"{root}/labels.parquet")
    ts = ws.features.training_set(labels, features=[f"player_stats:{f}" for f in FEATS], engine="spark",
                                  record=False)
    ts.to_spark().write.format("noop").mode("overwrite").save()
    return ts.to_spark()


def sql_join(spark, root):
    """The hand-written point-in-time join: union, then last non-null per entity up to each label."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    labels = (spark.read.parquet(f"{root}/labels.parquet").withColumn("row", F.monotonically_increasing_id()))
    feats = spark.read.parquet(f"{root}/features.parquet").drop("created_timestamp")
    empty = F.lit(None).cast(f"struct<event_timestamp:timestamp,{','.join(f + ' double' for f in FEATS)}>")
    both = (feats.select("player_id", "event_timestamp", F.lit(None).cast("long").alias("row"),
                         F.lit(None).cast("long").alias("label"), F.lit(0).alias("side"),
                         F.struct("event_timestamp", *FEATS).alias("v"))
            .unionByName(labels.select("player_id", "event_timestamp", "row", "label", F.lit(1).alias("side"),
                                       empty.alias("v"))))
    w = (Window.partitionBy("player_id").orderBy("event_timestamp", "side")
         .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    out = (both.withColumn("last", F.last("v", ignorenulls=True).over(w)).where(F.col("side") == 1)
           .select("row", "player_id", "event_timestamp", "label", *[F.col(f"last.{f}").alias(f) for f in FEATS]))
    out.write.format("noop").mode("overwrite").save()
    return out


def feast_join(root, spark):
    from feast import Entity, FeatureStore, FeatureView, Field, RepoConfig
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkOfflineStoreConfig
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.types import Float64
    from feast.value_type import ValueType
    repo = f"{root}/feast"
    os.makedirs(repo, exist_ok=True)
    spark_conf = {"spark.master": spark.conf.get("spark.master"), "spark.ui.enabled": "false"}
    config = RepoConfig(project="bench", registry=f"{repo}/registry.db", provider="local",
                        offline_store=SparkOfflineStoreConfig(spark_conf=spark_conf),
                        online_store={"type": "sqlite", "path": f"{repo}/online.db"},
                        entity_key_serialization_version=3)
    store = FeatureStore(config=config)
    player = Entity(name="player", join_keys=["player_id"], value_type=ValueType.INT64)
    source = SparkSource(name="stats", path=f"{root}/features.parquet", file_format="parquet",
                         timestamp_field="event_timestamp", created_timestamp_column="created_timestamp")
    view = FeatureView(name="player_stats", entities=[player], ttl=None, source=source,
                       schema=[Field(name=f, dtype=Float64) for f in FEATS])
    store.apply([player, view])
    entity_df = pd.read_parquet(f"{root}/labels.parquet")

    def run():
        job = store.get_historical_features(entity_df=entity_df, features=[f"player_stats:{f}" for f in FEATS])
        job.to_spark_df().write.format("noop").mode("overwrite").save()
    return run


def scoring(ws, spark, root):
    from pyspark.sql import functions as F
    from sklearn.ensemble import GradientBoostingClassifier
    rng = np.random.default_rng(1)
    X = pd.DataFrame({f: rng.random(20_000) for f in FEATS})
    y = (X.f0 + X.f1 * 0.5 + rng.normal(size=len(X)) * 0.1 > 0.8).astype(int)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3).fit(X, y)
    with ws.start_run(experiment="bench") as run:
        run.log_model(model, name="bench_gbm")
    predictor = ws.models.load("bench_gbm/1")
    rows = spark.range(N_SCORE).select(*[F.rand(seed=i).alias(f) for i, f in enumerate(FEATS)]).cache()
    rows.count()
    udf = predictor.spark_udf(spark)
    t_keel, _ = timed(lambda: rows.withColumn("p", udf(*FEATS)).write.format("noop").mode("overwrite").save())
    sample = rows.limit(2000).toPandas()
    got = rows.limit(2000).withColumn("p", udf(*FEATS)).toPandas()["p"].to_numpy()
    assert (got == model.predict(sample[FEATS])).all(), "Keel's UDF differs from scikit-learn"
    try:
        import mlflow
        import mlflow.sklearn
    except ImportError as e:
        results.append(("score with MLflow spark_udf", "unavailable", float("nan")))
        print("MLflow:", e)
        results.append((f"score {N_SCORE:,} rows, GBM 100 trees", "Keel spark_udf", t_keel))
        return
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    # Artifacts in the work folder too (MLflow's default is ./mlruns under the current directory).
    experiment = mlflow.create_experiment("bench", artifact_location=f"{root}/mlartifacts")
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(2),
                                        skops_trusted_types=["sklearn.tree._tree.Tree"])  # our own model
    mudf = mlflow.pyfunc.spark_udf(spark, info.model_uri, result_type="double", env_manager="local")
    t_ml, _ = timed(lambda: rows.withColumn("p", mudf(*FEATS)).write.format("noop").mode("overwrite").save())
    results.append((f"score {N_SCORE:,} rows, GBM 100 trees", "Keel spark_udf", t_keel))
    results.append((f"score {N_SCORE:,} rows, GBM 100 trees", "MLflow spark_udf", t_ml))


def parse_sizes() -> None:
    """--rows / --labels / --score override the defaults above (and SPARK_BENCH_* in the environment)."""
    import argparse
    global N_ROWS, N_LABELS, N_ENTITIES, N_SCORE, REPEAT, PEERS
    ap = argparse.ArgumentParser(description="Keel on Spark against Spark peers")
    ap.add_argument("--rows", type=int, help=f"feature rows (default {N_ROWS:,})")
    ap.add_argument("--labels", type=int, help="label rows (default: rows / 10)")
    ap.add_argument("--score", type=int, help=f"rows scored (default {N_SCORE:,})")
    ap.add_argument("--repeat", type=int, default=1, help="time Keel on Spark and the SQL join this many times "
                    "each (the median is reported)")
    ap.add_argument("--no-peers", action="store_true", help="skip Feast and the scoring comparison (for a "
                    "1-vs-2-executor run)")
    args = ap.parse_args()
    REPEAT = max(args.repeat, 1)
    PEERS = not args.no_peers
    if args.rows:
        N_ROWS = args.rows
        N_LABELS = max(N_ROWS // 10, 1000)
        N_ENTITIES = max(N_ROWS // 100, 100)
    if args.labels:
        N_LABELS = args.labels
    if args.score:
        N_SCORE = args.score


def growth(what: str) -> None:
    """How each engine's time changed from local[1] to local[2] (same data, same run)."""
    times = {who: t for w, who, t in results if w == what}
    for engine in ("Keel on Spark", "Spark SQL window join"):
        one, two = times.get(f"{engine} local[1]"), times.get(f"{engine} local[2]")
        if one and two:
            change = f"{one / two:.2f}x less time" if two <= one else f"{two / one:.2f}x more time"
            print(f"  {engine}: local[1] {one:.2f} s -> local[2] {two:.2f} s ({change})")


def main():
    parse_sizes()
    root = tempfile.mkdtemp(prefix="keel-bench-spark-")
    try:
        print(f"load average before: {os.getloadavg()}; {N_ROWS:,} feature rows, {N_ENTITIES:,} entities, "
              f"{N_LABELS:,} labels")
        t, (ws, _features, labels) = timed(lambda: make_data(root))
        print(f"data made and ingested in {t:.1f} s")
        features = [f"player_stats:{f}" for f in FEATS]
        t_local, local = timed(lambda: ws.features.training_set(labels, features=features).to_pandas())
        what = f"training set {N_LABELS:,} labels x {N_ROWS:,} rows"
        results.append((what, "Keel local engine (to pandas)", t_local))
        for cores in (1, 2):
            spark = spark_session(cores)
            keel_spark(ws, spark, root)  # warm: Python workers started, workspace opened
            t, out = timed_median(lambda spark=spark: keel_spark(ws, spark, root), f"Keel on Spark local[{cores}]")
            results.append((what, f"Keel on Spark local[{cores}]", t))
            if cores == 2:
                got = out.toPandas()
                assert (got["label"].to_numpy() == local["label"].to_numpy()).all()
                for f in FEATS:
                    np.testing.assert_array_equal(got[f].to_numpy(), local[f].to_numpy())
            t, out = timed_median(lambda spark=spark: sql_join(spark, root), f"SQL window join local[{cores}]")
            results.append((what, f"Spark SQL window join local[{cores}]", t))
            if cores == 2:
                check = out.orderBy("row").limit(1000).toPandas()
                for f in FEATS:
                    np.testing.assert_array_equal(check[f].to_numpy(), local[f].to_numpy()[:1000])
            if cores == 2 and PEERS:
                try:
                    run = feast_join(root, spark)
                    t, _ = timed(run)
                    results.append((what, "Feast Spark offline store local[2]", t))
                except Exception as e:  # noqa: BLE001  a missing or failing peer is reported, not hidden
                    results.append((what, f"Feast Spark offline store: failed ({type(e).__name__})", float("nan")))
                    print("Feast:", repr(e)[:500])
                scoring(ws, spark, root)
            spark.stop()
        print(f"load average after: {os.getloadavg()}")
        growth(what)
        print("| measurement | engine | time (s) |\n| --- | --- | ---: |")
        for what, who, t in results:
            print(f"| {what} | {who} | {t:.2f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

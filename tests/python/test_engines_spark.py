"""Keel on Spark (local[2], one session for the module): training sets, view reads, ingest and the
scoring UDF equal the local engine's results row for row, and fail with the local engine's errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import keel
from engines_data import FEATURES, T0, labels, make_workspace, same, scoring_workspace, table_rows, top_items

@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession
    session = (SparkSession.builder.master("local[2]").appName("keel-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("spark") / "ws.keel")


def test_training_set_in_label_order_with_lineage(spark, ws):
    frame = labels(1500)
    local = ws.features.training_set(frame, features=FEATURES)
    sdf = spark.createDataFrame(frame)
    assert sdf.rdd.getNumPartitions() > 1
    built = ws.features.training_set(sdf, features=FEATURES, engine="spark")
    out = built.to_pandas()
    same(out, local.to_pandas())
    # Labels matching nothing, TTL expiry and ties on event time all occur in this data.
    assert out["games"].isna().any() and out["country"].notna().any()
    # Recorded as the local engine records: the same snapshot, lineage, rebuilt locally by id.
    assert built.record.view_versions == local.record.view_versions
    assert built.record.segment_cutoffs == local.record.segment_cutoffs
    assert built.record.label_rows == len(frame)
    assert built.record.min_ts_ms == local.record.min_ts_ms and built.record.max_ts_ms == local.record.max_ts_ms
    same(ws.features.training_set(id=built.id).to_pandas(), local.to_pandas())
    assert built.lineage_ref in ws.lineage.downstream("feature_view:activity").to_pandas().to_string()


def test_training_set_from_parquet_path_and_spec(spark, ws, tmp_path):
    frame = labels(300)
    path = str(tmp_path / "labels.parquet")
    frame.to_parquet(path)
    ws.features.training_spec("churn", FEATURES[:3])
    local = ws.features.training_set(frame, spec="churn").to_pandas()
    built = ws.features.training_set(path, spec="churn", engine="spark", spark=spark, record=False)
    assert built.record is None and built.id is None
    same(built.to_pandas(), local)


def test_snapshot_is_read_once(spark, ws):
    """Rows ingested after the driver planned the job are not read by its partitions."""
    frame = labels(200)
    before = ws.features.training_set(frame, features=["plays:games"]).to_pandas()
    built = ws.features.training_set(spark.createDataFrame(frame), features=["plays:games"], engine="spark",
                                     record=False)
    plays = ws.features.view("plays")
    plays.ingest(frame[["player_id", "game_id", "event_timestamp"]].assign(
        games=np.int32(99), last_win=T0))
    out = built.to_pandas()
    same(out, before)
    assert not (out["games"] == 99).any()


def test_to_spark_equals_to_pandas(spark, ws):
    for name in ("activity", "profile", "plays"):
        fv = ws.features.view(name)
        same(fv.to_spark(spark).toPandas(), fv.to_pandas())
    fv = ws.features.view("activity")
    start, end = T0 + pd.Timedelta(days=10), T0 + pd.Timedelta(days=20)
    same(fv.to_spark(spark, start=start, end=end).toPandas(), fv.to_pandas(start=start, end=end))


def test_ingest_from_spark_then_read_locally(spark, tmp_path):
    ws = keel.open(tmp_path / "ws.keel")
    ws.features.entity("player", join_keys=["player_id"])
    schema = {"spend": "float64", "tier": "string"}
    spark_view = ws.features.feature_view("from_spark", entities=["player"], schema=schema)
    local_view = ws.features.feature_view("from_pandas", entities=["player"], schema=schema)
    rng = np.random.default_rng(3)
    # One row per player and day: which partition a row lands in cannot decide a winner.
    data = pd.DataFrame({"player_id": np.arange(400) % 50, "spend": rng.random(400),
                         "tier": rng.choice(["a", "b"], 400),
                         "event_timestamp": T0 + pd.to_timedelta(np.arange(400) // 50, unit="D"),
                         "created_timestamp": T0})
    result = spark_view.ingest(spark.createDataFrame(data).repartition(3))
    assert result["rows"] == 400 and len(result["segments"]) == 3
    local_view.ingest(data)
    same(spark_view.to_pandas(), local_view.to_pandas())


def test_ingest_runs_quality_rules_on_every_partition(spark, tmp_path):
    ws = keel.open(tmp_path / "ws.keel")
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("spend", entities=["player"], schema={"spend": "float64"})
    fv.add_rule("plugins/quality/range.lua", column="spend", min=0, severity="error")
    bad = pd.DataFrame({"player_id": [1, 2], "spend": [1.0, -5.0], "event_timestamp": [T0, T0]})
    with pytest.raises(keel.InvalidArgument, match="spend"):
        fv.ingest(spark.createDataFrame(bad).coalesce(1))
    assert len(fv.to_pandas()) == 0


def _errors(call):
    with pytest.raises(keel.KeelError) as info:
        call()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("case", ["missing view", "missing column", "no key", "no timestamp", "naive time"])
def test_failures_give_the_local_errors(spark, ws, case):
    frame = labels(20)
    features = FEATURES
    sdf = spark.createDataFrame(frame)
    if case == "missing view":
        features = ["nope:x"]
    elif case == "missing column":
        features = ["activity:nope"]
    elif case == "no key":
        frame, sdf = frame.drop(columns="player_id"), sdf.drop("player_id")
    elif case == "no timestamp":
        frame, sdf = frame.drop(columns="event_timestamp"), sdf.drop("event_timestamp")
    else:
        from pyspark.sql import functions as F
        frame = frame.assign(event_timestamp=frame.event_timestamp.dt.tz_localize(None))
        sdf = sdf.withColumn("event_timestamp", F.col("event_timestamp").cast("timestamp_ntz"))
    local = _errors(lambda: ws.features.training_set(frame, features=features))
    engine = _errors(lambda: ws.features.training_set(sdf, features=features, engine="spark"))
    assert engine == local


def _model(ws, tmp_path):
    from sklearn.ensemble import GradientBoostingClassifier
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"sessions": rng.integers(0, 30, 600).astype(float), "spend": rng.random(600) * 50})
    y = (X.sessions + rng.normal(size=600) * 5 > 15).astype(int)
    with ws.start_run(experiment="churn") as run:
        run.log_model(GradientBoostingClassifier(n_estimators=20).fit(X, y), name="churn")
    ws.models.set_alias("churn", "champion", version=1)
    return X


def test_spark_udf_equals_predict(spark, tmp_path):
    from pyspark.sql import functions as F
    ws = keel.open(tmp_path / "ws.keel")
    X = _model(ws, tmp_path)
    predictor = ws.models.load("churn@champion")
    sdf = spark.createDataFrame(X.assign(row=np.arange(len(X)))).repartition(3)
    udf = predictor.spark_udf(spark)
    proba = predictor.spark_udf(spark, result="proba")
    out = (sdf.withColumn("label", udf("sessions", "spend"))
              .withColumn("by_name", udf(F.struct("spend", "sessions")))
              .withColumn("proba", proba("sessions", "spend")).toPandas().sort_values("row"))
    assert out["label"].tolist() == predictor.predict(X).tolist()
    assert out["by_name"].tolist() == out["label"].tolist()
    np.testing.assert_array_equal(np.stack(out["proba"].to_numpy()), predictor.predict_proba(X))


def test_models_load_on_executors(spark, tmp_path):
    ws = keel.open(tmp_path / "ws.keel")
    X = _model(ws, tmp_path)
    path = ws.path

    def score(batches):
        predictor = keel.open(path).models.load("churn@champion")  # in the executor
        for batch in batches:
            yield pa.RecordBatch.from_arrays([pa.array(predictor.predict(pa.Table.from_batches([batch])))],
                                             names=["label"])

    out = spark.createDataFrame(X).coalesce(1).mapInArrow(score, "label long").toPandas()
    assert out["label"].tolist() == ws.models.load("churn@champion").predict(X).tolist()


def test_a_batch_job_writes_its_scores_to_a_prediction_table_served_from_redis(spark, tmp_path, redis_server):
    """spark_udf output straight into a prediction table: ingested by the executors, a segment per
    partition, the same table the pandas path writes, served by an endpoint from Redis."""
    ws, players = scoring_workspace(tmp_path / "ws.keel")
    predictor = ws.models.load("churn@champion")
    udf = predictor.spark_udf(spark)
    df = spark.createDataFrame(players).repartition(3)
    table = ws.predictions.write("churn_scores", "churn@champion",
                                 df.withColumn("prediction", udf("sessions", "spend")), online=redis_server.url)
    assert (table.rows, table.score, table.items) == (300, True, 0)
    info = {i.spec.name: i for i in ws.features.list()}["churn_scores.v1"]
    assert info.segments == 3 and info.online == redis_server.url  # a segment per partition: nothing collected

    local = players.assign(prediction=predictor.predict(players[["sessions", "spend"]]))
    ws.predictions.write("churn_scores_local", "churn/1", local)
    same(table_rows(ws, "churn_scores"), table_rows(ws, "churn_scores_local"))
    ep = ws.endpoint("churn", model="predictions:churn_scores@champion")
    got = ep.predict({"player_id": 42})
    assert got["model"] == "churn/1" and got["prediction"] == pytest.approx(local.prediction[42])


def test_top_k_items_from_spark_equal_the_pandas_path(spark, tmp_path):
    from pyspark.sql import types as T
    ws, players = scoring_workspace(tmp_path / "ws.keel")
    frame = players[["player_id", "event_timestamp"]].assign(items=top_items(players))
    schema = T.StructType([T.StructField("player_id", T.LongType()),
                           T.StructField("event_timestamp", T.TimestampType()),
                           T.StructField("items", T.ArrayType(T.LongType()))])
    table = ws.predictions.write("player_recs", "churn/1", spark.createDataFrame(frame, schema).repartition(2))
    local = ws.predictions.write("player_recs_local", "churn/1", frame)
    assert (table.rows, table.items, table.score) == (local.rows, local.items, local.score) == (300, 3, False)
    same(table_rows(ws, "player_recs"), table_rows(ws, "player_recs_local"))
    ep = ws.endpoint("recs", model="predictions:player_recs/1")
    assert ep.predict({"player_id": 7})["items"] == [70, 71, 72]
    assert ep.predict({"player_id": 5})["items"] == [50]


@pytest.mark.parametrize("case", ["no key", "no prediction", "bad item", "empty items"])
def test_prediction_table_failures_give_the_pandas_errors(spark, tmp_path, case):
    ws, players = scoring_workspace(tmp_path / "ws.keel")
    frame = players[["player_id"]].assign(prediction=0.5, items=[[1, 2]] * len(players))
    if case == "no key":
        frame = frame.drop(columns="player_id")
    elif case == "no prediction":
        frame = frame.drop(columns=["prediction", "items"])
    elif case == "bad item":
        frame["items"] = [[1.0, 2.5 if p == 17 else 2.0] for p in players["player_id"]]
    else:
        frame["items"] = [[] for _ in players["player_id"]]
    sdf = spark.createDataFrame(frame).repartition(2) if case != "empty items" else spark.createDataFrame(
        frame, "player_id long, prediction double, items array<long>")
    local = _errors(lambda: ws.predictions.write("t", "churn/1", frame))
    engine = _errors(lambda: ws.predictions.write("t", "churn/1", sdf))
    assert engine == local and local[0] is keel.InvalidArgument
    assert ws.predictions.names() == []  # nothing recorded, nothing ingested (items are checked first)
    assert [i.spec.name for i in ws.features.list()] == []


def test_a_prediction_column_of_arrays_is_refused_before_any_job(spark, tmp_path):
    from sklearn.linear_model import LogisticRegression
    ws, players = scoring_workspace(tmp_path / "ws.keel")
    X = players[["sessions", "spend"]]
    ws.models.log_model(None, LogisticRegression().fit(X, (X.sessions > 15).astype(int)), "churn_class")
    proba = ws.models.load("churn_class/1").spark_udf(spark, result="proba")
    df = spark.createDataFrame(players).withColumn("prediction", proba("sessions", "spend"))
    with pytest.raises(keel.InvalidArgument, match=r"'prediction' column must hold numbers .* array<double>"):
        ws.predictions.write("churn_proba", "churn_class/1", df)
    assert ws.predictions.names() == []

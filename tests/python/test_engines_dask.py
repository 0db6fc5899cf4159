"""Keel on Dask (the local threaded scheduler): training sets, view reads, ingest and scoring equal the
local engine's results row for row, and fail with the local engine's errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import dask
import dask.dataframe as dd  # make deps installs dask[dataframe]
import pytest

import keel
from engines_data import FEATURES, T0, labels, make_workspace, same, scoring_workspace, table_rows, top_items

@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("dask") / "ws.keel")


def test_training_set_equals_local_row_for_row(ws):
    frame = labels(1500)
    local = ws.features.training_set(frame, features=FEATURES)
    built = ws.features.training_set(dd.from_pandas(frame, npartitions=4), features=FEATURES, engine="dask")
    out = built.to_pandas()
    same(out, local.to_pandas())
    assert out.index.tolist() == frame.index.tolist()  # the labels' own index, in their order
    assert out["games"].isna().any() and out["sessions"].notna().any()
    assert built.record.segment_cutoffs == local.record.segment_cutoffs
    assert built.record.label_rows == len(frame)
    same(ws.features.training_set(id=built.id).to_pandas(), local.to_pandas())


def test_training_set_single_view_without_record(ws):
    frame = labels(400)
    local = ws.features.training_set(frame, features=["plays:games", "plays:last_win"]).to_pandas()
    built = ws.features.training_set(dd.from_pandas(frame, npartitions=3),
                                     features=["plays:games", "plays:last_win"], engine="dask", record=False)
    assert built.id is None
    same(built.to_dask().compute(), local)


def test_to_dask_equals_to_pandas(ws):
    for name in ("activity", "profile", "plays"):
        fv = ws.features.view(name)
        same(fv.to_dask().compute(), fv.to_pandas())


def test_ingest_from_dask_then_read_locally(tmp_path):
    ws = keel.open(tmp_path / "ws.keel")
    ws.features.entity("player", join_keys=["player_id"])
    schema = {"spend": "float64", "tier": "string"}
    dask_view = ws.features.feature_view("from_dask", entities=["player"], schema=schema)
    local_view = ws.features.feature_view("from_pandas", entities=["player"], schema=schema)
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"player_id": np.arange(400) % 50, "spend": rng.random(400),
                         "tier": rng.choice(["a", "b"], 400),
                         "event_timestamp": T0 + pd.to_timedelta(np.arange(400) // 50, unit="D"),
                         "created_timestamp": T0})
    result = dask_view.ingest(dd.from_pandas(data, npartitions=4))
    assert result["rows"] == 400 and len(result["segments"]) == 4
    local_view.ingest(data)
    same(dask_view.to_pandas(), local_view.to_pandas())


def _errors(call):
    with pytest.raises(keel.KeelError) as info:
        call()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("case", ["missing view", "missing column", "no key", "no timestamp", "naive time"])
def test_failures_give_the_local_errors(ws, case):
    frame = labels(20)
    features = FEATURES
    if case == "missing view":
        features = ["nope:x"]
    elif case == "missing column":
        features = ["activity:nope"]
    elif case == "no key":
        frame = frame.drop(columns="player_id")
    elif case == "no timestamp":
        frame = frame.drop(columns="event_timestamp")
    else:
        frame = frame.assign(event_timestamp=frame.event_timestamp.dt.tz_localize(None))
    local = _errors(lambda: ws.features.training_set(frame, features=features))
    engine = _errors(lambda: ws.features.training_set(dd.from_pandas(frame, npartitions=2), features=features,
                                                      engine="dask"))
    assert engine == local


def test_predict_equals_predict(tmp_path):
    from sklearn.linear_model import LinearRegression
    from keel.engines.dask import predict
    ws = keel.open(tmp_path / "ws.keel")
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"sessions": rng.integers(0, 30, 500).astype(float), "spend": rng.random(500) * 50})
    with ws.start_run(experiment="ltv") as run:
        run.log_model(LinearRegression().fit(X, X.sessions * 2 + X.spend), name="ltv")
    predictor = ws.models.load("ltv/1")
    out = predict(predictor, dd.from_pandas(X, npartitions=3)).compute()
    np.testing.assert_array_equal(out.to_numpy(), predictor.predict(X))
    assert out.index.tolist() == X.index.tolist()


def test_a_batch_job_writes_scores_and_items_to_a_prediction_table_served_from_redis(tmp_path, redis_server):
    """keel.engines.dask.predict output straight into a prediction table: ingested by the workers, a
    segment per partition, the same table the pandas path writes, served by an endpoint from Redis."""
    from keel.engines.dask import predict
    ws, players = scoring_workspace(tmp_path / "ws.keel")
    predictor = ws.models.load("churn@champion")
    frame = players.assign(items=top_items(players))
    with pytest.raises(keel.InvalidArgument, match="convert-string"):  # Dask's default: lists become text
        ws.predictions.write("player_recs", "churn/1", dd.from_pandas(frame, npartitions=3))
    with dask.config.set({"dataframe.convert-string": False}):
        ddf = dd.from_pandas(frame, npartitions=3)
    scored = ddf.assign(prediction=predict(predictor, ddf, ["sessions", "spend"]))
    table = ws.predictions.write("player_recs", "churn@champion", scored, online=redis_server.url)
    assert (table.rows, table.score, table.items) == (300, True, 3)
    info = {i.spec.name: i for i in ws.features.list()}["player_recs.v1"]
    assert info.segments == 3 and info.online == redis_server.url  # a segment per partition: nothing collected

    local = frame.assign(prediction=predictor.predict(players[["sessions", "spend"]]))
    ws.predictions.write("player_recs_local", "churn/1", local)
    same(table_rows(ws, "player_recs"), table_rows(ws, "player_recs_local"))
    got = ws.endpoint("recs", model="predictions:player_recs@champion").predict({"player_id": 42})
    assert got["model"] == "churn/1" and got["items"] == [420, 421]
    assert got["prediction"] == pytest.approx(local.prediction[42])


@pytest.mark.parametrize("case", ["no key", "no prediction", "bad item", "bad prediction", "empty items"])
def test_prediction_table_failures_give_the_pandas_errors(tmp_path, case):
    ws, players = scoring_workspace(tmp_path / "ws.keel")
    frame = players[["player_id"]].assign(prediction=0.5, items=[[1, 2]] * len(players))
    if case == "no key":
        frame = frame.drop(columns="player_id")
    elif case == "no prediction":
        frame = frame.drop(columns=["prediction", "items"])
    elif case == "bad item":
        frame["items"] = [[1, "x" if p == 17 else 2] for p in players["player_id"]]
    elif case == "bad prediction":
        frame = frame.drop(columns="items").assign(prediction=["high"] * len(players))
    else:
        frame["items"] = [[] for _ in players["player_id"]]
    local = _errors(lambda: ws.predictions.write("t", "churn/1", frame))
    with dask.config.set({"dataframe.convert-string": False}):  # lists stay lists
        ddf = dd.from_pandas(frame, npartitions=2)
    engine = _errors(lambda: ws.predictions.write("t", "churn/1", ddf))
    assert engine == local and local[0] is keel.InvalidArgument
    assert ws.predictions.names() == []  # nothing recorded

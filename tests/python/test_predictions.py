"""Precomputed predictions: a batch job's scores and top-k items, written per model version and served
by endpoints (in process and over HTTP) with A/B weights choosing between two versions' tables."""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression

import keel
from keel import compact

PLAYERS = np.arange(20)


def recs_workspace(path):
    """A workspace with the entity `player` and models recs/1 and recs/2 (the champion), the models
    that ran the batch jobs (test_predictions_redis.py uses it too)."""
    ws = keel.open(path)
    ws.features.entity("player", join_keys=["player_id"])
    x = pd.DataFrame({"a": [0.0, 1.0]})
    for slope in (1.0, 2.0):
        ws.models.log_model(None, LinearRegression().fit(x, [0.0, slope]), "recs")
    ws.models.set_alias("recs", "champion", 1)
    return ws


@pytest.fixture()
def ws(tmp_path):
    return recs_workspace(tmp_path / "ws.keel")


def recommendations(offset: int) -> pd.DataFrame:
    return pd.DataFrame({"player_id": PLAYERS, "items": [[offset + p, offset + p + 1, offset + p + 2] for p in PLAYERS],
                         "prediction": PLAYERS / 100.0})


def test_a_written_table_is_served_with_the_version_that_computed_it(ws):
    table = ws.predictions.write("player_recs", "recs@champion", recommendations(1000))
    assert (table.model, table.version, table.items, table.score, table.rows) == ("recs", 1, 3, True, 20)
    ep = ws.endpoint("recs", model="predictions:player_recs@champion")
    got = ep.predict({"player_id": 4})
    assert got["items"] == [1004, 1005, 1006] and got["model"] == "recs/1"
    assert got["prediction"] == pytest.approx(0.04)
    batch = ep.predict_batch([{"player_id": 1}, {"player_id": 2}])
    assert [b["items"][0] for b in batch] == [1001, 1002]
    assert list(ws.predictions.to_pandas()["view"]) == ["player_recs.v1"]


def test_weights_choose_between_two_versions_tables_and_an_alias_moves_only_onto_a_written_one(ws):
    ws.predictions.write("player_recs", "recs/1", recommendations(1000))
    ws.endpoint("ab", routing="plugins/routing/sticky.lua",
                variants={"old": ("predictions:player_recs/1", 0.5),
                          "champion": ("predictions:player_recs@champion", 0.5)})
    with pytest.raises(keel.Conflict, match="wrote no predictions"):
        ws.models.set_alias("recs", "champion", 2)  # version 2 has not written its table yet
    ws.predictions.write("player_recs", "recs/2", pa.Table.from_pandas(recommendations(2000)))
    ws.models.set_alias("recs", "champion", 2)
    answers = ws.endpoint("ab").predict_batch([{"player_id": int(p)} for p in PLAYERS])
    by_model = {a["model"]: a for a in answers}
    assert set(by_model) == {"recs/1", "recs/2"}  # both tables serve, each answer from its version's
    for a, p in zip(answers, PLAYERS):
        assert a["items"][0] == (1000 if a["model"] == "recs/1" else 2000) + p


def test_scores_only_items_only_and_bad_frames(ws):
    scores = ws.predictions.write("churn_scores", "recs/1",
                                  pd.DataFrame({"player_id": [1, 2], "prediction": [0.1, 0.9]}))
    assert (scores.score, scores.items) == (True, 0)
    assert ws.endpoint("scores", model="predictions:churn_scores").predict({"player_id": 2})["prediction"] == 0.9
    uneven = ws.predictions.write("uneven", "recs/1", pd.DataFrame({"player_id": [1, 2], "items": [[5], [6, 7]]}))
    assert uneven.items == 2
    ep = ws.endpoint("uneven", model="predictions:uneven/1")
    assert ep.predict({"player_id": 1})["items"] == [5]  # ranks without an item are left out
    assert math.isnan(ep.predict({"player_id": 1})["prediction"])  # a table without scores
    with pytest.raises(keel.InvalidArgument, match="'prediction' column"):
        ws.predictions.write("t", "recs/1", pd.DataFrame({"player_id": [1], "other": [1]}))
    with pytest.raises(keel.InvalidArgument, match="item ids are integers"):
        ws.predictions.write("t", "recs/1", pd.DataFrame({"player_id": [1], "items": [[1.5]]}))
    with pytest.raises(keel.InvalidArgument, match="entity"):
        ws.predictions.write("t", "recs/1", pd.DataFrame({"user": [1], "prediction": [1.0]}))
    with pytest.raises(keel.NotFound):
        ws.predictions.write("t", "recs/9", pd.DataFrame({"player_id": [1], "prediction": [1.0]}))
    ws.models.log_model(None, LinearRegression().fit(pd.DataFrame({"a": [0.0, 1.0]}), [0.0, 1.0]), "other")
    ws.predictions.write("player_recs_x", "recs/1", recommendations(0))
    with pytest.raises(keel.InvalidArgument, match="holds predictions of model 'recs'"):
        ws.predictions.write("player_recs_x", "other/1", recommendations(0))
    with pytest.raises(keel.NotFound, match="nothing"):
        ws.endpoint("nope", model="predictions:nothing/1")


def test_the_server_answers_items_in_json_and_compact(ws):
    ws.predictions.write("player_recs", "recs/1", recommendations(1000))
    ws.endpoint("recs", model="predictions:player_recs@champion")
    with keel.serve(ws, ["recs"], threads=1) as server:
        got = server.predict("recs", {"player_id": 7})
        assert got["items"] == [1007, 1008, 1009] and got["model"] == "recs/1"
        status, body = server.request("POST", "/v1/endpoints/recs/predict", {"player_id": 7},
                                      accept="application/x-keel-compact")
        assert status == 200 and len(body) < 16
        assert compact.decode(body) == {"items": [1007, 1008, 1009], "variant_index": 0, "version": 1}
        status, body = server.request("POST", "/v1/endpoints/recs/predict", [{"player_id": 1}, {"player_id": 2}],
                                      accept="application/x-keel-compact")
        assert [m["items"][0] for m in compact.decode(body)] == [1001, 1002]

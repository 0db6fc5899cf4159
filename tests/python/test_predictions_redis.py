"""Prediction tables on Redis: each model version's table materialized to a real redis-server, served
by endpoints (in process and by keel-server) with A/B weights and aliases choosing between versions,
a rewrite followed at once, and a Redis outage answered with Unavailable, never with a wrong value."""

import numpy as np
import pandas as pd
import pytest

import keel
from test_predictions import recs_workspace

PLAYERS = np.arange(200)


@pytest.fixture(scope="module")
def redis():
    from servers import RedisServer

    with RedisServer() as server:  # its own: a test here stops and restarts it
        yield server


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_ONLINE_REFRESH_MS", "0")  # readers follow a new materialization at once
    return recs_workspace(tmp_path / "ws.keel")


def recommendations(offset: int, players=PLAYERS) -> pd.DataFrame:
    return pd.DataFrame({"player_id": players, "items": [[offset + p, offset + p + 1] for p in players],
                         "prediction": offset + np.asarray(players) / 1000.0})


def served_by(answers) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in answers:
        out[a["model"]] = out.get(a["model"], 0) + 1
    return out


def test_two_versions_tables_in_redis_weights_and_an_alias_choose_between_them(ws, redis):
    one = ws.predictions.write("player_recs", "recs/1", recommendations(1000), online=redis.url)
    two = ws.predictions.write("player_recs", "recs/2", recommendations(2000))  # follows version 1 to Redis
    assert (one.rows, two.rows) == (200, 200)
    tables = ws.predictions.to_pandas()
    assert list(tables["online"]) == [redis.url, redis.url]
    assert int(redis.cli("DBSIZE")) >= 400  # both versions' values are in Redis

    ab = ws.endpoint("ab", routing="plugins/routing/sticky.lua",
                     variants={"old": ("predictions:player_recs/1", 0.5), "new": ("predictions:player_recs/2", 0.5)})
    requests = [{"player_id": int(p)} for p in PLAYERS]
    answers = ab.predict_batch(requests)
    assert set(served_by(answers)) == {"recs/1", "recs/2"}
    for a, p in zip(answers, PLAYERS):  # each answer from the table of the version it names
        offset = 1000 if a["model"] == "recs/1" else 2000
        assert a["items"] == [offset + p, offset + p + 1] and a["prediction"] == pytest.approx(offset + p / 1000)
    ab.set_weights({"old": 0.0, "new": 1.0})
    assert served_by(ab.predict_batch(requests)) == {"recs/2": 200}
    ab.set_weights({"old": 1.0, "new": 0.0})
    assert served_by(ab.predict_batch(requests)) == {"recs/1": 200}

    champion = ws.endpoint("champion", model="predictions:player_recs@champion")
    assert champion.predict({"player_id": 5})["items"] == [1005, 1006]
    ws.models.set_alias("recs", "champion", 2)  # the alias moves: the endpoint switches tables
    got = champion.predict({"player_id": 5})
    assert got["items"] == [2005, 2006] and got["model"] == "recs/2"
    with keel.serve(ws, ["champion"], threads=1) as server:  # keel-server reads the same Redis
        assert server.predict("champion", {"player_id": 7})["items"] == [2007, 2008]


def test_a_rewrite_of_one_version_is_what_the_endpoint_serves_next(ws, redis):
    ws.predictions.write("player_recs", "recs/1", recommendations(1000), online=redis.url)
    ws.predictions.write("player_recs", "recs/2", recommendations(2000))
    ep = ws.endpoint("ab", routing="plugins/routing/sticky.lua",
                     variants={"old": ("predictions:player_recs/1", 0.5), "new": ("predictions:player_recs/2", 0.5)})
    ep.set_weights({"old": 0.0, "new": 1.0})
    assert ep.predict({"player_id": 3})["items"] == [2003, 2004]
    # Left in Redis, where version 2's table is.
    rewritten = ws.predictions.write("player_recs", "recs/2", recommendations(5000, players=[3, 4]))
    assert rewritten.rows == 2 and ws.predictions.to_pandas()["online"].tolist() == [redis.url, redis.url]
    answers = ep.predict_batch([{"player_id": p} for p in (3, 4, 5)])
    assert [a["items"][0] for a in answers] == [5003, 5004, 2005]  # players 3, 4 rewritten; 5 as it was
    ep.set_weights({"old": 1.0, "new": 0.0})
    assert ep.predict({"player_id": 3})["items"] == [1003, 1004]  # version 1's table is untouched


def test_redis_down_is_unavailable_for_reads_and_writes_never_a_wrong_answer(ws, redis):
    ws.predictions.write("player_recs", "recs/1", recommendations(1000), online=redis.url)
    ep = ws.endpoint("recs", model="predictions:player_recs@champion")
    assert ep.predict({"player_id": 9})["items"] == [1009, 1010]
    before = ws.predictions.to_pandas()
    redis.halt()
    try:
        with pytest.raises(keel.Unavailable, match=redis.url.replace(".", r"\.")):
            ep.predict({"player_id": 9})
        with pytest.raises(keel.Unavailable):
            ws.predictions.write("player_recs", "recs/2", recommendations(2000))  # follows version 1 to Redis
        pd.testing.assert_frame_equal(ws.predictions.to_pandas(), before)  # nothing recorded: version 2 serves nothing
        assert "player_recs.v2" not in [i.spec.name for i in ws.features.list()]  # nor ingested
        with pytest.raises(keel.NotFound, match="wrote no predictions"):
            ws.endpoint("next", model="predictions:player_recs/2")
    finally:
        redis.resume()  # empty: nothing is saved
    with pytest.raises(keel.Unavailable, match="holds no materialization"):
        ep.predict({"player_id": 9})  # not a local copy, not a stale value: an error until written again
    ws.predictions.write("player_recs", "recs/1", recommendations(1000))
    assert ep.predict({"player_id": 9})["items"] == [1009, 1010]


def test_where_a_table_goes_when_online_is_left_out(ws, redis):
    local = ws.predictions.write("local_recs", "recs/1", recommendations(1000, players=[1, 2]))
    assert local.rows == 2 and ws.predictions.to_pandas()["online"].tolist() == ["local"]

    fs = ws.features
    fv = fs.feature_view("activity", entities=["player"], schema={"spend": "float64"})
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    fv.ingest(pd.DataFrame({"player_id": [1], "event_timestamp": now, "spend": [1.0]}))
    fs.materialize("activity", online=redis.url)  # the workspace serves its features from Redis
    assert fs.list().to_pandas().set_index("name").loc["activity", "online"] == redis.url
    ws.predictions.write("churn_scores", "recs/1", pd.DataFrame({"player_id": [1, 2], "prediction": [0.1, 0.9]}))
    ws.predictions.write("local_recs", "recs/2", recommendations(2000, players=[1, 2]))  # follows version 1
    where = ws.predictions.to_pandas().set_index("view")["online"].to_dict()
    assert where == {"churn_scores.v1": redis.url, "local_recs.v1": "local", "local_recs.v2": "local"}
    assert ws.endpoint("churn", model="predictions:churn_scores").predict({"player_id": 2})["prediction"] == 0.9

    other_db = redis.url[:-1] + "1"
    fs.materialize("activity", online=other_db)  # now two Redis databases: which one is not to be guessed
    with pytest.raises(keel.InvalidArgument, match=r"several Redis servers .*give online="):
        ws.predictions.write("new_table", "recs/1", recommendations(0, players=[1]))
    ws.predictions.write("new_table", "recs/1", recommendations(0, players=[1]), online="local")
    with pytest.raises(keel.InvalidArgument, match="redis://"):
        ws.predictions.write("bad_url", "recs/1", recommendations(0, players=[1]), online="http://cache:6379")
    assert "bad_url.v1" not in [i.spec.name for i in ws.features.list()]  # refused before anything is written

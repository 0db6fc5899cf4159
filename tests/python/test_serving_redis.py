"""Serving from the online store on Redis: the endpoint request path (embedded) and keel-server's
online features route and predict route read the values a materialization wrote to a real
redis-server, follow a new one, and answer a Redis outage with Unavailable (HTTP 503), then recover."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel

T0 = pd.Timestamp("2026-01-01", tz="UTC")
N = 50


def linear():
    """sessions + 2 * spend, as a native model."""
    x = pd.DataFrame({"sessions": [0.0, 1.0, 0.0], "spend": [0.0, 0.0, 1.0]})
    return LinearRegression().fit(x, np.array([0.0, 1.0, 2.0]))


def activity(ids, sessions, spend, day=0):
    return pd.DataFrame({"player_id": ids, "event_timestamp": T0 + pd.Timedelta(days=day),
                         "sessions": sessions, "spend": spend})


@pytest.fixture(scope="module")
def redis():
    from servers import RedisServer

    with RedisServer() as server:  # its own: a test here stops and restarts it
        yield server


@pytest.fixture
def served(tmp_path, redis, monkeypatch):
    monkeypatch.setenv("KEEL_ONLINE_REFRESH_MS", "0")  # readers (and servers started here) follow at once
    ws = keel.open(tmp_path / "ws.keel")
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("activity", entities=["player"], ttl="3650d",
                         schema={"sessions": "int64", "spend": "float64"})
    ids = np.arange(N)
    fv.ingest(activity(ids, ids % 7, ids * 1.0))
    assert fs.materialize("activity", online=redis.url)["written"] == N
    ws.models.log_model(None, linear(), "churn")
    ws.endpoint("solo", model="churn/1", features=["activity:sessions", "activity:spend"], refresh_interval=0)
    return ws, fv


def test_the_endpoint_request_path_reads_redis_and_follows_a_materialization(served):
    ws, fv = served
    ep = ws.endpoint("solo")
    out = ep.predict({"player_id": 10})
    assert out["prediction"] == pytest.approx(3 + 2 * 10.0) and out["missing"] == []
    batch = ep.predict_batch([{"player_id": i} for i in range(N)])
    assert [b["prediction"] for b in batch] == pytest.approx([(i % 7) + 2.0 * i for i in range(N)])
    with pytest.raises(keel.InvalidArgument, match=r"no fresh value for missing \[sessions, spend\]"):
        ep.predict({"player_id": 10_000})  # not in Redis: missing, as locally

    fv.ingest(activity([10], [0], [100.0], day=1))
    assert ws.features.materialize("activity")["written"] == 1
    assert ep.predict({"player_id": 10})["prediction"] == pytest.approx(200.0)


def test_keel_server_reads_redis_then_503_while_it_is_down(served, redis):
    ws, fv = served
    with keel.serve(ws, threads=2) as server:
        got = server.online_features(["activity:sessions", "activity:spend"], {"player_id": [5, 6, 100_000]})
        f = got["features"]
        assert f["activity:sessions"]["values"][:2] == [5, 6] and f["activity:spend"]["values"][:2] == [5.0, 6.0]
        assert f["activity:sessions"]["status"] == ["ok", "ok", "missing"]
        assert server.predict("solo", {"player_id": 6})["prediction"] == pytest.approx(6 + 12.0)

        fv.ingest(activity([6], [1], [50.0], day=1))
        ws.features.materialize("activity")
        assert server.online_features(["activity:spend"], {"player_id": [6]})["features"]["activity:spend"][
            "values"] == [50.0]
        assert server.predict("solo", {"player_id": 6})["prediction"] == pytest.approx(101.0)

        redis.halt()
        try:
            status, body = server.request("POST", "/v1/features/online",
                                          {"features": ["activity:spend"], "entities": {"player_id": [6]}})
            assert status == 503 and b"Unavailable" in body and redis.url.encode() in body
            with pytest.raises(keel.Unavailable, match="HTTP 503"):
                server.predict("solo", {"player_id": 6})
        finally:
            redis.resume()  # empty: values come back with the next materialization
        with pytest.raises(keel.Unavailable, match="holds no materialization"):
            server.online_features(["activity:spend"], {"player_id": [6]})
        ws.features.materialize("activity")
        assert server.online_features(["activity:spend"], {"player_id": [6]})["features"]["activity:spend"][
            "values"] == [50.0]
        assert server.running()

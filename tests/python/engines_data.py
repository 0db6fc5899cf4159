"""The workspace and labels the Spark and Dask tests share: several views, an int key, a string key, a
composite key, TTL, nulls, a column name in two views, and labels that match nothing, tie on event
time or fall past the TTL. Written so each engine's result can be compared with the local engine's."""

from __future__ import annotations

import numpy as np
import pandas as pd

import keel

T0 = pd.Timestamp("2026-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)
FEATURES = ["activity:sessions", "activity:spend", "activity:tier", "activity:score", "profile:country",
            "profile:score", "plays:games", "plays:last_win"]


def make_workspace(path) -> keel.Workspace:
    ws = keel.open(path)
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fs.entity("account", join_keys={"account": "string"})
    fs.entity("game", join_keys={"game_id": "string"})
    activity = fs.feature_view("activity", entities=["player"], ttl="10d",
                               schema={"sessions": "int64", "spend": "float64", "tier": "string", "score": "float64"})
    profile = fs.feature_view("profile", entities=["account"],
                              schema={"country": "string", "score": "float32"})
    plays = fs.feature_view("plays", entities=["player", "game"], ttl="30d",
                            schema={"games": "int32", "last_win": "timestamp"})
    rng = np.random.default_rng(7)
    for seg in range(3):  # three segments: the same key and event time in two of them (latest created wins)
        n = 1500
        ids = rng.integers(0, 300, n)
        events = T0 + pd.to_timedelta(rng.integers(0, 60, n), unit="D")
        sessions = pd.array(rng.integers(0, 50, n), dtype="Int64")
        sessions[rng.random(n) < 0.1] = pd.NA
        activity.ingest(pd.DataFrame({
            "player_id": ids, "event_timestamp": events,
            "created_timestamp": pd.Timestamp("2026-06-01", tz="UTC") + seg * pd.Timedelta(hours=1),
            "sessions": sessions, "spend": rng.random(n) * 100,
            "tier": rng.choice(["gold", "silver", None], n), "score": rng.normal(size=n)}))
    accounts = [f"acct-{i:03d}" for i in range(120)]
    profile.ingest(pd.DataFrame({
        "account": rng.choice(accounts, 800),
        "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 60, 800), unit="D"),
        "country": rng.choice(["fr", "de", "jp"], 800), "score": rng.random(800).astype(np.float32)}))
    games = ["g-a", "g-b", "g-c"]
    plays.ingest(pd.DataFrame({
        "player_id": rng.integers(0, 300, 1000), "game_id": rng.choice(games, 1000),
        "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 60, 1000), unit="D"),
        "games": rng.integers(0, 9, 1000).astype(np.int32),
        "last_win": T0 + pd.to_timedelta(rng.integers(0, 1000, 1000), unit="h")}))
    return ws


def labels(n: int = 2000) -> pd.DataFrame:
    """Labels: ids past the known ones (no match), times on the day grid (ties with event times),
    before all data and long after (TTL), unknown accounts and games."""
    rng = np.random.default_rng(11)
    return pd.DataFrame({
        "player_id": rng.integers(0, 330, n),
        "account": rng.choice([f"acct-{i:03d}" for i in range(130)], n),
        "game_id": rng.choice(["g-a", "g-b", "g-c", "g-z"], n),
        "event_timestamp": T0 + pd.to_timedelta(rng.integers(-5, 90, n), unit="D"),
        "label": rng.integers(0, 2, n)})


def same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Row for row, column for column, nulls in the same places (dtypes may differ by engine)."""
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    for name in expected.columns:
        a = actual[name].reset_index(drop=True)
        e = expected[name].reset_index(drop=True)
        assert (a.isna().to_numpy() == e.isna().to_numpy()).all(), name
        keep = ~e.isna().to_numpy()
        av, ev = a[keep], e[keep]
        if pd.api.types.is_datetime64_any_dtype(e.dtype):
            av = pd.to_datetime(av, utc=True).astype("datetime64[ms, UTC]")
            ev = ev.astype("datetime64[ms, UTC]")
        elif pd.api.types.is_float_dtype(e.dtype):
            av, ev = av.astype("float64"), ev.astype("float64")
        assert av.tolist() == ev.tolist(), name


# ---- prediction tables: a batch job's scores and top-k items, written from Spark and Dask ------------

def scoring_workspace(path) -> tuple[keel.Workspace, pd.DataFrame]:
    """A workspace with a player entity and model churn/1 (a regression on sessions and spend, its
    alias champion), and the 300 players' inputs a batch job scores (event time fixed, so the tables
    written by each engine and by pandas can be compared whole)."""
    from sklearn.linear_model import LinearRegression
    ws = keel.open(path)
    ws.features.entity("player", join_keys=["player_id"])
    rng = np.random.default_rng(11)
    players = pd.DataFrame({"player_id": np.arange(300), "sessions": rng.integers(0, 30, 300).astype(float),
                            "spend": rng.random(300) * 50, "event_timestamp": T0})
    X = players[["sessions", "spend"]]
    ws.models.log_model(None, LinearRegression().fit(X, X.sessions * 0.02 + X.spend * 0.01), "churn")
    ws.models.set_alias("churn", "champion", 1)
    return ws, players


def top_items(players: pd.DataFrame) -> list[list[int]]:
    """Uneven top-k lists (0 to 3 items; a player with none): ranks past a list's end stay null."""
    return [[int(p) * 10 + k for k in range(int(p) % 4)] for p in players["player_id"]]


def table_rows(ws: keel.Workspace, name: str, version: int = 1) -> pd.DataFrame:
    """What a prediction table's view holds, without when it was ingested."""
    return ws.features.view(f"{name}.v{version}").to_pandas().drop(columns="created_timestamp")

"""Feature store: definitions, ingest validation, offline reads, point-in-time joins, online, PII."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import keel

T0 = pd.Timestamp("2024-01-01", tz="UTC")
EPOCH = pd.Timestamp(0, tz="UTC")


def day(n):
    return T0 + pd.Timedelta(days=n)


@pytest.fixture
def fs(ws):
    ws.features.entity("player", join_keys=["player_id"])
    return ws.features


@pytest.fixture
def fv(fs):
    return fs.feature_view("activity", entities=["player"], ttl="10d", owner="data-eng",
                           description="player activity", tags={"team": "growth"},
                           schema={"sessions": "int64", "spend": "float64", "email": keel.String(pii=True),
                                   "emb": keel.Vector(2), "vip": "bool", "level": "int32"})


@pytest.fixture(params=["local", "redis"])
def online(request):
    """Where an online test materializes: the local snapshot (None), or a real redis-server. The
    same assertions hold for both: Redis is a store of the same values, not another semantics."""
    if request.param == "local":
        return None
    return request.getfixturevalue("redis_server").url


def frame(ids, days, sessions, created=None, **extra):
    n = len(ids)
    df = pd.DataFrame({"player_id": ids, "event_timestamp": [day(d) for d in days], "sessions": sessions,
                       "spend": [float(s) * 1.5 for s in sessions], "email": [f"p{i}@x.io" for i in ids],
                       "emb": [[float(s), 1.0] for s in sessions], "vip": [bool(s % 2) for s in sessions],
                       "level": np.arange(n, dtype=np.int32)})
    if created is not None:
        df["created_timestamp"] = [day(c) for c in created]
    for k, v in extra.items():
        df[k] = v
    return df


# --- definitions --------------------------------------------------------------------------------

def test_view_definition_roundtrip(fs, fv):
    again = fs.feature_view("activity")
    assert again.version == 1
    assert again.schema["emb"] == "vector[2]"
    assert again.pii_columns == ["email"]
    assert again.ttl == pd.Timedelta(days=10)
    assert again.owner == "data-eng" and again.tags == {"team": "growth"}
    assert again.join_keys == ["player_id"]


def test_an_entity_holds_the_core_record(fs):
    game = fs.entity("game", join_keys={"region": "string", "game_id": "int64"}, description="a match")
    assert isinstance(game.spec, keel._core.EntitySpec)
    assert game.name == "game" and game.join_keys == ["region", "game_id"] and game.description == "a match"
    assert [(k.name, k.dtype) for k in fs.entity("game").spec.join_keys] == [("region", "string"),
                                                                            ("game_id", "int64")]
    assert sorted(e.name for e in fs.entities()) == ["game", "player"]
    assert repr(game) == "<keel.Entity game (region: string, game_id: int64)>"
    with pytest.raises(AttributeError):
        game.spec.name = "match"


def test_unknown_view_and_entity_are_named(fs):
    with pytest.raises(keel.NotFound, match="feature view 'nope' not found"):
        fs.feature_view("nope")
    with pytest.raises(keel.NotFound, match="entity 'ghost' not found"):
        fs.feature_view("v", entities=["ghost"], schema={"x": "float64"})
    with pytest.raises(keel.InvalidArgument, match="unknown type 'float128'"):
        fs.feature_view("v", entities=["player"], schema={"x": "float128"})


def test_adding_a_column_keeps_version_and_old_rows_read_null(fs, fv):
    fv.ingest(frame([1], [0], [3]))
    v2 = fs.feature_view("activity", entities=["player"], ttl="10d",
                         schema={**{k: t for k, t in [("sessions", "int64"), ("spend", "float64"),
                                                      ("email", keel.String(pii=True)), ("emb", keel.Vector(2)),
                                                      ("vip", "bool"), ("level", "int32")]},
                                 "country": "string"})
    assert v2.version == 1
    df = v2.to_pandas()
    assert len(df) == 1 and df["country"].isna().all()
    v2.ingest(frame([2], [1], [4], country=["fr"]))
    assert v2.to_pandas()["country"].tolist()[1] == "fr"


def test_incompatible_change_starts_a_new_version(fs, fv):
    fv.ingest(frame([1], [0], [3]))
    v2 = fs.feature_view("activity", entities=["player"], schema={"sessions": "float64"})
    assert v2.version == 2
    assert len(v2.to_pandas()) == 0
    assert fs.view("activity", version=1).to_pandas().shape[0] == 1


# --- ingest validation --------------------------------------------------------------------------

def test_missing_and_extra_columns_are_refused(fv):
    with pytest.raises(keel.InvalidArgument, match="column 'spend' of feature view 'activity' is missing"):
        fv.ingest(frame([1], [0], [1]).drop(columns=["spend"]))
    with pytest.raises(keel.InvalidArgument, match="column 'bogus' is not in feature view 'activity'"):
        fv.ingest(frame([1], [0], [1], bogus=[1]))
    assert fv.to_pandas().empty


def test_missing_event_timestamp_says_what_to_add(fs):
    scores = fs.feature_view("scores", entities=["player"], schema={"score": "float64"})
    with pytest.raises(keel.InvalidArgument, match=r"no 'event_timestamp' column, which feature view 'scores' "
                                                   r"requires: add a time-zone-aware 'event_timestamp' column"):
        scores.ingest(pd.DataFrame({"player_id": [1], "score": [1.0]}))
    custom = fs.feature_view("custom", entities=["player"], schema={"score": "float64"}, event_timestamp_column="ts")
    with pytest.raises(keel.InvalidArgument, match=r"no 'ts' column.*df\['ts'\] = pd.Timestamp.now\(tz='UTC'\)"):
        custom.ingest(pd.DataFrame({"player_id": [1], "score": [1.0]}))
    assert scores.to_pandas().empty and custom.to_pandas().empty


def ingest_refused(fv, df, column, values, match):
    """Ingesting `df` with `column` replaced by `values` raises InvalidArgument matching `match`."""
    bad = df.copy()
    bad[column] = values
    with pytest.raises(keel.InvalidArgument, match=match):
        fv.ingest(bad)


def test_wrong_and_lossy_dtypes_name_column_and_row(fv):
    df = frame([1, 2, 3], [0, 1, 2], [1, 2, 3])
    ingest_refused(fv, df, "sessions", [1.0, 2.5, 3.0], r"column 'sessions' has the non-integer value 2.5 at row 1")
    ingest_refused(fv, df, "spend", ["a", "b", "c"], "column 'spend' has type string, expected float64")
    ingest_refused(fv, df, "level", [1, 2**40, 3],
                   "column 'level' has the value 1099511627776 at row 1, out of int32")
    ingest_refused(fv, df, "emb", [[1.0, 2.0], [1.0], [3.0, 4.0]],
                   "column 'emb' has a vector of length 1 at row 1, expected 2")
    assert fv.to_pandas().empty


def test_null_join_key_and_bad_timestamps_are_refused(fv):
    df = frame([1, 2, 3], [0, 1, 2], [1, 2, 3])
    ingest_refused(fv, df, "player_id", pd.array([1, None, 3], dtype="Int64"), "join key 'player_id' is null at row 1")
    ts = df["event_timestamp"]
    ingest_refused(fv, df, "event_timestamp", ts.dt.tz_localize(None), "without a time zone")
    ingest_refused(fv, df, "event_timestamp", ["2024-01-01T00:00:00Z", "not a time", "2024-01-02T00:00:00Z"],
                   "unparseable timestamp at row 1: 'not a time'")
    ingest_refused(fv, df, "event_timestamp", ["2024-01-01T00:00:00", "2024-01-01T00:00:00", "2024-01-02T00:00:00"],
                   "without a time zone")
    ingest_refused(fv, df, "event_timestamp", ts + pd.to_timedelta([0, 0, 1500], unit="us"),
                   "sub-millisecond precision at row 2")
    assert fv.to_pandas().empty
    # ISO strings with an offset are fine.
    ok = df.copy()
    ok["event_timestamp"] = ["2024-01-01T00:00:00Z", "2024-01-01T02:00:00+02:00", "2024-01-02T00:00:00Z"]
    fv.ingest(ok)
    assert fv.to_pandas()["event_timestamp"].tolist()[1] == T0


def test_pyarrow_input_and_zero_rows(fv):
    table = pa.Table.from_pandas(frame([1, 2], [0, 1], [1, 2]), preserve_index=False)
    fv.ingest(table)
    assert len(fv.to_pandas()) == 2


def test_latest_created_wins_for_same_entity_and_event_time(fv):
    fv.ingest(frame([1, 1], [0, 0], [10, 20], created=[2, 1]))
    fv.ingest(frame([1], [0], [30], created=[1]))  # later ingest, older created: loses
    df = fv.to_pandas()
    assert df["sessions"].tolist() == [10]
    fv.ingest(frame([1], [0], [40], created=[2]))  # tie on created: the later ingest wins
    assert fv.to_pandas()["sessions"].tolist() == [40]


def test_reads_history_as_of_and_list(fs, fv):
    fv.ingest(frame([1, 1, 2, 1], [0, 5, 3, 8], [1, 2, 3, 4]))
    assert fv.to_pandas(start=day(3), end=day(8))["sessions"].tolist() == [2, 3]
    h = fv.history(player_id=1)
    assert h["sessions"].tolist() == [1, 2, 4]
    a = fv.as_of(day(4))
    assert a[["player_id", "sessions"]].values.tolist() == [[1, 1], [2, 3]]
    lst = fs.list().to_pandas()
    row = lst.set_index("name").loc["activity"]
    assert row["rows"] == 4 and row["owner"] == "data-eng" and row["last_event"] == day(8)
    assert fv.to_arrow().num_rows == 4
    assert "activity" in fs.list()._repr_html_()


def test_sigkill_mid_ingest_leaves_the_store_as_before(ws, fs, fv, tmp_path):
    fv.ingest(frame([1], [0], [1]))
    # A local segment is written beside its final name; an S3 one is staged in the read cache while it
    # is written and uploaded (a kill there is a kill mid-upload).
    remote = ws.artifacts_url.startswith("s3://")
    # (The cache is <path>/cache for a directory workspace; a PostgreSQL one's path is its cache.)
    caches = [os.path.join(ws.path, "cache", "tmp"), os.path.join(ws.path, "tmp")]
    seg_dir = next(filter(os.path.isdir, caches)) if remote else os.path.join(ws.path, "features", "activity", "v1")
    cache_dir = os.path.dirname(seg_dir) if remote else None
    script = textwrap.dedent(f"""
        import numpy as np, pandas as pd, keel
        ws = keel.open({ws.location!r}, cache_dir={cache_dir!r})
        fv = ws.features.feature_view("activity")
        n = 3_000_000
        ids = np.arange(n, dtype=np.int64)
        df = pd.DataFrame({{"player_id": ids,
            "event_timestamp": pd.to_datetime(ids % 1000, unit="s", utc=True),
            "sessions": ids, "spend": ids * 1.0, "email": pd.Series(["a@b"] * n),
            "emb": list(np.ones((n, 2), dtype=np.float32)), "vip": ids % 2 == 0,
            "level": (ids % 100).astype(np.int32)}})
        print("ready", flush=True)
        fv.ingest(df)
        print("done", flush=True)
    """)
    # The kill must land while the segment is written. On a busy machine the poll can miss that
    # window: the ingest then completed (the store grew by it), so try again from there.
    for _attempt in range(3):
        before = fv.to_pandas()
        rows_before = ws.features.list().to_pandas()["rows"].tolist()
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                env={**os.environ})
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        seen = False
        while time.time() < deadline and proc.poll() is None:
            if any(remote or ".tmp-" in f for f in os.listdir(seg_dir)):
                seen = True
                break
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if seen:
            break
    assert seen, "three ingests finished before the test saw their temporary segment file"
    assert proc.returncode == -signal.SIGKILL
    ws2 = keel.open(ws.location)
    after = ws2.features.feature_view("activity").to_pandas()
    pd.testing.assert_frame_equal(before, after)
    assert ws2.features.list().to_pandas()["rows"].tolist() == rows_before


# --- point-in-time training sets ----------------------------------------------------------------

def test_training_set_point_in_time_and_ttl(fs, fv):
    fv.ingest(frame([1, 1, 2], [0, 5, 3], [1, 2, 3]))
    labels = pd.DataFrame({"player_id": [1, 1, 1, 2, 3, 1],
                           "event_timestamp": [day(4), day(5), day(15), day(2), day(9), day(16)],
                           "label": [0, 1, 0, 1, 1, 0]})
    ts = fs.training_set(labels, features=["activity:sessions", "activity:spend"])
    df = ts.to_pandas()
    # day 4 -> row of day 0; day 5 -> day 5 (<=); day 15 -> day 5 (age 10d == ttl, kept);
    # day 2 for player 2 -> nothing yet; player 3 unknown; day 16 -> older than ttl.
    assert df["sessions"].tolist()[:3] == [1, 2, 2]
    assert df["sessions"].isna().tolist() == [False, False, False, True, True, True]
    assert df["label"].tolist() == labels["label"].tolist()
    assert ts.lineage_ref == f"training_set:{ts.id}"


def test_integer_features_stay_integers(fs, fv, online):
    fv.ingest(frame([1, 2], [0, 0], [5, 7]))
    complete = fs.training_set(pd.DataFrame({"player_id": [1, 2], "event_timestamp": [day(1), day(1)]}),
                               features=["activity:sessions", "activity:level", "activity:spend"]).to_pandas()
    assert (complete["sessions"].dtype, complete["level"].dtype) == (np.dtype("int64"), np.dtype("int32"))
    assert complete["sessions"].tolist() == [5, 7]
    gaps = fs.training_set(pd.DataFrame({"player_id": [1, 3, 2], "event_timestamp": [day(1)] * 3}),
                           features=["activity:sessions", "activity:level", "activity:spend"]).to_pandas()
    assert (str(gaps["sessions"].dtype), str(gaps["level"].dtype)) == ("Int64", "Int32")  # nullable, not float
    assert gaps["sessions"].tolist() == [5, pd.NA, 7] and gaps["spend"].dtype == np.float64
    big = 2**53 + 1  # would lose its last digit as a float
    fv.ingest(frame([4], [0], [big]))
    got = fs.training_set(pd.DataFrame({"player_id": [4, 5], "event_timestamp": [day(1)] * 2}),
                          features=["activity:sessions"]).to_pandas()
    assert got["sessions"][0] == big
    fs.materialize("activity", online=online)
    online = fs.get_online(["activity:sessions", "activity:level"], player_id=[1, 99], now=day(1))
    assert (str(online["sessions"].dtype), str(online["level"].dtype)) == ("Int64", "Int32")
    assert online["sessions"].tolist() == [5, pd.NA]
    assert fs.get_online(["activity:sessions"], player_id=[1, 2], now=day(1))["sessions"].dtype == np.int64


def test_training_set_is_rebuilt_identically_by_id(fs, fv):
    fv.ingest(frame([1, 2], [0, 0], [1, 2]))
    labels = pd.DataFrame({"player_id": [1, 2], "event_timestamp": [day(3), day(3)], "y": [1, 0]})
    ts = fs.training_set(labels, features=["activity:sessions"])
    fv.ingest(frame([1], [1], [99]))  # late data, after the set was built
    again = fs.training_set(id=ts.id)
    pd.testing.assert_frame_equal(ts.to_pandas(), again.to_pandas())
    # The record is the core's, read-only; it still reads like the dict it was (record["id"]).
    assert isinstance(ts.record, keel._core.TrainingSetRecord) and ts.record["id"] == ts.record.id == ts.id
    assert again.record.labels_digest == ts.record.labels_digest and again.view_versions == {"activity": 1}
    assert dict(ts.record)["features"] == ["activity:sessions"] and ts.record.label_rows == 2
    with pytest.raises(AttributeError):
        ts.record.label_rows = 3
    fresh = fs.training_set(labels, features=["activity:sessions"])
    assert fresh.id != ts.id and fresh.to_pandas()["sessions"].tolist() == [99, 2]
    with pytest.raises(keel.NotFound, match="training set 'nope' not found"):
        fs.training_set(id="nope")


def brute_force(features: pd.DataFrame, labels: pd.DataFrame, keys, cols, ttl_ms):
    """Reference point-in-time join: for each label, scan all feature rows."""
    out = {c: [] for c in cols}
    f = features.copy()
    f["_ev"] = (f["event_timestamp"] - EPOCH) // pd.Timedelta(milliseconds=1)
    f["_cr"] = (f["created_timestamp"] - EPOCH) // pd.Timedelta(milliseconds=1)
    f["_seq"] = np.arange(len(f))
    for _, lab in labels.iterrows():
        t = lab["event_timestamp"].value // 10**6
        m = np.ones(len(f), dtype=bool)
        for k in keys:
            m &= (f[k] == lab[k]).to_numpy()
        m &= (f["_ev"] <= t).to_numpy()
        cand = f[m]
        if len(cand):
            best = cand.sort_values(["_ev", "_cr", "_seq"]).iloc[-1]
            if ttl_ms and t - best["_ev"] > ttl_ms:
                best = None
        else:
            best = None
        for c in cols:
            out[c].append(None if best is None else best[c])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_set_matches_brute_force(ws, seed):
    rng = np.random.default_rng(seed)
    spread = 10**12 if seed == 2 else 1  # sparse ids take the comparison-sort path on ingest
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fs.entity("game", join_keys={"region": "string", "game_id": "int64"})
    ttl_days = 3
    a = fs.feature_view("a", entities=["player"], ttl=f"{ttl_days}d", schema={"x": "float64", "n": "int64"})
    b = fs.feature_view("b", entities=["player", "game"], schema={"s": "string", "y": "float32"})
    all_a, all_b = [], []
    for _ in range(3):  # several segments, later ones carrying late data
        n = 60
        df = pd.DataFrame({"player_id": rng.integers(0, 8, n) * spread,
                           "event_timestamp": [day(int(d)) for d in rng.integers(0, 12, n)],
                           "created_timestamp": [day(int(d)) for d in rng.integers(0, 3, n)],
                           "x": rng.normal(size=n).round(3), "n": rng.integers(0, 100, n)})
        a.ingest(df)
        all_a.append(df)
        dfb = pd.DataFrame({"player_id": rng.integers(0, 5, n), "region": rng.choice(["eu", "us"], n),
                            "game_id": rng.integers(0, 3, n),
                            "event_timestamp": [day(int(d)) for d in rng.integers(0, 12, n)],
                            "created_timestamp": [day(int(d)) for d in rng.integers(0, 3, n)],
                            "s": [f"v{v}" for v in rng.integers(0, 1000, n)],
                            "y": rng.normal(size=n).astype(np.float32)})
        b.ingest(dfb)
        all_b.append(dfb)
    fa = pd.concat(all_a, ignore_index=True)
    fb = pd.concat(all_b, ignore_index=True)
    m = 150
    labels = pd.DataFrame({"player_id": rng.integers(0, 10, m) * spread,  # 8, 9: unknown entities
                           "region": rng.choice(["eu", "us", "ap"], m), "game_id": rng.integers(0, 3, m),
                           "event_timestamp": [day(int(d)) for d in rng.integers(0, 14, m)]})
    ts = fs.training_set(labels, features=["a:x", "a:n", "b:s", "b:y"]).to_pandas()
    ref_a = brute_force(fa, labels, ["player_id"], ["x", "n"], ttl_days * 86_400_000)
    ref_b = brute_force(fb, labels, ["player_id", "region", "game_id"], ["s", "y"], 0)
    for col, ref in [("x", ref_a["x"]), ("n", ref_a["n"]), ("s", ref_b["s"]), ("y", ref_b["y"])]:
        got = ts[col].tolist()
        for g, r in zip(got, ref):
            if r is None:
                assert g is None or g is pd.NA or (isinstance(g, float) and np.isnan(g)), (col, got, ref)
            else:
                assert g == r, (col, g, r)


def test_training_set_errors(fs, fv):
    fv.ingest(frame([1], [0], [1]))
    labels = pd.DataFrame({"player_id": [1], "event_timestamp": [day(1)]})
    with pytest.raises(keel.NotFound, match="feature view 'activity' has no column 'nope'"):
        fs.training_set(labels, features=["activity:nope"])
    with pytest.raises(keel.InvalidArgument, match="not of the form 'view:column'"):
        fs.training_set(labels, features=["activity"])
    with pytest.raises(keel.InvalidArgument, match="labels lack the join key column 'player_id'"):
        fs.training_set(labels.rename(columns={"player_id": "pid"}), features=["activity:sessions"])
    with pytest.raises(keel.InvalidArgument, match="no timestamp column 'ts'"):
        fs.training_set(labels, features=["activity:sessions"], timestamp_column="ts")


# --- online store -------------------------------------------------------------------------------

def test_materialize_get_online_and_reader(ws, fs, fv, online):
    fv.ingest(frame([1, 1, 2, 3], [0, 4, 1, 9], [1, 2, 3, 4]))
    r1 = fs.materialize("activity", end=day(5), online=online)
    assert r1["entities"] == 2 and r1["changed"] == 3
    now = day(12)
    df = fs.get_online(["activity:sessions", "activity:spend"], player_id=[1, 2, 3, 7], now=now)
    # player 1: day 4 (age 8d), player 2: day 1 (age 11d > ttl: stale), 3: not materialized yet
    assert df["sessions"].tolist()[0] == 2
    assert df["activity__stale"].tolist()[:2] == [False, True]
    assert df["sessions"].isna().tolist() == [False, True, True, True]
    assert df["activity__age_ms"].tolist()[0] == 8 * 86_400_000

    reader = fs.online_reader(["activity:sessions", "activity:spend", "activity:level"])
    now_ms = int(now.value // 10**6)
    m = reader.lookup(np.array([1, 2, 3, 7]), now_ms=now_ms)
    assert m.shape == (4, 3) and m.dtype == np.float64
    assert m[0, 0] == 2 and m[0, 1] == 3.0 and np.isnan(m[1:, :]).all()

    fast = fs.get_online(["activity:sessions", "activity:spend", "activity:level"], player_id=[1, 2, 3, 7],
                         now=now, as_numpy=True)
    np.testing.assert_array_equal(fast, m)

    key = reader.snapshot_key
    r2 = fs.materialize("activity", end=day(10))  # incremental: only the day-9 row is new
    assert r2["changed"] == 1 and r2["entities"] == 3
    assert reader.snapshot_key != key  # switched in place
    m = reader.lookup(np.array([3]), now_ms=now_ms)
    assert m[0, 0] == 4

    # Survives a restart.
    ws2 = keel.open(ws.location)
    m2 = ws2.features.online_reader(["activity:sessions"]).lookup(np.array([3, 1]), now_ms=now_ms)
    assert m2[:, 0].tolist() == [4.0, 2.0]


def reference_online(fs, features, now, **keys):
    """get_online's frame by the general Arrow-to-pandas conversion (what its direct build must equal)."""
    from keel.features import _arrow_to_pandas, _key_columns, _to_table
    specs = fs.native.online_keys(features)
    key_table = _key_columns([{"name": k[0], "dtype": k[1]} for k in specs], keys, "keys")
    out = _to_table(fs.native.get_online(features, key_table, specs, int(now.value // 10**6)))
    key_arrays = [key_table.column(k[0]).cast(pa.int64() if k[1] == "int64" else pa.string()) for k in specs]
    return _arrow_to_pandas(pa.Table.from_arrays(key_arrays + out.columns,
                                                 names=[k[0] for k in specs] + out.column_names))


def test_get_online_frame_equals_the_arrow_conversion(ws, fs, fv, online):
    # Every type, with values present, missing (unknown id), stale (past the TTL) and masked (PII).
    fv.ingest(frame([1, 2, 3], [0, 1, 4], [1, 2, 3]))
    other = fs.feature_view("profile", entities=["player"], schema={"sessions": "int32", "joined": "timestamp"})
    other.ingest(pd.DataFrame({"player_id": [1, 3], "event_timestamp": [day(0), day(0)], "sessions": [7, 8],
                               "joined": [day(-3), pd.NaT]}))
    for view in ("activity", "profile"):
        fs.materialize(view, end=day(5), online=online)
    features = ["activity:sessions", "activity:spend", "activity:email", "activity:emb", "activity:vip",
                "activity:level", "profile:sessions", "profile:joined"]
    for ids, now in [([1], day(5)), ([1, 2, 3, 99], day(12)), ([99], day(5)), ([3, 3, 1], day(13))]:
        got = fs.get_online(features, player_id=ids, now=now)
        pd.testing.assert_frame_equal(got, reference_online(fs, features, now, player_id=ids), check_exact=True)
    assert list(got.columns[:3]) == ["player_id", "activity__sessions", "spend"]


def test_get_online_sees_catalog_changes_after_caching(ws, fs, fv, online):
    fv.ingest(frame([1, 2], [0, 0], [1, 2]))
    fs.materialize("activity", end=day(1), online=online)
    for _ in range(2):  # the second call answers from the cached catalog
        assert fs.get_online(["activity:sessions"], player_id=[1], now=day(1))["sessions"].tolist() == [1]

    # Another handle (another connection, as another process would be) materializes new values.
    ws2 = ws.reopen()
    ws2.features.feature_view("activity").ingest(frame([1], [1], [5]))
    ws2.features.materialize("activity", end=day(2))
    assert fs.get_online(["activity:sessions"], player_id=[1], now=day(2))["sessions"].tolist() == [5]

    # A PII grant, and taking it back, are seen at once.
    ws.role = "support"
    assert fs.get_online(["activity:email"], player_id=[1], now=day(2))["email"][0].startswith("pii:")
    ws.access.grant(ws.role, "activity", ["email"])
    assert fs.get_online(["activity:email"], player_id=[1], now=day(2))["email"][0] == "p1@x.io"
    ws.access.revoke(ws.role, "activity", ["email"])
    assert fs.get_online(["activity:email"], player_id=[1], now=day(2))["email"][0].startswith("pii:")

    # Inside a transaction its own uncommitted definition counts, and is gone after the rollback.
    with ws.native.transaction(commit=False):  # what keel.defs dry runs do
        fs.feature_view("activity", entities=["player"], schema={"sessions": "float64"})
        with pytest.raises(keel.NotFound, match=r"'activity' \(version 2\) was never materialized"):
            fs.get_online(["activity:sessions"], player_id=[1], now=day(2))
    assert fs.get_online(["activity:sessions"], player_id=[1], now=day(2))["sessions"].tolist() == [5]

    # A new view version, from the other handle: not materialized yet, then its own values and keys.
    ws2.features.entity("account", join_keys=["account_id"])
    v2 = ws2.features.feature_view("activity", entities=["account"], schema={"sessions": "float64"})
    assert v2.version == 2
    with pytest.raises(keel.InvalidArgument, match="lack the join key 'account_id'"):
        fs.get_online(["activity:sessions"], player_id=[1], now=day(2))
    with pytest.raises(keel.NotFound, match=r"'activity' \(version 2\) was never materialized"):
        fs.get_online(["activity:sessions"], account_id=[1], now=day(2))
    v2.ingest(pd.DataFrame({"account_id": [1], "event_timestamp": [day(1)], "sessions": [0.5]}))
    ws2.features.materialize("activity", end=day(2), online=online)
    got = fs.get_online(["activity:sessions"], account_id=[1], now=day(2))
    assert got.columns[0] == "account_id" and got["sessions"].tolist() == [0.5]

    # The view removed: the next call says so.
    ws2.features.retire_view("activity")
    with pytest.raises(keel.NotFound, match="'activity' was retired"):
        fs.get_online(["activity:sessions"], account_id=[1], now=day(2))


def test_online_errors(fs, fv, online):
    fv.ingest(frame([1], [0], [1]))
    with pytest.raises(keel.NotFound, match="never materialized"):
        fs.get_online(["activity:sessions"], player_id=[1])
    fs.materialize("activity", online=online)
    with pytest.raises(keel.InvalidArgument, match="numbers only"):
        fs.online_reader(["activity:email"])


def test_reader_reads_while_materializing(fs, fv, online):
    import threading
    fv.ingest(frame(list(range(100)), [0] * 100, list(range(100))))
    fs.materialize("activity", end=day(1), online=online)
    reader = fs.online_reader(["activity:sessions"])
    ids = np.arange(100)
    stop = threading.Event()
    bad = []

    def read():
        while not stop.is_set():
            m = reader.lookup(ids, now_ms=int(day(2).value // 10**6))
            if np.isnan(m).any():
                bad.append(m)

    t = threading.Thread(target=read)
    t.start()
    for i in range(5):
        fv.ingest(frame(list(range(100)), [i + 1] * 100, list(range(100))))
        fs.materialize("activity", end=day(i + 1))
    stop.set()
    t.join()
    assert not bad


# --- PII ----------------------------------------------------------------------------------------

def test_pii_masked_everywhere_without_a_grant(ws, fs, fv, online):
    fv.ingest(frame([1, 2], [0, 0], [1, 2]))
    fs.materialize("activity", end=day(1), online=online)
    emails = fv.to_pandas()["email"].tolist()
    assert all(e.startswith("pii:") for e in emails) and emails[0] != emails[1]
    labels = pd.DataFrame({"player_id": [1], "event_timestamp": [day(1)]})
    assert fs.training_set(labels, features=["activity:email"]).to_pandas()["email"][0] == emails[0]
    online = fs.get_online(["activity:email"], player_id=[1], now=day(1))
    assert online["email"][0] == emails[0]
    assert not ws.access.can_read("activity", "email")

    ws.access.grant("support", "activity", ["email"])
    ws.role = "support"
    assert fv.to_pandas()["email"].tolist() == ["p1@x.io", "p2@x.io"]
    assert fs.get_online(["activity:email"], player_id=[1], now=day(1))["email"][0] == "p1@x.io"
    assert ws.access.list().values.tolist() == [["support", "activity", "email"]]

    ws.access.revoke("support", "activity", ["email"])
    assert fv.to_pandas()["email"][0].startswith("pii:")
    with pytest.raises(keel.NotFound, match="no column 'nope'"):
        ws.access.grant("support", "activity", ["nope"])


def test_numeric_pii_is_nulled_for_reader(ws, fs, online):
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("salary", entities=["player"], schema={"income": keel.Float64(pii=True), "age": "int64"})
    fv.ingest(pd.DataFrame({"player_id": [1], "event_timestamp": [T0], "income": [1000.0], "age": [30]}))
    fs.materialize("salary", end=day(1), online=online)
    assert fv.to_pandas()["income"].isna().all()
    m = fs.online_reader(["salary:income", "salary:age"]).lookup(np.array([1]))
    assert np.isnan(m[0, 0]) and m[0, 1] == 30
    ws.access.grant("hr", "salary", "*")
    hr = keel.open(ws.location, role="hr")
    assert hr.features.feature_view("salary").to_pandas()["income"].tolist() == [1000.0]
    assert hr.features.online_reader(["salary:income"]).lookup(np.array([1]))[0, 0] == 1000.0


def test_lineage_links_views_to_training_sets(ws, fs, fv):
    fv.ingest(frame([1], [0], [1]))
    labels = pd.DataFrame({"player_id": [1], "event_timestamp": [day(1)]})
    ts = fs.training_set(labels, features=["activity:sessions"])
    assert "feature_view:activity" in ws.lineage.upstream(ts.lineage_ref)
    assert ts.lineage_ref in ws.lineage.downstream("feature_view:activity")


def test_a_run_consuming_a_training_set_gets_a_lineage_edge(ws, fs, fv):
    fv.ingest(frame([1], [0], [1]))
    labels = pd.DataFrame({"player_id": [1], "event_timestamp": [day(1)]})
    ts = fs.training_set(labels, features=["activity:sessions"])
    with ws.start_run(experiment="churn") as run:
        run.log_input(ts)
    up = ws.lineage.upstream(f"run:{run.id}")
    assert ts.lineage_ref in up and "feature_view:activity" in up
    with ws.start_run(experiment="churn") as run2:
        again = fs.training_set(id=ts.id, run=run2)
    assert again.lineage_ref in ws.lineage.upstream(f"run:{run2.id}")


@pytest.mark.local_objects
def test_files_left_by_a_crash_are_swept_once_old(ws, fs, fv):
    fv.ingest(frame([1], [0], [1]))
    seg_dir = os.path.join(ws.path, "features", "activity", "v1")
    old = [os.path.join(seg_dir, "1-dead.kseg.tmp-abc"), os.path.join(seg_dir, "2-unregistered.kseg")]
    young = os.path.join(seg_dir, "3-inflight.kseg.tmp-def")
    for p in old + [young]:
        with open(p, "wb") as f:
            f.write(b"partial")
    for p in old:
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    fv.ingest(frame([2], [0], [2]))
    assert not any(os.path.exists(p) for p in old) and os.path.exists(young)
    assert len(fv.to_pandas()) == 2


def test_string_and_composite_keys_timestamp_features_online(ws, online):
    fs = ws.features
    fs.entity("user", join_keys={"user_id": "string"})
    fs.entity("game", join_keys={"region": "string", "game_id": "int64"})
    fv = fs.feature_view("plays", entities=["user", "game"], ttl="7d",
                         schema={"last_win": "timestamp", "score": "float32", "emb": "vector[2]"})
    df = pd.DataFrame({"user_id": ["a", "a", "b"], "region": ["eu", "eu", "us"], "game_id": [1, 1, 2],
                       "event_timestamp": [day(0), day(2), day(1)],
                       "last_win": [day(-1), day(1), pd.NaT], "score": [1.5, 2.5, 3.5],
                       "emb": [[1, 2], [3, 4], [5, 6]]})
    fv.ingest(df)
    h = fv.history(user_id="a", region="eu", game_id=1)
    assert h["score"].tolist() == [1.5, 2.5] and h["last_win"].tolist() == [day(-1), day(1)]
    assert fv.to_pandas()["last_win"].isna().tolist() == [False, False, True]
    fs.materialize("plays", end=day(3), online=online)
    on = fs.get_online(["plays:score", "plays:emb", "plays:last_win"], user_id=["a", "b", "zz"],
                       region=["eu", "us", "eu"], game_id=[1, 2, 1], now=day(4))
    assert on["score"].tolist()[:2] == [2.5, 3.5] and np.isnan(on["score"].tolist()[2])
    assert list(on["emb"][0]) == [3.0, 4.0] and on["last_win"][0] == day(1)
    with pytest.raises(keel.InvalidArgument, match="single int64 join key"):
        fs.online_reader(["plays:score"])


def test_custom_timestamp_columns_and_notebook_display(ws):
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("scores", entities=["player"], schema={"score": "float64"},
                         event_timestamp_column="ts", created_timestamp_column="loaded_at")
    fv.ingest(pd.DataFrame({"player_id": [1, 1], "ts": [day(0), day(0)], "loaded_at": [day(2), day(1)],
                            "score": [2.0, 1.0]}))
    assert fv.to_pandas()[["ts", "loaded_at", "score"]].values.tolist() == [[day(0), day(2), 2.0]]
    with pytest.raises(keel.InvalidArgument, match="column 'event_timestamp' is not in feature view 'scores'"):
        fv.ingest(pd.DataFrame({"player_id": [1], "event_timestamp": [day(0)], "score": [1.0]}))
    labels = pd.DataFrame({"player_id": [1], "when": [day(1)]})
    ts = fs.training_set(labels, features=["scores:score"], timestamp_column="when")
    assert ts.to_pandas()["score"].tolist() == [2.0]
    assert "scores" in fv._repr_html_() and ts.id in ts._repr_html_()
    assert "scores" in fs._repr_html_()


def test_a_feature_view_holds_the_core_definition(fs, fv):
    assert isinstance(fv._spec, keel._core.ViewSpec)
    assert [(c.name, c.dtype, c.dim, c.pii) for c in fv._spec.features][:3] == [
        ("sessions", "int64", 0, False), ("spend", "float64", 0, False), ("email", "string", 0, True)]
    with pytest.raises(AttributeError):
        fv._spec.owner = "someone"
    (info,) = fs.list()
    assert isinstance(info, keel._core.ViewInfo) and info.spec.name == "activity" and info.rows == 0
    fv.ingest(frame([1, 2], [0, 1], [3, 4]))
    assert fs.list()[0].rows == 2 and fs.list()[0].last_event_ms == int(day(1).value // 1_000_000)

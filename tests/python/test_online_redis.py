"""The online store on Redis, against a real redis-server: what it writes (incremental, TTL, keys by
entity), the atomic switch (a failed or killed writer leaves the previous materialization served; a
reader never mixes two), the near-cache, and outages. Values equal to the local store's are checked
by the online tests of test_features.py, which run against both stores."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest

import keel

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def day(n):
    return T0 + pd.Timedelta(days=n)


def ms(ts):
    return int(ts.value // 10**6)


@pytest.fixture
def redis(redis_server):
    """The session's redis-server, emptied: these tests look at the keys themselves."""
    redis_server.cli("FLUSHALL")
    return redis_server


@pytest.fixture
def fs(ws):
    ws.features.entity("player", join_keys=["player_id"])
    return ws.features


def view(fs, name="activity", ttl="10d"):
    return fs.feature_view(name, entities=["player"], ttl=ttl, schema={"sessions": "int64", "note": "string"})


def rows(ids, d, sessions, note="x"):
    return pd.DataFrame({"player_id": ids, "event_timestamp": [day(d)] * len(ids), "sessions": sessions,
                         "note": [note] * len(ids)})


def entity_keys(redis, name="activity"):
    return sorted(k for k in redis.cli("KEYS", f"keel:*:{name}:v1:{{*}}").split("\n") if k)


def pointer(redis, name="activity"):
    [key] = [k for k in redis.cli("KEYS", f"keel:*:{name}:v1:current").split("\n") if k]
    return redis.cli("GET", key)


def test_incremental_writes_ttl_and_keys_by_entity(fs, redis):
    fv = view(fs)
    fv.ingest(rows(list(range(50)), 0, list(range(50))))
    first = fs.materialize("activity", end=day(1), online=redis.url)
    assert (first["online"], first["written"], first["entities"]) == (redis.url, 50, 50)
    keys = entity_keys(redis)
    assert len(keys) == 50 and keys[0].endswith(":{0}")  # the hash tag: a Redis Cluster slot per entity
    ttl_ms = int(redis.cli("PTTL", keys[0]))
    assert 0 < ttl_ms <= 10 * 86_400_000  # the view's TTL: an entity not written again leaves Redis

    fv.ingest(rows([3, 7, 99], 1, [30, 70, 990]))
    second = fs.materialize("activity", end=day(2))  # stays on Redis: the view's recorded online store
    assert (second["online"], second["written"], second["entities"]) == (redis.url, 3, 51)
    got = fs.get_online(["activity:sessions"], player_id=[3, 4, 99], now=day(2))
    assert got["sessions"].tolist() == [30, 4, 990]
    # A changed entity keeps its value of the previous materialization (for readers that have not
    # seen the switch yet) and loses older ones once the next switch is done.
    key3 = next(k for k in entity_keys(redis) if k.endswith(":{3}"))
    assert sorted(redis.cli("HKEYS", key3).split("\n")) == ["1", "2"]
    fv.ingest(rows([3], 2, [31]))
    assert fs.materialize("activity", end=day(3))["written"] == 1
    assert sorted(redis.cli("HKEYS", key3).split("\n")) == ["2", "3"]
    assert pointer(redis) == "3 1"

    no_ttl = fs.feature_view("forever", entities=["player"], schema={"sessions": "int64"})
    no_ttl.ingest(pd.DataFrame({"player_id": [1], "event_timestamp": [day(0)], "sessions": [1]}))
    fs.materialize("forever", online=redis.url)
    assert redis.cli("PTTL", entity_keys(redis, "forever")[0]) == "-1"

    back = fs.materialize("activity", end=day(2), online="local")
    assert back["online"] == "" and back["written"] == 0
    assert fs.online_reader(["activity:sessions"]).remote is False


def test_a_refused_write_leaves_the_previous_materialization_served(fs, redis):
    fv = view(fs)
    fv.ingest(rows(list(range(200)), 0, [1] * 200))
    fs.materialize("activity", end=day(1), online=redis.url)
    before = pointer(redis)
    reader = fs.online_reader(["activity:sessions"])
    info = dict(line.split(":", 1) for line in redis.cli("INFO", "memory").splitlines() if ":" in line)
    used = int(info["used_memory"])
    fv.ingest(rows(list(range(200)), 1, [2] * 200, note="y" * 20_000))  # ~4 MB of new values
    redis.cli("CONFIG", "SET", "maxmemory", str(used + 1_000_000))
    try:
        with pytest.raises(keel.Unavailable, match="readers still see the previous one"):
            fs.materialize("activity", end=day(2))
    finally:
        redis.cli("CONFIG", "SET", "maxmemory", "0")
    assert pointer(redis) == before
    ids = np.arange(200)
    assert (reader.lookup(ids, now_ms=ms(day(2))) == 1).all()
    assert (fs.get_online(["activity:sessions"], player_id=list(range(200)), now=day(2))["sessions"] == 1).all()
    # The next one writes every entity again (fields of the refused one may linger) and switches.
    again = fs.materialize("activity", end=day(2))
    assert again["written"] == 200
    assert (reader.lookup(ids, now_ms=ms(day(2))) == 2).all()


def test_a_killed_writer_leaves_the_previous_materialization_served(ws, fs, redis):
    fv = view(fs)
    n = 60_000
    fv.ingest(rows(list(range(n)), 0, [1] * n))
    fs.materialize("activity", end=day(1), online=redis.url)
    fv.ingest(rows(list(range(n)), 1, [2] * n, note="z" * 500))
    before = pointer(redis)
    [seq_key] = [k for k in redis.cli("KEYS", "keel:*:activity:v1:seq").split("\n") if k]
    started = redis.cli("GET", seq_key)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import keel
        keel.open({str(ws.path)!r}).features.materialize("activity")
        """)], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.monotonic() + 60
        while redis.cli("GET", seq_key) == started:  # killed once its write has begun
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.005)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait()
    assert pointer(redis) == before, "the writer switched before being killed: give it more rows"
    got = fs.online_reader(["activity:sessions"]).lookup(np.arange(n), now_ms=ms(day(2)))
    assert (got == 1).all()
    assert fs.materialize("activity")["written"] == n  # a full write: the killed one's fields are ignored
    assert (fs.get_online(["activity:sessions"], player_id=[0, n - 1])["sessions"] == 2).all()


def test_a_reader_never_sees_half_of_a_materialization(ws, fs, redis, monkeypatch):
    monkeypatch.setenv("KEEL_ONLINE_REFRESH_MS", "0")  # every lookup follows the pointer
    fv = view(fs)
    n = 300
    fv.ingest(rows(list(range(n)), 0, [0] * n))
    fs.materialize("activity", end=day(0), online=redis.url)
    # Another handle: materializations of `fs` reach its reader only through Redis.
    reader = ws.reopen().features.online_reader(["activity:sessions"])
    ids = np.arange(n)
    stop = threading.Event()
    seen, mixed, errors = set(), [], []

    def read():
        while not stop.is_set():
            try:
                m = reader.lookup(ids, now_ms=ms(day(8)))
            except keel.KeelError as e:  # pragma: no cover - reported below
                errors.append(e)
                return
            values = set(m[:, 0].tolist())
            seen.update(values)
            if len(values) != 1:
                mixed.append(values)

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(1, 8):
            fv.ingest(rows(list(range(n)), i, [i] * n))
            fs.materialize("activity", end=day(i))
    finally:
        stop.set()
        t.join()
    assert not errors and not mixed
    assert len(seen) > 1  # it did read across materializations


def test_the_near_cache_follows_a_new_materialization(ws, fs, redis, monkeypatch):
    monkeypatch.setenv("KEEL_ONLINE_REFRESH_MS", "300")
    fv = view(fs)
    fv.ingest(rows([1, 2], 0, [10, 20]))
    fs.materialize("activity", end=day(0), online=redis.url)
    reader = ws.reopen().features.online_reader(["activity:sessions"])
    ids = np.array([1])
    now = ms(day(1))
    assert reader.lookup(ids, now_ms=now)[0, 0] == 10
    start = time.perf_counter()
    for _ in range(2000):
        reader.lookup(ids, now_ms=now)
    per_lookup = (time.perf_counter() - start) / 2000
    assert per_lookup < 200e-6, f"{per_lookup * 1e6:.1f} us per cached lookup"  # no round trip to Redis

    fv.ingest(rows([1], 1, [11]))
    fs.materialize("activity", end=day(1))
    deadline = time.monotonic() + 0.3 + 2.0  # the refresh interval, and slack for a loaded machine
    while reader.lookup(ids, now_ms=now)[0, 0] != 11:
        assert time.monotonic() < deadline, "the near-cache did not follow the new materialization"
        time.sleep(0.02)
    fv.ingest(rows([2], 1, [21]))
    fs.materialize("activity", end=day(1))
    reader.refresh()  # now, without waiting for the interval
    assert reader.lookup(np.array([2]), now_ms=now)[0, 0] == 21


def test_staleness_and_age_as_the_local_store_reports_them(fs, redis):
    fv = view(fs, ttl="2d")
    fv.ingest(rows([1], 0, [5]))
    fs.materialize("activity", end=day(0), online=redis.url)
    got = fs.get_online(["activity:sessions"], player_id=[1, 2], now=day(3))
    assert got["activity__stale"].tolist() == [True, False] and got["sessions"].isna().all()
    assert got["activity__age_ms"].tolist()[0] == 3 * 86_400_000
    assert got["activity__event_timestamp"].tolist()[0] == day(0)
    reader = fs.online_reader(["activity:sessions"])
    assert np.isnan(reader.lookup(np.array([1]), now_ms=ms(day(3)))[0, 0])
    assert reader.lookup(np.array([1]), now_ms=ms(day(1)))[0, 0] == 5


def test_redis_down_or_restarted_gives_clear_errors_then_recovers(tmp_path, monkeypatch):
    from servers import RedisServer

    monkeypatch.setenv("KEEL_ONLINE_REFRESH_MS", "0")
    with RedisServer() as redis:  # its own: this test stops and restarts it
        ws = keel.open(tmp_path / "ws.keel")
        ws.features.entity("player", join_keys=["player_id"])
        fv = view(ws.features)
        fv.ingest(rows([1, 2], 0, [10, 20]))
        ws.features.materialize("activity", end=day(0), online=redis.url)
        reader = ws.features.online_reader(["activity:sessions"])
        now = ms(day(1))
        assert reader.lookup(np.array([1]), now_ms=now)[0, 0] == 10

        redis.halt()
        with pytest.raises(keel.Unavailable, match=rf"Redis at {redis.url}.*(retry|reconnects)"):
            reader.lookup(np.array([1]), now_ms=now)
        with pytest.raises(keel.Unavailable, match="redis-server"):
            ws.features.get_online(["activity:sessions"], player_id=[1])
        with pytest.raises(keel.Unavailable):
            ws.features.materialize("activity")

        redis.resume()  # back, empty: no value is served until materialized again
        with pytest.raises(keel.Unavailable, match=r"holds no materialization.*materialize\('activity'\) again"):
            reader.lookup(np.array([1]), now_ms=now)
        with pytest.raises(keel.Unavailable, match="holds no materialization"):
            ws.features.get_online(["activity:sessions"], player_id=[1])
        assert ws.features.materialize("activity", end=day(0))["written"] == 2  # all of them, not the changes
        assert reader.lookup(np.array([2, 1]), now_ms=now)[:, 0].tolist() == [20.0, 10.0]


def test_a_retired_view_takes_its_keys_out_of_redis(fs, redis):
    # Without a TTL nothing else would ever remove them; another view's keys stay.
    view(fs, ttl=None).ingest(rows([1, 2, 3], 0, [1, 2, 3]))
    view(fs, "other").ingest(rows([1], 0, [7]))
    for name in ("activity", "other"):
        fs.materialize(name, end=day(1), online=redis.url)
    assert len(entity_keys(redis)) == 3 and redis.cli("TTL", entity_keys(redis)[0]) == "-1"
    fs.retire_view("activity")
    assert [k for k in redis.cli("KEYS", "keel:*:activity:*").split("\n") if k] == []
    assert len(entity_keys(redis, "other")) == 1 and pointer(redis, "other")


def test_bad_online_urls_are_refused_with_the_form_expected(fs):
    view(fs).ingest(rows([1], 0, [1]))
    with pytest.raises(keel.InvalidArgument, match="not a Redis URL: expected redis://host:port/db"):
        fs.materialize("activity", online="http://x")
    with pytest.raises(keel.InvalidArgument, match="KEEL_REDIS_PASSWORD"):
        fs.materialize("activity", online="redis://:secret@127.0.0.1:6379/0")
    with pytest.raises(keel.InvalidArgument, match="port 'abc' is not a number"):
        fs.materialize("activity", online="redis://127.0.0.1:abc/0")
    with pytest.raises(keel.NotFound, match="never materialized"):  # nothing was recorded
        fs.get_online(["activity:sessions"], player_id=[1])

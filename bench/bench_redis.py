"""Online store on Redis: Keel against Feast's Redis online store, same redis-server, same data, same run.

Both materialize the same view (N_ENTITIES players x 10 float features) into one redis-server started
here (tests/servers/servers.py), then look up one entity and 1,000 entities:
- Keel's OnlineReader: warm (the ids are in its near-cache, which follows the materialization pointer)
  and cold (every id a miss: one pipelined round trip per call), and get_online() (a DataFrame: Redis
  read on every call in one round trip; the catalog entries it needs kept while the change token stays);
- Feast's get_online_features() (reads Redis on every call), as .to_dict() and, against get_online's
  DataFrame, also as .to_df().
Values are checked equal. Sizes: KEEL_BENCH_SCALE (1 = 100,000 entities).
Run: bench/run.sh redis   (installs feast[redis] from bench/requirements-redis.txt into bench/.work/)
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "servers"))
import keel  # noqa: E402  (the checkout's package and test servers, put on the path above)
from servers import RedisServer  # noqa: E402

SCALE = float(os.environ.get("KEEL_BENCH_SCALE", "1"))
N_ENTITIES = int(100_000 * SCALE)
FEATS = [f"f{i}" for i in range(10)]
T0 = pd.Timestamp("2026-01-01", tz="UTC")

results: list[tuple[str, str, str, str, str]] = []


def per_call(fn, calls, batches=5):
    """Seconds per call: the median of `batches` timed loops of calls/batches calls (after one warm-up
    call), so one burst of the shared machine's other work moves the figure less."""
    fn()
    times = []
    for _ in range(batches):
        n = max(calls // batches, 1)
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n)
    return float(np.median(times))


def fmt(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


def record(what, keel_s, peer, peer_s):
    results.append((what, fmt(keel_s), peer, fmt(peer_s), f"{peer_s / keel_s:.1f}x"))
    print(f"  {what}: keel {fmt(keel_s)}, {peer} {fmt(peer_s)} ({peer_s / keel_s:.1f}x)", flush=True)


def data():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({f: rng.random(N_ENTITIES) for f in FEATS})
    df.insert(0, "player_id", np.arange(N_ENTITIES, dtype=np.int64))
    df.insert(1, "event_timestamp", T0 - pd.to_timedelta(rng.integers(0, 86_400_000, N_ENTITIES), unit="ms"))
    return df


def keel_workspace(tmp, df):
    """Keel's side of the data: the view `activity` of `player`, ingested."""
    ws = keel.open(os.path.join(tmp, "ws.keel"))
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("activity", entities=["player"], ttl="3650d", schema={f: "float64" for f in FEATS})
    fv.ingest(df)
    return ws


def feast_store(tmp, redis, df):
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64

    repo = os.path.join(tmp, "feast_repo")
    os.makedirs(os.path.join(repo, "data"))
    parquet = os.path.join(repo, "data", "activity.parquet")
    df.to_parquet(parquet)
    with open(os.path.join(repo, "feature_store.yaml"), "w") as fh:
        fh.write("project: bench\nregistry: data/registry.db\nprovider: local\n"
                 f"online_store:\n  type: redis\n  connection_string: \"127.0.0.1:{redis.port},db=1\"\n"
                 "offline_store:\n  type: file\nentity_key_serialization_version: 3\n")
    store = FeatureStore(repo_path=repo)
    player = Entity(name="player", join_keys=["player_id"])
    source = FileSource(path=parquet, timestamp_field="event_timestamp")
    view = FeatureView(name="activity", entities=[player], ttl=dt.timedelta(days=3650),
                       schema=[Field(name=f, dtype=Float64) for f in FEATS], source=source, online=True)
    store.apply([player, view])
    return store


def main():
    try:
        import feast
    except Exception as e:  # noqa: BLE001
        print(f"feast not importable ({type(e).__name__}: {e}): run bench/run.sh redis")
        return
    print(f"online store on Redis: {N_ENTITIES:,} entities x {len(FEATS)} features, feast {feast.__version__}",
          flush=True)
    tmp = tempfile.mkdtemp(prefix="keel-bench-redis-")
    try:
        with RedisServer() as redis:
            df = data()
            ws = keel_workspace(tmp, df)
            store = feast_store(tmp, redis, df)

            end = T0 + pd.Timedelta(days=1)
            t = time.perf_counter()
            ws.features.materialize("activity", end=end, online=redis.url)
            t_km = time.perf_counter() - t
            t = time.perf_counter()
            store.materialize(start_date=(T0 - pd.Timedelta(days=2)).to_pydatetime(), end_date=end.to_pydatetime())
            t_fm = time.perf_counter() - t
            record(f"materialize {N_ENTITIES:,} entities to Redis", t_km, "Feast materialize (Redis)", t_fm)

            # Incremental: 1% of the entities change.
            changed = df.sample(frac=0.01, random_state=1).copy()
            changed["event_timestamp"] = end - pd.Timedelta(hours=1)
            ws.features.feature_view("activity").ingest(changed)
            t = time.perf_counter()
            out = ws.features.materialize("activity", end=end + pd.Timedelta(hours=1))
            t_kinc = time.perf_counter() - t
            print(f"  keel incremental materialize ({out['written']:,} entities written): {fmt(t_kinc)}", flush=True)
            df.loc[changed.index, FEATS] = changed[FEATS]

            refs = [f"activity:{f}" for f in FEATS]
            rng = np.random.default_rng(7)
            ids = rng.integers(0, N_ENTITIES, 1000).astype(np.int64)
            one = ids[:1]
            reader = ws.features.online_reader(refs)
            km = reader.lookup(ids)
            expect = df.set_index("player_id").loc[ids, FEATS].to_numpy()
            assert np.allclose(km, expect), "keel's Redis values differ from the data"
            fo = store.get_online_features(features=refs, entity_rows=[{"player_id": int(i)} for i in ids]).to_dict()
            fmat = np.array([[np.nan if v is None else v for v in fo[f]] for f in FEATS]).T
            changed_ids = set(changed.player_id)
            fresh = np.array([i not in changed_ids for i in ids])  # Feast was materialized before the change
            assert np.allclose(fmat[fresh], km[fresh]), "keel and feast online values disagree"

            t_f1 = per_call(lambda: store.get_online_features(
                features=refs, entity_rows=[{"player_id": int(one[0])}]).to_dict(), 300)
            t_f1000 = per_call(lambda: store.get_online_features(
                features=refs, entity_rows=[{"player_id": int(i)} for i in ids]).to_dict(), 10)
            # Feast's answer as a DataFrame too: what get_online returns.
            t_f1_df = per_call(lambda: store.get_online_features(
                features=refs, entity_rows=[{"player_id": int(one[0])}]).to_df(), 300)
            t_f1000_df = per_call(lambda: store.get_online_features(
                features=refs, entity_rows=[{"player_id": int(i)} for i in ids]).to_df(), 10)

            t_k1 = per_call(lambda: reader.lookup(one), 20_000)
            t_k1000 = per_call(lambda: reader.lookup(ids), 200)
            # Cold: a new reader per pass over ids it has never seen (pointer read + one round trip).
            cold_ids = rng.permutation(N_ENTITIES).astype(np.int64)
            cold = ws.features.online_reader(refs)
            pos = [0]

            def cold_lookup(n):
                batch = cold_ids[pos[0]:pos[0] + n]
                pos[0] += n
                return cold.lookup(batch)

            t_k1_cold = per_call(lambda: cold_lookup(1), 2000)
            t_k1000_cold = per_call(lambda: cold_lookup(1000), min(50, N_ENTITIES // 1000 - 3))
            t_kdf1 = per_call(lambda: ws.features.get_online(refs, player_id=one), 300)
            t_kdf1000 = per_call(lambda: ws.features.get_online(refs, player_id=ids), 20)

            record("1 entity x 10, reader (near-cache warm)", t_k1, "Feast get_online_features", t_f1)
            record("1 entity x 10, reader (cold: Redis round trip)", t_k1_cold, "Feast get_online_features", t_f1)
            record("1 entity x 10, get_online DataFrame", t_kdf1, "Feast get_online_features", t_f1)
            record("1 entity x 10, get_online DataFrame", t_kdf1, "Feast get_online_features().to_df()", t_f1_df)
            record("1,000 entities, reader (near-cache warm)", t_k1000, "Feast get_online_features", t_f1000)
            record("1,000 entities, reader (cold: Redis round trip)", t_k1000_cold, "Feast get_online_features",
                   t_f1000)
            record("1,000 entities, get_online DataFrame", t_kdf1000, "Feast get_online_features", t_f1000)
            record("1,000 entities, get_online DataFrame", t_kdf1000, "Feast get_online_features().to_df()",
                   t_f1000_df)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| measurement | Keel | peer | peer time | Keel speed-up |\n| --- | --- | --- | --- | --- |")
    for row in results:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

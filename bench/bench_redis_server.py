"""Online features over HTTP on Redis: keel-server's features route against Feast's feature server.

Both read the same redis-server (started here, tests/servers/servers.py) holding the same view
(bench_redis.py's data: N_ENTITIES players x 10 float features; Feast in db 1, Keel under its
workspace's prefix in db 0):
- Keel: `keel.serve(ws, threads=2)`, POST /v1/features/online. Its route reads through compiled
  readers whose near-cache follows the materialization pointer: once a second by default, and on
  every request with KEEL_ONLINE_REFRESH_MS=0 (so each request makes one Redis round trip);
- Feast: `feast serve --workers 2` on the same feature_store.yaml, POST /get-online-features (it
  reads Redis on every request).
Answers are checked equal for 100 players first. wrk (Debian; keep-alive connections, a pool of
request bodies for random players formatted once: bench/wrk_post.lua) drives each server for
DURATION seconds after a 1 s warm-up, one entity and 1,000 entities a request, at 1 connection (one
request at a time: latency) and at 16 (throughput), on the same 2 cores as the servers.
Run: bench/run.sh redis_server (feast[redis] from bench/requirements-redis_server.txt).
Knobs: QUICK=1 (3 s runs), DURATION, KEEL_BENCH_SCALE (1 = 100,000 entities).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "servers"))
sys.path.insert(0, HERE)
import keel  # noqa: E402  (the checkout's package, test servers and sibling benches, put on the path above)
from bench_redis import FEATS, N_ENTITIES, T0, data, feast_store, keel_workspace  # noqa: E402
from bench_server import BIN, Peer, free_port, machine, wrk  # noqa: E402
from servers import RedisServer  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
DURATION = int(os.environ.get("DURATION", 3 if QUICK else 10))
REFS = [f"activity:{f}" for f in FEATS]
CONNECTIONS = (1, 16)
ENTITIES = (1, 1000)


def start_feast(tmp: str, store) -> Peer:
    port = free_port()
    return Peer("feast", [os.path.join(BIN, "feast"), "serve", "--host", "127.0.0.1", "--port", str(port),
                          "--workers", "2", "--no-access-log"],
                port, "/health", os.path.join(tmp, "feast.log"), cwd=store.repo_path)


def check(keel_server, feast: Peer, players: list[int]) -> None:
    got = keel_server.online_features(REFS, {"player_id": players})["features"]
    status, body = feast.post("/get-online-features", {"features": REFS, "entities": {"player_id": players}})
    assert status == 200, f"feast: HTTP {status} {body[:300]!r}"
    doc = json.loads(body)
    names = doc["metadata"]["feature_names"]
    for ref in REFS:
        theirs = doc["results"][names.index(ref.split(":")[1])]["values"]
        assert got[ref]["status"] == ["ok"] * len(players), got[ref]["status"]
        assert got[ref]["values"] == theirs, f"Keel and Feast disagree on {ref}"
    print(f"  answers: Keel's features route equals Feast's for {len(players)} players x {len(REFS)} features",
          flush=True)


def run(who: str, url: str, path: str, c: int, n: int, token: str | None = None) -> dict:
    r = wrk(url, path, c, token=token, entities=n, duration=DURATION, features=REFS, players=N_ENTITIES,
            pool=10_000 if n == 1 else 200)
    err = f"  ERRORS {r['errors']}" if r["errors"] else ""
    print(f"  {n:>5} entities c={c:<3} {who:<22} {r['rps']:>9,.0f} req/s  p50 {r['p50']:8.2f} ms  "
          f"p99 {r['p99']:8.2f} ms{err}", flush=True)
    return r


def main() -> None:
    try:
        import feast
    except Exception as e:  # noqa: BLE001
        print(f"feast not importable ({type(e).__name__}: {e}): run bench/run.sh redis_server")
        return
    print(f"features over HTTP on Redis: {N_ENTITIES:,} entities x {len(FEATS)} features, feast {feast.__version__}, "
          f"{DURATION} s per wrk run; {machine()}", flush=True)
    tmp = tempfile.mkdtemp(prefix="keel-bench-redis-server-")
    servers: list = []
    rows: list[tuple] = []
    try:
        with RedisServer() as redis:
            df = data()
            ws = keel_workspace(tmp, df)
            end = T0 + pd.Timedelta(days=1)
            ws.features.materialize("activity", end=end, online=redis.url)
            store = feast_store(tmp, redis, df)
            t = time.perf_counter()
            store.materialize(start_date=(T0 - pd.Timedelta(days=2)).to_pydatetime(), end_date=end.to_pydatetime())
            print(f"  feast materialize: {time.perf_counter() - t:.1f} s", flush=True)

            feast_peer = start_feast(tmp, store)
            servers.append(feast_peer)
            keel_default = keel.serve(ws, threads=2)
            servers.append(keel_default)
            keel_every = keel.serve(ws, threads=2, env={"KEEL_ONLINE_REFRESH_MS": "0"})
            servers.append(keel_every)
            players = [int(p) for p in df.player_id.sample(100, random_state=3)]
            check(keel_default, feast_peer, players)
            check(keel_every, feast_peer, players)

            for n in ENTITIES:
                for c in CONNECTIONS:
                    k = run("keel (near-cache, 1 s)", keel_default.url, "/v1/features/online", c, n,
                            keel_default.token)
                    k0 = run("keel (pointer per req)", keel_every.url, "/v1/features/online", c, n, keel_every.token)
                    f = run("feast serve", feast_peer.url, "/get-online-features", c, n)
                    rows.append((n, c, k, k0, f))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| entities | conns | Keel req/s (p50, p99) | Keel, Redis pointer every request | Feast req/s (p50, p99) "
          "| Keel / Feast | pointer every request / Feast |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def cell(r: dict) -> str:
        err = f", {r['errors']} errors" if r["errors"] else ""
        return f"{r['rps']:,.0f} ({r['p50']:.2f} / {r['p99']:.2f} ms{err})"

    for n, c, k, k0, f in rows:
        print(f"| {n:,} | {c} | {cell(k)} | {cell(k0)} | {cell(f)} | {k['rps'] / f['rps']:.1f}x | "
              f"{k0['rps'] / f['rps']:.1f}x |")


if __name__ == "__main__":
    main()

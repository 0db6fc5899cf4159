#!/usr/bin/env python3
"""Keel's native HTTP server (`keel serve`) against the services a team would run, same model, same run.

Data: 100,000 players with 20 numeric features in a Keel feature view (materialized online); two
LightGBM binary models of 500 trees (depth 7) on those features, logged with ws.models.log_model
(native flavour) as churn/1 and churn/2; an endpoint `churn` routing champion/challenger 50/50 with
plugins/routing/sticky.lua, reading the 20 features online by player_id.

Each server runs as its own process on loopback, started and stopped by this script, and is loaded by
wrk (bench/wrk_post.lua: random player ids, the Authorization header) with the same settings:
1, 16 and 64 connections, -d DURATION, --latency; requests/s, p50 and p99 parsed from wrk's output.
  - Keel: keel.serve(ws, ["churn"], threads=2); JSON answers, and compact ones
    (Accept: application/x-keel-compact) at 64 connections; POST /v1/features/online for 1 and 100
    entities.
  - FastAPI + uvicorn (bench/peers/fastapi_app.py, 2 workers): the booster loaded once, features in
    an in-memory pandas DataFrame, sticky A/B by hashing player_id.
  - BentoML (bench/peers/bentoml_service.py, 2 workers): the same service in BentoML.
  - `mlflow models serve` (2 workers) on the champion logged with mlflow.lightgbm: it has no feature
    store, so its request carries the 20 feature values (a dataframe_split body).
  - the Feast feature server (`feast serve`, SQLite online store, the same features materialized)
    POST /get-online-features, against Keel's features route.
Answers are checked before any timing: Keel's prediction for a player equals the FastAPI and BentoML
peers' for the same model (1e-6), MLflow's for the champion, and Feast's feature values equal Keel's.
The load generator shares the 2-core machine with the server under test (wrk -t1 at 1 connection,
-t2 above). Ratios are Keel's requests/s over the peer's.

Run it with ``bench/run.sh server`` (peers live only in bench/.work/venv-server).
Environment knobs: QUICK=1 (3 s runs, 100 trees), DURATION (seconds per wrk run), TREES, PLAYERS.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import keel  # noqa: E402
from keel import compact  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
DURATION = int(os.environ.get("DURATION", 3 if QUICK else 10))
TREES = int(os.environ.get("TREES", 100 if QUICK else 500))
PLAYERS = int(os.environ.get("PLAYERS", 100_000))
CONNECTIONS = (1, 16, 64)
N_FEATURES = 20
FEATS = [f"feature_{i:02d}" for i in range(N_FEATURES)]  # not f0..: names LightGBM would make up
REFS = [f"activity:{f}" for f in FEATS]
T0 = pd.Timestamp("2026-01-01", tz="UTC")
TOKEN = "bench-token-0123456789abcdef"  # the peers' bearer token (Keel makes its own)
BIN = os.path.dirname(sys.executable)  # the venv's console scripts: uvicorn, mlflow, bentoml, feast
COMPACT = "application/x-keel-compact"

FOOTNOTES = [
    "Keel, FastAPI and BentoML look the 20 features up by player_id and route champion/challenger 50/50; "
    "MLflow has no feature store and no routing: its request carries the 20 values (dataframe_split) and it "
    "serves the champion alone.",
    "Keel / best peer: Keel's requests/s over the fastest peer's on that row (at least that over every peer).",
    "Every server gets 2 workers or threads; wrk (-t1 at 1 connection, -t2 above) runs on the same 2 cores.",
]

rows: list[dict] = []  # one per (workload, connections): Keel's numbers and each peer's
notes: list[str] = []


# ------------------------------------------------------------------------------------------- data

def make_data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(PLAYERS, N_FEATURES))
    logit = X[:, :8] @ rng.normal(size=8) + 0.5 * X[:, 8] * X[:, 9] - 0.3 * X[:, 10] ** 2
    y = (logit + rng.logistic(size=PLAYERS) > 0).astype(int)
    frame = pd.DataFrame(X, columns=FEATS)
    frame.insert(0, "player_id", np.arange(PLAYERS, dtype=np.int64))
    frame.insert(1, "event_timestamp", T0)
    return frame, y


def train(frame: pd.DataFrame, y: np.ndarray, seed: int):
    import lightgbm as lgb
    rows_ = np.random.default_rng(seed).choice(len(frame), 15_000, replace=False)
    data = lgb.Dataset(frame.loc[rows_, FEATS], label=y[rows_])
    params = {"objective": "binary", "num_leaves": 96, "max_depth": 7, "learning_rate": 0.05,
              "min_data_in_leaf": 10, "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1,
              "seed": seed, "num_threads": 2, "verbose": -1}
    return lgb.train(params, data, num_boost_round=TREES)


def keel_workspace(path: str, frame: pd.DataFrame, boosters) -> keel.Workspace:
    ws = keel.open(path)
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("activity", entities=["player"], ttl="3650d",
                                  schema={f: "float64" for f in FEATS})
    fv.ingest(frame)
    ws.features.materialize("activity")
    for booster in boosters:
        mv = ws.models.log_model(None, booster, "churn", input_example=frame[FEATS].head(5))
        flavour = ws.models.get(f"churn/{mv.version}").flavour
        assert flavour == "keel-native", f"churn/{mv.version} was stored as {flavour!r}, not natively"
    ws.models.set_alias("churn", "champion", 1)
    ws.models.set_alias("churn", "challenger", 2)
    ws.endpoint("churn", routing="plugins/routing/sticky.lua",
                variants={"champion": ("churn@champion", 0.5), "challenger": ("churn@challenger", 0.5)},
                features=REFS)
    return ws


# ----------------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    """A peer server: its own process group (uvicorn, gunicorn and BentoML fork workers), its log."""

    def __init__(self, name: str, args: list[str], port: int, health: str, log: str, cwd: str | None = None,
                 env: dict | None = None, startup: float = 180.0):
        self.name, self.port, self.log_path = name, port, log
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "w") as out:
            # The venv's bin first: mlflow starts `uvicorn` by name.
            path = BIN + os.pathsep + os.environ.get("PATH", "")
            self.process = subprocess.Popen(args, cwd=cwd, env={**os.environ, "PATH": path, **(env or {})}, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + startup
        while time.time() < deadline:
            if self.process.poll() is not None:
                self.stop()  # workers it forked may outlive it
                raise RuntimeError(f"{name} exited with {self.process.returncode} at start:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + health, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{name} did not answer {health} within {startup:.0f} s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-3000:]

    def post(self, path: str, body, headers: dict | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def stop(self) -> None:
        """SIGTERM to the group this process leads (its workers too), SIGKILL after 15 s."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(15)
            except ProcessLookupError:
                pass
        try:  # workers that outlived their parent
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ---------------------------------------------------------------------------------------- wrk

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def wrk(url: str, path: str, connections: int, *, token: str | None = None, accept: str = "application/json",
        entities: int = 0, bodies: str | None = None, duration: int | None = None,
        features: list[str] | None = None, players: int | None = None, pool: int | None = None) -> dict:
    """One wrk run: {"rps", "p50", "p99" (ms), "errors", "requests"}; a short warm-up run first.
    features / players / pool: the refs, id range and number of distinct bodies (default: this file's)."""
    env = {**os.environ, "WRK_PATH": path, "WRK_ACCEPT": accept, "WRK_PLAYERS": str(players or PLAYERS),
           "WRK_ENTITIES": str(entities), "WRK_FEATURES": ",".join(features or REFS)}
    if pool:
        env["WRK_POOL"] = str(pool)
    if token:
        env["WRK_TOKEN"] = token
    if bodies:
        env["WRK_BODIES"] = bodies
    threads = 1 if connections == 1 else 2
    base = ["wrk", f"-t{threads}", f"-c{connections}", "--timeout", "10s", "-s", os.path.join(HERE, "wrk_post.lua")]
    subprocess.run(base + ["-d", "1s", url], env=env, capture_output=True, check=True)  # warm-up
    out = subprocess.run(base + ["-d", f"{duration or DURATION}s", "--latency", url], env=env,
                         capture_output=True, text=True, check=True).stdout
    got = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
           "requests": int(re.search(r"(\d+) requests in", out).group(1)),
           "p50": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
           "p99": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)), "errors": 0}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    got["errors"] = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    if got["errors"]:
        print(f"    wrk reported errors:\n{out}", flush=True)
    return got


def show(who: str, workload: str, c: int, r: dict) -> None:
    err = f"  ERRORS {r['errors']}" if r["errors"] else ""
    print(f"  {workload:<28} c={c:<3} {who:<10} {r['rps']:>10,.0f} req/s  p50 {r['p50']:7.2f} ms  "
          f"p99 {r['p99']:7.2f} ms{err}", flush=True)


def record(workload: str, c: int, keel_r: dict, peers: dict[str, dict | None]) -> None:
    rows.append({"workload": workload, "c": c, "keel": keel_r, "peers": peers})


# --------------------------------------------------------------------------------------- peers

def start_fastapi(tmp: str, env: dict) -> Peer:
    port = free_port()
    return Peer("fastapi", [os.path.join(BIN, "uvicorn"), "fastapi_app:app", "--host", "127.0.0.1", "--port",
                            str(port), "--workers", "2", "--no-access-log", "--log-level", "warning"],
                port, "/healthz", os.path.join(tmp, "fastapi.log"), cwd=os.path.join(HERE, "peers"), env=env)


def start_bentoml(tmp: str, env: dict) -> Peer:
    port = free_port()
    return Peer("bentoml", [os.path.join(BIN, "bentoml"), "serve", "bentoml_service:Churn", "--host", "127.0.0.1",
                            "--port", str(port)],
                port, "/readyz", os.path.join(tmp, "bentoml.log"), cwd=os.path.join(HERE, "peers"),
                env={**env, "BENTOML_HOME": os.path.join(tmp, "bentoml_home"), "BENTOML_DO_NOT_TRACK": "true"})


def start_mlflow(tmp: str, booster) -> Peer:
    import mlflow.lightgbm
    model_dir = os.path.join(tmp, "mlflow_model")
    mlflow.lightgbm.save_model(booster, model_dir)
    port = free_port()
    return Peer("mlflow", [os.path.join(BIN, "mlflow"), "models", "serve", "-m", model_dir, "--host", "127.0.0.1",
                           "--port", str(port), "--env-manager", "local", "--workers", "2"],
                port, "/ping", os.path.join(tmp, "mlflow.log"),
                env={"MLFLOW_TRACKING_URI": f"file://{tmp}/mlruns"})


def start_feast(tmp: str, frame: pd.DataFrame) -> Peer:
    import datetime as dt

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64
    repo = os.path.join(tmp, "feast_repo")
    os.makedirs(os.path.join(repo, "data"))
    parquet = os.path.join(repo, "data", "activity.parquet")
    frame.to_parquet(parquet)
    with open(os.path.join(repo, "feature_store.yaml"), "w") as fh:
        fh.write("project: bench\nregistry: data/registry.db\nprovider: local\n"
                 "online_store:\n  type: sqlite\n  path: data/online.db\n"
                 "offline_store:\n  type: file\nentity_key_serialization_version: 3\n")
    store = FeatureStore(repo_path=repo)
    player = Entity(name="player", join_keys=["player_id"], value_type=ValueType.INT64)
    view = FeatureView(name="activity", entities=[player], ttl=dt.timedelta(days=3650),
                       schema=[Field(name=f, dtype=Float64) for f in FEATS],
                       source=FileSource(path=parquet, timestamp_field="event_timestamp"), online=True)
    store.apply([player, view])
    t0 = time.perf_counter()
    store.materialize(start_date=dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc),
                      end_date=dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc))
    print(f"  feast materialize: {time.perf_counter() - t0:.1f} s", flush=True)
    port = free_port()
    return Peer("feast", [os.path.join(BIN, "feast"), "serve", "--host", "127.0.0.1", "--port", str(port),
                          "--workers", "2", "--no-access-log"],
                port, "/health", os.path.join(tmp, "feast.log"), cwd=repo)


# ------------------------------------------------------------------------------------- checks

def check_predictions(server, frame: pd.DataFrame, fastapi: Peer | None, bentoml: Peer | None,
                      mlflow: Peer | None, players: list[int]) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    worst = {"fastapi": 0.0, "bentoml": 0.0, "mlflow": 0.0}
    for p in players:
        k = server.predict("churn", {"player_id": p})
        variant = k["variant"]
        for name, peer in (("fastapi", fastapi), ("bentoml", bentoml)):
            if peer is None:
                continue
            status, body = peer.post("/predict", {"player_id": p, "variant": variant}, auth)
            assert status == 200, f"{name}: HTTP {status} {body[:300]!r}"
            got = json.loads(body)
            assert got["version"] == k["version"], (name, got, k)
            worst[name] = max(worst[name], abs(got["prediction"] - k["prediction"]))
        if mlflow is not None and variant == "champion":
            status, body = mlflow.post("/invocations", mlflow_body(frame, p))
            assert status == 200, f"mlflow: HTTP {status} {body[:300]!r}"
            worst["mlflow"] = max(worst["mlflow"], abs(json.loads(body)["predictions"][0] - k["prediction"]))
    print("  answers: largest |Keel - peer| over "
          f"{len(players)} players: " + ", ".join(f"{n} {v:.1e}" for n, v in worst.items()), flush=True)
    for name, v in worst.items():
        assert v <= 1e-6, f"Keel and {name} disagree by {v}"


def mlflow_body(frame: pd.DataFrame, player: int) -> dict:
    values = frame.loc[player, FEATS].to_numpy(dtype=float).tolist()
    return {"dataframe_split": {"columns": FEATS, "data": [values]}}


def check_features(server, feast: Peer, players: list[int]) -> None:
    got = server.online_features(REFS, {"player_id": players})["features"]
    status, body = feast.post("/get-online-features", {"features": REFS, "entities": {"player_id": players}})
    assert status == 200, f"feast: HTTP {status} {body[:300]!r}"
    doc = json.loads(body)
    names = doc["metadata"]["feature_names"]
    for ref in REFS:
        col = ref.split(":")[1]
        theirs = doc["results"][names.index(col)]["values"]
        assert got[ref]["status"] == ["ok"] * len(players), got[ref]["status"]
        assert got[ref]["values"] == theirs, f"Keel and Feast disagree on {ref}"
    print(f"  answers: Keel's features route equals Feast's for {len(players)} players x {len(REFS)} features",
          flush=True)


# --------------------------------------------------------------------------------------- main

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; load average {load}")


def fmt_peer(r: dict | None) -> str:
    if r is None:
        return "-"
    err = f" ({r['errors']:,} errors)" if r["errors"] else ""
    return f"{r['rps']:,.0f} / {r['p99']:.1f} ms{err}"


def table() -> str:
    peers = ["FastAPI", "BentoML", "MLflow", "Feast"]
    out = ["| workload | conns | Keel req/s | Keel p50 | Keel p99 | " +
           " | ".join(f"{p} req/s / p99" for p in peers) + " | Keel / best peer |",
           "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in peers) + " | ---: |"]
    for row in rows:
        k = row["keel"]
        there = [row["peers"].get(p) for p in peers]
        best = max((r["rps"] for r in there if r), default=0.0)
        ratio = f"{k['rps'] / best:,.1f}x" if best else "-"
        err = f" ({k['errors']:,} errors)" if k["errors"] else ""
        out.append(f"| {row['workload']} | {row['c']} | {k['rps']:,.0f}{err} | {k['p50']:.2f} ms | {k['p99']:.2f} ms | "
                   + " | ".join(fmt_peer(r) for r in there) + f" | {ratio} |")
    return "\n".join(out)


def main() -> None:
    import lightgbm as lgb
    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="keel-bench-server-")
    servers: list = []
    try:
        print(f"{machine()}\ndata: {PLAYERS:,} players x {N_FEATURES} features; 2 LightGBM models of {TREES} trees; "
              f"wrk {DURATION} s per run", flush=True)
        frame, y = make_data()
        t0 = time.perf_counter()
        boosters = [train(frame, y, 1), train(frame, y, 2)]
        depth = max(lgb_depth(t["tree_structure"]) for t in boosters[0].dump_model()["tree_info"])
        print(f"  trained in {time.perf_counter() - t0:.1f} s (deepest tree: {depth})", flush=True)
        ws = keel_workspace(os.path.join(tmp, "ws.keel"), frame, boosters)

        # The peers' inputs: the same feature rows, the same models (LightGBM text files).
        feat_file = os.path.join(tmp, "features.parquet")
        frame[["player_id", *FEATS]].to_parquet(feat_file)
        peer_env = {"PEER_FEATURES": feat_file, "PEER_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"}
        for name, booster in zip(("champion", "challenger"), boosters):
            path = os.path.join(tmp, f"{name}.txt")
            booster.save_model(path)
            peer_env[f"PEER_{name.upper()}"] = path
        assert isinstance(boosters[0], lgb.Booster)

        server = keel.serve(ws, ["churn"], threads=2)
        servers.append(server)
        players = [int(p) for p in np.random.default_rng(3).integers(0, PLAYERS, 200)]

        fastapi = start_fastapi(tmp, peer_env)
        servers.append(fastapi)
        bentoml = None
        try:
            bentoml = start_bentoml(tmp, peer_env)
            servers.append(bentoml)
        except Exception as e:  # noqa: BLE001 - a peer that cannot start is reported, not fatal
            notes.append(f"BentoML left out: {type(e).__name__}: {str(e)[:500]}")
            print(f"  {notes[-1]}", flush=True)
        mlflow = start_mlflow(tmp, boosters[0])
        servers.append(mlflow)
        check_predictions(server, frame, fastapi, bentoml, mlflow, players)

        size = len(server.request("POST", "/v1/endpoints/churn/predict", {"player_id": 42}, accept=COMPACT)[1])
        decoded = compact.decode(server.request("POST", "/v1/endpoints/churn/predict", {"player_id": 42},
                                                accept=COMPACT)[1])
        json_size = len(server.request("POST", "/v1/endpoints/churn/predict", {"player_id": 42})[1])
        print(f"  compact answer: {size} bytes ({decoded}); JSON answer {json_size} bytes", flush=True)
        notes.append(f"compact answer: {size} bytes (JSON: {json_size} bytes)")

        # MLflow's bodies carry the features: one line per random player, written once.
        mlflow_bodies = os.path.join(tmp, "mlflow_bodies.jsonl")
        with open(mlflow_bodies, "w") as f:
            for p in np.random.default_rng(4).integers(0, PLAYERS, 10_000):
                f.write(json.dumps(mlflow_body(frame, int(p))) + "\n")

        predict = "/v1/endpoints/churn/predict"
        print("predict, JSON:", flush=True)
        for c in CONNECTIONS:
            k = wrk(server.url, predict, c, token=server.token)
            show("keel", "predict (JSON)", c, k)
            peers: dict[str, dict | None] = {}
            for label, peer, path, extra in (("FastAPI", fastapi, "/predict", {}),
                                              ("BentoML", bentoml, "/predict", {}),
                                              ("MLflow", mlflow, "/invocations", {"bodies": mlflow_bodies})):
                if peer is None:
                    continue
                peers[label] = wrk(peer.url, path, c, token=TOKEN, **extra)
                show(label, "predict (JSON)", c, peers[label])
            record("predict, JSON", c, k, peers)
        k = wrk(server.url, predict, 64, token=server.token, accept=COMPACT)
        show("keel", "predict (compact)", 64, k)
        record("predict, compact answer (peers: JSON)", 64, k, dict(rows[-1]["peers"]))
        for s in (fastapi, bentoml, mlflow):
            if s is not None:
                s.stop()

        feast = start_feast(tmp, frame)
        servers.append(feast)
        check_features(server, feast, players[:100])
        print("features:", flush=True)
        for n in (1, 100):
            for c in (1, 64):
                k = wrk(server.url, "/v1/features/online", c, token=server.token, entities=n)
                show("keel", f"features, {n} entities", c, k)
                f = wrk(feast.url, "/get-online-features", c, entities=n)
                show("feast", f"features, {n} entities", c, f)
                record(f"features online, {n} entit{'y' if n == 1 else 'ies'} x 20", c, k, {"Feast": f})
        if server.running():
            print(f"  keel-server still running; its stderr (last lines):\n{server.log()[-1500:]}", flush=True)
    finally:
        for s in reversed(servers):
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001 - stop every server whatever one does
                print(f"  stopping {s!r} failed: {e}", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"total {time.perf_counter() - started:.0f} s\n", flush=True)
    print(f"Machine: {machine()}; wrk on the same machine, {DURATION} s per run.\n")
    print(table())
    print()
    for n in notes + FOOTNOTES:
        print(f"- {n}")


def lgb_depth(node: dict) -> int:
    if "left_child" not in node:
        return 0
    return 1 + max(lgb_depth(node["left_child"]), lgb_depth(node["right_child"]))


if __name__ == "__main__":
    main()

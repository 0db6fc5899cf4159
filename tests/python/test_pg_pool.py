"""The connection pool of a PostgreSQL workspace: threads sharing one workspace read on connections
of their own at once, wait a bounded time when all are in use, write correctly together, keep the
server's connection count bounded, recover from a server restart, and keel-server on such a
workspace answers right under concurrent requests."""

import http.client
import json
import os
import subprocess
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel


@pytest.fixture
def schema():
    return f"t_{uuid.uuid4().hex[:16]}"


def location(server, schema, **params):
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"{server.url}?schema={schema}{extra}"


def psql(server, sql, schema=None):
    env = {**os.environ, **({"PGOPTIONS": f"-csearch_path={schema}"} if schema else {})}
    done = subprocess.run([str(server.bin / "psql"), "-v", "ON_ERROR_STOP=1", "-q", "-At", "-c", sql, server.url],
                          check=True, capture_output=True, text=True, env=env)
    return done.stdout.strip()


def make_model_reads_slow(server, schema, seconds):
    """Every read of the registry's model table takes `seconds` on the server (a view in its place that
    sleeps), so that a read path of Keel's own (ws.models.get) is slow without any hook in Keel."""
    psql(server, f"""
        CREATE FUNCTION keel_test_slow() RETURNS boolean LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep({seconds}); RETURN true; END $$;
        ALTER TABLE registry_models RENAME TO registry_models_t;
        CREATE VIEW registry_models AS SELECT * FROM registry_models_t WHERE keel_test_slow();""", schema)


def in_threads(n, fn):
    """Runs fn(i) in n threads at once; the seconds it took and the exceptions raised."""
    errors = []
    start = threading.Barrier(n)

    def body(i):
        start.wait()
        try:
            fn(i)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began, errors


@pytest.fixture
def slow_registry(postgres_server, schema, tmp_path):
    """A workspace with model churn/1 whose model reads each take 0.3 s on the server."""
    ws = keel.open(location(postgres_server, schema), artifacts=tmp_path)
    ws.models.register("churn", b"weights")
    make_model_reads_slow(postgres_server, schema, 0.3)
    return lambda **params: keel.open(location(postgres_server, schema, **params), artifacts=tmp_path)


def test_reads_from_many_threads_run_at_once_on_the_pool(slow_registry):
    ws = slow_registry(pool_size=4)
    began = time.perf_counter()
    assert ws.models.get("churn/1").version == 1
    one = time.perf_counter() - began
    assert one >= 0.3
    took, errors = in_threads(4, lambda i: ws.models.get("churn/1"))
    assert not errors
    assert took < 2 * one, f"4 reads took {took:.2f} s, one {one:.2f} s: they should overlap on 4 connections"
    # The same through one connection: the reads queue.
    single = slow_registry(pool_size=1)
    took_single, errors = in_threads(4, lambda i: single.models.get("churn/1"))
    assert not errors
    assert took_single >= 3.5 * 0.3


def test_an_exhausted_pool_waits_then_fails_clearly(slow_registry):
    ws = slow_registry(pool_size=1, pool_timeout=0.4)
    holder = threading.Thread(target=lambda: [ws.models.get("churn/1") for _ in range(4)])  # 1.2 s on the connection
    holder.start()
    time.sleep(0.1)
    began = time.perf_counter()
    with pytest.raises(keel.Unavailable, match=r"all 1 connections of the pool to postgresql://.*stayed in use for "
                                               r"400 ms.*pool_size"):
        ws.models.get("churn/1")
    assert 0.35 < time.perf_counter() - began < 2.0
    holder.join()
    assert ws.models.get("churn/1").version == 1  # free again


def test_writes_from_many_threads_stay_serialized_and_complete(postgres_server, schema, tmp_path):
    ws = keel.open(location(postgres_server, schema, pool_size=4), artifacts=tmp_path)
    run = ws.runs.start(experiment="writers")
    versions = []

    def write(i):
        for step in range(40):
            run.log_metric(f"m{i}", float(step), step=step)
        for _ in range(3):
            versions.append(ws.models.register("churn", f"weights {i}".encode()).version)

    _, errors = in_threads(8, write)
    assert not errors, errors
    assert sorted(versions) == list(range(1, 25))  # each number once, none skipped
    for i in range(8):
        assert list(run.metric_history(f"m{i}")["step"]) == list(range(40))
    assert len(ws.models.versions("churn")) == 24


def test_server_connections_stay_bounded_under_32_threads(postgres_server, schema, tmp_path):
    app = f"keel_pool_{uuid.uuid4().hex[:8]}"
    ws = keel.open(location(postgres_server, schema, pool_size=4, application_name=app), artifacts=tmp_path)
    ws.models.register("churn", b"weights")
    run = ws.runs.start(experiment="bound")
    counts, stop = [], threading.Event()

    def monitor():
        while not stop.is_set():
            counts.append(int(psql(postgres_server,
                                   f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'")))

    watcher = threading.Thread(target=monitor)
    watcher.start()

    def work(i):
        for step in range(10):
            ws.models.get("churn/1")
            run.log_metric(f"t{i}", 1.0, step=step)

    try:
        _, errors = in_threads(32, work)
    finally:
        stop.set()
        watcher.join()
    assert not errors, errors
    assert counts and max(counts) <= 4, counts
    assert sum(len(run.metric_history(f"t{i}")) for i in range(32)) == 320


def test_a_restart_mid_use_gives_retryable_errors_and_every_thread_recovers(postgres_server, schema, tmp_path):
    ws = keel.open(location(postgres_server, schema, pool_size=4), artifacts=tmp_path)
    run = ws.runs.start(experiment="restart")
    restarted = threading.Event()
    unavailable = []

    def write(i):
        for step in range(30):
            if step == 10 and i == 0:
                postgres_server._run(str(postgres_server.bin / "pg_ctl"), "-D", str(postgres_server.dir / "data"),
                                     "-l", str(postgres_server.log_path), "-m", "immediate", "-w", "restart")
                restarted.set()
            for _ in range(400):  # retried until it lands (up to ~20 s), as a client of a retryable error does
                try:
                    run.log_metric(f"w{i}", float(step), step=step)
                    break
                except keel.Unavailable as e:
                    unavailable.append(str(e))
                    time.sleep(0.05)
            else:
                raise AssertionError(f"thread {i} never recovered")
            time.sleep(0.01)

    _, errors = in_threads(4, write)
    assert not errors, errors
    assert restarted.is_set()
    assert unavailable and all("retry" in m for m in unavailable), unavailable[:3]
    for i in range(4):
        # A call that failed may have landed before the connection broke: every step is there.
        assert set(run.metric_history(f"w{i}")["step"]) == set(range(30))


# --- keel-server on a PostgreSQL workspace ------------------------------------------------------

def linear(weights):
    x = pd.DataFrame({"sessions": [0.0, 1.0, 0.0], "spend": [0.0, 0.0, 1.0]})
    return LinearRegression().fit(x, x.to_numpy() @ np.asarray(weights))


def test_keel_server_on_a_postgres_workspace_answers_concurrent_requests(postgres_server, schema, tmp_path):
    ws = keel.open(location(postgres_server, schema, pool_size=4), artifacts=tmp_path)
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("activity", entities=["player"], ttl="3650d", schema={"sessions": "int64", "spend": "float64"})
    ids = np.arange(100)
    fv.ingest(pd.DataFrame({"player_id": ids, "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
                            "sessions": ids % 7, "spend": ids * 1.0}))
    fs.materialize("activity")
    ws.models.log_model(None, linear([1.0, 2.0]), "churn")
    ws.models.log_model(None, linear([0.0, -1.0]), "churn")
    ws.models.set_alias("churn", "champion", 1)
    ws.endpoint("churn", model="churn@champion", features=["activity:sessions", "activity:spend"])

    with keel.serve(ws.location, threads=8) as server:
        def ask(player, path="/v1/endpoints/churn/predict", body=None):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("POST", path, body=json.dumps(body or {"player_id": player}),
                             headers={**server.headers, "Content-Type": "application/json"})
                resp = conn.getresponse()
                return resp.status, json.loads(resp.read())
            finally:
                conn.close()

        answers = []

        def client(i):
            for k in range(15):
                player = (i * 15 + k) % 100
                status, doc = ask(player)
                assert status == 200, doc
                answers.append((player, doc["version"], doc["prediction"]))
                status, doc = ask(player, "/v1/features/online",
                                  {"features": ["activity:spend"], "entities": {"player_id": [player]}})
                assert status == 200, doc
                assert doc["features"]["activity:spend"]["values"] == [player * 1.0]

        _, errors = in_threads(16, client)
        assert not errors, errors
        assert len(answers) == 240
        for player, version, prediction in answers:
            assert version == 1
            assert prediction == pytest.approx((player % 7) * 1.0 + player * 2.0)

        # A change made elsewhere is served from the next requests on, while clients keep asking.
        ws.models.set_alias("churn", "champion", 2)
        deadline = time.time() + 5
        while ask(3)[1]["version"] != 2:
            assert time.time() < deadline, "the alias move was not served within 5 s"
            time.sleep(0.05)
        _, errors = in_threads(8, lambda i: [ask(p) for p in range(10)])
        assert not errors
        assert ask(3)[1]["prediction"] == pytest.approx(-3.0)

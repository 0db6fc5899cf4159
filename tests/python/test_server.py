"""keel serve end to end: the C++ keel-server on a real workspace, called over real sockets.

One workspace and one server per module (servers start once); tests that need their own server
(JWT tenants, TLS, two processes on one port) start and stop it themselves.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel
from keel import compact

T0 = pd.Timestamp("2026-01-01", tz="UTC")
N_PLAYERS = 200


def linear(weights):
    """A native linear model answering sessions * w0 + spend * w1 (versions told apart by weights)."""
    x = pd.DataFrame({"sessions": [0.0, 1.0, 0.0], "spend": [0.0, 0.0, 1.0]})
    return LinearRegression().fit(x, x.to_numpy() @ np.asarray(weights))


def expected(weights, player):
    return (player % 7) * weights[0] + player * 1.0 * weights[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = keel.open(tmp_path_factory.mktemp("served") / "ws.keel")
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("activity", entities=["player"], ttl="3650d",
                         schema={"sessions": "int64", "spend": "float64", "salary": keel.Float64(pii=True)})
    ids = np.arange(N_PLAYERS)
    fv.ingest(pd.DataFrame({"player_id": ids, "event_timestamp": T0, "sessions": ids % 7, "spend": ids * 1.0,
                            "salary": ids * 1000.0}))
    fs.materialize("activity")
    ws.access.grant("payroll", "activity", ["salary"])
    ws.models.log_model(None, linear([1.0, 2.0]), "churn")   # churn/1
    ws.models.log_model(None, linear([0.0, -1.0]), "churn")  # churn/2
    ws.models.log_model(None, linear([5.0, 0.0]), "churn")   # churn/3
    ws.models.set_alias("churn", "champion", 1)
    ws.models.set_alias("churn", "challenger", 2)
    ws.endpoint("churn", routing="plugins/routing/sticky.lua",
                variants={"champion": ("churn@champion", 0.5), "challenger": ("churn@challenger", 0.5)},
                features=["activity:sessions", "activity:spend"])
    ws.endpoint("solo", model="churn/1", features=["activity:sessions", "activity:spend"])
    ws.endpoint("studio_a_only", model="churn/1", features=["activity:sessions", "activity:spend"],
                tenants=["studio-a"])
    return ws


@pytest.fixture(scope="module")
def server(workspace):
    with keel.serve(workspace, threads=2) as running:
        yield running


def call(server, method, path, body=None, headers=None, raw=None):
    """(status, headers, body bytes) on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={**server.headers, "Content-Type": "application/json",
                                                        **(headers or {})})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def error_of(status_body):
    status, _, body = status_body
    doc = json.loads(body)
    assert set(doc) >= {"error", "message"} and doc["message"], doc
    return status, doc["error"], doc["message"]


# --- predict ----------------------------------------------------------------------------------

def test_predict_answers_what_the_embedded_endpoint_answers(server, workspace):
    ep = workspace.endpoint("churn")
    for player in (3, 10, 42, 199):
        status, headers, body = call(server, "POST", "/v1/endpoints/churn/predict", {"player_id": player})
        assert status == 200, body
        got = json.loads(body)
        assert set(got) >= {"prediction", "variant", "model", "version", "request_id"}
        local = ep.predict({"player_id": player})
        assert (got["variant"], got["model"], got["version"]) == (local["variant"], local["model"], local["version"])
        assert got["prediction"] == pytest.approx(local["prediction"])
        assert headers.get("X-Request-Id") == got["request_id"]
    batch = server.predict("churn", [{"player_id": p} for p in range(50)])
    assert len(batch) == 50 and {b["variant"] for b in batch} == {"champion", "challenger"}
    for p, b in enumerate(batch):
        weights = [1.0, 2.0] if b["model"] == "churn/1" else [0.0, -1.0]
        assert b["prediction"] == pytest.approx(expected(weights, p))


def test_the_callers_request_id_is_kept(server):
    status, headers, body = call(server, "POST", "/v1/endpoints/solo/predict", {"player_id": 1},
                                 headers={"X-Request-Id": "trace-123"})
    assert status == 200 and json.loads(body)["request_id"] == "trace-123" == headers["X-Request-Id"]


def test_compact_answer_is_small_and_decodes_to_the_json_answer(server):
    status, headers, body = call(server, "POST", "/v1/endpoints/solo/predict", {"player_id": 42},
                                 headers={"Accept": "application/x-keel-compact"})
    assert status == 200 and headers["Content-Type"].startswith("application/x-keel-compact")
    assert len(body) < 16
    got = compact.decode(body)
    assert got["prediction"] == pytest.approx(expected([1.0, 2.0], 42), rel=1e-6) and got["version"] == 1


# --- bad input: each gets its 4xx and a JSON error; the server keeps serving ----------------------

@pytest.mark.parametrize("raw, status", [
    (b"{not json", 400),
    (b'{"player_id": "forty-two"}', 400),
    (b"{}", 400),                                            # no entity key
    (b'{"player_id": 18446744073709551617}', 400),          # above 2^64
    (b"[" * 100_000 + b"]" * 100_000, 400),                 # nested 100k deep
    (b'{"player_id": 1, "name": "\xff\xfe"}', 400),         # invalid UTF-8
    (b'{"player_id": NaN}', 400),
    (b"[]", 400),
])
def test_bad_bodies_get_a_400_naming_what_is_wrong(server, raw, status):
    got = error_of(call(server, "POST", "/v1/endpoints/churn/predict", raw=raw))
    assert got[0] == status and got[1] == "InvalidArgument", got
    assert call(server, "GET", "/healthz")[0] == 200


def test_unknown_endpoint_route_and_method(server):
    assert error_of(call(server, "POST", "/v1/endpoints/nope/predict", {"player_id": 1}))[:2] == (404, "NotFound")
    assert call(server, "GET", "/v2/whatever")[0] == 404
    assert call(server, "DELETE", "/v1/endpoints/churn/predict")[0] == 405


def test_oversized_body_is_413(server):
    big = b'{"player_id": 1, "pad": "' + b"x" * (9 << 20) + b'"}'
    try:
        status = call(server, "POST", "/v1/endpoints/churn/predict", raw=big)[0]
    except (ConnectionError, BrokenPipeError):
        status = 413  # the server may close before the whole body is sent; the next check still holds
    assert status == 413
    assert call(server, "GET", "/healthz")[0] == 200


def raw_exchange(port, data: bytes, timeout=10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


@pytest.mark.parametrize("length", [b"-1", b"abc", b"99999999999999999999999"])
def test_a_bad_content_length_is_400(server, length):
    head = raw_exchange(server.port, b"POST /v1/endpoints/churn/predict HTTP/1.1\r\nHost: x\r\n"
                                     b"Authorization: Bearer " + server.token.encode() + b"\r\n"
                                     b"Content-Length: " + length + b"\r\n\r\n{}")
    assert head.startswith(b"HTTP/1.1 4"), head[:100]


def test_slowloris_connections_do_not_stop_other_callers(server):
    stalled = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(b"POST /v1/endpoints/churn/predict HTTP/1.1\r\nHost: x\r\nContent-Le")
            stalled.append(s)
        start = time.monotonic()
        assert call(server, "GET", "/healthz")[0] == 200
        assert call(server, "POST", "/v1/endpoints/solo/predict", {"player_id": 1})[0] == 200
        assert time.monotonic() - start < 2.0
    finally:
        for s in stalled:
            s.close()


def test_keep_alive_requests_are_not_delayed_by_nagle(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = json.dumps({"player_id": 7})
    try:
        for _ in range(5):  # warm up
            conn.request("POST", "/v1/endpoints/solo/predict", body=body, headers=server.headers)
            conn.getresponse().read()
        start = time.perf_counter()
        for _ in range(50):
            conn.request("POST", "/v1/endpoints/solo/predict", body=body, headers=server.headers)
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
        per_request = (time.perf_counter() - start) / 50
    finally:
        conn.close()
    assert per_request < 0.02, f"{per_request * 1000:.1f} ms per keep-alive request (Nagle would be ~44 ms)"


# --- auth ---------------------------------------------------------------------------------------

def test_every_route_but_health_needs_the_token(server):
    for method, path in (("GET", "/v1/endpoints"), ("GET", "/v1/endpoints/churn"),
                         ("POST", "/v1/endpoints/churn/predict")):
        for auth in ({"Authorization": ""}, {"Authorization": "Bearer wrong-token-wrong-token"},
                     {"Authorization": server.token}):  # the token without "Bearer "
            status, headers, body = call(server, method, path, {"player_id": 1}, headers=auth)
            assert status == 401 and "Bearer" in headers.get("WWW-Authenticate", ""), (path, body)
    assert call(server, "GET", "/healthz", headers={"Authorization": ""})[0] == 200


def test_listing_describing_readiness_metrics_and_openapi(server):
    status, _, body = call(server, "GET", "/v1/endpoints")
    assert status == 200 and {e["name"] for e in json.loads(body)} >= {"churn", "solo"}
    described = server.endpoint("churn")
    assert described["revision"] >= 1 and {v["name"] for v in described["variants"]} == {"champion", "challenger"}
    assert call(server, "GET", "/readyz")[0] == 200
    server.predict("solo", {"player_id": 3})
    text = server.metrics()
    assert 'keel_requests_total{endpoint="solo"' in text and "keel_request_duration_seconds_bucket" in text
    doc = json.loads(call(server, "GET", "/openapi.json")[2])
    assert "/v1/endpoints/{name}/predict" in doc["paths"] and "/v1/features/online" in doc["paths"]


# --- changes without downtime ----------------------------------------------------------------------

def test_an_alias_move_is_served_within_a_second_and_no_request_fails(server, workspace):
    failures, answers, stop = [], [], threading.Event()

    def hammer():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("POST", "/v1/endpoints/solo/predict", body='{"player_id": 4}', headers=server.headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    failures.append((resp.status, data))
                else:
                    answers.append((time.monotonic(), json.loads(data)["model"]))
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.close()

    workspace.endpoint("solo", model="churn@champion")
    time.sleep(1.5)
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        moved_at = time.monotonic()
        workspace.models.set_alias("churn", "champion", 3)
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
        workspace.models.set_alias("churn", "champion", 1)
    assert failures == []
    first_new = min(t for t, model in answers if model == "churn/3")
    assert first_new - moved_at < 1.0
    assert all(model == "churn/3" for t, model in answers if t > moved_at + 1.0)


def test_an_alias_moved_onto_a_model_that_cannot_load_degrades_to_the_last_good_version(server, workspace):
    workspace.models.log_model(None, linear([1.0, 0.0]), "fragile")  # fragile/1
    broken = workspace.models.log_model(None, linear([9.0, 0.0]), "fragile")  # fragile/2, tampered below
    hexdigest = broken.digest.split(":")[-1]
    blob = Path(workspace.path) / "artifacts" / "sha256" / hexdigest[:2] / hexdigest[2:]
    os.chmod(blob, 0o600)
    blob.write_bytes(b"not a model any more")
    workspace.models.set_alias("fragile", "live", 1)
    workspace.endpoint("fragile", model="fragile@live", features=["activity:sessions", "activity:spend"])
    assert server.predict("fragile", {"player_id": 3})["model"] == "fragile/1"

    workspace.models.set_alias("fragile", "live", 2)  # seen by the server within a second
    deadline = time.monotonic() + 1.0
    while True:
        got = server.predict("fragile", {"player_id": 3})
        assert (got["model"], got["prediction"]) == ("fragile/1", pytest.approx(3.0))  # answered, on the last good
        ready = json.loads(call(server, "GET", "/readyz")[2])
        if "fragile" in ready["degraded"] or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert "could not be loaded" in ready["degraded"]["fragile"]
    assert 'keel_endpoint_degraded{endpoint="fragile"} 1' in server.metrics()
    workspace.models.set_alias("fragile", "live", 1)
    time.sleep(0.01)
    server.predict("fragile", {"player_id": 3})
    assert "fragile" not in json.loads(call(server, "GET", "/readyz")[2])["degraded"]


# --- the online features route --------------------------------------------------------------------

def test_online_features_route(server):
    got = server.online_features(["activity:sessions", "activity:spend"], {"player_id": [5, 6, 100000]})
    f = got["features"]
    assert f["activity:sessions"]["values"][:2] == [5, 6] and f["activity:spend"]["values"][:2] == [5.0, 6.0]
    assert f["activity:sessions"]["status"] == ["ok", "ok", "missing"]


def mint(secret: bytes, **claims) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"exp": int(time.time()) + 600, **claims}).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


@pytest.fixture(scope="module")
def jwt_server(workspace, tmp_path_factory):
    folder = tmp_path_factory.mktemp("jwt")
    secret = os.urandom(32)
    (folder / "secret").write_bytes(secret)
    config = folder / "keel-serve.toml"
    config.write_text(f'[auth]\nhs256_secret_files = ["{folder / "secret"}"]\nissuer = "keel-tests"\n')
    with keel.serve(workspace, config=str(config), threads=2) as running:
        yield running, secret


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_jwt_tenants_reach_only_their_endpoints(jwt_server):
    server, secret = jwt_server
    a = mint(secret, sub="alice", tenant="studio-a", iss="keel-tests")
    b = mint(secret, sub="bob", tenant="studio-b", iss="keel-tests")
    assert call(server, "POST", "/v1/endpoints/studio_a_only/predict", {"player_id": 1}, headers=bearer(a))[0] == 200
    status, kind, message = error_of(call(server, "POST", "/v1/endpoints/studio_a_only/predict",
                                          {"player_id": 1}, headers=bearer(b)))
    assert (status, kind) == (403, "PermissionDenied") and "studio-b" in message and "studio-a" not in message
    listed = {e["name"] for e in json.loads(call(server, "GET", "/v1/endpoints", headers=bearer(b))[2])}
    assert "studio_a_only" not in listed and "churn" in listed
    for bad in (mint(secret, tenant="studio-a", iss="someone-else"),
                mint(os.urandom(32), tenant="studio-a", iss="keel-tests"),
                mint(secret, tenant="studio-a", iss="keel-tests", exp=int(time.time()) - 3600)):
        assert call(server, "POST", "/v1/endpoints/churn/predict", {"player_id": 1}, headers=bearer(bad))[0] == 401


def test_pii_on_the_features_route_follows_the_tokens_roles(jwt_server):
    server, secret = jwt_server
    plain = mint(secret, sub="ana", tenant="studio-a", iss="keel-tests", roles=["analyst"])
    payroll = mint(secret, sub="pat", tenant="studio-a", iss="keel-tests", roles=["analyst", "payroll"])
    body = {"features": ["activity:salary"], "entities": {"player_id": [3]}}
    masked = json.loads(call(server, "POST", "/v1/features/online", body, headers=bearer(plain))[2])
    shown = json.loads(call(server, "POST", "/v1/features/online", body, headers=bearer(payroll))[2])
    assert masked["features"]["activity:salary"]["status"] == ["masked"]
    assert masked["features"]["activity:salary"]["values"] == [None]
    assert shown["features"]["activity:salary"]["values"] == [3000.0]


# --- processes: SIGTERM drains, two share a port ----------------------------------------------------

def test_sigterm_exits_cleanly(workspace):
    running = keel.serve(workspace, threads=1)
    assert running.predict("solo", {"player_id": 1})["model"] == "churn/1"
    assert running.stop() == 0


def test_two_processes_share_the_port_and_one_dies_under_load(workspace):
    first = keel.serve(workspace, ["solo"], threads=1, token="shared-token-0123456789")
    second = keel.serve(workspace, ["solo"], port=first.port, threads=1, token="shared-token-0123456789")
    try:
        assert second.port == first.port
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait(10)
        for _ in range(20):
            assert call(second, "POST", "/v1/endpoints/solo/predict", {"player_id": 2})[0] == 200
    finally:
        first.stop()
        second.stop()


def test_an_unknown_endpoint_or_a_port_in_use_fails_at_start_with_its_error(workspace):
    with pytest.raises(keel.NotFound, match="nope"):
        keel.serve(workspace, ["nope"])
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: the port cannot be shared
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(keel.InvalidArgument, match=str(port)):
            keel.serve(workspace, port=port)


def test_serving_beyond_loopback_without_auth_is_refused(workspace, tmp_path):
    config = tmp_path / "open.toml"
    config.write_text("")
    with pytest.raises(keel.InvalidArgument, match="loopback"):
        keel.serve(workspace, host="0.0.0.0", config=str(config))
    with pytest.raises(keel.InvalidArgument, match="16"):
        keel.serve(workspace, token="short")


def test_the_keel_serve_command_runs_the_server_with_its_token_and_exit_codes(workspace, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("a-token-read-from-a-file-0123\n")
    env = {**os.environ, "KEEL_SERVE_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "keel", "serve", "solo", "--workspace", str(workspace.path),
                             "--port", "0", "--token-file", str(token_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        port = int(re.search(r":(\d+) \(pid", line).group(1))

        def status(auth):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/v1/endpoints", headers={"Authorization": auth} if auth else {})
            return conn.getresponse().status

        assert status("Bearer a-token-read-from-a-file-0123") == 200
        assert status(None) == 401
        assert status("Bearer a-token-read-from-a-file-0124") == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    failed = subprocess.run([sys.executable, "-m", "keel", "serve", "nope", "--workspace", str(workspace.path),
                             "--port", "0", "--token-file", str(token_file)], capture_output=True, text=True, env=env)
    assert failed.returncode == 2 and "nope" in failed.stderr  # NotFound's exit code, as every keel command


# --- TLS ------------------------------------------------------------------------------------------

def test_tls(workspace, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    with keel.serve(workspace, ["solo"], tls_cert=str(cert), tls_key=str(key), threads=1) as running:
        assert running.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", running.port, context=context, timeout=10)
        conn.request("POST", "/v1/endpoints/solo/predict", body='{"player_id": 9}', headers=running.headers)
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["model"] == "churn/1"
        conn.close()
        with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate refuses it
            other = http.client.HTTPSConnection("127.0.0.1", running.port, context=ssl.create_default_context(),
                                                timeout=10)
            other.request("GET", "/healthz")


# --- a routing plugin that never returns ------------------------------------------------------------

SPIN_LUA = "function route(req, ctx)\n  local n = 0\n  while true do n = n + 1 end\nend\n"


def test_a_routing_plugin_that_never_returns_is_stopped_and_the_server_keeps_answering(server, workspace,
                                                                                       tmp_path):
    routing = tmp_path / "plugins" / "routing"
    routing.mkdir(parents=True)
    (routing / "spin.lua").write_text(SPIN_LUA)
    # an absolute ref: the running server resolves it without the notebook's search path
    workspace.endpoint("spin", routing=str(routing / "spin.lua"), default="first",
                       variants={"first": ("churn/1", 0.5), "second": ("churn/2", 0.5)},
                       features=["activity:sessions", "activity:spend"])

    status, _, body = call(server, "POST", "/v1/endpoints/spin/predict", {"player_id": 5})
    assert status == 200, body
    answer = json.loads(body)
    assert (answer["variant"], answer["model"], answer["fallback"]) == ("first", "churn/1", "budget"), answer
    assert answer["prediction"] == pytest.approx(expected([1.0, 2.0], 5))

    spinning, stop = [], threading.Event()

    def spin():
        while not stop.is_set():
            got = call(server, "POST", "/v1/endpoints/spin/predict", {"player_id": 6})
            spinning.append((got[0], json.loads(got[2]).get("fallback")))

    def timed(method, path, body=None):
        start = time.monotonic()
        status = call(server, method, path, body)[0]
        return status, time.monotonic() - start

    threads = [threading.Thread(target=spin) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        for player in range(10):
            for status, took in (timed("GET", "/healthz"),
                                 timed("POST", "/v1/endpoints/solo/predict", {"player_id": player})):
                assert status == 200 and took < 1.0, (status, took)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert spinning and set(spinning) == {(200, "budget")}, spinning[:5]
    assert 'keel_routing_fallbacks_total{endpoint="spin",reason="budget"}' in server.metrics()

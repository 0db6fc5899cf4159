"""Artifacts and feature files on S3 (issue 14): a workspace whose objects live in a bucket.

Against a real SeaweedFS (the session's `s3_server`); each test gets its own bucket prefix. What is
checked: the location is recorded and enforced; a tampered object in the bucket is Corrupt naming
its key (never a wrong model or wrong feature values); the read cache serves repeated reads without
downloading, stays under its bound and never evicts a mapped file; processes share a workspace's
objects; a kill mid-upload leaves the workspace consistent; bad S3 settings fail fast and clearly.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from s3_request import signed_request

import keel

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def http_url(s3, object_url: str) -> str:
    """The path-style HTTP URL of s3://bucket/key on the test server."""
    assert object_url.startswith("s3://")
    return f"{s3.endpoint}/{object_url[len('s3://'):]}"


def bucket_get(s3, object_url: str) -> bytes:
    status, body = signed_request("GET", http_url(s3, object_url), s3.access_key, s3.secret_key, s3.region)
    assert status == 200, body
    return body


def bucket_put(s3, object_url: str, data: bytes) -> None:
    status, body = signed_request("PUT", http_url(s3, object_url), s3.access_key, s3.secret_key, s3.region, body=data)
    assert status == 200, body


def objects(ws, prefix=""):
    return dict(ws.native.list_objects(prefix))


def cached_files(cache_dir) -> dict[str, int]:
    root = os.path.join(cache_dir, "objects")
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = os.path.getsize(path)
    return out


def activity(ws):
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    return fs.feature_view("activity", entities=["player"], ttl="3650d",
                           schema={"sessions": "int64", "spend": "float64"})


def frame(ids, sessions):
    ids = np.asarray(ids)
    return pd.DataFrame({"player_id": ids, "event_timestamp": T0, "sessions": np.asarray(sessions),
                         "spend": ids * 1.5})


# --- the location ---------------------------------------------------------------------------------

def test_the_location_is_recorded_reused_and_a_different_one_refused(s3_prefix, tmp_path):
    path = tmp_path / "ws.keel"
    ws = keel.open(path, artifacts=s3_prefix)
    assert ws.artifacts_url == s3_prefix + "/"
    digest = ws.put_artifact(b"shared")
    assert f"artifacts/sha256/{digest[:2]}/{digest[2:]}" in objects(ws, "artifacts/")
    assert not os.path.exists(path / "artifacts")  # nothing kept beside the metadata but the cache
    again = keel.open(path)  # no location given: the recorded one
    assert again.artifacts_url == s3_prefix + "/" and again.get_artifact(digest) == b"shared"
    assert keel.open(path, artifacts=s3_prefix + "/").artifacts_url == s3_prefix + "/"
    other = s3_prefix + "-other"
    with pytest.raises(keel.InvalidArgument, match=rf"keeps its artifacts in {s3_prefix}/, not in {other}/"):
        keel.open(path, artifacts=other)
    local = tmp_path / "local.keel"
    keel.open(local)
    with pytest.raises(keel.InvalidArgument, match=r"keeps its artifacts in its own directory .*, not in s3://"):
        keel.open(local, artifacts=s3_prefix)
    with pytest.raises(keel.InvalidArgument, match="give s3://bucket/prefix"):
        keel.open(tmp_path / "third.keel", artifacts="gs://bucket/x")


def test_keel_artifacts_env_and_the_cli_flag(s3_prefix, tmp_path, monkeypatch):
    path = tmp_path / "ws.keel"
    monkeypatch.setenv("KEEL_ARTIFACTS", s3_prefix)
    ws = keel.open(path)
    assert ws.artifacts_url == s3_prefix + "/"
    ws.models.register("churn", b"weights")
    monkeypatch.delenv("KEEL_ARTIFACTS")
    keel_cli = [sys.executable, "-m", "keel"]
    ok = subprocess.run([*keel_cli, "--workspace", str(path), "--artifacts", s3_prefix, "models", "list", "--json"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "churn" in ok.stdout
    wrong = subprocess.run([*keel_cli, "--workspace", str(path), "--artifacts", s3_prefix + "-x", "models", "list"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0
    assert "InvalidArgument" in wrong.stderr and s3_prefix + "-x" in wrong.stderr and s3_prefix + "/" in wrong.stderr


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_open_errors_are_quick_and_name_what_to_fix(s3_env, s3_bucket, tmp_path, monkeypatch):
    cases = []
    start = time.monotonic()
    with pytest.raises(keel.NotFound, match="no-such-bucket") as missing:
        keel.open(tmp_path / "a.keel", artifacts="s3://no-such-bucket/x")
    cases.append(missing)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(keel.PermissionDenied) as refused:
        keel.open(tmp_path / "b.keel", artifacts=f"s3://{s3_bucket}/x")
    cases.append(refused)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(keel.KeelError) as unreachable:
        keel.open(tmp_path / "c.keel", artifacts=f"s3://{s3_bucket}/x")
    cases.append(unreachable)
    assert time.monotonic() - start < 15
    for case in cases:
        assert "for the workspace's artifacts" in str(case.value)
    # Nothing recorded by a failed open: the fixed location opens the same folder.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env.endpoint)
    assert keel.open(tmp_path / "a.keel", artifacts=f"s3://{s3_bucket}/x").artifacts_url == f"s3://{s3_bucket}/x/"


# --- verification ---------------------------------------------------------------------------------

def test_a_tampered_model_in_the_bucket_is_corrupt_naming_its_key(s3_env, s3_prefix, tmp_path):
    path = tmp_path / "ws.keel"
    ws = keel.open(path, artifacts=s3_prefix)
    mv = ws.models.register("churn", b"the real weights")
    key = f"artifacts/sha256/{mv.digest[:2]}/{mv.digest[2:]}"
    url = ws.native.object_url(key)
    bucket_put(s3_env, url, b"the wrong weights")
    fresh = keel.open(path, cache_dir=tmp_path / "other-cache")  # another machine: nothing cached
    with pytest.raises(keel.Corrupt, match=key):
        fresh.get_artifact(mv.digest)
    with pytest.raises(keel.Corrupt, match=url):
        fresh.models.load("churn/1")
    assert not any(name.startswith("artifacts/") for name in cached_files(tmp_path / "other-cache"))  # none kept
    # Logging the same content again repairs the object (the ETag no longer matches it).
    assert fresh.put_artifact(b"the real weights") == mv.digest
    assert bucket_get(s3_env, url) == b"the real weights"
    assert keel.open(path, cache_dir=tmp_path / "third-cache").get_artifact(mv.digest) == b"the real weights"


def test_a_swapped_segment_in_the_bucket_is_corrupt_never_other_values(s3_env, s3_prefix, tmp_path):
    path = tmp_path / "ws.keel"
    ws = keel.open(path, artifacts=s3_prefix)
    fv = activity(ws)
    fv.ingest(frame([1, 2], [10, 20]))
    fv.ingest(frame([1, 2], [99, 99]))
    first, second = sorted(k for k in objects(ws, "features/activity/") if k.endswith(".kseg"))
    # A well-formed segment (its own checksum holds) with other values, put in the first one's place.
    bucket_put(s3_env, ws.native.object_url(first), bucket_get(s3_env, ws.native.object_url(second)))
    fresh = keel.open(path, cache_dir=tmp_path / "other-cache")
    with pytest.raises(keel.Corrupt, match=first):
        fresh.features.feature_view("activity").to_pandas()
    # The snapshot is verified the same way.
    ws.features.materialize("activity")
    (snap,) = [k for k in objects(ws, "features/online/")]
    data = bytearray(bucket_get(s3_env, ws.native.object_url(snap)))
    data[100] ^= 1
    bucket_put(s3_env, ws.native.object_url(snap), bytes(data))
    with pytest.raises(keel.Corrupt, match=snap):
        keel.open(path, cache_dir=tmp_path / "third-cache").features.get_online(["activity:sessions"], player_id=[1])


# --- the read cache -------------------------------------------------------------------------------

def test_a_second_read_is_served_from_the_cache_without_a_download(s3_env, s3_prefix, tmp_path):
    path = tmp_path / "ws.keel"
    ws = keel.open(path, artifacts=s3_prefix, cache_dir=tmp_path / "writer")
    mv = ws.models.register("churn", b"weights v1")
    fv = activity(ws)
    fv.ingest(frame([1, 2, 3], [4, 5, 6]))
    expected = fv.to_pandas()
    reader_cache = tmp_path / "reader"
    reader = keel.open(path, cache_dir=reader_cache)
    assert reader.get_artifact(mv.digest) == b"weights v1"
    pd.testing.assert_frame_equal(reader.features.feature_view("activity").to_pandas(), expected)
    assert len(cached_files(reader_cache)) == 2
    # Replace every object in the bucket: a read that downloaded would now fail.
    for key in objects(ws):
        bucket_put(s3_env, ws.native.object_url(key), b"garbage")
    again = keel.open(path, cache_dir=reader_cache)  # a new handle, as a new process would be
    assert again.get_artifact(mv.digest) == b"weights v1"
    pd.testing.assert_frame_equal(again.features.feature_view("activity").to_pandas(), expected)
    with pytest.raises(keel.Corrupt):
        keel.open(path, cache_dir=tmp_path / "empty").get_artifact(mv.digest)


def test_the_cache_stays_under_its_bound_and_keeps_mapped_files(s3_prefix, tmp_path):
    path = tmp_path / "ws.keel"
    cache = tmp_path / "cache"
    bound = 250_000
    ws = keel.open(path, artifacts=s3_prefix, cache_dir=cache, cache_max_bytes=bound)
    fv = activity(ws)
    fv.ingest(frame(np.arange(2000), np.arange(2000)))
    expected = fv.to_pandas()  # maps the segment: it must stay while this store holds it
    (segment,) = [k for k in objects(ws, "features/") if k.endswith(".kseg")]
    rng = np.random.default_rng(0)
    blobs = [rng.bytes(100_000) for _ in range(6)]
    digests = [ws.put_artifact(b) for b in blobs]
    files = cached_files(cache)
    assert sum(files.values()) <= bound + os.path.getsize(cache / "objects" / segment)
    assert segment in files  # mapped: never evicted
    assert len(files) < 7
    # Evicted objects come back from the bucket, verified.
    for blob, digest in zip(blobs, digests):
        assert ws.get_artifact(digest) == blob
    pd.testing.assert_frame_equal(fv.to_pandas(), expected)
    del fv, expected, ws  # the mapping goes with the store
    import gc
    gc.collect()
    other = keel.open(path, cache_dir=cache, cache_max_bytes=bound)
    for digest in digests:
        other.get_artifact(digest)
    assert sum(cached_files(cache).values()) <= bound


# --- several processes ----------------------------------------------------------------------------

WRITER = """
import sys, numpy as np, pandas as pd, keel
path, me = sys.argv[1], int(sys.argv[2])
ws = keel.open(path)
fv = ws.features.feature_view("activity")
T0 = pd.Timestamp("2026-01-01", tz="UTC")
digests = []
for i in range(15):
    digests.append(ws.put_artifact(f"shared-{i}".encode()))          # the other process writes these too
    digests.append(ws.put_artifact(f"own-{me}-{i}".encode() * 1000))
    ids = np.arange(me * 1000 + i * 10, me * 1000 + i * 10 + 10)
    fv.ingest(pd.DataFrame({"player_id": ids, "event_timestamp": T0, "sessions": ids, "spend": ids * 1.5}))
    ws.features.feature_view("activity").to_pandas()                 # reads the other's segments too
print(" ".join(digests))
"""


def test_two_processes_write_and_read_the_same_workspace_objects(s3_prefix, tmp_path):
    path = tmp_path / "ws.keel"
    ws = keel.open(path, artifacts=s3_prefix)
    activity(ws)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(me)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for me in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    digests = set(" ".join(out for out, _ in outs).split())
    assert len(digests) == 15 + 30
    fresh = keel.open(path, cache_dir=tmp_path / "fresh")  # everything from the bucket, verified
    for i in range(15):
        assert fresh.get_artifact(keel.open(path).put_artifact(f"shared-{i}".encode())) == f"shared-{i}".encode()
    for d in digests:
        fresh.native.verify_artifact(d)
    table = fresh.features.feature_view("activity").to_pandas()
    assert sorted(table["player_id"]) == sorted(list(range(1000, 1150)) + list(range(2000, 2150)))
    assert (table["sessions"] == table["player_id"]).all()


KILLED_WRITER = """
import os, sys, keel
ws = keel.open(sys.argv[1])
print("ready", flush=True)
for i in range(1000):
    ws.put_artifact(os.urandom(20_000_000))
    print("stored", flush=True)
"""


def test_kill_during_an_upload_leaves_the_workspace_consistent(s3_prefix, tmp_path):
    path = tmp_path / "ws.keel"
    ws = keel.open(path, artifacts=s3_prefix)
    keep = ws.put_artifact(b"before")
    staging = path / "cache" / "tmp"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().strip() == "stored"  # one upload done; the next is under way
    deadline = time.time() + 60
    while time.time() < deadline and not os.listdir(staging):
        time.sleep(0.001)
    assert os.listdir(staging), "the writer never staged its next upload"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Every artifact the metadata names is whole in the bucket and verifies; an upload that was cut
    # off left at most an object nobody names.
    import sqlite3
    with sqlite3.connect(path / "keel.db") as db:
        recorded = [row[0] for row in db.execute("SELECT digest FROM artifacts")]
    assert keep in recorded and len(recorded) >= 2
    fresh = keel.open(path, cache_dir=tmp_path / "fresh")
    for digest in recorded:
        fresh.native.verify_artifact(digest)
    assert fresh.get_artifact(keep) == b"before"
    assert fresh.put_artifact(b"after") and fresh.get_artifact(fresh.put_artifact(b"after")) == b"after"


BIG_OBJECT = """
import json, sys
import keel
path, artifacts, cache_a, cache_b, source, dest = sys.argv[1:]


def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def growth(fn):
    # The peak resident size (VmHWM, reset through clear_refs) over the resident size before.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    result = fn()
    return result, status("VmHWM") - before


ws = keel.open(path, artifacts=artifacts, cache_dir=cache_a)
ws.put_artifact(b"warm up")  # the connections and the cache exist before measuring
other = keel.open(path, cache_dir=cache_b)  # another machine: nothing cached, a download
other.put_artifact(b"warm up")
digest, upload = growth(lambda: ws.native.put_artifact_file(source))
_, download = growth(lambda: other.native.copy_artifact(digest, dest))
data, control = growth(lambda: open(source, "rb").read())  # the measure sees an object held whole
print(json.dumps({"digest": digest, "upload": upload, "download": download, "control": control}))
"""


def test_a_big_object_goes_up_in_parts_and_down_in_pieces_in_bounded_memory(s3_env, s3_prefix, tmp_path):
    """~50 MiB with 5 MiB parts: neither the upload nor the download holds the object in memory."""
    size = 50 << 20
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    import hashlib
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    env = {**os.environ, "KEEL_S3_MULTIPART_THRESHOLD": str(8 << 20), "KEEL_S3_PART_SIZE": str(5 << 20)}
    args = [str(tmp_path / "ws.keel"), s3_prefix, str(tmp_path / "cache-a"), str(tmp_path / "cache-b"), str(source),
            str(tmp_path / "back.bin")]
    out = subprocess.run([sys.executable, "-c", BIG_OBJECT, *args], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    import json
    got = json.loads(out.stdout)
    assert got["digest"] == sha
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == sha
    # Peak memory grows by a few parts at most, well under the object's 50 MiB.
    assert got["control"] >= size, got
    assert got["upload"] < 24 << 20, got
    assert got["download"] < 24 << 20, got
    assert not os.listdir(tmp_path / "cache-b" / "tmp")  # the download was renamed into place whole
    keel.open(tmp_path / "ws.keel", cache_dir=tmp_path / "cache-c").native.verify_artifact(sha)


# --- keel serve -----------------------------------------------------------------------------------

def test_keel_serve_answers_from_a_workspace_on_s3(s3_prefix, tmp_path):
    from sklearn.linear_model import LinearRegression

    ws = keel.open(tmp_path / "ws.keel", artifacts=s3_prefix)
    fv = activity(ws)
    fv.ingest(frame(np.arange(10), np.arange(10) % 3))
    ws.features.materialize("activity")
    x = pd.DataFrame({"sessions": [0.0, 1.0, 0.0], "spend": [0.0, 0.0, 1.0]})
    ws.models.log_model(None, LinearRegression().fit(x, x.to_numpy() @ np.array([1.0, 2.0])), "churn")
    ws.endpoint("solo", model="churn/1", features=["activity:sessions", "activity:spend"])
    with keel.serve(ws.path, threads=1, env={"KEEL_CACHE_DIR": str(tmp_path / "server-cache")}) as server:
        answer = server.predict("solo", [{"player_id": 4}])
        assert answer[0]["prediction"] == pytest.approx((4 % 3) + 2 * 4 * 1.5)
        online = server.online_features(["activity:sessions"], {"player_id": [4]})
        assert online["features"]["activity:sessions"]["values"] == [1]
    # The server fetched (and verified) the model and the online snapshot into its own cache.
    fetched = sorted(cached_files(tmp_path / "server-cache"))
    assert any(k.startswith("artifacts/sha256/") for k in fetched), fetched
    assert any(k.startswith("features/online/activity/") for k in fetched), fetched


def test_keel_server_takes_artifacts_and_refuses_another_location(s3_prefix, tmp_path):
    from keel import server

    path = tmp_path / "ws.keel"
    keel.open(path, artifacts=s3_prefix)
    wrong = s3_prefix + "-elsewhere"
    args = server.server_args(str(path), host="127.0.0.1", port=0, artifacts=wrong) + ["--json"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "InvalidArgument" in done.stderr and wrong + "/" in done.stderr and s3_prefix + "/" in done.stderr

"""A team workspace end to end: metadata on a real PostgreSQL, objects on a real S3 (SeaweedFS),
served by keel-server, changed from other processes that know only the URL.

The module tests (tracking, registry, lineage, features, serving) already run each test on this
shape through the `ws` fixture; this file checks what only the whole shape shows: another machine
opening it by URL alone, and a server following changes made elsewhere.
"""

import json
import subprocess
import sys
import time
import uuid

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def linear(weights):
    x = pd.DataFrame({"sessions": [0.0, 1.0, 0.0], "spend": [0.0, 0.0, 1.0]})
    return LinearRegression().fit(x, x.to_numpy() @ np.asarray(weights))


@pytest.fixture
def team(postgres_server, s3_prefix, tmp_path):
    """A new team workspace: its URL (a schema of its own) and its S3 prefix."""
    url = f"{postgres_server.url}?schema=team_{uuid.uuid4().hex[:12]}"
    ws = keel.open(url, artifacts=s3_prefix, cache_dir=tmp_path / "cache")
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("activity", entities=["player"], ttl="3650d", schema={"sessions": "int64", "spend": "float64"})
    ids = np.arange(100)
    fv.ingest(pd.DataFrame({"player_id": ids, "event_timestamp": T0, "sessions": ids % 7, "spend": ids * 1.0}))
    fs.materialize("activity")
    ws.models.log_model(None, linear([1.0, 2.0]), "churn")   # churn/1
    ws.models.log_model(None, linear([0.0, -1.0]), "churn")  # churn/2
    ws.models.set_alias("churn", "champion", 1)
    ws.endpoint("churn", model="churn@champion", features=["activity:sessions", "activity:spend"])
    return ws


def in_another_process(code: str, url: str) -> str:
    """Runs `code` with `ws = keel.open(url)`: another machine that knows only the URL."""
    out = subprocess.run([sys.executable, "-c", f"import keel, sys\nws = keel.open(sys.argv[1])\n{code}", url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_url_alone_opens_everything_on_another_machine(team, s3_prefix):
    assert team.artifacts_url == s3_prefix + "/" and team.metadata.startswith("postgresql://")
    out = in_another_process(
        "import json\n"
        "p = ws.endpoint('churn').predict({'player_id': 3})\n"
        "print(json.dumps({'artifacts': ws.artifacts_url, 'version': p['version'], 'prediction': p['prediction'],\n"
        "                  'models': [v.version for v in ws.models.versions('churn')]}))", team.location)
    got = json.loads(out)
    assert got["artifacts"] == s3_prefix + "/"          # recorded in the metadata, not passed
    assert got["models"] == [1, 2]
    assert got["version"] == 1 and got["prediction"] == pytest.approx(3 * 1.0 + 3.0 * 2.0)


def test_a_different_artifacts_location_is_refused_naming_both(team, s3_prefix, tmp_path):
    with pytest.raises(keel.InvalidArgument, match=r"keeps its artifacts in s3://.*not in"):
        keel.open(team.location, artifacts=str(tmp_path / "elsewhere"))


def test_keel_server_on_the_url_follows_changes_made_on_another_machine(team):
    with keel.serve(team, threads=2) as server:
        first = server.predict("churn", [{"player_id": 4}])[0]
        assert (first["model"], first["version"]) == ("churn/1", 1)
        assert first["prediction"] == pytest.approx(4 * 1.0 + 4.0 * 2.0)
        in_another_process("ws.models.set_alias('churn', 'champion', 2)", team.location)
        deadline = time.monotonic() + 1.5  # a change made elsewhere is served within a second
        while True:
            got = server.predict("churn", [{"player_id": 4}])[0]
            if got["version"] == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got["version"] == 2 and got["prediction"] == pytest.approx(-4.0)


# --- one artifacts location, one workspace ---------------------------------------------------------

def test_a_second_workspace_on_a_used_artifacts_location_is_refused(postgres_server, s3_prefix, tmp_path):
    """gc of one workspace deletes what its rows do not name: two workspaces sharing a prefix would
    delete each other's objects, so the second is refused before it writes anything."""
    first = keel.open(f"{postgres_server.url}?schema=t_{uuid.uuid4().hex[:16]}", artifacts=s3_prefix,
                      cache_dir=tmp_path / "c1")
    other_url = f"{postgres_server.url}?schema=t_{uuid.uuid4().hex[:16]}"
    for attempt in (
            lambda: keel.open(other_url, artifacts=s3_prefix, cache_dir=tmp_path / "c2"),
            lambda: keel.open(tmp_path / "local.keel", artifacts=s3_prefix)):
        with pytest.raises(keel.errors.AlreadyExists, match="already holds objects") as e:
            attempt()
        assert s3_prefix.rstrip("/") in str(e.value)
    assert not (tmp_path / "local.keel").exists()  # nothing left behind
    # The refused workspace was not created: given a location of its own, it opens.
    other = keel.open(other_url, artifacts=f"{s3_prefix.rstrip('/')}-other/", cache_dir=tmp_path / "c3")
    assert other.location == other_url
    # The first goes on as before, from any process (it reopens its own claim).
    assert len(first.reopen().models.list()) == 0


def test_racing_first_opens_of_one_new_workspace_agree(postgres_server, s3_prefix, tmp_path):
    url = f"{postgres_server.url}?schema=t_{uuid.uuid4().hex[:16]}"
    code = ("import keel, sys\n"
            "ws = keel.open(sys.argv[1], artifacts=sys.argv[2], cache_dir=sys.argv[3])\n"
            "print(ws.location)")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, s3_prefix, str(tmp_path / f"c{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-800:] for _, err in outs]

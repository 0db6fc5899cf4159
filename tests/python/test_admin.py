"""keel admin migrate and keel admin copy: a workspace's schema versions, and a whole workspace
moved between backends (directory/SQLite <-> PostgreSQL + S3), verified by digest."""
import json
import sqlite3
import uuid

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel
from keel import cli

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def populate(ws, tmp_path):
    """Every kind of content: runs, metrics, artifacts, models and aliases, lineage, a feature view
    with data and a materialization, a training set, an endpoint, quality rules and an issue."""
    with ws.start_run(experiment="churn", name="fit") as run:
        run.log_params({"lr": 0.1})
        for step in range(30):
            run.log_metric("auc", 0.5 + step / 100, step=step)
        (tmp_path / "report.txt").write_text("fine")
        run.log_artifact(tmp_path / "report.txt")
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("activity", entities=["player"], schema={"sessions": "int64", "spend": "float64"})
    n = 100
    fv.ingest(pd.DataFrame({"player_id": np.arange(n), "event_timestamp": T0, "sessions": np.arange(n) % 7,
                            "spend": np.arange(n) * 1.0}))
    fs.materialize("activity")
    x = pd.DataFrame({"sessions": [0.0, 1.0, 0.0], "spend": [0.0, 0.0, 1.0]})
    ws.models.log_model(None, LinearRegression().fit(x, [0.0, 1.0, 2.0]), "churn")
    ws.models.set_alias("churn", "champion", 1)
    ws.lineage.add_edge("feature_view:activity", "feeds", "model:churn/1")
    ws.endpoint("churn", model="churn@champion", features=["activity:sessions", "activity:spend"])
    from keel import quality
    c = quality.checks(ws, "feature_view:activity")
    c.add_rule("plugins/quality/range.lua", column="spend", max=-1, severity="warn")
    c.run(pd.DataFrame({"spend": [1.0]}))


LABELS = pd.DataFrame({"player_id": [3, 10, 50], "event_timestamp": [T0 + pd.Timedelta("1h")] * 3})


def reads(ws):
    """What users read back, to compare across copies."""
    runs = ws.runs.search(experiment="churn").to_pandas()
    model = ws.models.load("churn@champion")
    x = pd.DataFrame({"sessions": [1.0, 2.0], "spend": [3.0, 4.0]})
    train = ws.features.training_set(LABELS, features=["activity:sessions", "activity:spend"]).to_pandas()
    online = ws.features.get_online(["activity:spend"], player_id=[1, 2, 3])
    return {"runs": runs[["name", "params.lr", "metrics.auc"]].to_dict("records"),
            "predict": list(model.predict(x)),
            "train": train.to_dict("records"),
            "online": pd.DataFrame(online).drop(columns="activity__age_ms", errors="ignore").to_dict("records"),
            "endpoint": ws.endpoint("churn").predict({"player_id": 10})["prediction"],
            "aliases": ws.models.get("churn@champion").version}


def test_copy_sqlite_to_postgres_s3_and_back(tmp_path, postgres_server, s3_prefix):
    src = tmp_path / "src.keel"
    populate(keel.open(src), tmp_path)
    before = reads(keel.open(src))
    url = f"{postgres_server.url}?schema=t_{uuid.uuid4().hex[:12]}"

    to_pg = keel.admin.copy(str(src), url, dst_artifacts=s3_prefix, progress=False)
    assert {t["table"] for t in to_pg["tables"]} >= {"tracking_runs", "registry_aliases", "lineage_edges",
                                                    "features_segments", "serving_endpoint_revisions",
                                                    "plugins_data_issues"}
    assert any(o["key"].startswith("features/") for o in to_pg["objects"])
    back = tmp_path / "back.keel"
    assert keel.admin.copy(url, str(back), progress=False) == to_pg
    assert keel.admin.digest(keel.open(back)) == keel.admin.digest(keel.open(src)) == to_pg
    pg = keel.open(url, cache_dir=tmp_path / "cache")
    assert reads(pg) == before  # (reads write: an endpoint logs its predictions)
    assert reads(keel.open(back)) == before
    # ids continue past the copied ones on PostgreSQL (its identity sequences were moved)
    with pg.start_run(experiment="churn", name="after") as run:
        run.log_metric("auc", 0.9)
    assert len(pg.runs.search(experiment="churn").to_pandas()) == 2

    with pytest.raises(keel.AlreadyExists, match="holds tables keel_schema"):
        keel.admin.copy(str(src), url, dst_artifacts=s3_prefix + "-other")
    with pytest.raises(keel.AlreadyExists, match="objects"):
        keel.admin.copy(str(src), str(tmp_path / "new.keel"), dst_artifacts=s3_prefix)


def test_a_tampered_object_fails_the_copy_and_leaves_an_unusable_destination(tmp_path):
    src = tmp_path / "src.keel"
    populate(keel.open(src), tmp_path)
    dst = tmp_path / "dst.keel"

    def tamper(phase, item, done, total):
        if phase == "verify" and done == 0:  # after the copy, before reading it back
            victim = next((dst / "artifacts").rglob("*"), None)
            for path in (dst / "artifacts").rglob("*"):
                if path.is_file():
                    victim = path
            victim.write_bytes(b"tampered")

    with pytest.raises(keel.Corrupt, match="differs at the destination"):
        keel.admin.copy(str(src), str(dst), progress=tamper)
    with pytest.raises(keel.Corrupt, match="unfinished `keel admin copy`"):
        keel.open(dst)

    # A source artifact whose content no longer matches its sha256
    damaged = next(p for p in (src / "artifacts").rglob("*") if p.is_file())
    damaged.write_bytes(b"rot")
    with pytest.raises(keel.Corrupt, match="damaged"):
        keel.admin.copy(str(src), str(tmp_path / "other.keel"), progress=False)


def test_migrate_dry_run_apply_and_a_newer_workspace(tmp_path, capsys):
    ws = keel.open(tmp_path / "w.keel")
    with ws.start_run(experiment="e") as run:
        run.log_metric("m", 1.0)
    w = ["--workspace", str(tmp_path / "w.keel")]
    rows = keel.admin.migrate(str(tmp_path / "w.keel"), dry_run=True)
    registry = next(r for r in rows if r["module"] == "registry")
    assert registry["version"] == 0 and registry["known"] >= 1 and registry["pending"]
    assert cli.main(w + ["admin", "migrate", "--dry-run"]) == 1  # pending: a deploy would change it
    assert keel.admin.migrate(str(tmp_path / "w.keel"), dry_run=True) == rows  # the dry run changed nothing
    assert cli.main(w + ["admin", "migrate"]) == 0
    assert cli.main(w + ["admin", "migrate", "--dry-run"]) == 0
    capsys.readouterr()
    assert all(not r["pending"] for r in keel.admin.migrate(str(tmp_path / "w.keel")))

    with sqlite3.connect(tmp_path / "w.keel" / "keel.db") as db:
        db.execute("UPDATE keel_schema SET version = 99 WHERE module = 'tracking'")
    assert cli.main(w + ["admin", "migrate", "--dry-run", "--json"]) == 6
    err = capsys.readouterr().err
    assert "'tracking' tables at schema version 99" in err and "upgrade Keel" in err
    with pytest.raises(keel.Corrupt, match=r"version 99.*only up to version \d"):
        keel.open(tmp_path / "w.keel").runs.search()
    with pytest.raises(keel.NotFound, match=r"\(no keel\.db\)"):
        keel.admin.migrate(str(tmp_path / "none"))


@pytest.mark.parametrize("shape", ["sqlite", "postgres"])
def test_copy_reads_one_snapshot_and_does_not_block_writers(tmp_path, shape, request):
    """A writer logging to the source during a copy is not held up, and the copy is the snapshot the
    copy started from (its digest), without what was written meanwhile."""
    import threading
    import time

    if shape == "sqlite":
        src, artifacts = str(tmp_path / "src.keel"), None
    else:
        src = f"{request.getfixturevalue('postgres_server').url}?schema=t_{uuid.uuid4().hex[:12]}"
        artifacts = str(tmp_path / "objects")
    populate(keel.open(src, artifacts=artifacts), tmp_path)

    stop, started = threading.Event(), threading.Event()
    latencies: list[tuple[float, float]] = []  # (when it returned, how long it took)

    def writer():
        ws = keel.open(src, artifacts=artifacts)
        with ws.start_run(experiment="churn", name="during-copy") as run:
            started.set()
            step = 0
            while not stop.is_set():
                t = time.monotonic()
                run.log_metric("loss", 1.0 / (step + 1), step=step)
                latencies.append((time.monotonic(), time.monotonic() - t))
                step += 1
                time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(30)
    window = []

    def hold(phase, item, done, total):
        # Inside the copy, with the source's snapshot open: the writer must go on meanwhile.
        if phase == "rows" and not window:
            window.append(time.monotonic())
            time.sleep(1.5)
            window.append(time.monotonic())

    try:
        copied = keel.admin.copy(src, str(tmp_path / "dst.keel"), src_artifacts=artifacts, progress=hold)
    finally:
        stop.set()
        thread.join(30)
    during = [took for at, took in latencies if window[0] <= at <= window[1]]
    assert len(during) >= 20, f"the writer made only {len(during)} calls during the copy"
    assert max(took for _, took in latencies) < 1.0

    dst = keel.open(tmp_path / "dst.keel")
    assert keel.admin.digest(dst) == copied  # the copy is the snapshot, verified by digest
    later = keel.admin.digest(keel.open(src, artifacts=artifacts))
    assert later["tables"] != copied["tables"]  # the source moved on meanwhile; the copy did not follow
    copied_points = next(t["rows"] for t in copied["tables"] if t["table"] == "tracking_metric_points")
    final_points = next(t["rows"] for t in later["tables"] if t["table"] == "tracking_metric_points")
    assert copied_points < final_points - len(during) + 1


def test_an_object_removed_while_the_copy_runs_fails_it_clearly(tmp_path):
    """The snapshot's rows name a segment that a writer removes after the snapshot was taken (as
    retiring a view does): the copy must not pass for complete without it."""
    src = tmp_path / "src.keel"
    populate(keel.open(src), tmp_path)
    dst = tmp_path / "dst.keel"
    removed = []

    def writer_removes_a_segment(phase, item, done, total):
        if phase == "rows" and not removed:
            segment = next(p for p in (src / "features").rglob("*.kseg") if "online" not in p.parts)
            segment.unlink()
            removed.append(segment.relative_to(src).as_posix())

    with pytest.raises(keel.Conflict, match=r"removed from .* while the copy ran.*copy again"):
        keel.admin.copy(str(src), str(dst), progress=writer_removes_a_segment)
    with pytest.raises(keel.Corrupt, match="unfinished `keel admin copy`"):
        keel.open(dst)


# --- keel admin gc ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["local", "s3"])
def test_gc_sweeps_orphans_only_past_the_grace_period(tmp_path, shape, request, capsys):
    """A crashed upload (an object no row names) is swept; nothing a row names is; a fresh orphan is
    kept inside the grace period; a dry run deletes nothing."""
    import os
    import time

    artifacts = request.getfixturevalue("s3_prefix") if shape == "s3" else None
    path = tmp_path / "ws.keel"
    ws = keel.open(path, artifacts=artifacts)
    populate(ws, tmp_path)
    before = reads(ws)

    def stored(w=ws):
        return dict(w.native.list_objects("artifacts/") + w.native.list_objects("features/"))

    named = stored()
    assert any(k.startswith("features/") for k in named) and any(k.startswith("artifacts/") for k in named)

    def put_orphan(key: str, data: bytes) -> None:
        if shape == "local":
            (path / key).parent.mkdir(parents=True, exist_ok=True)
            (path / key).write_bytes(data)
            return
        from s3_request import signed_request
        s3 = request.getfixturevalue("s3_env")
        url = f"{s3.endpoint}/{ws.native.object_url(key)[len('s3://'):]}"
        status, body = signed_request("PUT", url, s3.access_key, s3.secret_key, s3.region, body=data)
        assert status == 200, body

    # Crashes between an upload and its row: an artifact stored, its row never written; a segment too.
    digest = ws.put_artifact(b"a model whose run crashed")
    with sqlite3.connect(path / "keel.db") as db:
        db.execute("DELETE FROM artifacts WHERE digest = ?", (digest,))
    orphans = {f"artifacts/sha256/{digest[:2]}/{digest[2:]}", "features/activity/v1/crashed-segment.kseg"}
    put_orphan("features/activity/v1/crashed-segment.kseg", b"half an ingest")
    time.sleep(1.1)  # S3 times have whole seconds

    # Inside the grace period: kept (an upload whose row is being written looks just like this).
    fresh = keel.admin.gc(ws)
    assert fresh["swept"] == [] and {e["key"] for e in fresh["young"]} == orphans
    assert fresh["named"] == len(named) and fresh["objects"] == len(named) + 2

    dry = keel.admin.gc(ws, older_than="0s", dry_run=True)
    assert {e["key"] for e in dry["swept"]} == orphans and dry["young"] == []
    assert dry["swept_bytes"] == len(b"a model whose run crashed") + len(b"half an ingest")
    assert set(stored()) == set(named) | orphans  # a dry run deletes nothing

    swept = keel.admin.gc(ws, older_than="0s")
    assert {e["key"] for e in swept["swept"]} == orphans
    assert stored() == named  # nothing a row names went
    assert keel.admin.gc(ws, older_than=0)["swept"] == []
    fresh_ws = keel.open(path, cache_dir=tmp_path / "fresh-cache")  # read back from the store itself
    assert reads(fresh_ws) == before

    if shape == "local":  # an orphan written two hours ago goes with the default grace (1h); the CLI
        put_orphan("artifacts/sha256/00/" + "0" * 62, b"old")
        os.utime(path / "artifacts/sha256/00" / ("0" * 62), (time.time() - 7200, time.time() - 7200))
        put_orphan("artifacts/sha256/11/" + "1" * 62, b"new")
        assert cli.main(["--workspace", str(path), "admin", "gc", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert [e["key"] for e in out["swept"]] == ["artifacts/sha256/00/" + "0" * 62]
        assert [e["key"] for e in out["young"]] == ["artifacts/sha256/11/" + "1" * 62]
        assert out["swept"][0]["modified_at"].endswith("+00:00")
        assert not (path / "artifacts/sha256/00" / ("0" * 62)).exists()
        # A writer killed between staging and committing leaves a staged file: old ones go too.
        (path / "artifacts" / ".tmp-killedwriter").write_bytes(b"half")
        os.utime(path / "artifacts" / ".tmp-killedwriter", (time.time() - 7200, time.time() - 7200))
        (path / "artifacts" / ".tmp-writing").write_bytes(b"half")
        staged = keel.admin.gc(ws)["staged"]
        assert [e["key"] for e in staged] == ["artifacts/.tmp-killedwriter"]
        assert not (path / "artifacts" / ".tmp-killedwriter").exists()
        assert (path / "artifacts" / ".tmp-writing").exists()  # inside the grace period: being written
        assert cli.main(["--workspace", str(path), "admin", "gc", "--older-than", "soon"]) == 4
        assert "not a duration" in capsys.readouterr().err
    else:  # a multipart upload a killed writer left: its parts are aborted
        from s3_request import signed_request
        s3 = request.getfixturevalue("s3_env")
        url = f"{s3.endpoint}/{ws.native.object_url('artifacts/sha256/22/' + '2' * 62)[len('s3://'):]}?uploads="
        status, body = signed_request("POST", url, s3.access_key, s3.secret_key, s3.region)
        assert status == 200, body
        time.sleep(1.1)
        assert keel.admin.gc(ws)["aborted_uploads"] == []  # inside the grace period
        aborted = keel.admin.gc(ws, older_than="0s")["aborted_uploads"]
        assert [u["key"] for u in aborted] == ["artifacts/sha256/22/" + "2" * 62]
        assert keel.admin.gc(ws, older_than="0s")["aborted_uploads"] == []

"""Artifacts never leave their run or their download folder, and logging never blocks on a special
file (issue 10, items 6 and 8)."""
import os
import sqlite3
import threading

import pytest

import keel


def _run(ws):
    return ws.start_run(experiment="safety")


def test_symlinked_file_is_stored_under_its_own_name_and_download_stays_inside(ws, tmp_path):
    outside = tmp_path / "elsewhere" / "PAYLOAD_ESCAPED.txt"
    outside.parent.mkdir()
    outside.write_text("payload")
    logged = tmp_path / "a" / "b" / "c" / "logged"
    (logged / "deep").mkdir(parents=True)
    (logged / "deep" / "real.txt").write_text("real")
    os.symlink(outside, logged / "deep" / "link.txt")
    os.symlink(os.path.relpath(outside, logged / "deep"), logged / "deep" / "rel_link.txt")
    run = _run(ws)
    paths = sorted(e["path"] for e in run.log_artifact(logged))
    assert paths == ["logged/deep/link.txt", "logged/deep/real.txt", "logged/deep/rel_link.txt"]
    dest = tmp_path / "x" / "y" / "z" / "dest"
    run.download_artifacts(dest)
    assert (dest / "logged" / "deep" / "link.txt").read_text() == "payload"
    assert (dest / "logged" / "deep" / "rel_link.txt").read_text() == "payload"
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("PAYLOAD_ESCAPED.txt"))
    assert written == ["elsewhere/PAYLOAD_ESCAPED.txt"]


def test_linked_directory_and_dangling_link_are_refused_naming_the_entry(ws, tmp_path):
    target = tmp_path / "target_dir"
    target.mkdir()
    (target / "secret.txt").write_text("s")
    logged = tmp_path / "logged"
    logged.mkdir()
    (logged / "ok.txt").write_text("ok")
    os.symlink(target, logged / "linked_dir")
    run = _run(ws)
    with pytest.raises(keel.InvalidArgument, match="'linked_dir' is a symlink to a directory"):
        run.log_artifact(logged)
    os.remove(logged / "linked_dir")
    os.symlink(tmp_path / "gone", logged / "dangling")
    with pytest.raises(keel.InvalidArgument, match="'dangling' is a symlink to missing"):
        run.log_artifact(logged)
    assert run.artifacts() == []  # nothing half-logged


def test_recorded_path_that_climbs_out_is_refused_at_download(ws, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    run = _run(ws)
    run.log_artifact(tmp_path / "f.txt", artifact_path="dir")
    run.log_artifact(tmp_path / "f.txt", artifact_path="ok")
    # A path written by an older Keel, or edited in keel.db, must not steer a download.
    db = sqlite3.connect(tmp_path / "ws.keel" / "keel.db")
    db.execute("UPDATE tracking_artifacts SET path = 'dir/../../../ESCAPED.txt' WHERE path = 'dir/f.txt'")
    db.commit()
    db.close()
    dest = tmp_path / "d1" / "d2" / "dest"
    with pytest.raises(keel.Corrupt, match=r"dir/\.\./\.\./\.\./ESCAPED\.txt"):
        run.download_artifacts(dest)
    assert not list(tmp_path.rglob("ESCAPED.txt"))
    assert not (dest / "ok").exists()  # refused before anything was written
    run.download_artifacts(dest, path="ok")  # the other artifacts stay reachable
    assert (dest / "ok" / "f.txt").read_text() == "x"


@pytest.mark.parametrize("bad", ["/etc/ESCAPED.txt", "a//b.txt", "a/./b.txt", "", "a/b\0c"])
def test_every_unsafe_recorded_path_is_refused(ws, tmp_path, bad):
    (tmp_path / "f.txt").write_text("x")
    run = _run(ws)
    run.log_artifact(tmp_path / "f.txt")
    db = sqlite3.connect(tmp_path / "ws.keel" / "keel.db")
    db.execute("UPDATE tracking_artifacts SET path = ?", (bad,))
    db.commit()
    db.close()
    with pytest.raises(keel.Corrupt):
        run.download_artifacts(tmp_path / "dest")
    assert not (tmp_path / "etc").exists()


def test_download_refuses_a_symlinked_folder_inside_dest(ws, tmp_path):
    src = tmp_path / "src" / "sub"
    src.mkdir(parents=True)
    (src / "f.txt").write_text("x")
    run = _run(ws)
    run.log_artifact(tmp_path / "src")
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, dest / "src")  # planted before the download
    with pytest.raises(keel.InvalidArgument, match="outside the destination"):
        run.download_artifacts(dest)
    assert list(outside.iterdir()) == []


def test_artifact_path_with_nul_is_refused(ws, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    run = _run(ws)
    with pytest.raises((keel.InvalidArgument, ValueError)):
        run.log_artifact(tmp_path / "f.txt", artifact_path="a\0b")


def test_download_without_dest_uses_a_fresh_temporary_folder(ws, tmp_path):
    (tmp_path / "model.txt").write_text("weights")
    run = _run(ws)
    run.log_artifact(tmp_path / "model.txt")
    first = run.download_artifacts()
    second = run.download_artifacts()
    assert first != second and os.path.isdir(first)
    with open(os.path.join(first, "model.txt")) as f:
        assert f.read() == "weights"


def _bounded(fn, seconds=10):
    """Runs fn in a thread; fails the test instead of hanging when it blocks."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001  (handed back to the test)
            result["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "log_artifact blocked"
    if "error" in result:
        raise result["error"]
    return result.get("value")


def test_log_artifact_on_a_named_pipe_is_refused_without_blocking(ws, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    run = _run(ws)
    with pytest.raises(keel.InvalidArgument, match="named pipe"):
        _bounded(lambda: run.log_artifact(fifo))
    with pytest.raises(keel.InvalidArgument, match="character device"):
        _bounded(lambda: run.log_artifact("/dev/zero"))


def test_directory_with_a_named_pipe_is_refused_naming_it(ws, tmp_path):
    logged = tmp_path / "logged"
    logged.mkdir()
    (logged / "a.txt").write_text("a")
    os.mkfifo(logged / "pipe")
    run = _run(ws)
    with pytest.raises(keel.InvalidArgument, match="'pipe' is a named pipe"):
        _bounded(lambda: run.log_artifact(logged))
    assert run.artifacts() == []


def test_put_artifact_file_on_a_pipe_is_refused(ws, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(keel.InvalidArgument, match="not a regular file"):
        _bounded(lambda: ws.native.put_artifact_file(str(fifo)))

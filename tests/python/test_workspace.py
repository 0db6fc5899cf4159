import os

import pytest

import keel


def test_open_creates_layout_and_reopens(tmp_path):
    ws = keel.open(tmp_path / "w")
    assert os.path.exists(tmp_path / "w" / "keel.db")
    digest = ws.put_artifact(b"payload")
    assert keel.open(tmp_path / "w").get_artifact(digest) == b"payload"


def test_errors_are_keel_errors_with_kind_classes(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(keel.InvalidArgument, match="is a file, not a directory"):
        keel.open(tmp_path / "f")
    assert issubclass(keel.NotFound, keel.KeelError)


def test_tampered_artifact_raises_corrupt(ws):
    digest = ws.put_artifact(b"x" * 1000)
    path = ws._native.artifact_path(digest)
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(b"Y")
    with pytest.raises(keel.Corrupt, match=digest):
        ws.get_artifact(digest)


def test_missing_artifact_is_not_found(ws):
    with pytest.raises(keel.NotFound):
        ws.get_artifact("0" * 64)

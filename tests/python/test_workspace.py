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


def test_open_refuses_a_folder_of_other_files_but_takes_an_empty_one(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('hi')")
    with pytest.raises(keel.InvalidArgument, match=r"exists but is not a Keel workspace \(no keel\.db\)"):
        keel.open(project)
    assert sorted(os.listdir(project)) == ["train.py"]  # nothing scattered among the user's files
    (tmp_path / "empty").mkdir()
    assert os.path.exists(os.path.join(keel.open(tmp_path / "empty").path, "keel.db"))


def test_tampered_artifact_raises_corrupt(ws):
    digest = ws.put_artifact(b"x" * 1000)
    path = ws.native.artifact_path(digest)
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(b"Y")
    with pytest.raises(keel.Corrupt, match=digest):
        ws.get_artifact(digest)


def test_missing_artifact_is_not_found(ws):
    with pytest.raises(keel.NotFound):
        ws.get_artifact("0" * 64)

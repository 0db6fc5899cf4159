"""A team workspace's metadata on PostgreSQL, as Python, the CLI and $KEEL_WORKSPACE reach it: the
URL, its errors (quick, naming the fix), a server restart in the middle of a run, and processes that
open the workspace by URL only. The module tests run on PostgreSQL too (conftest's `ws`)."""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import keel
from keel import run_guard

PYTHON_DIR = str(Path(keel.__file__).resolve().parent.parent)


@pytest.fixture
def url(postgres_server):
    """A fresh schema's URL on the session's server."""
    return f"{postgres_server.url}?schema=t_{uuid.uuid4().hex[:16]}"


def child_env(**extra):
    env = {**os.environ, "PYTHONPATH": PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("KEEL_WORKSPACE", None)
    env.pop("KEEL_ARTIFACTS", None)
    return {**env, **extra}


def test_a_postgres_workspace_needs_a_place_for_its_files(url, tmp_path):
    with pytest.raises(keel.InvalidArgument, match="artifacts=s3://bucket/prefix or a shared directory"):
        keel.open(url)
    ws = keel.open(url, artifacts=tmp_path / "files")
    assert ws.path == str(tmp_path / "files")
    assert ws.metadata.startswith("postgresql://postgres@127.0.0.1:") and "schema=t_" in ws.metadata
    digest = ws.put_artifact(b"weights")
    # The location opens the same workspace, files included, from anywhere.
    again = keel.open(ws.location)
    assert again.get_artifact(digest) == b"weights"
    assert os.path.isdir(tmp_path / "files" / "artifacts")


def test_bad_locations_fail_quickly_naming_what_to_fix(postgres_server, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    base = postgres_server.url.rpartition("/")[0]  # postgresql://postgres@127.0.0.1:PORT
    started = time.monotonic()
    with pytest.raises(keel.Unavailable, match=rf"cannot reach PostgreSQL at 127\.0\.0\.1:{closed_port}"):
        keel.open(f"postgresql://postgres@127.0.0.1:{closed_port}/keel", artifacts=tmp_path)
    with pytest.raises(keel.PermissionDenied, match=r"refused user 'nobody'.*check the user and password"):
        keel.open(base.replace("postgres@", "nobody@") + "/keel", artifacts=tmp_path)
    with pytest.raises(keel.NotFound, match=r"no database 'nowhere'.*createdb nowhere"):
        keel.open(base + "/nowhere", artifacts=tmp_path)
    with pytest.raises(keel.InvalidArgument, match="malformed"):
        keel.open(base + "/keel?colour=blue", artifacts=tmp_path)
    assert time.monotonic() - started < 5


def test_a_server_restart_mid_run_is_a_retryable_error_and_the_client_recovers(postgres_server, url, tmp_path):
    ws = keel.open(url, artifacts=tmp_path)
    with ws.start_run(experiment="restart") as run:
        run.log_metric("loss", 1.0, step=0)
        data = postgres_server.dir / "data"
        # The run's heartbeat thread would reconnect first if it beat in between: hold it off.
        with run_guard._lock:
            postgres_server._run(str(postgres_server.bin / "pg_ctl"), "-D", str(data), "-l",
                                 str(postgres_server.log_path), "-m", "immediate", "-w", "restart")
            with pytest.raises(keel.Unavailable, match=r"lost the connection to PostgreSQL.*retry"):
                run.log_metric("loss", 2.0, step=1)
        run.log_metric("loss", 3.0, step=2)  # the next call reconnects
    assert list(keel.open(ws.location).runs.get(run.id).metric_history("loss")["value"]) == [1.0, 3.0]


def test_the_cli_and_keel_workspace_take_the_url(url, tmp_path):
    ws = keel.open(url, artifacts=tmp_path)
    with ws.start_run(experiment="cli", name="by-url") as run:
        run.log_metric("auc", 0.9)
    argv = [sys.executable, "-m", "keel", "runs", "list", "--experiment", "cli", "--json"]
    by_flag = subprocess.run([*argv, "--workspace", ws.location], capture_output=True, text=True,
                             env=child_env(), timeout=60)
    assert by_flag.returncode == 0, by_flag.stderr
    assert [r["name"] for r in json.loads(by_flag.stdout)] == ["by-url"]
    # $KEEL_WORKSPACE holding the bare URL, the files from $KEEL_ARTIFACTS.
    by_env = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                            env=child_env(KEEL_WORKSPACE=url, KEEL_ARTIFACTS=str(tmp_path)))
    assert by_env.returncode == 0, by_env.stderr
    assert [r["name"] for r in json.loads(by_env.stdout)] == ["by-url"]


def test_a_writer_killed_with_sigkill_loses_nothing_it_was_told_was_written(url, tmp_path):
    ws = keel.open(url, artifacts=tmp_path)
    run = ws.start_run(experiment="kill")
    code = ("import sys, keel\n"
            "ws = keel.open(sys.argv[1])\n"
            "run = ws.runs.get(sys.argv[2])\n"
            "for i in range(1_000_000):\n"
            "    run.log_metric('m', float(i), step=i)\n"
            "    print(i, flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, ws.location, run.id], stdout=subprocess.PIPE,
                            text=True, env=child_env())
    acknowledged = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 300:
            break
    proc.kill()
    proc.wait()
    steps = set(keel.open(ws.location).runs.get(run.id).metric_history("m")["step"])
    assert set(range(acknowledged + 1)) <= steps


def test_a_bulk_load_refused_midway_writes_nothing_and_names_the_table(url, tmp_path):
    """Rows past 2,000 go in one COPY: a value the server cannot take, far into the batch, rolls back
    the whole call (runs, params, lineage, the new experiment) and the error names where it failed."""
    ws = keel.open(url, artifacts=tmp_path)
    n = 5_000
    notes = ["fine"] * n
    notes[4_321] = "a NUL \x00 byte"
    with pytest.raises(keel.InvalidArgument, match=r"into 'tracking_params'.*NUL byte"):
        ws.runs.log_runs("bulk", [f"t-{i}" for i in range(n)], params={"note": notes},
                         metrics={"acc": [0.5] * n})
    assert ws.runs.experiments() == []
    assert len(ws.runs.search(max_results=10_000)) == 0
    assert len(ws.lineage.nodes()) == 0
    run = ws.start_run(experiment="after")
    run.log_batch("m", [float(i) for i in range(n)], steps=list(range(n)))  # the connection goes on
    assert len(run.metric_history("m")) == n

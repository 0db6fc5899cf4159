"""The keel command, driven the way a CI script drives it: a subprocess, exit codes and JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keel

PYTHON_DIR = str(Path(keel.__file__).resolve().parent.parent)


def keel_cli(*args, workspace=None, env_workspace=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("KEEL_WORKSPACE", None)
    if env_workspace:
        env["KEEL_WORKSPACE"] = str(env_workspace)
    argv = [sys.executable, "-m", "keel"]
    if workspace:
        argv += ["--workspace", str(workspace)]
    return subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=60)


def run_id(ws, name):
    return ws.runs.search(filter=f"name = '{name}'")[0].id


@pytest.fixture
def registry_ws(ws):
    ws.models.create("churn", description="who leaves", owner="growth")
    ws.models.register("churn", b"v1", run_id=ws.start_run(name="run1").id)  # source runs must exist
    ws.models.register("churn", b"v2", run_id=ws.start_run(name="run2").id,
                       signature={"inputs": [{"name": "spend", "dtype": "float64"}]})
    return ws


def test_models_list_and_show_json(registry_ws):
    ws = registry_ws
    out = keel_cli("models", "list", "--json", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    [model] = json.loads(out.stdout)
    assert (model["name"], model["latest_version"], model["owner"]) == ("churn", 2, "growth")

    out = keel_cli("--json", "models", "show", "churn", workspace=ws.path)  # global flags before the command
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert [v["version"] for v in shown["versions"]] == [1, 2]

    out = keel_cli("models", "show", "churn/2", "--json", env_workspace=ws.path)  # KEEL_WORKSPACE
    assert out.returncode == 0, out.stderr
    version = json.loads(out.stdout)
    assert version["ref"] == "churn/2" and version["run_id"] == run_id(ws, "run2")
    assert version["signature"]["inputs"][0]["name"] == "spend"

    text = keel_cli("models", "show", "churn", workspace=ws.path)
    assert text.returncode == 0 and "who leaves" in text.stdout and run_id(ws, "run2") in text.stdout


def test_promote_sets_alias_and_stage_with_events(registry_ws):
    ws = registry_ws
    out = keel_cli("models", "promote", "churn", "1", "--alias", "champion", "--stage", "Production",
                   workspace=ws.path)
    assert out.returncode == 0, out.stderr
    assert "promoted churn/1" in out.stdout
    out = keel_cli("models", "promote", "churn", "2", "--alias", "champion", "--stage", "production",
                   "--archive-existing", "--json", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    promoted = json.loads(out.stdout)
    assert promoted["aliases"] == ["champion"] and promoted["stage"] == "Production"
    assert ws.models.get("churn@champion").version == 2
    assert ws.models.get("churn/1").stage == "Archived"

    out = keel_cli("models", "delete-alias", "churn", "champion", "--json", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"name": "churn", "alias": "champion", "version": 2}
    out = keel_cli("models", "delete-alias", "churn", "champion", workspace=ws.path)
    assert out.returncode == keel.NotFound.exit_code and "champion" in out.stderr

    events = json.loads(keel_cli("models", "events", "churn", "--json", workspace=ws.path).stdout)
    assert [(e["action"], e["subject"], e["from"], e["to"]) for e in events] == [
        ("stage", "1", None, "Production"), ("alias", "champion", None, "1"),
        ("stage", "2", None, "Production"), ("stage", "1", "Production", "Archived"),
        ("alias", "champion", "1", "2"), ("alias", "champion", "2", None)]  # no stage / no alias: null
    assert all(e["user"] == ws.user for e in events)


@pytest.mark.parametrize("args, kind", [
    (["models", "show", "churn/9"], "NotFound"),
    (["models", "show", "churn@nobody"], "NotFound"),
    (["models", "show", "ltv"], "NotFound"),
    (["models", "show", "churn/x"], "InvalidArgument"),
    (["models", "promote", "churn", "9", "--alias", "champion"], "NotFound"),
    (["models", "promote", "churn", "1"], "InvalidArgument"),
    (["models", "promote", "churn", "1", "--stage", "prod"], "InvalidArgument"),
    (["models", "promote", "churn", "1", "--alias", "latest"], "InvalidArgument"),
    (["models", "frobnicate"], "InvalidArgument"),
    (["lineage", "upstream", "not a ref"], "InvalidArgument"),
    (["lineage", "upstream", "model:nope/1"], "NotFound"),
])
def test_failures_exit_with_the_kind(registry_ws, args, kind):
    out = keel_cli(*args, workspace=registry_ws.path)
    assert out.returncode == getattr(keel, kind).exit_code, (out.stdout, out.stderr)
    assert out.stderr.startswith(f"error: {kind}: "), out.stderr
    assert out.stdout == ""


def test_failed_promote_changes_nothing(registry_ws):
    out = keel_cli("models", "promote", "churn", "1", "--alias", "champion", "--stage", "bogus",
                   workspace=registry_ws.path)
    assert out.returncode == keel.InvalidArgument.exit_code
    assert registry_ws.models.model("churn").aliases == {}


def test_workspace_is_required_and_must_exist(tmp_path):
    out = keel_cli("models", "list")
    assert out.returncode == keel.InvalidArgument.exit_code
    assert "KEEL_WORKSPACE" in out.stderr
    out = keel_cli("models", "list", workspace=tmp_path / "missing")
    assert out.returncode == keel.NotFound.exit_code
    assert "missing" in out.stderr
    assert not (tmp_path / "missing").exists()  # reading never creates a workspace
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("x")
    for folder in (tmp_path / "project", tmp_path / "project" / "notes.txt"):
        out = keel_cli("models", "list", workspace=folder)
        assert out.returncode == keel.NotFound.exit_code
        assert "exists but is not a Keel workspace (no keel.db" in out.stderr, out.stderr
        assert "does not exist" not in out.stderr
    assert sorted(os.listdir(tmp_path / "project")) == ["notes.txt"]


def test_lineage_upstream_and_downstream(registry_ws):
    ws = registry_ws
    out = keel_cli("lineage", "upstream", "model:churn/2", "--json", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    up = json.loads(out.stdout)
    assert up["root"] == "model:churn/2"
    edge = {"from": f"run:{run_id(ws, 'run2')}", "kind": "produced", "to": "model:churn/2"}
    assert edge.items() <= up["edges"][0].items()
    out = keel_cli("lineage", "downstream", f"run:{run_id(ws, 'run1')}", "--depth", "1", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    assert f"run:{run_id(ws, 'run1')} -produced-> model:churn/1" in out.stdout
    assert "version_of" not in out.stdout  # depth 1 stops after the first hop
    out = keel_cli("lineage", "upstream", "model:churn/2", "--as-of", "2020-01-01T00:00Z", "--json", workspace=ws.path)
    assert out.returncode == keel.NotFound.exit_code and "did not exist yet" in out.stderr  # nothing existed then
    out = keel_cli("lineage", "upstream", "model:churn/2", "--as-of", "2999-01-01T00:00:00+00:00", "--json",
                   workspace=ws.path)
    assert json.loads(out.stdout)["edges"] == up["edges"]
    ws.models.set_alias("churn", "champion", version=1)
    out = keel_cli("lineage", "upstream", "model:churn@champion", "--json", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    aliased = json.loads(out.stdout)
    assert (aliased["ref"], aliased["root"]) == ("model:churn@champion", "model:churn/1")
    out = keel_cli("lineage", "downstream", "model:churn@champion", "--as-of", "2020-01-01T00:00Z", workspace=ws.path)
    assert out.returncode == keel.NotFound.exit_code and "not set yet" in out.stderr
    out = keel_cli("lineage", "upstream", "model:churn/2", "--as-of", "yesterday", workspace=ws.path)
    assert out.returncode == keel.InvalidArgument.exit_code and "'yesterday'" in out.stderr
    out = keel_cli("lineage", "upstream", "model:churn/2", "--as-of", "2999-01-01", workspace=ws.path)
    assert out.returncode == keel.InvalidArgument.exit_code and "no time zone" in out.stderr


def test_help_and_version():
    out = keel_cli("--help")
    assert out.returncode == 0 and "models" in out.stdout
    out = keel_cli("--version")
    assert out.returncode == 0 and keel.__version__ in out.stdout


def test_runs_list_and_show(ws):
    with ws.start_run(experiment="churn", name="lr") as run:
        run.log_param("C", 1.0)
        run.log_metric("auc", 0.8)
    with ws.start_run(experiment="churn", name="gb") as other:
        other.log_metric("auc", 0.9)
    out = keel_cli("runs", "list", "--experiment", "churn", "--order-by", "metrics.auc DESC", "--json",
                   workspace=ws.path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == ["gb", "lr"]
    assert rows[0]["metrics.auc"] == pytest.approx(0.9)
    out = keel_cli("runs", "list", "--filter", "metrics.auc > 0.85", "--json", workspace=ws.path)
    assert [r["name"] for r in json.loads(out.stdout)] == ["gb"]
    out = keel_cli("runs", "show", run.id, "--json", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["run_id"] == run.id and shown["status"] == "FINISHED" and "id" not in shown
    assert shown["params"] == {"C": "1.0"} and shown["metrics"] == {"auc": pytest.approx(0.8)}
    assert shown["start_time"].startswith("20") and shown["start_time"].endswith("+00:00")
    out = keel_cli("runs", "show", "0" * 32, workspace=ws.path)
    assert out.returncode == keel.NotFound.exit_code and out.stderr.startswith("error: NotFound: ")
    out = keel_cli("runs", "list", "--filter", "metrics.auc >>> 1", workspace=ws.path)
    assert out.returncode == keel.InvalidArgument.exit_code


def test_make_build_puts_a_working_keel_command_on_path(tmp_path):
    """What `make build` runs: a `keel` launcher for this Python, working from any folder without PYTHONPATH."""
    installer = Path(__file__).resolve().parents[2] / "scripts" / "install_cli.py"
    bindir = tmp_path / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KEEL_WORKSPACE")}
    first = subprocess.run([sys.executable, str(installer), "--scripts-dir", str(bindir)], capture_output=True,
                           text=True, env=env, timeout=60)
    assert first.returncode == 0 and "installed" in first.stdout, first.stderr
    launcher = bindir / "keel"
    mtime = launcher.stat().st_mtime_ns
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(["keel", "--help"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and "usage: keel" in out.stdout and "lineage" in out.stdout, out.stderr
    out = subprocess.run(["keel", "models", "list", "--workspace", str(tmp_path / "nowhere")], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == keel.NotFound.exit_code and "nowhere" in out.stderr  # the real CLI, not a stub

    again = subprocess.run([sys.executable, str(installer), "--scripts-dir", str(bindir)], capture_output=True,
                           text=True, env=env, timeout=60)
    assert again.returncode == 0 and "installed" not in again.stdout
    assert launcher.stat().st_mtime_ns == mtime  # idempotent: nothing rewritten

    launcher.write_text("#!/bin/sh\necho pip-installed keel\n")  # a keel Keel's make did not write
    kept = subprocess.run([sys.executable, str(installer), "--scripts-dir", str(bindir)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert kept.returncode == 0 and "left alone" in kept.stdout
    assert "pip-installed" in launcher.read_text()


# ------------------------------------------------------------------------------ the --json contract

def every_command(parser):
    """('runs', 'list'), ('serve',) ...: read from the parser itself, so a new command cannot be missed."""
    import argparse

    def subcommands(p):
        return next((a.choices for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)

    found = []
    for group, group_parser in subcommands(parser).items():
        leaves = subcommands(group_parser)
        found += [(group,)] if leaves is None else [(group, name) for name in leaves]
    return found


ISO_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$"
TIME_KEYS = {"start_time", "end_time", "created_at", "at", "heartbeat_at", "modified_at", "started_at"}


def walk(value, key=None):
    """Every (key, value) pair in a JSON document, at any depth."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v, key)


def test_every_command_speaks_the_json_contract(registry_ws, tmp_path, capsys):
    import re

    from keel import cli
    ws = registry_ws
    with ws.start_run(experiment="churn", name="with-artifacts") as run:
        run.log_metric("auc", 0.9)
        run.log_metric("loss", float("nan"))
        (tmp_path / "report.txt").write_text("fine")
        run.log_artifact(tmp_path / "report.txt", "reports")
    ws.models.set_alias("churn", "champion", version=2)
    w = ["--workspace", ws.path, "--json"]
    empty_defs = tmp_path / "defs"
    empty_defs.mkdir()
    succeed = {
        ("runs", "list"): ["runs", "list"],
        ("runs", "show"): ["runs", "show", run.id],
        ("runs", "artifacts"): ["runs", "artifacts", run.id],
        ("runs", "stale"): ["runs", "stale"],
        ("runs", "close-stale"): ["runs", "close-stale", "--dry-run"],
        ("models", "list"): ["models", "list"],
        ("models", "show"): ["models", "show", "churn"],
        ("models", "versions"): ["models", "versions", "churn"],
        ("models", "promote"): ["models", "promote", "churn", "1", "--stage", "Staging"],
        ("models", "delete-alias"): ["models", "delete-alias", "churn", "champion"],
        ("models", "events"): ["models", "events"],
        ("lineage", "upstream"): ["lineage", "upstream", "model:churn/2"],
        ("lineage", "downstream"): ["lineage", "downstream", f"run:{run.id}"],
        ("plan",): ["plan", str(empty_defs)],
        ("apply",): ["apply", str(empty_defs)],  # declares nothing: keeps everything
        ("admin", "migrate"): ["admin", "migrate"],
        ("admin", "copy"): ["admin", "copy", ws.path, str(tmp_path / "copy.keel")],
        ("admin", "gc"): ["admin", "gc", "--older-than", "0s", "--dry-run"],
        ("serve",): None,  # serves until stopped: its announcement is checked in a subprocess below
    }
    fail = {
        ("runs", "list"): ["runs", "list", "--filter", "metrics.auc >"],
        ("runs", "show"): ["runs", "show", "nope"],
        ("runs", "artifacts"): ["runs", "artifacts", run.id, "--path", "nothing", "--download", str(tmp_path / "d")],
        ("runs", "stale"): ["runs", "stale", "--heartbeat-timeout", "0"],
        ("runs", "close-stale"): ["runs", "close-stale", "--heartbeat-timeout", "-1"],
        ("models", "list"): ["models", "list", "--bogus"],
        ("models", "show"): ["models", "show", "churn/9"],
        ("models", "versions"): ["models", "versions", "ltv"],
        ("models", "promote"): ["models", "promote", "churn", "1"],
        ("models", "delete-alias"): ["models", "delete-alias", "churn", "nobody"],
        ("models", "events"): ["models", "events", "ltv"],
        ("lineage", "upstream"): ["lineage", "upstream", "not a ref"],
        ("lineage", "downstream"): ["lineage", "downstream", "model:churn@nobody"],
        ("plan",): ["plan", str(tmp_path / "no-defs")],
        ("apply",): ["apply", str(tmp_path / "no-defs")],
        ("serve",): ["serve", "no-such-endpoint", "--port", "0"],
        ("admin", "migrate"): ["admin", "migrate", "--bogus"],
        ("admin", "copy"): ["admin", "copy", ws.path, ws.path],  # a destination that holds a workspace
        ("admin", "gc"): ["admin", "gc", "--older-than", "soon"],
    }
    commands = every_command(cli.build_parser())
    assert set(commands) == set(succeed) == set(fail), "a new command needs a row in both tables"

    for command in commands:
        if succeed[command] is None:
            continue
        code = cli.main(w + succeed[command])
        out, err = capsys.readouterr()
        assert code == 0, (command, err)
        doc = json.loads(out)  # one JSON document, nothing else on stdout
        for key, value in walk(doc):
            assert value != "None" and value != "", (command, key)  # missing is null
            assert key != "id", (command, "a run is named run_id")
            if key in TIME_KEYS and value is not None:
                assert re.match(ISO_UTC, value), (command, key, value)
            if key in ("created_at", "start_time") and isinstance(doc, (dict, list)):
                assert value is not None, (command, key)

    env = {**os.environ, "PYTHONPATH": PYTHON_DIR}
    env.pop("KEEL_SERVE_TOKEN", None)
    server = subprocess.Popen([sys.executable, "-m", "keel", *w, "serve", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        announced = json.loads(server.stdout.readline())
        assert announced["url"] == f"http://127.0.0.1:{announced['port']}" and announced["port"] > 0
        assert announced["endpoints"] == [] and len(announced["token"]) >= 16
    finally:
        server.kill()
        server.communicate(timeout=30)

    for command in commands:
        code = cli.main(w + fail[command])
        out, err = capsys.readouterr()
        assert code != 0 and out == "", (command, out)
        error = json.loads(err)
        assert set(error) == {"error", "message"} and error["message"], (command, error)
        assert code == getattr(keel, error["error"]).exit_code, (command, error, code)


def test_runs_artifacts_lists_and_downloads(ws, tmp_path):
    with ws.start_run(name="trainer") as run:
        (tmp_path / "model.txt").write_text("weights")
        (tmp_path / "plots").mkdir()
        (tmp_path / "plots" / "roc.txt").write_text("curve")
        run.log_artifact(tmp_path / "model.txt")
        run.log_artifact(tmp_path / "plots")
    listed = json.loads(keel_cli("runs", "artifacts", run.id, "--json", workspace=ws.path).stdout)
    import hashlib
    assert listed == [{"path": "model.txt", "size": 7, "sha256": hashlib.sha256(b"weights").hexdigest()},
                      {"path": "plots/roc.txt", "size": 5, "sha256": hashlib.sha256(b"curve").hexdigest()}]
    dest = tmp_path / "out"
    out = keel_cli("runs", "artifacts", run.id, "--download", dest, "--path", "plots", "--json", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["run_id"] == run.id and [f["path"] for f in got["files"]] == ["plots/roc.txt"]
    assert (dest / "plots" / "roc.txt").read_text() == "curve" and not (dest / "model.txt").exists()
    text = keel_cli("runs", "artifacts", run.id, workspace=ws.path)
    assert "plots/roc.txt" in text.stdout and "sha256" in text.stdout
    empty = ws.start_run()
    out = keel_cli("runs", "artifacts", empty.id, "--download", dest, workspace=ws.path)
    assert out.returncode == keel.NotFound.exit_code and "no artifacts" in out.stderr


def test_close_stale_from_the_command_line(ws):
    code = "import sys, time, keel; r = keel.open(sys.argv[1]).start_run(name='doomed'); print(r.id, flush=True); " \
           "time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, ws.path], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": PYTHON_DIR})
    run_id = proc.stdout.readline().strip()
    proc.kill()
    proc.wait(timeout=30)
    listed = json.loads(keel_cli("runs", "stale", "--json", workspace=ws.path).stdout)
    assert [r["run_id"] for r in listed] == [run_id] and listed[0]["pid"] == proc.pid
    dry = json.loads(keel_cli("runs", "close-stale", "--dry-run", "--json", workspace=ws.path).stdout)
    assert dry["dry_run"] and [r["run_id"] for r in dry["runs"]] == [run_id]
    assert ws.runs.get(run_id).status == "RUNNING"
    out = keel_cli("runs", "close-stale", workspace=ws.path)
    assert out.returncode == 0 and "closed 1 stale run(s)" in out.stdout and run_id in out.stdout
    assert ws.runs.get(run_id).status == "KILLED"

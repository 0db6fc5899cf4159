"""The keel command, driven the way a CI script drives it: a subprocess, exit codes and JSON."""

import importlib.util
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
    ws.models.register("churn", b"v2", run_id=ws.start_run(name="run2").id, signature={"inputs": [{"name": "spend", "dtype": "float64"}]})
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
        ("stage", "1", "None", "Production"), ("alias", "champion", "", "1"),
        ("stage", "2", "None", "Production"), ("stage", "1", "Production", "Archived"),
        ("alias", "champion", "1", "2"), ("alias", "champion", "2", "")]
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


def test_lineage_upstream_and_downstream(registry_ws):
    ws = registry_ws
    out = keel_cli("lineage", "upstream", "model:churn/2", "--json", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    up = json.loads(out.stdout)
    assert up["root"] == "model:churn/2"
    assert {"from": f"run:{run_id(ws, 'run2')}", "kind": "produced", "to": "model:churn/2"}.items() <= up["edges"][0].items()
    out = keel_cli("lineage", "downstream", f"run:{run_id(ws, 'run1')}", "--depth", "1", workspace=ws.path)
    assert out.returncode == 0, out.stderr
    assert f"run:{run_id(ws, 'run1')} -produced-> model:churn/1" in out.stdout
    assert "version_of" not in out.stdout  # depth 1 stops after the first hop
    out = keel_cli("lineage", "upstream", "model:churn/2", "--as-of", "2020-01-01", "--json", workspace=ws.path)
    assert out.returncode == keel.NotFound.exit_code and "did not exist yet" in out.stderr  # nothing existed then
    out = keel_cli("lineage", "upstream", "model:churn/2", "--as-of", "2999-01-01T00:00:00+00:00", "--json",
                   workspace=ws.path)
    assert json.loads(out.stdout)["edges"] == up["edges"]
    out = keel_cli("lineage", "upstream", "model:churn/2", "--as-of", "yesterday", workspace=ws.path)
    assert out.returncode == keel.InvalidArgument.exit_code and "'yesterday'" in out.stderr


def test_help_and_version():
    out = keel_cli("--help")
    assert out.returncode == 0 and "models" in out.stdout
    out = keel_cli("--version")
    assert out.returncode == 0 and keel.__version__ in out.stdout


@pytest.mark.skipif(importlib.util.find_spec("keel.tracking") is None, reason="experiment tracking not merged yet")
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
    assert shown["id"] == run.id and shown["status"] == "FINISHED"
    assert shown["params"] == {"C": "1.0"} and shown["metrics"] == {"auc": pytest.approx(0.8)}
    assert shown["start_time"].startswith("20") and shown["start_time"].endswith("+00:00")
    out = keel_cli("runs", "show", "0" * 32, workspace=ws.path)
    assert out.returncode == keel.NotFound.exit_code and out.stderr.startswith("error: NotFound: ")
    out = keel_cli("runs", "list", "--filter", "metrics.auc >>> 1", workspace=ws.path)
    assert out.returncode == keel.InvalidArgument.exit_code

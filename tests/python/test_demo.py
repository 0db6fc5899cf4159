"""`make demo` runs scripts/demo.py: it must work again and again on the same workspace, and tell a
true story: each run trains a different model, the gate promotes only a model that is better on the
held-out players (checked here by recomputing both numbers), the endpoint serves the champion and the
challenger, and the lineage it shows was recorded by the work itself."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keel

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"


def load_demo_module():
    spec = importlib.util.spec_from_file_location("keel_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_demo(tmp_path) -> str:
    env = dict(os.environ, KEEL_WORKSPACE=str(tmp_path / "demo.keel"))
    env["PYTHONPATH"] = str(Path(keel.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    # run from elsewhere than the repository: built-in plugins (plugins/routing/sticky.lua) still resolve
    out = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    return out.stdout


def printed_auc(stdout: str, who: str) -> float:
    m = re.search(rf"{who}\s+held-out AUC (\d\.\d{{4}})", stdout)
    assert m, f"no '{who} held-out AUC' line in:\n{stdout}"
    return float(m.group(1))


def held_out(ws, demo, ref: str) -> float:
    """The AUC of a registered version on the demo's held-out players, computed independently."""
    from sklearn.metrics import roc_auc_score
    frame = demo.build_features(demo.make_dataset())
    _, X_valid, _, y_valid = demo.split(frame)
    return roc_auc_score(y_valid, ws.models.load(ref).predict_proba(X_valid[demo.FEATURES])[:, 1])


def test_demo_gates_on_held_out_auc_serves_an_endpoint_and_shows_recorded_lineage(tmp_path):
    demo = load_demo_module()
    assert "add_edge" not in DEMO.read_text() and "add_node" not in DEMO.read_text(), \
        "the demo's lineage must come from the work, not be typed by hand"

    first = run_demo(tmp_path)
    assert "promoted: v1 is the first champion" in first
    assert "champion -> churn@champion (100%)" in first   # no challenger yet

    second = run_demo(tmp_path)
    third = run_demo(tmp_path)
    ws = keel.open(tmp_path / "demo.keel")

    # every run trained a different recipe, and the models really differ
    runs = {v: ws.runs.get(ws.models.get(f"churn/{v}").run_id) for v in (1, 2, 3)}
    assert len({r.params["recipe"] for r in runs.values()}) == 3
    assert all(r.status == "FINISHED" for r in runs.values())
    aucs = {v: held_out(ws, demo, f"churn/{v}") for v in (1, 2, 3)}
    assert len({round(a, 6) for a in aucs.values()}) == 3

    # the printed numbers are the real held-out AUCs, and each decision follows from them
    for stdout, champion, candidate in ((second, 1, 2), (third, 2, 3)):
        assert printed_auc(stdout, f"champion v{champion}") == pytest.approx(aucs[champion], abs=1e-4)
        assert printed_auc(stdout, f"candidate v{candidate}") == pytest.approx(aucs[candidate], abs=1e-4)
        promoted = aucs[candidate] > aucs[champion]
        assert (f"promoted: v{candidate} beats v{champion}" in stdout) == promoted
        assert (f"not promoted: v{candidate} trails champion v{champion}" in stdout) == (not promoted)
    # with the demo's recipes, run 2 wins and run 3 loses: both branches of the gate are exercised
    assert aucs[2] > aucs[1] and aucs[3] < aucs[2]
    champion = ws.models.get("churn@champion")
    assert champion.version == 2 and champion.stage == "Production"
    assert ws.models.get("churn/1").stage == "Archived" and ws.models.get("churn/3").stage != "Production"
    assert ws.models.get("churn@challenger").version == 3
    boosted = runs[1]
    assert len(boosted.metric_history("valid_auc")) == int(boosted.params["n_estimators"])

    # the endpoint serves champion and challenger from online features; its answers are the model's
    ep = ws.endpoint("churn")
    assert ep.weights == {"champion": 0.9, "challenger": 0.1}
    log = ep.assignments().to_pandas()
    served = log[log["revision"] == ep.revision].groupby("variant")["model"].agg(set).to_dict()
    assert served["champion"] >= {"churn/2"} and "challenger" in served
    assert "variant split" in third and "assignment log" in third
    frame = demo.build_features(demo.make_dataset()).set_index("player_id")
    answer = ep.predict({"player_id": 7})
    direct = ws.models.load(answer["model"]).predict_proba(frame.loc[[7], demo.FEATURES])[0, 1]
    assert answer["prediction"] == pytest.approx(direct, rel=1e-9)

    # lineage recorded by the work: feature view -> training set -> run -> model -> endpoint
    up = ws.lineage.upstream("endpoint:churn")
    assert {"model:churn/2", f"run:{champion.run_id}", "feature_view:player_loyalty"} <= set(up.refs)
    assert any(ref.startswith("training_set:") for ref in up.refs)
    assert not any(ref.startswith("table:") for ref in up.refs)

    # every printed number that changes between runs says why
    for line in third.splitlines():
        if re.search(r"\d+ (ms|µs)\b|Done in", line):
            assert "varies with load" in line, line
    assert re.search(r"run\s+[0-9a-f]{32} \(FINISHED; a new id every run\)", third)
    assert np.isfinite(aucs[3])

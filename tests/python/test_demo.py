"""`make demo` runs scripts/demo.py: it must work, and work again on the same workspace."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import keel

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("keel.tracking") is None, reason="experiment tracking not merged yet")
@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn is not installed")
def test_demo_runs_twice_and_promotes(tmp_path):
    env = dict(os.environ, KEEL_WORKSPACE=str(tmp_path / "demo.keel"))
    env["PYTHONPATH"] = str(Path(keel.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    for attempt in (1, 2):
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=300)
        assert out.returncode == 0, out.stderr
        assert f"'churn' has {attempt} version" in out.stdout
    ws = keel.open(tmp_path / "demo.keel")
    champion = ws.models.get("churn@champion")
    assert champion.version == 2 and champion.stage == "Production"
    assert ws.models.get("churn/1").stage == "Archived"
    run = ws.runs.get(champion.run_id)
    assert run.status == "FINISHED" and run.metrics["auc"] > 0.7
    assert len(run.metric_history("valid_auc")) == int(run.params["n_estimators"])
    up = ws.lineage.upstream(champion.lineage_ref)
    assert "table:sessions" in up and f"run:{run.id}" in up
    assert champion.feature_names[0] == "sessions_7d"
    import pandas as pd
    row = pd.DataFrame([[0] * len(champion.feature_names)], columns=champion.feature_names)
    assert ws.models.load("churn@champion").predict_proba(row).shape == (1, 2)

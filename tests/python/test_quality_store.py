import numpy as np
import pandas as pd
import pytest

import keel
from keel import quality

FV = "feature_view:player_activity"


def frame(spend, n=100):
    return pd.DataFrame({"player_id": np.arange(n), "spend": np.full(n, float(spend))})


def test_rules_history_and_issues_flow_downstream(ws):
    ws.lineage.add_edge(FV, "feeds", "training_set:ts1")
    ws.lineage.add_edge("training_set:ts1", "trains", "model:churn/1")
    c = quality.checks(ws, FV)
    rid = c.add_rule("plugins/quality/range.lua", column="spend", min=0, severity="error")
    c.add_rule("plugins/quality/not_null.lua", column="spend", severity="warn")
    assert [r.label for r in c.rules()] == ["range", "not_null"]
    events = []
    unsubscribe = ws.lineage.on_issue(lambda event, issue: events.append((event, issue)))

    assert c.gate(frame(5)).passed
    with pytest.raises(quality.DataQualityError, match="range \\[spend\\] fail") as err:
        c.gate(frame(-1))
    assert [r["rule"] for r in err.value.report.failures] == ["range"]

    issues = ws.lineage.issues("model:churn/1")
    assert list(issues.rule) == ["range"] and list(issues.target) == [FV]
    assert ws.lineage.node(FV)["tags"]["data_issues"] == "1"
    assert [e for e, _ in events] == ["opened"]
    assert "model:churn/1" in events[0][1]["downstream"]

    hist = c.history()
    assert list(hist.accepted.unique()) == [False, True]  # newest first
    assert hist.iloc[0].status == "fail" and hist.iloc[0].observed == 100

    c.gate(frame(1))  # passing again closes the issue
    assert ws.lineage.issues("model:churn/1").empty
    assert [e for e, _ in events] == ["opened", "closed"]
    assert len(c.issues(include_closed=True)) == 1
    unsubscribe()
    c.remove_rule(rid)
    assert [r.label for r in c.rules()] == ["not_null"]
    with pytest.raises(keel.NotFound):
        c.remove_rule(rid)


def test_drift_reference_from_first_accepted_batch(ws):
    c = quality.checks(ws, "feature_view:spend")
    c.add_rule("plugins/quality/drift_psi.lua", column="spend", severity="warn")
    rng = np.random.default_rng(1)
    base = pd.DataFrame({"spend": rng.normal(10, 2, 5000)})
    r1 = c.run(base)
    assert "no reference" in r1.results[0]["message"]
    assert "spend" in c.references()
    r2 = c.run(base.assign(spend=base.spend + 6))
    assert r2.results[0]["status"] == "fail" and r2.passed  # warn severity: stored, not rejected
    assert not c.issues().empty


def test_add_rule_checks_the_plugin_exists(ws):
    with pytest.raises(keel.NotFound, match="nope.lua"):
        quality.checks(ws, FV).add_rule("plugins/quality/nope.lua", column="x")

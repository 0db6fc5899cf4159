import re

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


def test_a_users_rule_that_declares_it_needs_a_reference_gets_the_first_accepted_batchs_profile(ws, tmp_path):
    # A user's own drift rule, in their own folder: it declares the need; its file name means nothing.
    folder = tmp_path / "plugins"
    folder.mkdir()
    seen = folder / "my_shift.lua"
    seen.write_text("needs = {'reference_profile'}\n"
                    "schema = {col = {type = 'column', required = true}, others = {type = 'columns'}}\n"
                    "function check(batch, ctx)\n"
                    "  local ref = ctx.references[ctx.args.col]\n"
                    "  return {status = 'pass', observed = ref and ref.kind or 'none'}\n"
                    "end\n")
    # Named like the built-in but declaring nothing: no reference is stored for it.
    (folder / "drift_psi.lua").write_text("schema = {column = {type = 'column'}}\n"
                                          "function check(batch, ctx) return {status = 'pass'} end\n")
    assert keel.plugins.needs(seen, "check") == ["reference_profile"]
    c = quality.checks(ws, "feature_view:shift")
    c.add_rule(seen, col="spend", others=["count", "spend"])
    c.add_rule(folder / "drift_psi.lua", column="rate")
    data = pd.DataFrame({"spend": np.arange(50.0), "count": np.arange(50), "rate": np.ones(50)})

    assert c.run(data).results[0]["observed"] == "none"  # nothing stored before the first batch
    assert sorted(c.references()) == ["count", "spend"]  # "rate" belongs to a rule that needs none
    assert c.run(data).results[0]["observed"] == "numeric"  # the rule now gets the profile


def test_a_failing_first_batch_stores_no_reference(ws, tmp_path):
    c = quality.checks(ws, "feature_view:spend")
    c.add_rule("plugins/quality/drift_psi.lua", column="spend", severity="warn")
    c.add_rule("plugins/quality/range.lua", column="spend", min=0)
    assert not c.run(pd.DataFrame({"spend": [-1.0, 2.0]})).passed
    assert c.references() == {}


def test_an_unknown_need_is_refused_when_the_rule_is_added(ws, tmp_path):
    plugin = tmp_path / "plugins" / "wants.lua"
    plugin.parent.mkdir()
    plugin.write_text("needs = {'reference_profiles'}\nfunction check(batch, ctx) return {status = 'pass'} end\n")
    c = quality.checks(ws, "feature_view:spend")
    with pytest.raises(keel.PluginError, match=re.escape("wants.lua: needs lists string 'reference_profiles', which "
                                                         "Keel does not provide (it provides: reference_profile)")):
        c.add_rule(plugin)
    assert c.rule_ids() == []
    # Run directly, the same plugin is that rule's error, not a pass.
    (res,) = quality.check(pd.DataFrame({"x": [1]}), [quality.rule(plugin)]).results
    assert res["status"] == "error" and "reference_profiles" in res["message"]


def test_add_rule_checks_the_plugin_exists(ws):
    with pytest.raises(keel.NotFound, match=r"nope\.lua"):
        quality.checks(ws, FV).add_rule("plugins/quality/nope.lua", column="x")


def test_a_workspace_from_before_rule_ids_upgrades_and_its_issues_still_close(tmp_path):
    import sqlite3
    path = tmp_path / "old.keel"
    keel.open(path)
    # The plugins tables as the first schema version wrote them, with an issue opened back then.
    db = sqlite3.connect(path / "keel.db")
    db.executescript("""
        CREATE TABLE plugins_quality_rules (id INTEGER PRIMARY KEY, target TEXT NOT NULL, plugin TEXT NOT NULL,
            args TEXT NOT NULL, severity TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL,
            removed_at INTEGER);
        CREATE TABLE plugins_quality_batches (id INTEGER PRIMARY KEY, target TEXT NOT NULL, rows INTEGER NOT NULL,
            accepted INTEGER NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE plugins_quality_results (id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, target TEXT NOT NULL,
            rule TEXT NOT NULL, column_name TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL,
            observed TEXT NOT NULL, expectation TEXT NOT NULL, message TEXT NOT NULL);
        CREATE TABLE plugins_data_issues (id INTEGER PRIMARY KEY, target TEXT NOT NULL, rule TEXT NOT NULL,
            column_name TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL, opened_at INTEGER NOT NULL,
            closed_at INTEGER);
        CREATE TABLE plugins_quality_profiles (target TEXT NOT NULL, column_name TEXT NOT NULL,
            profile TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (target, column_name));
        INSERT INTO keel_schema(module, version) VALUES ('plugins', 1);
        INSERT INTO plugins_quality_rules VALUES (1, 'feature_view:old', 'plugins/quality/range.lua',
            '{"column": "spend", "min": 0}', 'error', '', 1, NULL);
        INSERT INTO plugins_quality_batches VALUES (1, 'feature_view:old', 100, 0, 1);
        INSERT INTO plugins_quality_results VALUES (1, 1, 'feature_view:old', 'range', 'spend', 'error', 'fail',
            '100', 'spend >= 0', 'old failure');
        INSERT INTO plugins_data_issues VALUES (1, 'feature_view:old', 'range', 'spend', 'error', 'old failure',
            1, NULL);
        INSERT INTO plugins_quality_rules VALUES (2, 'feature_view:old', 'plugins/quality/not_null.lua',
            '{"column": "spend"}', 'warn', '', 1, NULL);
        INSERT INTO plugins_data_issues VALUES (2, 'feature_view:old', 'not_null', 'spend', 'warn', 'old nulls',
            1, NULL);
    """)
    db.commit()
    db.close()
    c = quality.checks(keel.open(path), "feature_view:old")
    assert c.history().iloc[0].message == "old failure" and c.history().iloc[0].detail is None
    assert list(c.issues().message) == ["old failure", "old nulls"]
    (legacy,) = c.remove_rule(2)  # closes the issue its rule opened before ids were kept
    assert legacy["message"] == "old nulls"
    c.gate(frame(5))  # a pass of the same rule closes the issue it opened before ids were kept
    assert c.issues().empty
    with pytest.raises(quality.DataQualityError):
        c.gate(frame(-1))
    (closed,) = c.remove_rule(1)
    assert closed["rule"] == "range" and c.issues().empty

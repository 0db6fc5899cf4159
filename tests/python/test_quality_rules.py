"""Rules attached to a feature view: checked when added, closed when removed, offenders named, PII masked."""

import json

import pandas as pd
import pytest

import keel
from keel import quality

T0 = pd.Timestamp("2026-01-01", tz="UTC")
COLUMNS = "player_id, event_timestamp, created_timestamp, sessions, spend, country, email"


@pytest.fixture
def fv(ws):
    ws.features.entity("player", join_keys=["player_id"])
    return ws.features.feature_view("activity", entities=["player"], ttl="10d", owner="data-eng",
                                    schema={"sessions": "int64", "spend": "float64", "country": "string",
                                            "email": keel.String(pii=True), "emb": "vector[2]"})


def batch(country=("DE",) * 4, spend=1.0, emails=None):
    n = len(country)
    return pd.DataFrame({"player_id": range(n), "event_timestamp": [T0] * n, "sessions": range(n),
                         "spend": spend if isinstance(spend, list) else [spend] * n, "country": list(country),
                         "email": emails or [f"p{i}@example.com" for i in range(n)], "emb": [[1.0, 2.0]] * n})


# --- add_rule refuses what would block every ingest ---------------------------------------------

def test_a_rule_naming_a_missing_column_is_refused_with_the_views_columns(fv):
    with pytest.raises(keel.InvalidArgument) as err:
        fv.add_rule("plugins/quality/range.lua", column="spnd", min=0)
    assert str(err.value) == ("range.lua argument 'column' names column 'spnd', which feature view 'activity' "
                              f"does not have (columns: {COLUMNS})")
    with pytest.raises(keel.InvalidArgument, match="names column 'emb'"):  # vectors have no statistics
        fv.add_rule("plugins/quality/not_null.lua", column="emb")
    with pytest.raises(keel.InvalidArgument, match="argument 'column' must be a column, not integer 3"):
        fv.add_rule("plugins/quality/unique.lua", column=3)
    assert fv.quality.rule_ids() == []  # nothing half-saved
    assert fv.ingest(batch())["rows"] == 4
    fv.add_rule("plugins/quality/range.lua", column="spend", min=0)
    fv.add_rule("plugins/quality/freshness.lua", column="event_timestamp", max_age="3650d")
    assert len(fv.quality.rule_ids()) == 2


def test_the_column_check_follows_the_schema_marker_of_custom_plugins(fv, tmp_path):
    plugin = tmp_path / "plugins" / "pair.lua"
    plugin.parent.mkdir()
    plugin.write_text("schema = {left = {type = 'column', required = true}, right = {type = 'columns'},\n"
                      "          label = {type = 'string'}}\n"
                      "function check(batch, ctx) return {status = 'pass'} end\n")
    with pytest.raises(keel.InvalidArgument, match=r"pair\.lua argument 'right' names column 'nope'"):
        fv.add_rule(plugin, left="spend", right=["sessions", "nope"])
    fv.add_rule(plugin, left="spend", right=["sessions", "country"], label="not a column")
    assert len(fv.quality.rule_ids()) == 1


# --- removing a rule closes its issues ----------------------------------------------------------

def test_removing_a_rule_closes_the_issues_it_opened(ws, fv):
    events = []
    ws.lineage.on_issue(lambda event, issue: events.append((event, issue["rule"])))
    low = fv.add_rule("plugins/quality/range.lua", column="spend", min=0, severity="warn")
    high = fv.add_rule("plugins/quality/range.lua", column="spend", max=10, severity="warn")
    fv.ingest(batch(spend=[-1.0, 50.0, 1.0, 1.0]))
    assert len(fv.quality.issues()) == 2  # one per rule, though both are range on spend
    assert ws.lineage.node(fv.lineage_ref)["tags"]["data_issues"] == "2"
    closed = fv.quality.remove_rule(low)
    assert [d["rule"] for d in closed] == ["range"] and closed[0]["closed_at"] is not None
    assert len(fv.quality.issues()) == 1
    assert ws.lineage.node(fv.lineage_ref)["tags"]["data_issues"] == "1"
    fv.quality.remove_rule(high)
    assert fv.quality.issues().empty and ws.lineage.issues(fv.lineage_ref).empty
    assert events == [("opened", "range"), ("opened", "range"), ("closed", "range"), ("closed", "range")]
    assert fv.ingest(batch(spend=-5.0))["rows"] == 4 and fv.quality.issues().empty
    with pytest.raises(keel.NotFound, match="has no rule"):
        fv.quality.remove_rule(high)
    assert len(fv.quality.issues(include_closed=True)) == 2


def test_a_passing_rule_closes_only_its_own_issue(fv):
    fv.add_rule("plugins/quality/range.lua", column="spend", min=0, severity="warn")
    fv.add_rule("plugins/quality/range.lua", column="spend", max=10, severity="warn")
    fv.ingest(batch(spend=-1.0))  # the min rule fails, the max rule passes
    fv.ingest(batch(spend=50.0))  # now the max rule fails and the min rule passes
    (open_issue,) = fv.quality.issues().itertuples()
    assert "values out of range" in open_issue.message
    assert len(fv.quality.issues(include_closed=True)) == 2


# --- allowed_values names its offenders ---------------------------------------------------------

def test_allowed_values_failures_name_the_top_offenders(fv):
    fv.add_rule("plugins/quality/allowed_values.lua", column="country", values=["DE", "FR"], severity="warn")
    countries = ["DE"] * 5 + ["XX"] * 4 + ["YY"] * 3 + ["ZZ"] * 2 + ["A", "B", "C", 'Q"uote']
    fv.ingest(batch(country=countries))
    (res,) = fv.quality.run(batch(country=countries), record=False).results
    assert res["status"] == "fail"
    assert res["message"].endswith('most frequent not allowed: "XX" (4), "YY" (3), "ZZ" (2), "A" (1), "B" (1)')
    top = res["detail"]["not_allowed"]
    assert top == [{"value": "XX", "count": 4}, {"value": "YY", "count": 3}, {"value": "ZZ", "count": 2},
                   {"value": "A", "count": 1}, {"value": "B", "count": 1}]
    hist = fv.quality_history()
    assert hist.iloc[0].detail == {"not_allowed": top}
    assert "XX" in fv.quality.issues().iloc[0].message
    passing = fv.quality.run(batch(), record=False).results[0]
    assert passing["status"] == "pass" and passing["detail"] is None


def test_not_allowed_counts_numbers_and_is_bounded(tmp_path):
    plugin = tmp_path / "plugins" / "top.lua"
    plugin.parent.mkdir()
    plugin.write_text("function check(batch, ctx)\n  local c = batch:column('n')\n"
                      "  return {status = 'pass', observed = {c:not_allowed({1, 2}), c:not_allowed({1}, 1),\n"
                      "          #c:not_allowed({}, 1000)}}\nend\n")
    df = pd.DataFrame({"n": [1, 2, 3, 3, 4, None, 3] + list(range(10, 200))})
    (res,) = quality.check(df, [quality.rule(plugin)]).results
    first, only_one, capped = res["observed"]
    assert first[:2] == [{"value": 3, "count": 3}, {"value": 4, "count": 1}]
    assert only_one == [{"value": 3, "count": 3}]
    assert capped == 100


# --- PII columns: nothing raw in what quality records -------------------------------------------

def _recorded_text(fv) -> str:
    hist = fv.quality_history()
    stored = json.dumps(hist[["observed", "expectation", "message", "detail"]].to_dict("records"), default=str)
    return stored + json.dumps(fv.quality.references()) + " ".join(fv.quality.issues(include_closed=True).message)


def test_offenders_and_profiles_of_pii_columns_are_masked_without_a_grant(ws, fv, tmp_path):
    plugin = tmp_path / "plugins" / "leak.lua"
    plugin.parent.mkdir()
    plugin.write_text("function check(batch, ctx)\n  local c = batch:column('email')\n"
                      "  return {status = 'warn', observed = c:profile(), message = tostring(c:min())}\nend\n")
    fv.add_rule(plugin, severity="warn")
    fv.add_rule("plugins/quality/allowed_values.lua", column="email", values=["ok@example.com"], severity="warn")
    fv.add_rule("plugins/quality/drift_psi.lua", column="email", severity="warn")
    emails = ["alice@example.com", "alice@example.com", "bob@example.com", "carol@example.com"]
    fv.ingest(batch(emails=emails))
    fv.ingest(batch(emails=emails))
    recorded = _recorded_text(fv)
    for raw in ("alice", "bob", "carol"):
        assert raw not in recorded
    # Masked exactly like the feature store masks the column on read.
    masked_alice = fv.to_pandas().email.iloc[0]
    assert masked_alice.startswith("pii:")
    hist = fv.quality_history()
    offenders = hist[hist.rule == "allowed_values"].iloc[0].detail["not_allowed"]
    assert offenders[0] == {"value": masked_alice, "count": 2}
    profile = fv.quality.references()["email"]
    assert profile["masked"] is True and profile["shares"][masked_alice] == 0.5
    # PSI still compares like with like: the same data does not drift, other data does.
    drift = hist[hist.rule == "drift_psi"]
    assert drift.iloc[0].status == "pass" and drift.iloc[0].observed == pytest.approx(0.0)
    shifted = fv.quality.run(batch(emails=["dave@example.com"] * 4), record=False)
    assert next(r for r in shifted.results if r["rule"] == "drift_psi")["status"] == "fail"


def test_a_granted_role_records_raw_offenders(ws, fv):
    ws.access.grant("support", "activity", ["email"])
    ws.role = "support"
    fv.add_rule("plugins/quality/allowed_values.lua", column="email", values=["ok@example.com"], severity="warn")
    fv.ingest(batch(emails=["alice@example.com"] * 4))
    assert fv.quality_history().iloc[0].detail["not_allowed"] == [{"value": "alice@example.com", "count": 4}]
    assert "alice@example.com" in fv.quality.issues().iloc[0].message
    # A reader without the grant (another role, or after a revoke) sees those records hidden.
    ws.role = "analyst"
    hist = fv.quality_history()
    assert hist.iloc[0].detail is None and hist.iloc[0].observed is None
    assert hist.iloc[0].message == ("(hidden: recorded with raw values of PII column(s) email, which role 'analyst' "
                                    "may not read)")
    assert "alice" not in _recorded_text(fv) and "alice" not in " ".join(ws.lineage.issues(fv.lineage_ref).message)
    ws.role = "support"
    ws.access.revoke("support", "activity", ["email"])
    assert "alice" not in _recorded_text(fv)
    fv.ingest(batch(emails=["bob@example.com"] * 4))
    assert "bob" not in _recorded_text(fv)
    assert fv.quality_history().iloc[0].detail["not_allowed"][0]["value"].startswith("pii:")


def test_issues_closed_for_a_role_without_the_grant_do_not_quote_raw_values(ws, fv):
    ws.access.grant("support", "activity", ["email"])
    ws.role = "support"
    rid = fv.add_rule("plugins/quality/allowed_values.lua", column="email", values=["ok@example.com"], severity="warn")
    fv.ingest(batch(emails=["alice@example.com"] * 4))
    events = []
    ws.lineage.on_issue(lambda event, issue: events.append((event, issue)))
    ws.role = "analyst"
    # Closed by a passing batch the analyst ingests: told to subscribers, hidden as on every read.
    fv.ingest(batch(emails=["ok@example.com"] * 4))
    ((event, issue),) = events
    assert event == "closed" and issue.closed_at is not None
    assert issue.message.startswith("(hidden: recorded with raw values of PII column(s) email")
    assert "alice" not in repr(issue) and "alice" not in str(issue.to_dict())
    # Closed by removing the rule (reopened first by the granted role).
    ws.role = "support"
    fv.ingest(batch(emails=["alice@example.com"] * 4))
    ws.role = "analyst"
    (closed,) = fv.quality.remove_rule(rid)
    assert "alice" not in closed.message and "alice" not in closed["message"]
    assert "alice" not in events[-1][1].message


def test_subscribers_get_a_read_only_issue_that_also_reads_like_a_dict(ws, fv):
    ws.lineage.add_edge(fv.lineage_ref, "feeds", "training_set:ts1")
    events = []
    unsubscribe = ws.lineage.on_issue(lambda event, issue: events.append((event, issue)))
    fv.add_rule("plugins/quality/range.lua", column="spend", min=0, severity="warn")
    fv.ingest(batch(spend=-1.0))
    unsubscribe()
    ((event, issue),) = events
    assert event == "opened" and isinstance(issue, quality.DataIssue)
    assert issue.target == issue["target"] == fv.lineage_ref and issue.rule == "range" and issue.column == "spend"
    assert issue.closed_at is None and issue.get("closed_at", 0) is None and issue.get("nope") is None
    ws.lineage.add_edge("training_set:ts1", "trains", "model:churn/1")  # after the event: not in it
    assert issue.downstream == issue["downstream"] == ["training_set:ts1"]
    assert list(issue) == ["id", "target", "rule", "column", "severity", "message", "opened_at", "closed_at",
                           "downstream"]
    assert dict(issue) == {**issue} and dict(issue)["severity"] == "warn" and "message" in issue
    with pytest.raises(KeyError):
        issue["nope"]
    with pytest.raises(AttributeError):
        issue.message = "edited"
    with pytest.raises(AttributeError):
        issue.note = "new"
    (row,) = fv.quality.issues().itertuples()  # the DataFrame has the record's columns
    assert row.id == issue.id and row.message == issue.message and pd.isna(row.closed_at)
    (closed,) = fv.quality.remove_rule(fv.quality.rule_ids()[0])
    assert closed.id == issue.id and closed.closed_at is not None and closed != issue


def test_numeric_pii_values_are_hidden_from_rules_without_a_grant(ws, tmp_path):
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("ages", entities=["player"], schema={"age": keel.Int64(pii=True)})
    plugin = tmp_path / "plugins" / "stats.lua"
    plugin.parent.mkdir()
    plugin.write_text("function check(batch, ctx)\n  local c = batch:column('age')\n"
                      "  return {status = 'pass', observed = {min = c:min(), max = c:max(), q = c:quantile(0.5),\n"
                      "          mean = c:mean(), outside = c:count_outside(0, 40), top = c:not_allowed({})}}\nend\n")
    fv.add_rule(plugin)
    fv.add_rule("plugins/quality/range.lua", column="age", min=0, max=40, severity="warn")
    df = pd.DataFrame({"player_id": [1, 2], "event_timestamp": [T0, T0], "age": [37, 52]})
    report = fv.quality.run(df, record=False)
    observed = report.results[0]["observed"]
    assert observed["outside"] == 1 and set(observed) == {"outside", "top"}  # values nil, counts kept
    assert all(o["value"].startswith("pii:") for o in observed["top"])
    assert report.results[1]["status"] == "fail" and "52" not in report.results[1]["message"]

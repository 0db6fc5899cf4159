import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import keel
from keel import quality


@pytest.fixture
def df():
    rng = np.random.default_rng(0)
    n = 1000
    return pd.DataFrame({
        "player_id": np.arange(n),
        "spend": rng.gamma(2.0, 10.0, n),
        "country": rng.choice(["DE", "FR", "US"], n),
        "email": [f"p{i}@example.com" for i in range(n)],
        "ts": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC"),
    })


def test_stats_helpers_match_pandas(df, tmp_path):
    rule = tmp_path / "plugins" / "stats.lua"
    rule.parent.mkdir()
    rule.write_text(
        "function check(batch, ctx)\n"
        "  local c = batch:column('spend')\n"
        "  return {status='pass', observed={mean=c:mean(), std=c:stddev(), min=c:min(), max=c:max(),\n"
        "          q=c:quantile({0.1, 0.5, 0.9}), distinct=batch:column('country'):distinct_count(),\n"
        "          emails=batch:column('email'):pattern_share('^p[0-9]+@example\\\\.com$'),\n"
        "          nulls=c:null_rate(), rows=batch.rows}}\n"
        "end\n")
    (res,) = quality.check(df, [quality.rule(rule)]).results
    o = res["observed"]
    assert o["mean"] == pytest.approx(df.spend.mean())
    assert o["std"] == pytest.approx(df.spend.std())
    assert (o["min"], o["max"]) == (df.spend.min(), df.spend.max())
    assert o["q"] == pytest.approx(list(df.spend.quantile([0.1, 0.5, 0.9])))
    assert o["distinct"] == 3 and o["emails"] == 1.0 and o["nulls"] == 0 and o["rows"] == 1000


def test_arrow_input_with_nulls_matches_pandas(df):
    df.loc[::10, "spend"] = np.nan
    df.loc[::7, "country"] = None
    rules = [quality.rule("plugins/quality/not_null.lua", column="spend", max_null_rate=0.5),
             quality.rule("plugins/quality/allowed_values.lua", column="country", values=["DE", "FR"], min_share=0)]
    a = quality.check(df, rules).results
    b = quality.check(pa.Table.from_pandas(df), rules).results
    assert a == b
    assert a[0]["observed"] == pytest.approx(0.1)
    share = df.country.dropna().isin(["DE", "FR"]).mean()
    assert a[1]["observed"] == pytest.approx(share)


def test_report_rejects_on_error_severity_only(df):
    bad = df.copy()
    bad.loc[3, "spend"] = -5
    rules = [quality.rule("plugins/quality/range.lua", column="spend", min=0, severity="error"),
             quality.rule("plugins/quality/unique.lua", column="country", severity="warn"),
             quality.rule("plugins/quality/row_count.lua", min=1)]
    report = quality.check(bad, rules)
    assert not report.passed
    assert [r["rule"] for r in report.failures] == ["range"]
    assert [r["rule"] for r in report.warnings] == ["unique"]
    with pytest.raises(quality.DataQualityError, match="range \\[spend\\] fail: 1 values out of range") as err:
        report.raise_if_failed()
    assert isinstance(err.value, keel.InvalidArgument) and err.value.report is report
    assert quality.check(df, rules[:1]).passed
    assert "<table" in report._repr_html_()


def test_drift_psi_against_reference_profile(df):
    ref = quality.profile(df, ["spend", "country"])
    assert ref["spend"]["kind"] == "numeric" and len(ref["spend"]["shares"]) == 10
    assert ref["country"]["kind"] == "categorical"
    same = quality.check(df, [quality.rule("plugins/quality/drift_psi.lua", column="spend")], references=ref)
    assert same.results[0]["status"] == "pass" and same.results[0]["observed"] < 0.01
    shifted = df.assign(spend=df.spend * 3)
    r = quality.check(shifted, [quality.rule("plugins/quality/drift_psi.lua", column="spend")], references=ref)
    assert r.results[0]["status"] == "fail" and r.results[0]["observed"] > 0.25
    assert quality.psi(shifted, "spend", ref["spend"]) == pytest.approx(r.results[0]["observed"])


def test_broken_rules_report_errors_not_passes(df, tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "loop.lua").write_text("function check(batch, ctx)\n  while true do end\nend\n")
    (d / "status.lua").write_text("function check(batch, ctx) return {status='ok'} end\n")
    (d / "nothing.lua").write_text("function check(batch, ctx) end\n")
    report = quality.check(df, [quality.rule(d / "loop.lua"), quality.rule(d / "status.lua"),
                                quality.rule(d / "nothing.lua"), quality.rule(d / "missing.lua")])
    statuses = [r["status"] for r in report.results]
    assert statuses == ["error"] * 4
    assert "loop.lua:2" in report.results[0]["message"] and "budget" in report.results[0]["message"]
    assert "status 'ok'" in report.results[1]["message"]
    assert "missing.lua" in report.results[3]["message"]
    assert not report.passed


def test_severity_is_validated():
    with pytest.raises(keel.InvalidArgument, match="severity 'fatal'"):
        quality.rule("plugins/quality/range.lua", severity="fatal")


def test_large_columns_sorted_stats_match_numpy(tmp_path):
    # > 4096 values: the radix-sort path, with negatives, zeros of both signs, duplicates and NaNs
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1e6, 20000), [-0.0, 0.0, -1e300, 1e300], rng.integers(-50, 50, 5000)])
    x[::97] = np.nan
    df = pd.DataFrame({"x": x})
    rule = tmp_path / "plugins" / "q.lua"
    rule.parent.mkdir()
    rule.write_text("function check(batch, ctx)\n  local c = batch:column('x')\n"
                    "  return {status='pass', observed={q=c:quantile({0, 0.01, 0.5, 0.99, 1}), d=c:distinct_count()}}\n"
                    "end\n")
    (res,) = quality.check(df, [quality.rule(rule)]).results
    s = pd.Series(x).dropna()
    assert res["observed"]["q"] == pytest.approx(list(s.quantile([0, 0.01, 0.5, 0.99, 1])))
    assert res["observed"]["d"] == s.nunique()


def test_large_int_columns_sorted_stats_match_numpy(tmp_path):
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.integers(-2**62, 2**62, 10000), rng.integers(-5, 5, 10000), [0, -1, 2**40]])
    df = pd.DataFrame({"x": x})
    rule = tmp_path / "plugins" / "q.lua"
    rule.parent.mkdir()
    rule.write_text("function check(batch, ctx)\n  local c = batch:column('x')\n"
                    "  return {status='pass', observed={q=c:quantile({0, 0.5, 1}), d=c:distinct_count()}}\nend\n")
    (res,) = quality.check(df, [quality.rule(rule)]).results
    s = pd.Series(x)
    assert res["observed"]["q"] == pytest.approx([float(s.min()), float(s.astype(float).quantile(0.5)), float(s.max())])
    assert res["observed"]["d"] == s.nunique()


def test_unique_on_dense_nullable_ints():
    ids = pd.array([5, 6, None, 7, 5, None, 9], dtype="Int64")
    (res,) = quality.check(pd.DataFrame({"id": ids}), [quality.rule("plugins/quality/unique.lua", column="id")]).results
    assert res["status"] == "fail" and res["observed"] == 1 and "(4 distinct)" in res["message"]


@pytest.mark.parametrize("values", [["a", "b", None, "c"], ["DE", "FR", "XX", None, "DE", "", "DEU", "FR"] * 3,
                                    ["longer-than-8", "DE", "short"]])
def test_allowed_share_matches_pandas_on_short_and_long_codes(values):
    allowed = ["a", "DE", "FR", "", "short"]
    s = pd.Series(values, dtype=object)
    (res,) = quality.check(pd.DataFrame({"c": s}), [quality.rule("plugins/quality/allowed_values.lua", column="c",
                                                                 values=allowed, min_share=0)]).results
    assert res["observed"] == pytest.approx(s.dropna().isin(allowed).mean())


def test_rule_arguments_are_checked_against_the_plugin_schema(df, ws):
    with pytest.raises(keel.InvalidArgument,
                       match=r"range\.lua has no argument 'colum' \(arguments: column, max, min\)"):
        quality.check(df, [quality.rule("plugins/quality/range.lua", colum="spend", min=0)])
    with pytest.raises(keel.InvalidArgument, match=r"allowed_values\.lua needs argument 'values': the allowed values"):
        quality.check(df, [quality.rule("plugins/quality/allowed_values.lua", column="country")])
    with pytest.raises(keel.InvalidArgument, match="argument 'min' must be a number, not string '0'"):
        quality.checks(ws, "feature_view:x").add_rule("plugins/quality/range.lua", column="spend", min="0")
    assert quality.checks(ws, "feature_view:x").rule_ids() == []
    assert keel.plugins.schema("plugins/quality/unique.lua", "check")["column"]["required"] is True

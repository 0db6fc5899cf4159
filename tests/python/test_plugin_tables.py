"""Runs the declarative plugin test tables in tests/lua/*.lua.

Each file returns a table: the plugin, its variants and config, `cases` (a request and the expected
variant, shadows and fallback) and `splits` (n requests with keys 0..n-1 and the expected shares).
The files themselves are evaluated in Keel's sandbox.
"""

from pathlib import Path

import pytest

import keel
from keel import plugins

TABLES = sorted((Path(__file__).resolve().parents[1] / "lua").glob("routing_*.lua"))


def make_router(spec, issues=()):
    return plugins.Router(spec["plugin"], [tuple(v) for v in spec["variants"]], default=spec.get("default"),
                          config=spec.get("config") or {}, name=spec.get("name", "test"), issues=issues)


@pytest.mark.parametrize("path", TABLES, ids=[p.stem for p in TABLES])
def test_routing_table(path):
    spec = plugins.eval_file(path)
    router = make_router(spec)
    for case in spec.get("cases", []):
        d = router.route(case.get("req") or {})
        assert d.variant == case["variant"], (path.name, case)
        assert d.fallback == case.get("fallback", ""), (path.name, case, router.stats()["last_error"])
        if "shadows" in case:
            assert d.shadows == case["shadows"], (path.name, case)
    for split in spec.get("splits", []):
        r = make_router(spec, issues=split.get("issues", ()))
        key = split.get("key", "user_id")
        n = split["n"]
        served = {}
        moved = 0  # requests the plugin moved off their variant because of a data issue
        for d in r.route_many([{key: i} for i in range(n)]):
            served[d.variant] = served.get(d.variant, 0) + 1
            moved += d.fallback == "data_issue"
        for variant, share in split["shares"].items():
            assert abs(served.get(variant, 0) / n - share) <= split["tolerance"] + 1e-12, (path.name, served)
        assert abs(moved / n - split.get("data_issue", 0.0)) <= split["tolerance"] + 1e-12, (path.name, moved)
        assert r.stats()["data_issue"] == moved


def test_tables_exist():
    assert len(TABLES) >= 4


QUALITY = sorted((Path(__file__).resolve().parents[1] / "lua").glob("quality_*.lua"))


@pytest.mark.parametrize("path", QUALITY, ids=[p.stem for p in QUALITY])
def test_quality_table(path):
    import numpy as np
    import pandas as pd

    from keel import quality

    spec = plugins.eval_file(path)
    df = pd.DataFrame(spec["data"])
    for col, rows in (spec.get("nulls") or {}).items():
        df[col] = df[col].astype("float64")
        df.loc[[r - 1 for r in rows], col] = np.nan
    for col in spec.get("timestamps") or []:
        df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    for case in spec["cases"]:
        report = quality.check(df, [quality.rule(case["rule"], **case.get("args", {}))], now=spec.get("now"))
        (result,) = report.results
        assert result["status"] == case["status"], (case, result)
        if "observed" in case:
            assert result["observed"] == pytest.approx(case["observed"]), (case, result)
        if "message" in case:
            assert case["message"] in result["message"], (case, result)
    for case in spec.get("refused", []):
        with pytest.raises(keel.InvalidArgument) as err:
            quality.check(df, [quality.rule(case["rule"], **case["args"])], now=spec.get("now"))
        assert case["error"] in str(err.value), (case, str(err.value))

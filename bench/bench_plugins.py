"""Plugins benchmark: routing decisions through sticky.lua inside C++, and data-quality rules on a
large batch against pandera and Great Expectations running the same checks.

Usage: bench/run.sh plugins            (peers from bench/requirements-plugins.txt)
       KEEL_BENCH_ROWS=1000000 bench/run.sh plugins   (a smaller batch)
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from keel import _bench, plugins, quality

ROWS = int(os.environ.get("KEEL_BENCH_ROWS", 10_000_000))
COUNTRIES = ["DE", "FR", "US", "BR", "JP"]


def routing() -> list[tuple]:
    rows = []
    for plugin, variants, config in [
        ("plugins/routing/sticky.lua", {"champion": 0.9, "challenger": 0.1}, {"key": "user_id"}),
        ("plugins/routing/sticky.lua", {"a": 0.5, "b": 0.3, "c": 0.2}, {"key": "user_id"}),
        ("plugins/routing/weighted.lua", {"champion": 0.9, "challenger": 0.1}, {}),
        ("plugins/routing/tenant.lua", {"champion": 1, "b": 1}, {"tenants": {"7": "b"}, "field": "user_id"}),
    ]:
        r = plugins.Router(plugin, variants, config=config, name="bench")
        runs = [_bench.route_decisions(r.native, 2_000_000, 1_000_000, "user_id") for _ in range(3)]
        med = statistics.median(x["median_ns"] for x in runs)
        p99 = statistics.median(x["p99_ns"] for x in runs)
        rate = statistics.median(x["per_cpu_second"] for x in runs)
        assert r.stats()["fallbacks"] == 0, r.stats()
        rows.append((os.path.basename(plugin), len(variants), med, p99, rate))
    # The same decision from Python, one call per request (what a Python-side router would pay).
    r = plugins.Router("plugins/routing/sticky.lua", {"champion": 0.9, "challenger": 0.1}, config={"key": "user_id"})
    n = 200_000
    t = time.perf_counter()
    for i in range(n):
        r.route({"user_id": i})
    dt = (time.perf_counter() - t) / n
    rows.append(("sticky.lua via Python route()", 2, dt * 1e9, float("nan"), 1 / dt))
    return rows


def endpoint() -> list[tuple]:
    """ep.predict of one request end to end from Python (online lookup + route + predict + log) for a
    500-tree model on 20 features, against calling the same model on one row directly."""
    import tempfile

    import keel
    import lightgbm as lgb

    ws = keel.open(tempfile.mkdtemp() + "/bench.keel")
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    names = [f"feature_{i}" for i in range(20)]  # a model fitted on named columns: endpoints feed by name
    fv = fs.feature_view("activity", entities=["player"], schema={f: "float64" for f in names})
    rng = np.random.default_rng(0)
    n = 100_000
    X = rng.normal(size=(n, 20))
    fv.ingest(pd.DataFrame({"player_id": np.arange(n), "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
                            **{f: X[:, i] for i, f in enumerate(names)}}))
    fs.materialize("activity")
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=n) > 0).astype(int)
    model = lgb.LGBMClassifier(n_estimators=500, num_leaves=31, verbose=-1, n_jobs=1).fit(
        pd.DataFrame(X[:20_000], columns=names), y[:20_000])
    mv = ws.models.log_model(None, model, "churn")
    ws.models.set_alias("churn", "champion", mv.version)
    ws.models.set_alias("churn", "challenger", mv.version)
    ep = ws.endpoint("churn", routing="plugins/routing/sticky.lua",
                     variants={"champion": ("churn@champion", 0.9), "challenger": ("churn@challenger", 0.1)},
                     features=[f"activity:{f}" for f in names])
    loaded = ws.models.load(mv.ref)
    ids = rng.integers(0, n, 3000)
    for i in ids[:200]:
        ep.predict({"player_id": int(i)})
    times = []
    for i in ids:
        t = time.perf_counter()
        out = ep.predict({"player_id": int(i), "tenant": "studio-a"})
        times.append(time.perf_counter() - t)
    direct = []
    for i in ids:
        row = X[i: i + 1]
        t = time.perf_counter()
        p = loaded.predict_proba(row)[:, -1] if hasattr(loaded, "predict_proba") else loaded.predict(row)
        direct.append(time.perf_counter() - t)
    assert abs(out["prediction"] - float(p[0])) < 1e-9, (out, p)  # same model, same features, same answer
    # predict_batch (one C++ call: routing, one lookup, one predict per variant) against a loop of
    # single calls over the same 1,000 requests; best of 3 each, answers checked equal.
    reqs = [{"player_id": int(i), "tenant": "studio-a"} for i in ids[:1000]]
    batch_t, loop_t = [], []
    for _ in range(3):
        t = time.perf_counter()
        batch = ep.predict_batch(reqs)
        batch_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        singles = [ep.predict(r) for r in reqs]
        loop_t.append(time.perf_counter() - t)
    assert all(abs(b["prediction"] - s["prediction"]) < 1e-9 for b, s in zip(batch, singles))
    flavour = mv.flavour
    e2e, alone = statistics.median(times) * 1e6, statistics.median(direct) * 1e6
    per_batch, per_loop = min(batch_t) / len(reqs) * 1e6, min(loop_t) / len(reqs) * 1e6
    return [(f"ep.predict end to end (model flavour {flavour})", e2e),
            (f"the model on one row alone ({type(loaded).__name__})", alone),
            ("difference (what lookup + route + log add)", e2e - alone),
            ("ep.predict_batch of 1,000 requests, per row", per_batch),
            ("a loop of 1,000 ep.predict calls, per row", per_loop),
            ("loop / batch (x)", per_loop / per_batch)]


def make_data(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(42)
    ids = np.arange(n, dtype=np.int64)
    ids[rng.choice(n, 10, replace=False)] = 0            # 10 duplicate ids
    spend = rng.gamma(2.0, 20.0, n)
    spend[rng.choice(n, 100, replace=False)] = -1.0       # 100 out of range
    spend[rng.choice(n, 1000, replace=False)] = np.nan    # 1000 nulls
    country = np.array(COUNTRIES, dtype=object)[rng.integers(0, len(COUNTRIES), n)]
    country[rng.choice(n, 50, replace=False)] = "XX"      # 50 not allowed
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    return pd.DataFrame({"player_id": ids, "spend": spend, "country": country, "ts": ts})


def keel_rules():
    return [
        quality.rule("plugins/quality/not_null.lua", column="spend"),
        quality.rule("plugins/quality/range.lua", column="spend", min=0, max=1e6),
        quality.rule("plugins/quality/unique.lua", column="player_id"),
        quality.rule("plugins/quality/allowed_values.lua", column="country", values=COUNTRIES),
        quality.rule("plugins/quality/row_count.lua", min=1),
    ]


def run_keel(df):
    report = quality.check(df, keel_rules())
    r = {x["rule"]: x for x in report.results}
    return {"not_null": r["not_null"]["status"] == "pass",
            "range": int(r["range"]["observed"]),
            "unique": int(r["unique"]["observed"]),
            "allowed": round((1 - r["allowed_values"]["observed"]) * len(df)),
            "row_count": r["row_count"]["status"] == "pass"}


def run_pandera(df):
    try:
        import pandera.pandas as pa
    except ImportError:
        import pandera as pa
    schema = pa.DataFrameSchema({
        "player_id": pa.Column(np.int64, unique=True),
        "spend": pa.Column(float, pa.Check.in_range(0, 1e6), nullable=False),
        "country": pa.Column(object, pa.Check.isin(COUNTRIES)),
    }, checks=[pa.Check(lambda d: len(d) >= 1, name="row_count")])
    try:
        schema.validate(df, lazy=True)
        failures = pd.DataFrame(columns=["column", "check", "index"])
    except pa.errors.SchemaErrors as err:
        failures = err.failure_cases
    def count(column, check_part):
        m = (failures["column"] == column) & failures["check"].astype(str).str.contains(check_part)
        return int(m.sum())
    return {"not_null": count("spend", "not_nullable") == 0,
            "range": count("spend", "in_range"),
            # pandera lists every row of a duplicated value (keel counts the extra copies)
            "unique": count("player_id", "field_uniqueness"),
            "allowed": count("country", "isin"),
            "row_count": not failures["check"].astype(str).str.contains("row_count").any()}


def run_gx(df):
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # progress bars
        return _run_gx(df)


def _run_gx(df):
    import great_expectations as gx
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_pandas("p").add_dataframe_asset("a")
             .add_batch_definition_whole_dataframe("b").get_batch(batch_parameters={"dataframe": df}))
    suite = gx.ExpectationSuite(name="s")
    E = gx.expectations
    for e in [E.ExpectColumnValuesToNotBeNull(column="spend"),
              E.ExpectColumnValuesToBeBetween(column="spend", min_value=0, max_value=1e6),
              E.ExpectColumnValuesToBeUnique(column="player_id"),
              E.ExpectColumnValuesToBeInSet(column="country", value_set=COUNTRIES),
              E.ExpectTableRowCountToBeBetween(min_value=1)]:
        suite.add_expectation(e)
    res = batch.validate(suite)
    out = {}
    for r in res.results:
        kind = r.expectation_config.type
        unexpected = r.result.get("unexpected_count")
        if kind == "expect_column_values_to_not_be_null":
            out["not_null"] = bool(r.success)
        elif kind == "expect_column_values_to_be_between":
            out["range"] = int(unexpected)
        elif kind == "expect_column_values_to_be_unique":
            out["unique"] = int(unexpected)
        elif kind == "expect_column_values_to_be_in_set":
            out["allowed"] = int(unexpected)
        else:
            out["row_count"] = bool(r.success)
    return out


def timed(fn, *args, repeat=1):
    """Best (cpu seconds, wall seconds) over `repeat` runs. CPU time of the process is the fair
    measure on the shared CI machine (wall time there depends on who else is building)."""
    best, out = (float("inf"), float("inf")), None
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        out = fn(*args)
        best = min(best, (time.process_time() - c, time.perf_counter() - t))
    return best, out


def main() -> None:
    print("== routing: one decision through the plugin inside C++ (1 thread)")
    print(f"{'plugin':32} {'variants':>8} {'median ns':>10} {'p99 ns':>8} {'decisions/s/core':>16}")
    for name, k, med, p99, rate in routing():
        print(f"{name:32} {k:>8} {med:>10.0f} {p99:>8.0f} {rate:>16,.0f}")

    print("\n== endpoint: one request end to end from Python, 500 trees x 20 features")
    try:
        for name, us in endpoint():
            print(f"{name:60} {us:8.1f} us (median)")
    except ImportError as err:
        print(f"skipped: {err}")

    print(f"\n== quality: 5 checks (not_null, range, unique, allowed_values, row_count) on {ROWS:,} rows")
    df = make_data(ROWS)
    (t_keel, w_keel), r_keel = timed(run_keel, df, repeat=3)
    print(f"{'':20} {'cpu s':>8} {'wall s':>8} {'cpu ratio':>10}")
    print(f"{'keel':20} {t_keel:8.3f} {w_keel:8.3f} {'1.0x':>10}   {r_keel}")
    results = {"keel": (t_keel, r_keel)}
    for name, fn in [("pandera", run_pandera), ("great_expectations", run_gx)]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                (t, w), r = timed(fn, df)
        except ImportError as err:
            print(f"{name:20} not installed ({err}); run through bench/run.sh plugins")
            continue
        results[name] = (t, r)
        print(f"{name:20} {t:8.3f} {w:8.3f} {t / t_keel:9.1f}x   {r}")
    # Same answers: pass/fail per check, and the offending-row counts where both report them.
    for name, (_t, r) in results.items():
        if name == "keel":
            continue
        assert r["not_null"] == r_keel["not_null"] and r["row_count"] == r_keel["row_count"], (name, r)
        assert r["range"] == r_keel["range"], (name, r)
        assert r["allowed"] == r_keel["allowed"], (name, r)
        assert (r["unique"] > 0) == (r_keel["unique"] > 0), (name, r)
    print("results agree")


if __name__ == "__main__":
    main()

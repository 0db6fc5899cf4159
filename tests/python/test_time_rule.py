"""One rule for time on every entry point: a time carries its zone (or is int ms), else InvalidArgument.

Each entry point is one case: a function taking (workspace, time) that hands the time to Keel the way
a user would. Every case refuses the same naive times with a message saying how to add the zone, and
accepts the same instant written five zoned ways.
"""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import keel
from keel import quality
from keel._time import duration_ms, to_epoch_ms, to_epoch_ms_array

PYTHON_DIR = str(Path(keel.__file__).resolve().parent.parent)

# One instant, 2026-01-01 00:00 UTC, in every accepted form.
MS = 1_767_225_600_000


def zoned_forms(ms: int) -> dict:
    """The instant ``ms`` written in every form Keel accepts."""
    utc = pd.Timestamp(ms, unit="ms", tz="UTC")
    return {
        "int ms": ms,
        "aware datetime": utc.to_pydatetime(),
        "other zone": utc.tz_convert("Asia/Kolkata").to_pydatetime(),
        "pandas Timestamp": utc,
        "ISO Z": utc.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
        "ISO offset": utc.tz_convert(timezone(timedelta(hours=-5))).isoformat(),
    }


ZONED = zoned_forms(MS)
NAIVE = {
    "naive datetime": datetime(2026, 1, 1),
    "naive Timestamp": pd.Timestamp("2026-01-01"),
    "ISO without zone": "2026-01-01T00:00:00",
    "date only": "2026-01-01",
    "numpy datetime64": np.datetime64("2026-01-01T00:00"),
}


# ------------------------------------------------------------------------------- the rule itself

@pytest.mark.parametrize("form", ZONED)
def test_every_zoned_form_is_the_same_instant(form):
    assert to_epoch_ms(ZONED[form], "t") == MS


@pytest.mark.parametrize("form", NAIVE)
def test_naive_forms_are_refused_with_the_fix(form):
    with pytest.raises(keel.InvalidArgument) as err:
        to_epoch_ms(NAIVE[form], "as_of")
    text = str(err.value)
    assert "as_of=" in text and "time zone" in text
    assert "tzinfo=timezone.utc" in text and "tz='UTC'" in text and "'Z'" in text


@pytest.mark.parametrize("bad", ["garbage", "", "NaT", pd.NaT, float("nan"), True, [1], object(), 2**63,
                                 datetime(2026, 1, 1).date()])
def test_non_times_are_refused(bad):
    with pytest.raises(keel.InvalidArgument, match="t="):
        to_epoch_ms(bad, "t")


@pytest.mark.parametrize("form", ["90m", "1h30m", "1.5h", " 1h 30m ", 5400, 5400.0, np.int64(5400),
                                  timedelta(minutes=90), pd.Timedelta(minutes=90), np.timedelta64(90, "m")])
def test_every_form_of_a_duration_is_the_same_length(form):
    # One parser for every length of time (a view's ttl, `keel admin gc --older-than`).
    assert duration_ms(form, "ttl") == 5_400_000


@pytest.mark.parametrize("bad", ["1x", "h", "", "-1h", -1, float("nan"), True, None, "1h-"])
def test_non_durations_are_refused_naming_the_argument(bad):
    with pytest.raises(keel.InvalidArgument, match=r"ttl=.*(is not a duration: use e\.g\. '30m'|of 0 or more)"):
        duration_ms(bad, "ttl")


def test_arrays_of_times():
    assert to_epoch_ms_array([MS, MS + 1]).tolist() == [MS, MS + 1]
    zoned = pd.Series(pd.date_range("2026-01-01", periods=2, freq="s", tz="Europe/Berlin"))
    assert to_epoch_ms_array(zoned).tolist() == [MS - 3_600_000, MS - 3_599_000]
    with pytest.raises(keel.InvalidArgument, match="no time zone"):
        to_epoch_ms_array(np.array(["2026-01-01"], dtype="datetime64[ms]"))
    with pytest.raises(keel.InvalidArgument, match="no time zone"):
        to_epoch_ms_array(pd.Series(pd.date_range("2026-01-01", periods=2)))


# ------------------------------------------------------------------------------- every entry point

T0 = pd.Timestamp("2025-12-01", tz="UTC")


@pytest.fixture
def shop(ws):
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("activity", entities=["player"], ttl="400d", schema={"spend": "float64"})
    fv.ingest(pd.DataFrame({"player_id": [1, 2], "event_timestamp": [T0, T0], "spend": [1.0, 2.0]}))
    ws.features.materialize("activity", end=T0 + pd.Timedelta(days=1))
    with ws.start_run(name="trainer") as run:
        ws.models.register("churn", b"model", run_id=run.id)
    ws.models.set_alias("churn", "champion", version=1)
    ws.lineage.add_edge("dataset:raw", "feeds", "model:churn/1")
    return ws


def _frame(ts):
    return pd.DataFrame({"player_id": [3], "event_timestamp": [ts], "spend": [3.0]})


def _metric(ws, ts):
    run = ws.start_run(name="m")
    run.log_metric("auc", 0.5, timestamp=ts)
    return run.metric_history("auc")["timestamp"].tolist()


def _metrics(ws, ts):
    run = ws.start_run(name="m")
    run.log_metrics({"auc": 0.5}, timestamp=ts)
    return run.metric_history("auc")["timestamp"].tolist()


# Scalar entry points: each returns something that shows the time was read as MS.
SCALAR_ENTRY_POINTS = {
    "fv.as_of": lambda ws, ts: ws.features.view("activity").as_of(ts),
    "fv.to_pandas(start=)": lambda ws, ts: ws.features.view("activity").to_pandas(start=ts),
    "fv.to_pandas(end=)": lambda ws, ts: ws.features.view("activity").to_pandas(end=ts),
    "features.materialize(end=)": lambda ws, ts: ws.features.materialize("activity", end=ts),
    "features.get_online(now=)": lambda ws, ts: ws.features.get_online(["activity:spend"], player_id=[1], now=ts),
    "features.get_online(as_numpy, now=)": lambda ws, ts: ws.features.get_online(
        ["activity:spend"], player_id=[1], now=ts, as_numpy=True),
    "lineage.upstream(as_of=)": lambda ws, ts: ws.lineage.upstream("model:churn/1", as_of=ts),
    "lineage.downstream(as_of=)": lambda ws, ts: ws.lineage.downstream("dataset:raw", as_of=ts),
    "lineage.resolve(as_of=)": lambda ws, ts: ws.lineage.resolve("model:churn@champion", as_of=ts),
    "run.log_metric(timestamp=)": _metric,
    "run.log_metrics(timestamp=)": _metrics,
}


@pytest.mark.parametrize("entry", SCALAR_ENTRY_POINTS)
@pytest.mark.parametrize("form", NAIVE)
def test_every_entry_point_refuses_naive_times(shop, entry, form):
    with pytest.raises(keel.InvalidArgument, match="time zone"):
        SCALAR_ENTRY_POINTS[entry](shop, NAIVE[form])


@pytest.mark.parametrize("entry", SCALAR_ENTRY_POINTS)
def test_every_entry_point_reads_zoned_times_alike(shop, entry):
    call = SCALAR_ENTRY_POINTS[entry]
    # Lineage keeps the graph from when it was written: ask about a time after that.
    ms = 32_503_680_000_000 if entry.startswith("lineage") else MS
    results = [call(shop, value) for value in zoned_forms(ms).values()]
    first = results[0]
    for other in results[1:]:
        if isinstance(first, pd.DataFrame):
            pd.testing.assert_frame_equal(first, other)
        elif isinstance(first, np.ndarray):
            np.testing.assert_array_equal(first, other)
        elif hasattr(first, "refs"):
            assert first.refs == other.refs
        elif entry.startswith("features.materialize"):
            assert (other["end_ms"], other["changed"]) == (MS, 0)  # the same end again: nothing new to copy
        else:
            assert first == other
    if entry.startswith("run.log_metric"):
        assert first == [MS]


# Column entry points: a frame whose time column is naive in the ways pandas and arrow allow.
NAIVE_COLUMNS = {
    "datetime64 column": lambda: [pd.Timestamp("2026-01-01")],
    "ISO strings without zone": lambda: ["2026-01-01T00:00:00"],
}
COLUMN_ENTRY_POINTS = {
    "fv.ingest": lambda ws, col: ws.features.view("activity").ingest(_frame(col[0])),
    "features.training_set labels": lambda ws, col: ws.features.training_set(
        pd.DataFrame({"player_id": [1], "event_timestamp": col}), ["activity:spend"]),
    "quality.check": lambda ws, col: quality.check(pd.DataFrame({"ts": col}), []),
    "quality.check (arrow)": lambda ws, col: quality.check(
        __import__("pyarrow").Table.from_pandas(pd.DataFrame({"ts": pd.to_datetime(col)})), []),
    "run.log_batch(timestamps=)": lambda ws, col: ws.start_run().log_batch(
        "auc", [0.5], timestamps=np.array(pd.to_datetime(col).values)),
}


# Quality batches take text as text (a rule may check its pattern): only time columns are times there.
COLUMN_CASES = [(entry, kind) for entry in COLUMN_ENTRY_POINTS for kind in NAIVE_COLUMNS
                if not (entry == "quality.check" and kind.startswith("ISO"))]


@pytest.mark.parametrize("entry,kind", COLUMN_CASES)
def test_column_entry_points_refuse_naive_columns(shop, entry, kind):
    with pytest.raises(keel.InvalidArgument, match="time zone"):
        COLUMN_ENTRY_POINTS[entry](shop, NAIVE_COLUMNS[kind]())


def test_zoned_columns_are_accepted(shop):
    zoned = [pd.Timestamp("2026-01-01", tz="Europe/Berlin")]
    shop.features.view("activity").ingest(_frame(zoned[0]))
    shop.features.view("activity").ingest(_frame("2026-01-02T00:00:00+01:00"))
    labels = pd.DataFrame({"player_id": [1], "event_timestamp": zoned})
    assert shop.features.training_set(labels, ["activity:spend"]).to_pandas()["spend"].tolist() == [1.0]
    assert quality.check(pd.DataFrame({"ts": zoned}), []).passed
    run = shop.start_run()
    run.log_batch("auc", [0.5], timestamps=pd.Series(zoned))
    assert run.metric_history("auc")["timestamp"].tolist() == [MS - 3_600_000]


# ------------------------------------------------------------------------------- the CLI

def _cli(ws, *args):
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "keel", "--workspace", str(ws.path), *args], capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.mark.parametrize("value", ["2026-01-01T00:00:00", "2026-01-01", "2026-01-01 12:00"])
def test_cli_refuses_naive_as_of_with_exit_code(shop, value):
    out = _cli(shop, "lineage", "upstream", "model:churn/1", "--as-of", value, "--json")
    assert out.returncode == keel.InvalidArgument.exit_code
    err = json.loads(out.stderr)
    assert err["error"] == "InvalidArgument" and "time zone" in err["message"] and value in err["message"]


@pytest.mark.parametrize("value", ["2999-01-01T00:00:00Z", "2999-01-01T01:00+01:00", "32503680000000"])
def test_cli_reads_zoned_as_of(shop, value):
    out = _cli(shop, "lineage", "upstream", "model:churn/1", "--as-of", value, "--json")
    assert out.returncode == 0, out.stderr
    assert "dataset:raw" in [n["ref"] for n in json.loads(out.stdout)["nodes"]]

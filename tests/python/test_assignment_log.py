"""The assignment log is written by C++ on its own: a killed process loses at most its last second of
assignments, a clean exit none, and a batch is logged row for row like single requests."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel
from keel import _core

BOUND = 1.0   # AssignmentLog's default max_age, seconds
SLACK = 0.5   # the write itself and scheduling on a loaded machine


@pytest.fixture
def endpoint_ws(tmp_path):
    """A workspace with a saved endpoint fed by request fields only (no feature store needed)."""
    ws = keel.open(tmp_path / "ws.keel")
    x = pd.DataFrame({"sessions": [0.0, 1.0, 0.0], "spend": [0.0, 0.0, 1.0]})
    mv = ws.models.log_model(None, LinearRegression().fit(x, [0.0, 1.0, 2.0]), "churn")
    ws.models.set_alias("churn", "champion", mv.version)
    ws.endpoint("churn", model="churn@champion", inputs=["sessions", "spend"], key="user_id")
    return ws


def logged_keys(ws) -> list[str]:
    return _core.EndpointStore(ws.native).assignments("churn", -1)["key"]


def serve(ws, script: str) -> subprocess.Popen:
    """A Python process hosting the endpoint and running `script` (ep is the endpoint)."""
    code = textwrap.dedent(f"""
        import sys, time
        import keel
        ep = keel.open({str(ws.path)!r}).endpoint("churn")
    """) + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_kill_9_after_the_time_bound_loses_nothing(endpoint_ws):
    # 300 assignments, fewer than the 512 that trigger a write by count: only the time bound writes them.
    proc = serve(endpoint_ws, """
        for i in range(100):
            ep.predict({"user_id": i, "sessions": 1.0, "spend": 2.0})
        ep.predict_batch([{"user_id": i, "sessions": 1.0, "spend": 2.0} for i in range(100, 300)])
        print("served", flush=True)
        time.sleep(600)
    """)
    try:
        assert proc.stdout.readline().strip() == "served"
        time.sleep(BOUND + SLACK)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert logged_keys(endpoint_ws) == [str(i) for i in range(300)]


def test_kill_9_while_serving_loses_only_the_last_second(endpoint_ws):
    proc = serve(endpoint_ws, """
        i = 0
        while True:
            ep.predict({"user_id": i, "sessions": 1.0, "spend": 2.0})
            print(i, time.time(), flush=True)
            i += 1
            time.sleep(0.002)
    """)
    served = []
    try:
        served.append(proc.stdout.readline().split())  # started (importing takes seconds)
        start = time.time()
        while time.time() - start < 3.0:  # read as it goes, so the pipe never blocks the server
            served.append(proc.stdout.readline().split())
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.time()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    served += [line.split() for line in proc.stdout.read().splitlines()]
    logged = set(logged_keys(endpoint_ws))
    old_enough = [i for i, t in served if float(t) < killed - BOUND - SLACK]
    assert len(old_enough) > 50, "the server answered too few requests to test anything"
    assert [i for i in old_enough if i not in logged] == []


def test_a_clean_exit_loses_nothing(endpoint_ws):
    proc = serve(endpoint_ws, """
        ep.predict_batch([{"user_id": i, "sessions": 1.0, "spend": 2.0} for i in range(7)])
        ep.predict({"user_id": 7, "sessions": 1.0, "spend": 2.0})
    """)
    assert proc.wait(timeout=120) == 0
    assert logged_keys(endpoint_ws) == [str(i) for i in range(8)]


def test_batch_rows_are_logged_like_single_requests(endpoint_ws):
    ep = endpoint_ws.endpoint("churn")
    reqs = pd.DataFrame({"user_id": np.arange(3), "tenant": ["a", "b", "c"], "sessions": 1.0, "spend": 2.0})
    ep.predict_batch(reqs)
    for r in reqs.to_dict("records"):
        ep.predict(r)
    ep.predict({"user_id": "u-9", "sessions": 1.0, "spend": 2.0})  # no tenant: logged as ""
    ep.flush()
    a = ep.assignments().to_pandas()
    batch, single = a.iloc[:3].reset_index(drop=True), a.iloc[3:6].reset_index(drop=True)
    columns = ["key", "tenant", "variant", "model", "version", "fallback", "shadow", "prediction", "revision",
               "missing", "stale"]
    pd.testing.assert_frame_equal(batch[columns], single[columns])
    assert list(batch["key"]) == ["0", "1", "2"] and list(batch["tenant"]) == ["a", "b", "c"]
    assert batch["prediction"].tolist() == pytest.approx([5.0] * 3)
    assert a.iloc[6]["key"] == "u-9" and a.iloc[6]["tenant"] == ""
    log = ep.stats()["log"]
    assert log["appended"] == 7 and log["written"] == 7 and log["buffered"] == 0
    assert log["dropped"] == 0 and log["failed_writes"] == 0 and log["last_error"] == ""


def test_missing_and_stale_inputs_are_logged_comma_separated(endpoint_ws):
    ep = endpoint_ws.endpoint("churn", on_missing="flag")
    ep.predict_batch([{"user_id": 1}, {"user_id": 2, "sessions": 1.0}])
    ep.predict({"user_id": 3})
    a = ep.assignments().to_pandas()
    assert list(a["missing"]) == ["sessions,spend", "spend", "sessions,spend"]
    assert list(a["stale"]) == ["", "", ""]


def test_log_options_are_checked(endpoint_ws):
    with pytest.raises(keel.InvalidArgument, match="max_age=0"):
        _core.AssignmentLog(endpoint_ws.native, "churn", max_age=0)
    with pytest.raises(keel.InvalidArgument, match="flush_rows must be at least 1"):
        _core.AssignmentLog(endpoint_ws.native, "churn", flush_rows=0)


def test_append_served_refuses_columns_of_other_lengths(endpoint_ws):
    log = _core.AssignmentLog(endpoint_ws.native, "churn")
    with pytest.raises(keel.InvalidArgument, match="predictions has 1 entries for 2 requests"):
        log.append_served([{"user_id": 1}, {"user_id": 2}], "user_id", "tenant", [("main", "churn/1", 1)],
                          [(0, 0, ""), (0, 0, "")], np.zeros(1), 1, [[], []], [[], []])
    with pytest.raises(keel.InvalidArgument, match="decision 0 names variant 3 of 1"):
        log.append_served([{"user_id": 1}], "user_id", "tenant", [("main", "churn/1", 1)],
                          [(3, 0, "")], np.zeros(1), 1, [[]], [[]])
    assert log.stats()["appended"] == 0  # nothing half-appended
    log.close()

"""Masking applies to online readers made before a grant changed (issue 10, item 14, first half):
in this process from the next lookup, in another process from the reader's next refresh."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import keel

T0 = pd.Timestamp("2026-01-01", tz="UTC")
PYTHON_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "python"))


@pytest.fixture
def salary(ws):
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("salary", entities=["player"], schema={"income": keel.Float64(pii=True), "age": "int64"})
    fv.ingest(pd.DataFrame({"player_id": [1, 2], "event_timestamp": [T0, T0], "income": [1000.0, 2000.0],
                            "age": [30, 40]}))
    fs.materialize("salary", end=T0 + pd.Timedelta(days=1))
    ws.access.grant("hr", "salary", ["income"])
    return ws


def lookup(reader):
    return reader.lookup(np.array([1, 2], dtype=np.int64))


def test_revoke_masks_an_existing_reader_from_the_next_lookup(salary):
    hr = salary.reopen(role="hr")
    reader = hr.features.online_reader(["salary:income", "salary:age"])
    assert lookup(reader).tolist() == [[1000.0, 30.0], [2000.0, 40.0]]
    hr.access.revoke("hr", "salary", ["income"])
    m = lookup(reader)
    assert np.isnan(m[:, 0]).all() and m[:, 1].tolist() == [30.0, 40.0]
    reader.refresh()
    assert np.isnan(lookup(reader)[:, 0]).all()
    hr.access.grant("hr", "salary", ["income"])  # and back, from the next lookup
    assert lookup(reader)[:, 0].tolist() == [1000.0, 2000.0]


def test_revoke_through_another_handle_masks_at_once_and_stays_masked(salary):
    hr = salary.reopen(role="hr")
    reader = hr.features.online_reader(["salary:income"])
    cached = hr.features.get_online(["salary:income"], as_numpy=True, player_id=[1])
    assert cached[0, 0] == 1000.0
    salary.access.revoke("hr", "salary", ["income"])  # the admin's own handle
    assert np.isnan(lookup(reader)).all()  # fails closed until it checks again
    assert np.isnan(hr.features.get_online(["salary:income"], as_numpy=True, player_id=[1])).all()
    reader.refresh()
    assert np.isnan(lookup(reader)).all()  # checked: still revoked
    salary.access.grant("hr", "salary", ["income"])
    reader.refresh()
    assert lookup(reader)[:, 0].tolist() == [1000.0, 2000.0]


def test_revoke_in_another_process_masks_after_refresh(salary):
    hr = salary.reopen(role="hr")
    reader = hr.features.online_reader(["salary:income"])
    assert lookup(reader)[:, 0].tolist() == [1000.0, 2000.0]
    code = textwrap.dedent(f"""
        import keel
        keel.open({salary.location!r}).access.revoke("hr", "salary", ["income"])
    """)
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    reader.refresh()  # what a serving process does every refresh interval
    assert np.isnan(lookup(reader)).all()


def test_revoking_another_grant_leaves_the_reader_showing(salary):
    hr = salary.reopen(role="hr")
    before = hr.features.online_reader(["salary:income"])
    hr.access.revoke("hr", "salary", ["*"])  # a wildcard revoke of a column grant changes nothing
    assert lookup(before)[:, 0].tolist() == [1000.0, 2000.0]
    hr.access.revoke("hr", "salary", ["income"])
    assert np.isnan(lookup(before)).all()


def test_an_endpoint_never_serves_a_pii_input_its_role_may_not_read(salary):
    """The endpoint's lookup with per-value status follows the same grants as a plain lookup."""
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame(np.eye(2), columns=["income", "age"])
    model = LinearRegression(fit_intercept=False).fit(x, [1.0, 0.0])  # prediction = income
    with salary.start_run(experiment="pay") as run:
        run.log_model(model, name="pay")
    hr = salary.reopen(role="hr")
    ep = hr.endpoint("pay", model="pay/1", features=["salary:income", "salary:age"], on_missing="flag")
    assert ep.predict({"player_id": 1})["prediction"] == pytest.approx(1000.0)
    salary.access.revoke("hr", "salary", ["income"])
    out = ep.predict({"player_id": 1})
    assert np.isnan(out["prediction"]) and out["missing"] == ["income"]
    anyone = salary.reopen()  # no role: never granted
    out = anyone.endpoint("pay").predict({"player_id": 2})
    assert np.isnan(out["prediction"]) and out["missing"] == ["income"]

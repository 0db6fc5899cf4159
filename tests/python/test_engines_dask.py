"""Keel on Dask (the local threaded scheduler): training sets, view reads, ingest and scoring equal the
local engine's results row for row, and fail with the local engine's errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import dask.dataframe as dd  # make deps installs dask[dataframe]
import pytest

import keel
from engines_data import FEATURES, T0, labels, make_workspace, same

@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("dask") / "ws.keel")


def test_training_set_equals_local_row_for_row(ws):
    frame = labels(1500)
    local = ws.features.training_set(frame, features=FEATURES)
    built = ws.features.training_set(dd.from_pandas(frame, npartitions=4), features=FEATURES, engine="dask")
    out = built.to_pandas()
    same(out, local.to_pandas())
    assert out.index.tolist() == frame.index.tolist()  # the labels' own index, in their order
    assert out["games"].isna().any() and out["sessions"].notna().any()
    assert built.record.segment_cutoffs == local.record.segment_cutoffs
    assert built.record.label_rows == len(frame)
    same(ws.features.training_set(id=built.id).to_pandas(), local.to_pandas())


def test_training_set_single_view_without_record(ws):
    frame = labels(400)
    local = ws.features.training_set(frame, features=["plays:games", "plays:last_win"]).to_pandas()
    built = ws.features.training_set(dd.from_pandas(frame, npartitions=3),
                                     features=["plays:games", "plays:last_win"], engine="dask", record=False)
    assert built.id is None
    same(built.to_dask().compute(), local)


def test_to_dask_equals_to_pandas(ws):
    for name in ("activity", "profile", "plays"):
        fv = ws.features.view(name)
        same(fv.to_dask().compute(), fv.to_pandas())


def test_ingest_from_dask_then_read_locally(tmp_path):
    ws = keel.open(tmp_path / "ws.keel")
    ws.features.entity("player", join_keys=["player_id"])
    schema = {"spend": "float64", "tier": "string"}
    dask_view = ws.features.feature_view("from_dask", entities=["player"], schema=schema)
    local_view = ws.features.feature_view("from_pandas", entities=["player"], schema=schema)
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"player_id": np.arange(400) % 50, "spend": rng.random(400),
                         "tier": rng.choice(["a", "b"], 400),
                         "event_timestamp": T0 + pd.to_timedelta(np.arange(400) // 50, unit="D"),
                         "created_timestamp": T0})
    result = dask_view.ingest(dd.from_pandas(data, npartitions=4))
    assert result["rows"] == 400 and len(result["segments"]) == 4
    local_view.ingest(data)
    same(dask_view.to_pandas(), local_view.to_pandas())


def _errors(call):
    with pytest.raises(keel.KeelError) as info:
        call()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("case", ["missing view", "missing column", "no key", "no timestamp", "naive time"])
def test_failures_give_the_local_errors(ws, case):
    frame = labels(20)
    features = FEATURES
    if case == "missing view":
        features = ["nope:x"]
    elif case == "missing column":
        features = ["activity:nope"]
    elif case == "no key":
        frame = frame.drop(columns="player_id")
    elif case == "no timestamp":
        frame = frame.drop(columns="event_timestamp")
    else:
        frame = frame.assign(event_timestamp=frame.event_timestamp.dt.tz_localize(None))
    local = _errors(lambda: ws.features.training_set(frame, features=features))
    engine = _errors(lambda: ws.features.training_set(dd.from_pandas(frame, npartitions=2), features=features,
                                                      engine="dask"))
    assert engine == local


def test_predict_equals_predict(tmp_path):
    from sklearn.linear_model import LinearRegression
    from keel.engines.dask import predict
    ws = keel.open(tmp_path / "ws.keel")
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"sessions": rng.integers(0, 30, 500).astype(float), "spend": rng.random(500) * 50})
    with ws.start_run(experiment="ltv") as run:
        run.log_model(LinearRegression().fit(X, X.sessions * 2 + X.spend), name="ltv")
    predictor = ws.models.load("ltv/1")
    out = predict(predictor, dd.from_pandas(X, npartitions=3)).compute()
    np.testing.assert_array_equal(out.to_numpy(), predictor.predict(X))
    assert out.index.tolist() == X.index.tolist()

"""keel._bench: the benchmarks' timing loops live in their own extension, outside keel._core."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import keel
from keel import _bench, _core, plugins
from keel.inference import FactorizationModel

STICKY = "plugins/routing/sticky.lua"


def test_the_production_module_carries_no_bench_hooks():
    assert not hasattr(_core.NativePredictor, "time_single_row")
    assert not hasattr(_core.OnlineReader, "bench_lookup")
    assert not hasattr(_core.Router, "bench")
    assert not hasattr(plugins.Router, "bench")


def test_import_keel_does_not_load_the_bench_module():
    code = "import sys, keel; keel.open; print('keel._bench' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_route_decisions_times_a_router_made_by_keel():
    r = plugins.Router(STICKY, {"champion": 0.9, "challenger": 0.1}, config={"key": "player_id"})
    b = _bench.route_decisions(r.native, 20_000, 1000, "player_id")  # the sticky key: no fallbacks
    assert b["decisions"] >= 20_000 and 0 < b["median_ns"] <= b["p99_ns"] and b["per_second"] > 0
    stats = r.stats()
    assert stats["fallbacks"] == 0 and stats["decisions"] >= 20_000  # the router's own counters moved
    with pytest.raises(keel.InvalidArgument, match="n >= 64"):
        _bench.route_decisions(r.native, 10, 1000, "player_id")


def test_route_decisions_finds_builtin_plugins_from_another_directory(tmp_path, monkeypatch):
    r = plugins.Router(STICKY, {"a": 1}, config={"key": "user_id"})
    monkeypatch.chdir(tmp_path)  # the ref now resolves through the search path only
    assert _bench.route_decisions(r.native, 640, 10, "user_id")["decisions"] == 640
    assert r.stats()["fallbacks"] == 0


def test_time_single_row_checks_the_row_and_times_predict_row():
    p = FactorizationModel(np.ones((3, 2)), np.ones((4, 2)))
    assert _bench.time_single_row(p.native, np.array([1.0, 2.0]), 100) > 0
    with pytest.raises(keel.InvalidArgument, match="row has 3 values, the model reads 2"):
        _bench.time_single_row(p.native, np.array([1.0, 2.0, 3.0]), 100)
    with pytest.raises(TypeError):
        _bench.time_single_row(p, np.array([1.0, 2.0]), 100)  # the wrapper is not the native predictor


def test_online_lookup_times_a_reader(ws):
    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("activity", entities=["player"], schema={"sessions": "int64"})
    t = pd.Timestamp("2024-01-01", tz="UTC")
    fv.ingest(pd.DataFrame({"player_id": [1, 2], "event_timestamp": [t, t], "sessions": [3, 4]}))
    ws.features.materialize("activity")
    reader = ws.features.online_reader(["activity:sessions"])
    assert _bench.online_lookup(reader, np.array([1, 2, 9], dtype=np.int64), 1000) > 0
    with pytest.raises(keel.InvalidArgument, match="needs ids"):
        _bench.online_lookup(reader, np.array([], dtype=np.int64), 10)

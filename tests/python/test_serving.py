import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression

import keel

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def frame(rows, columns=("sessions", "spend")):
    return pd.DataFrame(np.asarray(rows, dtype=float), columns=list(columns))


def constant(value):
    """A model answering one number (so tests can tell versions apart); loadable in any process."""
    return DummyRegressor(strategy="constant", constant=value).fit(frame(np.zeros((2, 2))), [value, value])


class Broken:
    """A model whose every prediction fails (a shadow that must never reach the response)."""

    def predict(self, x):
        raise RuntimeError("boom")


def broken(ws):
    return ws.models.log_model(None, Broken(), "broken",
                               signature={"inputs": [{"name": "sessions"}, {"name": "spend"}]})


@pytest.fixture
def served(ws):
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("activity", entities=["player"], schema={"sessions": "int64", "spend": "float64"})
    n = 200
    fv.ingest(pd.DataFrame({"player_id": np.arange(n), "event_timestamp": T0, "sessions": np.arange(n) % 7,
                            "spend": np.arange(n) * 1.0}))
    fs.materialize("activity")
    lr = LinearRegression().fit(frame([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), np.array([0.0, 1.0, 2.0]))
    ws.models.log_model(None, lr, "churn")                 # churn/1: sessions + 2 * spend
    ws.models.log_model(None, constant(-1.0), "churn")     # churn/2
    ws.models.set_alias("churn", "champion", 1)
    ws.models.set_alias("churn", "challenger", 2)
    return ws


def define(ws, **kw):
    d = dict(routing="plugins/routing/sticky.lua",
             variants={"champion": ("churn@champion", 0.5), "challenger": ("churn@challenger", 0.5)},
             features=["activity:sessions", "activity:spend"])
    d.update(kw)
    return ws.endpoint("churn", refresh_interval=0, **d)


def test_predict_routes_looks_up_features_and_logs(served):
    ep = define(served)
    out = ep.predict({"player_id": 10, "tenant": "studio-a"})
    assert set(out) == {"prediction", "variant", "model", "version", "fallback", "missing", "stale"}
    assert out["missing"] == [] and out["stale"] == [] and out["fallback"] == ""
    if out["variant"] == "champion":
        assert out["model"] == "churn/1" and out["prediction"] == pytest.approx(3 + 2 * 10.0)
    else:
        assert out["model"] == "churn/2" and out["prediction"] == -1.0
    assert ep.predict({"player_id": 10})["variant"] == out["variant"]  # sticky
    batch = ep.predict_batch([{"player_id": i, "tenant": "studio-b"} for i in range(100)])
    assert {b["variant"] for b in batch} == {"champion", "challenger"}
    for i, b in enumerate(batch):
        assert b["prediction"] == (pytest.approx((i % 7) + 2.0 * i) if b["variant"] == "champion" else -1.0)
        single = ep.predict({"player_id": i})
        assert single["prediction"] == pytest.approx(b["prediction"]) and single["model"] == b["model"]
    a = ep.assignments().to_pandas()
    assert len(a) == 202 and set(a.columns) >= {"ts", "key", "tenant", "variant", "model", "version", "prediction"}
    assert a.iloc[0].tenant == "studio-a" and a.iloc[0].key == "10"


def test_definition_is_saved_reopened_and_revised(served):
    ep = define(served)
    assert ep.revision == 1
    assert define(served).revision == 1                  # same definition: no new revision
    again = served.endpoint("churn")
    assert again.weights == {"champion": 0.5, "challenger": 0.5}
    ep.set_weights({"challenger": 0.0})
    assert ep.revision == 2 and all(ep.predict({"player_id": i})["variant"] == "champion" for i in range(50))
    again.refresh()                                       # another host picks the new weights up
    assert again.revision == 2 and again.weights["challenger"] == 0.0
    code = textwrap.dedent(f"""
        import keel, json
        ws = keel.open({served.location!r})
        ep = ws.endpoint("churn")
        print(json.dumps([ep.revision, ep.weights, ep.predict({{"player_id": 3}})["variant"]]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2, {"champion": 0.5, "challenger": 0.0}, "champion"]
    assert list(ep.revisions().revision) == [1, 2]
    with pytest.raises(keel.InvalidArgument, match="unknown variant 'nope'"):
        ep.set_weights({"nope": 1})
    with pytest.raises(keel.NotFound, match="endpoint 'other'"):
        served.endpoint("other")


def test_alias_move_takes_effect_without_restart(served):
    ep = define(served, variants={"champion": ("churn@champion", 1.0)})
    assert ep.predict({"player_id": 5})["model"] == "churn/1"
    served.models.set_alias("churn", "champion", 2)
    out = ep.predict({"player_id": 5})
    assert out["model"] == "churn/2" and out["prediction"] == -1.0


def test_routing_failure_falls_back_and_shadow_never_reaches_response(served, tmp_path):
    plugin = tmp_path / "plugins" / "bad.lua"
    plugin.parent.mkdir()
    plugin.write_text("function route(req, ctx) error('boom') end\n")
    ep = define(served, routing=str(plugin), default="challenger")
    out = ep.predict({"player_id": 1})
    assert out["variant"] == "challenger" and ep.stats()["fallbacks"] == 1
    broken(served)
    sh = served.endpoint("shadowed", refresh_interval=0, routing="plugins/routing/shadow.lua",
                         variants={"champion": ("churn/1", 1), "challenger": ("broken/1", 0)},
                         features=["activity:sessions", "activity:spend"])
    out = sh.predict({"player_id": 2})
    assert out["variant"] == "champion" and out["prediction"] == pytest.approx(2 + 4.0)
    assert sh.stats()["shadow_errors"] == 1
    ok = served.endpoint("mirrored", refresh_interval=0, routing="plugins/routing/shadow.lua",
                         variants={"champion": ("churn/1", 1), "challenger": ("churn/2", 0)},
                         features=["activity:sessions", "activity:spend"])
    ok.predict({"player_id": 2})
    a = ok.assignments().to_pandas()
    assert list(a.shadow) == [False, True] and list(a.variant) == ["champion", "challenger"]


def test_a_python_models_error_reaches_the_caller_unchanged(served):
    broken(served)
    ep = served.endpoint("fails", refresh_interval=0, model="broken/1",
                         features=["activity:sessions", "activity:spend"])
    assert not ep.native  # served by the core, predicted by Python
    with pytest.raises(RuntimeError, match="boom"):
        ep.predict({"player_id": 2})
    with pytest.raises(RuntimeError, match="boom"):
        ep.predict_batch([{"player_id": 1}, {"player_id": 2}])
    ep.flush()
    assert len(ep.assignments()) == 0  # nothing answered, nothing logged
    assert ep.stats()["refused"] == 0  # a failing model is not a refused request


def test_threads_serve_python_and_native_models_while_an_alias_moves(served):
    # keel serve answers from many threads: Python models take the GIL only around their call, and
    # an alias moved meanwhile (a reload loading a Python model) blocks no thread for good.
    import threading
    ep = define(served)  # refresh_interval=0: every request also looks for changes
    errors, answers = [], []

    def serve(start):
        try:
            for i in range(start, start + 150):
                answers.append(ep.predict({"player_id": i % 200})["model"])
                ep.stats()
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=serve, args=(k * 7,)) for k in range(4)]
    for t in threads:
        t.start()
    for version in (2, 1, 2):
        served.models.set_alias("churn", "champion", version)
        ep.refresh()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and not errors
    assert len(answers) == 600 and set(answers) <= {"churn/1", "churn/2"}


def test_compare_variants_with_confidence_interval(served):
    ep = define(served)
    ep.predict_batch([{"player_id": i} for i in range(200)])
    a = ep.assignments().to_pandas()
    outcome = pd.DataFrame({"player_id": range(200)})
    lift = a.drop_duplicates("key").set_index("key").variant.map({"champion": 0.0, "challenger": 1.0})
    outcome["churned"] = [lift[str(i)] + (i % 2) * 0.1 for i in range(200)]
    cmp = ep.compare(outcome, "churned")
    row = cmp.set_index("variant").loc["challenger"]
    assert row.diff_vs_control == pytest.approx(1.0, abs=0.05) and row.ci_low < 1.0 < row.ci_high
    assert cmp.set_index("variant").loc["champion"].control


def test_data_issue_routes_away_when_configured(served):
    ep = define(served, config={"avoid_data_issues": True})
    served.lineage.add_edge("feature_view:activity", "feeds", "model:churn/2")
    from keel import quality
    c = quality.checks(served, "feature_view:activity")
    c.add_rule("plugins/quality/range.lua", column="spend", max=-1, severity="warn")
    c.run(pd.DataFrame({"spend": [1.0]}))
    ep.refresh()
    # Both variants read the view online, so both are affected: every request goes to the default,
    # and each one moved off its variant says so (it used to collapse in silence).
    assert ep.stats()["issues"] == ["challenger", "champion"]
    outs = [ep.predict({"player_id": i}) for i in range(40)]
    assert all(o["variant"] == "champion" for o in outs)
    moved = [o for o in outs if o["fallback"] == "data_issue"]
    assert 0 < len(moved) < 40 and all(o["fallback"] == "" for o in outs if o not in moved)
    stats = ep.stats()
    assert stats["data_issue"] == len(moved) and stats["fallbacks"] == len(moved)
    a = ep.assignments().to_pandas()
    assert (a.fallback == "data_issue").sum() == len(moved)


def test_endpoint_is_in_the_lineage_graph_and_reports_upstream_issues(served):
    ep = define(served, variants={"champion": ("churn@champion", 1.0)})
    assert "endpoint:churn" in served.lineage.downstream("model:churn/1")
    served.models.set_alias("churn", "champion", 2)
    ep.refresh()
    assert "endpoint:churn" in served.lineage.downstream("model:churn/2")
    assert "endpoint:churn" not in served.lineage.downstream("model:churn/1")
    served.lineage.add_edge("feature_view:activity", "feeds", "model:churn/2")
    from keel import quality
    c = quality.checks(served, "feature_view:activity")
    c.add_rule("plugins/quality/range.lua", column="spend", max=-1, severity="warn")
    c.run(pd.DataFrame({"spend": [1.0]}))
    assert list(ep.issues().rule) == ["range"]


def test_an_alias_move_seen_in_another_session_ends_the_old_serves_edge(served):
    define(served, variants={"champion": ("churn@champion", 1.0)})
    served.models.set_alias("churn", "champion", 2)  # nobody hosts the endpoint now
    keel.open(served.location).endpoint("churn")          # a later session opens it: serves churn/2 only
    assert "endpoint:churn" in served.lineage.downstream("model:churn/2")
    assert "endpoint:churn" not in served.lineage.downstream("model:churn/1")


def test_native_models_take_the_one_call_request_path(served):
    mv = served.models.get("churn/1")
    # A LinearRegression is converted: if it is not, the native path would go untested, so fail.
    assert mv.flavour == "keel-native", "keel.inference did not convert the fixture's LinearRegression"
    ep = define(served, variants={"a": ("churn/1", 0.5), "b": ("churn@champion", 0.5)})
    assert ep.native
    batch = ep.predict_batch([{"player_id": i} for i in range(50)])  # one C++ call for the batch
    for i, b in enumerate(batch):
        one = ep.predict({"player_id": i, "tenant": "t"})
        assert one["variant"] == b["variant"] and one["prediction"] == pytest.approx(b["prediction"])
        assert one["prediction"] == pytest.approx((i % 7) + 2.0 * i)
    with pytest.raises(keel.InvalidArgument, match="player_id"):
        ep.predict({"tenant": "t"})
    served.models.set_alias("churn", "champion", 2)   # not native: back to the Python path
    ep.refresh()
    assert not ep.native and ep.predict({"player_id": 3})["model"] in ("churn/1", "churn/2")


def test_changes_reach_a_hosting_process_on_its_next_request(served):
    """No polling wait: a long refresh_interval, and every change is still served on the next request."""
    ep = served.endpoint("churn", refresh_interval=3600, routing="plugins/routing/weighted.lua",
                         variants={"champion": ("churn@champion", 1.0), "challenger": ("churn@challenger", 0.0)},
                         features=["activity:sessions", "activity:spend"])
    assert ep.predict({"player_id": 5})["model"] == "churn/1"

    def elsewhere(code):
        subprocess.run([sys.executable, "-c", f"import keel; ws = keel.open({served.location!r}); {code}"], check=True)

    elsewhere("ws.models.set_alias('churn', 'champion', 2)")          # another process moves the alias
    assert ep.predict({"player_id": 5})["model"] == "churn/2"
    served.models.set_alias("churn", "champion", 1)                    # this process, same handle
    assert ep.predict({"player_id": 5})["model"] == "churn/1"
    elsewhere("ws.endpoint('churn').set_weights({'champion': 0.0, 'challenger': 1.0})")  # a new revision
    out = ep.predict({"player_id": 5})
    assert out["variant"] == "challenger" and ep.revision == 2
    for _ in range(3):  # unrelated writes (here: our own assignment log) cost a token check, no reload
        ep.flush()
        assert ep.predict({"player_id": 6})["variant"] == "challenger" and ep.revision == 2


def test_prediction_log_keeps_the_inputs_of_sampled_answers(served):
    ep = define(served, variants={"champion": ("churn@champion", 1.0)}, log_inputs=1.0)
    ep.predict({"player_id": 3})
    ep.predict_batch([{"player_id": 4}, {"player_id": 5, "spend": 99.0}])
    log = ep.prediction_log().to_pandas()
    assert len(log) == 3 and list(log.columns[-2:]) == ["sessions", "spend"]
    assert log[["sessions", "spend"]].values.tolist() == [[3.0, 3.0], [4.0, 4.0], [5.0, 99.0]]
    assert (log.latency_us > 0).all() and (log.model == "churn/1").all()
    assert log.prediction.tolist() == pytest.approx([3 + 2 * 3.0, 4 + 2 * 4.0, 5 + 2 * 99.0])
    ep = define(served, variants={"champion": ("churn@champion", 1.0)}, log_inputs=0.0)
    ep.predict({"player_id": 6})
    assert len(ep.prediction_log()) == 3 and len(ep.assignments()) == 4  # every answer is logged, inputs by share
    with pytest.raises(keel.InvalidArgument, match="log_inputs"):
        define(served, log_inputs=2)

"""Endpoints never answer wrong in silence: inputs by name, definitions checked against the models,
missing and stale inputs visible, data issues on online views reach the endpoint."""
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel

T0 = pd.Timestamp("2026-01-01", tz="UTC")
COLS = ["spend_30d", "spend_7d", "carts_7d", "views_7d"]


@pytest.fixture
def shop(ws):
    """A view with four features for players 0..299 (fresh) and 300..309 (older than the 1d TTL)."""
    fs = ws.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("player_activity", entities=["player"], ttl="1d",
                         schema={c: "float64" for c in COLS})
    rng = np.random.default_rng(7)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    ids = np.arange(310)
    df = pd.DataFrame({"player_id": ids, "event_timestamp": [now - pd.Timedelta("1h")] * 300 +
                       [now - pd.Timedelta("3D")] * 10})
    for c in COLS:
        df[c] = rng.gamma(2.0, 10.0, len(ids))
    fv.ingest(df)
    fs.materialize("player_activity")
    ws.test_rows = df
    return ws


def lgbm(ws, name="churn"):
    import lightgbm as lgb
    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.gamma(2.0, 10.0, (2000, 4)), columns=COLS)
    y = (x.spend_30d - 2 * x.carts_7d + rng.normal(0, 5, len(x)) > 0).astype(int)
    model = lgb.LGBMClassifier(n_estimators=30, verbose=-1).fit(x, y)
    ws.models.log_model(None, model, name)
    return model


def linear(ws, name, columns, coefs):
    x = pd.DataFrame(np.eye(len(columns)) , columns=columns)
    model = LinearRegression(fit_intercept=False).fit(x, np.asarray(coefs, dtype=float))  # y = sum(coef * column)
    return ws.models.log_model(None, model, name)


class Wrapped:
    """A model Keel cannot convert (stored pickled): endpoints serve it through the Python path."""

    def __init__(self, model):
        self.model = model

    def predict_proba(self, x):
        return self.model.predict_proba(pd.DataFrame(np.asarray(x), columns=COLS))


def expected(model, row):
    return float(model.predict_proba(pd.DataFrame([row[COLS].to_numpy(float)], columns=COLS))[0, 1])


# -- 1. inputs by name ---------------------------------------------------------------------------

@pytest.mark.parametrize("native", [True, False])
def test_features_listed_in_another_order_are_fed_by_name(shop, native):
    model = lgbm(shop)
    ref = "churn/1"
    if not native:  # the same model, pickled: the Python request path
        shop.models.log_model(None, Wrapped(model), "churn-py", input_example=pd.DataFrame([[0.0] * 4], columns=COLS))
        ref = "churn-py/1"
        assert shop.models.get(ref).flavour != "keel-native"
    shuffled = [f"player_activity:{c}" for c in reversed(COLS)]
    ep = shop.endpoint("churn", model=ref, features=shuffled)
    assert ep.native == native
    row = shop.test_rows.iloc[42]
    out = ep.predict({"player_id": 42})
    assert out["prediction"] == pytest.approx(expected(model, row), rel=1e-6)
    batch = ep.predict_batch([{"player_id": i} for i in range(40, 45)])
    assert batch[2]["prediction"] == pytest.approx(expected(model, row), rel=1e-6)


def test_request_inputs_are_fed_by_name(ws):
    mv = linear(ws, "lin", ["a", "b", "c"], [1.0, 10.0, 100.0])
    ep = ws.endpoint("lin", model="lin/1", inputs=["c", "a", "b"])
    out = ep.predict({"a": 1.0, "b": 2.0, "c": 3.0})
    assert out["prediction"] == pytest.approx(1 + 20 + 300)
    assert ep.predict_batch([{"a": 1, "b": 0, "c": 0}, {"a": 0, "b": 0, "c": 1}])[1]["prediction"] == \
        pytest.approx(100.0)
    assert mv.feature_names == ["a", "b", "c"]


def test_request_field_named_like_a_feature_wins_over_the_online_value(shop):
    model = lgbm(shop)
    ep = shop.endpoint("churn", model="churn/1", features=["player_activity"])  # the whole view
    assert ep.definition["features"] == [f"player_activity:{c}" for c in COLS]
    row = shop.test_rows.iloc[7].copy()
    row["carts_7d"] = 0.0
    out = ep.predict({"player_id": 7, "carts_7d": 0.0})
    assert out["prediction"] == pytest.approx(expected(model, row), rel=1e-6)


# -- 2. definitions checked against the models ---------------------------------------------------

def test_definition_not_covering_the_signature_is_refused_with_names(shop):
    lgbm(shop)
    with pytest.raises(keel.InvalidArgument) as err:
        shop.endpoint("churn", model="churn/1", features=["player_activity:spend_30d", "player_activity:spend_7d"])
    msg = str(err.value)
    assert "endpoint 'churn'" in msg and "variant 'main'" in msg and "churn/1" in msg
    assert "missing [carts_7d, views_7d]" in msg
    with pytest.raises(keel.NotFound):
        shop.endpoint("churn")  # nothing was saved


def test_model_without_names_needs_signature(ws):
    x = np.eye(2)
    ws.models.log_model(None, LinearRegression().fit(x, [1.0, 2.0]), "anon")   # inputs x0, x1
    with pytest.raises(keel.InvalidArgument, match="signature="):
        ws.endpoint("anon", model="anon/1", inputs=["a", "b"])
    ep = ws.endpoint("anon", model="anon/1", inputs=["a", "b"], signature=["b", "a"])
    assert ep.predict({"a": 0.0, "b": 1.0})["prediction"] == pytest.approx(1.0)  # b is the model's x0


def test_alias_move_to_an_incompatible_version_is_refused_and_not_followed(shop):
    lgbm(shop)
    linear(shop, "churn", ["spend_30d", "loyalty"], [1.0, 2.0])     # churn/2 reads a column we lack
    shop.models.set_alias("churn", "champion", 1)
    ep = shop.endpoint("churn", model="churn@champion", features=["player_activity"], refresh_interval=0)
    with pytest.raises(keel.Conflict, match="missing \\[loyalty\\]"):
        shop.models.set_alias("churn", "champion", 2)
    assert shop.models.get("churn@champion").version == 1
    # Moved anyway below the Python API (another tool): the endpoint keeps serving version 1 and says so.
    shop.models.native.set_alias("churn", "champion", 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ep.predict({"player_id": 1})
    assert out["model"] == "churn/1"
    assert "loyalty" in ep.stats()["rejected_alias_moves"]["main"]
    assert any("not followed" in str(w.message) for w in caught)


def test_set_weights_is_checked_too(shop):
    lgbm(shop)
    ep = shop.endpoint("churn", routing="plugins/routing/sticky.lua",
                       variants={"a": ("churn/1", 1.0), "b": ("churn/1", 1.0)}, features=["player_activity"])
    assert ep.set_weights({"b": 0.0}) == 2


# -- 3. missing and stale inputs -----------------------------------------------------------------

def test_missing_and_stale_inputs_are_refused_by_default(shop):
    lgbm(shop)
    ep = shop.endpoint("churn", model="churn/1", features=["player_activity"])
    with pytest.raises(keel.InvalidArgument, match="missing \\[spend_30d, spend_7d, carts_7d, views_7d\\]"):
        ep.predict({"player_id": 99999})
    with pytest.raises(keel.InvalidArgument, match="stale \\[spend_30d"):
        ep.predict({"player_id": 305})
    assert ep.stats()["refused"] == 2
    # The caller can send what the store lacks.
    out = ep.predict({"player_id": 99999, **{c: 1.0 for c in COLS}})
    assert out["missing"] == [] and out["stale"] == []


def test_flag_policy_predicts_and_says_which_inputs(shop):
    lgbm(shop)
    ep = shop.endpoint("churn", model="churn/1", features=["player_activity"], on_missing="flag")
    out = ep.predict({"player_id": 99999, "carts_7d": 2.0})
    assert out["missing"] == ["spend_30d", "spend_7d", "views_7d"] and out["stale"] == []
    out = ep.predict({"player_id": 305})
    assert out["stale"] == COLS and out["missing"] == []
    fine = ep.predict({"player_id": 3})
    assert fine["missing"] == [] and fine["stale"] == []
    stats = ep.stats()
    assert stats["missing"] == 1 and stats["stale"] == 1
    a = ep.assignments().to_pandas()
    assert list(a.missing) == ["spend_30d,spend_7d,views_7d", "", ""]
    assert list(a.stale) == ["", ",".join(COLS), ""]
    batch = ep.predict_batch([{"player_id": 99999}, {"player_id": 2}])
    assert batch[0]["missing"] == COLS and batch[1]["missing"] == []


def test_default_policy_uses_declared_defaults(ws):
    mv = linear(ws, "lin", ["a", "b"], [1.0, 10.0])
    with pytest.raises(keel.InvalidArgument, match="no variant's model reads"):
        ws.endpoint("lin", model="lin/1", inputs=["a", "b"], on_missing="default", defaults={"c": 1})
    with pytest.raises(keel.InvalidArgument, match="on_missing="):
        ws.endpoint("lin", model="lin/1", inputs=["a", "b"], on_missing="zero")
    ep = ws.endpoint("lin", model="lin/1", inputs=["a", "b"], on_missing="default", defaults={"b": 5.0})
    out = ep.predict({"a": 1.0})
    assert out["prediction"] == pytest.approx(1 + 50) and out["missing"] == ["b"]
    with pytest.raises(keel.InvalidArgument, match="defaults= has no value"):
        ep.predict({"b": 1.0})
    assert mv.version == 1


# -- 4. online views are lineage inputs of the endpoint --------------------------------------------

def test_issue_on_an_online_view_reaches_the_endpoint(shop):
    lgbm(shop)
    ep = shop.endpoint("churn", model="churn/1", features=["player_activity"], refresh_interval=0)
    assert "endpoint:churn" in shop.lineage.downstream("feature_view:player_activity")
    assert ep.issues().empty
    from keel import quality
    c = quality.checks(shop, "feature_view:player_activity")
    c.add_rule("plugins/quality/range.lua", column="spend_30d", max=-1, severity="warn")
    c.run(pd.DataFrame({"spend_30d": [1.0]}))
    assert list(ep.issues().rule) == ["range"]
    ep.refresh()
    assert ep.stats()["issues"] == ["main"]
    # A revision saved before endpoints recorded their views gets the edge when it is opened.
    shop.lineage.remove_edge("feature_view:player_activity", "feeds", "endpoint:churn")
    assert ep.issues().empty
    shop.endpoint("churn")
    assert list(ep.issues().rule) == ["range"]


def test_a_view_no_longer_read_stops_feeding_the_endpoint(shop):
    fs = shop.features
    fv = fs.feature_view("other", entities=["player"], schema={"x": "float64"})
    fv.ingest(pd.DataFrame({"player_id": [1], "event_timestamp": pd.Timestamp.now(tz="UTC").floor("s"), "x": 1.0}))
    fs.materialize("other")
    linear(shop, "lin", ["spend_30d", "x"], [1.0, 1.0])
    linear(shop, "lin", ["spend_30d"], [1.0])
    shop.endpoint("lin", model="lin/1", features=["player_activity:spend_30d", "other:x"])
    assert "endpoint:lin" in shop.lineage.downstream("feature_view:other")
    shop.endpoint("lin", model="lin/2", features=["player_activity:spend_30d"])
    assert "endpoint:lin" not in shop.lineage.downstream("feature_view:other")
    assert "endpoint:lin" in shop.lineage.downstream("feature_view:player_activity")


# -- routing: data issues are reported -------------------------------------------------------------

def test_reroute_for_a_data_issue_on_one_variants_view_is_counted(shop):
    lgbm(shop)
    fs = shop.features
    fv = fs.feature_view("bonus", entities=["player"], schema={"bonus": "float64"})
    fv.ingest(pd.DataFrame({"player_id": np.arange(310), "event_timestamp": pd.Timestamp.now(tz="UTC").floor("s"),
                            "bonus": 1.0}))
    fs.materialize("bonus")
    linear(shop, "bonus-model", ["spend_30d", "bonus"], [1.0, 1.0])
    ep = shop.endpoint("ab", routing="plugins/routing/sticky.lua", config={"avoid_data_issues": True},
                       variants={"champion": ("churn/1", 0.5), "challenger": ("bonus-model/1", 0.5)},
                       features=["player_activity", "bonus:bonus"], refresh_interval=0)
    from keel import quality
    c = quality.checks(shop, "feature_view:bonus")
    c.add_rule("plugins/quality/range.lua", column="bonus", max=-1, severity="warn")
    c.run(pd.DataFrame({"bonus": [1.0]}))
    ep.refresh()
    assert ep.stats()["issues"] == ["challenger"]     # only the challenger reads 'bonus'
    outs = ep.predict_batch([{"player_id": i} for i in range(100)])
    assert all(o["variant"] == "champion" for o in outs)
    moved = sum(o["fallback"] == "data_issue" for o in outs)
    assert 20 < moved < 80
    assert ep.stats()["data_issue"] == moved and ep.stats()["fallbacks"] == moved


# -- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a/b", "..", "a\x00b", "x" * 10_000, "", "a:b", "a@b"])
def test_endpoint_names_follow_the_model_name_rule(ws, name):
    linear(ws, "lin", ["a"], [1.0])
    with pytest.raises(keel.InvalidArgument, match="malformed"):
        ws.endpoint(name, model="lin/1", inputs=["a"])
    with pytest.raises(keel.InvalidArgument, match="malformed"):
        ws.endpoint(name)


def test_assignment_log_written_before_the_missing_columns_is_migrated(ws, tmp_path):
    import sqlite3
    linear(ws, "lin", ["a"], [1.0])
    ep = ws.endpoint("lin", model="lin/1", inputs=["a"])
    ep.predict({"a": 1.0})
    ep.flush()
    path = ws.path
    del ep, ws
    con = sqlite3.connect(f"{path}/keel.db")  # the table as the previous Keel wrote it
    con.execute("ALTER TABLE serving_assignments DROP COLUMN missing")
    con.execute("ALTER TABLE serving_assignments DROP COLUMN stale")
    con.execute("ALTER TABLE serving_assignments DROP COLUMN latency_us")
    con.execute("ALTER TABLE serving_assignments DROP COLUMN inputs")
    con.execute("DROP TABLE serving_endpoint_removals")
    con.execute("UPDATE keel_schema SET version = 1 WHERE module = 'serving'")
    con.commit()
    con.close()
    ws = keel.open(path)
    ep = ws.endpoint("lin")
    ep.predict({"a": 2.0})
    a = ep.assignments().to_pandas()
    assert list(a.missing) == ["", ""] and list(a.prediction) == [1.0, 2.0]

"""keel.autolog(): a plain fit records a run (scikit-learn, LightGBM, XGBoost), searches become parent and
children, failures of autolog never break the fit, disable=True restores everything."""

import importlib
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.model_selection._search import BaseSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import keel
import keel.workspace

autolog_module = importlib.import_module("keel.autolog")  # the module; keel.autolog is the function


@pytest.fixture
def auto(ws):
    keel.autolog(workspace=ws)
    yield ws
    keel.autolog(disable=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["age", "spend", "visits"])
    y = ((X["age"] + X["spend"]) > 0).astype(int)
    return X, y


def only_run(ws, **kw):
    assert keel.autolog_flush(timeout=60)
    runs = list(ws.runs.search(**kw))
    assert len(runs) == 1, [r.name for r in runs]
    return runs[0]


def quiet():
    return warnings.catch_warnings(record=True)


# ---- scikit-learn -------------------------------------------------------------------------------

def test_sklearn_fit_outside_a_run_creates_a_finished_run(auto, data):
    X, y = data
    model = LogisticRegression(C=0.5).fit(X, y)
    run = only_run(auto)
    assert run.status == "FINISHED" and run.name == "sklearn.LogisticRegression"
    assert run.params["C"] == "0.5" and run.params["max_iter"] == "100"
    assert run.metrics["training_time_s"] > 0
    assert run.tags["autolog.version.scikit-learn"]
    mv = auto.models.get("sklearn.LogisticRegression/1")
    assert run.tags["autolog.model"] == mv.ref and mv.flavour == "keel-native"
    assert [i["name"] for i in mv.signature["inputs"]] == ["age", "spend", "visits"]
    assert [a["path"] for a in run.artifacts()] and "model/input_example.json" in [a["path"] for a in run.artifacts()]
    predictor = auto.models.load(mv.ref)
    np.testing.assert_array_equal(predictor.predict(X), model.predict(X))


def test_a_pipeline_is_one_run_not_one_per_step(auto, data):
    X, y = data
    make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    run = only_run(auto)
    assert run.name == "sklearn.Pipeline"
    assert run.params["logisticregression__C"] == "1.0" and "standardscaler__with_mean" in run.params
    assert run.tags["autolog.model"] == "sklearn.Pipeline/1"


def test_fits_inside_an_explicit_run_add_to_it(auto, data):
    X, y = data
    with auto.start_run(experiment="churn", name="mine") as run:
        LogisticRegression(C=2.0).fit(X, y)
        assert run.refresh().status == "RUNNING"  # autolog never ends a run it did not start
        with quiet() as caught:
            LogisticRegression(C=3.0).fit(X, y)  # params are immutable: the first value stays
        assert any("C" in str(w.message) and "keeps the first" in str(w.message) for w in caught)
    run = only_run(auto)
    assert run.name == "mine" and run.status == "FINISHED"
    assert run.params["C"] == "2.0"
    assert len(auto.models.versions("sklearn.LogisticRegression")) == 2


def test_an_unconvertible_model_is_named_not_pickled(auto, data):
    X, _ = data
    KMeans(n_clusters=2, n_init=1, random_state=0).fit(X)
    run = only_run(auto)
    assert run.tags["autolog.model"].startswith("not logged: keel.convert does not support sklearn.KMeans")
    assert len(auto.models.list()) == 0


def test_log_models_false_and_registered_model_name(ws, data):
    X, y = data
    try:
        keel.autolog(workspace=ws, log_models=False)
        LinearRegression().fit(X, y)
        assert keel.autolog_flush(timeout=60) and ws.runs.search()[0].status == "FINISHED"
        assert len(ws.models.list()) == 0
        keel.autolog(workspace=ws, registered_model_name="churn", background=False)
        LinearRegression().fit(X, y)  # registered before fit returns: no flush needed
        assert ws.runs.search()[0].status == "FINISHED"
        assert ws.models.get("churn/1").ref == "churn/1"
    finally:
        keel.autolog(disable=True)


# ---- LightGBM -----------------------------------------------------------------------------------

def test_lgb_train_logs_params_metrics_with_steps_and_the_booster(auto, data):
    X, y = data
    booster = lgb.train({"objective": "binary", "learning_rate": 0.3, "verbose": -1}, lgb.Dataset(X, y), 8,
                        valid_sets=[lgb.Dataset(X, y)], valid_names=["val"])
    run = only_run(auto)
    assert run.name == "lightgbm.train" and run.params["learning_rate"] == "0.3"
    assert run.params["num_boost_round"] == "8" and run.tags["autolog.version.lightgbm"] == lgb.__version__
    hist = run.metric_history("val-binary_logloss")
    assert hist["step"].tolist() == list(range(8))
    assert hist["value"].iloc[-1] < hist["value"].iloc[0]
    predictor = auto.models.load("lightgbm.Booster/1")
    np.testing.assert_allclose(predictor.predict_raw(X).ravel(), booster.predict(X, raw_score=True), rtol=1e-6)


def test_log_every_n_iter_keeps_every_nth_step_and_the_last(ws, data):
    X, y = data
    try:
        keel.autolog(workspace=ws, log_every_n_iter=3)
        lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 11, valid_sets=[lgb.Dataset(X, y)])
    finally:
        keel.autolog(disable=True)
    assert only_run(ws).metric_history("valid_0-binary_logloss")["step"].tolist() == [0, 3, 6, 9, 10]


def test_lgbm_sklearn_api_is_one_run_with_eval_metrics(auto, data):
    X, y = data
    clf = lgb.LGBMClassifier(n_estimators=6, verbose=-1).fit(X, y, eval_X=(X,), eval_y=(y,))
    run = only_run(auto)
    assert run.name == "lightgbm.LGBMClassifier" and run.params["n_estimators"] == "6"
    assert run.metric_history("valid_0-binary_logloss")["step"].tolist() == list(range(6))
    predictor = auto.models.load("lightgbm.LGBMClassifier/1")
    np.testing.assert_array_equal(predictor.predict(X), clf.predict(X))


def test_user_callbacks_are_kept_and_not_modified(auto, data):
    X, y = data
    seen, callbacks = [], []
    callbacks.append(lambda env: seen.append(env.iteration))
    lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 4, valid_sets=[lgb.Dataset(X, y)],
              callbacks=callbacks)
    assert seen == [0, 1, 2, 3] and len(callbacks) == 1
    assert len(only_run(auto).metric_history("valid_0-binary_logloss")) == 4


# ---- XGBoost ------------------------------------------------------------------------------------

def test_xgb_train_logs_metrics_with_steps_and_the_booster(auto, data):
    X, y = data
    d = xgb.DMatrix(X, y)
    xgb.train({"objective": "binary:logistic", "max_depth": 3}, d, 5, evals=[(d, "train")], verbose_eval=False)
    run = only_run(auto)
    assert run.name == "xgboost.train" and run.params["max_depth"] == "3"
    assert run.metric_history("train-logloss")["step"].tolist() == list(range(5))
    assert run.tags["autolog.model"] == "xgboost.Booster/1"


def test_xgb_sklearn_api_is_one_run_with_eval_metrics(auto, data):
    X, _ = data
    reg = xgb.XGBRegressor(n_estimators=4, max_depth=2).fit(X, X["age"] * 2, eval_set=[(X, X["age"] * 2)],
                                                             verbose=False)
    run = only_run(auto)
    assert run.name == "xgboost.XGBRegressor" and run.params["max_depth"] == "2"
    assert run.metric_history("validation_0-rmse")["step"].tolist() == [0, 1, 2, 3]
    predictor = auto.models.load("xgboost.XGBRegressor/1")
    np.testing.assert_allclose(predictor.predict(X), reg.predict(X), rtol=1e-5)


# ---- searches -----------------------------------------------------------------------------------

@pytest.mark.parametrize("make_search", [
    lambda: GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0, 100.0]}, cv=3),
    lambda: RandomizedSearchCV(LogisticRegression(), {"C": [0.01, 0.1, 1.0, 10.0]}, n_iter=3, cv=3, random_state=0),
])
def test_a_search_is_a_parent_with_a_child_per_candidate(auto, data, make_search):
    X, y = data
    search = make_search().fit(X, y)
    assert keel.autolog_flush(timeout=60)  # the children are written on the background thread
    parents = list(auto.runs.search(filter="tags.`autolog.estimator` LIKE 'sklearn.%SearchCV%'"))
    assert len(parents) == 1
    parent = parents[0]
    children = list(parent.children())
    assert len(list(auto.runs.search())) == 1 + len(children)  # the clones and the refit made no runs
    assert len(children) == len(search.cv_results_["params"])
    best = [c for c in children if c.tags.get("autolog.best_candidate") == "true"]
    assert len(best) == 1 and parent.tags["autolog.best_run_id"] == best[0].id
    assert best[0].tags["autolog.candidate"] == str(search.best_index_)
    assert float(best[0].params["C"]) == search.best_params_["C"]
    assert best[0].metrics["mean_test_score"] == pytest.approx(search.best_score_)
    assert best[0].metrics["rank_test_score"] == 1
    assert parent.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert parent.params["best_C"] == str(search.best_params_["C"])
    assert parent.tags["autolog.model"] == "sklearn.LogisticRegression/1"


# ---- failures -----------------------------------------------------------------------------------

def test_a_failing_fit_ends_its_run_failed_and_still_raises(auto, data):
    X, _ = data
    with pytest.raises(ValueError):
        LogisticRegression().fit(X, np.full(len(X), np.nan))
    run = only_run(auto)
    assert run.status == "FAILED" and "ValueError" in run.error


def test_a_failing_fit_inside_a_run_leaves_ending_to_the_block(auto, data):
    X, _ = data
    with pytest.raises(ValueError), auto.start_run(name="mine"):
        LogisticRegression().fit(X, np.full(len(X), np.nan))
    run = only_run(auto)
    assert run.name == "mine" and run.status == "FAILED"


def test_autolog_errors_warn_once_and_never_break_the_fit(auto, data, monkeypatch):
    X, y = data

    def broken(self, *a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(keel.tracking.Run, "log_params", broken)
    monkeypatch.setattr(autolog_module, "_warned", set())
    with quiet() as caught:
        warnings.simplefilter("always")
        first = LogisticRegression()
        assert LogisticRegression.fit(first, X, y) is first
        LogisticRegression().fit(X, y)
    messages = [str(w.message) for w in caught if "keel.autolog" in str(w.message)]
    assert len(messages) == 1 and "log the fit's parameters" in messages[0] and "disk on fire" in messages[0]
    assert hasattr(first, "coef_")
    assert keel.autolog_flush(timeout=60)
    assert [r.status for r in auto.runs.search()] == ["FINISHED", "FINISHED"]


def test_no_workspace_warns_and_the_fit_still_runs(data, monkeypatch):
    X, y = data
    monkeypatch.setattr(keel.workspace, "_last_opened", None)
    monkeypatch.delenv("KEEL_WORKSPACE", raising=False)
    monkeypatch.setattr(autolog_module, "_warned", set())
    try:
        keel.autolog()
        with quiet() as caught:
            warnings.simplefilter("always")
            model = LinearRegression().fit(X, y)
    finally:
        keel.autolog(disable=True)
    assert hasattr(model, "coef_")
    assert any("KEEL_WORKSPACE" in str(w.message) for w in caught)


def test_keel_workspace_is_used_when_nothing_else_is_open(tmp_path, data, monkeypatch):
    X, y = data
    monkeypatch.setattr(keel.workspace, "_last_opened", None)
    monkeypatch.setenv("KEEL_WORKSPACE", str(tmp_path / "env.keel"))
    try:
        keel.autolog()
        LinearRegression().fit(X, y)
    finally:
        keel.autolog(disable=True)
    assert only_run(keel.open(tmp_path / "env.keel")).name == "sklearn.LinearRegression"


def test_the_last_opened_workspace_is_the_default(tmp_path, data):
    X, y = data
    keel.open(tmp_path / "first.keel")
    second = keel.open(tmp_path / "second.keel")
    try:
        keel.autolog()
        LinearRegression().fit(X, y)
    finally:
        keel.autolog(disable=True)  # waits for the background work
    assert len(list(second.runs.search())) == 1
    assert len(list(keel.open(tmp_path / "first.keel").runs.search())) == 0


def test_bad_options_are_invalid_arguments():
    with pytest.raises(keel.InvalidArgument, match="log_every_n_iter=0"):
        keel.autolog(log_every_n_iter=0)
    with pytest.raises(keel.InvalidArgument, match="expected a keel workspace"):
        keel.autolog(workspace="./somewhere")
    assert not autolog_module._patches


# ---- disable ------------------------------------------------------------------------------------

def test_disable_restores_every_patched_function_exactly(ws, data):
    X, y = data
    owners = [(LogisticRegression, "fit"), (Pipeline, "fit"), (BaseSearchCV, "fit"), (lgb, "train"),
              (lgb.engine, "train"), (lgb.sklearn, "train"), (lgb.LGBMClassifier, "fit"), (lgb.LGBMModel, "fit"),
              (xgb, "train"), (xgb.training, "train"), (xgb.sklearn, "train"), (xgb.XGBClassifier, "fit")]
    before = [vars(o)[a] if isinstance(o, type) else getattr(o, a) for o, a in owners]
    keel.autolog(workspace=ws)
    during = [vars(o)[a] if isinstance(o, type) else getattr(o, a) for o, a in owners]
    assert all(d is not b for d, b in zip(during, before))
    keel.autolog(workspace=ws)  # enabling twice does not wrap twice
    assert [vars(o)[a] if isinstance(o, type) else getattr(o, a) for o, a in owners] == during
    keel.autolog(disable=True)
    after = [vars(o)[a] if isinstance(o, type) else getattr(o, a) for o, a in owners]
    assert all(a is b for a, b in zip(after, before))
    LogisticRegression().fit(X, y)
    assert len(list(ws.runs.search())) == 0


# ---- lineage ------------------------------------------------------------------------------------

def make_training_set(auto):
    fs = auto.features
    fs.entity("player", join_keys=["player_id"])
    fv = fs.feature_view("activity", entities=["player"], ttl="30d", schema={"sessions": "int64", "spend": "float64"})
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    ids = np.arange(40)
    fv.ingest(pd.DataFrame({"player_id": ids, "event_timestamp": [t0] * 40, "sessions": ids % 7,
                            "spend": ids * 1.5}))
    labels = pd.DataFrame({"player_id": ids, "event_timestamp": [t0 + pd.Timedelta(days=1)] * 40,
                           "label": (ids % 2).astype(int)})
    return fs.training_set(labels, features=["activity:sessions", "activity:spend"])


def test_a_training_set_frame_records_the_consumed_edge(auto):
    ts = make_training_set(auto)
    df = ts.to_pandas()
    X = df[["sessions", "spend"]]  # column selection keeps the training set's mark
    LogisticRegression().fit(X, df["label"])
    run = only_run(auto)
    assert ts.lineage_ref in auto.lineage.upstream(f"run:{run.id}").refs


def test_a_failing_model_conversion_warns_and_still_ends_the_run(auto, data, monkeypatch):
    X, y = data

    def broken(model, feature_names=None):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(keel.inference, "convert", broken)
    monkeypatch.setattr(autolog_module, "_warned", set())
    with quiet() as caught:
        warnings.simplefilter("always")
        model = LinearRegression().fit(X, y)
        run = only_run(auto)  # waits for the background thread, where the model is logged
    assert hasattr(model, "coef_") and run.status == "FINISHED" and "training_time_s" in run.metrics
    assert any("log the model" in str(w.message) and "converter exploded" in str(w.message) for w in caught)
    assert len(auto.models.list()) == 0


def test_a_broken_metrics_callback_never_breaks_the_nested_train(auto, data, monkeypatch):
    X, y = data

    def broken(*a, **k):
        raise RuntimeError("no callbacks today")

    monkeypatch.setattr(autolog_module._LightGBMTrainSession, "add_callback", staticmethod(broken))
    monkeypatch.setattr(autolog_module, "_warned", set())
    with quiet() as caught:
        warnings.simplefilter("always")
        clf = lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y, eval_X=(X,), eval_y=(y,))
    assert clf.booster_.num_trees() == 3
    assert any("add the metrics callback" in str(w.message) for w in caught)
    assert only_run(auto).status == "FINISHED"


def test_a_training_set_inside_an_lgb_dataset_records_the_consumed_edge(auto):
    ts = make_training_set(auto)
    df = ts.to_pandas()
    lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 2},
              lgb.Dataset(df.drop(columns=["player_id", "event_timestamp", "label"]), df["label"]), 3)
    run = only_run(auto)
    assert ts.lineage_ref in auto.lineage.upstream(f"run:{run.id}").refs


def test_a_pipelines_inner_booster_reports_its_metrics_to_the_pipeline_run(auto, data):
    X, y = data
    make_pipeline(StandardScaler(), lgb.LGBMClassifier(n_estimators=4, verbose=-1)).fit(
        X, y, lgbmclassifier__eval_X=(X,), lgbmclassifier__eval_y=(y,))
    run = only_run(auto)
    assert run.name == "sklearn.Pipeline" and run.tags["autolog.version.lightgbm"] == lgb.__version__
    assert run.metric_history("valid_0-binary_logloss")["step"].tolist() == [0, 1, 2, 3]

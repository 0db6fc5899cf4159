"""The model record's keys come from the core (record_keys.hpp via keel._core.model_keys): every key
an importer writes is one the core declares, and the core reads what the constants name."""

import re

import numpy as np
import pytest

import keel
from keel import _core
from keel.inference import FactorizationModel, convert

K = _core.model_keys
lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler  # noqa: E402


def declared() -> dict[str, str]:
    return {name: value for name, value in vars(K).items() if name.isupper()}


def key_pattern() -> re.Pattern:
    """Every declared key, templates ("mlp.{}.bias", "pre.{}.{}." + block field) as patterns."""
    values = declared()
    block_fields = [v for n, v in values.items() if n.startswith("BLOCK_")]
    alternatives = []
    for name, value in values.items():
        if name.startswith(("BLOCK_", "META_")):
            continue
        alternatives.append(re.escape(value).replace(r"\{\}", r"\d+"))
    block = re.escape(K.PRE_BLOCK).replace(r"\{\}", r"\d+")
    alternatives.append(block + "(?:" + "|".join(map(re.escape, block_fields)) + ")")
    return re.compile("^(?:" + "|".join(alternatives) + ")$")


def test_the_constants_are_the_record_keys():
    keys = declared()
    assert K.FEATURE_NAMES == "features.names" and K.MODEL_KIND == "model.kind" and K.TASK == "task"
    assert K.MLP_LAYER_WEIGHTS.format(2) == "mlp.2.weights" and K.PRE_BLOCK.format(0, 1) == "pre.0.1."
    record_keys = [v for n, v in keys.items() if not n.startswith(("META_", "BLOCK_"))]
    assert len(set(record_keys)) == len(record_keys), "two constants name the same key"


@pytest.mark.parametrize("make", [
    lambda X, y: LogisticRegression().fit(X, y),
    lambda X, y: MLPRegressor(hidden_layer_sizes=(4,), max_iter=500).fit(X, y),
    lambda X, y: RandomForestClassifier(n_estimators=3, max_depth=3).fit(X, y),
    lambda X, y: lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y),
    lambda X, y: xgb.XGBClassifier(n_estimators=3).fit(X, y),
    lambda X, y: make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
    lambda X, y: make_pipeline(ColumnTransformer([("oh", OneHotEncoder(handle_unknown="ignore"), [0]),
                                                  ("ord", OrdinalEncoder(), [1]), ("sc", StandardScaler(), [2])]),
                               LogisticRegression()).fit(np.round(X), y),
], ids=["logistic", "mlp", "forest", "lightgbm", "xgboost", "pipeline", "column_transformer"])
def test_every_key_an_importer_writes_is_declared_by_the_core(make):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    record = convert(make(X, y)).native.record()
    pattern = key_pattern()
    assert [k for k in record if not pattern.match(k)] == []
    assert len(record[K.FEATURE_NAMES]) == len(record[K.FEATURE_DTYPES]) == 3


def test_factorization_records_use_the_declared_keys():
    p = FactorizationModel(np.ones((2, 3)), np.ones((4, 3)), user_ids=["u", "v"])
    record = p.native.record()
    assert [k for k in record if not key_pattern().match(k)] == []
    assert int(record[K.MF_DIM][0]) == 3 and p.recommend("u", k=2)[0].shape == (2,)


def test_the_core_names_a_missing_key_by_its_constant():
    rec = {K.TASK: "regression", K.MODEL_KIND: "linear", K.FEATURE_NAMES: ["a"], K.FEATURE_DTYPES: ["float64"],
           K.LINEAR_COEF: np.array([2.0])}
    with pytest.raises(keel.InvalidArgument, match=re.escape(f"lacks the key '{K.LINEAR_INTERCEPT}'")):
        _core.NativePredictor(rec)
    rec[K.LINEAR_INTERCEPT] = np.array([1.0])
    assert _core.NativePredictor(rec).predict(np.array([[3.0]]))[0, 0] == 7.0

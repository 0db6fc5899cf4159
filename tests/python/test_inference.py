"""Native inference: Keel's predictors match scikit-learn, LightGBM and XGBoost on random data and
random hyper-parameters (seeded loops), including NaN inputs and categorical features."""

import pickle
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (ExtraTreesClassifier, ExtraTreesRegressor, GradientBoostingClassifier,
                              GradientBoostingRegressor, HistGradientBoostingClassifier,
                              HistGradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor)
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import keel
from keel.inference import FactorizationModel, convert, load_predictor, native_flavour

warnings.filterwarnings("ignore")

RTOL64 = 1e-6
RTOL32 = 1e-5


def assert_close(expected, actual, rtol=RTOL64, atol=1e-12):
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    assert expected.shape == actual.shape, (expected.shape, actual.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def data(rng, n=300, d=None, nan=0.0, classes=0):
    d = d or int(rng.integers(2, 9))
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 5, size=d)
    signal = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, -1] ** 2 + rng.normal(scale=0.3, size=n)
    if classes:
        y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    else:
        y = signal
    if nan:
        X = X.copy()
        X[rng.random(X.shape) < nan] = np.nan
    return X, y


def check(model, X, proba=None, rtol=RTOL64, atol=1e-12):
    p = convert(model)
    if proba is None:
        proba = hasattr(model, "predict_proba")
    if proba:
        assert_close(model.predict_proba(X), p.predict_proba(X), rtol, atol)
        np.testing.assert_array_equal(p.predict(X), model.predict(X))
    else:
        assert_close(model.predict(X), p.predict(X), rtol, atol)
    if isinstance(X, np.ndarray):  # one row at a time takes the single-row walks, not the batch lanes
        for i in range(min(4, len(X))):
            if proba:
                assert_close(model.predict_proba(X[i:i + 1])[0], p.predict_proba(X[i]), rtol, atol)
            else:
                assert_close(np.ravel(model.predict(X[i:i + 1])), np.ravel(p.predict(X[i])), rtol, atol)
    return p


# ---- linear and MLP ---------------------------------------------------------------------------------


def test_linear_models_match_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(6):
        X, y = data(rng)
        for model in (LinearRegression(), Ridge(alpha=rng.uniform(0.01, 10)), Lasso(alpha=rng.uniform(0.001, 0.1)),
                      ElasticNet(alpha=rng.uniform(0.001, 0.1), l1_ratio=rng.uniform(0.1, 0.9))):
            check(model.fit(X, y), X)
        Y = np.column_stack([y, -2 * y + 1])
        check(Ridge().fit(X, Y), X)


def test_logistic_regression_binary_and_multiclass():
    rng = np.random.default_rng(2)
    for i in range(6):
        n_classes = int(rng.integers(2, 5))
        X, y = data(rng, classes=n_classes)
        labels = np.array(["bronze", "silver", "gold", "platinum"])[y]
        check(LogisticRegression(C=rng.uniform(0.1, 10), fit_intercept=bool(i % 2)).fit(X, labels), X)
    X, y = data(rng, classes=3)
    from sklearn.multiclass import OneVsRestClassifier
    check(OneVsRestClassifier(LogisticRegression()).fit(X, y), X)  # one-vs-rest, normalized


def test_mlp_all_activations():
    rng = np.random.default_rng(3)
    for activation in ("identity", "logistic", "tanh", "relu"):
        X, y = data(rng)
        layers = tuple(int(h) for h in rng.integers(2, 12, size=rng.integers(1, 4)))
        check(MLPRegressor(hidden_layer_sizes=layers, activation=activation, max_iter=50, random_state=0).fit(X, y), X)
        for n_classes in (2, 3):
            Xc, yc = data(rng, classes=n_classes)
            check(MLPClassifier(layers, activation=activation, max_iter=50, random_state=0).fit(Xc, yc), Xc)
    # float32 training keeps float32 weights: 1e-5.
    X, y = data(rng)
    X32 = X.astype(np.float32)
    m = MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, random_state=0).fit(X32, y.astype(np.float32))
    assert_close(m.predict(X32), convert(m).predict(X32), RTOL32, 1e-5)


# ---- scikit-learn trees -----------------------------------------------------------------------------


def test_sklearn_trees_and_forests_with_nan():
    rng = np.random.default_rng(4)
    for i in range(4):
        nan = 0.15 if i % 2 else 0.0
        X, y = data(rng, nan=nan)
        Xc, yc = data(rng, nan=nan, classes=int(rng.integers(2, 5)))
        depth = int(rng.integers(2, 12))
        n = int(rng.integers(3, 25))
        check(DecisionTreeRegressor(max_depth=depth, random_state=i).fit(X, y), X)
        check(DecisionTreeClassifier(max_depth=depth, random_state=i).fit(Xc, yc), Xc)
        check(RandomForestRegressor(n, max_depth=depth, random_state=i).fit(X, y), X)
        check(RandomForestClassifier(n, max_depth=depth, random_state=i).fit(Xc, yc), Xc)
        check(ExtraTreesRegressor(n, max_depth=depth, random_state=i).fit(X, y), X)
        check(ExtraTreesClassifier(n, max_depth=depth, random_state=i).fit(Xc, yc), Xc)
        # Values unseen in training land on the same leaves: fresh data, with and without NaN.
        Xt, _ = data(rng, d=X.shape[1], nan=0.2)
        m = RandomForestRegressor(n, max_depth=depth, random_state=i).fit(X, y)
        check(m, Xt)


def test_sklearn_gradient_boosting():
    rng = np.random.default_rng(5)
    for i in range(4):
        X, y = data(rng)
        kw = dict(n_estimators=int(rng.integers(1, 40)), max_depth=int(rng.integers(1, 6)),
                  learning_rate=float(rng.uniform(0.02, 0.5)), random_state=i)
        check(GradientBoostingRegressor(loss=["squared_error", "absolute_error", "huber", "quantile"][i], **kw)
              .fit(X, y), X)
        Xc, yc = data(rng, classes=2 + i % 3)
        check(GradientBoostingClassifier(**kw).fit(Xc, yc), Xc)
    Xc, yc = data(rng, classes=2)
    check(GradientBoostingClassifier(loss="exponential", n_estimators=10).fit(Xc, yc), Xc)
    check(GradientBoostingClassifier(init="zero", n_estimators=10).fit(Xc, yc), Xc)


def test_hist_gradient_boosting_nan_and_categorical():
    rng = np.random.default_rng(6)
    for i in range(4):
        X, y = data(rng, nan=0.1 * (i % 2))
        kw = dict(max_iter=int(rng.integers(1, 30)), max_depth=int(rng.integers(2, 8)),
                  learning_rate=float(rng.uniform(0.05, 0.5)), random_state=i)
        check(HistGradientBoostingRegressor(**kw).fit(X, y), X)
        check(HistGradientBoostingRegressor(loss="poisson", **kw).fit(X, np.exp(y / 10)), X)
        Xc, yc = data(rng, nan=0.1, classes=2 + i % 3)
        check(HistGradientBoostingClassifier(**kw).fit(Xc, yc), Xc)
    # Integer-coded categories, NaN and categories unseen in training.
    n = 600
    cat = rng.integers(0, 12, size=n).astype(float)
    X = np.column_stack([cat, rng.normal(size=n)])
    y = np.where(np.isin(cat, [1, 4, 7]), 2.0, -1.0) + X[:, 1]
    X[rng.random(n) < 0.1, 0] = np.nan
    m = HistGradientBoostingRegressor(categorical_features=[0], max_iter=20).fit(X, y)
    Xt = X.copy()
    Xt[:50, 0] = rng.integers(12, 40, size=50)  # unknown categories follow missing values
    Xt[50:60, 0] = -3
    check(m, Xt)


# ---- LightGBM ---------------------------------------------------------------------------------------


def test_lightgbm_objectives_missing_types_and_categories():
    rng = np.random.default_rng(7)
    for i in range(5):
        X, y = data(rng, nan=0.1 if i % 2 else 0.0)
        X[rng.random(X.shape) < 0.1] = 0.0
        kw = dict(n_estimators=int(rng.integers(1, 40)), num_leaves=int(rng.integers(2, 40)),
                  learning_rate=float(rng.uniform(0.05, 0.3)), verbose=-1, random_state=i,
                  zero_as_missing=bool(i == 3), use_missing=bool(i != 4))
        check(lgb.LGBMRegressor(**kw).fit(X, y), X)
        Xc, yc = data(rng, nan=0.1, classes=2 + i % 3)
        check(lgb.LGBMClassifier(**kw).fit(Xc, yc), Xc)
    X, y = data(rng)
    check(lgb.LGBMRegressor(objective="poisson", n_estimators=10, verbose=-1).fit(X, np.exp(y / 5)), X)
    check(lgb.LGBMRegressor(boosting_type="rf", bagging_freq=1, bagging_fraction=0.7, n_estimators=10,
                            verbose=-1).fit(X, y), X)
    Xc, yc = data(rng, classes=3)
    m = lgb.LGBMClassifier(objective="multiclassova", n_estimators=10, verbose=-1).fit(Xc, yc)
    assert_close(m.booster_.predict(Xc), convert(m).predict_proba(Xc))
    # A raw Booster: predict_proba's positive column is the booster's prediction.
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(Xc, (yc > 0).astype(int)), 10)
    assert_close(booster.predict(Xc), convert(booster).predict_proba(Xc)[:, 1])


def test_lightgbm_categorical_splits():
    rng = np.random.default_rng(8)
    n = 800
    for trial in range(3):
        cat = rng.integers(0, 40, size=n)
        X = np.column_stack([cat, rng.normal(size=n), rng.integers(0, 5, size=n)]).astype(float)
        y = np.isin(cat, rng.choice(40, 12, replace=False)).astype(float) * 3 + X[:, 1] + X[:, 2]
        X[rng.random(n) < 0.05, 0] = np.nan
        m = lgb.LGBMRegressor(n_estimators=20, verbose=-1, min_data_per_group=5, cat_smooth=1,
                              max_cat_to_onehot=4 if trial else 64).fit(X, y, categorical_feature=[0, 2])
        Xt = X.copy()
        Xt[:20, 0] = rng.integers(40, 100, size=20)  # unseen categories
        Xt[20:30, 0] = -1
        check(m, Xt)
    # pandas category columns: values matched by label through the booster's pandas_categorical.
    df = pd.DataFrame({"genre": pd.Categorical(rng.choice(["rpg", "fps", "moba", "puzzle"], size=n)),
                       "hours": rng.exponential(5, size=n)})
    y = (df["genre"].isin(["rpg", "moba"])).astype(int) ^ (df["hours"] > 5).astype(int)
    m = lgb.LGBMClassifier(n_estimators=20, verbose=-1, min_data_per_group=5).fit(df, y)
    p = convert(m)
    shuffled = df.sample(frac=1.0, random_state=0)[["hours", "genre"]]
    expected = m.predict_proba(df.loc[shuffled.index])  # LightGBM reads columns by position
    assert_close(expected, p.predict_proba(shuffled))
    # Categories in another order in the frame: labels, not codes, decide.
    reordered = shuffled.assign(genre=shuffled["genre"].cat.reorder_categories(["puzzle", "rpg", "moba", "fps"]))
    assert_close(expected, p.predict_proba(reordered))
    assert p.predict({"genre": "rpg", "hours": 1.0}) == m.predict(df.iloc[[0]].assign(
        genre=pd.Categorical(["rpg"], categories=df["genre"].cat.categories), hours=1.0))[0]


# ---- XGBoost ----------------------------------------------------------------------------------------


def test_xgboost_objectives_and_missing():
    rng = np.random.default_rng(9)
    for i in range(4):
        X, y = data(rng, nan=0.1 if i % 2 else 0.0)
        kw = dict(n_estimators=int(rng.integers(1, 40)), max_depth=int(rng.integers(1, 7)),
                  learning_rate=float(rng.uniform(0.05, 0.5)), random_state=i)
        check(xgb.XGBRegressor(**kw).fit(X, y), X, rtol=RTOL32, atol=1e-5)
        Xc, yc = data(rng, nan=0.1, classes=2 + i % 3)
        check(xgb.XGBClassifier(**kw).fit(Xc, yc), Xc, rtol=RTOL32, atol=1e-6)
    X, y = data(rng)
    check(xgb.XGBRegressor(objective="count:poisson", n_estimators=10).fit(X, np.exp(y / 5)), X, rtol=RTOL32)
    check(xgb.XGBRegressor(booster="dart", n_estimators=10, rate_drop=0.3).fit(X, y), X, rtol=RTOL32, atol=1e-5)
    # A raw Booster from xgb.train, and a margin comparison.
    Xc, yc = data(rng, nan=0.1, classes=2)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4}, xgb.DMatrix(Xc, yc), 15)
    p = convert(booster)
    assert_close(booster.predict(xgb.DMatrix(Xc), output_margin=True), p.predict_raw(Xc)[:, 0], RTOL32, 1e-5)
    assert_close(booster.predict(xgb.DMatrix(Xc)), p.predict_proba(Xc)[:, 1], RTOL32, 1e-6)


def test_xgboost_categorical_splits():
    rng = np.random.default_rng(16)
    n = 2000
    cat = rng.integers(0, 20, size=n).astype(float)
    X = np.column_stack([cat, rng.normal(size=n)])
    y = np.isin(cat, [1, 3, 5, 7, 11]).astype(float) * 2 + X[:, 1]
    X[rng.random(n) < 0.05, 0] = np.nan
    kw = dict(feature_types=["c", "q"], enable_categorical=True)
    booster = xgb.train({"max_depth": 4, "max_cat_to_onehot": 1}, xgb.DMatrix(X, y, **kw), 20)
    Xt = X.copy()
    Xt[:20, 0] = rng.integers(20, 40, size=20)  # unseen categories
    Xt[20:25, 0] = -1
    assert_close(booster.predict(xgb.DMatrix(Xt, **kw)), convert(booster).predict(Xt), RTOL32, 1e-5)


# ---- pipelines --------------------------------------------------------------------------------------


def test_pipelines_with_scaling_and_encoders():
    rng = np.random.default_rng(10)
    n = 400
    df = pd.DataFrame({"platform": rng.choice(["pc", "ps5", "xbox", "switch"], size=n),
                       "region": rng.choice(["eu", "na", "apac"], size=n),
                       "level": rng.integers(1, 60, size=n).astype(float),
                       "spend": rng.exponential(20, size=n)})
    y = ((df["platform"] == "pc") ^ (df["spend"] > 20)).astype(int)
    ct = ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="ignore"), ["platform"]),
                            ("ordinal", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                             ["region"]),
                            ("scale", StandardScaler(), ["spend"])], remainder="passthrough")
    for est in (LogisticRegression(), MLPClassifier((8,), max_iter=100, random_state=0),
                RandomForestClassifier(10, random_state=0)):
        pipe = make_pipeline(ct, est).fit(df, y)
        p = convert(pipe)
        assert [d for _, d in p.signature] == ["string", "string", "float64", "float64"]
        check(pipe, df)
        # Columns matched by name, unknown labels handled as the encoders were told.
        test = df.iloc[:30][["spend", "level", "region", "platform"]].copy()
        test.iloc[:5, 3] = "stadia"
        test.iloc[5:8, 2] = "mars"
        assert_close(pipe.predict_proba(test), p.predict_proba(test))
    pipe = make_pipeline(StandardScaler(), Ridge()).fit(df[["level", "spend"]], df["spend"])
    check(pipe, df[["level", "spend"]])
    X = rng.integers(0, 4, size=(200, 3)).astype(float)
    pipe = make_pipeline(OneHotEncoder(drop="first"), LinearRegression()).fit(X, X @ [1.0, 2.0, 3.0])
    check(pipe, X)
    strict = make_pipeline(OneHotEncoder(), LinearRegression()).fit(X, X @ [1.0, 2.0, 3.0])
    with pytest.raises(keel.InvalidArgument, match="unseen in training"):
        convert(strict).predict(np.array([[9.0, 0.0, 0.0]]))


# ---- API: inputs, pickling, format, errors ---------------------------------------------------------


def test_inputs_rows_dicts_float32_and_threads():
    rng = np.random.default_rng(11)
    X, y = data(rng, n=5000, d=4, classes=3)
    m = lgb.LGBMClassifier(n_estimators=30, verbose=-1).fit(pd.DataFrame(X, columns=list("abcd")), y)
    p = convert(m)
    assert p.feature_names == list("abcd")
    expected = m.predict_proba(X)
    assert_close(expected, p.predict_proba(X, threads=1))
    assert_close(expected, p.predict_proba(X, threads=2))
    assert_close(expected, p.predict_proba(np.asfortranarray(X)))
    assert_close(m.predict_proba(X.astype(np.float32)), p.predict_proba(X.astype(np.float32)))
    assert_close(expected[0], p.predict_proba(X[0]))
    assert_close(expected[0], p.predict_proba(dict(zip("abcd", X[0]))))
    assert p.predict(X[1]) == m.predict(X[1:2])[0]
    with pytest.raises(keel.InvalidArgument, match="lacks the column"):
        p.predict(pd.DataFrame(X[:, :3], columns=list("abc")))
    with pytest.raises(keel.InvalidArgument, match="3 columns but the model reads 4"):
        p.predict(X[:, :3])
    regressor = convert(LinearRegression().fit(X, y))
    assert not hasattr(regressor, "predict_proba")
    with pytest.raises(AttributeError, match="predict_proba needs a classifier"):
        regressor.predict_proba(X)


def test_pickle_bytes_and_corruption():
    rng = np.random.default_rng(12)
    X, y = data(rng, nan=0.1, classes=2)
    m = xgb.XGBClassifier(n_estimators=10).fit(X, y)
    p = convert(m)
    q = pickle.loads(pickle.dumps(p))
    assert_close(p.predict_proba(X), q.predict_proba(X), 0, 0)
    raw = p.to_bytes()
    assert raw[:8] == b"KEELPRED"
    assert_close(p.predict_proba(X), load_predictor(raw).predict_proba(X), 0, 0)
    with pytest.raises(keel.Corrupt, match="truncated"):
        load_predictor(raw[:-10])
    tampered = bytearray(raw)
    tampered[len(raw) // 2] ^= 1
    with pytest.raises(keel.Corrupt, match="checksum mismatch"):
        load_predictor(bytes(tampered))
    future = bytearray(raw)
    future[8] = 99
    with pytest.raises(keel.Corrupt, match="version 99"):
        load_predictor(bytes(future))


def test_unsupported_models_name_themselves():
    from sklearn.svm import SVC
    rng = np.random.default_rng(13)
    X, y = data(rng, classes=2)
    with pytest.raises(keel.InvalidArgument, match=r"sklearn\.SVC"):
        convert(SVC().fit(X, y))
    with pytest.raises(keel.InvalidArgument, match="linear trees"):
        convert(lgb.LGBMRegressor(linear_tree=True, n_estimators=3, verbose=-1).fit(X, y))
    with pytest.raises(keel.InvalidArgument, match="multi-label"):
        convert(MLPClassifier((4,), max_iter=5).fit(X, np.column_stack([y, 1 - y])))
    assert native_flavour(SVC().fit(X, y)) is None
    assert native_flavour(object()) is None


def test_native_flavour_for_the_registry():
    rng = np.random.default_rng(14)
    X, y = data(rng, classes=2)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    m = RandomForestClassifier(5, random_state=0).fit(df, y)
    flavour, raw, signature = native_flavour(m)
    assert flavour == "keel-native"
    assert signature["inputs"][0] == {"name": "f0", "dtype": "float64"}
    assert signature["task"] == "classification" and signature["classes"] == [0, 1]
    assert_close(m.predict_proba(df), load_predictor(raw).predict_proba(df))
    assert native_flavour(load_predictor(raw))[1] == raw


# ---- recommender ------------------------------------------------------------------------------------


def test_factorization_recommend_excludes_owned_items():
    rng = np.random.default_rng(15)
    n_users, n_items, d = 50, 200, 8
    U, V = rng.normal(size=(n_users, d)), rng.normal(size=(n_items, d))
    ub, ib = rng.normal(size=n_users), rng.normal(size=n_items)
    user_ids = [f"player{i}" for i in range(n_users)]
    item_ids = np.arange(1000, 1000 + n_items)
    p = FactorizationModel(U, V, user_bias=ub, item_bias=ib, global_bias=0.5, user_ids=user_ids, item_ids=item_ids)
    owned = {u: rng.choice(item_ids, size=int(rng.integers(0, 30)), replace=False) for u in user_ids}
    items, scores = p.recommend(user_ids, k=10, exclude=owned)
    full = 0.5 + ub[:, None] + ib[None, :] + U @ V.T
    for i, u in enumerate(user_ids):
        s = full[i].copy()
        s[np.isin(item_ids, owned[u])] = -np.inf
        best = np.argsort(-s, kind="stable")[:10]
        np.testing.assert_array_equal(items[i], item_ids[best])
        assert_close(s[best], scores[i])
        assert not set(items[i]) & set(owned[u])
    assert_close(full[3, 7], p.score(["player3"], [1007])[0])
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(q.recommend("player1", k=5)[0], p.recommend("player1", k=5)[0])
    # k is capped at the item count; fewer candidates than that leave -1 / NaN.
    small = FactorizationModel(U[:2], V[:3])
    items, scores = small.recommend([0], k=5, exclude=[[0]])
    assert list(items[0]) == [int(x) for x in items[0][:2]] + [-1]
    assert np.isnan(scores[0][2:]).all()
    with pytest.raises(keel.InvalidArgument, match="unknown user id 'nobody'"):
        p.recommend(["nobody"], k=3)
    with pytest.raises(keel.InvalidArgument, match="needs a factorization model"):
        convert(LinearRegression().fit(U, ub)).recommend([0])

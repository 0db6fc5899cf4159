"""scikit-learn importer: preprocessing steps (StandardScaler, OneHotEncoder, OrdinalEncoder,
ColumnTransformer) and estimators (linear and logistic models, MLPs, decision trees and forests,
(hist) gradient boosting) read into a model record."""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.inference._common import K, TreeBuilder, is_missing, plain, qualname, unsupported

# Classes whose fitted state is coef_ / intercept_ of a regression.
_LINEAR_REGRESSORS = ("LinearRegression", "Ridge", "Lasso", "ElasticNet", "LassoLars", "Lars", "BayesianRidge",
                      "ARDRegression", "HuberRegressor", "SGDRegressor", "RidgeCV", "LassoCV", "ElasticNetCV",
                      "LinearSVR", "TheilSenRegressor")
_TREES = ("DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor",
          "RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor")


def add_estimator(rec: dict, meta: dict, est: Any, width: int) -> None:
    """Writes a fitted scikit-learn estimator into the record (its preprocessing is already there)."""
    cls = type(est).__name__
    if cls in _LINEAR_REGRESSORS:
        return _add_linear_regressor(rec, est, width)
    if cls in ("LogisticRegression", "LogisticRegressionCV"):
        return _add_logistic(rec, meta, est, width)
    if cls == "OneVsRestClassifier":
        return _add_one_vs_rest(rec, meta, est, width)
    if cls in ("MLPClassifier", "MLPRegressor"):
        return _add_mlp(rec, meta, est, width)
    if cls in _TREES:
        return _add_sklearn_forest(rec, meta, est, width)
    if cls in ("GradientBoostingClassifier", "GradientBoostingRegressor"):
        return _add_sklearn_gb(rec, meta, est, width)
    if cls in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        return _add_sklearn_hgb(rec, meta, est, width)
    raise unsupported(est)


# -- preprocessing steps


def add_stage(rec: dict, stage: int, step: Any, width: int, names: list[str] | None, dtypes: list[str],
               vocab: dict) -> int:
    """Adds preprocessing stage `stage` for `step` reading `width` columns; returns its output width."""
    qn = qualname(step)
    blocks: list[tuple[str, Any, list[int]]] = []
    if qn == "sklearn.ColumnTransformer":
        mapping = getattr(step, "_transformer_to_input_indices", None)
        if mapping is None:
            raise unsupported(step, "this scikit-learn version does not expose its column mapping")
        for name, trans, _cols in step.transformers_:
            cols = [int(c) for c in mapping.get(name, [])]
            if trans == "drop" or not cols:
                continue
            if trans == "passthrough" or _is_identity(trans):
                blocks.append(("passthrough", None, cols))
            elif qualname(trans) in ("sklearn.StandardScaler", "sklearn.OneHotEncoder", "sklearn.OrdinalEncoder"):
                blocks.append((qualname(trans), trans, cols))
            else:
                raise unsupported(trans, f"inside ColumnTransformer (transformer '{name}')")
    elif qn in ("sklearn.StandardScaler", "sklearn.OneHotEncoder", "sklearn.OrdinalEncoder"):
        blocks.append((qn, step, list(range(width))))
    else:
        raise unsupported(step, "as a Pipeline step")
    out = 0
    for j, (kind, trans, cols) in enumerate(blocks):
        p = K.PRE_BLOCK.format(stage, j)
        rec[p + K.BLOCK_COLUMNS] = np.asarray(cols, dtype=np.int64)
        if kind == "passthrough":
            rec[p + K.BLOCK_KIND] = "passthrough"
            out += len(cols)
        elif kind == "sklearn.StandardScaler":
            rec[p + K.BLOCK_KIND] = "scale"
            mean = trans.mean_ if getattr(trans, "mean_", None) is not None and trans.with_mean else np.zeros(len(cols))
            scale = trans.scale_ if getattr(trans, "scale_", None) is not None else np.ones(len(cols))
            rec[p + K.BLOCK_MEAN] = np.asarray(mean, dtype=np.float64)
            rec[p + K.BLOCK_SCALE] = np.asarray(scale, dtype=np.float64)
            out += len(cols)
        else:
            cats, offsets = _encoder_categories(trans, cols, names, dtypes, vocab, stage)
            rec[p + K.BLOCK_CATEGORIES] = cats
            rec[p + K.BLOCK_OFFSETS] = offsets
            if kind == "sklearn.OneHotEncoder":
                infrequent = getattr(trans, "infrequent_categories_", None)
                if infrequent is not None and any(x is not None for x in infrequent):
                    raise unsupported("OneHotEncoder with infrequent categories (min_frequency / max_categories)")
                if trans.handle_unknown not in ("error", "ignore", "infrequent_if_exist"):
                    raise unsupported(f"OneHotEncoder(handle_unknown={trans.handle_unknown!r})")
                rec[p + K.BLOCK_KIND] = "onehot"
                rec[p + K.BLOCK_HANDLE_UNKNOWN] = "error" if trans.handle_unknown == "error" else "ignore"
                drop = getattr(trans, "drop_idx_", None)
                drops = [-1 if drop is None or drop[c] is None else int(drop[c]) for c in range(len(cols))]
                rec[p + K.BLOCK_DROP] = np.asarray(drops, dtype=np.int64)
                out += sum(len(trans.categories_[c]) - (1 if drops[c] >= 0 else 0) for c in range(len(cols)))
            else:
                rec[p + K.BLOCK_KIND] = "ordinal"
                if trans.handle_unknown == "use_encoded_value":
                    rec[p + K.BLOCK_HANDLE_UNKNOWN] = "use_encoded_value"
                    rec[p + K.BLOCK_UNKNOWN_VALUE] = float(trans.unknown_value)
                else:
                    rec[p + K.BLOCK_HANDLE_UNKNOWN] = "error"
                rec[p + K.BLOCK_MISSING_VALUE] = float(trans.encoded_missing_value)
                if getattr(trans, "infrequent_categories_", None) is not None and any(
                        x is not None for x in trans.infrequent_categories_):
                    raise unsupported("OrdinalEncoder with infrequent categories (min_frequency / max_categories)")
                out += len(cols)
    rec[K.PRE_STAGE_BLOCKS.format(stage)] = len(blocks)
    return out


def _is_identity(trans: Any) -> bool:
    """FunctionTransformer() (a passthrough remainder) or HistGradientBoosting's check_array step."""
    if qualname(trans) != "sklearn.FunctionTransformer":
        return False
    func = trans.func
    return func is None or getattr(getattr(func, "func", None), "__name__", "") == "check_array"


def _encoder_categories(trans: Any, cols: list[int], names: list[str] | None, dtypes: list[str], vocab: dict,
                        stage: int) -> tuple[np.ndarray, np.ndarray]:
    values: list[float] = []
    offsets = [0]
    for c, cats in enumerate(trans.categories_):
        cats = list(cats)
        if np.asarray(cats).dtype.kind in "fiub":
            values.extend(float(v) for v in cats)
        else:
            # Label categories: the predictor maps labels to positions before the native code runs,
            # which is only possible where the encoder reads the model's own input columns.
            if names is None:
                raise unsupported("an encoder of string categories after another preprocessing step")
            col = cols[c]
            labels = [v for v in cats if not is_missing(v)]
            nan_code = float(len(labels)) if len(labels) < len(cats) else None
            vocab[names[col]] = {"labels": [plain(v) for v in labels], "unknown": "minus_one", "nan_code": nan_code}
            dtypes[col] = "string"
            codes = [float(i) for i in range(len(labels))]
            if nan_code is not None:
                codes.append(float("nan"))
            values.extend(codes)
        offsets.append(len(values))
    return np.asarray(values, dtype=np.float64), np.asarray(offsets, dtype=np.int64)


# -- estimators


def _add_linear_regressor(rec: dict, est: Any, width: int) -> None:
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    if intercept.size == 1 and coef.shape[0] > 1:
        intercept = np.repeat(intercept, coef.shape[0])
    rec.update({K.TASK: "regression", K.MODEL_KIND: "linear", K.LINEAR_COEF: coef.ravel(),
                K.LINEAR_INTERCEPT: intercept, K.OUTPUT_TRANSFORM: "identity"})


def _add_logistic(rec: dict, meta: dict, est: Any, width: int) -> None:
    coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    classes = est.classes_
    meta[K.META_CLASSES] = [plain(c) for c in classes]
    if len(classes) <= 2:
        transform = "binary_sigmoid"
    else:
        multi = getattr(est, "multi_class", "auto")
        ovr = multi == "ovr" or (multi in ("auto", "deprecated") and getattr(est, "solver", "") == "liblinear")
        transform = "ovr_normalized" if ovr else "softmax"
    rec.update({K.TASK: "classification", K.MODEL_KIND: "linear", K.LINEAR_COEF: coef.ravel(),
                K.LINEAR_INTERCEPT: intercept, K.OUTPUT_TRANSFORM: transform})


def _add_one_vs_rest(rec: dict, meta: dict, est: Any, width: int) -> None:
    if getattr(est, "label_binarizer_", None) is not None and est.label_binarizer_.y_type_ == "multilabel-indicator":
        raise unsupported("OneVsRestClassifier for multi-label targets")
    inner = est.estimators_
    if len(est.classes_) <= 2 or not all(type(e).__name__ == "LogisticRegression" for e in inner):
        raise unsupported(est, "only multiclass one-vs-rest over LogisticRegression is supported")
    coef = np.vstack([np.asarray(e.coef_, dtype=np.float64).reshape(1, -1) for e in inner])
    intercept = np.concatenate([np.atleast_1d(np.asarray(e.intercept_, dtype=np.float64)) for e in inner])
    meta[K.META_CLASSES] = [plain(c) for c in est.classes_]
    rec.update({K.TASK: "classification", K.MODEL_KIND: "linear", K.LINEAR_COEF: coef.ravel(),
                K.LINEAR_INTERCEPT: intercept, K.OUTPUT_TRANSFORM: "ovr_normalized"})


def _add_mlp(rec: dict, meta: dict, est: Any, width: int) -> None:
    rec.update({K.MODEL_KIND: "mlp", K.MLP_LAYERS: len(est.coefs_), K.MLP_ACTIVATION: est.activation})
    for i, (w, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        rec[K.MLP_LAYER_WEIGHTS.format(i)] = np.asarray(w, dtype=np.float64).ravel()
        rec[K.MLP_LAYER_BIAS.format(i)] = np.asarray(b, dtype=np.float64).ravel()
    out = est.out_activation_
    if type(est).__name__ == "MLPClassifier":
        meta[K.META_CLASSES] = [plain(c) for c in est.classes_]
        if out == "logistic" and len(est.classes_) == 2 and est.coefs_[-1].shape[1] == 1:
            transform = "binary_sigmoid"
        elif out == "softmax":
            transform = "softmax"
        else:
            raise unsupported("MLPClassifier for multi-label targets")
        rec[K.TASK] = "classification"
    else:
        if out not in ("identity", "exp"):
            raise unsupported(f"MLPRegressor with output activation {out!r}")
        transform = out
        rec[K.TASK] = "regression"
    rec[K.OUTPUT_TRANSFORM] = transform


def _add_sklearn_tree(b: TreeBuilder, tree: Any, output: int, values: np.ndarray) -> None:
    t = tree.tree_
    feature = np.where(t.children_left < 0, -1, t.feature)
    missing_left = getattr(t, "missing_go_to_left", None)
    default_left = np.zeros(t.node_count, np.int64) if missing_left is None else np.asarray(missing_left, np.int64)
    b.add(output, feature, t.threshold, t.children_left, t.children_right, values, default_left=default_left)


def _add_sklearn_forest(rec: dict, meta: dict, est: Any, width: int) -> None:
    trees = getattr(est, "estimators_", None)
    if trees is None:
        trees = [est]
    if getattr(est, "n_outputs_", 1) != 1:
        raise unsupported(est, "multi-output trees")
    classifier = hasattr(est, "classes_")
    if classifier and len(est.classes_) == 2:
        # Binary: one probability per leaf (the positive class's), the other is its complement.
        meta[K.META_CLASSES] = [plain(c) for c in est.classes_]
        b = TreeBuilder(1)
        for tree in trees:
            v = np.asarray(tree.tree_.value[:, 0, :2], dtype=np.float64)
            norm = v.sum(axis=1)
            norm[norm == 0] = 1.0
            _add_sklearn_tree(b, tree, 0, v[:, 1] / norm)
        rec[K.TASK] = "classification"
        b.write(rec, 1, [0.0], "le_float", divisor=len(trees))
        rec[K.OUTPUT_TRANSFORM] = "binary"
        return
    if classifier:
        n_classes = len(est.classes_)
        meta[K.META_CLASSES] = [plain(c) for c in est.classes_]
        b = TreeBuilder(n_classes)
        for tree in trees:
            v = np.asarray(tree.tree_.value[:, 0, :n_classes], dtype=np.float64)
            norm = v.sum(axis=1, keepdims=True)
            norm[norm == 0] = 1.0
            _add_sklearn_tree(b, tree, 0, v / norm)
        rec[K.TASK] = "classification"
        b.write(rec, n_classes, np.zeros(n_classes), "le_float", divisor=len(trees))
    else:
        b = TreeBuilder(1)
        for tree in trees:
            _add_sklearn_tree(b, tree, 0, tree.tree_.value[:, 0, 0])
        rec[K.TASK] = "regression"
        b.write(rec, 1, [0.0], "le_float", divisor=len(trees))
    rec[K.OUTPUT_TRANSFORM] = "identity"


def _link_transform(loss: Any, n_raw: int, classifier: bool) -> str:
    link = type(getattr(loss, "link", None)).__name__
    if link == "IdentityLink":
        return "identity"
    if link == "LogLink":
        return "exp"
    if link == "LogitLink":
        return "binary_sigmoid" if classifier else "sigmoid"
    if link in ("MultinomialLogit", "SymmetricMultinomialLogit"):
        return "softmax"
    raise unsupported(f"the loss {type(loss).__name__} (link {link})")


def _add_sklearn_gb(rec: dict, meta: dict, est: Any, width: int) -> None:
    classifier = hasattr(est, "classes_")
    stages = est.estimators_
    n_raw = stages.shape[1]
    init = est.init_
    if not (init == "zero" or type(init).__name__ in ("DummyClassifier", "DummyRegressor")):
        raise unsupported(est, f"a custom init estimator ({type(init).__name__})")
    base = np.asarray(est._raw_predict_init(np.zeros((1, est.n_features_in_), dtype=np.float32)),
                      dtype=np.float64).reshape(n_raw)
    b = TreeBuilder(1)
    for i in range(stages.shape[0]):
        for k in range(n_raw):
            _add_sklearn_tree(b, stages[i, k], k, stages[i, k].tree_.value[:, 0, 0])
    loss = est._loss
    if classifier:
        meta[K.META_CLASSES] = [plain(c) for c in est.classes_]
        rec[K.TASK] = "classification"
        if type(loss).__name__ == "ExponentialLoss":
            rec[K.OUTPUT_TRANSFORM] = "binary_sigmoid"
            rec[K.OUTPUT_SIGMOID_SCALE] = 2.0
        else:
            rec[K.OUTPUT_TRANSFORM] = _link_transform(loss, n_raw, True)
    else:
        rec[K.TASK] = "regression"
        rec[K.OUTPUT_TRANSFORM] = _link_transform(loss, n_raw, False)
    b.write(rec, n_raw, base, "le_float", scale=float(est.learning_rate))


def _add_sklearn_hgb(rec: dict, meta: dict, est: Any, width: int) -> None:
    classifier = hasattr(est, "classes_")
    n_raw = int(est.n_trees_per_iteration_)
    base = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(n_raw)
    known, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
    b = TreeBuilder(1)
    for iteration in est._predictors:
        for k, pred in enumerate(iteration):
            nodes = pred.nodes
            leaf = nodes["is_leaf"].astype(bool)
            categorical = nodes["is_categorical"].astype(bool) & ~leaf
            category = np.full(len(nodes), -1, np.int64)
            missing = np.zeros(len(nodes), np.int64)
            for i in np.flatnonzero(categorical):
                words = np.asarray(pred.raw_left_cat_bitsets[nodes["bitset_idx"][i]], dtype=np.uint64)
                if nodes["missing_go_to_left"][i]:
                    # Unknown categories follow missing values: they join the left set.
                    kn = np.asarray(known[f_idx_map[nodes["feature_idx"][i]]], dtype=np.uint64)
                    words = words | (~kn & np.uint64(0xFFFFFFFF))
                category[i] = b.add_bitset(words)
                missing[i] = 1  # negative or out-of-range categories follow missing values
            b.add(k, np.where(leaf, -1, nodes["feature_idx"]), nodes["num_threshold"],
                  np.where(leaf, -1, nodes["left"]), np.where(leaf, -1, nodes["right"]), nodes["value"],
                  default_left=nodes["missing_go_to_left"], missing=missing, category=category)
    loss = est._loss
    if classifier:
        meta[K.META_CLASSES] = [plain(c) for c in est.classes_]
        rec[K.TASK] = "classification"
    else:
        rec[K.TASK] = "regression"
    rec[K.OUTPUT_TRANSFORM] = _link_transform(loss, n_raw, classifier)
    b.write(rec, n_raw, base, "le")

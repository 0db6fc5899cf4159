"""``keel.autolog()``: one call, then a plain ``fit`` records a run.

Patched while enabled: scikit-learn estimators, Pipelines and hyperparameter searches, LightGBM
(``lgb.train`` and the sklearn API) and XGBoost (``xgb.train`` and the sklearn API). A fit records its
parameters, per-iteration evaluation metrics (LightGBM / XGBoost eval sets, through their callback
APIs, buffered and written in one transaction), the training time, library versions (tags), the fitted
model in Keel's native format (registered, with a signature from the training frame and an input
example) and, when ``X`` came from ``ws.features.training_set(...).to_pandas()``, the lineage edge
``training_set -consumed-> run``.

Which run a fit goes to, in order:
  1. inside ``with ws.start_run(...)``: that run (autolog adds to it, never ends it);
  2. else a new run in ``keel.autolog(workspace=ws)``'s workspace, else the workspace opened last in this
     process, else ``$KEEL_WORKSPACE`` (opened on first use). Such a run ends FINISHED, or FAILED when
     the fit raises (the exception still propagates).

Only the outermost fit records: a Pipeline's steps, a search's clones and the ``train`` call inside a
LightGBM/XGBoost estimator feed the outer run. A ``GridSearchCV`` / ``RandomizedSearchCV`` becomes a
parent run with one child per candidate (params and cv scores from ``cv_results_``; nothing is refit),
the best one tagged ``autolog.best_candidate=true`` and the refit best estimator logged on the parent.

The model is converted and registered (and a search's children written) on one background thread,
in order, so the fit returns at once; an auto-created run ends after that. ``keel.autolog_flush()``
waits for it; ``disable=True`` and interpreter exit (bounded) wait too.

Autolog never breaks a fit: when its own bookkeeping fails it warns once, naming what failed, and the
fit's result is returned unchanged. ``keel.autolog(disable=True)`` puts every patched function back.
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import functools
import importlib
import inspect
import json
import os
import sys
import tempfile
import threading
import time
import traceback
import warnings
from typing import TYPE_CHECKING, Any, Callable

from keel.errors import InvalidArgument

if TYPE_CHECKING:
    from keel.workspace import Workspace

__all__ = ["autolog", "autolog_flush"]

_MAX_PARAM = 500  # characters kept of one param value (a long grid or a nested estimator's repr)


class _Config:
    def __init__(self) -> None:
        self.enabled = False
        self.workspace: Workspace | None = None
        self.experiment = "Default"
        self.log_models = True
        self.log_every_n_iter = 1
        self.registered_model_name: str | None = None
        self.background = True


_config = _Config()
_patches: list[tuple[Any, str, Any]] = []  # (owner, attribute, original object) to restore exactly
_lock = threading.Lock()
_session: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("keel_autolog_session", default=None)
_warned: set[str] = set()
_searches_running = 0  # searches recording in this process (their threaded clones must not record)


def autolog(*, workspace=None, experiment: str = "Default", log_models: bool = True, log_every_n_iter: int = 1,
            registered_model_name: str | None = None, background: bool = True, disable: bool = False) -> None:
    """Record every scikit-learn / LightGBM / XGBoost fit as a Keel run (see the module docstring).

    ``workspace``: where runs go when a fit happens outside ``with ws.start_run(...)`` (default: the
    workspace opened last, else ``$KEEL_WORKSPACE``). ``experiment``: the experiment of those runs.
    ``log_models=False`` skips storing and registering the model. ``log_every_n_iter=N`` keeps every
    N-th boosting iteration's metrics (and always the last). ``registered_model_name`` names the
    registered model (default: the estimator's class, e.g. ``lightgbm.LGBMClassifier``).
    ``background=True`` converts and registers the model (and writes a search's children) on a
    background thread so the fit returns at once: an auto-created run turns FINISHED when that is
    done; :func:`autolog_flush` waits for it (``disable=True`` and interpreter exit do too).
    ``background=False`` does it all before the fit returns. ``disable=True`` restores every patched
    function.
    """
    if disable:
        _background.wait(timeout=None)
        with _lock:
            _unpatch_all()
            _config.enabled = False
        return
    if not isinstance(log_every_n_iter, int) or isinstance(log_every_n_iter, bool) or log_every_n_iter < 1:
        raise InvalidArgument(f"log_every_n_iter={log_every_n_iter!r}: expected an integer >= 1 "
                              "(1 logs every iteration, 10 every tenth)")
    if not isinstance(experiment, str) or not experiment:
        raise InvalidArgument(f"experiment={experiment!r}: expected a non-empty experiment name")
    if workspace is not None and not hasattr(workspace, "start_run"):
        raise InvalidArgument(f"workspace={workspace!r}: expected a keel workspace from keel.open(path)")
    with _lock:
        _config.workspace = workspace
        _config.experiment = experiment
        _config.log_models = bool(log_models)
        _config.log_every_n_iter = log_every_n_iter
        _config.registered_model_name = registered_model_name
        _config.background = bool(background)
        _config.enabled = True
        if not _patches:
            _patch_all()


def autolog_flush(timeout: float | None = None) -> bool:
    """Wait until every fit recorded so far has its model logged and its run ended; False when
    `timeout` (seconds) passed first."""
    return _background.wait(timeout)


class _Background:
    """One daemon thread finishing recorded fits in order: converting a 500-tree model takes
    longer than everything else autolog does, and the user's fit need not wait for it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: collections.deque = collections.deque()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def submit(self, job) -> None:
        with self._cond:
            self._jobs.append(job)
            self._pending += 1
            if self._thread is None:
                # At exit, give pending models a bounded time to land: never hang the host on them.
                atexit.register(self.wait, 120.0)
                self._thread = threading.Thread(target=self._loop, name="keel-autolog", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._jobs))
                job = self._jobs.popleft()
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - jobs guard themselves; this is the last net
                _warn("finish recording a fit", exc)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def wait(self, timeout: float | None) -> bool:
        if threading.current_thread() is self._thread:
            return True  # a job cannot wait for itself
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)


_background = _Background()


# ------------------------------------------------------------------------------------------ patching

def _patch(owner: Any, attr: str, wrapper_for) -> None:
    original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
    if getattr(original, "__keel_autolog__", False):
        return
    wrapped = wrapper_for(original)
    wrapped.__keel_autolog__ = True
    setattr(owner, attr, wrapped)
    _patches.append((owner, attr, original))


def _unpatch_all() -> None:
    while _patches:
        owner, attr, original = _patches.pop()
        setattr(owner, attr, original)


def _patch_all() -> None:
    for name, patcher in (("sklearn", _patch_sklearn), ("lightgbm", _patch_lightgbm), ("xgboost", _patch_xgboost)):
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # a library that is not installed is simply not patched
        try:
            patcher()
        except Exception as exc:  # noqa: BLE001 - a library's layout we do not know must not break autolog
            _warn(f"patch {name}", exc)


@functools.lru_cache(maxsize=1)
def _sklearn_fit_owners() -> tuple[type, ...]:
    """Every scikit-learn class defining its own ``fit`` (walking sklearn's modules takes seconds: once)."""
    from sklearn.model_selection._search import BaseSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators
    owners = {Pipeline}
    for _, cls in all_estimators():
        for klass in cls.__mro__:
            if "fit" in klass.__dict__ and klass.__module__.startswith("sklearn.") and \
                    not issubclass(klass, BaseSearchCV):
                owners.add(klass)
    return tuple(sorted(owners, key=lambda k: (k.__module__, k.__qualname__)))


def _patch_sklearn() -> None:
    from sklearn.model_selection._search import BaseSearchCV
    _patch(BaseSearchCV, "fit", lambda f: _wrap(f, _SearchSession))
    for klass in _sklearn_fit_owners():
        _patch(klass, "fit", lambda f: _wrap(f, _EstimatorSession))


def _patch_booster_library(train_module, modules, sklearn_module, train_session) -> None:
    """LightGBM and XGBoost alike: ``train`` wherever the library re-exports it (one wrapper for all
    of them, so a call through any name is recorded once), and every ``fit`` of its sklearn API."""
    train = train_module.train
    wrapped: dict[str, Callable[..., Any]] = {}
    for module in modules:
        if getattr(module, "train", None) is train:
            _patch(module, "train", lambda f: wrapped.setdefault("w", _wrap(f, train_session)))
    for klass in vars(sklearn_module).values():
        if isinstance(klass, type) and "fit" in klass.__dict__ and klass.__module__ == sklearn_module.__name__:
            _patch(klass, "fit", lambda f: _wrap(f, _EstimatorSession))


def _patch_lightgbm() -> None:
    import lightgbm
    import lightgbm.engine
    import lightgbm.sklearn
    _patch_booster_library(lightgbm.engine, (lightgbm, lightgbm.engine, lightgbm.sklearn), lightgbm.sklearn,
                           _LightGBMTrainSession)


def _patch_xgboost() -> None:
    import xgboost
    import xgboost.sklearn
    import xgboost.training
    _patch_booster_library(xgboost.training, (xgboost, xgboost.training, xgboost.sklearn), xgboost.sklearn,
                           _XGBoostTrainSession)


def _wrap(original, session_type):
    signature = inspect.signature(original)

    @functools.wraps(original)
    def patched(*args, **kwargs):
        outer = _session.get()
        if outer is None and _searches_running:
            return original(*args, **kwargs)  # a search's clone fitted on a joblib thread
        if outer is not None:
            # Nested (a Pipeline's step, a search's clone, the train() inside an estimator's fit): only a
            # boosting train() contributes, its per-iteration metrics going to the outer run.
            if session_type.injects_metrics and outer.wants_metrics and not outer.has_callback:
                try:
                    args, kwargs = session_type.add_callback(outer, signature, args, kwargs)
                    outer.has_callback = True
                except Exception as exc:  # noqa: BLE001 - the fit goes on without per-iteration metrics
                    _warn("add the metrics callback", exc)
            return original(*args, **kwargs)
        if not _config.enabled:
            return original(*args, **kwargs)
        return _record(original, session_type, signature, args, kwargs)

    return patched


def _record(original, session_type, signature, args, kwargs):
    try:
        session = session_type(signature, args, kwargs)
        session.begin()
    except Exception as exc:  # noqa: BLE001 - autolog must never stop the user's fit
        _warn("start recording the fit", exc)
        return original(*args, **kwargs)
    if session_type.injects_metrics:
        try:
            args, kwargs = session_type.add_callback(session, signature, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - the fit goes on without per-iteration metrics
            _warn("add the metrics callback", exc)
    global _searches_running
    search = isinstance(session, _SearchSession)
    token = _session.set(session)
    _searches_running += search
    started = time.perf_counter()
    try:
        result = original(*args, **kwargs)
    except BaseException as exc:
        session.fail(exc)
        raise
    finally:
        _session.reset(token)
        _searches_running -= search
    session.finish(result, time.perf_counter() - started)
    return result


def _warn(what: str, exc: BaseException) -> None:
    if what in _warned:
        return
    _warned.add(what)
    warnings.warn(f"keel.autolog could not {what} ({type(exc).__name__}: {exc}); the fit itself is unaffected. "
                  "This warning is shown once.", RuntimeWarning, stacklevel=4)


# ------------------------------------------------------------------------------------------ sessions

def _target_run(name: str) -> tuple[Any, bool]:
    """(run, owned): the run the user is inside, else a new one this fit owns."""
    from keel.tracking import active_run
    run = active_run()
    if run is not None:
        return run, False
    ws = _config.workspace
    if ws is None:
        from keel.workspace import last_opened
        ws = last_opened()
    if ws is None and os.environ.get("KEEL_WORKSPACE"):
        import keel
        ws = _config.workspace = keel.open(os.environ["KEEL_WORKSPACE"])
    if ws is None:
        raise InvalidArgument("no workspace to record the fit in: call keel.autolog(workspace=keel.open(path)), "
                              "open one with keel.open(path), or set KEEL_WORKSPACE")
    return ws.start_run(experiment=_config.experiment, name=name), True


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def _param_text(value: Any) -> str:
    if hasattr(value, "get_params") and not isinstance(value, type):
        text = _qualname(value)
    elif callable(value) and hasattr(value, "__name__"):
        text = value.__name__
    else:
        text = str(value)
    return text if len(text) <= _MAX_PARAM else text[:_MAX_PARAM - 3] + "..."


def _versions(libraries) -> dict[str, str]:
    tags = {}
    for lib in sorted(libraries):
        module = sys.modules.get(lib)
        version = getattr(module, "__version__", None)
        if version:
            tags[f"autolog.version.{'scikit-learn' if lib == 'sklearn' else lib}"] = str(version)
    return tags


def _head(X: Any, n: int = 5) -> Any:
    if X is None:
        return None
    if hasattr(X, "iloc"):
        return X.iloc[:n]
    try:
        import numpy as np
        arr = np.asarray(X)
        return arr[:n] if arr.ndim == 2 else None
    except Exception:  # noqa: BLE001 - sparse or exotic inputs simply get no example
        return None


class _MetricBuffer:
    """Per-iteration metrics kept in arrays and written in one transaction when the fit ends.

    Every N-th step is kept (``log_every_n_iter``); the last value of each key is always kept too."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.keys: list[str] = []
        self.values: list[float] = []
        self.steps: list[int] = []
        self.last: dict[str, tuple[float, int]] = {}

    def add(self, key: str, value: float, step: int) -> None:
        self.last[key] = (value, step)
        if step % self.every == 0:
            self.keys.append(key)
            self.values.append(value)
            self.steps.append(step)

    def flush(self, run) -> None:
        for key, (value, step) in self.last.items():
            if step % self.every:
                self.keys.append(key)
                self.values.append(value)
                self.steps.append(step)
        self.last.clear()
        if self.keys:
            run.log_batch(self.keys, self.values, self.steps)
        self.keys, self.values, self.steps = [], [], []


class _Session:
    """One recorded fit: picks the run, logs before (params, tags, lineage) and after (metrics, model)."""

    injects_metrics = False  # a boosting train() that adds a metrics callback
    wants_metrics = True     # whether nested boosting train() calls should report metrics here

    def __init__(self, signature, args, kwargs) -> None:
        self.bound = signature.bind_partial(*args, **kwargs).arguments
        self.run: Any = None  # the keel Run that begin() picks; every other use comes after begin()
        self.owned = False
        self.metrics = _MetricBuffer(_config.log_every_n_iter)
        self.libraries: set[str] = set()
        self.log_models = _config.log_models
        self.has_callback = False  # one boosting train() per recorded fit reports its metrics
        self.model_name = _config.registered_model_name

    # what each kind says about its fit
    def name(self) -> str:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}

    def training_frame(self) -> Any:
        return None

    def model(self, result) -> Any:
        return None

    def begin(self) -> None:
        self.run, self.owned = _target_run(self.name())
        self._guard("log the fit's parameters", lambda: self._log_params(self.params()))
        self._guard("tag the run", lambda: self.run.set_tags(
            {"autolog.estimator": self.name(), **_versions(self.libraries)}))
        self._guard("record the training set's lineage", self._log_lineage)

    def _guard(self, what: str, action) -> Any:
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - recorded as a warning, never raised into the fit
            _warn(what, exc)
            return None

    def _log_params(self, params: dict[str, Any]) -> None:
        params = {str(k): _param_text(v) for k, v in params.items()}
        if not self.owned:
            # Params are immutable: a second fit in the same run keeps the first values.
            existing = self.run.params
            clash = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
            params = {k: v for k, v in params.items() if k not in existing}
            if clash:
                _warn(f"log params {', '.join(clash)} again with other values (run {self.run.id} keeps the first "
                      "ones; start one run per model)", ValueError("params are immutable"))
        if params:
            self.run.log_params(params)

    def _log_lineage(self) -> None:
        frame = self.training_frame()
        attrs = getattr(frame, "attrs", None)
        ts = attrs.get("keel.training_set") if isinstance(attrs, dict) else None
        if ts:
            self.run.log_input(f"training_set:{ts}")

    def fail(self, exc: BaseException) -> None:
        self._guard("log the metrics of the failed fit", lambda: self.metrics.flush(self.run))
        if self.owned:
            from keel.tracking import FAILED, KILLED
            if isinstance(exc, KeyboardInterrupt):
                self._guard("end the run KILLED", lambda: self.run.end(KILLED, "KeyboardInterrupt"))
            else:
                text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                self._guard("end the run FAILED", lambda: self.run.end(FAILED, text[-20000:]))

    def finish(self, result, seconds: float) -> None:
        self._guard("log the iteration metrics", lambda: self.metrics.flush(self.run))
        self._guard("log the training time", lambda: self.run.log_metric("training_time_s", seconds))
        if _config.background:
            _background.submit(functools.partial(self._complete, result))
        else:
            self._complete(result)

    def _complete(self, result) -> None:
        self.after_fit(result)
        if self.log_models:
            model = self._guard("find the fitted model", lambda: self.model(result))
            if model is not None:
                self._guard("log the model", lambda: self._log_model(self.run, model))
        if self.owned:
            self._guard("end the run", lambda: self.run.end())

    def after_fit(self, result) -> None:
        pass

    def _log_model(self, run, model) -> None:
        from keel.inference import convert
        try:
            predictor = convert(model)
        except InvalidArgument as exc:
            # Autolog stores native models only: say why this one is not there.
            run.set_tag("autolog.model", f"not logged: {str(exc).split('. Supported:')[0]}")
            return
        example = _head(self.training_frame())
        name = self.model_name or _qualname(model)
        mv = run.log_model(predictor, name=name, input_example=example)
        run.set_tags({"autolog.model": getattr(mv, "ref", name)})
        if example is not None:
            self._log_example(run, example)

    @staticmethod
    def _log_example(run, example) -> None:
        if hasattr(example, "to_dict"):
            data = {"columns": [str(c) for c in example.columns],
                    "data": json.loads(example.to_json(orient="values", date_format="iso"))}
        else:
            data = {"data": example.tolist()}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "input_example.json")
            with open(path, "w") as f:
                json.dump(data, f)
            run.log_artifact(path, "model")


class _EstimatorSession(_Session):
    """A scikit-learn-API ``fit(X, y)``: sklearn estimators and Pipelines, LGBM*/XGB* estimators."""

    def __init__(self, signature, args, kwargs) -> None:
        super().__init__(signature, args, kwargs)
        self.estimator = self.bound.get("self")
        self.libraries = {"sklearn", type(self.estimator).__module__.split(".")[0]}
        steps = getattr(self.estimator, "steps", None)
        if steps:
            self.libraries.add(type(steps[-1][1]).__module__.split(".")[0])

    def name(self) -> str:
        return _qualname(self.estimator)

    def params(self) -> dict[str, Any]:
        return self.estimator.get_params(deep=True)

    def training_frame(self) -> Any:
        return self.bound.get("X", self.bound.get("data"))

    def model(self, result) -> Any:
        return self.estimator


class _SearchSession(_EstimatorSession):
    """``GridSearchCV`` / ``RandomizedSearchCV``: a parent run, a child per candidate, the best tagged."""

    wants_metrics = False  # the clones' boosting curves would mix in the parent

    def name(self) -> str:
        inner = getattr(self.estimator, "estimator", None)
        return f"{_qualname(self.estimator)}({_qualname(inner).split('.', 1)[1]})" if inner is not None \
            else _qualname(self.estimator)

    def params(self) -> dict[str, Any]:
        return self.estimator.get_params(deep=False)

    def model(self, result) -> Any:
        return getattr(self.estimator, "best_estimator_", None)

    def after_fit(self, result) -> None:
        self._guard("log the search's candidates", self._log_candidates)

    def _log_candidates(self) -> None:
        search, parent = self.estimator, self.run
        results = search.cv_results_
        best = getattr(search, "best_index_", None)
        best = int(best) if best is not None and not callable(best) else None
        ws = parent.workspace
        metric_keys = [k for k in results if k.startswith(("mean_", "std_", "rank_", "split")) and
                       not k.startswith("param_")]
        child_of_best = None
        for i, params in enumerate(results["params"]):
            child = ws.runs.start(experiment=parent.experiment, name=f"{parent.name} #{i}", parent=parent,
                                  capture_source=False)
            child.log_params({k: _param_text(v) for k, v in params.items()})
            child.log_metrics({k: float(results[k][i]) for k in metric_keys})
            tags = {"autolog.candidate": str(i)}
            if i == best:
                tags["autolog.best_candidate"] = "true"
                child_of_best = child
            child.set_tags(tags)
            child.end()
        summary: dict[str, Any] = {}
        if child_of_best is not None:
            parent.set_tags({"autolog.best_run_id": child_of_best.id})
            self._log_params({f"best_{k}": v for k, v in search.best_params_.items()})
            score = getattr(search, "best_score_", None)
            if score is not None:
                summary["best_cv_score"] = float(score)
        if summary:
            parent.log_metrics(summary)


class _LightGBMTrainSession(_Session):
    """``lightgbm.train(params, train_set, ...)``."""

    injects_metrics = True

    def __init__(self, signature, args, kwargs) -> None:
        super().__init__(signature, args, kwargs)
        self.libraries = {"lightgbm"}
        train_set = self.bound.get("train_set")
        self.frame = getattr(train_set, "data", None)  # kept now: LightGBM frees it once constructed

    def name(self) -> str:
        return "lightgbm.train"

    def params(self) -> dict[str, Any]:
        params = dict(self.bound.get("params") or {})
        params.setdefault("num_boost_round", self.bound.get("num_boost_round", 100))
        return params

    def training_frame(self) -> Any:
        return self.frame

    def model(self, result) -> Any:
        return result

    @staticmethod
    def add_callback(session: _Session, signature, args, kwargs):
        buffer = session.metrics

        def keel_autolog_metrics(env) -> None:
            for item in env.evaluation_result_list or ():
                buffer.add(f"{item[0]}-{item[1]}", float(item[2]), env.iteration)

        # After record_evaluation (20), before early_stopping (30); LightGBM itself keeps a callback's
        # order in its __dict__ (it setdefaults one there).
        keel_autolog_metrics.__dict__["order"] = 25
        return _with_callback(signature, args, kwargs, keel_autolog_metrics)


class _XGBoostTrainSession(_Session):
    """``xgboost.train(params, dtrain, ...)``."""

    injects_metrics = True

    def __init__(self, signature, args, kwargs) -> None:
        super().__init__(signature, args, kwargs)
        self.libraries = {"xgboost"}

    def name(self) -> str:
        return "xgboost.train"

    def params(self) -> dict[str, Any]:
        params = self.bound.get("params") or {}
        params = dict(params.items() if hasattr(params, "items") else params)  # dict or list of pairs
        params.setdefault("num_boost_round", self.bound.get("num_boost_round", 10))
        return params

    def model(self, result) -> Any:
        return result

    @staticmethod
    def add_callback(session: _Session, signature, args, kwargs):
        return _with_callback(signature, args, kwargs, _xgb_callback(session.metrics))


def _xgb_callback(buffer: _MetricBuffer):
    from xgboost.callback import TrainingCallback

    class KeelAutologMetrics(TrainingCallback):
        def after_iteration(self, model, epoch, evals_log) -> bool:
            for data, metrics in evals_log.items():
                for key, history in metrics.items():
                    value = history[-1]
                    buffer.add(f"{data}-{key}", float(value[0] if isinstance(value, tuple) else value), epoch)
            return False

    return KeelAutologMetrics()


def _with_callback(signature, args, kwargs, callback):
    """The call's arguments with `callback` appended to its ``callbacks`` (the user's list is not changed)."""
    bound = signature.bind_partial(*args, **kwargs)
    callbacks = list(bound.arguments.get("callbacks") or [])
    callbacks.append(callback)
    bound.arguments["callbacks"] = callbacks
    return bound.args, bound.kwargs

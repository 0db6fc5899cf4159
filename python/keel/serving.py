"""In-process endpoints: online features -> Lua routing -> prediction -> assignment log.

``ws.endpoint(name, routing=..., variants={name: (model_ref, weight)}, features=[...])`` defines (or
revises) an endpoint and returns it; ``ws.endpoint(name)`` reopens the saved definition, in any
process. Definitions are checked, normalized and saved by the core (``_core.EndpointDefinition``,
``_core.EndpointStore``: the same rules for the CLI and a C++ server) with every revision;
``ep.set_weights``, new definitions, alias moves
(``churn@champion`` is re-resolved) and data issues on the variants' lineage (``ctx.issues``) reach
every process hosting the endpoint on its next request: each request compares the workspace's change
token (about a microsecond) and reloads only when the serving generation moved. New online snapshots
are picked up every ``refresh_interval`` seconds. All of it is the core's ``serving::Endpoint``
(``_core.Endpoint``), which a C++ server hosts too; this module converts inputs and outputs and loads
the models the core cannot run (scikit-learn and other Python objects), which the core calls back.

>>> ep = ws.endpoint("churn", routing="plugins/routing/sticky.lua",
...                  variants={"champion": ("churn@champion", 0.9), "challenger": ("churn@challenger", 0.1)},
...                  features=["player_activity:sessions_7d", "player_activity:spend_30d"])
>>> ep.predict({"player_id": 42, "tenant": "studio-a"})
{'prediction': 0.12, 'variant': 'champion', 'model': 'churn/3', 'version': 3, 'fallback': '',
 'missing': [], 'stale': []}

Every model input is fed by name from the model's signature (the core's ``InputPlan``, one rule for
the native and the Python path): online feature ``view:column`` feeds input ``column``, a request field
feeds the input of its name (and wins over the online value). A definition whose models read names the
endpoint does not provide is refused; so is an alias move onto such a version. Inputs without a fresh
value follow ``on_missing``: "error" (the default: an answer built on NaN would look like any other),
"default" (``defaults={...}``) or "flag" (predict with NaN); every answer lists them.
"""

from __future__ import annotations

import atexit
import gc
import math
import warnings
import weakref
from collections.abc import Callable, Mapping

import numpy as np

from keel import _core, _data
from keel.errors import InvalidArgument
from keel.plugins import Router, ensure_search_path

# Assignment logs (C++) write every 512 rows and at least every second on their own thread; a clean
# interpreter exit writes what is left. Closing at exit, not in the logs' destructors: Python need not
# destroy objects at exit. The hook is registered when the first endpoint opens, not on import.
_open_endpoints: weakref.WeakSet[Endpoint] = weakref.WeakSet()
_exit_hook_registered = False


def _track_open(ep: Endpoint) -> None:
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_close_logs)
        _exit_hook_registered = True
    _open_endpoints.add(ep)


def _close_logs() -> None:
    for ep in list(_open_endpoints):
        try:
            ep._close_log()
        except Exception as err:  # noqa: BLE001 - say what is lost, then let the other logs close
            warnings.warn(f"endpoint '{ep.name}': assignments not written at exit: {err}", RuntimeWarning,
                          stacklevel=1)


def _host_model(ws, ref: str, output: str) -> Callable[[np.ndarray], np.ndarray]:
    """The predict function of a variant whose model the core cannot run (scikit-learn, any Python
    object): (n, width) model inputs in signature order -> n answers. The core calls it with the GIL
    taken only around the call; native models never come here."""
    model = ws.models.load(ref)
    proba = getattr(model, "predict_proba", None)
    if output in ("auto", "proba") and proba is not None:
        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(proba(x))[:, -1]
    elif output == "proba":
        raise InvalidArgument(f"model {ref} has no predict_proba; use output='predict'")
    else:
        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict(x)).reshape(len(x), -1)[:, 0]
    if getattr(model, "feature_names_in_", None) is None:
        return run

    # Fitted on a DataFrame, it warns when served numpy rows; the endpoint feeds columns in signature
    # order, so that warning is silenced around its calls (and nowhere else).
    def quiet(x: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            return run(x)
    return quiet


class Endpoint:
    """A named endpoint hosted in this process. The same object is what ``keel serve`` hosts.

    The rules (routing, data issues, shadows, alias moves and their lineage, counters, the
    assignment log) live in the core's ``serving::Endpoint`` (``_core.Endpoint``), which a C++ server
    hosts as well; this class converts inputs and outputs."""

    def __init__(self, ws, name: str, refresh_interval: float = 0.5):
        self._ws = ws
        self.name = name
        self._store = _core.EndpointStore(ws.native)
        self.refresh_interval = refresh_interval
        ensure_search_path()  # the core resolves the routing plugin's ref
        self._native = _core.Endpoint(ws.native, name, refresh_interval,
                                      lambda ref, output: _host_model(ws, ref, output))
        _track_open(self)

    @property
    def revision(self) -> int:
        return self._native.revision

    @property
    def definition(self) -> dict:
        """The saved definition as data (routing, variants, features, inputs, on_missing, ...)."""
        return self._native.definition().to_dict()

    @property
    def native(self) -> bool:
        """True when every variant predicts in C++ (no Python model): one call per request."""
        return self._native.native

    @property
    def lineage_ref(self) -> str:
        return f"endpoint:{self.name}"

    def _router(self) -> Router:
        return Router.wrap(self._native.router)

    def issues(self):
        """Open data issues upstream of this endpoint (feature views it reads online, and those
        feeding its models), a DataFrame."""
        return self._ws.lineage.issues(self.lineage_ref)

    def refresh(self) -> None:
        """Pick up a new revision, moved aliases, data issues and new online snapshots now."""
        self._native.refresh()

    def set_weights(self, weights: Mapping[str, float]) -> int:
        """Change the split live; saved as a new revision that every hosting process picks up."""
        return self._native.set_weights([(str(name), float(w)) for name, w in weights.items()])

    @property
    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self._native.definition().variants}

    def revisions(self):
        """Every saved revision of the definition (a DataFrame; ``definition`` is its canonical JSON)."""
        import pandas as pd
        rows = [{"revision": r.revision, "created_by": r.created_by, "created_at": r.created_at,
                 "definition": r.definition.to_json()} for r in self._store.revisions(self.name)]
        frame = pd.DataFrame(rows, columns=["revision", "created_by", "created_at", "definition"])
        frame["created_at"] = pd.to_datetime(frame["created_at"], unit="ms", utc=True)
        return frame

    # --- serving --------------------------------------------------------------------------------
    def predict(self, request: dict) -> dict:
        """One request dict (``{"player_id": 42, "tenant": "studio-a"}``) -> ``{prediction, variant,
        model, version, fallback, missing, stale}``. Routing failures serve the default variant;
        shadows never affect the answer; inputs without a fresh value follow ``on_missing``."""
        return self._native.predict(request)

    def predict_batch(self, requests):
        """Many requests (a list of dicts, a DataFrame, a pyarrow Table or RecordBatch, a dict of
        columns: keel._data) in one call: routed, looked up and predicted in one C++ call, one
        vectorized predict per variant. Returns a DataFrame for a DataFrame, else a list of dicts
        (the keys of :meth:`predict`)."""
        # A batch allocates a few small acyclic objects per request; in a process holding many objects
        # (a notebook, a training script) the cyclic collector would otherwise rescan them all every few
        # hundred requests and cost more than the batch itself.
        paused = gc.isenabled()
        gc.disable()
        try:
            as_frame = hasattr(requests, "to_dict") and hasattr(requests, "columns")
            reqs = _data.to_rows(requests)  # every input kind (keel._data); a list of dicts row by row
            out = self._native.predict_batch(reqs, as_frame)
            if as_frame:  # built from columns: a frame of dicts costs more than the batch
                import pandas as pd
                return pd.DataFrame(out, index=requests.index)
            return out
        finally:
            if paused:
                gc.enable()

    # --- analysis -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write buffered assignments to the workspace now. The log also writes on its own (in C++) once
        512 rows wait or the oldest is 1 s old, so a killed process loses at most the last second;
        ``stats()["log"]`` shows what was written, what waits and the last write error."""
        self._native.flush()

    def _close_log(self) -> None:
        self._native.close()

    def assignments(self) -> Assignments:
        """Every logged decision: time, key, tenant, variant, model, version, fallback, shadow, prediction,
        revision, missing and stale (comma-separated model inputs, "" when none)."""
        self.flush()
        return Assignments(self._store.assignments(self.name, -1), self._native.key)

    def prediction_log(self) -> PredictionLog:
        """The answers logged with their model inputs (the share ``log_inputs=`` of the definition
        asks for; shadow calls excluded): time, key, tenant, variant, model, version, prediction,
        latency_us (time in the request path), fallback, then one column per model input. What drift
        checks read: ``quality.psi(ep.prediction_log().to_pandas(), "spend", reference)``."""
        self.flush()
        return PredictionLog(self._store.assignments(self.name, -1), self._native.key)

    def compare(self, outcomes, outcome: str, *, control: str | None = None, on: str | None = None,
                confidence: float = 0.95):
        """Compare variants on an outcome column: mean per variant and the difference to ``control``
        (default: the endpoint's default variant) with a normal-approximation confidence interval.
        ``outcomes`` is a DataFrame holding the sticky key column (or ``on``) and ``outcome``; each key
        counts once, in the variant it was last served (shadow calls excluded)."""
        return compare_variants(self.assignments().to_pandas(), outcomes, outcome, key=on or self._native.key,
                                control=control or self._native.router.default, confidence=confidence)

    def stats(self) -> dict:
        """The router's counters (decisions, fallbacks by reason, served per variant, plugin version)
        with the endpoint's: shadow_errors, last_shadow_error, revision, issues, missing / stale /
        refused requests, rejected_alias_moves and log (the assignment log's)."""
        s = self._router().stats()
        s.update(self._native.stats())
        return s

    def __repr__(self) -> str:
        weights = self.weights
        models = ", ".join(f"{name}={ref}@{weights[name]:g}" for name, ref, _ in self._native.variants())
        return f"<keel.Endpoint {self.name} r{self.revision} {self._native.definition().routing} [{models}]>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        s = self.stats()
        d = self._native.definition()
        refs = {name: ref for name, ref, _ in self._native.variants()}
        rows = [{"variant": v.name, "model": v.model, "serves": refs[v.name], "weight": v.weight,
                 "served": s["served"].get(v.name, 0), "data issue": "yes" if v.name in s["issues"] else ""}
                for v in d.variants]
        return html_table(rows, title=f"Endpoint {self.name} (revision {self.revision}, "
                                      f"{d.routing}, {s['fallbacks']} fallbacks)")


class Assignments:
    def __init__(self, columns: Mapping[str, list], key: str):
        self._columns = columns
        self.key = key

    def __len__(self) -> int:
        return len(self._columns["ts"])

    def to_pandas(self):
        import pandas as pd
        frame = pd.DataFrame(dict(self._columns))
        frame["ts"] = pd.to_datetime(frame["ts"], unit="ms", utc=True)
        return frame


class PredictionLog(Assignments):
    def __len__(self) -> int:
        return sum(1 for text, shadow in zip(self._columns["inputs"], self._columns["shadow"]) if text and not shadow)

    def to_pandas(self):
        import json

        import pandas as pd
        frame = super().to_pandas()
        frame = frame[(frame["inputs"] != "") & ~frame["shadow"]]
        inputs = pd.DataFrame([json.loads(text) for text in frame["inputs"]], index=frame.index, dtype="float64")
        keep = ["ts", "key", "tenant", "variant", "model", "version", "prediction", "latency_us", "fallback",
                "revision"]
        return pd.concat([frame[keep], inputs], axis=1).reset_index(drop=True)


def compare_variants(assignments, outcomes, outcome: str, *, key: str, control: str, confidence: float = 0.95):
    """Per variant: n, mean of ``outcome``, difference to ``control`` and its confidence interval."""
    import pandas as pd
    from statistics import NormalDist

    served = assignments[~assignments["shadow"]].drop_duplicates("key", keep="last")[["key", "variant"]]
    out = outcomes[[key, outcome]].copy()
    out["key"] = out[key].astype(str)
    joined = served.merge(out[["key", outcome]], on="key", how="inner")
    if joined.empty:
        raise InvalidArgument(f"no served key matches the outcomes' '{key}' column")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    g = joined.groupby("variant")[outcome].agg(["count", "mean", "var"])
    if control not in g.index:
        raise InvalidArgument(f"control variant '{control}' has no outcomes (variants: {', '.join(g.index)})")
    c = g.loc[control]
    rows = []
    for variant, r in g.iterrows():
        diff = r["mean"] - c["mean"]
        se = math.sqrt((r["var"] if r["count"] > 1 else 0) / r["count"] +
                       (c["var"] if c["count"] > 1 else 0) / c["count"])
        lo, hi = (diff - z * se, diff + z * se) if variant != control else (0.0, 0.0)
        p = 2 * (1 - NormalDist().cdf(abs(diff) / se)) if se > 0 and variant != control else float("nan")
        rows.append({"variant": variant, "n": int(r["count"]), "mean": r["mean"], "diff_vs_control": diff,
                     "ci_low": lo, "ci_high": hi, "p_value": p, "control": variant == control})
    return pd.DataFrame(rows)


def open_endpoint(ws, name: str, refresh_interval: float = 0.5, **definition) -> Endpoint:
    """``ws.endpoint(name)`` reopens a saved endpoint; with a definition (model= or routing= and
    variants=, features=, inputs=, on_missing=, defaults=, signature=, default=, config=, key=) it
    saves a new revision when anything changed. Fields not given keep their saved values."""
    _core.check_name(name, "endpoint", "churn")
    store = _core.EndpointStore(ws.native)
    if definition:
        saved = store.current(name).definition if store.current_revision(name) else None
        d = _core.EndpointDefinition.update(saved, definition)  # fields not given keep their saved values
        ensure_search_path()  # the core resolves the routing plugin's ref
        # The core expands bare view names, checks that the plugin loads with a config its schema
        # accepts and that the models resolve and can be fed, and saves the revision with its lineage
        # edges in one transaction.
        store.save(name, d)
    return Endpoint(ws, name, refresh_interval=refresh_interval)

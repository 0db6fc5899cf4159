"""In-process endpoints: online features -> Lua routing -> prediction -> assignment log.

``ws.endpoint(name, routing=..., variants={name: (model_ref, weight)}, features=[...])`` defines (or
revises) an endpoint and returns it; ``ws.endpoint(name)`` reopens the saved definition, in any
process. Definitions are checked, normalized and saved by the core (``_core.EndpointDefinition``,
``_core.EndpointStore``: the same rules for the CLI and a C++ server) with every revision;
``ep.set_weights``, new definitions, alias moves
(``churn@champion`` is re-resolved) and data issues on the variants' lineage (``ctx.issues``) reach
every process hosting the endpoint on its next request: each request compares the workspace's change
token (about a microsecond) and reloads only when the serving generation moved. New online snapshots
are picked up every ``refresh_interval`` seconds.

>>> ep = ws.endpoint("churn", routing="plugins/routing/sticky.lua",
...                  variants={"champion": ("churn@champion", 0.9), "challenger": ("churn@challenger", 0.1)},
...                  features=["player_activity:sessions_7d", "player_activity:spend_30d"])
>>> ep.predict({"player_id": 42, "tenant": "studio-a"})
{'prediction': 0.12, 'variant': 'champion', 'model': 'churn/3', 'version': 3, 'fallback': '',
 'missing': [], 'stale': []}

Every model input is fed by name from the model's signature (``_core.InputPlan``, one rule in C++ for
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
import time
import warnings
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from keel import _core, _data
from keel.errors import InvalidArgument, NotFound
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
            ep._log.close()
        except Exception as err:  # noqa: BLE001 - say what is lost, then let the other logs close
            warnings.warn(f"endpoint '{ep.name}': assignments not written at exit: {err}", RuntimeWarning,
                          stacklevel=1)


class _Variant:
    def __init__(self, name: str, model_ref: str):
        self.name = name
        self.model_ref = model_ref
        self.ref = ""          # resolved, e.g. churn/3
        self.version = 0
        self.lineage_ref = ""
        self.model: Any = None
        self.names: list[str] = []   # the model's input names from its signature
        self._predict: Callable[[np.ndarray], np.ndarray] | None = None
        self._fitted_on_names = False

    def bind(self, mv, model, output: str) -> None:
        self.ref, self.version, self.lineage_ref, self.model = mv.ref, mv.version, mv.lineage_ref, model
        self.names = mv.feature_names or []
        # Fitted on a DataFrame, it warns when served numpy rows; the endpoint feeds columns in
        # signature order, so that warning is silenced around its calls (and nowhere else).
        self._fitted_on_names = getattr(model, "feature_names_in_", None) is not None
        proba = getattr(model, "predict_proba", None)
        if output in ("auto", "proba") and proba is not None:
            self._predict = lambda x: np.asarray(proba(x))[:, -1]
        elif output == "proba":
            raise InvalidArgument(f"model {mv.ref} has no predict_proba; use output='predict'")
        else:
            self._predict = lambda x: np.asarray(model.predict(x)).reshape(len(x), -1)[:, 0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert self._predict is not None  # bind() comes first: a variant serves once its model resolved
        if not self._fitted_on_names:
            return self._predict(x)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            return self._predict(x)


class Endpoint:
    """A named endpoint hosted in this process. The same object is what ``keel serve`` hosts."""

    def __init__(self, ws, name: str, revision: _core.EndpointRevision, refresh_interval: float = 0.5):
        self._ws = ws
        self.name = name
        self._store = _core.EndpointStore(ws.native)
        self.refresh_interval = refresh_interval
        self._log = _core.AssignmentLog(ws.native, name)  # buffered in C++; see flush()
        self._models: dict[str, Any] = {}   # resolved ref -> loaded model
        self._shadow_errors = 0
        self._last_shadow_error = ""
        self._issues: list[str] = []
        self._counts = {"missing": 0, "stale": 0, "refused": 0}
        self._rejected: dict[str, str] = {}  # variant -> why its alias move was not followed
        self._token = ws.native.change_token()
        self._generation = ws.native.serving_generation()  # read before what it guards
        self._apply(revision)
        _track_open(self)

    # --- definition -----------------------------------------------------------------------------
    def _apply(self, revision: _core.EndpointRevision) -> None:
        d = revision.definition  # checked and normalized by the core when it was saved
        self.revision = revision.revision
        self._definition = d
        self._key = d.key or self._default_key(d)
        self._tenant_field = d.tenant_field
        self._reader = self._ws.features.online_reader(list(d.features)) if d.features else None
        # Also for revisions saved before endpoints recorded them (a no-op when the edges are live).
        self._store.link_views(self.name, d)
        self._variants = {v.name: _Variant(v.name, v.model) for v in d.variants}
        self._rejected = {}
        self._router = Router(d.routing, [(v.name, v.weight) for v in d.variants],
                              default=d.default or None, config={**d.config, "key": self._key},
                              name=self.name, issues=self._issues)
        self._path: _core.RequestPath | None = None
        self._resolve_models()
        self._next_refresh = time.monotonic() + self.refresh_interval

    @property
    def definition(self) -> dict:
        """The saved definition as data (routing, variants, features, inputs, on_missing, ...)."""
        return self._definition.to_dict()

    def _plan(self, override: tuple[str, Any] | None = None):
        """The C++ input plan for the variants' current models (``override``: one variant's model
        replaced, to check an alias move); InvalidArgument when a model cannot be fed."""
        models = []
        for spec in self._definition.variants:
            v = self._variants[spec.name]
            ref, names = v.ref, v.names
            if override is not None and override[0] == v.name:
                ref, names = override[1].ref, override[1].feature_names or []
            models.append((ref, list(names or [])))
        return _core.InputPlan.for_definition(self.name, self._definition, models)

    def _build_path(self) -> None:
        """One C++ request path per revision and set of model versions: inputs mapped by name once,
        then every request is one call (native models predict inside it, others in Python)."""
        self._variant_list = list(self._variants.values())
        plan = self._plan()
        natives = [getattr(v.model, "native", None) if self._definition.output == "auto" else None
                   for v in self._variant_list]
        natives = [n if isinstance(n, _core.NativePredictor) else None for n in natives]
        # pybind11 passes None as an empty holder (no feature reader; a variant that predicts in
        # Python), which the signatures it generates do not say.
        router, reader = self._router.native, self._reader
        self._path = _core.RequestPath(router, reader, self._key, plan, natives)  # type: ignore[arg-type]
        self._serving = (self._path, self._variant_list)  # swapped as one: a request reads both at once
        features = self._definition.features
        self._views_read = [{features[i].split(":", 1)[0] for i in plan.features_read(k)}
                            for k in range(len(self._variant_list))]

    def _default_key(self, d: _core.EndpointDefinition) -> str:
        if d.features:
            view = d.features[0].split(":", 1)[0]
            keys = self._ws.features.feature_view(view).join_keys
            if keys:
                return keys[0]
        return "user_id"

    def _resolve_models(self) -> bool:
        """Re-resolves every variant's model ref (aliases move); True when something changed. A version
        the endpoint cannot feed (its signature reads names the endpoint does not provide) is not
        followed: the variant keeps serving its version, and stats()/warnings say why."""
        changed = False
        before = {v.lineage_ref for v in self._variants.values() if v.lineage_ref}
        rejected = {}
        for v in self._variants.values():
            mv = self._ws.models.get(v.model_ref)
            if mv.ref == v.ref:
                continue
            if v.ref:  # an alias moved under a running endpoint: check the new version before switching
                try:
                    self._plan((v.name, mv))
                except InvalidArgument as err:
                    rejected[v.name] = f"{v.model_ref} moved to {mv.ref}, not followed: {err}"
                    continue
            model = self._models.get(mv.ref)
            if model is None:
                model = self._models[mv.ref] = self._ws.models.load(mv.ref)
            v.bind(mv, model, self._definition.output)
            changed = True
        for name, why in rejected.items():
            if self._rejected.get(name) != why:
                warnings.warn(f"endpoint '{self.name}', variant '{name}': {why}", RuntimeWarning, stacklevel=3)
        self._rejected = rejected
        if changed or self._path is None:
            self._link_lineage(before)
            self._build_path()
            changed = True
        issues = self._variants_with_issues()
        if issues != self._issues:
            self._issues = issues
            self._router.set_issues(issues)
            changed = True
        return changed

    def _variants_with_issues(self) -> list[str]:
        """Variants whose model has a data issue upstream, or that read online a view with one."""
        lineage = self._ws.lineage
        views = set().union(*self._views_read) if self._views_read else set()
        bad_views = {view for view in views if not lineage.issues(f"feature_view:{view}").empty}
        return sorted(v.name for k, v in enumerate(self._variant_list)
                      if (v.lineage_ref and not lineage.issues(v.lineage_ref).empty) or self._views_read[k] & bad_views)

    @property
    def lineage_ref(self) -> str:
        return f"endpoint:{self.name}"

    def _link_lineage(self, before: set[str]) -> None:
        """model:<name>/<version> -serves-> endpoint:<name> for the versions served now; edges of
        versions no longer served are ended (as_of queries still see them)."""
        now = {v.lineage_ref for v in self._variants.values() if v.lineage_ref}
        lineage = self._ws.lineage
        # Every live serves edge, not only those this process added: a version served before the
        # endpoint was opened here (in another process, an earlier session) is ended too.
        try:
            edges = lineage.upstream(self.lineage_ref, depth=1).edges
        except NotFound:  # the endpoint's first revision: no node yet
            edges = []
        live = {e["from"] for e in edges if e["kind"] == "serves"}
        for ref in now - live:
            lineage.add_edge(ref, "serves", self.lineage_ref)
        for ref in (before | live) - now:
            try:
                lineage.remove_edge(ref, "serves", self.lineage_ref)
            except NotFound:  # another host ended it already
                pass

    def issues(self):
        """Open data issues upstream of this endpoint (feature views it reads online, and those
        feeding its models), a DataFrame."""
        return self._ws.lineage.issues(self.lineage_ref)

    def refresh(self) -> None:
        """Pick up a new revision, moved aliases, data issues and new online snapshots now."""
        current = self._store.current_revision(self.name)
        if current != self.revision:
            self._apply(self._store.current(self.name))
        else:
            if self._reader is not None:
                self._reader.refresh()
            self._resolve_models()
        self._next_refresh = time.monotonic() + self.refresh_interval

    def _stale(self) -> bool:
        """Did a writer, in this process or another, move an alias, save a revision or open a data
        issue since we last looked? A change token first (no table read), the counter only then."""
        native = self._ws.native
        token = native.change_token()
        if token == self._token:
            return False
        self._token = token
        generation = native.serving_generation()
        if generation == self._generation:
            return False
        self._generation = generation
        return True

    def _maybe_refresh(self) -> None:
        # The interval still paces what nobody announces: new online snapshots.
        if self._stale() or time.monotonic() >= self._next_refresh:
            self.refresh()

    def set_weights(self, weights: Mapping[str, float]) -> int:
        """Change the split live; saved as a new revision that every hosting process picks up."""
        changed = [(str(name), float(w)) for name, w in weights.items()]
        rev = self._store.save(self.name, self._definition.with_weights(changed))  # checked before it is saved
        self._router.set_weights(dict(changed))
        self.revision, self._definition = rev.revision, rev.definition
        return self.revision

    @property
    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self._definition.variants}

    def revisions(self):
        """Every saved revision of the definition (a DataFrame; ``definition`` is its canonical JSON)."""
        import pandas as pd
        rows = [{"revision": r.revision, "created_by": r.created_by, "created_at": r.created_at,
                 "definition": r.definition.to_json()} for r in self._store.revisions(self.name)]
        frame = pd.DataFrame(rows, columns=["revision", "created_by", "created_at", "definition"])
        frame["created_at"] = pd.to_datetime(frame["created_at"], unit="ms", utc=True)
        return frame

    # --- serving --------------------------------------------------------------------------------
    def _count(self, missing: list, stale: list) -> None:
        if missing:
            self._counts["missing"] += 1
        if stale:
            self._counts["stale"] += 1

    def _record(self, request: dict, variant: _Variant, fallback: str, shadow: bool, prediction,
                missing: list, stale: list) -> None:
        self._log.append(request, self._key, self._tenant_field, variant.name, variant.ref, variant.version,
                         fallback, shadow, None if prediction is None else float(prediction), self.revision,
                         missing, stale)

    def _shadow(self, shadow_bits: int, request: dict) -> None:
        assert self._path is not None  # a shadow runs after a request, so after _build_path
        for i, v in enumerate(self._variant_list):
            if not shadow_bits >> i & 1:
                continue
            try:
                row, missing, stale, pred = self._path.inputs(i, request)
                if pred is None:
                    pred = float(v.predict(row.reshape(1, -1))[0])
            except Exception as err:  # noqa: BLE001 - a shadow never reaches the response
                self._shadow_errors += 1
                self._last_shadow_error = f"{v.name}: {err}"
                continue
            self._record(request, v, "", True, pred, missing, stale)

    def predict(self, request: dict) -> dict:
        """One request dict (``{"player_id": 42, "tenant": "studio-a"}``) -> ``{prediction, variant,
        model, version, fallback, missing, stale}``. Routing failures serve the default variant;
        shadows never affect the answer; inputs without a fresh value follow ``on_missing``."""
        self._maybe_refresh()
        path, variants = self._serving
        try:
            if path.native:
                index, shadow_bits, fallback, pred, missing, stale = path.serve(request)
                v = variants[index]
            else:
                index, shadow_bits, fallback, row, missing, stale = path.prepare(request)
                v = variants[index]
                pred = float(v.predict(row.reshape(1, -1))[0])
        except InvalidArgument:
            self._counts["refused"] += 1
            raise
        if missing or stale:
            self._count(missing, stale)
        # Inline rather than _record(): this is the per-request hot path.
        self._log.append(request, self._key, self._tenant_field, v.name, v.ref, v.version, fallback, False, pred,
                         self.revision, missing, stale)
        if shadow_bits:
            self._shadow(shadow_bits, request)
        return {"prediction": pred, "variant": v.name, "model": v.ref, "version": v.version, "fallback": fallback,
                "missing": missing, "stale": stale}

    def predict_batch(self, requests):
        """Many requests (a list of dicts, a DataFrame, a pyarrow Table or RecordBatch, a dict of
        columns: keel._data) in one call: routed, looked up and (for native models) predicted in one
        C++ call, one vectorized predict per variant. Returns a DataFrame for a DataFrame, else a
        list of dicts (the keys of :meth:`predict`)."""
        # A batch allocates a few small acyclic objects per request; in a process holding many objects
        # (a notebook, a training script) the cyclic collector would otherwise rescan them all every few
        # hundred requests and cost more than the batch itself.
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._predict_batch(requests)
        finally:
            if paused:
                gc.enable()

    def _predict_batch(self, requests):
        as_frame = hasattr(requests, "to_dict") and hasattr(requests, "columns")
        reqs = _data.to_rows(requests)  # every input kind (keel._data); a list of dicts row by row
        self._maybe_refresh()
        path, vl = self._serving
        try:
            b = path.serve_many(reqs, True)
        except InvalidArgument:
            self._counts["refused"] += len(reqs)
            raise
        preds = b["predictions"]
        if preds is None:
            preds = np.empty(len(reqs))
            for k, (rows, x) in enumerate(zip(b["rows"], b["inputs"])):
                if len(rows):
                    preds[rows] = vl[k].predict(x)
        decisions, missing, stale = b["decisions"], b["missing"], b["stale"]
        # The whole batch goes to the log in one call: its rows are built in C++, not here.
        self._log.append_served(reqs, self._key, self._tenant_field, [(v.name, v.ref, v.version) for v in vl],
                                decisions, preds, self.revision, missing, stale)
        self._counts["missing"] += sum(map(bool, missing))
        self._counts["stale"] += sum(map(bool, stale))
        preds = preds.tolist()
        served = [vl[index] for index, _, _ in decisions]
        for i, (_, shadow_bits, _) in enumerate(decisions):
            if shadow_bits:
                self._shadow(shadow_bits, reqs[i])
        columns = {"prediction": preds, "variant": [v.name for v in served], "model": [v.ref for v in served],
                   "version": [v.version for v in served], "fallback": [d[2] for d in decisions],
                   "missing": missing, "stale": stale}
        if as_frame:  # built from columns: a frame of dicts costs more than the batch
            import pandas as pd
            return pd.DataFrame(columns, index=requests.index)
        names = list(columns)
        return [dict(zip(names, row)) for row in zip(*columns.values())]

    # --- analysis -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write buffered assignments to the workspace now. The log also writes on its own (in C++) once
        512 rows wait or the oldest is 1 s old, so a killed process loses at most the last second;
        ``stats()["log"]`` shows what was written, what waits and the last write error."""
        self._log.flush()

    def assignments(self) -> Assignments:
        """Every logged decision: time, key, tenant, variant, model, version, fallback, shadow, prediction,
        revision, missing and stale (comma-separated model inputs, "" when none)."""
        self.flush()
        return Assignments(self._store.assignments(self.name, -1), self._key)

    def compare(self, outcomes, outcome: str, *, control: str | None = None, on: str | None = None,
                confidence: float = 0.95):
        """Compare variants on an outcome column: mean per variant and the difference to ``control``
        (default: the endpoint's default variant) with a normal-approximation confidence interval.
        ``outcomes`` is a DataFrame holding the sticky key column (or ``on``) and ``outcome``; each key
        counts once, in the variant it was last served (shadow calls excluded)."""
        return compare_variants(self.assignments().to_pandas(), outcomes, outcome, key=on or self._key,
                                control=control or self._router.default, confidence=confidence)

    def stats(self) -> dict:
        s = self._router.stats()
        s["shadow_errors"] = self._shadow_errors
        s["last_shadow_error"] = self._last_shadow_error
        s["revision"] = self.revision
        s["issues"] = list(self._issues)
        s.update(self._counts)  # requests answered with missing / stale inputs, and refused ones
        s["rejected_alias_moves"] = dict(self._rejected)
        s["log"] = self._log.stats()  # appended, written, buffered, dropped, failed_writes, last_error
        return s

    def __repr__(self) -> str:
        models = ", ".join(f"{v.name}={v.ref}@{w:g}" for v, w in
                           zip(self._variants.values(), self.weights.values()))
        return f"<keel.Endpoint {self.name} r{self.revision} {self._definition.routing} [{models}]>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        s = self._router.stats()
        rows = [{"variant": v.name, "model": v.model_ref, "serves": v.ref, "weight": self.weights[v.name],
                 "served": s["served"].get(v.name, 0), "data issue": "yes" if v.name in self._issues else ""}
                for v in self._variants.values()]
        return html_table(rows, title=f"Endpoint {self.name} (revision {self.revision}, "
                                      f"{self._definition.routing}, {s['fallbacks']} fallbacks)")


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
        revision = store.save(name, d)
    else:
        revision = store.current(name)
    return Endpoint(ws, name, revision, refresh_interval=refresh_interval)

"""In-process endpoints: online features -> Lua routing -> prediction -> assignment log.

``ws.endpoint(name, routing=..., variants={name: (model_ref, weight)}, features=[...])`` defines (or
revises) an endpoint and returns it; ``ws.endpoint(name)`` reopens the saved definition, in any
process. Definitions are saved with every revision; ``ep.set_weights``, new definitions, alias moves
(``churn@champion`` is re-resolved) and data issues on the variants' lineage (``ctx.issues``) reach
every process hosting the endpoint on its next request: each request compares the workspace's change
token (about a microsecond) and reloads only when the serving generation moved. New online snapshots
are picked up every ``refresh_interval`` seconds.

>>> ep = ws.endpoint("churn", routing="plugins/routing/sticky.lua",
...                  variants={"champion": ("churn@champion", 0.9), "challenger": ("churn@challenger", 0.1)},
...                  features=["player_activity:sessions_7d", "player_activity:spend_30d"])
>>> ep.predict({"player_id": 42, "tenant": "studio-a"})
{'prediction': 0.12, 'variant': 'champion', 'model': 'churn/3', 'version': 3}
"""

from __future__ import annotations

import atexit
import json
import math
import time
import warnings
import weakref
from typing import Any, Iterable, Mapping

import numpy as np

from keel import _core
from keel.errors import InvalidArgument
from keel.plugins import Router

# Models fitted on DataFrames warn when served numpy rows; the endpoint feeds columns in signature order.
warnings.filterwarnings("ignore", message="X does not have valid feature names")

_FLUSH_EVERY = 512
_open_endpoints: "weakref.WeakSet[Endpoint]" = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for ep in list(_open_endpoints):
        try:
            ep.flush()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _normalize(definition: Mapping[str, Any]) -> dict:
    d = dict(definition)
    routing = d.get("routing")
    if not routing:
        raise InvalidArgument("an endpoint needs routing= (a routing plugin, e.g. 'plugins/routing/sticky.lua')")
    variants = d.get("variants")
    if not variants:
        raise InvalidArgument("an endpoint needs variants={name: (model_ref, weight)}")
    items = variants.items() if isinstance(variants, Mapping) else variants
    out = []
    for item in items:
        if isinstance(variants, Mapping):
            name, spec = item
        else:
            name, spec = item[0], item[1:] if len(item) > 2 else item[1]
        if isinstance(spec, Mapping):
            model, weight = spec.get("model"), spec.get("weight", 1.0)
        elif isinstance(spec, (tuple, list)):
            model, weight = spec[0], (spec[1] if len(spec) > 1 else 1.0)
        else:
            model, weight = spec, 1.0
        if not isinstance(model, str) or not model:
            raise InvalidArgument(f"variant '{name}' needs a model ref such as 'churn@champion' or 'churn/3'")
        out.append({"name": str(name), "model": model, "weight": float(weight)})
    return {"routing": str(routing), "variants": out, "features": list(d.get("features") or []),
            "inputs": list(d.get("inputs") or []), "default": d.get("default") or "",
            "config": dict(d.get("config") or {}), "key": d.get("key") or "",
            "tenant_field": d.get("tenant_field") or "tenant", "output": d.get("output") or "auto"}


class _Variant:
    def __init__(self, name: str, model_ref: str):
        self.name = name
        self.model_ref = model_ref
        self.ref = ""          # resolved, e.g. churn/3
        self.version = 0
        self.lineage_ref = ""
        self.model = None
        self._predict = None

    def bind(self, mv, model, output: str) -> None:
        self.ref, self.version, self.lineage_ref, self.model = mv.ref, mv.version, mv.lineage_ref, model
        proba = getattr(model, "predict_proba", None)
        if output in ("auto", "proba") and proba is not None:
            self._predict = lambda x: np.asarray(proba(x))[:, -1]
        elif output == "proba":
            raise InvalidArgument(f"model {mv.ref} has no predict_proba; use output='predict'")
        else:
            self._predict = lambda x: np.asarray(model.predict(x)).reshape(len(x), -1)[:, 0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._predict(x)


class Endpoint:
    """A named endpoint hosted in this process. The same object is what ``keel serve`` hosts."""

    def __init__(self, ws, name: str, revision: Mapping, refresh_interval: float = 0.5):
        self._ws = ws
        self.name = name
        self._store = _core.EndpointStore(ws._native)
        self.refresh_interval = refresh_interval
        self._log: list[tuple] = []
        self._models: dict[str, Any] = {}   # resolved ref -> loaded model
        self._shadow_errors = 0
        self._last_shadow_error = ""
        self._issues: list[str] = []
        self._token = ws._native.change_token()
        self._generation = ws._native.serving_generation()  # read before what it guards
        self._apply(revision)
        _open_endpoints.add(self)

    # --- definition -----------------------------------------------------------------------------
    def _apply(self, revision: Mapping) -> None:
        d = json.loads(revision["definition"])
        self.revision = revision["revision"]
        self.definition = d
        self._key = d["key"] or self._default_key(d)
        self._tenant_field = d["tenant_field"]
        self._one_id = np.zeros(1, dtype=np.int64)
        self._reader = self._ws.features.online_reader(d["features"]) if d["features"] else None
        self._variants = {v["name"]: _Variant(v["name"], v["model"]) for v in d["variants"]}
        self._resolve_models()
        self._router = Router(d["routing"], [(v["name"], v["weight"]) for v in d["variants"]],
                              default=d["default"] or None, config={**d["config"], "key": self._key},
                              name=self.name, issues=self._issues)
        self._fast = None
        self._build_fast_path()
        self._next_refresh = time.monotonic() + self.refresh_interval

    def _build_fast_path(self) -> None:
        """When every variant is a native predictor fed by online features, one C++ call serves a
        request (lookup -> route -> predict); otherwise the Python path below composes the same steps."""
        self._fast = None
        self._variant_list = list(self._variants.values())
        if self._reader is None or self.definition["inputs"] or self.definition.get("output", "auto") != "auto":
            return
        natives = [getattr(v.model, "_native", None) for v in self._variant_list]
        if not all(isinstance(n, _core.NativePredictor) for n in natives):
            return
        try:
            self._fast = _core.RequestPath(self._router._native, self._reader, self._key, natives)
        except InvalidArgument:
            self._fast = None  # e.g. a model expecting other inputs: the Python path reports it per request

    def _default_key(self, d: dict) -> str:
        if d["features"]:
            view = d["features"][0].split(":", 1)[0]
            keys = self._ws.features.feature_view(view).join_keys
            if keys:
                return keys[0]
        return "user_id"

    def _resolve_models(self) -> bool:
        """Re-resolves every variant's model ref (aliases move); True when something changed."""
        changed = False
        before = {v.lineage_ref for v in self._variants.values() if v.lineage_ref}
        for v in self._variants.values():
            mv = self._ws.models.get(v.model_ref)
            if mv.ref != v.ref:
                model = self._models.get(mv.ref)
                if model is None:
                    model = self._models[mv.ref] = self._ws.models.load(mv.ref)
                v.bind(mv, model, self.definition.get("output", "auto"))
                changed = True
        if changed:
            self._link_lineage(before)
            self._fast = None  # rebuilt below with the new predictors
        issues = sorted(v.name for v in self._variants.values()
                        if v.lineage_ref and not self._ws.lineage.issues(v.lineage_ref).empty)
        if issues != self._issues:
            self._issues = issues
            if hasattr(self, "_router"):
                self._router.set_issues(issues)
            changed = True
        return changed

    @property
    def lineage_ref(self) -> str:
        return f"endpoint:{self.name}"

    def _link_lineage(self, before: set[str]) -> None:
        """model:<name>/<version> -serves-> endpoint:<name> for the versions served now; edges of
        versions no longer served are ended (as_of queries still see them)."""
        now = {v.lineage_ref for v in self._variants.values() if v.lineage_ref}
        lineage = self._ws.lineage
        for ref in now:
            lineage.add_edge(ref, "serves", self.lineage_ref)
        for ref in before - now:
            try:
                lineage.remove_edge(ref, "serves", self.lineage_ref)
            except Exception:  # noqa: BLE001 - another host ended it already
                pass

    def issues(self):
        """Open data issues upstream of this endpoint (feature views feeding its models), a DataFrame."""
        return self._ws.lineage.issues(self.lineage_ref)

    def refresh(self) -> None:
        """Pick up a new revision, moved aliases, data issues and new online snapshots now."""
        self.flush()
        current = self._store.current_revision(self.name)
        if current != self.revision:
            self._apply(self._store.current(self.name))
        else:
            self._resolve_models()
            if self._reader is not None:
                self._reader.refresh()
            if self._fast is None:
                self._build_fast_path()
        self._next_refresh = time.monotonic() + self.refresh_interval

    def _stale(self) -> bool:
        """Did a writer, in this process or another, move an alias, save a revision or open a data
        issue since we last looked? A change token first (no table read), the counter only then."""
        native = self._ws._native
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
        # The interval still paces what nobody announces: new online snapshots, buffered assignments.
        if self._stale() or time.monotonic() >= self._next_refresh:
            self.refresh()

    def set_weights(self, weights: Mapping[str, float]) -> int:
        """Change the split live; saved as a new revision that every hosting process picks up."""
        d = json.loads(json.dumps(self.definition))
        known = {v["name"] for v in d["variants"]}
        for name, w in weights.items():
            if name not in known:
                raise InvalidArgument(f"unknown variant '{name}' (variants: {', '.join(sorted(known))})")
        for v in d["variants"]:
            if v["name"] in weights:
                v["weight"] = float(weights[v["name"]])
        self._router.set_weights(weights)  # validates before anything is saved
        rev = self._store.save(self.name, json.dumps(d, sort_keys=True))
        self.revision, self.definition = rev["revision"], d
        return self.revision

    @property
    def weights(self) -> dict[str, float]:
        return {v["name"]: v["weight"] for v in self.definition["variants"]}

    def revisions(self):
        """Every saved revision of the definition (a DataFrame)."""
        import pandas as pd
        rows = self._store.revisions(self.name)
        frame = pd.DataFrame(rows, columns=["revision", "created_by", "created_at", "definition"])
        frame["created_at"] = pd.to_datetime(frame["created_at"], unit="ms", utc=True)
        return frame

    # --- serving --------------------------------------------------------------------------------
    def _features(self, requests: list[Mapping]) -> np.ndarray:
        cols = []
        if self._reader is not None:
            try:
                ids = np.fromiter((int(r[self._key]) for r in requests), dtype=np.int64, count=len(requests))
            except KeyError:
                raise InvalidArgument(f"request has no '{self._key}' (the entity key the endpoint's features "
                                      "are looked up by)") from None
            cols.append(np.asarray(self._reader.lookup(ids), dtype=np.float64))
        inputs = self.definition["inputs"]
        if inputs:
            try:
                cols.append(np.array([[float(r[c]) for c in inputs] for r in requests], dtype=np.float64))
            except KeyError as err:
                raise InvalidArgument(f"request has no input field {err}") from None
        if not cols:
            raise InvalidArgument(f"endpoint '{self.name}' has neither features= nor inputs= to build model input")
        return cols[0] if len(cols) == 1 else np.hstack(cols)

    def _record(self, request: Mapping, variant: _Variant, fallback: str, shadow: bool, prediction) -> None:
        self._log.append((int(time.time() * 1000), str(request.get(self._key, "")),
                          str(request.get(self.definition["tenant_field"], "")), variant.name, variant.ref,
                          variant.version, fallback, shadow, None if prediction is None else float(prediction),
                          self.revision))
        if len(self._log) >= _FLUSH_EVERY:
            self.flush()

    def _shadow(self, names, x: np.ndarray, requests: list[Mapping], rows: list[int] | None = None) -> None:
        for s in names:
            v = self._variants[s]
            try:
                preds = v.predict(x)
            except Exception as err:  # noqa: BLE001 - a shadow never reaches the response
                self._shadow_errors += 1
                self._last_shadow_error = f"{s}: {err}"
                continue
            for i, req in enumerate(requests):
                self._record(req, v, "", True, preds[i])

    def predict(self, request: Mapping) -> dict:
        """One request dict (``{"player_id": 42, "tenant": "studio-a"}``) -> ``{prediction, variant,
        model, version}``. Routing failures serve the default variant; shadows never affect the answer."""
        self._maybe_refresh()
        if self._fast is not None:
            index, shadow_bits, fallback, pred = self._fast.serve(request)
            v = self._variant_list[index]
            self._log.append((int(time.time() * 1000), str(request.get(self._key, "")),
                              str(request.get(self._tenant_field, "")), v.name, v.ref, v.version, fallback, False,
                              pred, self.revision))
            if len(self._log) >= _FLUSH_EVERY:
                self.flush()
            if shadow_bits:
                names = [w.name for i, w in enumerate(self._variant_list) if shadow_bits >> i & 1]
                self._shadow(names, self._features([request]), [request])
            return {"prediction": pred, "variant": v.name, "model": v.ref, "version": v.version}
        variant, shadows, fallback = self._router._native.route(request)
        v = self._variants[variant]
        if self._reader is not None and not self.definition["inputs"]:
            # fast path: one id into a reused array, one row back
            try:
                self._one_id[0] = request[self._key]
            except KeyError:
                raise InvalidArgument(f"request has no '{self._key}' (the entity key the endpoint's features "
                                      "are looked up by)") from None
            x = self._reader.lookup(self._one_id)
        else:
            x = self._features([request])
        pred = float(v.predict(x)[0])
        self._log.append((int(time.time() * 1000), str(request.get(self._key, "")),
                          str(request.get(self._tenant_field, "")), variant, v.ref, v.version, fallback, False,
                          pred, self.revision))
        if len(self._log) >= _FLUSH_EVERY:
            self.flush()
        if shadows:
            self._shadow(shadows, x, [request])
        return {"prediction": pred, "variant": variant, "model": v.ref, "version": v.version}

    def predict_batch(self, requests):
        """Many requests (a list of dicts or a DataFrame) in one call: routed in C++, predicted per
        variant in one vectorized call each. Returns a DataFrame for a DataFrame, else a list of dicts."""
        as_frame = hasattr(requests, "to_dict") and hasattr(requests, "columns")
        reqs = requests.to_dict("records") if as_frame else [dict(r) for r in requests]
        self._maybe_refresh()
        decisions = self._router.route_many(reqs)
        x = self._features(reqs)
        preds = np.empty(len(reqs))
        by_variant: dict[str, list[int]] = {}
        for i, d in enumerate(decisions):
            by_variant.setdefault(d.variant, []).append(i)
        for name, rows in by_variant.items():
            preds[rows] = self._variants[name].predict(x[rows])
        shadow_rows: dict[str, list[int]] = {}
        for i, d in enumerate(decisions):
            v = self._variants[d.variant]
            self._record(reqs[i], v, d.fallback, False, preds[i])
            for s in d.shadows:
                shadow_rows.setdefault(s, []).append(i)
        for s, rows in shadow_rows.items():
            self._shadow([s], x[rows], [reqs[i] for i in rows])
        out = [{"prediction": float(preds[i]), "variant": d.variant, "model": self._variants[d.variant].ref,
                "version": self._variants[d.variant].version} for i, d in enumerate(decisions)]
        if as_frame:
            import pandas as pd
            return pd.DataFrame(out, index=requests.index)
        return out

    # --- analysis -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write buffered assignments to the workspace (done every 512 requests and on refresh)."""
        if self._log:
            rows, self._log = self._log, []
            self._store.log(self.name, rows)

    def assignments(self) -> "Assignments":
        """Every logged decision: time, key, tenant, variant, model, version, fallback, shadow, prediction."""
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
        return s

    def __repr__(self) -> str:
        models = ", ".join(f"{v.name}={v.ref}@{w:g}" for v, w in
                           zip(self._variants.values(), self.weights.values()))
        return f"<keel.Endpoint {self.name} r{self.revision} {self.definition['routing']} [{models}]>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        s = self._router.stats()
        rows = [{"variant": v.name, "model": v.model_ref, "serves": v.ref, "weight": self.weights[v.name],
                 "served": s["served"].get(v.name, 0), "data issue": "yes" if v.name in self._issues else ""}
                for v in self._variants.values()]
        return html_table(rows, title=f"Endpoint {self.name} (revision {self.revision}, "
                                      f"{self.definition['routing']}, {s['fallbacks']} fallbacks)")


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
    """``ws.endpoint(name)`` reopens a saved endpoint; with a definition (routing=, variants=,
    features=, inputs=, default=, config=, key=) it saves a new revision when anything changed.
    Fields not given keep their saved values."""
    store = _core.EndpointStore(ws._native)
    if definition:
        if store.current_revision(name):
            saved = json.loads(store.current(name)["definition"])
            saved["variants"] = {v["name"]: (v["model"], v["weight"]) for v in saved["variants"]}
            definition = {**saved, **definition}
        d = _normalize(definition)
        # Check it serves before saving: the plugin loads, the models resolve.
        Router(d["routing"], [(v["name"], v["weight"]) for v in d["variants"]], default=d["default"] or None,
               config=d["config"], name=name)
        for v in d["variants"]:
            ws.models.get(v["model"])
        revision = store.save(name, json.dumps(d, sort_keys=True))
    else:
        revision = store.current(name)
    return Endpoint(ws, name, revision, refresh_interval=refresh_interval)

"""``keel plan`` and ``keel apply``: make a workspace match its definitions, all or nothing.

Both run the same steps through the same core calls a notebook makes (define_entity, define_view,
add_rule, define_training_spec, EndpointStore.save), inside one write transaction on a private
handle of the workspace: the core checks everything it always checks (a view change that needs a
new version, a routing plugin that must load, models that must resolve), and every change is
compared with the state before it. ``plan`` then rolls the transaction back; ``apply`` commits it,
or rolls back on the first error so nothing is half-written.

Before that, references between definitions are checked as a whole (an endpoint naming a feature
no view has, a view naming an unknown entity), and every problem is reported at once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from keel import _core
from keel.defs.load import Definitions, load
from keel.defs.objects import Definition, Endpoint, Entity, FeatureView, TrainingSpec
from keel.defs.plan import Change, Plan
from keel.workspace import is_database_url
from keel.errors import Conflict, InvalidArgument, KeelError
from keel.quality import Rule, checks


# ------------------------------------------------------------------------------------ the state now

class _State:
    """What the workspace holds now, read inside the transaction before any change."""

    def __init__(self, ws):
        native = ws.features.native
        self.entities = {e.name: e for e in native.entities()}
        self.views = {info.spec.name: info.spec for info in native.list()}
        self.specs = {s.name: s for s in ws.features.training_specs()}
        self.endpoint_store = _core.EndpointStore(ws.native)
        self.endpoints = {n: self.endpoint_store.current(n) for n in self.endpoint_store.names()}

    def columns(self, view: str) -> list[str]:
        return [c.name for c in self.views[view].features]


def _removed(defs: Definitions, state: _State) -> list[tuple[str, str]]:
    """(kind, name) of what the workspace holds and the definitions do not, in removal order:
    endpoints first, entities last, so nothing is removed while something live still uses it."""
    out = [("endpoint", n) for n in sorted(state.endpoints) if not defs.get("endpoint", n)]
    out += [("training_spec", n) for n in sorted(state.specs) if not defs.get("training_spec", n)]
    out += [("feature_view", n) for n in sorted(state.views) if not defs.get("feature_view", n)]
    out += [("entity", n) for n in sorted(state.entities) if not defs.get("entity", n)]
    return out


# ------------------------------------------------------------------------------- references, whole

def check_references(defs: Definitions, state: _State, removed: set[tuple[str, str]]) -> None:
    """Every name a definition refers to exists among the definitions or in the workspace (and is
    not being pruned). All problems at once, each naming the file and line to fix."""
    problems: list[str] = []

    def live(kind: str, name: str) -> bool:
        if defs.get(kind, name):
            return True
        held = {"entity": state.entities, "feature_view": state.views}[kind]
        return name in held and (kind, name) not in removed

    def view_columns(view: str) -> list[str]:
        d = defs.get("feature_view", view)
        return list(d.schema) if isinstance(d, FeatureView) else state.columns(view)

    def missing(kind: str, name: str) -> str:
        """Why `name` is not there: pruned, or unknown (with what is declared)."""
        if (kind, name) in removed:
            return "which --prune would remove (it is in the workspace, not in the definitions): declare it"
        names = sorted(defs.by_kind[kind])
        return "which is neither declared nor in the workspace" + (f" (declared: {', '.join(names)})" if names else "")

    for view in defs.of(FeatureView):
        for entity in view.entities:
            if not live("entity", entity):
                problems.append(f"{view.where()} uses entity '{entity}', {missing('entity', entity)}")
    for d in defs.of(TrainingSpec) + defs.of(Endpoint):
        for feature in d.features:
            view, _, column = feature.partition(":")
            if not live("feature_view", view):
                problems.append(f"{d.where()} reads '{feature}' of feature view '{view}', "
                                f"{missing('feature_view', view)}")
            elif column and column not in view_columns(view):
                problems.append(f"{d.where()} reads '{feature}', but feature view '{view}' has no column "
                                f"'{column}' (its columns: {', '.join(view_columns(view))})")
            elif not column and isinstance(d, TrainingSpec):
                problems.append(f"{d.where()} lists '{feature}': a training spec names each feature as "
                                f"'view:column' (or gives the defs.FeatureView for all its columns)")
    if problems:
        head = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        raise InvalidArgument(f"{head} in the definitions, nothing was changed:\n  - " + "\n  - ".join(problems))


# ------------------------------------------------------------------------------------- describing

def _ttl_text(ms: int) -> str:
    if not ms:
        return "none"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _column_text(c) -> str:
    dtype = f"vector[{c.dim}]" if c.dtype == "vector" else c.dtype
    return dtype + (", pii" if c.pii else "")


def _field_changes(before: dict, after: dict) -> list[str]:
    return [f"~ {k}: {_short(before.get(k))} -> {_short(after.get(k))}"
            for k in after if before.get(k) != after.get(k)]


def _short(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if value else "''"
    return json.dumps(value, sort_keys=True, default=str)


def _view_fields(spec) -> dict:
    return {"entities": list(spec.entities), "ttl": _ttl_text(spec.ttl_ms), "owner": spec.owner,
            "description": spec.description, "tags": dict(spec.tags), "event_timestamp_column": spec.event_column,
            "created_timestamp_column": spec.created_column}


def _view_changes(before, after) -> list[str]:
    old = {c.name: _column_text(c) for c in before.features}
    new = {c.name: _column_text(c) for c in after.features}
    out = [f"+ column {n}: {t}" for n, t in new.items() if n not in old]
    out += [f"- column {n}" for n in old if n not in new]
    out += [f"~ column {n}: {old[n]} -> {t}" for n, t in new.items() if n in old and old[n] != t]
    return out + _field_changes(_view_fields(before), _view_fields(after))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """An endpoint definition as path -> leaf value; variants are keyed by name, not position."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        out = {}
        for v in value:
            out.update(_flatten({k: x for k, x in v.items() if k != "name"}, f"{prefix}{v['name']}."))
        return out
    return {prefix.rstrip("."): value}


def _definition_changes(before: dict, after: dict) -> list[str]:
    old, new = _flatten(before), _flatten(after)
    out = [f"~ {k}: {_short(old[k]) if k in old else '(none)'} -> {_short(v)}"
           for k, v in new.items() if old.get(k, None) != v]
    return out + [f"- {k}" for k in old if k not in new]


def _rule_text(r: Rule) -> str:
    args = ", ".join(f"{k}={_short(v)}" for k, v in r.args.items())
    return f"{r.label}({args}) [{r.severity}]"


# ----------------------------------------------------------------------------------------- steps

def _entity_step(ws, d: Entity, state: _State) -> Change | None:
    from keel.features import _column_spec
    keys = [(k, _column_spec(k, t)["dtype"]) for k, t in d.join_keys.items()]
    before = state.entities.get(d.name)
    after = ws.features.native.define_entity(d.name, keys, d.description)
    if before is None:
        keys_text = ", ".join(f"{k.name} ({k.dtype})" for k in after.join_keys)
        return Change("create", d.kind, d.name, [f"join keys: {keys_text}"], d.source)
    details = _field_changes(
        {"join_keys": [(k.name, k.dtype) for k in before.join_keys], "description": before.description},
        {"join_keys": [(k.name, k.dtype) for k in after.join_keys], "description": after.description})
    return Change("update", d.kind, d.name, details, d.source) if details else None


def _rules_step(ws, d: FeatureView) -> list[str]:
    """Makes the view's stored rules exactly the declared ones; returns what changed."""
    if d.rules is None:
        return []
    target = checks(ws, f"feature_view:{d.name}")
    stored = target._stored_rules()
    # JSON round trip: a tuple declared is the list stored, so an unchanged rule compares equal.
    wanted = [Rule(r.plugin, json.loads(json.dumps(dict(r.args))), r.severity, r.name) for r in d.rules]
    out = []
    for rule in wanted:
        match = next((i for i, (_, s) in enumerate(stored) if s == rule), None)
        if match is None:
            target.add_rule(rule.plugin, severity=rule.severity, name=rule.name, **rule.args)
            out.append(f"+ rule {_rule_text(rule)}")
        else:
            stored.pop(match)
    for rule_id, rule in stored:
        target.remove_rule(rule_id)
        out.append(f"- rule {_rule_text(rule)}")
    return out


def _view_step(ws, d: FeatureView, state: _State) -> Change | None:
    before = state.views.get(d.name)
    owner = d.owner or (before.owner if before is not None else ws.user)
    after = ws.features.feature_view(
        d.name, d.entities, d.schema, ttl=d.ttl, owner=owner, description=d.description, tags=d.tags,
        event_timestamp_column=d.event_timestamp_column, created_timestamp_column=d.created_timestamp_column)._spec
    rules = _rules_step(ws, d)
    if before is None:
        details = [f"version {after.version}: " + ", ".join(f"{c.name} ({_column_text(c)})" for c in after.features),
                   f"entities: {', '.join(after.entities)}; ttl: {_ttl_text(after.ttl_ms)}; owner: {after.owner}"]
        return Change("create", d.kind, d.name, details + rules, d.source)
    details = _view_changes(before, after) + rules
    if after.version != before.version:
        return Change("new_version", d.kind, d.name,
                      [f"version {before.version} -> {after.version} (the change needs a new version: the "
                       f"data of version {before.version} stays readable as that version)"] + details, d.source)
    return Change("update", d.kind, d.name, details, d.source) if details else None


def _spec_fields(s) -> dict:
    return {"features": list(s.features), "description": s.description, "owner": s.owner, "tags": dict(s.tags)}


def _spec_step(ws, d: TrainingSpec, state: _State) -> Change | None:
    before = state.specs.get(d.name)
    owner = d.owner or (before.owner if before is not None else ws.user)
    after = ws.features.training_spec(d.name, d.features, description=d.description, owner=owner, tags=d.tags)
    if before is None:
        return Change("create", d.kind, d.name, [f"features: {', '.join(after.features)}"], d.source)
    if after.revision == before.revision:
        return None
    old, new = before.features, after.features
    details = [f"+ feature {f}" for f in new if f not in old] + [f"- feature {f}" for f in old if f not in new]
    if [f for f in old if f in new] != [f for f in new if f in old]:
        details.append(f"~ feature order: {', '.join(new)}")
    rest = {k: v for k, v in _spec_fields(before).items() if k != "features"}
    details += _field_changes(rest, {k: v for k, v in _spec_fields(after).items() if k != "features"})
    return Change("update", d.kind, d.name, details, d.source)


def _endpoint_step(ws, d: Endpoint, state: _State) -> Change | None:
    from keel.plugins import ensure_search_path
    ensure_search_path()  # the core resolves the routing plugin's ref
    before = state.endpoints.get(d.name)
    definition = _core.EndpointDefinition.update(None, dict(d.definition))
    saved = state.endpoint_store.save(d.name, definition)
    if before is None:
        variants = ", ".join(f"{v.name}={v.model} ({v.weight:g})" for v in saved.definition.variants)
        return Change("create", d.kind, d.name, [f"revision {saved.revision}: {variants}"], d.source)
    if saved.revision == before.revision:
        return None
    details = [f"revision {before.revision} -> {saved.revision}"]
    details += _definition_changes(before.definition.to_dict(), saved.definition.to_dict())
    return Change("update", d.kind, d.name, details, d.source)


_STEPS: list[tuple[type[Definition], Callable]] = [
    (Entity, _entity_step), (FeatureView, _view_step), (TrainingSpec, _spec_step), (Endpoint, _endpoint_step)]


def _remove(ws, kind: str, name: str) -> None:
    if kind == "endpoint":
        ws.remove_endpoint(name)
    elif kind == "training_spec":
        ws.features.remove_training_spec(name)
    elif kind == "feature_view":
        ws.features.retire_view(name)
    else:
        ws.features.remove_entity(name)


_REMOVAL_NOTES = {
    "endpoint": "removed: new requests are refused; its revisions and logs stay as history",
    "training_spec": "removed: recorded training sets built from it stay",
    "feature_view": "retired: no longer listed, ingested or served online; its offline data stays so recorded "
                    "training sets still rebuild",
    "entity": "removed",
}


# ------------------------------------------------------------------------------------------ entry

def _private_handle(workspace, create: bool):
    """A handle of its own (no cached state shared with the caller's), the path it shows, and a
    temporary folder to delete afterwards (planning against a workspace that does not exist yet)."""
    import keel
    if hasattr(workspace, "native"):
        shown = workspace.metadata if is_database_url(workspace.location) else workspace.path
        return workspace.reopen(user=workspace.user, role=workspace.role), shown, None
    path = os.fspath(workspace)
    if is_database_url(path):
        return keel.open(path), path, None
    if not create and not os.path.exists(os.path.join(path, "keel.db")):
        if os.path.exists(path) and not os.path.isdir(path):
            raise InvalidArgument(f"workspace '{path}' is a file, not a Keel workspace folder")
        empty = tempfile.mkdtemp(prefix="keel-plan-")  # everything is new: plan against an empty one
        return keel.open(os.path.join(empty, "empty.keel")), path, empty
    return keel.open(path), path, None


def _run(workspace, definitions, *, prune: bool, commit: bool, expect_removals=None) -> Plan:
    defs = load(definitions)
    # A handle of its own: whatever its stores cache inside a transaction that rolls back goes with it.
    ws, shown, temporary = _private_handle(workspace, create=commit)
    try:
        return _steps(ws, shown, defs, prune=prune, commit=commit, expect_removals=expect_removals)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


def _steps(ws, shown: str, defs: Definitions, *, prune: bool, commit: bool, expect_removals) -> Plan:
    with ws.native.transaction(commit=commit):
        state = _State(ws)
        removable = _removed(defs, state)
        check_references(defs, state, set(removable) if prune else set())
        if expect_removals is not None and prune and set(removable) != set(expect_removals):
            raise Conflict("the workspace changed since the plan you confirmed: run keel apply --prune again")
        changes, unchanged = [], []
        for kind, step in _STEPS:
            for d in defs.of(kind):
                try:
                    change = step(ws, d, state)
                except KeelError as exc:  # the core's check: say which definition, compiler style
                    named = f"{d.kind.replace('_', ' ')} '{d.name}'"
                    message = str(exc) if str(exc).startswith(named) else f"{named}: {exc}"
                    raise type(exc)(f"{d.source}: {message}") from exc
                if change is None:
                    unchanged.append(d.ref)
                else:
                    changes.append(change)
        removals = [Change("remove", kind, name, [_REMOVAL_NOTES[kind]]) for kind, name in removable]
        if prune:
            for r in removals:
                _remove(ws, r.kind, r.name)
    return Plan(workspace=str(shown), changes=changes + (removals if prune else []), unchanged=unchanged,
                unmanaged=[] if prune else removals, prune=prune, applied=commit, sources=list(defs.sources))


def plan(workspace, *definitions, prune: bool = False) -> Plan:
    """What ``apply`` would change, changing nothing: every check of apply is run, then rolled back.

    ``workspace``: a keel workspace or its path (one that does not exist yet plans as empty).
    ``definitions``: folders or .py files of definitions, modules, keel.defs objects or lists of them.
    ``prune=True`` lists what the workspace holds and the definitions do not among the changes.
    """
    return _run(workspace, definitions, prune=prune, commit=False)


def apply(workspace, *definitions, prune: bool = False, yes: bool = False) -> Plan:
    """Makes the workspace match the definitions, all or nothing; returns what changed.

    Applying the same definitions again changes nothing. Objects in the workspace that the
    definitions do not declare are kept, and listed in ``plan.unmanaged``; with ``prune=True`` they
    are removed (views retired: their data stays), which needs ``yes=True`` once the plan has been
    read: without it, a plan listing them raises.
    """
    if prune and not yes:
        preview = _run(workspace, definitions, prune=True, commit=False)
        if preview.removals:
            raise InvalidArgument(f"apply with prune would remove {len(preview.removals)} object(s): "
                                  f"{', '.join(c.ref for c in preview.removals)}; read the plan and pass "
                                  "yes=True (keel apply --prune --yes) to confirm")
        return _run(workspace, definitions, prune=True, commit=True, expect_removals=[])
    return _run(workspace, definitions, prune=prune, commit=True)


def apply_confirmed(workspace, definitions, confirmed: Plan) -> Plan:
    """Applies with prune after a person confirmed `confirmed` (a plan with prune): refused with
    Conflict when what would be removed is no longer what they saw."""
    return _run(workspace, definitions, prune=True, commit=True,
                expect_removals=[(c.kind, c.name) for c in confirmed.removals])


__all__ = ["plan", "apply", "apply_confirmed", "check_references"]

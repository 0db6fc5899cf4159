"""The declared objects of definitions as code: plain values that say what the workspace should hold.

They do nothing on their own: ``keel plan`` compares them with a workspace and ``keel apply`` makes
the workspace match (:mod:`keel.defs.engine`). Each remembers the file and line that declared it,
so that every error points at the definition to fix.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from keel.errors import InvalidArgument
from keel.quality import Rule


def _declared_at(depth: int = 2) -> str:
    """file:line of the code that constructed the object (for error messages)."""
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return "<unknown>"
    file = frame.f_code.co_filename
    relative = os.path.relpath(file) if os.path.isabs(file) else file
    return f"{file if relative.startswith('..') else relative}:{frame.f_lineno}"


def _name(value: Any, kind: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{kind} name {value!r}: expected a non-empty string")
    return value


class Definition:
    """Base of the declared objects: a kind ("entity", "feature_view", ...), a name, a source line."""

    kind: ClassVar[str] = ""
    name: str
    source: str

    @property
    def ref(self) -> str:
        """The lineage ref of the object this declares (``feature_view:player_activity``)."""
        return f"{self.kind}:{self.name}"

    def where(self) -> str:
        return f"{self.kind.replace('_', ' ')} '{self.name}' ({self.source})"

    def __repr__(self) -> str:
        return f"keel.defs.{type(self).__name__}({self.name!r})"


class Entity(Definition):
    """``defs.Entity("player", join_keys=["player_id"])``; typed keys: ``join_keys={"user": "string"}``."""

    kind = "entity"

    def __init__(self, name: str, join_keys: Sequence[str] | Mapping[str, str] | str, *, description: str = ""):
        self.name = _name(name, "entity")
        if isinstance(join_keys, str):
            join_keys = [join_keys]
        if isinstance(join_keys, Mapping):
            keys = {str(k): str(t) for k, t in join_keys.items()}
        else:
            keys = {str(k): "int64" for k in join_keys}
        if not keys:
            raise InvalidArgument(f"entity '{name}' needs at least one join key, e.g. join_keys=['player_id']")
        self.join_keys: dict[str, str] = keys
        self.description = description
        self.source = _declared_at()


class FeatureView(Definition):
    """A feature view as code: the arguments of ``ws.features.feature_view`` plus its quality rules.

    ``rules=None`` (the default) leaves the view's rules as they are in the workspace; a list
    (``[]`` included) makes them exactly those. ``view["spend_30d"]`` is the feature
    ``"player_activity:spend_30d"``, for training-set specs and endpoints.
    """

    kind = "feature_view"

    def __init__(self, name: str, entities: Sequence[Entity | str] | Entity | str, schema: Mapping[str, Any], *,
                 ttl=None, owner: str = "", description: str = "", tags: Mapping[str, str] | None = None,
                 rules: Iterable[Rule] | None = None, event_timestamp_column: str = "event_timestamp",
                 created_timestamp_column: str = "created_timestamp"):
        self.name = _name(name, "feature view")
        if isinstance(entities, (Entity, str)):
            entities = [entities]
        self.entities = [e.name if isinstance(e, Entity) else _name(e, "entity") for e in entities]
        if not self.entities:
            raise InvalidArgument(f"feature view '{name}' needs entities=, e.g. entities=[player]")
        if not schema:
            raise InvalidArgument(f"feature view '{name}' needs schema=, e.g. schema={{'spend_30d': 'float64'}}")
        self.schema = dict(schema)
        self.ttl = ttl
        self.owner = owner
        self.description = description
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if rules is not None:
            rules = list(rules)
            for r in rules:
                if not isinstance(r, Rule):
                    raise InvalidArgument(f"feature view '{name}': rules= takes keel.quality.rule(...) values, "
                                          f"got {r!r}")
        self.rules: list[Rule] | None = rules
        self.event_timestamp_column = event_timestamp_column
        self.created_timestamp_column = created_timestamp_column
        self.source = _declared_at()

    def __getitem__(self, column: str) -> str:
        if column not in self.schema:
            raise InvalidArgument(f"feature view '{self.name}' has no column '{column}' "
                                  f"(its columns: {', '.join(self.schema)})")
        return f"{self.name}:{column}"

    @property
    def features(self) -> list[str]:
        """Every column as a ``"view:column"`` feature."""
        return [f"{self.name}:{c}" for c in self.schema]


def _feature_list(features: Iterable[Any], owner: str) -> list[str]:
    """Features given as "view:column" strings, whole views (a FeatureView or its bare name for an
    endpoint), or training-set specs, flattened in order without repeats."""
    out: list[str] = []
    for f in features:
        items = f.features if isinstance(f, (FeatureView, TrainingSpec)) else [f]
        for item in items:
            if not isinstance(item, str) or not item:
                raise InvalidArgument(f"{owner}: feature {item!r} is not 'view:column', a defs.FeatureView "
                                      "or a defs.TrainingSpec")
            if item not in out:
                out.append(item)
    return out


class TrainingSpec(Definition):
    """A named list of features training sets are built from (Feast's feature service):
    ``ws.features.training_set(labels, spec="churn_training")``."""

    kind = "training_spec"

    def __init__(self, name: str, features: Iterable[Any], *, description: str = "", owner: str = "",
                 tags: Mapping[str, str] | None = None):
        self.name = _name(name, "training spec")
        self.features = _feature_list(features, f"training spec '{name}'")
        if not self.features:
            raise InvalidArgument(f"training spec '{name}' needs at least one feature")
        self.description = description
        self.owner = owner
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.source = _declared_at()


class Endpoint(Definition):
    """An endpoint as code: the keyword arguments of ``ws.endpoint(name, ...)`` (model= or routing= and
    variants=, features=, inputs=, on_missing=, defaults=, shadow=, tenants=, ...). ``features=`` may
    also hold defs.FeatureView and defs.TrainingSpec objects. The declaration is the whole
    definition: a field left out is at its default, not at the value saved in the workspace."""

    kind = "endpoint"

    def __init__(self, name: str, **definition: Any):
        self.name = _name(name, "endpoint")
        if "model" not in definition and "variants" not in definition:
            raise InvalidArgument(f"endpoint '{name}' needs model= or variants=")
        if "features" in definition:
            features = definition["features"]
            if isinstance(features, (str, FeatureView, TrainingSpec)):
                features = [features]
            definition["features"] = _feature_list(features, f"endpoint '{name}'")
        self.definition = definition
        self.source = _declared_at()

    @property
    def features(self) -> list[str]:
        return list(self.definition.get("features", []))

"""Precomputed predictions: what a batch job computed offline, served by endpoints like a live model.

A job scores every player (churn scores) or ranks items for each (top-k recommendations) and writes
the result with the model version that computed it::

    ws.predictions.write("player_recs", "recs/3", frame)   # player_id, items (lists of ids), prediction?
    ws.endpoint("recs", routing="plugins/routing/sticky.lua", variants={
        "current": ("predictions:player_recs@champion", 0.9),   # the table of the version the alias names
        "next": ("predictions:player_recs/4", 0.1)})            # the table written by version 4
    ws.endpoint("recs").predict({"player_id": 42})   # {"items": [...], "model": "recs/3", ...}

Each model version's values live in a feature view of their own (``player_recs.v3``), materialized
online, so a lookup is as fast as an online feature and the answer is routed, logged and counted as
any other: A/B weights choose between two versions' tables, an alias move switches tables (refused
while the new version has written no table), and the answer names the model version that computed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from keel import _core
from keel._data import to_table
from keel.errors import InvalidArgument


class Predictions:
    """``ws.predictions``: the workspace's prediction tables."""

    def __init__(self, workspace) -> None:
        self._ws = workspace
        self._native = _core.PredictionTables(workspace._native)

    def write(self, name: str, model_ref: str, frame: Any, *, entity: str | None = None,
              ttl: Any = None) -> _core.PredictionTable:
        """Writes the predictions ``model_ref`` (``"recs/3"``, ``"recs@champion"``) made, as table ``name``.

        ``frame`` (pandas or pyarrow) holds the entity's join keys and a ``prediction`` column (a
        score), an ``items`` column (lists of item ids, best first: integers up to 2**53), or both;
        ``event_timestamp`` (with a zone) is when they were computed (default: now). ``entity`` names
        the entity (default: the one whose join keys the frame holds). Writing the same version again
        replaces the values of the entities it holds. ``ttl`` marks older values stale. Returns the
        table version written.
        """
        version = self._ws.models.get(model_ref)
        df = frame.to_pandas() if hasattr(frame, "to_pandas") and not isinstance(frame, pd.DataFrame) else frame
        if not isinstance(df, pd.DataFrame):
            raise InvalidArgument(f"write() takes a pandas DataFrame or a pyarrow Table, got {type(frame).__name__}")
        entity_spec = self._entity(df, entity, name)
        keys = list(entity_spec.join_keys)
        if "prediction" not in df.columns and "items" not in df.columns:
            raise InvalidArgument(f"prediction table '{name}': the frame needs a 'prediction' column (a score) or "
                                  f"an 'items' column (lists of item ids), got columns {list(df.columns)}")
        out = df[keys].copy()
        schema: dict[str, str] = {}
        if "prediction" in df.columns:
            out["prediction"] = pd.to_numeric(df["prediction"], errors="raise").astype("float64")
            schema["prediction"] = "float64"
        k = 0
        if "items" in df.columns:
            lists = [_item_list(v, i, name) for i, v in enumerate(df["items"])]
            k = max((len(v) for v in lists), default=0)
            if k == 0:
                raise InvalidArgument(f"prediction table '{name}': every 'items' list is empty")
            for rank in range(k):
                out[f"item_{rank + 1}"] = pd.array([v[rank] if rank < len(v) else None for v in lists], dtype="Int64")
                schema[f"item_{rank + 1}"] = "int64"
        out["event_timestamp"] = (df["event_timestamp"] if "event_timestamp" in df.columns
                                  else pd.Timestamp.now(tz="UTC").floor("ms"))
        view = _core.PredictionTables.view_name(name, version.version)
        fs = self._ws.features
        existing = _existing_items(fs, view)
        for rank in range(k, existing):  # keep the columns an earlier write of this version made
            schema[f"item_{rank + 1}"] = "int64"
        fv = fs.feature_view(view, entities=[entity_spec.name], schema=schema, ttl=ttl,
                             description=f"predictions of {version.ref} for table {name}",
                             tags={"predictions.table": name, "predictions.model": version.ref})
        fv.ingest(to_table(out))
        fs.materialize(view)
        return self._native.record(name, version.name, version.version, "prediction" in schema, max(k, existing),
                                   len(out))

    def _entity(self, df: pd.DataFrame, entity: str | None, name: str):
        entities = self._ws.features.entities()
        if entity is not None:
            for e in entities:
                if e.name == entity:
                    missing = [k for k in e.join_keys if k not in df.columns]
                    if missing:
                        raise InvalidArgument(f"prediction table '{name}': the frame lacks join keys {missing} of "
                                              f"entity '{entity}'")
                    return e
            raise InvalidArgument(f"prediction table '{name}': no entity '{entity}' (entities: "
                                  f"{sorted(e.name for e in entities)})")
        matches = [e for e in entities if e.join_keys and all(k in df.columns for k in e.join_keys)]
        if len(matches) != 1:
            found = sorted(e.name for e in matches) if matches else "none"
            raise InvalidArgument(f"prediction table '{name}': cannot tell the entity from the frame's columns "
                                  f"{list(df.columns)} (entities whose join keys it holds: {found}): give entity=")
        return matches[0]

    def versions(self, name: str) -> list[_core.PredictionTable]:
        """Every version of table ``name``, oldest first."""
        return list(self._native.versions(name))

    def names(self) -> list[str]:
        return list(self._native.names())

    def to_pandas(self) -> pd.DataFrame:
        """One row per table version: name, model, version, view, score, items, rows, written_at/by."""
        rows = [{f: getattr(t, f) for f in t._fields} for n in self.names() for t in self.versions(n)]
        return pd.DataFrame(rows, columns=list(_core.PredictionTable._fields))

    def __repr__(self) -> str:
        return f"<keel.Predictions {self.names()}>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        return html_table(self.to_pandas().to_dict("records"), title="prediction tables")


def _item_list(value: Any, row: int, name: str) -> list[int]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise InvalidArgument(f"prediction table '{name}': items of row {row} must be a list of item ids, "
                              f"got {value!r}")
    out = []
    for item in value:
        if isinstance(item, bool) or not float(item).is_integer() or abs(int(item)) > 2**53:
            raise InvalidArgument(f"prediction table '{name}': row {row} holds item {item!r}: item ids are "
                                  "integers up to 2**53")
        out.append(int(item))
    return out


def _existing_items(fs, view: str) -> int:
    try:
        schema = fs.view(view).schema
    except LookupError:
        return 0
    return sum(1 for column in schema if column.startswith("item_"))

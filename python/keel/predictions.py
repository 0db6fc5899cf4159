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

``online="redis://..."`` materializes a table to Redis, where every host's endpoints read it; a Spark
or Dask frame (a batch job's ``spark_udf`` output) is written by its executors, partition by partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from keel import _core
from keel._data import to_table
from keel.errors import InvalidArgument
from keel.features import _engine_of


class Predictions:
    """``ws.predictions``: the workspace's prediction tables."""

    def __init__(self, workspace) -> None:
        self._ws = workspace
        self._native = _core.PredictionTables(workspace._native)

    def write(self, name: str, model_ref: str, frame: Any, *, entity: str | None = None, ttl: Any = None,
              online: str | None = None) -> _core.PredictionTable:
        """Writes the predictions ``model_ref`` (``"recs/3"``, ``"recs@champion"``) made, as table ``name``.

        ``frame`` (pandas, pyarrow, or a Spark or Dask DataFrame) holds the entity's join keys and a
        ``prediction`` column (a score), an ``items`` column (lists of item ids, best first: integers
        up to 2**53), or both; ``event_timestamp`` (with a zone) is when they were computed (default:
        now). A Spark or Dask frame is written by the executors, a partition each, as ``fv.ingest``
        does: nothing is collected to the driver. ``entity`` names the entity (default: the one whose
        join keys the frame holds). Writing the same version again replaces the values of the
        entities it holds. ``ttl`` marks older values stale.

        ``online="redis://host:port/db"`` serves the table from Redis (every host's endpoints read it
        there), ``"local"`` from the workspace's local store. Left out, a version written before stays
        where it is, a new version goes where the table's latest version went, and a new table where
        the workspace's views are materialized (Redis when they use one Redis, else local). Returns
        the table version written.
        """
        version = self._ws.models.get(model_ref)
        engine = _engine_of(frame)
        if engine is None:
            df = frame.to_pandas() if hasattr(frame, "to_pandas") and not isinstance(frame, pd.DataFrame) else frame
            if not isinstance(df, pd.DataFrame):
                raise InvalidArgument(f"write() takes a pandas, Spark or Dask DataFrame or a pyarrow Table, got "
                                      f"{type(frame).__name__}")
            frame = df
        columns = [str(c) for c in frame.columns]
        entity_spec = self._entity(columns, entity, name)
        if "prediction" not in columns and "items" not in columns:
            raise InvalidArgument(f"prediction table '{name}': the frame needs a 'prediction' column (a score) or "
                                  f"an 'items' column (lists of item ids), got columns {columns}")
        view = _core.PredictionTables.view_name(name, version.version)
        target = self._online(name, view, online)
        _core.FeatureStore.check_online(target)  # Redis down fails the write here, before any row is ingested
        rows = _Rows(name, list(entity_spec.join_keys), "prediction" in columns, 0,
                     pd.Timestamp.now(tz="UTC").floor("ms"))
        if engine is None:
            lists = _item_lists(frame, rows.keys, name) if "items" in columns else []
            rows.items = max((len(v) for v in lists), default=0)
        elif "items" in columns:
            rows.items = engine.prediction_items(frame, name, rows.keys)  # the longest list, counted by the executors
        if "items" in columns and rows.items == 0:
            raise InvalidArgument(f"prediction table '{name}': every 'items' list is empty")
        if engine is not None and rows.score:
            engine.check_prediction_column(frame, name)
        schema = rows.schema()
        fs = self._ws.features
        existing = _existing_items(fs, view)
        for rank in range(rows.items, existing):  # keep the columns an earlier write of this version made
            schema[f"item_{rank + 1}"] = "int64"
        fv = fs.feature_view(view, entities=[entity_spec.name], schema=schema, ttl=ttl,
                             description=f"predictions of {version.ref} for table {name}",
                             tags={"predictions.table": name, "predictions.model": version.ref})
        if engine is None:
            written = fv.ingest(to_table(rows.frame(frame, lists)))["rows"]
        else:  # each partition shaped and ingested by its executor
            written = engine.ingest(fv, frame, transform=rows.table)["rows"]
        fs.materialize(view, online=target)
        return self._native.record(name, version.name, version.version, rows.score, max(rows.items, existing),
                                   int(written))

    def _online(self, name: str, view: str, online: str | None) -> str:
        """Where the table's view is materialized: ``online``, else where it is, else where the table's
        latest version is, else the one Redis the workspace's views use ("local" when none)."""
        if online is not None:
            return online
        infos = {info.spec.name: info for info in self._ws.features.list()}
        own = infos.get(view)
        if own is not None and own.materialized_end_ms is not None:
            return own.online or "local"
        written = [t for t in self._native.versions(name) if t.view in infos]
        if written:
            return infos[max(written, key=lambda t: t.written_at).view].online or "local"
        urls = sorted({info.online for info in infos.values() if info.online})
        if len(urls) > 1:
            raise InvalidArgument(f"prediction table '{name}': the workspace's views are materialized to several "
                                  f"Redis servers ({urls}): give online='redis://...' (or 'local')")
        return urls[0] if urls else "local"

    def _entity(self, columns: list[str], entity: str | None, name: str):
        entities = self._ws.features.entities()
        if entity is not None:
            for e in entities:
                if e.name == entity:
                    missing = [k for k in e.join_keys if k not in columns]
                    if missing:
                        raise InvalidArgument(f"prediction table '{name}': the frame lacks join keys {missing} of "
                                              f"entity '{entity}'")
                    return e
            raise InvalidArgument(f"prediction table '{name}': no entity '{entity}' (entities: "
                                  f"{sorted(e.name for e in entities)})")
        matches = [e for e in entities if e.join_keys and all(k in columns for k in e.join_keys)]
        if len(matches) != 1:
            found = sorted(e.name for e in matches) if matches else "none"
            raise InvalidArgument(f"prediction table '{name}': cannot tell the entity from the frame's columns "
                                  f"{columns} (entities whose join keys it holds: {found}): give entity=")
        return matches[0]

    def versions(self, name: str) -> list[_core.PredictionTable]:
        """Every version of table ``name``, oldest first."""
        return list(self._native.versions(name))

    def names(self) -> list[str]:
        return list(self._native.names())

    def to_pandas(self) -> pd.DataFrame:
        """One row per table version: name, model, version, view, score, items, rows, written_at/by,
        and online: where endpoints read it (a Redis URL or "local")."""
        online = {info.spec.name: info.online or "local" for info in self._ws.features.list()}
        rows = [{**{f: getattr(t, f) for f in t._fields}, "online": online.get(t.view)}
                for n in self.names() for t in self.versions(n)]
        return pd.DataFrame(rows, columns=[*_core.PredictionTable._fields, "online"])

    def __repr__(self) -> str:
        return f"<keel.Predictions {self.names()}>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        return html_table(self.to_pandas().to_dict("records"), title="prediction tables")


@dataclass
class _Rows:
    """Turns a frame of predictions into the rows of the table's view (join keys, ``prediction``,
    ``item_1`` .. ``item_<items>``, ``event_timestamp``): on the driver for pandas, in each executor
    for Spark and Dask (pickled with the same settings, so every partition writes the same columns)."""

    name: str
    keys: list[str]
    score: bool
    items: int
    now: pd.Timestamp  # the default event time, one for every partition

    def schema(self) -> dict[str, str]:
        schema = {"prediction": "float64"} if self.score else {}
        return schema | {f"item_{rank + 1}": "int64" for rank in range(self.items)}

    def frame(self, df: pd.DataFrame, lists: list[list[int]] | None = None) -> pd.DataFrame:
        out = df[self.keys].copy()
        if self.score:
            try:
                out["prediction"] = pd.to_numeric(df["prediction"], errors="raise").astype("float64")
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"prediction table '{self.name}': the 'prediction' column must hold numbers "
                                      f"(a score per entity): {exc}") from None
        if self.items:
            if lists is None:
                lists = _item_lists(df, self.keys, self.name)
            for rank in range(self.items):
                out[f"item_{rank + 1}"] = pd.array([v[rank] if rank < len(v) else None for v in lists], dtype="Int64")
        out["event_timestamp"] = df["event_timestamp"] if "event_timestamp" in df.columns else self.now
        return out

    def table(self, df: pd.DataFrame):
        """One partition's rows, as the table ``fv.ingest`` takes."""
        return to_table(self.frame(df))


def _item_lists(df: pd.DataFrame, keys: list[str], name: str) -> list[list[int]]:
    """Each row's item ids; a bad one is named with its row's join keys (a partition's row numbers
    would mean nothing to the caller of a Spark or Dask write)."""
    out = []
    for i, value in enumerate(df["items"]):
        try:
            out.append(_item_list(value))
        except ValueError as exc:
            who = ", ".join(f"{k}={_scalar(df[k].iloc[i])!r}" for k in keys)
            raise InvalidArgument(f"prediction table '{name}': the row of {who} {exc}") from None
    return out


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value  # numpy's 1, not np.int64(1)


def _item_list(value: Any) -> list[int]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise ValueError(f"holds items {value!r}: expected a list of item ids")
    out = []
    for item in value:
        try:
            ok = not isinstance(item, (bool, str, bytes)) and float(item).is_integer() and abs(int(item)) <= 2**53
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"holds item {_scalar(item)!r}: item ids are integers up to 2**53")
        out.append(int(item))
    return out


def _existing_items(fs, view: str) -> int:
    try:
        schema = fs.view(view).schema
    except LookupError:
        return 0
    return sum(1 for column in schema if column.startswith("item_"))

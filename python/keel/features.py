"""The feature store: entities, versioned feature views, point-in-time training sets, online store.

    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("player_activity", entities=["player"], ttl="30d", owner="data-eng",
                                  schema={"sessions_7d": "int64", "spend_30d": "float64",
                                          "email": keel.String(pii=True)})
    fv.ingest(df)                                  # validated first; all or nothing
    train = ws.features.training_set(labels, features=["player_activity:spend_30d"])
    ws.features.materialize("player_activity")
    ws.features.get_online(["player_activity:spend_30d"], player_id=[1, 2, 3])

The work happens in the C++ core (keel::features): input of any kind (keel._data) crosses as Arrow
data, read in place where its layout allows; results come back as buffers made into Arrow and pandas.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import functools
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from keel import _core, _data
from keel.display import format_ms, html_table
from keel._time import duration_ms, to_epoch_ms
from keel.errors import InvalidArgument

__all__ = ["FeatureStore", "FeatureView", "Entity", "TrainingSet", "TrainingSpec", "Access", "FeatureType", "Bool",
           "Int32", "Int64", "Float32", "Float64", "String", "Timestamp", "Vector"]


# ------------------------------------------------------------------------------------------------
# Type markers: keel.String(pii=True), keel.Vector(64), or plain strings "float64", "vector[64]".

class FeatureType:
    """A column type in a feature view schema; ``pii=True`` masks it for roles without a grant."""

    dtype = ""

    def __init__(self, *, pii: bool = False, description: str = ""):
        self.pii = pii
        self.description = description
        self.dim = 0

    def __repr__(self) -> str:
        extra = f"[{self.dim}]" if self.dim else ""
        return f"keel.{type(self).__name__}{extra}{'(pii=True)' if self.pii else ''}"


class Bool(FeatureType):
    dtype = "bool"


class Int32(FeatureType):
    dtype = "int32"


class Int64(FeatureType):
    dtype = "int64"


class Float32(FeatureType):
    dtype = "float32"


class Float64(FeatureType):
    dtype = "float64"


class String(FeatureType):
    dtype = "string"


class Timestamp(FeatureType):
    dtype = "timestamp"


# The longest vector column (kMaxVectorDim in core/features/store.cpp).
MAX_VECTOR_DIM = 65_536


class Vector(FeatureType):
    """A fixed-length float32 vector (an embedding): ``keel.Vector(64)``."""

    dtype = "vector"

    def __init__(self, dim: int, *, pii: bool = False, description: str = ""):
        super().__init__(pii=pii, description=description)
        try:
            n = int(dim)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgument(f"vector length must be a whole number, got {dim!r}") from None
        if n <= 0 or n > MAX_VECTOR_DIM:
            raise InvalidArgument(f"vector length must be between 1 and {MAX_VECTOR_DIM:,}, got {dim}")
        self.dim = n


_TYPES = {"bool": Bool, "int32": Int32, "int64": Int64, "float32": Float32, "float64": Float64,
          "string": String, "str": String, "timestamp": Timestamp}


def _column_spec(name: str, t) -> dict:
    if isinstance(t, type) and issubclass(t, FeatureType):
        t = t()
    if isinstance(t, str):
        m = re.fullmatch(r"vector\[(\d+)\]", t.strip())
        if m:
            t = Vector(int(m.group(1)))
        elif t.strip() in _TYPES:
            t = _TYPES[t.strip()]()
        else:
            raise InvalidArgument(f"column '{name}' has unknown type '{t}': use bool, int32, int64, float32, "
                                  "float64, string, timestamp or vector[N] (or keel.Float64(), keel.Vector(N), ...)")
    if not isinstance(t, FeatureType):
        raise InvalidArgument(f"column '{name}' has type {t!r}: give a type name or a keel type marker")
    return {"name": name, "dtype": t.dtype, "dim": t.dim, "pii": bool(t.pii)}


def _ttl_ms(ttl) -> int:
    return 0 if ttl is None else duration_ms(ttl, "ttl")


def _ms_of(ts, what: str = "time") -> int | None:
    """A point in time as epoch milliseconds, by Keel's one rule for time (keel._time: zoned or int ms)."""
    return to_epoch_ms(ts, what)


def _column_dict(column: _core.ColumnSpec) -> dict:
    """A core column spec as the dict the input conversion reads (name, dtype, dim, pii)."""
    return {"name": column.name, "dtype": column.dtype, "dim": column.dim, "pii": column.pii}


def _ms_to_pandas(ms):
    import pandas as pd
    return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")


# ------------------------------------------------------------------------------------------------
# Input: any tabular data becomes a pyarrow Table (keel._data), which the core imports through the
# Arrow C Data Interface and types by the view's schema (core/features/input.cpp holds the rules).

def _spec_tuples(specs) -> list[tuple]:
    return [(s["name"], s["dtype"], int(s.get("dim", 0))) for s in specs]


# ------------------------------------------------------------------------------------------------
# Output conversion: C++ column tuples -> pyarrow arrays.

def _to_arrow_array(col) -> pa.Array:
    _name, dtype, dim, values, offsets, valid, _masked = col
    n = len(valid) if valid is not None else (len(offsets) - 1 if offsets is not None else len(values))
    mask = None if valid is None else (valid == 0)
    if dtype == "string":
        bitmap = None if valid is None else pa.py_buffer(np.packbits(valid.astype(bool), bitorder="little"))
        arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(values), bitmap,
                                               null_count=-1)
        return arr.cast(pa.string())
    if dtype == "timestamp":
        return pa.array(values, type=pa.timestamp("ms", tz="UTC"), mask=mask)
    if dtype == "bool":
        return pa.array(values.astype(bool), mask=mask)
    if dtype == "vector":
        flat = pa.array(values.reshape(-1), type=pa.float32())
        return pa.FixedSizeListArray.from_arrays(flat, dim, mask=None if mask is None else pa.array(mask))
    return pa.array(values, mask=mask)


def _to_table(columns) -> pa.Table:
    return pa.Table.from_arrays([_to_arrow_array(c) for c in columns], names=[c[0] for c in columns])


def _arrow_to_pandas(table: pa.Table):
    """To pandas, keeping integer columns integers: pyarrow would turn an int column with a null into
    float64 (1.0, NaN), so such a column becomes pandas' nullable Int64 / Int32 ...; one without nulls
    stays plain int64."""
    import pandas as pd
    frame = table.to_pandas()
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_integer(column.type) and column.null_count > 0:
            values = np.asarray(column.fill_null(0).to_numpy())  # vectorized: no Python objects per row
            missing = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            frame[name] = pd.arrays.IntegerArray(values, missing)
    return frame



_NAT = np.iinfo(np.int64).min


def _column_to_pandas(col):
    """One core column as the array _arrow_to_pandas would put in the frame: numpy for numbers,
    times and bools without nulls (NaN / NaT / nullable integers where values are missing);
    through Arrow for strings, vectors and bools with nulls."""
    import pandas as pd
    _name, dtype, _dim, values, _offsets, valid, _masked = col
    if valid is not None and valid.all():
        valid = None  # as Arrow counts nulls: none here
    if dtype in ("float64", "float32"):
        if valid is None:
            return values
        out = values.copy()
        out[valid == 0] = np.nan
        return out
    if dtype in ("int64", "int32"):
        if valid is None:
            return values
        missing = valid == 0
        return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(values.dtype), missing)
    if dtype == "timestamp":
        ms = values if valid is None else np.where(valid == 0, _NAT, values)
        return pd.array(ms.view("datetime64[ms]"), dtype=_utc_ms())
    if dtype == "bool" and valid is None:
        return values.astype(bool)
    return _arrow_to_pandas(_to_table([col])).iloc[:, 0].values


def _key_to_pandas(name: str, arr: pa.ChunkedArray):
    if arr.type == pa.int64() and arr.null_count == 0:
        return arr.to_numpy()
    return _arrow_to_pandas(pa.table({name: arr})).iloc[:, 0].values


@functools.cache
def _utc_ms():
    import pandas as pd
    return pd.DatetimeTZDtype("ms", "UTC")


# ------------------------------------------------------------------------------------------------

class Entity:
    """What feature rows are about, identified by join keys. ``.spec`` is the core's record
    (``keel._core.EntitySpec``: name, join_keys with their types, description), read-only."""

    def __init__(self, spec: _core.EntitySpec):
        self._spec = spec

    @property
    def spec(self) -> _core.EntitySpec:
        return self._spec

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def join_keys(self) -> list[str]:
        return [k.name for k in self._spec.join_keys]

    @property
    def description(self) -> str:
        return self._spec.description

    def __repr__(self) -> str:
        keys = ", ".join(f"{k.name}: {k.dtype}" for k in self._spec.join_keys)
        return f"<keel.Entity {self.name} ({keys})>"


class FeatureView:
    """A versioned, typed table of feature values over time, keyed by its entities' join keys."""

    def __init__(self, store: FeatureStore, spec: _core.ViewSpec):
        self._store = store
        self._spec = spec  # the core's definition, read-only; refresh() swaps it

    # --- definition -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def version(self) -> int:
        return self._spec.version

    @property
    def entities(self) -> list[str]:
        return self._spec.entities

    @property
    def join_keys(self) -> list[str]:
        return [k.name for k in self._spec.join_keys]

    @property
    def schema(self) -> dict[str, str]:
        return {f.name: (f"vector[{f.dim}]" if f.dtype == "vector" else f.dtype) for f in self._spec.features}

    @property
    def pii_columns(self) -> list[str]:
        return [f.name for f in self._spec.features if f.pii]

    @property
    def ttl(self) -> _dt.timedelta | None:
        ms = self._spec.ttl_ms
        return _dt.timedelta(milliseconds=ms) if ms else None

    @property
    def owner(self) -> str:
        return self._spec.owner

    @property
    def description(self) -> str:
        return self._spec.description

    @property
    def tags(self) -> dict:
        return self._spec.tags

    @property
    def event_timestamp_column(self) -> str:
        return self._spec.event_column

    @property
    def created_timestamp_column(self) -> str:
        return self._spec.created_column

    @property
    def lineage_ref(self) -> str:
        return f"feature_view:{self.name}"

    def refresh(self) -> FeatureView:
        """Reloads the definition (another process may have changed it)."""
        self._spec = self._store.native.view(self.name)
        return self

    # --- offline store ----------------------------------------------------------------------
    def _run_quality_rules(self, batch: _core.IngestBatch) -> None:
        """Pre-write hook: the view's data-quality rules (keel.quality, fv.add_rule) run here on the
        prepared batch (columns typed as the view declares them, times parsed), before anything is
        written. A failing rule of severity "error" raises, and the ingest writes nothing."""
        checks = self.quality
        if checks.rule_ids():
            checks.gate(batch)

    # --- data quality (keel.quality) ----------------------------------------------------------
    @property
    def quality(self):
        """The view's quality rules, results history, reference profiles and data issues."""
        from keel.quality import checks
        return checks(self._store.workspace, self.lineage_ref)

    def add_rule(self, plugin, *, severity: str = "error", name: str = "", **args) -> int:
        """Attach a quality rule run on every ingest before anything is written:
        ``fv.add_rule("plugins/quality/range.lua", column="spend_30d", min=0, severity="error")``.
        An error-severity failure rejects the batch (keel.quality.DataQualityError lists every failing
        rule); a warn-severity failure is stored. Either opens a data issue seen downstream."""
        return self.quality.add_rule(plugin, severity=severity, name=name, **args)

    def quality_history(self, limit: int = 1000):
        """Every ingest's rule results, newest first (accepted and rejected batches)."""
        return self.quality.history(limit)

    def ingest(self, data) -> dict:
        """Appends rows (pandas DataFrame or pyarrow Table) as one immutable segment; all or nothing.

        A Spark or Dask DataFrame is ingested by the executors, each partition as its own segment
        (all or nothing per partition, quality rules on each); the result lists the segments.

        The data holds the join keys, the event timestamp column, optionally the created timestamp
        column (default: the ingest time) and every schema column. For the same entity and event
        time, the row with the latest created timestamp wins.
        """
        engine = _engine_of(data)
        if engine is not None:  # each partition ingested by its own executor: nothing collected here
            return engine.ingest(self, data)
        table = _data.to_table(data)
        batch = self._store.native.prepare_ingest(self.name, table)  # checked and typed; nothing written
        self._run_quality_rules(batch)
        segment = self._store.native.ingest(self.name, batch)
        return {"view": self.name, "version": self.version, "rows": batch.rows, "segment": segment}

    def _read(self, start=None, end=None, as_of=None, keys: dict | None = None) -> pa.Table:
        key_table = _key_columns([_column_dict(k) for k in self._spec.join_keys], keys, "keys") if keys else None
        cols = self._store.native.read(self.name, _ms_of(start, "start"), _ms_of(end, "end"),
                                        _ms_of(as_of, "as_of"), key_table, self.version)
        return _to_table(cols)

    def to_arrow(self, start=None, end=None) -> pa.Table:
        """Every row with start <= event time < end (one per entity and event time; the latest
        created wins), sorted by key and time. PII columns are masked unless granted."""
        return self._read(start=start, end=end)

    def to_pandas(self, start=None, end=None):
        return _arrow_to_pandas(self.to_arrow(start=start, end=end))

    def to_spark(self, spark=None, start=None, end=None):
        """The view's rows as a Spark DataFrame, read by the executors (a key range each), in the order
        :meth:`to_pandas` gives them. Executors open the workspace by its path (keel.engines.spark)."""
        from keel.engines import spark as engine
        return engine.read_view(self, spark, _ms_of(start, "start"), _ms_of(end, "end"))

    def to_dask(self, start=None, end=None):
        """The view's rows as a Dask DataFrame (a key range per partition), in :meth:`to_pandas` order."""
        from keel.engines import dask as engine
        return engine.read_view(self, _ms_of(start, "start"), _ms_of(end, "end"))

    def history(self, **keys):
        """Every value the given entities had, oldest first: ``fv.history(player_id=42)``."""
        if not keys:
            raise InvalidArgument(f"history needs the join keys, e.g. {self.join_keys[0]}=...")
        return _arrow_to_pandas(self._read(keys=keys))

    def as_of(self, ts):
        """The whole table as it stood at ``ts``: the latest row per entity with event time <= ts."""
        return _arrow_to_pandas(self._read(as_of=ts))

    def __repr__(self) -> str:
        return f"<keel.FeatureView {self.name} v{self.version} ({', '.join(self.schema)})>"

    def _repr_html_(self) -> str:
        rows = [{"column": n, "type": t, "pii": "yes" if n in self.pii_columns else ""}
                for n, t in self.schema.items()]
        title = (f"Feature view {self.name} v{self.version} — entities {', '.join(self.entities)}, "
                 f"ttl {self.ttl or 'none'}, owner {self.owner or '-'}")
        return html_table(rows, title=title)


def _engine_of(data):
    """keel.engines.spark or .dask when ``data`` is a frame of that engine (told without importing it)."""
    module = type(data).__module__
    if module.startswith("pyspark.sql"):
        from keel.engines import spark
        return spark
    if module.startswith(("dask.", "dask_expr")) and type(data).__name__ == "DataFrame":
        from keel.engines import dask
        return dask
    return None


def _key_columns(join_keys: list[dict], keys: Mapping, what: str) -> pa.Table:
    """The join key values given as keyword arguments (a value or a list each), as one table."""
    arrays: list[pa.Array] = []
    for spec in join_keys:
        if spec["name"] not in keys:
            raise InvalidArgument(f"{what} lack the join key '{spec['name']}'")
        values = keys[spec["name"]]
        if np.isscalar(values) or isinstance(values, str):
            values = [values]
        arr = pa.array(values, from_pandas=True)
        if arrays and len(arr) != len(arrays[0]):
            raise InvalidArgument(f"join key '{spec['name']}' has {len(arr)} values, others have {len(arrays[0])}")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, names=[k["name"] for k in join_keys])


class FeatureViewList(list):
    """``ws.features.list()``: each view's catalog entry (``keel._core.ViewInfo``: its definition
    ``.spec``, rows, segments, freshness and where online readers read: ``.online``, a Redis URL or
    ``''`` for the local store); ``.to_pandas()`` gives one row a view."""

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self._rows(), columns=["name", "version", "entities", "features", "owner",
                                                   "description", "ttl", "rows", "segments", "last_event",
                                                   "last_ingest", "materialized_until", "online", "tags"])

    def _rows(self):
        out = []
        for info in self:
            spec = info.spec
            out.append({"name": spec.name, "version": spec.version, "entities": ", ".join(spec.entities),
                        "features": len(spec.features), "owner": spec.owner, "description": spec.description,
                        "ttl": _dt.timedelta(milliseconds=spec.ttl_ms) if spec.ttl_ms else None,
                        "rows": info.rows, "segments": info.segments,
                        "last_event": _ms_to_pandas(info.last_event_ms),
                        "last_ingest": _ms_to_pandas(info.last_ingest_ms),
                        "materialized_until": _ms_to_pandas(info.materialized_end_ms),
                        "online": info.online or ("local" if info.materialized_end_ms is not None else None),
                        "tags": spec.tags})
        return out

    def _repr_html_(self) -> str:
        rows = []
        for info in self:
            spec = info.spec
            rows.append({"view": f"{spec.name} v{spec.version}", "owner": spec.owner or "-",
                         "rows": info.rows, "last event": format_ms(info.last_event_ms),
                         "last ingest": format_ms(info.last_ingest_ms), "description": spec.description})
        return html_table(rows, title="Feature views")


class TrainingSpec:
    """A named, stored list of features that training sets (and endpoints) are built from; Feast
    calls it a feature service. ``ws.features.training_spec(name, features=[...])`` defines it (a
    change is a new revision), ``ws.features.training_set(labels, spec=name)`` builds from it.
    ``.record`` is the core's record of the current revision (``keel._core.TrainingSpecRecord``)."""

    def __init__(self, record: _core.TrainingSpecRecord):
        self.record = record

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def features(self) -> list[str]:
        return list(self.record.features)

    @property
    def description(self) -> str:
        return self.record.description

    @property
    def owner(self) -> str:
        return self.record.owner

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.record.tags)

    @property
    def revision(self) -> int:
        return self.record.revision

    def __repr__(self) -> str:
        return f"<keel.TrainingSpec {self.name} r{self.revision} ({', '.join(self.features)})>"

    def _repr_html_(self) -> str:
        r = self.record
        rows = [{"feature": f} for f in r.features]
        title = (f"Training spec {r.name} r{r.revision} — owner {r.owner or '-'}, by {r.created_by} "
                 f"at {format_ms(r.created_at_ms)}" + (f": {r.description}" if r.description else ""))
        return html_table(rows, title=title)


class TrainingSet:
    """A point-in-time correct training set: the label frame plus one column per feature.

    ``.id`` identifies it; ``ws.features.training_set(id=...)`` rebuilds the identical data later.
    ``.record`` is the core's record of it (``keel._core.TrainingSetRecord``: features, view
    versions, segment cutoffs, labels digest, ...), read-only; ``record["id"]`` reads like a dict.
    """

    def __init__(self, record: _core.TrainingSetRecord, labels: pa.Table, feature_columns: list):
        self.record = record
        self._labels = labels
        self._features = _to_table(feature_columns)
        clash = set(labels.column_names) & set(self._features.column_names)
        if clash:
            raise InvalidArgument(f"label column(s) {sorted(clash)} have the same name as requested features: "
                                  "rename them in the label frame")

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def lineage_ref(self) -> str:
        """The lineage node of this training set: ``training_set:<id>``."""
        return f"training_set:{self.id}"

    @property
    def features(self) -> list[str]:
        return list(self.record.features)

    @property
    def view_versions(self) -> dict[str, int]:
        return dict(self.record.view_versions)

    def to_arrow(self) -> pa.Table:
        table = self._labels
        for name, col in zip(self._features.column_names, self._features.columns):
            table = table.append_column(name, col)
        return table

    def to_pandas(self):
        df = _arrow_to_pandas(self.to_arrow())
        df.attrs["keel.training_set"] = self.id  # kept by column selection: keel.autolog records the lineage
        return df

    def __len__(self) -> int:
        return self._labels.num_rows

    def __repr__(self) -> str:
        return f"<keel.TrainingSet {self.id}: {len(self)} rows, {len(self.features)} features>"

    def _repr_html_(self) -> str:
        r = self.record
        rows = [{"id": self.id, "rows": r.label_rows, "features": ", ".join(r.features),
                 "views": ", ".join(f"{k} v{v}" for k, v in r.view_versions.items()),
                 "from": format_ms(r.min_ts_ms), "to": format_ms(r.max_ts_ms)}]
        return html_table(rows, title="Training set")


class FeatureStore:
    """``ws.features``: define entities and feature views, build training sets, serve online."""

    def __init__(self, workspace):
        self._ws = workspace
        self._native = _core.FeatureStore(workspace.native)
        self._readers: dict[tuple, _core.OnlineReader] = {}
        self._frame_columns: dict[tuple, object] = {}  # get_online's column index per column names

    @property
    def workspace(self):
        """The workspace this feature store lives in."""
        return self._ws

    @property
    def native(self) -> _core.FeatureStore:
        """The ``keel._core.FeatureStore`` behind ``ws.features``."""
        return self._native

    # --- definitions ------------------------------------------------------------------------
    def entity(self, name: str, join_keys: Sequence[str] | Mapping[str, str] | None = None,
               description: str = "") -> Entity:
        """Defines (or, without join_keys, fetches) an entity. Join keys are int64 unless typed:
        ``join_keys={"user_id": "string"}``."""
        if join_keys is None:
            return Entity(self._native.entity(name))
        if isinstance(join_keys, str):
            join_keys = [join_keys]
        if isinstance(join_keys, Mapping):
            keys = [(k, _column_spec(k, t)["dtype"]) for k, t in join_keys.items()]
        else:
            keys = [(k, "int64") for k in join_keys]
        return Entity(self._native.define_entity(name, keys, description))

    def entities(self) -> list[Entity]:
        return [Entity(e) for e in self._native.entities()]

    def feature_view(self, name: str, entities: Sequence[str] | str | None = None, schema: Mapping | None = None,
                     *, ttl=None, owner: str = "", description: str = "", tags: Mapping | None = None,
                     event_timestamp_column: str = "event_timestamp",
                     created_timestamp_column: str = "created_timestamp") -> FeatureView:
        """Defines a feature view (or, with only a name, opens the existing one).

        Redefining with compatible changes (new columns, owner, TTL, tags) keeps the version and its
        data (old rows read null in new columns); an incompatible change (a column removed or
        retyped, other entities) starts a new version.
        """
        if entities is None and schema is None:
            return FeatureView(self, self._native.view(name))
        if not entities or not schema:
            raise InvalidArgument(f"feature view '{name}' needs entities= and schema=")
        if isinstance(entities, str):
            entities = [entities]
        spec = {"name": name, "entities": list(entities),
                "features": [_column_spec(k, t) for k, t in schema.items()],
                "ttl_ms": _ttl_ms(ttl), "owner": owner or self._ws.user, "description": description,
                "tags": {str(k): str(v) for k, v in (tags or {}).items()},
                "event_column": event_timestamp_column, "created_column": created_timestamp_column}
        return FeatureView(self, self._native.define_view(spec))

    def view(self, name: str, version: int | None = None) -> FeatureView:
        return FeatureView(self, self._native.view(name, version))

    __getitem__ = view

    def list(self) -> FeatureViewList:
        """Every live feature view with owner, description, freshness (last event, last ingest) and rows."""
        return FeatureViewList(self._native.list())

    def retire_view(self, name: str) -> None:
        """Takes a view out of the catalog. Its offline data stays, so recorded training sets still
        rebuild identically; reading, ingesting, materializing and online reads refuse it, and its
        online values are dropped. Defining it again brings it back."""
        self._native.retire_view(name)
        self._readers.clear()  # cached readers of get_online(as_numpy=True) may read it

    def remove_entity(self, name: str) -> None:
        """Deletes an entity; refused while a live feature view uses it (retire those first)."""
        self._native.remove_entity(name)

    # --- training specs (feature services) --------------------------------------------------
    def training_spec(self, name: str, features: Sequence[str] | None = None, *, description: str = "",
                      owner: str = "", tags: Mapping | None = None) -> TrainingSpec:
        """Defines a training spec (a named list of "view:column" features, each in a live view), or
        with only a name fetches it. An unchanged definition keeps its revision; a change is saved
        as the next revision."""
        if features is None:
            return TrainingSpec(self._native.training_spec(name))
        if isinstance(features, str):
            features = [features]
        return TrainingSpec(self._native.define_training_spec(
            name, list(features), description, owner, {str(k): str(v) for k, v in (tags or {}).items()}))

    def training_specs(self) -> builtins.list[TrainingSpec]:
        """The current revision of every training spec, by name."""
        return [TrainingSpec(r) for r in self._native.training_specs()]

    def remove_training_spec(self, name: str) -> None:
        """Stops listing the spec; its revisions stay as history (defining it again continues them)."""
        self._native.remove_training_spec(name)

    # --- training sets ----------------------------------------------------------------------
    def _label_columns(self, labels: pa.Table, features: Sequence[str], timestamp_column: str,
                       versions: Mapping[str, int] | None = None):
        """The label columns the join reads. ``versions`` (a recorded set's) reads those view
        versions, also of views retired since."""
        needed: list[dict] = []
        seen = set()
        for f in features:
            view = f.split(":", 1)[0]
            recorded = (self._native.recorded_view(view, versions[view]) if versions is not None
                        else self._native.view(view))
            for k in recorded.join_keys:
                if k.name not in seen:
                    seen.add(k.name)
                    needed.append(_column_dict(k))
        for spec in needed:
            if spec["name"] not in labels.column_names:
                raise InvalidArgument(f"labels lack the join key column '{spec['name']}' needed by the requested "
                                      "features")
        if timestamp_column not in labels.column_names:
            raise InvalidArgument(f"labels have no timestamp column '{timestamp_column}': name it with "
                                  "timestamp_column=")
        specs = needed + [{"name": timestamp_column, "dtype": "timestamp", "dim": 0}]
        # Time columns written as text are parsed by the core's one rule for time (each with its zone).
        return labels.select([s["name"] for s in specs]), _spec_tuples(specs)

    def training_set(self, labels=None, features: Sequence[str] | None = None, *,
                     spec: str | TrainingSpec | None = None, id: str | None = None,  # noqa: A002
                     timestamp_column: str = "event_timestamp", run=None, engine: str = "local",
                     record: bool = True, spark=None):
        """Point-in-time join: for each label row, each feature's latest value with event time <=
        the row's timestamp and within its view's TTL (null otherwise). Label rows keep their order.

        The features are ``features=["view:column", ...]`` or ``spec=`` a training spec (its name or
        object: its current revision's features), exactly one of the two.
        ``training_set(id=...)`` rebuilds a recorded training set from the same labels and segments.
        ``run=`` (a tracking run) records that the run consumed it (``run.log_input``).

        ``engine="spark"`` (labels a Spark DataFrame or a Parquet path; ``spark=`` the session, default
        the active one) or ``engine="dask"`` (labels a Dask DataFrame) runs the join in the executors,
        against one snapshot read here, and returns a ``keel.engines.TrainingSetResult`` whose
        ``to_spark()`` / ``to_dask()`` equals the local result row for row. ``record=False`` skips
        storing the labels and recording the set (the local engine always records).
        """
        if engine not in ("local", "spark", "dask"):
            raise InvalidArgument(f"engine={engine!r}: use 'local', 'spark' or 'dask'")
        if spec is not None:
            if features is not None:
                raise InvalidArgument("training_set takes features=[...] or spec=, not both")
            name = spec.name if isinstance(spec, TrainingSpec) else spec
            features = self.training_spec(name).features
        if engine != "local":
            ts = self._engine_training_set(engine, labels, features, id, timestamp_column, record, spark)
        else:
            ts = self._training_set(labels, features, id, timestamp_column)
        if run is not None:
            run.log_input(ts)
        return ts

    def _engine_training_set(self, engine, labels, features, id, timestamp_column, record, spark):  # noqa: A002
        if id is not None:
            raise InvalidArgument(f"training_set(id=...) rebuilds locally: leave engine={engine!r} out")
        if labels is None or not features:
            raise InvalidArgument("training_set needs labels and features=[\"view:column\", ...] or spec=\"name\"")
        if isinstance(features, str):
            features = [features]
        if engine == "spark":
            from keel.engines import spark as spark_engine
            return spark_engine.training_set(self, labels, list(features), timestamp_column, record=record,
                                             spark=spark)
        from keel.engines import dask as dask_engine
        return dask_engine.training_set(self, labels, list(features), timestamp_column, record=record)

    def _training_set(self, labels, features, id, timestamp_column) -> TrainingSet:  # noqa: A002
        if id is not None:
            from keel.engines._partition import read_labels
            record = self._native.training_set_record(id)
            table = read_labels(self._ws, self._ws.get_artifact(record.labels_digest))
            keys, specs = self._label_columns(table, record.features, record.timestamp_column,
                                              record.view_versions)
            record, out = self._native.rebuild_training_set(id, keys, specs)
            return TrainingSet(record, table, out)
        if labels is None or not features:
            raise InvalidArgument("training_set needs labels and features=[\"view:column\", ...] or spec=\"name\" "
                                  "(or id= to rebuild a recorded one)")
        if isinstance(features, str):
            features = [features]
        table = _data.to_table(labels, what="labels")
        if table.schema.metadata:
            table = table.replace_schema_metadata(None)
        keys, specs = self._label_columns(table, features, timestamp_column)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest = self._ws.put_artifact(sink.getvalue().to_pybytes())
        record, out = self._native.training_set(keys, specs, list(features), timestamp_column, digest)
        return TrainingSet(record, table, out)

    # --- online store -----------------------------------------------------------------------
    def materialize(self, view: str | FeatureView, end=None, *, online: str | None = None) -> dict:
        """Copies the latest value per entity (event time <= end, default now) to the online store,
        reading only rows that arrived since the previous materialization.

        ``online="redis://host:port/db"`` writes them to Redis as well (only the entities that
        changed, keys expiring after the view's TTL, switched atomically) and every reader of the
        view, in any process, then reads them there; ``online="local"`` goes back to the local
        snapshot; left out, the view stays where its previous materialization went."""
        name = view.name if isinstance(view, FeatureView) else view
        return self._native.materialize(name, _ms_of(end, "end"), online)

    def get_online(self, features: Sequence[str], *, now=None, as_numpy: bool = False, **keys):
        """Online values for the given entities as a DataFrame: the key columns, each feature, and
        per view ``<view>__event_timestamp``, ``<view>__age_ms`` and ``<view>__stale`` (values older
        than the TTL come back null with stale=True).

        ``as_numpy=True`` (numeric features, one int64 key) returns the float64 matrix of
        :meth:`online_reader` instead, NaN where missing or stale; the reader is cached."""
        if isinstance(features, str):
            features = [features]
        if as_numpy:
            if len(keys) != 1:
                raise InvalidArgument("get_online(as_numpy=True) takes exactly one join key, e.g. player_id=[...]")
            reader = self._readers.get(tuple(features))
            if reader is None:
                reader = self._readers[tuple(features)] = self.online_reader(list(features))
            ids = np.ascontiguousarray(np.atleast_1d(np.asarray(next(iter(keys.values())), dtype=np.int64)))
            return reader.lookup(ids, now_ms=_ms_of(now, "now"))
        names = list(features)
        specs = self._native.online_keys(names)  # from the core's catalog cache: no table read per call
        key_table = _key_columns([{"name": k[0], "dtype": k[1]} for k in specs], keys, "keys")
        out = self._native.get_online(names, key_table, specs, _ms_of(now, "now"))
        # The keys as the core read them: int64 or string, like the view declares them.
        key_columns = [(k[0], key_table.column(k[0]).cast(pa.int64() if k[1] == "int64" else pa.string()))
                       for k in specs]
        return self._online_frame(key_columns, out)

    def _online_frame(self, key_columns: builtins.list[tuple[str, pa.ChunkedArray]], columns: builtins.list):
        """get_online's DataFrame, column by column from the core's buffers (the same frame as
        _arrow_to_pandas of the Arrow table, without its per-call cost: one entity is a few dozen
        microseconds, not half a millisecond)."""
        import pandas as pd
        from_arrays = getattr(pd.DataFrame, "_from_arrays", None)
        if from_arrays is None:  # a pandas without it: the general conversion
            table = _to_table(columns)
            return _arrow_to_pandas(pa.Table.from_arrays([a for _, a in key_columns] + table.columns,
                                                         names=[n for n, _ in key_columns] + table.column_names))
        names = tuple([n for n, _ in key_columns] + [c[0] for c in columns])
        index = self._frame_columns.get(names)
        if index is None:
            if len(self._frame_columns) >= 256:
                self._frame_columns.clear()
            index = self._frame_columns[names] = pd.Index(list(names))
        arrays = [_key_to_pandas(n, a) for n, a in key_columns] + [_column_to_pandas(c) for c in columns]
        rows = len(arrays[0]) if arrays else 0
        return from_arrays(arrays, columns=index, index=pd.RangeIndex(rows), verify_integrity=False)

    def online_reader(self, features: Sequence[str]):
        """A compiled reader for numeric features of int64-keyed views: ``reader.lookup(ids)`` returns
        a float64 matrix (one row per id, one column per feature; NaN where missing, stale or masked)."""
        if isinstance(features, str):
            features = [features]
        return self._native.online_reader(list(features))

    def __repr__(self) -> str:
        return f"<keel.FeatureStore {self._ws.path!r}>"

    def _repr_html_(self) -> str:
        return self.list()._repr_html_()


class Access:
    """``ws.access``: grants that let a role read PII columns unmasked.

        ws.access.grant("fraud-analyst", "player_profile", ["email"])   # or columns="*"
    """

    def __init__(self, workspace):
        self._ws = workspace

    @property
    def _native(self):
        return self._ws.features.native

    def grant(self, role: str, view: str, columns: Iterable[str] | str = "*") -> None:
        if isinstance(columns, str):
            columns = [columns]
        self._native.grant(role, view, list(columns))

    def revoke(self, role: str, view: str, columns: Iterable[str] | str = "*") -> None:
        if isinstance(columns, str):
            columns = [columns]
        self._native.revoke(role, view, list(columns))

    def can_read(self, view: str, column: str, role: str | None = None) -> bool:
        return self._native.can_read(self._ws.role if role is None else role, view, column)

    def list(self):
        import pandas as pd
        return pd.DataFrame(self._native.grants(), columns=["role", "view", "column"])

"""The feature store: entities, versioned feature views, point-in-time training sets, online store.

    ws.features.entity("player", join_keys=["player_id"])
    fv = ws.features.feature_view("player_activity", entities=["player"], ttl="30d", owner="data-eng",
                                  schema={"sessions_7d": "int64", "spend_30d": "float64",
                                          "email": keel.String(pii=True)})
    fv.ingest(df)                                  # validated first; all or nothing
    train = ws.features.training_set(labels, features=["player_activity:spend_30d"])
    ws.features.materialize("player_activity")
    ws.features.get_online(["player_activity:spend_30d"], player_id=[1, 2, 3])

The work happens in the C++ core (keel::features); this module converts pandas / pyarrow data to
column buffers (numeric columns are passed without copies) and results back to Arrow and pandas.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel import _core
from keel.display import format_ms, html_table
from keel.errors import InvalidArgument

__all__ = ["FeatureStore", "FeatureView", "Entity", "TrainingSet", "Access", "FeatureType", "Bool", "Int32",
           "Int64", "Float32", "Float64", "String", "Timestamp", "Vector"]


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


_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def _ttl_ms(ttl) -> int:
    if ttl is None:
        return 0
    if isinstance(ttl, _dt.timedelta):
        return int(ttl.total_seconds() * 1000)
    if hasattr(ttl, "to_timedelta64"):  # pandas Timedelta
        return int(ttl.to_timedelta64().astype("timedelta64[ms]").astype(np.int64))
    if isinstance(ttl, (int, np.integer)):
        return int(ttl) * 1000
    if isinstance(ttl, str):
        m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d|w)\s*", ttl)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2)]
    raise InvalidArgument(f"ttl {ttl!r} is not understood: use e.g. '30d', '12h', '15m' or a timedelta")


def _ms_of(ts) -> int | None:
    """A point in time as epoch milliseconds: datetime (naive means UTC), pandas Timestamp, ISO string or int ms."""
    if ts is None:
        return None
    if isinstance(ts, (int, np.integer)):
        return int(ts)
    import pandas as pd
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return int(t.value // 1_000_000)


def _ms_to_pandas(ms):
    import pandas as pd
    return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")


# ------------------------------------------------------------------------------------------------
# Input conversion: pandas / pyarrow -> (name, dtype, dim, values, offsets, valid) column tuples.

def _refuse_duplicate_columns(names) -> None:
    """Two columns of one name would be read as one (or crash pandas/arrow deep inside)."""
    seen = set()
    for name in names:
        key = str(name)
        if key in seen:
            raise InvalidArgument(f"column '{key}' appears more than once in the data: rename or drop the "
                                  f"duplicate (e.g. df.loc[:, ~df.columns.duplicated()])")
        seen.add(key)


def _to_arrow_table(data) -> pa.Table:
    if isinstance(data, pa.Table):
        _refuse_duplicate_columns(data.column_names)
        return data
    if isinstance(data, pa.RecordBatch):
        _refuse_duplicate_columns(data.schema.names)
        return pa.Table.from_batches([data])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        _refuse_duplicate_columns(data.columns)
        arrays, names = [], []
        for name in data.columns:
            s = data[name]
            try:
                arrays.append(pa.array(s, from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
                bad = _first_bad_object(s)
                where = f" at row {bad[0]} ({bad[1]!r})" if bad else ""
                raise InvalidArgument(f"column '{name}' has mixed or unsupported values{where}: {e}") from None
            names.append(str(name))
        return pa.Table.from_arrays(arrays, names=names)
    if isinstance(data, Mapping):
        return _to_arrow_table(__import__("pandas").DataFrame(data))
    raise InvalidArgument(f"expected a pandas DataFrame or a pyarrow Table, got {type(data).__name__}")


def _first_bad_object(series):
    kinds: dict[type, int] = {}
    for i, v in enumerate(series.tolist()):
        if v is None or (isinstance(v, float) and v != v):
            continue
        k = type(v)
        kinds.setdefault(k, i)
        if len(kinds) > 1:
            return i, v
    return None


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "bool"
    return str(t)


def _valid_bytes(arr: pa.Array):
    if arr.null_count == 0:
        return None
    return np.ascontiguousarray(np.asarray(arr.is_valid()).astype(np.uint8))


def _first_true(mask) -> int:
    return int(np.argmax(mask))


def _numeric(arr: pa.Array, np_dtype, name):
    """Values of a primitive arrow array as a numpy view (no copy when no nulls)."""
    if arr.null_count:
        arr = arr.fill_null(0)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return np.ascontiguousarray(arr.to_numpy(zero_copy_only=False)).astype(np_dtype, copy=False)


_INT_RANGES = {"int32": (np.iinfo(np.int32).min, np.iinfo(np.int32).max),
               "int64": (np.iinfo(np.int64).min, np.iinfo(np.int64).max)}


def _convert_timestamp(arr: pa.Array, name: str, what: str = "column") -> tuple:
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        import pandas as pd
        s = arr.to_pandas()
        parsed = pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601")
        bad = parsed.isna() & s.notna()
        if bad.any():
            i = _first_true(bad.to_numpy())
            raise InvalidArgument(f"{what} '{name}' has an unparseable timestamp at row {i}: {s.iloc[i]!r}")
        naive = s.notna() & ~s.astype(object).fillna("").str.strip().str.contains(r"(?:Z|[+-]\d\d:?\d\d)$",
                                                                                    regex=True)
        if naive.any():
            i = _first_true(naive.to_numpy())
            raise InvalidArgument(f"{what} '{name}' has a timestamp without a time zone at row {i}: "
                                  f"{s.iloc[i]!r} is ambiguous; add an offset ('...Z' or '+02:00')")
        arr = pa.array(parsed, from_pandas=True)
        t = arr.type
    if pa.types.is_date(t):
        raise InvalidArgument(f"{what} '{name}' holds dates, not timestamps: "
                              "convert with pd.to_datetime(..., utc=True)")
    if not pa.types.is_timestamp(t):
        raise InvalidArgument(f"{what} '{name}' has type {_type_name(t)}, expected timestamps with a time zone "
                              "(e.g. pd.to_datetime(col, utc=True))")
    if t.tz is None:
        raise InvalidArgument(f"{what} '{name}' has timestamps without a time zone: they are ambiguous; localize "
                              "them with .dt.tz_localize('UTC') (or the zone they were recorded in)")
    ints = arr.cast(pa.int64())
    scale = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}[t.unit]
    valid = _valid_bytes(arr)
    values = _numeric(ints, np.int64, name)
    if t.unit == "s":
        values = values * 1000
    elif scale != 1:
        rem = values % scale
        if valid is not None:
            rem = np.where(valid.astype(bool), rem, 0)
        if rem.any():
            i = _first_true(rem != 0)
            raise InvalidArgument(f"{what} '{name}' has sub-millisecond precision at row {i}: Keel stores "
                                  "milliseconds; round with .dt.floor('ms') first")
        values = values // scale
    return "timestamp", 0, np.ascontiguousarray(values), None, valid


def _convert(arr, spec: dict, what: str = "column") -> tuple:
    """One arrow column converted for the C++ core, validated against its spec."""
    name, dtype, dim = spec["name"], spec["dtype"], spec.get("dim", 0)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    valid = _valid_bytes(arr)
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if dtype == "timestamp":
        return (name,) + _convert_timestamp(arr, name, what)
    if dtype == "string":
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise InvalidArgument(f"{what} '{name}' has type {_type_name(t)}, expected string: "
                                  "cast it with .astype(str) first")
        arr = arr.cast(pa.large_string())
        bufs = arr.buffers()
        offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
        data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
        return (name, "string", 0, data, np.ascontiguousarray(offsets), valid)
    if dtype == "bool":
        if not pa.types.is_boolean(t):
            raise InvalidArgument(f"{what} '{name}' has type {_type_name(t)}, expected bool: cast it first")
        values = np.asarray(arr.fill_null(False)).astype(np.uint8)
        return (name, "bool", 0, values, None, valid)
    if dtype == "vector":
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            raise InvalidArgument(f"{what} '{name}' has type {_type_name(t)}, expected lists of {dim} floats")
        lengths = np.asarray(pc.list_value_length(arr).fill_null(dim))
        if (lengths != dim).any():
            i = _first_true(lengths != dim)
            raise InvalidArgument(f"{what} '{name}' has a vector of length {lengths[i]} at row {i}, expected {dim}")
        filled = arr
        if arr.null_count:
            filled = pc.if_else(arr.is_valid(), arr, pa.scalar([0.0] * dim, type=arr.type))
        flat = np.asarray(pc.list_flatten(filled).cast(pa.float32()).to_numpy(zero_copy_only=False), np.float32)
        return (name, "vector", dim, np.ascontiguousarray(flat), None, valid)
    # numeric
    is_int = pa.types.is_integer(t)
    is_float = pa.types.is_floating(t)
    if not (is_int or is_float):
        raise InvalidArgument(f"{what} '{name}' has type {_type_name(t)}, expected {dtype}: cast it first")
    if dtype in ("int32", "int64"):
        if is_float:
            vals = _numeric(arr, np.float64, name)
            ok = np.isfinite(vals) & (vals == np.round(vals))
            if valid is not None:
                ok |= valid == 0
            if not ok.all():
                i = _first_true(~ok)
                raise InvalidArgument(f"{what} '{name}' has the non-integer value {vals[i]} at row {i}, expected "
                                      f"{dtype}: round or cast it first")
        lo, hi = _INT_RANGES[dtype]
        if pa.types.is_uint64(t):
            vals = _numeric(arr, np.uint64, name)
            bad = vals > np.uint64(hi)
        else:
            vals = _numeric(arr, np.float64 if is_float else np.int64, name)
            bad = (vals < lo) | (vals > hi)
        if bad.any():
            i = _first_true(bad)
            raise InvalidArgument(f"{what} '{name}' has the value {vals[i]} at row {i}, out of {dtype} range")
        np_t: type[np.number] = np.int32 if dtype == "int32" else np.int64
        return (name, dtype, 0, np.ascontiguousarray(_numeric(arr, np_t, name)), None, valid)
    # float32 / float64 targets accept ints and floats
    np_t = np.float32 if dtype == "float32" else np.float64
    return (name, dtype, 0, np.ascontiguousarray(_numeric(arr, np_t, name)), None, valid)


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



# ------------------------------------------------------------------------------------------------

class Entity:
    """What feature rows are about, identified by join keys."""

    def __init__(self, info: dict):
        self._info = info

    @property
    def name(self) -> str:
        return self._info["name"]

    @property
    def join_keys(self) -> list[str]:
        return [k["name"] for k in self._info["join_keys"]]

    def __repr__(self) -> str:
        keys = ", ".join(f"{k['name']}: {k['dtype']}" for k in self._info["join_keys"])
        return f"<keel.Entity {self.name} ({keys})>"


class FeatureView:
    """A versioned, typed table of feature values over time, keyed by its entities' join keys."""

    def __init__(self, store: FeatureStore, info: dict):
        self._store = store
        self._info = info

    # --- definition -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._info["name"]

    @property
    def version(self) -> int:
        return self._info["version"]

    @property
    def entities(self) -> list[str]:
        return list(self._info["entities"])

    @property
    def join_keys(self) -> list[str]:
        return [k["name"] for k in self._info["join_keys"]]

    @property
    def schema(self) -> dict[str, str]:
        return {f["name"]: (f"vector[{f['dim']}]" if f["dtype"] == "vector" else f["dtype"])
                for f in self._info["features"]}

    @property
    def pii_columns(self) -> list[str]:
        return [f["name"] for f in self._info["features"] if f["pii"]]

    @property
    def ttl(self) -> _dt.timedelta | None:
        ms = self._info["ttl_ms"]
        return _dt.timedelta(milliseconds=ms) if ms else None

    @property
    def owner(self) -> str:
        return self._info["owner"]

    @property
    def description(self) -> str:
        return self._info["description"]

    @property
    def tags(self) -> dict:
        return dict(self._info["tags"])

    @property
    def event_timestamp_column(self) -> str:
        return self._info["event_column"]

    @property
    def created_timestamp_column(self) -> str:
        return self._info["created_column"]

    @property
    def lineage_ref(self) -> str:
        return f"feature_view:{self.name}"

    def refresh(self) -> FeatureView:
        """Reloads the definition (another process may have changed it)."""
        self._info = self._store._native.view(self.name)
        return self

    # --- offline store ----------------------------------------------------------------------
    def _input_specs(self) -> list[dict]:
        info = self._info
        specs = [dict(k) for k in info["join_keys"]]
        specs.append({"name": info["event_column"], "dtype": "timestamp", "dim": 0})
        specs.append({"name": info["created_column"], "dtype": "timestamp", "dim": 0, "optional": True})
        specs.extend(info["features"])
        return specs

    def _to_columns(self, data) -> tuple[pa.Table, list]:
        table = _to_arrow_table(data)
        specs = self._input_specs()
        known = {s["name"] for s in specs}
        for name in table.column_names:
            if name not in known:
                raise InvalidArgument(f"column '{name}' is not in feature view '{self.name}' (version "
                                      f"{self.version}): drop it, or add it to the schema")
        columns = []
        for spec in specs:
            if spec["name"] not in table.column_names:
                if spec.get("optional"):
                    continue
                if spec["name"] == self._info["event_column"]:
                    # The point-in-time join and the TTL need every row's event time; there is no safe default.
                    raise InvalidArgument(
                        f"the data has no '{spec['name']}' column, which feature view '{self.name}' requires: "
                        f"add a time-zone-aware '{spec['name']}' column saying when each row's values were true "
                        f"(e.g. df['{spec['name']}'] = pd.Timestamp.now(tz='UTC').floor('ms') "
                        "for a snapshot taken now)")
                raise InvalidArgument(f"column '{spec['name']}' of feature view '{self.name}' is missing from "
                                      "the data")
            col = _convert(table.column(spec["name"]), spec)
            columns.append(col)
            valid = col[5]
            if valid is not None and spec in self._info["join_keys"]:
                i = _first_true(valid == 0)
                raise InvalidArgument(f"join key '{spec['name']}' is null at row {i}: drop or fill those rows")
        return table, columns

    def _run_quality_rules(self, table: pa.Table) -> None:
        """Pre-write hook: the view's data-quality rules (keel.quality, fv.add_rule) run here on the
        batch (a pyarrow Table whose types already passed the schema check), before anything is
        written. A failing rule of severity "error" raises, and the ingest writes nothing."""
        checks = self.quality
        if checks.rule_ids():
            checks.gate(table)

    # --- data quality (keel.quality) ----------------------------------------------------------
    @property
    def quality(self):
        """The view's quality rules, results history, reference profiles and data issues."""
        from keel.quality import checks
        return checks(self._store._ws, self.lineage_ref)

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

        The data holds the join keys, the event timestamp column, optionally the created timestamp
        column (default: the ingest time) and every schema column. For the same entity and event
        time, the row with the latest created timestamp wins.
        """
        table, columns = self._to_columns(data)
        self._run_quality_rules(table)
        segment = self._store._native.ingest(self.name, table.num_rows, columns)
        return {"view": self.name, "version": self.version, "rows": table.num_rows, "segment": segment}

    def _read(self, start=None, end=None, as_of=None, keys: dict | None = None) -> pa.Table:
        key_rows: int | None = None
        key_cols: list = []
        if keys:
            key_rows, key_cols = _key_columns(self._info["join_keys"], keys, "keys")
        cols = self._store._native.read(self.name, _ms_of(start), _ms_of(end), _ms_of(as_of), key_rows, key_cols,
                                        self.version)
        return _to_table(cols)

    def to_arrow(self, start=None, end=None) -> pa.Table:
        """Every row with start <= event time < end (one per entity and event time; the latest
        created wins), sorted by key and time. PII columns are masked unless granted."""
        return self._read(start=start, end=end)

    def to_pandas(self, start=None, end=None):
        return _arrow_to_pandas(self.to_arrow(start=start, end=end))

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


def _key_columns(join_keys: list[dict], keys: Mapping, what: str) -> tuple[int, list]:
    columns, rows = [], None
    for spec in join_keys:
        if spec["name"] not in keys:
            raise InvalidArgument(f"{what} lack the join key '{spec['name']}'")
        values = keys[spec["name"]]
        if np.isscalar(values) or isinstance(values, str):
            values = [values]
        arr = pa.array(values, from_pandas=True)
        if rows is None:
            rows = len(arr)
        elif len(arr) != rows:
            raise InvalidArgument(f"join key '{spec['name']}' has {len(arr)} values, others have {rows}")
        columns.append(_convert(arr, spec, what="key"))
    return rows or 0, columns


class FeatureViewList(list):
    """``ws.features.list()``: feature views with owner, freshness and row counts."""

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self._rows(), columns=["name", "version", "entities", "features", "owner",
                                                   "description", "ttl", "rows", "segments", "last_event",
                                                   "last_ingest", "materialized_until", "tags"])

    def _rows(self):
        out = []
        for d in self:
            out.append({"name": d["name"], "version": d["version"], "entities": ", ".join(d["entities"]),
                        "features": len(d["features"]), "owner": d["owner"], "description": d["description"],
                        "ttl": _dt.timedelta(milliseconds=d["ttl_ms"]) if d["ttl_ms"] else None,
                        "rows": d["rows"], "segments": d["segments"],
                        "last_event": _ms_to_pandas(d["last_event_ms"]),
                        "last_ingest": _ms_to_pandas(d["last_ingest_ms"]),
                        "materialized_until": _ms_to_pandas(d["materialized_end_ms"]),
                        "tags": dict(d["tags"])})
        return out

    def _repr_html_(self) -> str:
        rows = []
        for d in self:
            rows.append({"view": f"{d['name']} v{d['version']}", "owner": d["owner"] or "-",
                         "rows": d["rows"], "last event": format_ms(d["last_event_ms"]),
                         "last ingest": format_ms(d["last_ingest_ms"]), "description": d["description"]})
        return html_table(rows, title="Feature views")


class TrainingSet:
    """A point-in-time correct training set: the label frame plus one column per feature.

    ``.id`` identifies it; ``ws.features.training_set(id=...)`` rebuilds the identical data later.
    """

    def __init__(self, record: dict, labels: pa.Table, feature_columns: list):
        self.record = record
        self._labels = labels
        self._features = _to_table(feature_columns)
        clash = set(labels.column_names) & set(self._features.column_names)
        if clash:
            raise InvalidArgument(f"label column(s) {sorted(clash)} have the same name as requested features: "
                                  "rename them in the label frame")

    @property
    def id(self) -> str:
        return self.record["id"]

    @property
    def lineage_ref(self) -> str:
        """The lineage node of this training set: ``training_set:<id>``."""
        return f"training_set:{self.id}"

    @property
    def features(self) -> list[str]:
        return list(self.record["features"])

    @property
    def view_versions(self) -> dict[str, int]:
        return dict(self.record["view_versions"])

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
        rows = [{"id": self.id, "rows": r["label_rows"], "features": ", ".join(r["features"]),
                 "views": ", ".join(f"{k} v{v}" for k, v in r["view_versions"].items()),
                 "from": format_ms(r["min_ts_ms"]), "to": format_ms(r["max_ts_ms"])}]
        return html_table(rows, title="Training set")


class FeatureStore:
    """``ws.features``: define entities and feature views, build training sets, serve online."""

    def __init__(self, workspace):
        self._ws = workspace
        self._native = _core.FeatureStore(workspace._native)
        self._readers: dict[tuple, _core.OnlineReader] = {}

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
        """Every feature view with owner, description, freshness (last event, last ingest) and rows."""
        return FeatureViewList(self._native.list())

    # --- training sets ----------------------------------------------------------------------
    def _label_columns(self, labels: pa.Table, features: Sequence[str], timestamp_column: str):
        needed: list[dict] = []
        seen = set()
        for f in features:
            view = f.split(":", 1)[0]
            info = self._native.view(view)
            for k in info["join_keys"]:
                if k["name"] not in seen:
                    seen.add(k["name"])
                    needed.append(k)
        columns = []
        for spec in needed:
            if spec["name"] not in labels.column_names:
                raise InvalidArgument(f"labels lack the join key column '{spec['name']}' needed by the requested "
                                      "features")
            columns.append(_convert(labels.column(spec["name"]), spec, what="label column"))
        if timestamp_column not in labels.column_names:
            raise InvalidArgument(f"labels have no timestamp column '{timestamp_column}': name it with "
                                  "timestamp_column=")
        columns.append(_convert(labels.column(timestamp_column),
                                {"name": timestamp_column, "dtype": "timestamp"}, what="label column"))
        return columns

    def training_set(self, labels=None, features: Sequence[str] | None = None, *, id: str | None = None,  # noqa: A002
                     timestamp_column: str = "event_timestamp", run=None) -> TrainingSet:
        """Point-in-time join: for each label row, each feature's latest value with event time <=
        the row's timestamp and within its view's TTL (null otherwise). Label rows keep their order.

        ``training_set(id=...)`` rebuilds a recorded training set from the same labels and segments.
        ``run=`` (a tracking run) records that the run consumed it (``run.log_input``).
        """
        ts = self._training_set(labels, features, id, timestamp_column)
        if run is not None:
            run.log_input(ts)
        return ts

    def _training_set(self, labels, features, id, timestamp_column) -> TrainingSet:  # noqa: A002
        if id is not None:
            record = self._native.training_set_record(id)
            blob = self._ws.get_artifact(record["labels_digest"])
            table = pa.ipc.open_stream(pa.py_buffer(blob)).read_all()
            cols = self._label_columns(table, record["features"], record["timestamp_column"])
            record, out = self._native.rebuild_training_set(id, table.num_rows, cols)
            return TrainingSet(record, table, out)
        if labels is None or not features:
            raise InvalidArgument("training_set needs labels and features=[\"view:column\", ...] (or id=)")
        if isinstance(features, str):
            features = [features]
        table = _to_arrow_table(labels)
        if table.schema.metadata:
            table = table.replace_schema_metadata(None)
        cols = self._label_columns(table, features, timestamp_column)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest = self._ws.put_artifact(sink.getvalue().to_pybytes())
        record, out = self._native.training_set(table.num_rows, cols, list(features), timestamp_column, digest)
        return TrainingSet(record, table, out)

    # --- online store -----------------------------------------------------------------------
    def materialize(self, view: str | FeatureView, end=None) -> dict:
        """Copies the latest value per entity (event time <= end, default now) to the online store,
        reading only rows that arrived since the previous materialization."""
        name = view.name if isinstance(view, FeatureView) else view
        return self._native.materialize(name, _ms_of(end))

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
            return reader.lookup(ids, now_ms=_ms_of(now))
        join_keys: list[dict] = []
        for view in dict.fromkeys(f.split(":", 1)[0] for f in features):
            for k in self._native.view(view)["join_keys"]:
                if k["name"] not in [j["name"] for j in join_keys]:
                    join_keys.append(k)
        rows, cols = _key_columns(join_keys, keys, "keys")
        out = self._native.get_online(list(features), rows, cols, _ms_of(now))
        return _arrow_to_pandas(_to_table([tuple(c) + (False,) for c in cols] + list(out)))

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
        return self._ws.features._native

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

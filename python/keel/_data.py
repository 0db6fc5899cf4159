"""Every kind of tabular input Keel takes, turned into one pyarrow Table: the one way columns reach
the C++ core, which imports the table through the Arrow C Data Interface (``__arrow_c_stream__``)
and applies its own rules there (feature ingest: ``core/features/input.cpp``; quality checks:
``core/plugins/quality_input.cpp``; batch prediction: ``core/inference/column_rows.cpp``; time
columns, for all of them: ``core/common/time_columns.cpp``).

Each input kind is a pair ``_is_X(data)`` / ``_from_X(data, names)`` listed once in ``_KINDS``, so
a new kind, or a fix to one, is made in one place:

- pyarrow ``Table`` / ``RecordBatch`` (and anything exporting ``__arrow_c_stream__``, e.g. polars);
- pandas ``DataFrame`` (``NaN`` and ``None`` become nulls, like pyarrow's ``from_pandas``);
- numpy 2-D array (columns named by ``names=``, else "0", "1", ...) or structured array;
- dict of columns (lists, arrays, Series);
- list of row dicts (``[{"player_id": 1, "spend": 2.5}, ...]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from keel.errors import InvalidArgument

__all__ = ["to_table", "to_rows", "is_arrow", "is_rows"]


def refuse_duplicate_columns(names) -> None:
    """Two columns of one name would be read as one (or crash pandas/arrow deep inside)."""
    seen = set()
    for name in names:
        key = str(name)
        if key in seen:
            raise InvalidArgument(f"column '{key}' appears more than once in the data: rename or drop the "
                                  f"duplicate (e.g. df.loc[:, ~df.columns.duplicated()])")
        seen.add(key)


# --- pyarrow ---------------------------------------------------------------------------------------

def _is_arrow(data) -> bool:
    return isinstance(data, (pa.Table, pa.RecordBatch))


def _from_arrow(data, names):
    refuse_duplicate_columns(data.schema.names)
    return data if isinstance(data, pa.Table) else pa.Table.from_batches([data])


def _is_arrow_stream(data) -> bool:
    # pandas DataFrames export Arrow streams too (pandas >= 3), but keep their own path (NaN as null).
    return hasattr(data, "__arrow_c_stream__") and not isinstance(data, (pa.Table, pa.RecordBatch)) and \
        not _is_pandas(data)


def _from_arrow_stream(data, names):
    return _from_arrow(pa.table(data), names)  # any PyCapsule producer (polars, duckdb, ...)


# --- pandas ----------------------------------------------------------------------------------------

def _pandas():
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return None
    return pd


def _is_pandas(data) -> bool:
    pd = _pandas()
    return pd is not None and isinstance(data, pd.DataFrame)


def _first_bad_object(series):
    kinds: dict[type, int] = {}
    for i, v in enumerate(series.tolist()):
        if v is None or (isinstance(v, float) and v != v):
            continue
        kinds.setdefault(type(v), i)
        if len(kinds) > 1:
            return i, v
    return None


def _from_pandas(data, names):
    refuse_duplicate_columns(data.columns)
    arrays, out_names = [], []
    for name in data.columns:
        s = data[name]
        try:
            arrays.append(pa.array(s, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
            bad = _first_bad_object(s)
            where = f" at row {bad[0]} ({bad[1]!r})" if bad else ""
            raise InvalidArgument(f"column '{name}' has mixed or unsupported values{where}: {e}") from None
        out_names.append(str(name))
    return pa.Table.from_arrays(arrays, names=out_names)


# --- numpy -----------------------------------------------------------------------------------------

def _is_numpy(data) -> bool:
    return isinstance(data, np.ndarray)


def _from_numpy(data, names):
    if data.dtype.names:  # a structured array: one column per field
        return _from_dict({n: data[n] for n in data.dtype.names}, None)
    if data.ndim == 1:
        data = data.reshape(-1, 1)
    if data.ndim != 2:
        raise InvalidArgument(f"a numpy array of {data.ndim} dimensions is not a table: pass rows (2-D)")
    names = [str(n) for n in names] if names is not None else [str(i) for i in range(data.shape[1])]
    if len(names) != data.shape[1]:
        raise InvalidArgument(f"{len(names)} names for a numpy array of {data.shape[1]} columns")
    refuse_duplicate_columns(names)
    pd = _pandas()
    return _from_pandas(pd.DataFrame(data, columns=names), None)


# --- dicts and rows ---------------------------------------------------------------------------------

def _is_dict(data) -> bool:
    return isinstance(data, Mapping)


def _from_dict(data, names):
    pd = _pandas()
    try:
        frame = pd.DataFrame(dict(data))
    except ValueError as e:  # columns of different lengths, or only scalars
        raise InvalidArgument(f"the dict's columns do not form a table: {e} (give every column as a list of "
                              "the same length)") from None
    return _from_pandas(frame, names)


def _is_rows(data) -> bool:
    return isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and len(data) > 0 and all(
        isinstance(r, Mapping) for r in data)


def _from_rows(data, names):
    pd = _pandas()
    return _from_pandas(pd.DataFrame.from_records(list(data)), names)


_KINDS = (
    (_is_arrow, _from_arrow),
    (_is_pandas, _from_pandas),
    (_is_numpy, _from_numpy),
    (_is_dict, _from_dict),
    (_is_rows, _from_rows),
    (_is_arrow_stream, _from_arrow_stream),
)


def to_table(data, *, names: Sequence[str] | None = None, what: str = "data") -> pa.Table:
    """``data`` of any supported kind as a pyarrow Table (no copy for pyarrow input)."""
    for is_kind, from_kind in _KINDS:
        if is_kind(data):
            return from_kind(data, names)
    raise InvalidArgument(f"{what} must be a pandas DataFrame, a pyarrow Table or RecordBatch, a 2-D numpy array, "
                          f"a dict of columns or a list of row dicts, not {type(data).__name__}")


# --- rows (requests to an endpoint, single predictions) ---------------------------------------------

def is_rows(data) -> bool:
    """A list of row dicts."""
    return _is_rows(data)


def is_arrow(data) -> bool:
    """A pyarrow Table or RecordBatch, or another producer of Arrow streams."""
    return _is_arrow(data) or _is_arrow_stream(data)


def to_rows(data) -> list[dict]:
    """``data`` as row dicts: a DataFrame by its records, pyarrow / numpy / a dict of columns through
    their table, and any iterable of mappings (a list of dicts) row by row."""
    if _is_pandas(data):
        return data.to_dict("records")
    if _is_arrow(data) or _is_numpy(data) or _is_dict(data) or _is_arrow_stream(data):
        return to_table(data, what="requests").to_pylist()
    return [dict(r) for r in data]

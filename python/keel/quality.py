"""Data-quality rules: Lua plugins that check a batch of data, with the statistics done in C++.

A rule is a plugin defining ``check(batch, ctx)`` (built-ins in ``plugins/quality/``: not_null,
range, unique, allowed_values, row_count, freshness, drift_psi) plus its arguments and a severity:
``error`` failures reject a batch, ``warn`` ones are stored. ``batch:column(name)`` gives C++ helpers
(null_rate, min, max, mean, stddev, quantile, distinct_count, duplicate_count, count_outside,
pattern_share, allowed_share, psi, profile).

>>> report = keel.quality.check(df, [keel.quality.rule("plugins/quality/range.lua", column="spend", min=0)])
>>> report.passed, report.to_pandas()
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from keel import _core
from keel import plugins as _plugins  # noqa: F401  (sets the plugin search path)
from keel.errors import InvalidArgument

SEVERITIES = ("error", "warn")


@dataclass(frozen=True)
class Rule:
    """A quality plugin with its arguments (``ctx.args``) and the severity of a failure."""
    plugin: str
    args: Mapping[str, Any] = field(default_factory=dict)
    severity: str = "error"
    name: str = ""

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise InvalidArgument(f"severity {self.severity!r} is not one of {SEVERITIES}")

    @property
    def label(self) -> str:
        return self.name or os.path.splitext(os.path.basename(self.plugin))[0]


def rule(plugin: str | os.PathLike, *, severity: str = "error", name: str = "", **args) -> Rule:
    """``rule("plugins/quality/range.lua", column="spend_30d", min=0, severity="error")``."""
    return Rule(os.fspath(plugin), dict(args), severity, name)


class DataQualityError(InvalidArgument):
    """A batch failed error-severity rules; ``.report`` holds every result."""

    def __init__(self, message: str, report: "QualityReport"):
        super().__init__(message)
        self.report = report


class QualityReport:
    """The results of running rules on one batch."""

    def __init__(self, results: list[dict], rows: int, target: str = ""):
        self.results = results
        self.rows = rows
        self.target = target

    @property
    def failures(self) -> list[dict]:
        """Error-severity results that failed (or whose rule itself errored): these reject a batch."""
        return [r for r in self.results if r["severity"] == "error" and r["status"] in ("fail", "error")]

    @property
    def warnings(self) -> list[dict]:
        return [r for r in self.results
                if r["status"] == "warn" or (r["severity"] == "warn" and r["status"] in ("fail", "error"))]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.passed:
            return f"{len(self.results)} checks on {self.rows} rows: passed ({len(self.warnings)} warnings)"
        lines = [f"{len(self.failures)} of {len(self.results)} checks failed on {self.rows} rows"
                 + (f" for {self.target}" if self.target else "") + ":"]
        for r in self.failures:
            col = f"[{r['column']}] " if r["column"] else ""
            lines.append(f"  {r['rule']} {col}{r['status']}: {r['message']} (expected {r['expectation']}, "
                         f"observed {r['observed']})")
        return "\n".join(lines)

    def raise_if_failed(self) -> "QualityReport":
        if not self.passed:
            raise DataQualityError(self.summary(), self)
        return self

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self.results, columns=["rule", "column", "severity", "status", "observed",
                                                   "expectation", "message"])

    def __repr__(self) -> str:
        return f"<keel.quality.QualityReport {self.summary().splitlines()[0]}>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        return html_table(self.results, title=self.summary().splitlines()[0])


# --- batches: pandas / pyarrow columns as borrowed numpy buffers -------------------------------

def _arrow_column(name: str, arr):
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_null(t):
        arr = pa.array([None] * len(arr), type=pa.float64())
        t = arr.type
    if pa.types.is_boolean(t):
        arr, kind, dtype = pc.cast(arr, pa.uint8()), "bool", np.uint8
    elif pa.types.is_integer(t):
        arr, kind, dtype = pc.cast(arr, pa.int64()), "int64", np.int64
    elif pa.types.is_floating(t) or pa.types.is_decimal(t):
        arr, kind, dtype = pc.cast(arr, pa.float64()), "float64", np.float64
    elif pa.types.is_timestamp(t) or pa.types.is_date(t):
        tz = getattr(t, "tz", None)
        arr = pc.cast(arr, pa.timestamp("ns", tz=tz)) if not pa.types.is_date(t) else pc.cast(
            pc.cast(arr, pa.timestamp("s")), pa.timestamp("ns"))
        kind, dtype = "timestamp", np.int64
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        validity, offsets, data = arr.buffers()
        odt = np.int32 if pa.types.is_string(t) else np.int64
        offs = np.frombuffer(offsets, dtype=odt)[arr.offset: arr.offset + len(arr) + 1]
        chars = np.frombuffer(data, dtype=np.uint8) if data is not None else None
        valid = np.frombuffer(validity, dtype=np.uint8) if validity is not None and arr.null_count else None
        return (name, "string", None, valid, arr.offset, offs, chars)
    else:
        arr, kind, dtype = pc.cast(arr, pa.string()), "string", None
        return _arrow_column(name, arr)
    validity, data = arr.buffers()[:2]
    values = np.frombuffer(data, dtype=dtype)[arr.offset: arr.offset + len(arr)]
    valid = np.frombuffer(validity, dtype=np.uint8) if validity is not None and arr.null_count else None
    return (name, kind, values, valid, arr.offset, None, None)


def _pandas_column(name: str, s):
    import pandas as pd
    import pyarrow as pa

    dt = s.dtype
    if isinstance(dt, np.dtype):
        if dt.kind == "f":
            return (name, "float64", np.ascontiguousarray(s.to_numpy(dtype=np.float64)), None, 0, None, None)
        if dt.kind in "iu":
            return (name, "int64", np.ascontiguousarray(s.to_numpy(dtype=np.int64)), None, 0, None, None)
        if dt.kind == "b":
            return (name, "bool", np.ascontiguousarray(s.to_numpy()).view(np.uint8), None, 0, None, None)
        if dt.kind == "M":
            v = np.ascontiguousarray(s.to_numpy().astype("datetime64[ns]")).view(np.int64)
            return (name, "timestamp", v, None, 0, None, None)
    if isinstance(dt, pd.DatetimeTZDtype):
        v = np.ascontiguousarray(s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]"))
        return (name, "timestamp", v.view(np.int64), None, 0, None, None)
    return _arrow_column(name, pa.array(s, from_pandas=True))


def _batch(data, columns: Iterable[str] | None = None):
    """(column tuples, rows) from a DataFrame, a pyarrow Table/RecordBatch or a dict of arrays."""
    try:
        import pyarrow as pa
        arrow_types = (pa.Table, pa.RecordBatch)
    except ImportError:  # pragma: no cover
        arrow_types = ()
    wanted = set(columns) if columns is not None else None
    cols = []
    if arrow_types and isinstance(data, arrow_types):
        rows = data.num_rows
        for name in data.column_names:
            if wanted is None or name in wanted:
                cols.append(_arrow_column(str(name), data.column(name)))
        return cols, rows
    import pandas as pd
    if isinstance(data, Mapping):
        data = pd.DataFrame(dict(data))
    if not isinstance(data, pd.DataFrame):
        raise InvalidArgument(f"quality checks take a pandas DataFrame or a pyarrow Table, not {type(data).__name__}")
    for name in data.columns:
        if wanted is None or name in wanted:
            cols.append(_pandas_column(str(name), data[name]))
    return cols, len(data)


def check(data, rules: Iterable[Rule], *, references: Mapping[str, Any] | None = None, now: float | None = None,
          target: str = "") -> QualityReport:
    """Run every rule on a batch (pandas DataFrame or pyarrow Table) and return the report.

    ``references`` maps columns to profiles (from :func:`profile`) for drift rules; ``now`` is the
    time freshness rules compare to (seconds since the epoch, default: now).
    """
    rules = [r if isinstance(r, Rule) else rule(**r) for r in rules]
    cols, rows = _batch(data)
    context = {"now": float(now if now is not None else time.time()), "references": dict(references or {}),
               "target": target}
    results = _core.quality_run(cols, rows, [(r.plugin, dict(r.args), r.severity, r.label) for r in rules], context)
    return QualityReport(results, rows, target)


def profile(data, columns: Iterable[str] | None = None, bins: int = 10) -> dict:
    """Reference profiles per column (quantile bins for numbers, shares for strings), for drift_psi."""
    cols, rows = _batch(data, columns)
    return _core.quality_profile(cols, rows, bins)


def psi(data, column: str, reference: Mapping) -> float:
    """Population stability index of one column against a reference profile."""
    cols, rows = _batch(data, [column])
    if not cols:
        raise InvalidArgument(f"no column {column!r} in the batch")
    return _core.quality_psi(cols, rows, dict(reference))

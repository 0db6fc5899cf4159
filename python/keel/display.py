"""Notebook display helpers: small, dependency-free HTML tables for ``_repr_html_``."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone


def format_value(value) -> str:
    """One cell: timestamps in ms become ISO times, floats get 6 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.6g}"
    return str(value)


def format_ms(ms: int | None) -> str | None:
    """Milliseconds since the epoch as an ISO-8601 UTC string (None stays None)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def html_table(rows: Iterable[Mapping], title: str | None = None, max_rows: int = 50) -> str:
    """Render dict rows as an HTML table with a header from the union of their keys."""
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    out = []
    if title:
        out.append(f"<b>{html.escape(title)}</b>")
    out.append("<table><thead><tr>")
    out.extend(f"<th>{html.escape(str(c))}</th>" for c in columns)
    out.append("</tr></thead><tbody>")
    for row in rows[:max_rows]:
        out.append("<tr>")
        out.extend(f"<td>{html.escape(format_value(row.get(c)))}</td>" for c in columns)
        out.append("</tr>")
    out.append("</tbody></table>")
    if len(rows) > max_rows:
        out.append(f"<small>{len(rows) - max_rows} more rows</small>")
    return "".join(out)

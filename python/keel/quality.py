"""Data-quality rules: Lua plugins that check a batch of data, with the statistics done in C++.

A rule is a plugin defining ``check(batch, ctx)`` (built-ins in ``plugins/quality/``: not_null,
range, unique, allowed_values, row_count, freshness, drift_psi) plus its arguments and a severity:
``error`` failures reject a batch, ``warn`` ones are stored. ``batch:column(name)`` gives C++ helpers
(null_rate, min, max, mean, stddev, quantile, distinct_count, duplicate_count, count_outside,
pattern_share (RE2 syntax), allowed_share, not_allowed, psi, profile).

Rules attached to a feature view (``fv.add_rule``) are checked when added: arguments the plugin's
schema types as ``column`` must name a column of the view, ``pattern`` ones must compile. What they
record (history, data issues, reference profiles) never holds raw values of PII columns the
caller's role may not read: those come out masked like the feature store's reads.

>>> report = keel.quality.check(df, [keel.quality.rule("plugins/quality/range.lua", column="spend", min=0)])
>>> report.passed, report.to_pandas()
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pyarrow as pa

from keel import _core, _data
from keel import plugins as _plugins
from keel.errors import InvalidArgument, KeelError

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

    def __init__(self, message: str, report: QualityReport):
        super().__init__(message)
        self.report = report


class QualityReport:
    """The results of running rules on one batch."""

    def __init__(self, results: list[dict], rows: int, target: str = ""):
        self.results = results
        self.rows = rows
        self.target = target
        self.batch: int | None = None  # the recorded batch id, when recorded

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

    def raise_if_failed(self) -> QualityReport:
        if not self.passed:
            raise DataQualityError(self.summary(), self)
        return self

    def to_pandas(self):
        import pandas as pd
        return pd.DataFrame(self.results, columns=["rule", "column", "severity", "status", "observed",
                                                   "expectation", "message", "detail"])

    def __repr__(self) -> str:
        return f"<keel.quality.QualityReport {self.summary().splitlines()[0]}>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        return html_table(self.results, title=self.summary().splitlines()[0])


# --- batches: any tabular input as Arrow data (keel._data), read by the core in place -----------

def _batch(data, columns: Iterable[str] | None = None) -> pa.Table | _core.IngestBatch:
    """The columns of a DataFrame, a pyarrow Table/RecordBatch, a numpy array, a dict of columns or
    a list of row dicts (keel._data), as the table the core reads. The core imports it as rules see
    it (core/plugins/quality_input.cpp: categories decoded, decimals as floats, times of day and
    durations as text, binary, nested and vector columns left out, naive timestamps refused). A
    feature view's prepared ingest batch (already typed by the view) passes as it is."""
    if isinstance(data, _core.IngestBatch):
        return data
    table = _data.to_table(data, what="quality checks")
    if columns is not None:
        wanted = set(columns)
        table = table.select([name for name in table.column_names if name in wanted])
    return table


def _num_rows(batch: pa.Table | _core.IngestBatch) -> int:
    return batch.rows if isinstance(batch, _core.IngestBatch) else batch.num_rows


def check(data, rules: Iterable[Rule], *, references: Mapping[str, Any] | None = None, now: float | None = None,
          target: str = "") -> QualityReport:
    """Run every rule on a batch (pandas DataFrame or pyarrow Table) and return the report.

    ``references`` maps columns to profiles (from :func:`profile`) for drift rules; ``now`` is the
    time freshness rules compare to (seconds since the epoch, default: now).
    """
    rules = [r if isinstance(r, Rule) else rule(**r) for r in rules]
    table = _batch(data)
    _plugins.ensure_search_path()  # rules name plugins by ref; the C++ host resolves them
    # Arguments are checked against each plugin's schema in C++ before any rule runs.
    results = _core.quality_run(table, _native_rules(rules), _context(references, now, target))
    return QualityReport(results, _num_rows(table), target)


def _native_rules(rules: list[Rule]) -> list[tuple]:
    return [(r.plugin, dict(r.args), r.severity, r.label) for r in rules]


def _context(references, now, target) -> dict:
    return {"now": float(now if now is not None else time.time()), "references": dict(references or {}),
            "target": target}


def profile(data, columns: Iterable[str] | None = None, bins: int = 10) -> dict:
    """Reference profiles per column (quantile bins for numbers, shares for strings), for drift_psi."""
    return _core.quality_profile(_batch(data, columns), bins)


def psi(data, column: str, reference: Mapping) -> float:
    """Population stability index of one column against a reference profile."""
    table = _batch(data, [column])
    if isinstance(table, pa.Table) and not table.num_columns:
        raise InvalidArgument(f"no column {column!r} in the batch")
    return _core.quality_psi(table, dict(reference))


# --- rules attached to a workspace target, history, reference profiles, data issues ------------

_subscribers: dict[str, list] = {}


def _ws_key(ws) -> str:
    from keel.workspace import is_database_url
    return ws.location if is_database_url(ws.location) else os.path.realpath(ws.path)


class DataIssue(_core.DataIssueRecord):
    """A data issue: a rule failing on a target (a lineage ref). Read-only; its fields (id, target,
    rule, column, severity, message, opened_at and closed_at in ms since the epoch, None while open)
    are the core's record, readable as attributes or like a dict (``issue["target"]``).
    ``downstream`` lists the refs the issue affects (everything downstream of the target in the
    lineage graph), looked up when first read."""

    _fields = (*_core.DataIssueRecord._fields, "downstream")
    _ws: Any

    def __init__(self, ws, record: _core.DataIssueRecord):
        super().__init__(record)
        object.__setattr__(self, "_ws", ws)

    @functools.cached_property
    def downstream(self) -> list[str]:
        try:
            refs = self._ws.lineage.downstream(self.target).refs
        except KeelError:  # a target the graph does not know (or cannot parse) has nothing downstream
            return []
        return [r for r in refs if r != self.target]

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"a data issue is read-only: cannot set {name!r}")


def subscribe(ws, callback) -> Callable[[], None]:
    """Call ``callback(event, issue)`` when a data issue opens or closes in this workspace (this
    process). ``issue`` is a :class:`DataIssue` (target, rule, column, message, ... and ``downstream``,
    the refs affected; ``issue["target"]`` reads like a dict). Returns a function that unsubscribes."""
    subs = _subscribers.setdefault(_ws_key(ws), [])
    subs.append(callback)

    def unsubscribe():
        if callback in subs:
            subs.remove(callback)
    return unsubscribe


def _notify(ws, event: str, issues: Iterable[DataIssue]) -> None:
    subs = list(_subscribers.get(_ws_key(ws), []))
    for issue in issues if subs else ():
        issue.downstream  # noqa: B018 - looked up now: subscribers see what the issue affected when it happened
        for cb in subs:
            cb(event, issue)


def _issue_frame(records: list[_core.DataIssueRecord]):
    import pandas as pd
    columns = list(_core.DataIssueRecord._fields)
    frame = pd.DataFrame([r.to_dict() for r in records], columns=columns)
    for c in ("opened_at", "closed_at"):
        frame[c] = pd.to_datetime(frame[c], unit="ms", utc=True)
    return frame


def issues_affecting(ws, ref: str):
    """Open data issues on ``ref`` or anything upstream of it in the lineage graph (a DataFrame)."""
    return _issue_frame(_core.QualityStore(ws.native).issues_affecting(ref))


#: The columns of ``Checks.history()``: a recorded result with what it observed and its details decoded.
_HISTORY_COLUMNS = ["batch", "created_at", "rows", "accepted", "rule", "column", "severity", "status", "observed",
                    "expectation", "message", "detail"]


def _history_row(r: _core.QualityResultRecord) -> dict:
    row = r.to_dict()
    row["observed"] = json.loads(r.observed_json) if r.observed_json else None
    row["detail"] = json.loads(r.detail_json) if r.detail_json else None
    return row


class Checks:
    """Quality rules attached to a lineage ref (``feature_view:player_activity``), their history,
    reference profiles and data issues. ``fv.add_rule`` and ``fv.ingest`` go through this."""

    def __init__(self, ws, target: str):
        self._ws = ws
        self.target = target
        self._store = _core.QualityStore(ws.native)

    def add_rule(self, plugin: str | os.PathLike, *, severity: str = "error", name: str = "", **args) -> int:
        """Attach a rule; the plugin must exist and load (checked now, not at the next ingest)."""
        r = rule(plugin, severity=severity, name=name, **args)
        _plugins.resolve(r.plugin)
        # Checked in C++ before saving, so a typo fails now, not at the next ingest: the plugin's
        # schema (names, types, ranges), columns of the target view, patterns that must compile.
        return self._store.add_rule(self.target, r.plugin, dict(r.args), json.dumps(dict(r.args)), r.severity, r.name)

    def _stored_rules(self) -> list[tuple[int, Rule]]:
        return [(r.id, Rule(r.plugin, json.loads(r.args_json), r.severity, r.name))
                for r in self._store.rules(self.target)]

    def rules(self) -> list[Rule]:
        return [r for _, r in self._stored_rules()]

    def rule_ids(self) -> list[int]:
        return [r.id for r in self._store.rules(self.target)]

    def _issues(self, records: list[_core.DataIssueRecord]) -> list[DataIssue]:
        return [DataIssue(self._ws, r) for r in records]

    def remove_rule(self, rule_id: int) -> list[DataIssue]:
        """Detach a rule; the data issues it opened close with it (returned, and subscribers told)."""
        closed = self._issues(self._store.remove_rule(self.target, rule_id))
        _notify(self._ws, "closed", closed)
        return closed

    def references(self) -> dict:
        return {col: json.loads(p) for col, p in self._store.profiles(self.target)}

    def set_reference(self, data, columns: Iterable[str] | None = None, bins: int = 10) -> dict:
        """Store reference profiles (for drift_psi) from a batch."""
        profiles = self._store.profile(self.target, _batch(data, columns), bins)  # PII columns: masked values
        if columns is not None:  # a prepared ingest batch holds every column of the view
            wanted = set(columns)
            profiles = {col: p for col, p in profiles.items() if col in wanted}
        for col, p in profiles.items():
            self._store.set_profile(self.target, col, json.dumps(p))
        return profiles

    def run(self, data, *, now: float | None = None, record: bool = True) -> QualityReport:
        """Run every attached rule on a batch; record results (and open/close data issues)."""
        stored_rules = self._stored_rules()
        ids, rules = [i for i, _ in stored_rules], [r for _, r in stored_rules]
        refs = self.references()
        if rules:
            table = _batch(data)
            _plugins.ensure_search_path()
            results = self._store.run(self.target, table, _native_rules(rules), _context(refs, now, self.target))
            report = QualityReport(results, _num_rows(table), self.target)
        else:
            report = QualityReport([], _num_rows(_batch(data)), self.target)
        if record and rules:
            stored = [{**r, "observed": json.dumps(r["observed"], default=str),
                       "detail": json.dumps(r["detail"], default=str) if r["detail"] is not None else "",
                       "rule_id": ids[r["rule_index"]], "raw_pii": ",".join(r["raw_pii"])} for r in report.results]
            batch, opened, closed = self._store.record(self.target, report.rows, report.passed, stored)
            report.batch = batch
            _notify(self._ws, "opened", self._issues(opened))
            _notify(self._ws, "closed", self._issues(closed))
            # The first accepted batch becomes the reference of the columns whose rules declare
            # needs = {"reference_profile"} (drift_psi does) and have none yet.
            if report.passed:
                missing = [c for c in _core.quality_reference_columns(_native_rules(rules)) if c not in refs]
                if missing:
                    self.set_reference(data, missing)
        return report

    def gate(self, data, *, now: float | None = None) -> QualityReport:
        """Run and record the rules; raise DataQualityError listing every failing error-severity rule."""
        return self.run(data, now=now).raise_if_failed()

    def history(self, limit: int = 1000):
        """Results of every recorded batch, newest first (a DataFrame)."""
        import pandas as pd
        rows = [_history_row(r) for r in self._store.history(self.target, limit)]
        frame = pd.DataFrame(rows, columns=_HISTORY_COLUMNS)
        frame["created_at"] = pd.to_datetime(frame["created_at"], unit="ms", utc=True)
        return frame

    def issues(self, include_closed: bool = False):
        return _issue_frame(self._store.issues(self.target, include_closed))

    def close_issue(self, issue_id: int) -> DataIssue:
        """Close an open issue by hand (after a backfill, say); subscribers are told."""
        issue = DataIssue(self._ws, self._store.close_issue(issue_id))
        _notify(self._ws, "closed", [issue])
        return issue

    def __repr__(self) -> str:
        return f"<keel.quality.Checks {self.target} rules={len(self.rule_ids())}>"


def checks(ws, target: str) -> Checks:
    """The rules, history and issues of one target (a lineage ref) in a workspace."""
    return Checks(ws, target)

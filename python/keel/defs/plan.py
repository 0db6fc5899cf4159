"""A plan: what applying definitions changes (or changed), as text, HTML, JSON and a DataFrame."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

# How each action is marked in the text, like a diff: + new, ~ changed, ± a new version, - removed.
_MARKS = {"create": "+", "update": "~", "new_version": "±", "remove": "-"}
_WORDS = {"create": "to create", "update": "to update", "new_version": "new version", "remove": "to remove"}


@dataclass
class Change:
    """One object created, updated, given a new version or removed, and what differs."""

    action: str  # "create", "update", "new_version" or "remove"
    kind: str    # "entity", "feature_view", "training_spec" or "endpoint"
    name: str
    details: list[str] = field(default_factory=list)
    source: str = ""  # file:line of the definition ("" for a removal)

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.name}"

    def to_dict(self) -> dict:
        return {"action": self.action, "kind": self.kind, "name": self.name, "ref": self.ref,
                "source": self.source or None, "details": list(self.details)}


@dataclass
class Plan:
    """The result of ``keel.defs.plan`` (``applied`` False) or ``keel.defs.apply`` (True)."""

    workspace: str
    changes: list[Change]
    unchanged: list[str]      # refs of declared objects already as declared
    unmanaged: list[Change]   # in the workspace, not declared, kept (apply with prune removes them)
    prune: bool
    applied: bool
    sources: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def removals(self) -> list[Change]:
        return [c for c in self.changes if c.action == "remove"]

    @property
    def exit_code(self) -> int:
        """What ``keel plan`` exits with: 0 nothing to do, 1 changes (errors exit with 2 and up)."""
        return 1 if self.changes else 0

    def counts(self) -> dict[str, int]:
        out = {a: sum(c.action == a for c in self.changes) for a in _MARKS}
        out["unchanged"] = len(self.unchanged)
        return out

    def summary(self) -> str:
        n = self.counts()
        parts = [f"{n[a]} {_WORDS[a]}" for a in _MARKS if n[a] or a in ("create", "update", "remove")]
        verb = "Applied to" if self.applied else "Plan for"
        return f"{verb} {self.workspace}: {', '.join(parts)}; {n['unchanged']} unchanged."

    def __str__(self) -> str:
        lines = [self.summary()]
        if self.changes:
            lines.append("")
        for c in self.changes:
            where = f"   ({c.source})" if c.source else ""
            lines.append(f"  {_MARKS[c.action]} {c.ref}{where}")
            lines += [f"      {d}" for d in c.details]
        if self.unmanaged:
            lines += ["", "In the workspace but not in the definitions, kept (apply with --prune removes them): "
                      + ", ".join(c.ref for c in self.unmanaged)]
        if not self.changes and not self.applied:
            lines.append("Nothing to do: the workspace matches the definitions.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def to_dict(self) -> dict:
        """The ``--json`` form."""
        return {"workspace": self.workspace, "applied": self.applied, "prune": self.prune,
                "summary": self.counts(), "changes": [c.to_dict() for c in self.changes],
                "unchanged": list(self.unchanged), "unmanaged": [c.ref for c in self.unmanaged],
                "sources": list(self.sources)}

    def to_pandas(self):
        import pandas as pd
        rows = [{"action": c.action, "kind": c.kind, "name": c.name, "details": "\n".join(c.details),
                 "source": c.source} for c in self.changes]
        return pd.DataFrame(rows, columns=["action", "kind", "name", "details", "source"])

    def _repr_html_(self) -> str:
        colors = {"create": "#1a7f37", "update": "#9a6700", "new_version": "#8250df", "remove": "#cf222e"}
        rows = "".join(
            f"<tr><td style='color:{colors[c.action]};font-weight:bold'>{_MARKS[c.action]} {c.action}</td>"
            f"<td>{html.escape(c.ref)}</td><td style='text-align:left'>{'<br>'.join(map(html.escape, c.details))}"
            f"</td></tr>" for c in self.changes)
        table = (f"<table><tr><th>action</th><th>object</th><th>what changes</th></tr>{rows}</table>"
                 if rows else "<p>Nothing to do: the workspace matches the definitions.</p>")
        kept = (f"<p>Kept, not in the definitions: {html.escape(', '.join(c.ref for c in self.unmanaged))}</p>"
                if self.unmanaged else "")
        return f"<div><b>{html.escape(self.summary())}</b>{table}{kept}</div>"

"""The lineage graph: what every model, training set and endpoint was made from, and what depends on it.

Other modules write it as a side effect of their work (a run producing a model version, a training
set read from a feature view ...); this module reads it. Refs are ``kind:name[/version]`` strings:
``model:churn/3``, ``run:<id>``, ``experiment:churn``, ``feature_view:player_activity``. A model alias
(``model:churn@champion``, ``model:churn@latest``) is resolved to the version it points at: now, or
with ``as_of`` the version it pointed at then (from the registry's alias audit events).
"""

from __future__ import annotations

from collections.abc import Mapping

from keel import _core
from keel._time import to_epoch_ms
from keel.display import format_ms, html_table


def _as_of_ms(as_of) -> int | None:
    """``as_of`` by Keel's one rule for time: zone-aware datetime / Timestamp / ISO string, or int ms."""
    return to_epoch_ms(as_of, "as_of")


class LineageView:
    """The part of the graph reached from one node: ``.nodes``, ``.edges``, ``.to_pandas()``, ``.plot()``."""

    def __init__(self, data: Mapping, direction: str, ref: str | None = None, workspace=None):
        self.root: str = data["root"]
        #: the ref as asked (``model:churn@champion``); ``root`` is the node it resolved to
        self.ref: str = ref or self.root
        self.direction = direction
        self._ws = workspace  # for display names (a run's name instead of its id)
        self.nodes: list[dict] = list(data["nodes"])
        self.edges: list[dict] = list(data["edges"])

    @property
    def refs(self) -> list[str]:
        """Every node reached, the start node first."""
        return [n["ref"] for n in self.nodes]

    def __contains__(self, ref: str) -> bool:
        return ref in self.refs

    def __len__(self) -> int:
        return len(self.nodes)

    def to_pandas(self):
        """One row per edge: from, kind, to, depth, created_at (UTC)."""
        import pandas as pd
        frame = pd.DataFrame(self.edges, columns=["from", "kind", "to", "depth", "created_at"])
        frame["created_at"] = pd.to_datetime(frame["created_at"], unit="ms", utc=True)
        return frame

    def nodes_frame(self):
        """One row per node: ref, kind, name, version, owner, description."""
        import pandas as pd
        return pd.DataFrame(self.nodes, columns=["ref", "kind", "name", "version", "owner", "description"])

    def plot(self, ax=None):
        """Draw the graph left to right in data-flow order (matplotlib): layered by distance from the
        focus node, runs by name, colours by kind with a legend, the figure sized to the graph.
        Returns the axes."""
        from keel.lineage_plot import draw
        return draw(self, ax, names=self._display_name)

    def _display_name(self, node: Mapping) -> str | None:
        """A run's name (its 32-hex id says nothing to a reader); None keeps the node's own name."""
        if node["kind"] != "run" or self._ws is None:
            return None
        try:
            return self._ws.runs.get(node["name"]).name
        except Exception:  # noqa: BLE001 - a run node whose run is gone (or written by hand) keeps its id
            return None

    @property
    def title(self) -> str:
        """``upstream of model:churn/3 (model:churn@champion)``: the alias asked for stays visible."""
        asked = f" ({self.ref})" if self.ref != self.root else ""
        return f"{self.direction} of {self.root}{asked}"

    def __repr__(self) -> str:
        lines = [f"{self.title}: {len(self.nodes)} nodes, {len(self.edges)} edges"]
        lines += [f"  {e['from']} -{e['kind']}-> {e['to']}" for e in self.edges]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [{"from": e["from"], "kind": e["kind"], "to": e["to"], "depth": e["depth"],
                 "created": format_ms(e["created_at"])} for e in self.edges]
        return html_table(rows, title=self.title)


class Lineage:
    """``ws.lineage``: read the graph, and add the edges Keel cannot see (an external data source)."""

    def __init__(self, workspace):
        self._graph = _core.LineageGraph(workspace.native)
        self._ws = workspace

    def resolve(self, ref: str, as_of=None) -> str:
        """The node a ref names: ``model:churn@champion`` -> ``model:churn/3`` (the version the alias
        points at now, or at ``as_of``); any other ref unchanged."""
        if not (isinstance(ref, str) and ref.startswith("model:") and "@" in ref):
            return ref  # only model aliases need the registry
        return self._ws.models.native.resolve_lineage_ref(ref, _as_of_ms(as_of))

    def upstream(self, ref: str, depth: int | None = None, as_of=None) -> LineageView:
        """Everything ``ref`` was made from. ``as_of`` reads the graph as it stood at a past time."""
        at = _as_of_ms(as_of)
        data = self._graph.upstream(self.resolve(ref, at), -1 if depth is None else depth, at)
        return LineageView(data, "upstream", ref, self._ws)

    def downstream(self, ref: str, depth: int | None = None, as_of=None) -> LineageView:
        """Everything made from ``ref``: impact analysis before changing or deleting it."""
        at = _as_of_ms(as_of)
        data = self._graph.downstream(self.resolve(ref, at), -1 if depth is None else depth, at)
        return LineageView(data, "downstream", ref, self._ws)

    def node(self, ref: str) -> dict:
        return self._graph.node(self.resolve(ref))

    def nodes(self, kind: str = ""):
        """All nodes (optionally of one kind) as a DataFrame."""
        import pandas as pd
        return pd.DataFrame(self._graph.nodes(kind),
                            columns=["ref", "kind", "name", "version", "owner", "description", "tags", "created_at"])

    def add_node(self, ref: str, *, owner: str | None = None, description: str | None = None,
                 tags: Mapping[str, str] | None = None) -> str:
        """Declare a node Keel does not create itself (an upstream table, a dashboard)."""
        tag_text = {k: str(v) for k, v in (tags or {}).items()}
        return self._graph.upsert_node(self.resolve(ref), owner, description, tag_text)

    def add_edge(self, from_ref: str, kind: str, to_ref: str) -> None:
        """Record that ``from_ref`` feeds ``to_ref``; missing nodes are created."""
        self._graph.add_edge(self.resolve(from_ref), kind, self.resolve(to_ref))

    def remove_edge(self, from_ref: str, kind: str, to_ref: str) -> None:
        """End an edge; ``as_of`` queries before now still see it."""
        self._graph.remove_edge(self.resolve(from_ref), kind, self.resolve(to_ref))

    # Data issues (kept by keel.quality): failing quality rules mark a node; everything downstream sees it.
    def issues(self, ref: str):
        """Open data issues on ``ref`` or anything upstream of it, as a DataFrame (one row per issue)."""
        from keel.quality import issues_affecting
        return issues_affecting(self._ws, self.resolve(ref))

    def on_issue(self, callback):
        """Call ``callback(event, issue)`` ("opened" / "closed") in this process; returns an unsubscribe function."""
        from keel.quality import subscribe
        return subscribe(self._ws, callback)

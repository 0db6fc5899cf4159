"""Drawing a lineage view with matplotlib, readable at twenty nodes and more.

Layered left to right by distance from the focus node (data flows left to right), nodes in a layer
ordered to keep edges short, every label measured before it is placed: the figure grows with the
graph instead of squeezing it, node boxes never overlap, and an edge label goes where it collides
with nothing (or is left out, and the title says how many). Runs are shown by name, not 32-hex id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Callable

# Colours by node kind (colour-blind-safe Okabe-Ito tones); unknown kinds take the spare ones in turn.
_KIND_COLOURS = {
    "dataset": "#E69F00", "source": "#E69F00", "entity": "#F0E442", "feature_view": "#56B4E9",
    "training_set": "#009E73", "experiment": "#CC79A7", "run": "#D55E00", "artifact": "#999999",
    "model": "#0072B2", "endpoint": "#000000",
}
_SPARE_COLOURS = ["#88CCEE", "#44AA99", "#117733", "#DDCC77", "#AA4499", "#882255"]
_DARK = {"#0072B2", "#000000", "#D55E00", "#009E73", "#117733", "#882255", "#AA4499", "#CC79A7"}

NAME_WIDTH = 20   # characters per line of a node's name
COL_GAP = 1.5     # inches between layers, room for edge labels
ROW_GAP = 0.3     # inches between nodes of one layer
MARGIN = 0.25     # inches around the drawing
FONT = 8
EDGE_FONT = 7


def _shorten_id(name: str) -> str:
    """32-hex ids and other long unbroken tokens are cut: the start is enough to tell them apart."""
    if re.fullmatch(r"[0-9a-f]{16,}", name):
        return name[:8] + "…"
    return name


def wrap_name(name: str, width: int = NAME_WIDTH, max_lines: int = 3) -> list[str]:
    """Wrap at '/', '_', '-', '.', ' ' boundaries (kept at line ends); cut a token longer than a line."""
    tokens = re.findall(r"[^/_\-. ]+[/_\-. ]?|[/_\-. ]", name)
    lines, line = [], ""
    for token in tokens:
        while len(token) > width:  # a token that cannot fit on any line
            if line:
                lines.append(line)
                line = ""
            lines.append(token[:width])
            token = token[width:]
        if len(line) + len(token) > width and line:
            lines.append(line)
            line = ""
        line += token
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 1] + "…"
    return [ln.strip() for ln in lines] or [""]


def node_label(node: Mapping, display_name: str | None = None) -> str:
    kind = wrap_name(node["kind"].replace("_", " "), max_lines=2)
    name = display_name or _shorten_id(node["name"])
    if node.get("version"):
        name = f"{name} v{node['version']}"
    return "\n".join(kind + wrap_name(name))


def _layers(root: str, edges: Sequence[Mapping], upstream: bool) -> dict[str, int]:
    """Layer of each node: its hop distance from the root, negative upstream (data flows rightwards)."""
    depth = {root: 0}
    for edge in edges:  # breadth-first order: a node's first edge gives its distance
        other = edge["from"] if upstream else edge["to"]
        depth.setdefault(other, edge["depth"])
    return {ref: -d if upstream else d for ref, d in depth.items()}


def _order_layers(layer_of: dict[str, int], edges: Sequence[Mapping]) -> dict[int, list[str]]:
    """Nodes of each layer, ordered by the mean position of their neighbours (two barycentre sweeps)."""
    columns: dict[int, list[str]] = {}
    for ref, layer in layer_of.items():
        columns.setdefault(layer, []).append(ref)
    neighbours: dict[str, set[str]] = {ref: set() for ref in layer_of}
    for e in edges:
        if e["from"] in neighbours and e["to"] in neighbours:
            neighbours[e["from"]].add(e["to"])
            neighbours[e["to"]].add(e["from"])
    keys = sorted(columns)
    for sweep in (keys, keys[::-1], keys):
        for i, layer in enumerate(sweep):
            if i == 0:
                continue
            prev = {ref: j for j, ref in enumerate(columns[sweep[i - 1]])}
            here = {ref: j for j, ref in enumerate(columns[layer])}

            def centre(ref, prev=prev, here=here):
                near = [prev[n] for n in neighbours[ref] if n in prev]
                return sum(near) / len(near) if near else here[ref]
            columns[layer].sort(key=centre)
    return columns


def _box_exit(centre, toward, box_size, pad: float = 0.03):
    """Where the segment from a box's centre toward a point leaves the box (so arrowheads show)."""
    (cx, cy), (tx, ty) = centre, toward
    dx, dy = tx - cx, ty - cy
    hw, hh = box_size[0] / 2 + pad, box_size[1] / 2 + pad
    scale = min(hw / abs(dx) if dx else float("inf"), hh / abs(dy) if dy else float("inf"))
    if scale == float("inf") or scale >= 1:
        return centre
    return cx + dx * scale, cy + dy * scale


def _overlaps(a, b, pad: float = 0.04) -> bool:
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1] or b[3] + pad <= a[1])


def draw(view, ax=None, names: Callable[[Mapping], str | None] | None = None):
    """Draw `view` (a LineageView); `names(node)` may give a display name (a run's name)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    upstream = view.direction == "upstream"
    layer_of = _layers(view.root, view.edges, upstream)
    columns = _order_layers(layer_of, view.edges)
    nodes = {n["ref"]: n for n in view.nodes}
    labels = {ref: node_label(nodes.get(ref, {"kind": ref.split(":", 1)[0], "name": ref.split(":", 1)[1]}),
                              names(nodes[ref]) if names and ref in nodes else None) for ref in layer_of}
    kinds = sorted({ref.split(":", 1)[0] for ref in layer_of})
    spare = iter(_SPARE_COLOURS * 4)
    colour = {k: _KIND_COLOURS.get(k) or next(spare) for k in kinds}

    own_figure = ax is None
    if own_figure:
        fig, ax = plt.subplots(figsize=(4, 3))
    fig = ax.figure
    dpi = fig.dpi
    renderer = fig.canvas.get_renderer()

    def make_text(x, y, text, **kw):
        return ax.text(x, y, text, ha="center", va="center", **kw)

    # 1. Measure every node box (in inches) with its real font and padding.
    texts = {}
    size = {}
    for ref, label in labels.items():
        kind = ref.split(":", 1)[0]
        fc = colour[kind]
        t = make_text(0, 0, label, fontsize=FONT, color="white" if fc in _DARK else "black", zorder=3,
                      bbox=dict(boxstyle="round,pad=0.35", fc=fc, ec="0.15", lw=2.2 if ref == view.root else 0.6))
        texts[ref] = t
    for ref, t in texts.items():
        t.update_bbox_position_size(renderer)
        box = t.get_bbox_patch().get_window_extent(renderer)
        size[ref] = (box.width / dpi, box.height / dpi)

    # 2. Lay out: columns as wide as their widest box, rows stacked with a gap, columns centred.
    order = sorted(columns)
    col_width = {c: max(size[r][0] for r in columns[c]) for c in order}
    col_height = {c: sum(size[r][1] for r in columns[c]) + ROW_GAP * (len(columns[c]) - 1) for c in order}
    legend_band = 0.45 if own_figure else 0.0
    title_band = 0.45 if own_figure else 0.0
    width = sum(col_width.values()) + COL_GAP * (len(order) - 1) + 2 * MARGIN
    height = max(col_height.values()) + 2 * MARGIN
    pos, x = {}, MARGIN
    for c in order:
        cx = x + col_width[c] / 2
        y = MARGIN + (height - 2 * MARGIN + col_height[c]) / 2
        for ref in columns[c]:
            h = size[ref][1]
            pos[ref] = (cx, y - h / 2)
            y -= h + ROW_GAP
        x += col_width[c] + COL_GAP
    for ref, t in texts.items():
        t.set_position(pos[ref])
    boxes = [(pos[r][0] - size[r][0] / 2, pos[r][1] - size[r][1] / 2,
              pos[r][0] + size[r][0] / 2, pos[r][1] + size[r][1] / 2) for r in texts]

    if own_figure:
        fig.set_size_inches(width, height + legend_band + title_band)
        ax.set_position([0, legend_band / (height + legend_band + title_band), 1,
                         height / (height + legend_band + title_band)])
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()

    # 3. Edges box to box; each label where it hits nothing already placed, else left out.
    omitted = 0
    for edge in view.edges:
        src, dst = texts.get(edge["from"]), texts.get(edge["to"])
        if src is None or dst is None:
            continue
        (x0, y0), (x1, y1) = pos[edge["from"]], pos[edge["to"]]
        same_column = abs(x0 - x1) < 1e-9
        ax.annotate("", xy=_box_exit((x1, y1), (x0, y0), size[edge["to"]]),
                    xytext=_box_exit((x0, y0), (x1, y1), size[edge["from"]]), zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color="0.45", lw=0.9, shrinkA=0, shrinkB=0, mutation_scale=11,
                                    connectionstyle="arc3,rad=0.35" if same_column else "arc3,rad=0"))
        if same_column:
            omitted += 1
            continue
        label = make_text(0, 0, edge["kind"], fontsize=EDGE_FONT, color="0.25", zorder=2,
                          bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.9))
        label.update_bbox_position_size(renderer)
        extent = label.get_bbox_patch().get_window_extent(renderer)
        w, h = extent.width / dpi, extent.height / dpi
        # Only the gap between the two columns, where no node box sits.
        gap0 = min(x0, x1) + (size[edge["from"] if x0 < x1 else edge["to"]][0]) / 2
        gap1 = max(x0, x1) - (size[edge["to"] if x0 < x1 else edge["from"]][0]) / 2
        placed = False
        for t in (0.5, 0.3, 0.7, 0.15, 0.85):
            lx = gap0 + (gap1 - gap0) * t
            if lx - w / 2 < gap0 or lx + w / 2 > gap1:
                continue
            ly = y0 + (y1 - y0) * (lx - x0) / (x1 - x0)
            box = (lx - w / 2, ly - h / 2, lx + w / 2, ly + h / 2)
            if box[1] < 0 or box[3] > height or any(_overlaps(box, b) for b in boxes):
                continue
            label.set_position((lx, ly))
            boxes.append(box)
            placed = True
            break
        if not placed:
            label.remove()
            omitted += 1

    handles = [Patch(fc=colour[k], ec="0.15", lw=0.6, label=k.replace("_", " ")) for k in kinds]
    title = view.title + (f"  ({omitted} edge label{'s' if omitted > 1 else ''} left out for room)" if omitted else "")
    if own_figure:
        legend = fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=FONT,
                            frameon=False, bbox_to_anchor=(0.5, 0.0))
        heading = fig.suptitle(title, fontsize=FONT + 2, y=1 - 0.12 * title_band / fig.get_size_inches()[1])
        # A small graph under a long title or a wide legend: widen the figure (only spacing grows).
        needed = max(a.get_window_extent(renderer).width / dpi for a in (legend, heading)) + 2 * MARGIN
        if needed > fig.get_size_inches()[0]:
            fig.set_size_inches(needed, fig.get_size_inches()[1])
    else:
        ax.legend(handles=handles, loc="best", fontsize=FONT - 1)
        ax.set_title(title, fontsize=FONT + 2)
    return ax

"""The lineage graph drawn as SVG on the server: a small layered layout of our own.

A browser shows SVG natively, so drawing it here needs no JavaScript library, no
CDN and no network, and a test can read the drawing from the DOM. The layout is
the classic layered one (Sugiyama's, simplified): each node's column is its
longest path from a source (the graph flows left to right, as ``--format
mermaid`` does), nodes in a column are ordered by the mean row of their
neighbours in the column before and after (a few sweeps), and each edge is a
cubic curve from the right side of its source to the left side of its target.

Every text that reaches the SVG comes from the store (function names, entity
types, ids) and is escaped here; nodes are ``<a>`` links: executions to
``/execution/<id>``, versions to ``/entity/<id>``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = ["MAX_NODES", "Layout", "layout", "to_svg"]

#: The most nodes drawn; a bigger neighbourhood is cut (the page says so) rather than drawn unreadably.
MAX_NODES = 400
NODE_W = 168
NODE_H = 44
COL_GAP = 60
ROW_GAP = 22
MARGIN = 16
LABEL_CHARS = 22  # a label longer than this is shortened in the box; the full text is its <title>
_SWEEPS = 4
_DASHED = frozenset({"version", "detach", "attach"})


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each node's box sits (its top-left corner) and how big the drawing is."""

    places: dict[str, tuple[float, float]]
    width: float
    height: float


def _ranks(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Each node's longest-path depth from a source (Kahn's order); a node on a cycle goes last."""
    succ: dict[str, list[str]] = defaultdict(list)
    indeg = {n: 0 for n in ids}
    for s, t in edges:
        succ[s].append(t)
        indeg[t] += 1
    rank = {n: 0 for n in ids}
    ready = [n for n in ids if indeg[n] == 0]
    done: set[str] = set()
    while ready:
        n = ready.pop()
        done.add(n)
        for t in succ[n]:
            rank[t] = max(rank[t], rank[n] + 1)
            indeg[t] -= 1
            if indeg[t] == 0:
                ready.append(t)
    last = max(rank.values(), default=0) + 1
    for n in ids:  # the log only grows forward, so a cycle means damaged rows: still draw them
        if n not in done:
            rank[n] = last
    return rank


def layout(ids: list[str], edges: list[tuple[str, str]]) -> Layout:
    """Columns by topological depth, rows ordered to keep edges short (barycentre sweeps)."""
    edges = [(s, t) for s, t in edges if s != t]
    rank = _ranks(ids, edges)
    columns: dict[int, list[str]] = defaultdict(list)
    for n in ids:  # ``ids`` come in log order: the first order within a column follows the log
        columns[rank[n]].append(n)
    pred: dict[str, list[str]] = defaultdict(list)
    succ: dict[str, list[str]] = defaultdict(list)
    for s, t in edges:
        pred[t].append(s)
        succ[s].append(t)
    order = sorted(columns)
    row = {n: float(i) for c in order for i, n in enumerate(columns[c])}
    for sweep in range(_SWEEPS):
        forward = sweep % 2 == 0
        for c in order if forward else reversed(order):
            near = pred if forward else succ

            def centre(n: str, near: dict[str, list[str]] = near) -> float:
                linked = [row[m] for m in near[n]]
                return sum(linked) / len(linked) if linked else row[n]

            columns[c].sort(key=centre)
            for i, n in enumerate(columns[c]):
                row[n] = float(i)
    tallest = max((len(v) for v in columns.values()), default=0)
    places: dict[str, tuple[float, float]] = {}
    for c in order:
        nodes = columns[c]
        offset = (tallest - len(nodes)) * (NODE_H + ROW_GAP) / 2  # centre short columns
        for i, n in enumerate(nodes):
            places[n] = (MARGIN + c * (NODE_W + COL_GAP), MARGIN + offset + i * (NODE_H + ROW_GAP))
    width = MARGIN * 2 + (max(order, default=0) + 1) * (NODE_W + COL_GAP) - COL_GAP
    height = MARGIN * 2 + max(tallest, 1) * (NODE_H + ROW_GAP) - ROW_GAP
    return Layout(places, width, height)


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _node(node: dict[str, Any], x: float, y: float, start: bool) -> str:
    node_id = str(node["id"])
    kind = node.get("kind")
    label = str(node.get("label", node_id))
    if kind == "execution":
        href = f"/execution/{node_id}"
        classes = "node execution" + ("" if node.get("succeeded", True) else " failed")
        # a hexagon, like mermaid's {{ }}: executions read apart from versions at a glance
        d = 12
        points = (
            f"{x + d},{y} {x + NODE_W - d},{y} {x + NODE_W},{y + NODE_H / 2} "
            f"{x + NODE_W - d},{y + NODE_H} {x + d},{y + NODE_H} {x},{y + NODE_H / 2}"
        )
        shape = f'<polygon points="{points}"/>'
        second = f"position {node['position']}" if node.get("position") is not None else node_id[:8]
    else:
        href = f"/entity/{node_id}"
        classes = "node entity" + (" deleted" if node.get("cause") == "erased" else "")
        shape = f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
        second = node_id[:8]
    if start:
        classes += " start"
    title = f"{label} {node_id}" + (f" (position {node['position']})" if node.get("position") is not None else "")
    return (
        f'<a href="{escape(href)}" class="{classes}" data-id="{escape(node_id)}" data-kind="{escape(str(kind))}">'
        f"<title>{escape(title)}</title>{shape}"
        f'<text x="{x + NODE_W / 2}" y="{y + 18}" class="label">{escape(_short(label))}</text>'
        f'<text x="{x + NODE_W / 2}" y="{y + 34}" class="id">{escape(second)}</text></a>'
    )


def _edge(kind: str, a: tuple[float, float], b: tuple[float, float]) -> str:
    x1, y1 = a[0] + NODE_W, a[1] + NODE_H / 2
    x2, y2 = b[0], b[1] + NODE_H / 2
    if x2 <= x1:  # same column or backwards (a cycle in damaged rows): loop around below
        x2, y2 = b[0] + NODE_W / 2, b[1] + NODE_H
    bend = max(30.0, (x2 - x1) / 2)
    # an edge that skips columns arcs above the row it leaves from, so it does not run through
    # the boxes between (a version edge past the execution that made the next version)
    skipped = max(0.0, (x2 - x1) / (NODE_W + COL_GAP) - 1)
    lift = min(y1, y2) - NODE_H * 0.8 * min(skipped, 2) if skipped >= 0.5 else None
    if lift is None:
        path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2 - 4
    else:
        path = f"M{x1},{y1} C{x1 + bend / 2},{lift} {x2 - bend / 2},{lift} {x2},{y2}"
        mx, my = (x1 + x2) / 2, (3 * lift + y1 + y2) / 5 - 3
    style = "edge dashed" if kind in _DASHED else "edge"
    return (
        f'<g class="{style} {escape(kind)}"><path d="{path}" marker-end="url(#arrow)"/>'
        f'<text x="{mx}" y="{my}">{escape(kind)}</text></g>'
    )


def to_svg(graph: dict[str, Any], *, max_nodes: int = MAX_NODES) -> tuple[str, int]:
    """``LineageGraph.to_json()`` as an ``<svg>`` element, and how many nodes were left out.

    Nodes are kept in log order up to ``max_nodes`` (the start nodes always); edges
    between kept nodes are drawn.
    """
    nodes = list(graph.get("nodes", ()))
    start = set(graph.get("start", ()))
    nodes.sort(key=lambda n: (n.get("position") is None, n.get("position") or 0))
    if len(nodes) > max_nodes:
        first = [n for n in nodes if n["id"] in start]
        rest = [n for n in nodes if n["id"] not in start]
        nodes = (first + rest)[:max_nodes]
        nodes.sort(key=lambda n: (n.get("position") is None, n.get("position") or 0))
    dropped = len(graph.get("nodes", ())) - len(nodes)
    kept = {n["id"] for n in nodes}
    edges = [e for e in graph.get("edges", ()) if e["source"] in kept and e["target"] in kept]
    place = layout([n["id"] for n in nodes], [(e["source"], e["target"]) for e in edges])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{place.width:.0f}" height="{place.height:.0f}" '
        f'viewBox="0 0 {place.width:.0f} {place.height:.0f}" role="img" aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    parts.extend(_edge(str(e["kind"]), place.places[e["source"]], place.places[e["target"]]) for e in edges)
    parts.extend(_node(n, *place.places[n["id"]], n["id"] in start) for n in nodes)
    parts.append("</svg>")
    return "".join(parts), dropped

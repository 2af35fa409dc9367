"""The lineage graph as SVG, drawn from a ``Layout`` (``ledger.cli.ui.layout``) and nothing else.

The page and ``/lineage/<id>/layout.json`` share one ``Layout``: every box is drawn at
the node's ``x``, ``y``, ``width``, ``height``, every edge as the polyline of its
``points``, so a test of the JSON's geometry is a test of the picture. A browser
shows SVG natively (no library, no network) and a test can read it from the DOM.

Every text that reaches the SVG comes from the store (function names, entity types,
ids) and is escaped here. Nodes are ``<a>`` links: a version to ``/entity/<id>``, an
execution to ``/execution/<id>``, a collapsed run to the same page with the run
expanded (``?expand=``); the page's script turns a click on a version or an
execution into a selection shown in the side panel instead.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from ledger.cli.ui.layout import FONT_PX, SUB_FONT_PX, Layout, Node

__all__ = ["node_href", "to_svg"]

_DASHED = frozenset({"version", "detach", "attach", "erased"})
_HEX = 10.0  # how far a hexagon's side points sit inside its box


def node_href(node: Node, layout: Layout) -> str:
    """Where a node leads: its page, or for a run this lineage's page with the run expanded."""
    if node.kind == "execution":
        return f"/execution/{node.id}"
    if node.kind == "run":
        query: dict[str, str | int] = {"depth": layout.depth, "expand": ",".join(sorted({*layout.expand, node.id}))}
        if layout.position is not None:
            query["position"] = layout.position
        return f"/lineage/{layout.lineage_id}?{urlencode(query)}"
    if node.kind == "erasure":
        return f"/lineage/{layout.lineage_id}"
    return f"/entity/{node.id}"


def _shape(node: Node) -> str:
    x, y, w, h = node.x, node.y, node.width, node.height
    if node.kind == "execution":  # a hexagon, like mermaid's {{ }}: executions read apart at a glance
        d = _HEX
        return (f'<polygon points="{x + d},{y} {x + w - d},{y} {x + w},{y + h / 2} '
                f'{x + w - d},{y + h} {x + d},{y + h} {x},{y + h / 2}"/>')
    if node.kind == "run":  # a stack of cards: several versions in one box
        return (f'<rect class="under" x="{x + 4}" y="{y + 4}" width="{w - 4}" height="{h - 4}" rx="6"/>'
                f'<rect x="{x}" y="{y}" width="{w - 4}" height="{h - 4}" rx="6"/>')
    return f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6"/>'


def _node(node: Node, layout: Layout) -> str:
    classes = ["node", node.kind]
    if node.failed:
        classes.append("failed")
    if node.erased:
        classes.append("deleted")
    if node.own:
        classes.append("own")
    if node.id == layout.latest:
        classes.append("start")
    cx = node.x + (node.width - (4 if node.kind == "run" else 0)) / 2
    title = node.label + (f": {node.sublabel}" if node.sublabel else "")
    collapsed = f' data-collapsed="{node.collapsed}"' if node.collapsed is not None else ""
    return (
        f'<a href="{escape(node_href(node, layout))}" class="{" ".join(classes)}" data-id="{escape(node.id)}" '
        f'data-kind="{escape(node.kind)}"{collapsed}><title>{escape(title)}</title>{_shape(node)}'
        f'<text x="{cx:.2f}" y="{node.y + 19}" class="label" font-size="{FONT_PX}">{escape(node.label)}</text>'
        f'<text x="{cx:.2f}" y="{node.y + 35}" class="id" font-size="{SUB_FONT_PX}">{escape(node.sublabel)}</text></a>'
    )


def _edge(layout: Layout, index: int) -> str:
    edge = layout.edges[index]
    points = " ".join(f"{x},{y}" for x, y in edge.points)
    style = "edge dashed" if edge.kind in _DASHED else "edge"
    note = f" {edge.note}" if edge.note else ""
    return (
        f'<g class="{style} {escape(edge.kind)}" data-from="{escape(edge.source)}" data-to="{escape(edge.target)}">'
        f"<title>{escape(edge.kind + note)}</title>"
        f'<polyline points="{points}" marker-end="url(#arrow)"/></g>'
    )


def to_svg(layout: Layout) -> str:
    """``layout`` as an ``<svg>`` element whose viewBox is the whole drawing (the script pans and zooms it)."""
    w, h = layout.width, layout.height
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="lineage graph" data-latest="{escape(layout.latest or "")}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
        '<g class="viewport">',
    ]
    parts.extend(_edge(layout, i) for i in range(len(layout.edges)))
    parts.extend(_node(n, layout) for n in layout.nodes)
    parts.append("</g></svg>")
    return "".join(parts)

"""What the lineage page draws and where: the graph around a lineage, laid out by Graphviz ``dot``.

The page's picture must never say something false, and hand-placed curves did: an
edge that skipped a column ran through the box between, so a reader saw a derivation
that never happened. ``dot`` (Graphviz, a subprocess: ``dot -Tjson0``) ranks the
graph left to right, orders each rank to cut crossings and routes every edge as a
spline around the boxes, so this module only decides *what* to draw and converts
``dot``'s answer into SVG coordinates; ``ledger.cli.ui.svg`` draws exactly that.

What is drawn (``lineage_layout``):

- the lineage's own versions, always, chained by their parents ("version" edges),
  whatever the depth; a run of consecutive versions written by the same function
  (or by hand) collapses into one node (``collapsed``: how many versions it stands
  for) unless its id is in ``expand``; the latest version is never collapsed, and
  when more than ``MAX_CHAIN`` items remain the oldest merge into one more run, so
  the page opens on the latest versions and the rest is a click away;
- the neighbourhood the log's graph walk finds ``depth`` steps from the versions
  shown; what is only reachable through a collapsed run is left out (it belongs to
  the run: its executions, their configs).

``Layout`` is derived state: the same log, lineage, depth, position and expanded runs
give the same layout, so ``LayoutCache`` may keep a few keyed by exactly that (with
the log's head, so a new event is never served a stale picture).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import LedgerError
from projections.audit import Erasure, HistoryRow
from projections.lineage import entity_label, lineage_graph

__all__ = [
    "COLLAPSE_MIN",
    "FONT_PX",
    "MAX_CHAIN",
    "Edge",
    "Layout",
    "LayoutCache",
    "LayoutUnavailable",
    "Node",
    "BadExpand",
    "label_width",
    "lineage_layout",
    "parse_expand",
]

#: A run of this many consecutive versions by the same writer collapses into one node.
COLLAPSE_MIN = 3
#: At most this many items (versions and runs) on the lineage's chain; older ones merge into one run.
MAX_CHAIN = 24
#: Label size in SVG units: at the page's first zoom (1 unit = 1 CSS pixel or more) a label is ≥ 10 px.
FONT_PX = 13
SUB_FONT_PX = 11
#: Width per character, generous for the sans-serif / monospace fonts a browser picks (0.62 em).
CHAR_EM = 0.62
PAD_X = 14
NODE_H = 44
MIN_W = 96
MAX_LABEL = 44
MARGIN = 16
DOT_TIMEOUT = 60.0
_SAMPLES = 8  # points per cubic Bézier segment of a spline


class LayoutUnavailable(LedgerError):
    """Graphviz's ``dot`` is missing or failed: the page says so instead of drawing a guess."""


class BadExpand(LedgerError):
    """An ``expand`` value that names no run of this lineage."""


@dataclass(slots=True)
class Node:
    """One box: top-left corner and size in SVG units; ``collapsed`` is the run's version count."""

    id: str
    kind: str  # "entity", "execution" or "run"
    label: str
    sublabel: str
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = float(NODE_H)
    collapsed: int | None = None
    failed: bool = False
    erased: bool = False
    own: bool = False  # a version (or run) of the lineage the page is about
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "label": self.label, "sublabel": self.sublabel,
            "x": self.x, "y": self.y, "width": self.width, "height": self.height,
            "collapsed": self.collapsed, "failed": self.failed, "erased": self.erased, "own": self.own,
            "details": self.details,
        }


@dataclass(slots=True)
class Edge:
    """One arrow: ``points`` is the polyline the page draws, tail to arrow tip."""

    source: str
    target: str
    kind: str
    points: list[tuple[float, float]] = field(default_factory=list)
    note: str | None = None  # e.g. the path an input was read at

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "kind": self.kind, "points": [list(p) for p in self.points],
                "note": self.note}


@dataclass(slots=True)
class Layout:
    """Everything the page draws: the nodes, the edges, the drawing's size, and where to open."""

    lineage_id: str
    depth: int
    position: int | None
    expand: tuple[str, ...]
    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float
    latest: str | None  # the node of the lineage's latest version: the page opens on it

    def to_json(self) -> dict[str, Any]:
        return {
            "lineage_id": self.lineage_id, "depth": self.depth, "position": self.position, "expand": list(self.expand),
            "width": self.width, "height": self.height, "latest": self.latest,
            "nodes": [n.to_json() for n in self.nodes], "edges": [e.to_json() for e in self.edges],
        }


def label_width(label: str, sublabel: str) -> float:
    """The box width that holds both lines at the page's font sizes (the same estimate the tests hold it to)."""
    text = max(len(label) * FONT_PX, len(sublabel) * SUB_FONT_PX) * CHAR_EM
    return float(max(MIN_W, round(text + 2 * PAD_X)))


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


# ---------------------------------------------------------------- the lineage's chain
@dataclass(slots=True)
class _Item:
    """A chain item: one version (``rows`` of one) or a collapsed run of versions."""

    rows: list[HistoryRow]
    run_id: str | None = None  # set when collapsed

    @property
    def node_id(self) -> str:
        return self.run_id or str(self.rows[0].version.ecs_id)


def _writer(row: HistoryRow) -> str:
    return row.function if row.origin == "execution" and row.function else "hand"


def run_id(rows: Sequence[HistoryRow]) -> str:
    """A run's id: the version numbers it spans (``run-3-38``), stable as the log grows."""
    return f"run-{rows[0].version.version}-{rows[-1].version.version}"


def parse_expand(values: Iterable[str], versions: int) -> tuple[str, ...]:
    """``expand`` values (``run-A-B``, comma lists allowed) checked against a lineage of ``versions`` versions."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            pieces = part.split("-")
            if len(pieces) != 3 or pieces[0] != "run" or not pieces[1].isdigit() or not pieces[2].isdigit():
                raise BadExpand(f"expand: {part!r:.60} is not a run id (run-<first>-<last>)")
            first, last = int(pieces[1]), int(pieces[2])
            if not 1 <= first <= last <= versions:
                raise BadExpand(f"expand: {part} names versions outside this lineage (1..{versions})")
            if part not in out:
                out.append(part)
    return tuple(sorted(out))


def chain(rows: list[HistoryRow], expand: Sequence[str]) -> list[_Item]:
    """The lineage's versions as chain items, oldest first: runs collapsed unless expanded."""
    if not rows:
        return []
    opened = set(expand)
    *older, latest = rows
    groups: list[list[HistoryRow]] = []
    for row in older:
        if groups and _writer(groups[-1][-1]) == _writer(row):
            groups[-1].append(row)
        else:
            groups.append([row])
    items: list[_Item] = []
    opened_rows: set[Any] = set()  # versions of runs the reader opened: never merged again
    for group in groups:
        if len(group) >= COLLAPSE_MIN and run_id(group) not in opened:
            items.append(_Item(group, run_id(group)))
        else:
            items.extend(_Item([r]) for r in group)
            if len(group) >= COLLAPSE_MIN:
                opened_rows.update(r.version.ecs_id for r in group)
    items.append(_Item([latest]))
    while len(items) > MAX_CHAIN:  # merge the oldest into one run, unless the reader opened it
        cut = len(items) - MAX_CHAIN + 1
        for i, item in enumerate(items[:cut]):
            if item.rows[0].version.ecs_id in opened_rows:
                cut = i
                break
        merged = [r for item in items[:cut] for r in item.rows]
        if cut < 2 or run_id(merged) in opened:
            break
        items = [_Item(merged, run_id(merged))] + items[cut:]
    return items


def _run_node(item: _Item) -> Node:
    rows = item.rows
    writers = {_writer(r) for r in rows}
    by = next(iter(writers)) if len(writers) == 1 else f"{len(writers)} writers"
    by = "hand" if by == "hand" else by.rpartition(".")[2] if len(writers) == 1 else by
    first, last = rows[0].version, rows[-1].version
    head = f"v{first.version} … v{last.version}"
    tail = f"{len(rows)} versions by {by}"
    node = Node(item.node_id, "run", f"{head}: {tail}", tail, collapsed=len(rows), own=True)
    node.label, node.sublabel = head, tail
    node.details = {
        "versions": f"{first.version} … {last.version} ({len(rows)})",
        "written by": ", ".join(sorted(writers)),
        "positions": f"{first.position} … {last.position}",
        "first ecs_id": str(first.ecs_id),
        "last ecs_id": str(last.ecs_id),
    }
    return node


def _change_text(changes: dict[str, tuple[Any, Any]] | None) -> dict[str, str] | str:
    if changes is None:
        return "created"
    return {k: f"{old!r:.80} → {new!r:.80}" for k, (old, new) in changes.items()} or "nothing"


# ---------------------------------------------------------------- the whole layout
def lineage_layout(
    reader: Any,
    lineage_id: str,
    rows: list[HistoryRow],
    *,
    depth: int,
    position: int | None,
    expand: Sequence[str] = (),
    erasure: Erasure | None = None,
) -> Layout:
    """The layout of ``lineage_id``'s page: ``rows`` are its versions (``audit.history``), those
    recorded after ``position`` are left out; ``depth`` bounds the neighbourhood, not the chain."""
    shown_rows = [r for r in rows if position is None or r.version.position <= position]
    items = chain(shown_rows, expand)
    owner: dict[str, str] = {}  # ecs_id of an own version -> the node that draws it
    nodes: dict[str, Node] = {}
    for item in items:
        for r in item.rows:
            owner[str(r.version.ecs_id)] = item.node_id
        if item.run_id is not None:
            nodes[item.node_id] = _run_node(item)
        else:
            r = item.rows[0]
            v = r.version
            label = f"{entity_label(v.entity_type)} v{v.version}"
            node = Node(item.node_id, "entity", label, str(v.ecs_id)[:8], own=True)
            node.details = {
                "version": v.version, "ecs_id": str(v.ecs_id), "position": v.position,
                "recorded_at": v.recorded_at.isoformat(timespec="microseconds"),
                "written by": r.function or r.origin, "execution": str(r.execution_id) if r.execution_id else None,
                "what changed": _change_text(r.changes),
            }
            nodes[item.node_id] = node
    edges: dict[tuple[str, str, str], Edge] = {}
    for r in shown_rows:  # the chain: every shown version from its parent's node
        if r.parent is None or str(r.parent) not in owner:
            continue
        a, b = owner[str(r.parent)], owner[str(r.version.ecs_id)]
        if a != b:
            edges.setdefault((a, b, "version"), Edge(a, b, "version"))
    if erasure is not None and items and (position is None or erasure.position <= position):
        tomb = f"erased-{erasure.position}"
        when = erasure.recorded_at.isoformat(timespec="microseconds") if erasure.recorded_at else "unknown"
        nodes[tomb] = Node(tomb, "erasure", "erased", f"position {erasure.position}", erased=True, own=True,
                           details={"position": erasure.position, "recorded_at": when, "reason": erasure.reason or "none given",
                                    "what it means": "personal fields of every version read as ERASED"})
        edges[(items[-1].node_id, tomb, "erased")] = Edge(items[-1].node_id, tomb, "erased")
    if depth > 0 and shown_rows:
        # walked from the versions drawn one by one, not from all the lineage's: a collapsed
        # run's neighbourhood is not drawn, and walking it cost most of a long lineage's page
        shown = [str(item.rows[0].version.ecs_id) for item in items if item.run_id is None]
        graph = reader.analytics.read(
            lambda con: lineage_graph(con, shown, direction="both", depth=depth, position=position)
        ).to_json()
        _neighbourhood(reader, graph, owner, nodes, edges)
    chain_ids = [item.node_id for item in items] + [n for n in nodes if nodes[n].kind == "erasure"]
    ordered = _order(nodes, edges, chain_ids)
    layout = _place(ordered, list(edges.values()))
    latest = items[-1].node_id if items else None
    return Layout(lineage_id, depth, position, tuple(expand), layout[0], layout[1], layout[2], layout[3], latest)


def _neighbourhood(
    reader: Any, graph: dict[str, Any], owner: dict[str, str], nodes: dict[str, Node], edges: dict[tuple[str, str, str], Edge]
) -> None:
    """Add the walk's nodes and edges, own versions mapped to their chain node; executions that
    wrote a collapsed version belong to its run; what only a run reaches is left out."""
    runs = {node_id for node_id, n in nodes.items() if n.kind == "run"}
    mapped = dict(owner)
    for e in graph["edges"]:  # an execution that wrote a version inside a run is part of the run
        if mapped.get(e["target"]) in runs and e["kind"] not in ("version", "detach", "attach"):
            mapped.setdefault(e["source"], mapped[e["target"]])
    attrs = {n["id"]: n for n in graph["nodes"]}
    remapped: dict[tuple[str, str, str], Edge] = {}
    for e in graph["edges"]:
        a, b = mapped.get(e["source"], e["source"]), mapped.get(e["target"], e["target"])
        if a == b or ((a in runs or b in runs) and a in nodes and b in nodes):
            continue  # inside a run, or beside the chain's own edge to or from it
        note = e.get("field") or None
        remapped.setdefault((a, b, e["kind"]), Edge(a, b, e["kind"], note=note))
    around: dict[str, set[str]] = defaultdict(set)
    for a, b, _ in remapped:
        around[a].add(b)
        around[b].add(a)
    start = [n for n in nodes if n not in runs]
    seen = set(start)
    queue = deque(start)
    while queue:  # runs are ends: what hangs only off a run is its own business
        n = queue.popleft()
        if n in runs:
            continue
        for m in around[n]:
            if m not in seen:
                seen.add(m)
                queue.append(m)
    keep = seen | set(nodes)
    executions = [n for n in seen if n not in nodes and attrs.get(n, {}).get("kind") == "execution"]
    facts = _execution_facts(reader, executions)
    for node_id in sorted(seen - set(nodes), key=lambda n: (attrs.get(n, {}).get("position") or 0, n)):
        nodes[node_id] = _walk_node(node_id, attrs.get(node_id, {"kind": "entity", "label": node_id[:8]}), facts.get(node_id))
    for key, edge in remapped.items():
        if edge.source in keep and edge.target in keep:
            if edge.kind == "version" and (edge.source, edge.target, "version") in edges:
                continue
            edges.setdefault(key, edge)


def _walk_node(node_id: str, attrs: dict[str, Any], fact: dict[str, Any] | None) -> Node:
    if attrs.get("kind") == "execution":
        name = str(attrs.get("function_name") or attrs.get("label", "?"))
        failed = attrs.get("succeeded") is False
        details: dict[str, Any] = {"function": name, "status": "failed" if failed else "succeeded",
                                   "position": attrs.get("position")}
        for key in ("arguments", "actor", "started_at", "function_version", "duration_ms", "error_type",
                    "error_message", "isolation"):
            value = (fact or {}).get(key)
            details[key] = "unknown" if value is None and key in ("arguments", "actor", "started_at") else value
        details = {k: v for k, v in details.items() if v is not None}
        return Node(node_id, "execution", f"{name}()", "failed" if failed else f"position {attrs.get('position')}",
                    failed=failed, details=details)
    label = str(attrs.get("label", node_id[:8]))
    return Node(node_id, "entity", label, node_id[:8], erased=attrs.get("cause") == "erased",
                details={"ecs_id": node_id, "type": attrs.get("entity_type"), "lineage_id": attrs.get("lineage_id"),
                         "position": attrs.get("position")})


def _execution_facts(reader: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The analytics ``executions`` rows of these executions, every column the table has
    (the run record's ``arguments``, ``actor``, ``started_at`` where the log records them)."""
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 256):
        chunk = ids[start : start + 256]
        marks = ", ".join("?" * len(chunk))
        result = reader.analytics.page(f"SELECT * FROM executions WHERE execution_id::VARCHAR IN ({marks})", chunk, None)
        for row in result.rows:
            fact = {c: _plain(v) for c, v in zip(result.columns, row)}
            out[str(fact["execution_id"])] = fact
        # the arguments are rows of their own table: name -> the pinned address, else the JSON value
        arguments = reader.analytics.page(
            f"SELECT execution_id::VARCHAR, name, value, address FROM execution_arguments "
            f"WHERE execution_id::VARCHAR IN ({marks}) ORDER BY execution_id, name",
            chunk,
            None,
        )
        for execution_id, name, value, address in arguments.rows:
            if execution_id in out:
                out[execution_id].setdefault("arguments", {})[name] = address if address is not None else value
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _order(nodes: dict[str, Node], edges: dict[tuple[str, str, str], Edge], chain_ids: list[str]) -> list[Node]:
    """Nodes in a stable order (the chain first, then the rest by position) so ``dot`` is deterministic."""
    first = [nodes[i] for i in chain_ids]
    rest = sorted((n for i, n in nodes.items() if i not in set(chain_ids)),
                  key=lambda n: (n.details.get("position") or 0, n.id))
    for n in first + rest:
        n.label, n.sublabel = _short(n.label), _short(n.sublabel)
        n.width, n.height = label_width(n.label, n.sublabel), float(NODE_H)
    return first + rest


# ---------------------------------------------------------------- Graphviz
def _dot_source(nodes: list[Node], edges: list[Edge]) -> str:
    index = {n.id: i for i, n in enumerate(nodes)}
    lines = [
        "digraph g {",
        '  graph [rankdir=LR, nodesep=0.35, ranksep=0.55, splines=true, outputorder=edgesfirst];',
        '  node [shape=box, fixedsize=true, label=""];',
        '  edge [arrowsize=0.8];',
    ]
    for n in nodes:  # sizes in points; 1 SVG unit = 1 point
        lines.append(f"  n{index[n.id]} [width={n.width / 72:.4f}, height={n.height / 72:.4f}];")
    for i, e in enumerate(edges):  # ``id`` names the edge in dot's answer (which orders edges its own way)
        weight = 8 if e.kind == "version" else 1
        lines.append(f'  n{index[e.source]} -> n{index[e.target]} [weight={weight}, id="e{i}"];')
    lines.append("}")
    return "\n".join(lines)


def _run_dot(source: str) -> dict[str, Any]:
    exe = shutil.which("dot")
    if exe is None:
        raise LayoutUnavailable("graphviz's dot is not installed (apt-get install graphviz): the graph cannot be drawn")
    try:
        done = subprocess.run([exe, "-Tjson0"], input=source, capture_output=True, text=True, timeout=DOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise LayoutUnavailable(f"graphviz's dot took over {DOT_TIMEOUT:.0f} s: lower the depth") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise LayoutUnavailable(f"graphviz's dot failed ({done.returncode}): {first:.200}")
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def _cubic(p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], p3: tuple[float, float]) -> list[tuple[float, float]]:
    out = []
    for k in range(1, _SAMPLES + 1):
        t = k / _SAMPLES
        u = 1 - t
        out.append((
            u * u * u * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t * t * t * p3[0],
            u * u * u * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t * t * t * p3[1],
        ))
    return out


def spline_points(pos: str, flip: Callable[[float, float], tuple[float, float]]) -> list[tuple[float, float]]:
    """``dot``'s edge ``pos`` (``e,x,y`` arrow tip, then 3n+1 B-spline control points) as a
    polyline in SVG coordinates, ending at the arrow's tip."""
    start = end = None
    control: list[tuple[float, float]] = []
    for token in pos.split():
        parts = token.split(",")
        if parts[0] in ("e", "s"):
            point = flip(float(parts[1]), float(parts[2]))
            if parts[0] == "e":
                end = point
            else:
                start = point
        else:
            control.append(flip(float(parts[0]), float(parts[1])))
    if not control:
        return []
    points = [start] if start is not None else []
    points.append(control[0])
    for i in range(0, len(control) - 3, 3):
        points.extend(_cubic(control[i], control[i + 1], control[i + 2], control[i + 3]))
    if end is not None:
        points.append(end)
    return [(round(x, 2), round(y, 2)) for x, y in points]


def _place(nodes: list[Node], edges: list[Edge]) -> tuple[list[Node], list[Edge], float, float]:
    """Positions from ``dot``: centres (origin bottom left, points) to top-left corners (origin top left)."""
    if not nodes:
        return [], [], float(2 * MARGIN), float(2 * MARGIN)
    answer = _run_dot(_dot_source(nodes, edges))
    _, _, right, top = (float(v) for v in str(answer["bb"]).split(","))

    def flip(x: float, y: float) -> tuple[float, float]:
        return x + MARGIN, top - y + MARGIN

    for obj in answer.get("objects", []):
        name = str(obj["name"])
        if not name.startswith("n"):
            continue
        node = nodes[int(name[1:])]
        cx, cy = (float(v) for v in str(obj["pos"]).split(","))
        node.width, node.height = float(obj["width"]) * 72, float(obj["height"]) * 72
        x, y = flip(cx, cy)
        node.x, node.y = round(x - node.width / 2, 2), round(y - node.height / 2, 2)
        node.width, node.height = round(node.width, 2), round(node.height, 2)
    for drawn in answer.get("edges", []):
        edges[int(str(drawn["id"])[1:])].points = spline_points(str(drawn.get("pos", "")), flip)
    return nodes, edges, round(right + 2 * MARGIN, 2), round(top + 2 * MARGIN, 2)


# ---------------------------------------------------------------- cache
class LayoutCache:
    """The last few layouts, keyed by everything they are made from (the log's head included).

    A layout is a pure function of the log up to ``head`` and the request's lineage, depth,
    position and expanded runs: a new event changes ``head`` and so the key. Safe under the
    app's one-request-at-a-time lock; its own lock covers use without it.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], Layout] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], make: Callable[[], Layout]) -> Layout:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        made = make()
        with self._lock:
            self._items[key] = made
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return made

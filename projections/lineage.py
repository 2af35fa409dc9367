"""The lineage graph: what was derived from what, read from the analytics tables.

Nodes are entity versions (by ecs_id) and executions (by execution_id). Edges
come from three projected tables: ``lineage_edges`` (version, detach, attach),
``execution_inputs`` / ``execution_configs`` (entity → execution) and
``execution_outputs`` (execution → entity, labelled with the output's
semantic). Every row carries the log position that produced it, so the graph
"as of" a past position is the same walk over rows at or before it.

The walk is breadth-first, one set-at-a-time query per step, so it costs the
size of the neighbourhood, not of the log. ``depth`` counts entity-to-entity
steps: an execution between an input and its output does not use one up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:  # only annotations: ``ledger blame`` imports entity_label without DuckDB
    import duckdb

from ledger.errors import LedgerError, MalformedAddressError, UnknownEntityError

__all__ = ["LineageGraph", "LineageQueryError", "entity_label", "lineage_graph"]

_DIRECTIONS = {"up": "upstream", "upstream": "upstream", "down": "downstream", "downstream": "downstream", "both": "both"}
_EVERYTHING = 2**62
_INTO_EXECUTION = frozenset({"input", "config"})
_OUT_OF_EXECUTION = frozenset({"mutation", "creation", "detachment"})


class LineageQueryError(LedgerError, ValueError):
    """A lineage query with an argument that cannot be answered (direction, depth)."""


Edge = tuple[str, str, str, "str | None", "str | None"]
"""(source, target, kind, execution_id, field): ``field`` is the path an input edge read by reference."""


@dataclass
class LineageGraph:
    """A neighbourhood of the lineage graph around ``start`` (one or more nodes)."""

    ref: str
    start: list[str]
    position: int | None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "start": self.start,
            "position": self.position,
            "nodes": [{"id": node_id, **attrs} for node_id, attrs in self.nodes.items()],
            "edges": [
                {"source": s, "target": t, "kind": k, "execution_id": x, "field": f} for s, t, k, x, f in self.edges
            ],
        }

    def to_mermaid(self) -> str:
        short = {node_id: f"n{i}" for i, node_id in enumerate(self.nodes)}
        lines = ["graph LR"]
        for node_id, attrs in self.nodes.items():
            label = attrs["label"].replace('"', "'")
            if attrs["kind"] == "execution":
                lines.append(f'  {short[node_id]}{{{{"{label}"}}}}')
            else:
                lines.append(f'  {short[node_id]}["{label}<br/>{node_id[:8]}"]')
        for source, target, kind, _, path in self.edges:
            arrow = "-.->" if kind in ("version", "detach", "attach") else "-->"
            label = _edge_label(kind, path).replace('"', "'")
            lines.append(f'  {short[source]} {arrow}|"{label}"| {short[target]}' if path else f"  {short[source]} {arrow}|{kind}| {short[target]}")
        lines.extend(f"  style {short[s]} stroke-width:3px" for s in self.start if s in short)
        return "\n".join(lines)

    def to_dot(self) -> str:
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for node_id, attrs in self.nodes.items():
            label = attrs["label"].replace('"', "'")
            if attrs["kind"] == "execution":
                shape = "hexagon"
            else:
                shape = "box"
                label = f"{label}\\n{node_id[:8]}"
            bold = ", penwidth=3" if node_id in self.start else ""
            lines.append(f'  "{node_id}" [label="{label}", shape={shape}{bold}];')
        for source, target, kind, _, path in self.edges:
            style = ", style=dashed" if kind in ("version", "detach", "attach") else ""
            label = _edge_label(kind, path).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'  "{source}" -> "{target}" [label="{label}"{style}];')
        lines.append("}")
        return "\n".join(lines)


#: The field(s) a wrapped output of each kind (``ledger.outputs:<kind>:<hash or size>``) holds.
_OUTPUT_FIELDS = {"result": "result", "wrapped": "wrapped_value", "fields": "field_*", "anytuple": "field_*"}


def entity_label(entity_type: str) -> str:
    """A stored topic as a short name: ``Student``, or for a wrapped output the field it holds
    (``output(result)``, ``output(wrapped_value)``, ``output(field_*)`` for a tuple (``field_0``, ``field_1``, …)), never
    the hash that ends its topic."""
    module, _, rest = entity_type.partition(":")
    if module == "ledger.outputs":  # a wrapped output: "ledger.outputs:<kind>:<shape hash>"
        kind = rest.partition(":")[0]
        return f"output({_OUTPUT_FIELDS.get(kind, kind)})"
    return rest.rpartition(".")[2] or entity_type


def _edge_label(kind: str, path: str | None) -> str:
    """``input`` or, for an input read by reference, ``input grades.0.score`` (the path it read)."""
    return kind if not path else f"{kind} {path}"


def _canonical(ref: str | UUID) -> str:
    if isinstance(ref, UUID):
        return str(ref)
    text = ref[1:] if ref.startswith("@") else ref
    try:
        return str(UUID(text))
    except ValueError:
        raise MalformedAddressError(f"ref: {ref!r} is not an ecs_id, lineage_id or execution_id") from None


def _start_nodes(con: duckdb.DuckDBPyConnection, ref: str, pos: int) -> tuple[list[str], str]:
    """The nodes ``ref`` names and their kind: one version, one execution, or a whole lineage."""
    if any(p <= pos for (p,) in _rows_by(con, "position", "entity_versions", "ecs_id", [ref])):
        return [ref], "entity"
    if any(p <= pos for (p,) in _rows_by(con, "position", "executions", "execution_id", [ref])):
        return [ref], "execution"
    versions = sorted((p, v) for v, p in _rows_by(con, "ecs_id, position", "entity_versions", "lineage_id", [ref]) if p <= pos)
    if versions:
        return [v for _, v in versions], "entity"
    when = "in the log" if pos == _EVERYTHING else f"in the log up to position {pos}"
    raise UnknownEntityError(f"ref: no entity version, lineage or execution {ref} {when}")


#: What the graph walk looks rows up by: ART indexes, made the first time a graph is asked
#: for (``_index``). Without them each step scans its tables (35-50 ms a step on a 1M-event
#: log, measured); with them it reads the rows it needs. They live in the analytics
#: database (a cache), never in the store.
_WALK_INDEXES = (
    ("lineage_edges", "source_ecs_id"),
    ("lineage_edges", "target_ecs_id"),
    ("execution_inputs", "ecs_id"),
    ("execution_inputs", "execution_id"),
    ("execution_outputs", "ecs_id"),
    ("execution_outputs", "execution_id"),
    ("execution_configs", "execution_id"),
    ("entity_versions", "ecs_id"),
    ("entity_versions", "lineage_id"),
    ("executions", "execution_id"),
)
_ADDRESS = re.compile(r"@[0-9a-fA-F-]{32,36}\.?(.*)")
_NAMED = re.compile(r"@([0-9a-fA-F-]{32,36})\.?(.*)")  # the uuid an address names, and its path
_IN_LIST = 256  # ids per query


def _index(con: duckdb.DuckDBPyConnection) -> None:
    """Make the walk's indexes where they are missing (once per analytics database)."""
    present = {
        name for (name,) in con.execute("SELECT index_name FROM duckdb_indexes() WHERE schema_name = 'main'").fetchall()
    }
    for table, column in _WALK_INDEXES:
        name = f"walk_{table}_{column}"
        if name not in present:
            con.execute(f"CREATE INDEX IF NOT EXISTS {name} ON main.{table} ({column})")


def _rows_by(con: duckdb.DuckDBPyConnection, columns: str, table: str, key: str, ids: list[str]) -> list[tuple[Any, ...]]:
    """Rows of ``table`` whose ``key`` is one of ``ids``, by the key's index.

    Only the key's ``IN`` list is in the query: with any other condition beside it (a
    position, a kind), DuckDB 2.0 chose a scan of the whole table (50 ms against 1.5 ms on
    a 1M-event log, measured), so the caller filters the few rows it gets.
    """
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(ids), _IN_LIST):
        chunk = ids[start : start + _IN_LIST]
        rows.extend(
            con.execute(f"SELECT {columns} FROM main.{table} WHERE {key} IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
        )
    return rows


def _step(con: duckdb.DuckDBPyConnection, frontier: list[str], downstream: bool, pos: int) -> list[Edge]:
    """The edges one hop away from the frontier, in one direction.

    The rows of ``GRAPH_EDGES`` (``projections.tables``), read from each of its tables by
    the indexed column (through the view, every table was scanned).
    """
    ids = list(frontier)
    edges: list[Edge] = [
        (source, target, kind, execution_id, None)
        for source, target, kind, execution_id, position in _rows_by(
            con,
            "source_ecs_id, target_ecs_id, kind, execution_id, position",
            "lineage_edges",
            "source_ecs_id" if downstream else "target_ecs_id",
            ids,
        )
        if kind != "execution" and position <= pos
    ]
    inputs = [
        (ecs_id, execution_id, _address_path(address))
        for ecs_id, execution_id, address, position in _rows_by(
            con, "ecs_id, execution_id, address, position", "execution_inputs", "ecs_id" if downstream else "execution_id", ids
        )
        if ecs_id is not None and position <= pos
    ]
    if inputs:
        configs = set(
            _rows_by(con, "execution_id, ecs_id", "execution_configs", "execution_id", sorted({e for _, e, _ in inputs}))
        )
        edges.extend(
            (ecs_id, execution_id, "config" if (execution_id, ecs_id) in configs else "input", execution_id, path)
            for ecs_id, execution_id, path in inputs
        )
    edges.extend(
        (execution_id, ecs_id, semantic, execution_id, None)
        for execution_id, ecs_id, semantic, position in _rows_by(
            con,
            "execution_id, ecs_id, semantic, position",
            "execution_outputs",
            "execution_id" if downstream else "ecs_id",
            ids,
        )
        if position <= pos
    )
    return edges


def _address_path(address: str | None) -> str | None:
    """The path of ``"@<uuid>.grades.0.score"`` (``"grades.0.score"``); None for a bare ``"@<uuid>"``
    (the view's ``regexp_extract`` in ``projections.tables``, in Python)."""
    match = _ADDRESS.fullmatch(address or "")
    return (match.group(1) or None) if match else None


def _child_paths(shape: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, ecs_id) of every child in a stored shape (``entity_versions.children``: the
    markers of ``ledger/events/shape.py``), e.g. ``("grades.0", "<id>")``."""
    join = (lambda seg: f"{path}.{seg}") if path else str
    if isinstance(shape, list):
        for i, v in enumerate(shape):
            yield from _child_paths(v, join(i))
    elif isinstance(shape, dict):
        if len(shape) == 1:
            ((key, inner),) = shape.items()
            if key == "$e":
                yield path, str(inner)
                return
            if key == "$t":
                yield from _child_paths(inner, path)
                return
            if key == "$i":
                for k, v in inner:
                    yield from _child_paths(v, join(k))
                return
            if key == "$d":
                shape = inner
        for k, v in shape.items():
            yield from _child_paths(v, join(k))


@dataclass
class _Version:
    """What the tree-read step needs of one entity version."""

    lineage_id: str
    position: int
    children: list[tuple[str, str]]


def _versions(con: duckdb.DuckDBPyConnection, ids: list[str], known: dict[str, _Version | None]) -> None:
    """Load the versions of ``ids`` not in ``known`` yet (None: not an entity version)."""
    missing = [i for i in dict.fromkeys(ids) if i not in known]
    for i in missing:
        known[i] = None
    for ecs_id, lineage_id, position, children in _rows_by(
        con, "ecs_id, lineage_id, position, children", "entity_versions", "ecs_id", missing
    ):
        known[ecs_id] = _Version(lineage_id, position, list(_child_paths(json.loads(children) if children else {})))


def _members(con: duckdb.DuckDBPyConnection, roots: list[str], known: dict[str, _Version | None]) -> dict[str, dict[str, str]]:
    """Per version in ``roots``, every version below it and its path from it (level by level,
    one query per level for all of them)."""
    members: dict[str, dict[str, str]] = {r: {} for r in roots}
    frontier = [(r, r, "") for r in roots]
    while frontier:
        _versions(con, [node for _, node, _ in frontier], known)
        below: list[tuple[str, str, str]] = []
        for root, node, path in frontier:
            version = known[node]
            for sub, child in version.children if version is not None else ():
                full = f"{path}.{sub}" if path else sub
                if child not in members[root]:
                    members[root][child] = full
                    below.append((root, child, full))
        frontier = below
    return members


def _tree_reads(con: duckdb.DuckDBPyConnection, entities: list[str], pos: int, known: dict[str, _Version | None]) -> list[Edge]:
    """Input edges from each version in ``entities`` to the executions that read something
    *below* it in its tree (a child entity or one of its values), by whatever id the address used.

    A read belongs to the version of the tree that was current when it ran (a child left
    unchanged is shared by later versions of its tree), unless its address pinned another
    version of the same lineage. The edge's field is the path from the version to the value read.
    """
    _versions(con, entities, known)
    tops = [e for e in entities if known.get(e) is not None]
    members = _members(con, tops, known)
    holders: dict[str, list[str]] = {}
    for top, below in members.items():
        for child in below:
            holders.setdefault(child, []).append(top)
    if not holders:
        return []
    rows = [
        row
        for row in _rows_by(con, "ecs_id, execution_id, address, position", "execution_inputs", "ecs_id", sorted(holders))
        if row[3] <= pos
    ]
    _versions(con, [u for u in (_named(r[2])[0] for r in rows) if u], known)
    lineage_versions: dict[str, list[tuple[int, str]]] = {}
    for lineage_id in {known[t].lineage_id for t in tops}:  # type: ignore[union-attr]
        lineage_versions[lineage_id] = sorted(
            (p, v) for v, p in _rows_by(con, "ecs_id, position", "entity_versions", "lineage_id", [lineage_id])
        )
    edges: list[Edge] = []
    for ecs_id, execution_id, address, position in rows:
        uuid, path = _named(address)
        for top in holders[ecs_id]:
            version = known[top]
            assert version is not None
            pinned = known.get(uuid) if uuid else None
            if pinned is not None and pinned.lineage_id == version.lineage_id:
                if uuid != top:
                    continue  # the address pinned another version of this lineage
            elif not _current(top, version, ecs_id, position, lineage_versions[version.lineage_id], con, known):
                continue
            edges.append((top, execution_id, "input", execution_id, _read_path(top, version, members[top], ecs_id, uuid, path, known)))
    return edges


def _named(address: str | None) -> tuple[str | None, str]:
    """The canonical uuid an address names and its path (``(None, "")`` for no address)."""
    match = _NAMED.fullmatch(address or "")
    if match is None:
        return None, ""
    try:
        return str(UUID(match.group(1))), match.group(2)
    except ValueError:
        return None, ""


def _current(top: str, version: _Version, ecs_id: str, position: int, versions: list[tuple[int, str]],
             con: duckdb.DuckDBPyConnection, known: dict[str, _Version | None]) -> bool:
    """Was ``top`` the latest version of its lineage holding ``ecs_id`` when the read at ``position`` ran?"""
    if version.position > position:
        return False
    later = [v for p, v in versions if version.position < p <= position]
    if not later:
        return True
    return ecs_id not in _members(con, [later[0]], known)[later[0]]


def _read_path(top: str, version: _Version, below: dict[str, str], ecs_id: str, uuid: str | None, path: str,
               known: dict[str, _Version | None]) -> str:
    """The path from ``top`` to what an address read: its own path when it named ``top`` (or
    ``top``'s lineage), else the path down to the entity it named followed by its path."""
    if uuid in (top, version.lineage_id):
        return path
    for member, where in below.items():
        held = known.get(member)
        if uuid == member or (held is not None and uuid == held.lineage_id):
            return f"{where}.{path}" if path else where
    return below[ecs_id]


def _walk(
    con: duckdb.DuckDBPyConnection, start: list[str], downstream: bool, depth: int | None, pos: int,
    kinds: dict[str, str], edges: dict[tuple[str, str, str, str | None], Edge],
) -> None:
    frontier = list(start)
    seen = set(start)
    level = 0
    known: dict[str, _Version | None] = {}
    while frontier and (depth is None or level < depth):
        level += 1
        next_frontier: list[str] = []
        hop = frontier
        while hop:
            executions: list[str] = []
            found = _step(con, hop, downstream, pos)
            if downstream:  # reads below a version in its tree are reads of that tree
                found += _tree_reads(con, [n for n in hop if kinds.get(n) == "entity"], pos, known)
            for edge in found:
                source, target, kind, _, path = edge
                edges.setdefault((source, target, kind, path), edge)
                new = target if downstream else source
                new_is_execution = (kind in _INTO_EXECUTION) if downstream else (kind in _OUT_OF_EXECUTION)
                kinds.setdefault(new, "execution" if new_is_execution else "entity")
                if new in seen:
                    continue
                seen.add(new)
                # An execution reached from an entity is crossed in the same step.
                (executions if new_is_execution else next_frontier).append(new)
            hop = executions
        frontier = next_frontier


def _describe(con: duckdb.DuckDBPyConnection, graph: LineageGraph, kinds: dict[str, str], pos: int) -> None:
    entity_ids = [n for n, k in kinds.items() if k == "entity"]
    execution_ids = [n for n, k in kinds.items() if k == "execution"]
    found = _rows_by(con, "ecs_id, lineage_id, entity_type, position, cause", "entity_versions", "ecs_id", entity_ids)
    # A version's number is its place in its lineage: 1 + the versions before it.
    lineage_positions: dict[str, list[int]] = {}
    for lineage_id, position in _rows_by(
        con, "lineage_id, position", "entity_versions", "lineage_id", sorted({row[1] for row in found})
    ):
        lineage_positions.setdefault(lineage_id, []).append(position)
    for ecs_id, lineage_id, entity_type, position, cause in found:
        version = sum(1 for p in lineage_positions.get(lineage_id, ()) if p <= position)
        name = entity_label(entity_type)
        graph.nodes[ecs_id] = {
            "kind": "entity", "label": f"{name} v{version}", "entity_type": entity_type,
            "lineage_id": lineage_id, "position": position, "cause": cause, "version": version,
        }
    for execution_id, function_name, position, succeeded in _rows_by(
        con, "execution_id, function_name, position, succeeded", "executions", "execution_id", execution_ids
    ):
        graph.nodes[execution_id] = {
            "kind": "execution", "label": f"{function_name}()" + ("" if succeeded else " failed"),
            "function_name": function_name, "position": position, "succeeded": succeeded,
        }
    for node_id, kind in kinds.items():  # referenced but not (yet) in the log, e.g. an unregistered input
        graph.nodes.setdefault(node_id, {"kind": kind, "label": f"{kind} {node_id[:8]}"})


def lineage_graph(
    con: duckdb.DuckDBPyConnection,
    ref: str | UUID | list[str],
    *,
    direction: str = "both",
    depth: int | None = None,
    position: int | None = None,
) -> LineageGraph:
    """The graph around ``ref`` (ecs_id, execution_id or lineage_id: all its versions; or a list
    of ecs_ids, walked from together)."""
    walk = _DIRECTIONS.get(direction)
    if walk is None:
        raise LineageQueryError(f"direction: expected upstream, downstream or both, got {direction!r}")
    if depth is not None and depth < 0:
        raise LineageQueryError(f"depth: must be 0 or more, got {depth}")
    if position is not None and position < 0:
        raise LineageQueryError(f"position: must be 0 or more, got {position}")
    pos = _EVERYTHING if position is None else position
    _index(con)
    if isinstance(ref, (list, tuple)):  # several versions at once (the web page's shown versions)
        start, start_kind = [_canonical(r) for r in ref], "entity"
        ref = ",".join(start)
    else:
        start, start_kind = _start_nodes(con, _canonical(ref), pos)
    kinds = {s: start_kind for s in start}
    edges: dict[tuple[str, str, str, str | None], Edge] = {}
    if walk in ("upstream", "both"):
        _walk(con, start, False, depth, pos, kinds, edges)
    if walk in ("downstream", "both"):
        _walk(con, start, True, depth, pos, kinds, edges)
    graph = LineageGraph(ref=str(ref), start=start, position=position, edges=list(edges.values()))
    _describe(con, graph, kinds, pos)
    graph.edges.sort(key=lambda e: (graph.nodes[e[0]].get("position") or 0, graph.nodes[e[1]].get("position") or 0))
    return graph

"""Entity trees: the nodes reachable from a root, the edges between them, and
each node's *shape* (its tree fields with every child replaced by a ``Ref``).

A shape is what a stored version keeps of its children, so comparing a live
node's shape with the stored one tells whether children were added, removed,
replaced or reordered without looking inside them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple
from uuid import UUID

from ledger.errors import TreeStructureError, UnstorableValueError
from ledger.model.entity import Entity
from ledger.model.schema import check_dict_key
from ledger.model.walk import iter_leaves, map_leaves

__all__ = ["Edge", "EntityTree", "Ref", "build_entity_tree", "tree_members"]

#: Values shared between live objects and stored versions without copying.
IMMUTABLE_TYPES: frozenset[type] = frozenset(
    {str, int, float, bool, type(None), bytes, UUID, datetime, date, Decimal}
)


def copy_value(value: Any) -> Any:
    """An independent copy of a field value (cheap for the common immutable cases)."""
    if type(value) in IMMUTABLE_TYPES:
        return value
    return map_leaves(value, _copy_leaf)


def _copy_leaf(value: Any) -> Any:
    if type(value) in IMMUTABLE_TYPES or isinstance(value, Enum):
        return value
    return copy.deepcopy(value)


class Ref:
    """A child reference inside a shape: equal when the child version is the same."""

    __slots__ = ("ecs_id",)

    def __init__(self, ecs_id: UUID) -> None:
        self.ecs_id = ecs_id

    def __eq__(self, other: object) -> bool:
        return type(other) is Ref and other.ecs_id == self.ecs_id

    def __hash__(self) -> int:
        return hash(self.ecs_id)

    def __repr__(self) -> str:
        return f"Ref({self.ecs_id})"


class Edge(NamedTuple):
    """Where a child sits in its parent: the field, then keys/indexes inside it."""

    parent: UUID
    child: UUID
    field: str
    path: tuple[int | str, ...]


class EntityTree:
    """A snapshot of the structure below one live root, keyed by ecs_id."""

    __slots__ = ("root", "nodes", "edges", "shapes", "order", "_paths")

    def __init__(self, root: Entity) -> None:
        self.root = root
        self.nodes: dict[UUID, Entity] = {}
        self.edges: dict[UUID, Edge] = {}  # child ecs_id -> the edge from its parent
        self.shapes: dict[UUID, dict[str, Any]] = {}
        self.order: list[UUID] = []  # parents before children
        self._paths: dict[UUID, str] = {}

    @property
    def root_ecs_id(self) -> UUID:
        return self.root.ecs_id

    def get_entity(self, ecs_id: UUID) -> Entity | None:
        return self.nodes.get(ecs_id)

    def parent_of(self, ecs_id: UUID) -> Entity | None:
        edge = self.edges.get(ecs_id)
        return None if edge is None else self.nodes[edge.parent]

    def ancestors(self, ecs_id: UUID) -> Iterator[UUID]:
        edge = self.edges.get(ecs_id)
        while edge is not None:
            yield edge.parent
            edge = self.edges.get(edge.parent)

    def children(self, ecs_id: UUID) -> list[UUID]:
        return [e.child for e in self.edges.values() if e.parent == ecs_id]

    def path_of(self, ecs_id: UUID) -> str:
        """A readable location like ``root.grades[0]`` for messages."""
        return self._paths.get(ecs_id, "?")

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, ecs_id: object) -> bool:
        return ecs_id in self.nodes


def build_entity_tree(root: Entity) -> EntityTree:
    """Walk every tree field below ``root``; refuse cycles and shared children."""
    tree = EntityTree(root)
    seen_objects: dict[int, str] = {id(root): "root"}
    tree.nodes[root.ecs_id] = root
    tree._paths[root.ecs_id] = "root"
    stack: list[tuple[Entity, str]] = [(root, "root")]
    while stack:
        node, where = stack.pop()
        tree.order.append(node.ecs_id)
        schema = type(node).ledger_schema()
        shape: dict[str, Any] = {}
        parent_id = node.ecs_id

        def encode(value: Any, field: str, path: tuple[int | str, ...], loc: str) -> Any:
            if isinstance(value, Entity):
                other = seen_objects.get(id(value))
                if other is not None or value.ecs_id in tree.nodes:
                    first = other or tree._paths.get(value.ecs_id, "?")
                    raise TreeStructureError(
                        f"{type(value).__name__} {value.ecs_id} is reachable at both "
                        f"{first} and {loc}: an entity can have only one parent "
                        "(cycle or shared child)"
                    )
                seen_objects[id(value)] = loc
                tree.nodes[value.ecs_id] = value
                tree._paths[value.ecs_id] = loc
                tree.edges[value.ecs_id] = Edge(parent_id, value.ecs_id, field, path)
                stack.append((value, loc))
                return Ref(value.ecs_id)
            t = type(value)
            if t is list:
                return [encode(v, field, (*path, i), f"{loc}[{i}]") for i, v in enumerate(value)]
            if t is tuple:
                return tuple(
                    encode(v, field, (*path, i), f"{loc}[{i}]") for i, v in enumerate(value)
                )
            if t is dict:
                out = {}
                for k, v in value.items():
                    check_dict_key(k, loc)
                    out[k] = encode(v, field, (*path, k), f"{loc}[{k!r}]")
                return out
            if t in IMMUTABLE_TYPES:
                return value
            if isinstance(value, (set, frozenset)) and any(isinstance(v, Entity) for v in value):
                raise TreeStructureError(f"{loc}: entities inside a set are not supported")
            try:
                return copy_value(value)
            except TypeError:  # deepcopy refuses generators, locks, sockets: none can be stored
                raise UnstorableValueError(
                    f"{loc}: a {t.__name__} value cannot be stored (it cannot even be copied); "
                    "store data, e.g. a list instead of a generator"
                ) from None

        for field in schema.tree_fields:
            try:
                shape[field] = encode(getattr(node, field), field, (), f"{where}.{field}")
            except RecursionError:
                raise TreeStructureError(
                    f"{where}.{field}: the value is nested too deeply or contains itself"
                ) from None
        tree.shapes[node.ecs_id] = shape
    return tree


#: Deepest container nesting an argument may have: the log's JSON encoder stops at 254.
MAX_NESTING = 200


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """True when lists, tuples and dicts nest deeper than ``limit`` (a container holding
    itself counts as infinitely deep). Iterative: the point is to never recurse on user data."""
    deepest: dict[int, int] = {}
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t is dict:
            items: Any = v.values()
        elif t is list or t is tuple:
            items = v
        else:
            continue
        if depth > limit:
            return True
        if deepest.get(id(v), 0) >= depth:
            continue
        deepest[id(v)] = depth
        stack.extend((x, depth + 1) for x in items)
    return False


def refs_in(shape: Any) -> Iterator[UUID]:
    """Every child ecs_id in a shape, in field order."""
    for leaf in iter_leaves(shape):
        if type(leaf) is Ref:
            yield leaf.ecs_id


def tree_members(root: UUID, children_of: Callable[[UUID], Iterable[UUID]]) -> list[UUID]:
    """``root`` and every version below it, by the children each version names (depth first).

    The one walk of a stored tree: the in-memory index, the store's tree rows and a
    batch's root versions all point a tree's versions at its root this way.
    """
    out: list[UUID] = []
    stack = [root]
    while stack:
        ecs_id = stack.pop()
        out.append(ecs_id)
        stack.extend(children_of(ecs_id))
    return out

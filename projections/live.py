"""Live reads: fresh entity copies of stored versions, history, time travel and diffs.

Everything here is a pure read of the inline projection (``projections.inline``): a stored
version becomes a new live object (new ``live_id``), registered in the projection's weak
table of live objects so ``get_live_entity`` can find it. ``EntityRegistry``'s read methods
are thin wrappers over these functions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, SupportsIndex
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ledger._process import random_id
from ledger.errors import EntityNotFoundError, NotARootError
from ledger.model.address import as_uuid
from ledger.model.construct import construct
from ledger.model.entity import Entity
from ledger.model.schema import topics
from ledger.model.tree import EntityTree, Ref, build_entity_tree, copy_value
from ledger.model.walk import map_leaves
from projections.diffing import diff_versions
from projections.inline import InlineIndex, VersionRecord
from projections.stored_reads import prefetch_children

__all__ = [
    "MetaFields",
    "OldIds",
    "as_of",
    "diff",
    "ecs_id_to_root_id",
    "get_latest",
    "get_live_entity",
    "get_stored_entity",
    "get_stored_tree",
    "history",
    "materialize",
    "materialize_in_context",
]


class MetaFields(BaseModel):
    """Validates the derivation metadata of a stored version back into typed values."""

    model_config = ConfigDict(extra="ignore")
    attribute_source: dict[str, UUID | None | list[UUID | None] | dict[str, UUID | None]] = {}
    derived_from_function: str | None = None
    derived_from_execution_id: UUID | None = None
    function_input_entities: list[UUID] = []
    sibling_output_entities: list[UUID] = []
    output_index: int | None = None


_FILL_LOCK = threading.Lock()


class OldIds(list):  # type: ignore[type-arg]
    """The ``old_ids`` of a copy read from storage: a list filled from the index when first read.

    A version's ``old_ids`` holds every earlier ecs_id of its lineage, so filling it
    on every copy made ``history()`` quadratic: a 20k-version lineage held 200M ids
    (1.5 GiB). Each copy now gets this list, empty until something reads it; then it
    asks the index once (``InlineIndex.old_ids``) and is an ordinary list from there
    on, mutations included. Reading ``entity.old_ids`` hands out a plain ``list``
    (``Entity``'s attribute swaps it in), and model dumps, copies and pickles see
    every id; only code that takes the value out of ``entity.__dict__`` (or
    ``dict(entity)``) and reads list storage from C (``orjson.dumps``, pydantic
    validation) sees it empty before its first read (or holding only the ids appended
    since it was read: ``append`` adds without filling, the earlier ids go in front).
    """

    __slots__ = ("_index", "_record")

    def __init__(self, index: InlineIndex, record: VersionRecord) -> None:
        super().__init__()
        self._index: InlineIndex | None = index
        self._record: VersionRecord | None = record

    def _fill(self) -> None:
        with _FILL_LOCK:  # a second thread reading meanwhile waits, never sees it half filled
            record = self._record
            if record is not None:
                assert self._index is not None
                # ids appended before the fill go after the earlier ones
                list.__setitem__(self, slice(0, 0), self._index.old_ids(record))
                self._index = self._record = None

    def append(self, ecs_id: Any) -> None:
        """Add an id without reading the earlier ones: a new version appends its previous id
        to the live copy, and filling there cost a read of the whole lineage per write."""
        with _FILL_LOCK:
            list.append(self, ecs_id)

    def __radd__(self, other: Any) -> Any:
        # ``[a] + ids``: without it, list concatenation reads the storage unfilled
        return other + list(self)  # list(self) iterates, which fills

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # copies, deep copies and pickles are plain lists: they must not hold the index
        return (list, (list(self),))

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


def _filled(name: str) -> Callable[..., Any]:
    method = getattr(list, name)

    def call(self: OldIds, *args: Any, **kwargs: Any) -> Any:
        if self._record is not None:
            self._fill()
        for arg in args:  # ``a == b``, ``a + b``: list code reads b's storage directly too
            if type(arg) is OldIds and arg._record is not None:
                arg._fill()
        return method(self, *args, **kwargs)

    call.__name__ = name
    call.__qualname__ = f"OldIds.{name}"
    call.__doc__ = method.__doc__
    return call


# Every way Python code reads or changes a list fills it first.
for _name in (
    "__iter__", "__len__", "__getitem__", "__setitem__", "__delitem__", "__contains__", "__reversed__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__repr__", "__add__", "__iadd__",
    "__mul__", "__rmul__", "__imul__", "__sizeof__", "extend", "insert", "remove", "pop",
    "clear", "index", "count", "sort", "reverse", "copy",
):
    setattr(OldIds, _name, _filled(_name))
del _name


def materialize(
    index: InlineIndex, ecs_id: UUID, root_ecs_id: UUID, root_live_id: UUID | None = None
) -> Entity:
    """A fresh live copy of a stored version and its subtree, registered as live in ``index``."""
    records = index.records
    if root_live_id is None:
        root_live_id = random_id() if ecs_id == root_ecs_id else None
    made: list[Entity] = []

    def build(rec: VersionRecord) -> Entity:
        cls = topics.resolve(rec.topic)
        data: dict[str, Any] = {n: copy_value(v) for n, v in rec.values(cls).items()}
        for name, shape in rec.shape.items():
            data[name] = fill(shape)
        is_root = rec.ecs_id == root_ecs_id
        data.update(
            ecs_id=rec.ecs_id,
            live_id=root_live_id if is_root else random_id(),
            lineage_id=rec.lineage_id,
            previous_ecs_id=rec.previous_ecs_id,
            old_ids=[] if rec.linear and rec.lineage_index == 0 else OldIds(index, rec),
            created_at=rec.created_at,
            forked_at=rec.forked_at,
            root_ecs_id=root_ecs_id,
            root_live_id=root_live_id,
            from_storage=True,
            # given explicitly: model_construct would otherwise inspect each default
            # factory's signature on every call (most of the cost of a copy)
            attribute_source={},
            function_input_entities=[],
            sibling_output_entities=[],
        )
        if rec.meta:
            meta = MetaFields.model_validate(rec.meta)
            for name in rec.meta:
                data[name] = getattr(meta, name)
        obj = construct(cls, data)
        made.append(obj)
        return obj

    def fill(shape: Any) -> Any:
        return map_leaves(shape, leaf)

    def leaf(value: Any) -> Any:
        if type(value) is Ref:
            child = records.get(value.ecs_id)
            if child is None:  # pragma: no cover - the log guarantees children exist
                raise EntityNotFoundError(f"stored child version {value.ecs_id} is missing")
            return build(child)
        return copy_value(value)

    obj = build(index.get(ecs_id))
    live = index.live
    for made_obj in made:
        live[made_obj.live_id] = made_obj
    return obj


def get_stored_entity(index: InlineIndex, root_ecs_id: UUID, ecs_id: UUID) -> Entity:
    """A fresh copy of version ``ecs_id`` (with its subtree) as it sits in tree ``root_ecs_id``."""
    root_ecs_id = as_uuid(root_ecs_id, "root_ecs_id")
    ecs_id = as_uuid(ecs_id, "ecs_id")
    index.get(root_ecs_id, "root_ecs_id")
    index.get(ecs_id, "ecs_id")
    if ecs_id != root_ecs_id and ecs_id not in index.subtree_ids(root_ecs_id):
        raise EntityNotFoundError(
            f"ecs_id: version {ecs_id} is not part of the tree rooted at {root_ecs_id}"
        )
    return materialize(index, ecs_id, root_ecs_id)


def get_stored_tree(index: InlineIndex, root_ecs_id: UUID) -> EntityTree:
    """A fresh copy of a whole stored tree; editing it never changes stored state."""
    root_ecs_id = as_uuid(root_ecs_id, "root_ecs_id")
    rec = index.get(root_ecs_id, "root_ecs_id")
    if not rec.is_root:
        raise NotARootError(
            f"root_ecs_id: {root_ecs_id} is a child version; its latest tree is "
            f"{index.root_of.get(root_ecs_id)}"
        )
    return build_entity_tree(materialize(index, root_ecs_id, root_ecs_id))


def get_live_entity(index: InlineIndex, live_id: UUID) -> Entity | None:
    """The live object with this live_id, if it is still alive in this process."""
    return index.live.get(as_uuid(live_id, "live_id"))


def ecs_id_to_root_id(index: InlineIndex, ecs_id: UUID) -> UUID:
    """The root version of the latest stored tree that contains version ``ecs_id``."""
    ecs_id = as_uuid(ecs_id, "ecs_id")
    root = index.root_of.get(ecs_id)
    if root is None:
        raise EntityNotFoundError(f"ecs_id: no stored entity version {ecs_id}")
    return root


def history(index: InlineIndex, lineage_id: UUID) -> list[Entity]:
    """Every stored version of a lineage, oldest first, as fresh copies.

    Linear in the number of versions: each copy's ``old_ids`` is filled only when
    read (``OldIds``).
    """
    lineage_id = as_uuid(lineage_id, "lineage_id")
    found = index.lineages.get(lineage_id)
    if found is None:
        raise EntityNotFoundError(f"lineage_id: no entity lineage {lineage_id}")
    versions = list(found)
    prefetch_children(index.records, versions)  # a store-backed index reads them in batches
    return [materialize_in_context(index, rec) for rec in versions]


def materialize_in_context(index: InlineIndex, rec: VersionRecord) -> Entity:
    root = rec.ecs_id if rec.is_root else index.root_of.get(rec.ecs_id, rec.ecs_id)
    return materialize(index, rec.ecs_id, root)


def get_latest(index: InlineIndex, lineage_id: UUID) -> Entity:
    """A fresh copy of the newest version of a lineage."""
    lineage_id = as_uuid(lineage_id, "lineage_id")
    versions = index.lineages.get(lineage_id)
    if not versions:
        raise EntityNotFoundError(f"lineage_id: no entity lineage {lineage_id}")
    return materialize_in_context(index, versions[-1])


def as_of(
    index: InlineIndex, lineage_id: UUID, *, position: int | None = None, at: datetime | None = None
) -> Entity | None:
    """The version of a lineage current at a log position or a time (None before it existed)."""
    lineage_id = as_uuid(lineage_id, "lineage_id")
    if (position is None) == (at is None):
        raise ValueError("as_of: give exactly one of position= or at=")
    if lineage_id not in index.lineages:
        raise EntityNotFoundError(f"lineage_id: no entity lineage {lineage_id}")
    if at is not None:
        if at.tzinfo is None:
            raise ValueError("at: must be timezone-aware (UTC)")
        rec = index.version_at_time(lineage_id, at)
    else:
        if not isinstance(position, int) or position < 0:
            raise ValueError(f"position: must be a non-negative int, got {position!r}")
        rec = index.version_at(lineage_id, position)
    return None if rec is None else materialize_in_context(index, rec)


def diff(index: InlineIndex, ecs_id_a: UUID, ecs_id_b: UUID) -> dict[str, tuple[Any, Any]]:
    """Changed values between two stored versions, keyed by dotted path."""
    a = index.get(as_uuid(ecs_id_a, "ecs_id_a"), "ecs_id_a")
    b = index.get(as_uuid(ecs_id_b, "ecs_id_b"), "ecs_id_b")
    return diff_versions(index, a, b)

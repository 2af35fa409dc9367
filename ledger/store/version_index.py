"""The stored version index: a projection of the log kept in the store, beside the events.

Readers that need one version, one lineage or one erasure should not have to replay the
whole log into memory first (a 1M-event ledger took 17-27 s and 1.7 GiB to open). So the
store keeps, in tables of the same SQLite file or PostgreSQL schema:

- a *version row* ``(ecs_id, position)`` for every ``entity.version`` record (its lineage and
  stream version are the record's own columns, and a lineage's versions are found through
  the events table's own (stream, version) index, so nothing else needs a row);
- an *erasure row* ``(lineage_id, position)`` for each lineage's first ``entity.erased``;
- a *tree row* ``(ecs_id, root_ecs_id)`` for every version that is part of a stored tree (a
  column of its version row, so a new version costs no second insert): the
  root version of the latest tree (by log position) that holds it. Each root version's record
  points every member of its tree at itself, so a version shared by many trees (a child that
  did not change while its root did) names the newest of them, as ``ecs_id_to_root_id`` says;
- a *memo row* ``(cache_key, execution_id, position)`` for the first ``execution.completed``
  that carries each memo key (``ledger/write/memo.py``: functions registered with
  ``cache=True``), so a memoized call finds the execution to reuse with one keyed read;
- one *tracking row* ``(position, head_hash)``: every record at or below ``position`` is
  indexed, and ``head_hash`` is the chain link (``seal.link_hash``) of the record there, so
  a log rewritten below the tracked position is noticed and the index rebuilt.

The rows are a pure function of the log (``rows_for_page`` computes them from raw records,
``rows_for_batch`` from a batch being appended), so the index can always be rebuilt and
compared. An append writes its rows in the same transaction as its events and moves the
tracked position only when it was the log's head: a writer killed mid-batch leaves neither
events nor rows, and the tracked position never claims a record whose rows are missing. A
log written before the index existed (or by an older library) is indexed by ``catch_up`` on
the next writable open.

This module holds what every backend shares; the SQL is in ``sqlite.py`` and ``postgres.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any
from uuid import UUID

import orjson

from ledger.errors import CorruptLogError
from ledger.events.bodies import (
    ENTITY_ERASED,
    ENTITY_VERSION,
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
)
from ledger.events.seal import NewEvent
from ledger.events.shape import shape_from_json
from ledger.model.tree import refs_in, tree_members

__all__ = [
    "ANALYTICS_SECRET",
    "INDEX_NAME",
    "IndexRebuild",
    "IndexRows",
    "TreeWalker",
    "ecs_id_of",
    "lineage_versions",
    "memo_key_of",
    "rows_for_batch",
    "rows_for_page",
    "version_children",
]

#: The tracking row's name. It names the index's layout too: a ledger indexed by an
#: older layout (``versions``: no tree rows; ``versions.2``: tree rows in a table of their
#: own) has no row of this name, so its next
#: writable open indexes it again from the first record (version and erasure rows are
#: inserted only where missing, so the rows it already has stay as they are).
INDEX_NAME = "versions.3"

#: The name of the store's secret that keys the analytics cache's MAC (``projections.cache_file``):
#: made with the index tables by a writable open, kept in the store, never in the cache file.
ANALYTICS_SECRET = "analytics.mac"

# An entity.version body starts with its ecs_id (``bodies.entity_version_body`` puts it
# first and orjson keeps the order): read it without parsing the whole payload.
_ECS_PREFIX = b'{"ecs_id":"'
_ECS_END = len(_ECS_PREFIX) + 36


@dataclass(slots=True)
class IndexRows:
    """Rows to add: versions as (ecs_id, position), erasures as (lineage_id, position),
    tree rows as (member ecs_id, root ecs_id) in log order (a later row for a member wins)."""

    versions: list[tuple[UUID, int]] = field(default_factory=list)
    erasures: list[tuple[UUID, int]] = field(default_factory=list)
    roots: list[tuple[UUID, UUID]] = field(default_factory=list)
    #: memo rows as (32-byte cache key, execution_id, position), in log order (the first per key wins).
    memos: list[tuple[bytes, UUID, int]] = field(default_factory=list)

    def split_roots(self) -> tuple[list[tuple[UUID, int, UUID | None]], dict[UUID, UUID]]:
        """(each new version as (ecs_id, position, its tree root or None), {earlier version: its new root}).

        A new version's root goes in its own row; what is left re-points versions stored before
        this batch. Each member's last root in the batch wins.
        """
        roots = dict(self.roots)
        return [(e, p, roots.pop(e, None)) for e, p in self.versions], roots

    def final_roots(self) -> list[tuple[UUID, UUID]]:
        """The tree rows as the table holds them once all are written: one per member, by ecs_id."""
        return sorted(dict(self.roots).items())


def version_children(payload: dict[str, Any]) -> tuple[UUID, ...]:
    """The child ecs_ids an ``entity.version`` payload names, in field order."""
    children = payload["children"]
    if not children:
        return ()
    return tuple(refs_in({k: shape_from_json(v) for k, v in children.items()}))


class TreeWalker:
    """The members of a root version's tree, from the children each version names.

    Versions seen in this pass are remembered (``note``), up to ``limit`` of them;
    any other version's children come from ``children_of`` (a read of its record).
    A version nobody can find counts as a leaf, as the in-memory index treats it.
    """

    def __init__(self, children_of: Callable[[UUID], tuple[UUID, ...]], limit: int = 500_000) -> None:
        self._children_of = children_of
        self._known: dict[UUID, tuple[UUID, ...]] = {}
        self._limit = limit

    def note(self, ecs_id: UUID, children: tuple[UUID, ...]) -> None:
        if len(self._known) >= self._limit:
            self._known.clear()  # bounded: older versions are read again when a tree needs them
        self._known[ecs_id] = children

    def members(self, root: UUID) -> list[UUID]:
        return tree_members(root, self._children)

    def _children(self, ecs_id: UUID) -> tuple[UUID, ...]:
        children = self._known.get(ecs_id)
        if children is None:
            children = self._known[ecs_id] = self._children_of(ecs_id)
        return children


class IndexRebuild:
    """The index rows of the log computed from its pages alone, fed in position order.

    What ``EventStore.rebuilt_index`` returns, built a page at a time so that ``verify`` can feed
    it the pages it already reads for the seals (one pass over the log, not two). A memo row is
    the first execution filed under its key, an erasure row a lineage's first ``entity.erased``;
    every version is seen before any tree holds it, so the walker never reads the store.
    """

    def __init__(self) -> None:
        self.rows = IndexRows()
        self._erased: set[Any] = set()
        self._memo_keys: set[bytes] = set()
        self._walker = TreeWalker(lambda ecs_id: (), limit=1 << 62)

    def add_page(
        self, positions: Sequence[int], stream_ids: Sequence[Any], versions: Sequence[Any], topics: Sequence[str], states: Sequence[bytes]
    ) -> None:
        """Add a page of raw records; ``CorruptLogError`` for one the index cannot read."""
        rows = self.rows
        part = rows_for_page(positions, stream_ids, versions, topics, states, self._walker)
        rows.versions.extend(part.versions)
        rows.roots.extend(part.roots)
        for key, execution_id, position in part.memos:
            if key not in self._memo_keys:
                self._memo_keys.add(key)
                rows.memos.append((key, execution_id, position))
        for lineage, position in part.erasures:
            if lineage not in self._erased:
                self._erased.add(lineage)
                rows.erasures.append((lineage, position))


def rows_for_batch(events: Sequence[NewEvent], first_position: int) -> IndexRows:
    """The rows of a batch about to be appended at ``first_position``.

    Ids come from planning (``NewEvent.ecs_id``) and tree members from
    ``NewEvent.members``, which ``EventStore.append`` fills in for writers that
    did not give them.
    """
    rows = IndexRows()
    versions = rows.versions
    for position, event in enumerate(events, first_position):
        topic = event.topic
        if topic == ENTITY_VERSION:
            ecs_id = event.ecs_id
            if ecs_id is None:
                ecs_id = ecs_id_of(event.body, position)
            versions.append((ecs_id, position))
            if event.members:
                rows.roots.extend(zip(event.members, repeat(ecs_id)))
        elif topic == ENTITY_ERASED:
            rows.erasures.append((event.stream_id, position))
        elif topic == EXECUTION_COMPLETED:
            key = memo_key_of(event.body, position)
            if key is not None:
                rows.memos.append((key, event.stream_id, position))
    return rows


def memo_key_of(state: Any, position: int) -> bytes | None:
    """The memo key an ``execution.completed`` record carries (32 bytes), or None.

    Only records that mention the key are parsed: most executions have none.
    """
    data = bytes(state) if isinstance(state, (bytearray, memoryview)) else state
    if not isinstance(data, bytes) or b'"cache_key"' not in data:
        return None
    try:
        key = orjson.loads(data).get("cache_key")
        return None if key is None else bytes.fromhex(key)
    except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
        raise CorruptLogError(f"position {position}: the execution.completed record's memo key cannot be read", position) from None


def rows_for_page(
    positions: Sequence[int],
    stream_ids: Sequence[Any],
    versions: Sequence[Any],
    topics: Sequence[str],
    states: Sequence[bytes],
    walker: TreeWalker,
) -> IndexRows:
    """The rows of raw log records (as ``EventStore.read_columns`` returns them).

    A record the index needs but cannot read is a ``CorruptLogError`` naming its
    position: the index must not silently skip a version.
    """
    rows = IndexRows()
    for position, raw_id, version, topic, state in zip(positions, stream_ids, versions, topics, states):
        if topic == EXECUTION_COMPLETED:
            key = memo_key_of(state, position)
            if key is not None:
                rows.memos.append((key, _stream(raw_id, position), position))
            continue
        if topic != ENTITY_VERSION and topic != ENTITY_ERASED:
            continue
        try:
            stream_id = raw_id if isinstance(raw_id, UUID) else UUID(str(raw_id))
            version = int(version)
        except (TypeError, ValueError):
            raise CorruptLogError(f"position {position}: stream id or version cannot be read for the index", position) from None
        if topic == ENTITY_VERSION:
            ecs_id = ecs_id_of(state, position)
            rows.versions.append((ecs_id, position))
            is_root, children = tree_facts(state, position)
            walker.note(ecs_id, children)
            if is_root:
                rows.roots.extend((member, ecs_id) for member in walker.members(ecs_id))
        else:
            rows.erasures.append((stream_id, position))
    return rows


def _stream(raw_id: Any, position: int) -> UUID:
    try:
        return raw_id if isinstance(raw_id, UUID) else UUID(str(raw_id))
    except (TypeError, ValueError):
        raise CorruptLogError(f"position {position}: stream id cannot be read for the index", position) from None


def tree_facts(state: Any, position: int) -> tuple[bool, tuple[UUID, ...]]:
    """(is_root, child ecs_ids) of an ``entity.version`` record; ``CorruptLogError`` if unreadable."""
    try:
        payload = orjson.loads(bytes(state) if isinstance(state, (bytearray, memoryview)) else state)
        return payload["is_root"] is True, version_children(payload)
    except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        raise CorruptLogError(f"position {position}: the entity.version record's tree cannot be read for the index", position) from None


def ecs_id_of(state: Any, position: int) -> UUID:
    """The ecs_id an ``entity.version`` record (or the first bytes of one) carries."""
    data = bytes(state) if isinstance(state, (bytearray, memoryview)) else state
    try:
        if isinstance(data, bytes) and data.startswith(_ECS_PREFIX) and data[_ECS_END : _ECS_END + 1] == b'"':
            return UUID(data[len(_ECS_PREFIX) : _ECS_END].decode())
        return UUID(orjson.loads(data)["ecs_id"])
    except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        raise CorruptLogError(f"position {position}: the entity.version record has no readable ecs_id", position) from None


def lineage_versions(
    rows: Iterable[tuple[int, Any, Any, Any]], whole: Callable[[int], Any], lineage_id: UUID
) -> list[tuple[UUID, int, int]]:
    """(ecs_id, version, position) of a lineage's versions from its stream's records, checked.

    ``rows`` are the stream's records as (position, stream version, topic, first bytes of the
    state) in version order, straight from the events table; ``whole(position)`` reads a
    record in full when its first bytes are not in the usual layout. A lineage's stream holds
    its versions, at most its erasure and (for a ``FunctionExecution`` entity) its
    execution's record, numbered 1, 2, 3, ... with no gap. A missing record, one of another
    kind, or an erasure or execution record that does not name this stream (a version whose
    topic was edited) is a ``CorruptLogError`` naming its position, never a shorter history.
    A stream whose first record is not a version is no lineage: [].
    """
    out: list[tuple[UUID, int, int]] = []
    expected = 1
    for position, version, topic, head in rows:
        if version != expected:
            raise CorruptLogError(
                f"position {position}: the lineage's stream goes from version {expected - 1} to {version!r} "
                "(a record is missing or was renumbered); run ledger verify",
                position,
            )
        expected += 1
        if topic == ENTITY_VERSION:
            try:
                ecs_id = ecs_id_of(head, position)
            except CorruptLogError:  # not in the usual layout (or damaged): judge the whole record
                ecs_id = ecs_id_of(whole(position), position)
            out.append((ecs_id, version, position))
            continue
        if not out:
            return []  # not a lineage: an execution's (or another kind's) stream
        field = _NAMES_STREAM.get(topic)
        if field is None or not _names_stream(head, field, lineage_id, position, whole):
            raise CorruptLogError(
                f"position {position}: a lineage's stream holds a {topic!r} record that is not its own; run ledger verify",
                position,
            )
    return out


#: The field that names its stream in the other records a lineage's stream may hold.
_NAMES_STREAM = {ENTITY_ERASED: "lineage_id", EXECUTION_COMPLETED: "execution_id", EXECUTION_FAILED: "execution_id"}


def _names_stream(head: Any, field: str, stream_id: UUID, position: int, whole: Callable[[int], Any]) -> bool:
    expected = f'{{"{field}":"{stream_id}"'.encode()
    data = bytes(head) if isinstance(head, (bytearray, memoryview)) else head
    if isinstance(data, bytes) and data.startswith(expected):
        return True
    try:  # another layout: read the record in full
        return bool(orjson.loads(whole(position))[field] == str(stream_id))
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        return False

"""Stored versions read from the log by the store's version index, checked and decoded.

The pieces both the writer's stored index and the readers' need (``projections.stored_inline``):
where the version index says a version is, its record is read, its seal checked and it is
decoded into a ``VersionRecord``; a record that is not the version the index names is a
``CorruptLogError``, never another version shown. They live below the index so that the
index and the reading facade (``projections.stored_reads``) import them without a cycle.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload
from uuid import UUID

from ledger.events.bodies import ENTITY_VERSION
from ledger.events.decode import checked_record, corrupt, describe
from ledger.store import EventStore
from projections.inline import VersionRecord, version_record

__all__ = [
    "DEFAULT_CACHE",
    "LRU",
    "LazyVersions",
    "PREFETCH_LIMIT",
    "StoredErasures",
    "checked_versions",
    "load_version",
    "load_versions",
    "prefetch_children",
    "previous_chain",
    "read_checked",
]

#: Decoded versions kept per reader (a version is typically 1-2 KiB decoded).
DEFAULT_CACHE = 4096


class LRU(OrderedDict[Any, Any]):
    """An OrderedDict that keeps at most ``limit`` entries, the least recently used going first."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def hit(self, key: Any) -> Any:
        value = OrderedDict.get(self, key)
        if value is not None:
            try:
                self.move_to_end(key)
            except KeyError:  # another thread's put dropped it meanwhile: still a valid answer
                pass
        return value

    def put(self, key: Any, value: Any) -> Any:
        """Keep ``value``; returns the value dropped to make room (None when none was)."""
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.limit:
            return self.popitem(last=False)[1]
        return None


class StoredErasures(Mapping[UUID, int]):
    """``index.erased``: lineage_id -> position of its erasure, looked up in the store's index.

    Each answer is cached (bounded), "not erased" too: an erasure by another writer
    counts once the owner reads it (``StoredInlineIndex.reload`` calls ``setdefault``).
    Walking all of them (``items``) reads the table.
    """

    _NOT_ERASED = -1

    def __init__(self, store: EventStore, limit: int = 16_384) -> None:
        self._store = store
        self._cache = LRU(limit)

    def get(self, lineage_id: UUID, default: Any = None) -> Any:
        if type(lineage_id) is not UUID:
            return default
        position = self._cache.hit(lineage_id.int)  # int keys: nothing for the GC to walk
        if position is None:
            found = self._store.erasure_position(lineage_id)
            position = self._NOT_ERASED if found is None else found
            self._cache.put(lineage_id.int, position)
        return default if position == self._NOT_ERASED else position

    def __getitem__(self, lineage_id: UUID) -> int:
        position = self.get(lineage_id)
        if position is None:
            raise KeyError(lineage_id)
        return position  # type: ignore[no-any-return]

    def __contains__(self, lineage_id: object) -> bool:
        return self.get(lineage_id) is not None  # type: ignore[arg-type]

    def setdefault(self, lineage_id: UUID, position: int) -> int:
        known = self.get(lineage_id)
        if known is None:
            self._cache.put(lineage_id.int, position)
            return position
        return known  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[UUID]:
        return iter(self._store.erasure_entries())

    def __len__(self) -> int:
        return len(self._store.erasure_entries())


def read_checked(store: EventStore, position: int) -> tuple[UUID, int, str, dict[str, Any]]:
    """The record at ``position``, decoded and its seal checked (``decode.checked_record``).

    A position with no record (deleted from the middle of the log) is a ``CorruptLogError``
    too: a read must never quietly show the next record instead.
    """
    page = store.read_columns(position, 1, past_head=True)
    if not len(page) or page.positions[0] != position:
        raise corrupt(position, "the record is missing (the log has a gap here); run ledger verify")
    return checked_record(position, page.stream_ids[0], page.versions[0], page.topics[0], page.states[0])


def load_version(store: EventStore, ecs_id: UUID, index: Any, position: int | None = None) -> VersionRecord | None:
    """Version ``ecs_id`` read from its record in the log (seal checked), or None if the index has none.

    ``index`` is what the record asks for keys and its values cache; ``position`` is
    where the version index puts it, when the caller looked already. A record that is
    not the version the index says is a ``CorruptLogError``: never another version shown.
    """
    if position is None:
        position = store.version_position(ecs_id)
        if position is None:
            return None
    lineage_id, version, topic, payload = read_checked(store, position)
    return _version(ecs_id, position, lineage_id, version, topic, payload, index)


def load_versions(store: EventStore, wanted: Sequence[tuple[UUID, int]], index: Any) -> list[VersionRecord]:
    """``load_version`` of many (ecs_id, position) pairs, read in few round trips, in the order given."""
    return [_version(ecs_id, position, *checked, index) for ecs_id, position, checked in checked_versions(store, wanted)]


def checked_versions(
    store: EventStore, wanted: Sequence[tuple[UUID, int]]
) -> Iterator[tuple[UUID, int, tuple[UUID, int, str, dict[str, Any]]]]:
    """(ecs_id, position, checked record) of many versions, read in few round trips, each record's
    seal checked (``checked_record``); a position with no record is a ``CorruptLogError``."""
    page = store.read_positions(sorted({p for _, p in wanted}))
    rows = {p: i for i, p in enumerate(page.positions)}
    uuids: dict[str, UUID] = {}
    for ecs_id, position in wanted:
        i = rows.get(position)
        if i is None:
            raise corrupt(position, "the record is missing (the log has a gap here); run ledger verify")
        yield ecs_id, position, checked_record(
            position, page.stream_ids[i], page.versions[i], page.topics[i], page.states[i], uuids
        )


def _version(
    ecs_id: UUID, position: int, lineage_id: UUID, version: int, topic: str, payload: dict[str, Any], index: Any
) -> VersionRecord:
    if topic != ENTITY_VERSION or payload["ecs_id"] != str(ecs_id):
        raise corrupt(position, f"the version index names version {ecs_id} here, the record holds something else; run ledger verify")
    try:
        rec = version_record(payload, lineage_id, None, index)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise corrupt(position, f"the entity.version record of stream {lineage_id} cannot be decoded: {describe(exc)}") from exc
    rec.position = position
    rec.lineage_index = version - 1
    # Whether its history is its lineage's prefix is not known without reading the
    # earlier versions: ``old_ids`` then walks its previous versions (``previous_chain``).
    rec.linear = rec.previous_ecs_id is None
    return rec


#: At most this many child versions are read ahead for one walk (half the default cache, so
#: what was read ahead is still cached when the walk gets there).
PREFETCH_LIMIT = DEFAULT_CACHE // 2


def prefetch_children(records: Any, versions: Sequence[VersionRecord]) -> None:
    """Read the child versions of ``versions``' trees ahead of a walk that would read them one
    at a time (``history``'s diffs): a level of the trees at a time, a few hundred per query
    (``load_many``), so a lineage's history costs a few queries per tree level, whatever its
    number of versions. An index that holds its versions in memory has no ``load_many``: nothing
    to do. Versions that are not stored are left for the walk to report."""
    load_many = getattr(records, "load_many", None)
    if load_many is None:
        return
    seen: set[UUID] = {v.ecs_id for v in versions}
    level = [c for v in versions for c in v.child_ids]
    while level and len(seen) < PREFETCH_LIMIT:
        fresh = [c for c in dict.fromkeys(level) if c not in seen][: PREFETCH_LIMIT - len(seen)]
        seen.update(fresh)
        level = []
        for i in range(0, len(fresh), 256):
            try:
                loaded = load_many(fresh[i : i + 256])
            except KeyError:
                return  # a child that is no stored version: the walk says which
            level.extend(c for rec in loaded for c in rec.child_ids)


def previous_chain(records: Any, record: VersionRecord) -> list[UUID]:
    """The earlier versions of ``record``, oldest first, following its previous versions."""
    chain: list[UUID] = []
    prev = record.previous_ecs_id
    while prev is not None:
        chain.append(prev)
        rec = records.get(prev)
        prev = rec.previous_ecs_id if rec is not None else None
    chain.reverse()
    return chain


class LazyVersions(Sequence[VersionRecord]):
    """A lineage's versions, oldest first, each read only when asked for (``[-1]`` reads one).

    ``records`` is what maps an ecs_id to its record (an index's ``records``).
    """

    def __init__(self, records: Any, ids: list[UUID], positions: list[int] | None = None) -> None:
        self._records = records
        self._ids = ids
        self._positions = positions

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[VersionRecord]:
        """Oldest first, read a few hundred at a time where the index can (``load_many``)."""
        load_many = getattr(self._records, "load_many", None)
        if load_many is None:
            yield from (self._records[ecs_id] for ecs_id in self._ids)
            return
        positions = self._positions
        for i in range(0, len(self._ids), 256):
            yield from load_many(self._ids[i : i + 256], None if positions is None else positions[i : i + 256])

    @overload
    def __getitem__(self, i: int) -> VersionRecord: ...

    @overload
    def __getitem__(self, i: slice) -> list[VersionRecord]: ...

    def __getitem__(self, i: int | slice) -> VersionRecord | list[VersionRecord]:
        if isinstance(i, slice):
            return [self._records[ecs_id] for ecs_id in self._ids[i]]
        record: VersionRecord = self._records[self._ids[i]]
        return record

"""Reads of single versions and lineages straight from the store's version index.

``ledger log``, ``show``, ``history``, ``as-of`` and ``diff`` need a handful of versions,
not the whole log: where the store's version index covers the log
(``EventStore.index_caught_up``), ``StoredIndex`` answers the lookups the audit reads make
of an index (``records``, ``lineages``, ``get``, ``version_at``, ``version_at_time``,
``key_for``) by reading only the records it needs, decoded on demand and kept in a bounded
LRU cache. Opening one costs a few queries whatever the log's length; the in-memory
``InlineIndex`` replays everything.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, overload
from uuid import UUID

from ledger.errors import EntityNotFoundError
from ledger.events.bodies import ENTITY_VERSION, EXECUTION_FAILED
from ledger.events.decode import checked_record, corrupt, describe
from ledger.events.sealed_failure import is_sealed, open_failure
from ledger.store import EventStore
from projections.inline import VersionRecord, version_record

__all__ = [
    "LRU",
    "LazyVersions",
    "StoredErasures",
    "StoredIndex",
    "StoredReader",
    "load_version",
    "load_versions",
    "checked_versions",
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


class _Records:
    """``index.records``: ecs_id -> VersionRecord, loaded on first use."""

    def __init__(self, owner: StoredIndex) -> None:
        self._owner = owner

    def get(self, ecs_id: UUID, default: Any = None) -> VersionRecord | Any:
        rec = self._owner.load(ecs_id)
        return default if rec is None else rec

    def __getitem__(self, ecs_id: UUID) -> VersionRecord:
        rec = self._owner.load(ecs_id)
        if rec is None:
            raise KeyError(ecs_id)
        return rec

    def __contains__(self, ecs_id: object) -> bool:
        return isinstance(ecs_id, UUID) and self._owner.store.version_position(ecs_id) is not None

    def load_many(self, ecs_ids: Sequence[UUID], at: Sequence[int] | None = None) -> list[VersionRecord]:
        """Many records at once (``StoredIndex.load_many``): ``LazyVersions`` iterates through it."""
        return self._owner.load_many(ecs_ids, at)


class _Lineages:
    """``index.lineages``: lineage_id -> its versions, oldest first (loaded when asked)."""

    def __init__(self, owner: StoredIndex) -> None:
        self._owner = owner

    def get(self, lineage_id: UUID, default: Any = None) -> Sequence[VersionRecord] | Any:
        entries = self._owner.store.lineage_entries(lineage_id) if isinstance(lineage_id, UUID) else []
        if not entries:
            return default
        # the positions come with the entries: iterating reads the records, with no lookup first
        return LazyVersions(self._owner.records, [ecs_id for ecs_id, _, _ in entries], [p for _, _, p in entries])

    def __getitem__(self, lineage_id: UUID) -> Sequence[VersionRecord]:
        found = self.get(lineage_id)
        if found is None:
            raise KeyError(lineage_id)
        return found

    def __contains__(self, lineage_id: object) -> bool:
        return isinstance(lineage_id, UUID) and bool(self._owner.store.lineage_entries(lineage_id))


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


class StoredIndex:
    """The audit reads' view of an index, answered from the store (bounded memory)."""

    def __init__(self, store: EventStore, cache_size: int = DEFAULT_CACHE) -> None:
        self.store = store
        self.keys = store.keys
        self.erased = StoredErasures(store)
        self.records = _Records(self)
        self.lineages = _Lineages(self)
        self._cache: OrderedDict[UUID, VersionRecord] = OrderedDict()
        self._cache_size = cache_size

    def load(self, ecs_id: UUID) -> VersionRecord | None:
        """One stored version, from the cache or its record in the log."""
        rec = self._cache.get(ecs_id)
        if rec is not None:
            self._cache.move_to_end(ecs_id)
            return rec
        if not isinstance(ecs_id, UUID):
            return None
        rec = load_version(self.store, ecs_id, self)
        if rec is None:
            return None
        self._remember(rec)
        return rec

    def load_many(self, ecs_ids: Sequence[UUID], at: Sequence[int] | None = None) -> list[VersionRecord]:
        """The records of ``ecs_ids`` (stored versions), in that order; those not cached are read
        together (``load_versions``: a query per few hundred), so a lineage of any length costs
        the same few queries. ``at`` are their positions when the caller knows them (a lineage's
        entries); otherwise one query looks them up. An id that is no stored version is a ``KeyError``."""
        found: dict[UUID, VersionRecord] = {}
        missing: list[UUID] = []
        for ecs_id in ecs_ids:
            rec = self._cache.get(ecs_id)
            if rec is None:
                missing.append(ecs_id)
            else:
                self._cache.move_to_end(ecs_id)
                found[ecs_id] = rec
        if missing:
            positions = dict(zip(ecs_ids, at)) if at is not None else self.store.version_positions(missing)
            lost = [e for e in missing if e not in positions]
            if lost:
                raise KeyError(lost[0])
            for rec in load_versions(self.store, [(e, positions[e]) for e in missing], self):
                found[rec.ecs_id] = self._remember(rec)
        return [found[e] for e in ecs_ids]

    def _remember(self, rec: VersionRecord) -> VersionRecord:
        """Keep a decoded version in the bounded cache (the least recently used one goes)."""
        self._cache[rec.ecs_id] = rec
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return rec

    def get(self, ecs_id: UUID, argument: str = "ecs_id") -> VersionRecord:
        rec = self.load(ecs_id)
        if rec is None:
            raise EntityNotFoundError(f"{argument}: no stored entity version {ecs_id}")
        return rec

    def old_ids(self, record: VersionRecord) -> list[UUID]:
        return previous_chain(self.records, record)

    def key_for(self, lineage_id: UUID) -> bytes | None:
        """The lineage's data key; None once erased (read from the store, never a stale cache)."""
        return None if lineage_id in self.erased else self.keys.fetch(lineage_id)

    def version_at(self, lineage_id: UUID, position: int) -> VersionRecord | None:
        """The lineage's latest version recorded at or before ``position``."""
        entries = self.store.lineage_entries(lineage_id)
        i = bisect_right([p for _, _, p in entries], position)
        return None if i == 0 else self.load(entries[i - 1][0])

    def version_at_time(self, lineage_id: UUID, at: datetime) -> VersionRecord | None:
        """The lineage's latest version recorded at or before ``at`` (a binary search over its versions)."""
        entries = self.store.lineage_entries(lineage_id)
        lo, hi = 0, len(entries)
        while lo < hi:  # first version recorded after ``at``
            mid = (lo + hi) // 2
            rec = self.load(entries[mid][0])
            if rec is not None and rec.recorded_at <= at:
                lo = mid + 1
            else:
                hi = mid
        return None if lo == 0 else self.load(entries[lo - 1][0])


class StoredReader:
    """What the audit reads and the analytics need of a ledger, without replaying its log.

    ``store``, ``index`` and ``open_payload`` serve ``projections.audit``; ``analytics``
    and ``lineage_graph`` serve ``ledger sql``, ``lineage`` and ``export``: the DuckDB
    tables follow the log on their own (checking every record they read,
    ``decode.check_page``) and never needed the inline index.
    """

    def __init__(
        self,
        store: EventStore,
        cache_size: int = DEFAULT_CACHE,
        *,
        analytics_path: str | None = None,
        analytics_fallback: bool = False,
    ) -> None:
        self.store = store
        self.index = StoredIndex(store, cache_size)
        self.analytics_path = analytics_path
        self.analytics_fallback = analytics_fallback
        self._analytics: Any = None

    @classmethod
    def open(cls, url: str, *, analytics_path: str | None = None, analytics_fallback: bool = False) -> StoredReader | None:
        """A reader on an existing store whose version index covers its log; None otherwise
        (an index that lags, or a ``memory://`` store: replay then). Opens without writing."""
        store = EventStore(url, create=False)
        try:
            if store.index_caught_up():
                return cls(store, analytics_path=analytics_path, analytics_fallback=analytics_fallback)
        except BaseException:
            store.close()
            raise
        store.close()
        return None

    @property
    def analytics(self) -> Any:
        """The DuckDB projection of the log, opened on first use (as ``Ledger.analytics``)."""
        if self._analytics is None:
            # DuckDB and pyarrow load here, not at import: log, show and history never need them
            from projections.analytics import Analytics

            self._analytics = Analytics(self.store, self.analytics_path, fallback=self.analytics_fallback)
        return self._analytics

    def lineage_graph(
        self, ref: str | UUID, *, direction: str = "both", depth: int | None = None, position: int | None = None
    ) -> Any:
        """As ``Ledger.lineage_graph``."""
        from projections.lineage import lineage_graph

        return self.analytics.read(lambda con: lineage_graph(con, ref, direction=direction, depth=depth, position=position))

    def forget_changeable(self) -> None:
        """Drop the cached answers a later append can change, for a reader that lives long
        (``ledger ui``): "this lineage is not erased" may no longer hold. Decoded versions
        stay cached (a stored version never changes; personal values are opened with the
        key as the store holds it at each read)."""
        self.index.erased = StoredErasures(self.store)

    def open_payload(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        """As ``Ledger.open_payload``: sealed failure text opened while every key exists."""
        if topic != EXECUTION_FAILED or not is_sealed(payload):
            return payload
        erased = self.index.erased
        keys = self.store.keys
        return open_failure(payload, lambda lineage: None if lineage in erased else keys.fetch(lineage))

    def close(self) -> None:
        if self._analytics is not None:
            self._analytics.close()
            self._analytics = None
        self.store.close()

    def __enter__(self) -> StoredReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The inline index of a SQLite or PostgreSQL ledger, answered from the store.

``InlineIndex`` keeps every version in memory and is rebuilt by replaying the whole log,
so opening a ledger cost time and memory in proportion to its history (a 1M-event ledger
took 17-27 s and 1.7 GiB). The store already keeps, in the same transaction as the
events, what the write side looks up by id (``ledger.store.version_index``): where each
version is, each lineage's versions (the events table's own stream index), the root of
the latest tree holding each version, each stream's head. ``StoredInlineIndex`` answers
the same questions as ``InlineIndex`` from those tables, through bounded caches:

- versions are read and decoded on first use and kept in an LRU of ``records_cache``
  entries (they are immutable, so a cached one is never stale);
- tree roots and stream heads are cached too, and those caches are dropped by
  ``reload`` (``Ledger.refresh``), since another writer may have moved them: until then
  this process sees what it wrote itself, as with the in-memory index;
- erasures are looked up one lineage at a time and cached; ``reload`` reads the ones
  other writers appended since.

Opening costs a handful of queries whatever the log's length. The store's tables stay a
projection: ``EventStore.rebuilt_index`` computes them from the log alone and ``ledger
replay`` compares.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from ledger import _process
from ledger.errors import CorruptLogError
from ledger.events.bodies import ENTITY_VERSION
from ledger.events.decode import corrupt, record_payload
from ledger.store import EventStore
from projections.inline import (
    DEFAULT_VALUES_CACHE_BYTES,
    InlineIndex,
    StreamHead,
    VersionRecord,
)
from projections.stored_records import (
    DEFAULT_CACHE,
    LRU,
    LazyVersions,
    StoredErasures,
    checked_versions,
    load_version,
    load_versions,
)

__all__ = ["DEFAULT_RECORDS_CACHE", "StoredIndex", "StoredInlineIndex"]

#: Versions kept decoded-from-the-log per ledger (about 1-2 KiB each without their values).
DEFAULT_RECORDS_CACHE = 8192
#: Tree roots and stream heads kept per ledger (small entries). They are cached as ints
#: and plain tuples, which the cyclic garbage collector does not track: a full
#: collection walks only what can hold a cycle, and tens of thousands of UUID and
#: StreamHead objects per cache made each one slower.
_SMALL_CACHE = 16_384


class _Absent(set[int]):
    """Ids (as ints) this process looked up and found missing, until ``reload`` (bounded: forgotten when large).

    A write plans every node of a tree, most of them new: without this, each new id
    cost a query or two per write. Another writer may store one of them meanwhile; this
    process then sees it after ``reload``, as the in-memory index sees nothing of
    another writer before it refreshes.
    """

    def note(self, key: int) -> None:
        if len(self) >= _SMALL_CACHE:
            self.clear()
        self.add(key)


class _RecordCache(LRU):
    """The LRU of stored versions: a version it drops lets its decoded values go too.

    Otherwise the values cache would keep alive records this cache has already let go
    (a later read loads a new record object), and hold up to its byte bound of them.
    """

    def put(self, key: Any, value: Any) -> Any:
        dropped = super().put(key, value)
        if dropped is not None:
            dropped.forget_values()
        return dropped


class _Records:
    """``index.records``: ecs_id -> VersionRecord, read from the log on first use."""

    def __init__(self, owner: StoredInlineIndex, limit: int) -> None:
        self._owner = owner
        self.cache = _RecordCache(limit)
        self.absent = _Absent()

    def get(self, ecs_id: UUID, default: Any = None) -> Any:
        rec = self.cache.hit(ecs_id)
        if rec is None:
            if type(ecs_id) is not UUID or ecs_id.int in self.absent or self._owner.fresh(ecs_id.int):
                return default
            rec = load_version(self._owner.store, ecs_id, self._owner)
            if rec is None:
                self.absent.note(ecs_id.int)
                return default
            self.cache.put(ecs_id, rec)
        return rec

    def load_many(self, ecs_ids: Sequence[UUID], at: Sequence[int] | None = None) -> list[VersionRecord]:
        """The records of ``ecs_ids`` (all stored versions), those not cached read in few round trips.

        ``at`` are their positions when the caller knows them (a lineage's entries)."""
        found: dict[UUID, VersionRecord] = {}
        missing: list[UUID] = []
        for ecs_id in ecs_ids:
            rec = self.cache.hit(ecs_id)
            if rec is None:
                missing.append(ecs_id)
            else:
                found[ecs_id] = rec
        if missing:
            store = self._owner.store
            positions = dict(zip(ecs_ids, at)) if at is not None else store.version_positions(missing)
            lost = [e for e in missing if e not in positions]
            if lost:
                raise KeyError(lost[0])
            for rec in load_versions(store, [(e, positions[e]) for e in missing], self._owner):
                self.cache.put(rec.ecs_id, rec)
                found[rec.ecs_id] = rec
        # from ``found``, not the cache: a batch larger than the cache must not read its first ones again
        return [found[e] for e in ecs_ids]

    def prefetch(self, ecs_ids: Iterable[UUID]) -> None:
        """Look up every one of ``ecs_ids`` not known yet in one query (a tree about to be planned)."""
        fresh = self._owner.fresh
        unknown = [e for e in ecs_ids if e not in self.cache and e.int not in self.absent and not fresh(e.int)]
        if not unknown:
            return
        store = self._owner.store
        positions = store.version_positions(unknown)
        found = [(e, positions[e]) for e in unknown if e in positions]
        for ecs_id in unknown:
            if ecs_id not in positions:
                self.absent.note(ecs_id.int)
        for rec in load_versions(store, found, self._owner) if found else ():
            self.cache.put(rec.ecs_id, rec)

    def __getitem__(self, ecs_id: UUID) -> VersionRecord:
        rec = self.get(ecs_id)
        if rec is None:
            raise KeyError(ecs_id)
        return rec  # type: ignore[no-any-return]

    def __setitem__(self, ecs_id: UUID, rec: VersionRecord) -> None:
        self.cache.put(ecs_id, rec)
        self.absent.discard(ecs_id.int)

    def __contains__(self, ecs_id: object) -> bool:
        return self.get(ecs_id) is not None  # type: ignore[arg-type]

    # Whole-index walks (tests, snapshots): every version row, read in log order.
    def keys(self) -> list[UUID]:
        return [ecs_id for ecs_id, _ in self._owner.store.stored_index().versions]

    def __iter__(self) -> Iterator[UUID]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def values(self) -> Iterator[VersionRecord]:
        return (self[ecs_id] for ecs_id in self.keys())

    def items(self) -> Iterator[tuple[UUID, VersionRecord]]:
        return ((ecs_id, self[ecs_id]) for ecs_id in self.keys())


class _Lineages(Mapping[UUID, Sequence[VersionRecord]]):
    """``index.lineages``: lineage_id -> its versions (one indexed query per lookup)."""

    def __init__(self, owner: StoredInlineIndex) -> None:
        self._owner = owner

    def entries(self, lineage_id: object) -> list[tuple[UUID, int, int]]:
        return self._owner.store.lineage_entries(lineage_id) if type(lineage_id) is UUID else []

    def get(self, lineage_id: UUID, default: Any = None) -> Any:
        entries = self.entries(lineage_id)
        if not entries:
            return default
        return LazyVersions(self._owner.records, [ecs_id for ecs_id, _, _ in entries], [p for _, _, p in entries])

    def __getitem__(self, lineage_id: UUID) -> Sequence[VersionRecord]:
        found = self.get(lineage_id)
        if found is None:
            raise KeyError(lineage_id)
        return found  # type: ignore[no-any-return]

    def __contains__(self, lineage_id: object) -> bool:
        return bool(self.entries(lineage_id))

    def __iter__(self) -> Iterator[UUID]:
        seen: dict[UUID, None] = {}
        for rec in self._owner.records.values():
            seen.setdefault(rec.lineage_id)
        return iter(seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Column(Mapping[UUID, list[Any]]):
    """One field of every version of a lineage: ids and positions from the index, times from the records."""

    def __init__(self, lineages: _Lineages, field: str) -> None:
        self._lineages = lineages
        self._field = field

    def __getitem__(self, lineage_id: UUID) -> list[Any]:
        entries = self._lineages.entries(lineage_id)
        if not entries:
            raise KeyError(lineage_id)
        if self._field == "ecs_id":
            return [e for e, _, _ in entries]
        if self._field == "position":
            return [p for _, _, p in entries]
        records = self._lineages._owner.records
        return [getattr(records[e], self._field) for e, _, _ in entries]

    def __iter__(self) -> Iterator[UUID]:
        return iter(self._lineages)

    def __len__(self) -> int:
        return len(self._lineages)


class _Roots:
    """``index.root_of``: ecs_id -> root of the latest stored tree holding it (the store's tree rows)."""

    def __init__(self, owner: StoredInlineIndex) -> None:
        self._owner = owner
        self.cache = LRU(_SMALL_CACHE)

    def get(self, ecs_id: UUID, default: Any = None) -> Any:
        if type(ecs_id) is not UUID:
            return default
        root = self.cache.hit(ecs_id.int)
        if root is not None:
            return UUID(int=root)
        found = self._owner.store.tree_root(ecs_id)
        if found is None:
            return default
        # The row is a projection anyone with the file can edit: it must name a root version
        # whose tree holds this version, or it is refused, never a wrong tree shown.
        root = self._owner.records.get(found)
        if root is None or not root.is_root or ecs_id not in self._owner.subtree_ids(found):
            raise CorruptLogError(
                f"the version index names {found} as the root of the tree holding {ecs_id}, and it is not; "
                "run ledger replay to compare the index with the log"
            )
        self.cache.put(ecs_id.int, found.int)
        return found

    def __setitem__(self, ecs_id: UUID, root: UUID) -> None:
        self.cache.put(ecs_id.int, root.int)

    def __contains__(self, ecs_id: object) -> bool:
        return self.get(ecs_id) is not None  # type: ignore[arg-type]

    def items(self) -> list[tuple[UUID, UUID]]:
        return self._owner.store.stored_index().roots


class _Streams:
    """``index.streams``: stream_id -> StreamHead (version, hash) of its last record this process has seen.

    Read as of the position this process has seen (``caught_up``): a version another
    writer appended since makes the next append of that stream conflict
    (``ConcurrencyError``), never a version built quietly on one this process never saw.
    A stream with no record then counts as new until ``reload``: if another writer starts
    it meanwhile, the append conflicts just the same.
    """

    def __init__(self, owner: StoredInlineIndex) -> None:
        self._owner = owner
        self.cache = LRU(_SMALL_CACHE)
        self.absent = _Absent()

    def get(self, stream_id: UUID, default: Any = None) -> Any:
        key = stream_id.int
        head = self.cache.hit(key)
        if head is None:
            if key in self.absent or self._owner.fresh(key):
                return default
            found = self._owner.store.stream_head(stream_id, self._owner.caught_up)
            if found is None:
                self.absent.note(key)
                return default
            head = self._put(key, found)
        return StreamHead(*head)

    def prefetch(self, stream_ids: Iterable[UUID]) -> None:
        """Read the heads of every one of ``stream_ids`` not known yet in one query (a batch about to be sealed)."""
        fresh = self._owner.fresh
        unknown = [
            s for s in dict.fromkeys(stream_ids) if s.int not in self.cache and s.int not in self.absent and not fresh(s.int)
        ]
        if not unknown:
            return
        found = self._owner.store.stream_heads(unknown, self._owner.caught_up)
        for stream_id in unknown:
            head = found.get(stream_id)
            if head is None:
                self.absent.note(stream_id.int)
            else:
                self._put(stream_id.int, head)

    def _put(self, key: int, found: tuple[int, int, bytes]) -> tuple[int, str]:
        position, version, state = found
        head = (version, _hash_of(state, position))
        self.cache.put(key, head)
        return head

    def __setitem__(self, stream_id: UUID, head: StreamHead) -> None:
        self.cache.put(stream_id.int, (head.version, head.hash))
        self.absent.discard(stream_id.int)

    def items(self) -> list[tuple[UUID, StreamHead]]:
        """Every stream's head, from a walk of the whole log (for snapshots and checks)."""
        heads: dict[UUID, StreamHead] = {}
        store = self._owner.store
        start = 1
        while True:
            page = store.read_columns(start, 10_000)
            if not len(page):
                return list(heads.items())
            for position, stream_id, version, state in zip(page.positions, page.stream_ids, page.versions, page.states):
                heads[UUID(str(stream_id))] = StreamHead(version, _hash_of(state, position))
            start = page.positions[-1] + 1


def _hash_of(state: bytes, position: int) -> str:
    return str(record_payload(position, "", state)["hash"])


class StoredInlineIndex(InlineIndex):
    """``InlineIndex`` answered from the store's version index: O(1) to open, bounded memory."""

    def __init__(
        self,
        store: EventStore,
        *,
        records_cache: int = DEFAULT_RECORDS_CACHE,
        values_cache_bytes: int = DEFAULT_VALUES_CACHE_BYTES,
    ) -> None:
        super().__init__(store.keys, values_cache_bytes=values_cache_bytes)
        self.store = store
        self.records = _Records(self, records_cache)  # type: ignore[assignment]
        self.lineages = _Lineages(self)  # type: ignore[assignment]
        self.lineage_ids = _Column(self.lineages, "ecs_id")  # type: ignore[arg-type]
        self.lineage_positions = _Column(self.lineages, "position")  # type: ignore[arg-type]
        self.lineage_times = _Column(self.lineages, "recorded_at")  # type: ignore[arg-type]
        self.root_of = _Roots(self)  # type: ignore[assignment]
        self.streams = _Streams(self)  # type: ignore[assignment]
        self.erased = StoredErasures(store)  # type: ignore[assignment]
        self.position = self.caught_up = self.event_count = store.head()
        self.view_mark = _process.mint_mark()

    def fresh(self, key: int) -> bool:
        """Was this id (as an int) minted by this process since the index last looked at the store?

        Such an id cannot be stored as this index sees the log (no writer had it before it
        existed; this process's own appends forget it), so the lookup needs no query: most
        ids a write plans are new ones (``ledger._process.mint``).
        """
        seq = _process.minted.get(key)
        return seq is not None and seq > self.view_mark

    def reload(self) -> int:
        """See what other writers did: drop the caches they may have made stale, read erasures again.

        Returns how many records were appended since this index last looked.
        """
        self.view_mark = _process.mint_mark()  # before the head: an id minted later is newer than it
        head = self.store.head()
        seen = self.caught_up  # contiguous: erasures in a gap before our own appends count too
        self.root_of.cache.clear()  # type: ignore[attr-defined]
        self.streams.cache.clear()  # type: ignore[attr-defined]
        self.streams.absent.clear()  # type: ignore[attr-defined]
        self.records.absent.clear()  # type: ignore[attr-defined]
        for lineage_id, position in self.store.erasure_entries(since=seen).items():
            self.mark_erased(lineage_id, position)  # another writer's: its key is gone
        self.position = self.caught_up = self.event_count = head
        return self.store.records_between(seen, head) if head > seen else 0

    # ------------------------------------------------------------------ writes
    def add(
        self, record: VersionRecord, position: int, stream_hash: str, *, mark: bool = True, version: int | None = None
    ) -> None:
        """A version this process just appended (its rows are in the store already)."""
        assert version is not None, "the stored index needs the event's stream version"
        record.position = position
        record.lineage_index = version - 1
        record.linear = record.previous_ecs_id is None  # see stored_reads.load_version
        self.records[record.ecs_id] = record
        if record._values is not None or record._values_data is not None:
            self.values_cache.touch(record)
        self.advance_stream(record.lineage_id, stream_hash, position, version)
        if record.is_root and mark:
            self.mark_tree(record.ecs_id)

    def advance_stream(self, stream_id: UUID, stream_hash: str, position: int, version: int | None = None) -> None:
        if version is not None:
            self.streams[stream_id] = StreamHead(version, stream_hash)
        else:
            self.streams.cache.pop(stream_id.int, None)  # type: ignore[attr-defined]  # read again when next needed
            self.streams.absent.discard(stream_id.int)  # type: ignore[attr-defined]
        if position > self.position:
            self.position = position
        self.event_count += 1

    def mark_erased(self, lineage_id: UUID, position: int) -> None:
        """Record an erasure. Decoded values need no sweep: ``VersionRecord.values`` checks."""
        self.erased.setdefault(lineage_id, position)
        if self.keys is not None:
            self.keys.forget(lineage_id)

    def note_memo(self, key: str, execution_id: UUID, position: int) -> None:
        """Nothing to keep: the append filed it in the store's memo index, in its transaction."""

    def memo_lookup(self, key: str) -> tuple[Any, ...] | None:
        """One indexed read of the store's memo index (another writer's executions included),
        the record joined: (execution_id, position, stream id, version, topic, state)."""
        return self.store.memo_lookup(key)

    def memo_rows(self) -> dict[str, tuple[UUID, int]]:
        """The store's memo index, whole (``snapshot``: tests, never the write path)."""
        return {key.hex(): (execution_id, position) for key, execution_id, position in self.store.stored_index().memos}

    def prefetch(self, ecs_ids: Iterable[UUID] = (), stream_ids: Iterable[UUID] = ()) -> None:
        """Look up many versions and stream heads in one query each, before a plan or a seal reads them."""
        self.records.prefetch(ecs_ids)  # type: ignore[attr-defined]
        self.streams.prefetch(stream_ids)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------- reads
    def old_ids(self, record: VersionRecord) -> list[UUID]:
        """Earlier versions of this one, oldest first: its chain of previous versions.

        The chain is usually the lineage's earlier versions, so their previous pointers are
        read in bulk (each record's seal checked, none kept in the cache); a pointer out of
        the lineage is followed one record at a time.
        """
        earlier = self.lineages.entries(record.lineage_id)[: record.lineage_index]  # type: ignore[attr-defined]
        previous: dict[UUID, UUID | None] = {}
        texts: dict[str | None, UUID | None] = {None: None}
        for i in range(0, len(earlier), 512):
            part = [(e, p) for e, _, p in earlier[i : i + 512]]
            for ecs_id, position, (_, _, topic, payload) in checked_versions(self.store, part):
                if topic != ENTITY_VERSION or payload.get("ecs_id") != str(ecs_id):
                    raise corrupt(position, f"the version index names version {ecs_id} here, the record holds something else")
                text = payload.get("previous_ecs_id")
                if text not in texts:
                    texts[text] = UUID(text)
                previous[ecs_id] = texts[text]
        chain: list[UUID] = []
        prev = record.previous_ecs_id
        while prev is not None:
            chain.append(prev)
            if prev in previous:
                prev = previous[prev]
            else:
                rec = self.records.get(prev)
                prev = rec.previous_ecs_id if rec is not None else None
        chain.reverse()
        return chain

    def version_at(self, lineage_id: UUID, position: int) -> VersionRecord | None:
        entries = self.lineages.entries(lineage_id)  # type: ignore[attr-defined]
        i = bisect_right([p for _, _, p in entries], position)
        return None if i == 0 else self.records[entries[i - 1][0]]

    def version_at_time(self, lineage_id: UUID, at: datetime) -> VersionRecord | None:
        entries = self.lineages.entries(lineage_id)  # type: ignore[attr-defined]
        records = self.records
        lo, hi = 0, len(entries)
        while lo < hi:  # the first version recorded after ``at``: a binary search over its versions
            mid = (lo + hi) // 2
            if records[entries[mid][0]].recorded_at <= at:
                lo = mid + 1
            else:
                hi = mid
        return None if lo == 0 else records[entries[lo - 1][0]]


class StoredIndex(StoredInlineIndex):
    """The readers' version index: ``StoredInlineIndex`` opened read-only (``StoredReader.index``).

    One implementation serves the writer and the readers, so a batched read or a cache added
    for one serves the other. What differs is what a reader must not do: it never applies
    an append (there is no writer behind it to have made one), and it reads a lineage's key
    from the store at each use rather than from the key cache, since a reader may live long
    (``ledger ui``) while another process erases. Its store is opened with ``create=False``;
    nothing here writes to it.
    """

    def __init__(self, store: EventStore, cache_size: int = DEFAULT_CACHE) -> None:
        super().__init__(store, records_cache=cache_size)

    def key_for(self, lineage_id: UUID) -> bytes | None:
        """The lineage's data key as the store holds it now; None once erased."""
        if lineage_id in self.erased or self.keys is None:
            return None
        return self.keys.fetch(lineage_id)

    def forget_erasures(self) -> None:
        """Drop the cached "this lineage is not erased" answers (``StoredReader.forget_changeable``)."""
        self.erased = StoredErasures(self.store)  # type: ignore[assignment]

    def apply(self, topic: str, position: int, stream_id: UUID, stream_hash: str, **kwargs: Any) -> None:
        """Refused: a reader's index follows the store, never an append of its own."""
        raise TypeError("a StoredIndex is read-only: appends go through a Ledger")

    def add(
        self, record: VersionRecord, position: int, stream_hash: str, *, mark: bool = True, version: int | None = None
    ) -> None:
        """Refused, as ``apply``."""
        raise TypeError("a StoredIndex is read-only: appends go through a Ledger")

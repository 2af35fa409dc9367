"""The inline registry state: what the write side must know, rebuilt from events.

It is a projection like any other (``apply`` takes one stored event), but it
is updated in the same call that appends, because the next write needs it:
stream heads for hash chaining and optimistic concurrency, stored versions to
diff live trees against, and which tree each version belongs to.

Replay never imports user classes: plain values stay in their stored JSON form
until someone asks for them as Python values, and what is decoded then stays only
in a bounded cache (``ValuesCache``), so a long-running process does not keep a
decoded copy of every version it ever read or wrote.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from ledger.errors import EntityNotFoundError
from ledger.events.bodies import ENTITY_ERASED, ENTITY_VERSION, EXECUTION_COMPLETED
from ledger.events.shape import shape_from_json, shape_to_json
from ledger.model.personal import open_fields
from ledger.model.schema import topics
from ledger.model.tree import refs_in, tree_members
from ledger.model.upcasting import load_values

if TYPE_CHECKING:
    from ledger.model.entity import Entity
    from ledger.store.keys import KeyStore

__all__ = [
    "DEFAULT_VALUES_CACHE_BYTES",
    "InlineIndex",
    "StreamHead",
    "ValuesCache",
    "VersionRecord",
    "version_record",
]

#: Default bound of the decoded-values cache: an estimate of the bytes its decoded values take.
DEFAULT_VALUES_CACHE_BYTES = 32 * 1024 * 1024


def _exact(data: bytes) -> bytes:
    """An exact-size copy: orjson's output keeps a ~4 KiB allocation, and records live long."""
    return bytes(bytearray(data)) if len(data) < 2048 else data


class VersionRecord:
    """One stored, immutable entity version (the in-memory form of its event).

    Its plain values are kept as the JSON the event stores (``_values_json``);
    ``stored_values`` and ``values`` decode them on demand, and the decoded forms
    (``_values_data``, ``_values``) live only while the index's ``ValuesCache`` keeps
    this record.
    """

    __slots__ = (
        "ecs_id",
        "lineage_id",
        "previous_ecs_id",
        "topic",
        "schema_version",
        "is_root",
        "shape",
        "child_ids",
        "meta",
        "created_at",
        "forked_at",
        "recorded_at",
        "position",
        "lineage_index",
        "linear",
        "personal",
        "_index",
        "_cache",
        "_values_json",
        "_values_data",
        "_values",
        "_values_cls",
    )

    def __init__(
        self,
        *,
        ecs_id: UUID,
        lineage_id: UUID,
        previous_ecs_id: UUID | None,
        topic: str,
        schema_version: int,
        is_root: bool,
        shape: dict[str, Any],
        meta: dict[str, Any],
        created_at: datetime,
        forked_at: datetime | None,
        recorded_at: datetime,
        values: dict[str, Any] | None = None,
        values_json: bytes | None = None,
        values_data: dict[str, Any] | None = None,
        personal: tuple[str, ...] = (),
        index: InlineIndex | None = None,
        values_cls: type | None = None,
    ) -> None:
        self.ecs_id = ecs_id
        self.lineage_id = lineage_id
        self.previous_ecs_id = previous_ecs_id
        self.topic = topic
        self.schema_version = schema_version
        self.is_root = is_root
        self.shape = shape
        self.child_ids: tuple[UUID, ...] = tuple(refs_in(shape)) if shape else ()
        self.meta = meta
        self.created_at = created_at
        self.forked_at = forked_at
        self.recorded_at = recorded_at
        self.position = 0
        self.lineage_index = 0
        self.linear = True
        self._values = values
        #: The class ``_values`` fit: a class redefined under the same topic reads them anew.
        self._values_cls = values_cls
        self._values_json = values_json
        self._values_data = values_data
        #: Fields stored encrypted; ``index`` supplies the key (None when there are none).
        self.personal = personal
        self._index = index if personal else None
        #: The cache of decoded values this record belongs to, held weakly: caching adds
        #: no reference cycle between records and their index. None for a StoredIndex,
        #: which caches whole records.
        self._cache = getattr(index, "values_cache_ref", None)

    def stored_values(self) -> dict[str, Any]:
        """Plain field values exactly as the event stores them (personal ones encrypted)."""
        data = self._values_data
        if data is None:
            data = self._values_data = orjson.loads(self._values_json or b"{}")
        cache = self._cache() if self._cache is not None else None
        if cache is not None:
            cache.touch(self)
        return data

    def values_data(self) -> dict[str, Any]:
        """Plain field values in JSON form, personal ones decrypted (``ERASED`` once erased)."""
        stored = self.stored_values()
        if not self.personal or self._index is None:
            return stored
        key = self._index.key_for(self.lineage_id)
        return open_fields(stored, self.personal, key, self.lineage_id)

    def forget_values(self) -> None:
        """Drop the decoded values (the lineage was erased, or the cache let them go).

        The stored JSON stays: reading them again decodes it anew.
        """
        self._values = None
        self._values_cls = None
        if self._values_json is not None:
            self._values_data = None
        cache = self._cache() if self._cache is not None else None
        if cache is not None:
            cache.discard(self)

    def cache_weight(self) -> int:
        """Estimated bytes of this record's decoded values (what the cache bounds)."""
        return _DECODED_BASE + (11 * len(self._values_json or b"")) // 2

    def values(self, cls: type | None = None) -> dict[str, Any]:
        """Plain field values as validated Python values of ``cls`` (default: the topic's class).

        Cached per class, never handed out unfrozen. ``SchemaMismatchError`` when
        the stored version (its values or its child fields) does not fit the
        class (``ledger.upcasting``).
        """
        if cls is None:
            cls = topics.resolve(self.topic)
        values = self._values
        if values is not None and self._index is not None and self.lineage_id in self._index.erased:
            values = None  # decoded before its lineage was erased: read again, as ERASED
        if values is None or self._values_cls is not cls:
            values = load_values(
                cls,
                topic=self.topic,
                stored_version=self.schema_version,
                data=self.values_data(),
                children=self.shape.keys(),
                ecs_id=self.ecs_id,
            )
            self._values = values
            self._values_cls = cls
        cache = self._cache() if self._cache is not None else None
        if cache is not None:
            cache.touch(self)
        return values

    def __repr__(self) -> str:
        return f"<VersionRecord {self.topic} {self.ecs_id} @{self.position}>"


#: Decoded values cost about this much per record plus 5.5 bytes per byte of their JSON
#: (tracemalloc over the tools/workload.py mix, the JSON dict plus the values validated
#: into the entity class: a 28-byte grade 539 B, a 478-byte execution record 3,060 B).
_DECODED_BASE = 450


class ValuesCache:
    """Which stored versions keep their values decoded; the least recently used go first.

    Stored versions keep their values as JSON; reading or writing one decodes them
    (``VersionRecord.stored_values`` / ``values``), and the next write of the same
    tree compares against them, so they are worth keeping while in use, but not
    for every version a process ever touched: that made RSS grow without bound.
    The bound is on an estimate of the decoded bytes (``VersionRecord.cache_weight``);
    ``resize`` changes it. The record just used always stays, so 0 keeps one.
    """

    __slots__ = ("max_bytes", "size", "_entries", "_lock", "__weakref__")

    def __init__(self, max_bytes: int = DEFAULT_VALUES_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        #: Estimated bytes of the decoded values held now.
        self.size = 0
        self._entries: OrderedDict[VersionRecord, int] = OrderedDict()
        # readers run outside the ledger's write lock; a hit needs no lock, a change does
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, record: object) -> bool:
        return record in self._entries

    def touch(self, record: VersionRecord) -> None:
        """``record`` has its values decoded and was just used: keep it, dropping the oldest."""
        entries = self._entries
        if record in entries:
            try:
                entries.move_to_end(record)
                return
            except KeyError:  # another thread dropped it meanwhile
                pass
        with self._lock:
            if record not in entries:
                weight = record.cache_weight()
                entries[record] = weight
                self.size += weight
            self._shrink(self.max_bytes, keep=1)

    def discard(self, record: VersionRecord) -> None:
        with self._lock:
            weight = self._entries.pop(record, None)
            if weight is not None:
                self.size -= weight

    def resize(self, max_bytes: int) -> None:
        """Change the bound; the least recently used over it drop their decoded values now."""
        with self._lock:
            self.max_bytes = max_bytes
            self._shrink(max_bytes, keep=0)

    def _shrink(self, limit: int, keep: int) -> None:
        entries = self._entries
        while self.size > limit and len(entries) > keep:
            record, weight = entries.popitem(last=False)
            self.size -= weight
            record._values = None
            record._values_cls = None
            if record._values_json is not None:  # else the decoded form is all there is
                record._values_data = None


_ECS_ID = attrgetter("ecs_id")
_POSITION = attrgetter("position")
_RECORDED_AT = attrgetter("recorded_at")


class _LineageColumn(Mapping[UUID, list[Any]]):
    """One field of every version of each lineage, read off the records when asked."""

    __slots__ = ("_lineages", "_field")

    def __init__(self, lineages: dict[UUID, list[VersionRecord]], field: attrgetter[Any]) -> None:
        self._lineages = lineages
        self._field = field

    def __getitem__(self, lineage_id: UUID) -> list[Any]:
        return list(map(self._field, self._lineages[lineage_id]))

    def __iter__(self) -> Iterator[UUID]:
        return iter(self._lineages)

    def __len__(self) -> int:
        return len(self._lineages)


class StreamHead:
    __slots__ = ("version", "hash")

    def __init__(self, version: int, hash: str | None) -> None:
        self.version = version
        self.hash = hash


def _uuid(value: Any) -> UUID | None:
    return None if value is None else UUID(value) if type(value) is str else value


def _dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value) if type(value) is str else value


class InlineIndex:
    """Stored versions by ecs_id, lineages, tree membership and stream heads."""

    def __init__(self, keys: KeyStore | None = None, *, values_cache_bytes: int = DEFAULT_VALUES_CACHE_BYTES) -> None:
        self.keys = keys
        #: Stored versions whose values are kept decoded (bounded; see ``ValuesCache``).
        self.values_cache = ValuesCache(values_cache_bytes)
        #: The one weak reference to it that every record shares.
        self.values_cache_ref = weakref.ref(self.values_cache)
        #: Erased lineages and the position of their ``entity.erased`` event.
        self.erased: dict[UUID, int] = {}
        self.records: dict[UUID, VersionRecord] = {}
        #: Each lineage's versions in stream order: the one list per lineage. Ids, positions
        #: and times are read off the records (three more lists per lineage were a quarter
        #: of the objects every full garbage collection visits).
        self.lineages: dict[UUID, list[VersionRecord]] = {}
        self.lineage_ids: Mapping[UUID, list[UUID]] = _LineageColumn(self.lineages, _ECS_ID)
        self.lineage_positions: Mapping[UUID, list[int]] = _LineageColumn(self.lineages, _POSITION)
        self.lineage_times: Mapping[UUID, list[datetime]] = _LineageColumn(self.lineages, _RECORDED_AT)
        self.root_of: dict[UUID, UUID] = {}
        self.streams: dict[UUID, StreamHead] = {}
        self.live: weakref.WeakValueDictionary[UUID, Entity] = weakref.WeakValueDictionary()
        #: The memo index (``ledger/write/memo.py``): cache key -> (first execution filed under it, its position).
        self.memos: dict[str, tuple[UUID, int]] = {}
        #: Payloads of executions found through the memo index, by key (bounded): a key's first
        #: execution never changes and its record is immutable, so a hit seen once costs no read.
        self.memo_payloads: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.position = 0  # highest position applied
        self.caught_up = 0  # every event at or below this position has been applied
        self.event_count = 0

    # ------------------------------------------------------------------ writes
    def apply(
        self,
        topic: str,
        position: int,
        stream_id: UUID,
        stream_hash: str,
        *,
        payload: dict[str, Any] | None = None,
        record: VersionRecord | None = None,
        uuids: dict[str, UUID] | None = None,
        mark: bool = True,
        version: int | None = None,
    ) -> None:
        """Apply one event: the single entry used by commit and by replay alike.

        Replay passes the decoded ``payload``; commit passes the ``record`` planning
        already built for an ``entity.version`` (the same record replay would build
        from the bytes just written, without decoding them) and ``mark=False`` when it
        points the batch's trees at their roots once, after the last event.
        ``version`` is the event's stream version (this index counts them itself;
        ``StoredInlineIndex`` needs it).
        """
        if topic == ENTITY_VERSION:
            if record is None:
                assert payload is not None
                record = version_record(payload, stream_id, uuids, self)
            self.add(record, position, stream_hash, mark=mark, version=version)
        elif topic == ENTITY_ERASED:
            self.advance_stream(stream_id, stream_hash, position, version)
            self.mark_erased(stream_id, position)
        else:
            self.advance_stream(stream_id, stream_hash, position, version)
            if topic == EXECUTION_COMPLETED and payload is not None:
                key = payload.get("cache_key")
                if key is not None:
                    self.note_memo(str(key), stream_id, position)

    def note_memo(self, key: str, execution_id: UUID, position: int) -> None:
        """File a successful execution under its memo key; the first one filed stays."""
        self.memos.setdefault(key, (execution_id, position))

    def memo_lookup(self, key: str) -> tuple[Any, ...] | None:
        """(execution_id, position) of the first successful execution filed under ``key``
        (``StoredInlineIndex`` adds the record's raw columns, read in the same query)."""
        return self.memos.get(key)

    def memo_rows(self) -> dict[str, tuple[UUID, int]]:
        """The whole memo index, key -> (execution_id, position) (``snapshot``)."""
        return dict(self.memos)

    def add(
        self, record: VersionRecord, position: int, stream_hash: str, *, mark: bool = True, version: int | None = None
    ) -> None:
        """Index a version the store has just accepted at ``position``."""
        record.position = position
        lineage = self.lineages.get(record.lineage_id)
        if lineage is None:
            lineage = self.lineages[record.lineage_id] = []
        record.lineage_index = len(lineage)
        if record.previous_ecs_id is not None:
            prev = self.records.get(record.previous_ecs_id)
            record.linear = (
                prev is not None
                and prev.linear
                and prev.lineage_id == record.lineage_id
                and prev.lineage_index == record.lineage_index - 1
            )
        lineage.append(record)
        if record._values is not None or record._values_data is not None:
            self.values_cache.touch(record)  # written with its values decoded: cached like a read
        self.records[record.ecs_id] = record
        self.advance_stream(record.lineage_id, stream_hash, position)
        if record.is_root and mark:
            self.mark_tree(record.ecs_id)

    def advance_stream(self, stream_id: UUID, stream_hash: str, position: int, version: int | None = None) -> None:
        """Move a stream's head (version, hash) and the applied position forward."""
        head = self.streams.get(stream_id)
        if head is None:
            self.streams[stream_id] = StreamHead(1, stream_hash)
        else:
            head.version += 1
            head.hash = stream_hash
        if position > self.position:
            self.position = position
        self.event_count += 1

    def key_for(self, lineage_id: UUID) -> bytes | None:
        """The data key of a lineage; None once it is erased (whatever a cache still holds)."""
        if lineage_id in self.erased or self.keys is None:
            return None
        return self.keys.get(lineage_id)

    def mark_erased(self, lineage_id: UUID, position: int) -> None:
        """Record an erasure: forget the cached key and every decoded personal value."""
        self.erased.setdefault(lineage_id, position)
        if self.keys is not None:
            self.keys.forget(lineage_id)
        for rec in self.lineages.get(lineage_id, ()):
            rec.forget_values()

    def mark_tree(self, root_ecs_id: UUID, members: tuple[UUID, ...] | None = None) -> None:
        """Point every version in the tree below ``root_ecs_id`` at that root.

        ``members`` are the tree's versions when the caller walked it already (a batch does,
        for the store's tree rows).
        """
        root_of = self.root_of
        for ecs_id in self.subtree_ids(root_ecs_id) if members is None else members:
            root_of[ecs_id] = root_ecs_id

    def prefetch(self, ecs_ids: Iterable[UUID] = (), stream_ids: Iterable[UUID] = ()) -> None:
        """Nothing to do here: everything is in memory (``StoredInlineIndex`` reads ahead in one query)."""

    # ------------------------------------------------------------------- reads
    def get(self, ecs_id: UUID, argument: str = "ecs_id") -> VersionRecord:
        rec = self.records.get(ecs_id)
        if rec is None:
            raise EntityNotFoundError(f"{argument}: no stored entity version {ecs_id}")
        return rec

    def old_ids(self, record: VersionRecord) -> list[UUID]:
        """Earlier versions of this one, oldest first (derived, never stored)."""
        if record.linear:
            return list(map(_ECS_ID, self.lineages[record.lineage_id][: record.lineage_index]))
        chain: list[UUID] = []
        prev = record.previous_ecs_id
        while prev is not None:
            chain.append(prev)
            rec = self.records.get(prev)
            prev = rec.previous_ecs_id if rec is not None else None
        chain.reverse()
        return chain

    def version_at(self, lineage_id: UUID, position: int) -> VersionRecord | None:
        """The lineage's latest version recorded at or before ``position``."""
        lineage = self.lineages.get(lineage_id)
        if lineage is None:
            return None
        i = bisect_right(lineage, position, key=_POSITION)
        return None if i == 0 else lineage[i - 1]

    def version_at_time(self, lineage_id: UUID, at: datetime) -> VersionRecord | None:
        """The lineage's latest version recorded at or before time ``at``."""
        lineage = self.lineages.get(lineage_id)
        if lineage is None:
            return None
        i = bisect_right(lineage, at, key=_RECORDED_AT)
        return None if i == 0 else lineage[i - 1]

    def subtree_ids(self, ecs_id: UUID, pending: Mapping[UUID, VersionRecord] | None = None) -> list[UUID]:
        """``ecs_id`` and every version below it; ``pending`` are versions not indexed yet (a batch's)."""
        records = self.records

        def children_of(cur: UUID) -> tuple[UUID, ...]:
            rec = pending.get(cur) if pending is not None else None
            if rec is None:
                rec = records.get(cur)
            return () if rec is None else rec.child_ids

        return tree_members(ecs_id, children_of)

    def snapshot(self) -> dict[str, Any]:
        """A comparable, canonical picture of the state (for replay equality checks)."""
        return {
            "records": {
                str(k): (
                    str(r.lineage_id),
                    str(r.previous_ecs_id),
                    r.topic,
                    r.is_root,
                    r.stored_values(),
                    {f: shape_to_json(s) for f, s in r.shape.items()},
                    r.meta,
                    r.created_at.isoformat(),
                    r.forked_at.isoformat() if r.forked_at else None,
                    r.recorded_at.isoformat(),
                    r.position,
                )
                for k, r in self.records.items()
            },
            "lineages": {str(k): [str(i) for i in v] for k, v in self.lineage_ids.items()},
            "root_of": {str(k): str(v) for k, v in self.root_of.items()},
            "streams": {str(k): (h.version, h.hash) for k, h in self.streams.items()},
            "position": self.position,
            "erased": {str(k): v for k, v in self.erased.items()},
            "memos": {k: (str(e), p) for k, (e, p) in self.memo_rows().items()},
        }


def version_record(
    payload: dict[str, Any], stream_id: UUID | None, uuids: dict[str, UUID] | None, index: Any
) -> VersionRecord:
    """The index record of one ``entity.version`` payload (decoded JSON).

    ``uuids`` maps id strings already seen in this replay to their UUID, so a
    child reference or previous version is not parsed again (parsing a UUID
    costs 25x a dict lookup).
    """
    if uuids is None:
        uuids = {}
    ecs_text = payload["ecs_id"]
    ecs_id = uuids[ecs_text] = UUID(ecs_text)
    prev_text = payload["previous_ecs_id"]
    previous = None if prev_text is None else (uuids.get(prev_text) or UUID(prev_text))
    children = payload["children"]
    record = VersionRecord(
        ecs_id=ecs_id,
        lineage_id=stream_id if stream_id is not None else UUID(payload["lineage_id"]),
        previous_ecs_id=previous,
        topic=payload["entity_type"],
        schema_version=payload["schema_version"],
        is_root=payload["is_root"],
        shape={k: shape_from_json(v, uuids) for k, v in children.items()} if children else {},
        meta=payload["meta"],
        created_at=_dt(payload["created_at"]),  # type: ignore[arg-type]
        forked_at=_dt(payload["forked_at"]),
        recorded_at=_dt(payload["recorded_at"]),  # type: ignore[arg-type]
        # kept as JSON, decoded on demand: a dict per version is 3x the bytes, and its
        # lists are objects every full garbage collection has to visit
        values_json=_exact(orjson.dumps(payload["values"])),
        personal=tuple(payload["personal"]) if "personal" in payload else (),
        index=index,
    )
    return record

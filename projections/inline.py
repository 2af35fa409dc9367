"""The inline registry state: what the write side must know, rebuilt from events.

It is a projection like any other (``apply`` takes one stored event), but it
is updated in the same call that appends, because the next write needs it:
stream heads for hash chaining and optimistic concurrency, stored versions to
diff live trees against, and which tree each version belongs to.

Replay never imports user classes: plain values stay in their stored JSON form
until someone asks for them as Python values.
"""

from __future__ import annotations

import weakref
from bisect import bisect_right
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from ledger.errors import EntityNotFoundError
from ledger.events.bodies import ENTITY_ERASED, ENTITY_VERSION
from ledger.events.shape import shape_from_json, shape_to_json
from ledger.model.personal import open_fields
from ledger.model.schema import topics
from ledger.model.tree import refs_in
from ledger.model.upcasting import load_values

if TYPE_CHECKING:
    from ledger.model.entity import Entity
    from ledger.store.keys import KeyStore

__all__ = ["InlineIndex", "StreamHead", "VersionRecord", "version_record"]


class VersionRecord:
    """One stored, immutable entity version (the in-memory form of its event)."""

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

    def stored_values(self) -> dict[str, Any]:
        """Plain field values exactly as the event stores them (personal ones encrypted)."""
        if self._values_data is None:
            self._values_data = orjson.loads(self._values_json or b"{}")
        return self._values_data

    def values_data(self) -> dict[str, Any]:
        """Plain field values in JSON form, personal ones decrypted (``ERASED`` once erased)."""
        stored = self.stored_values()
        if not self.personal or self._index is None:
            return stored
        key = self._index.key_for(self.lineage_id)
        return open_fields(stored, self.personal, key, self.lineage_id)

    def forget_values(self) -> None:
        """Drop the decoded values (the lineage was erased: they must be read again)."""
        self._values = None

    def values(self, cls: type | None = None) -> dict[str, Any]:
        """Plain field values as validated Python values of ``cls`` (default: the topic's class).

        Cached per class, never handed out unfrozen. ``SchemaMismatchError`` when
        the stored version (its values or its child fields) does not fit the
        class (``ledger.upcasting``).
        """
        if cls is None:
            cls = topics.resolve(self.topic)
        if self._values is None or self._values_cls is not cls:
            self._values = load_values(
                cls,
                topic=self.topic,
                stored_version=self.schema_version,
                data=self.values_data(),
                children=self.shape.keys(),
                ecs_id=self.ecs_id,
            )
            self._values_cls = cls
        return self._values

    def __repr__(self) -> str:
        return f"<VersionRecord {self.topic} {self.ecs_id} @{self.position}>"


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

    def __init__(self, keys: KeyStore | None = None) -> None:
        self.keys = keys
        #: Erased lineages and the position of their ``entity.erased`` event.
        self.erased: dict[UUID, int] = {}
        self.records: dict[UUID, VersionRecord] = {}
        self.lineages: dict[UUID, list[VersionRecord]] = {}
        self.lineage_ids: dict[UUID, list[UUID]] = {}
        self.lineage_positions: dict[UUID, list[int]] = {}
        self.lineage_times: dict[UUID, list[datetime]] = {}
        self.root_of: dict[UUID, UUID] = {}
        self.streams: dict[UUID, StreamHead] = {}
        self.live: weakref.WeakValueDictionary[UUID, Entity] = weakref.WeakValueDictionary()
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
    ) -> None:
        """Apply one event: the single entry used by commit and by replay alike.

        Replay passes the decoded ``payload``; commit passes the ``record`` planning
        already built for an ``entity.version`` (the same record replay would build
        from the bytes just written, without decoding them) and ``mark=False`` when it
        points the batch's trees at their roots once, after the last event.
        """
        if topic == ENTITY_VERSION:
            if record is None:
                assert payload is not None
                record = self._record_from(payload, stream_id, uuids)
            self.add(record, position, stream_hash, mark=mark)
        elif topic == ENTITY_ERASED:
            self.advance_stream(stream_id, stream_hash, position)
            self.mark_erased(stream_id, position)
        else:
            self.advance_stream(stream_id, stream_hash, position)

    def add(self, record: VersionRecord, position: int, stream_hash: str, *, mark: bool = True) -> None:
        """Index a version the store has just accepted at ``position``."""
        record.position = position
        lineage = self.lineages.get(record.lineage_id)
        if lineage is None:
            lineage = self.lineages[record.lineage_id] = []
            self.lineage_ids[record.lineage_id] = []
            self.lineage_positions[record.lineage_id] = []
            self.lineage_times[record.lineage_id] = []
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
        self.lineage_ids[record.lineage_id].append(record.ecs_id)
        self.lineage_positions[record.lineage_id].append(position)
        self.lineage_times[record.lineage_id].append(record.recorded_at)
        self.records[record.ecs_id] = record
        self.advance_stream(record.lineage_id, stream_hash, position)
        if record.is_root and mark:
            self.mark_tree(record.ecs_id)

    def advance_stream(self, stream_id: UUID, stream_hash: str, position: int) -> None:
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

    def mark_tree(self, root_ecs_id: UUID) -> None:
        """Point every version in the tree below ``root_ecs_id`` at that root."""
        root_of = self.root_of
        records = self.records
        stack = [root_ecs_id]
        while stack:
            ecs_id = stack.pop()
            root_of[ecs_id] = root_ecs_id
            rec = records.get(ecs_id)
            if rec is not None and rec.child_ids:
                stack.extend(rec.child_ids)

    def _record_from(
        self, payload: dict[str, Any], stream_id: UUID | None, uuids: dict[str, UUID] | None
    ) -> VersionRecord:
        return version_record(payload, stream_id, uuids, self)

    # ------------------------------------------------------------------- reads
    def get(self, ecs_id: UUID, argument: str = "ecs_id") -> VersionRecord:
        rec = self.records.get(ecs_id)
        if rec is None:
            raise EntityNotFoundError(f"{argument}: no stored entity version {ecs_id}")
        return rec

    def old_ids(self, record: VersionRecord) -> list[UUID]:
        """Earlier versions of this one, oldest first (derived, never stored)."""
        if record.linear:
            return self.lineage_ids[record.lineage_id][: record.lineage_index]
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
        positions = self.lineage_positions.get(lineage_id)
        if positions is None:
            return None
        i = bisect_right(positions, position)
        return None if i == 0 else self.lineages[lineage_id][i - 1]

    def version_at_time(self, lineage_id: UUID, at: datetime) -> VersionRecord | None:
        """The lineage's latest version recorded at or before time ``at``."""
        times = self.lineage_times.get(lineage_id)
        if times is None:
            return None
        i = bisect_right(times, at)
        return None if i == 0 else self.lineages[lineage_id][i - 1]

    def subtree_ids(self, ecs_id: UUID) -> list[UUID]:
        out: list[UUID] = []
        stack = [ecs_id]
        while stack:
            cur = stack.pop()
            out.append(cur)
            rec = self.records.get(cur)
            if rec is not None:
                stack.extend(rec.child_ids)
        return out

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
        values_data=payload["values"],
        personal=tuple(payload["personal"]) if "personal" in payload else (),
        index=index,
    )
    return record

"""Audit reads: what a tool inspecting a ledger asks of it, answered from stored data.

The ``ledger`` command (and any auditing tool like it) needs the recent log,
one stored value, a lineage's versions with what changed, the version current at
a past point, and a check of a store that cannot be opened. It must answer them
where the user's entity classes may not import, and it should not know how the
inline index lays out its dictionaries or how the store pages its log: those
change (the bounded-state issue moves by-id state into the store), and then only
this module follows. Every function here reads; none writes.

The functions take a ledger-like ``source`` (``ledger.Ledger`` is one, see
``AuditSource``) and return small frozen records, never index objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from ledger.errors import EntityNotFoundError
from ledger.events.decode import check_page, record_payload
from ledger.events.digest import Digest
from ledger.model.address import Address, as_uuid, parse_address
from ledger.store import EventStore
from ledger.store.integrity import VerifyReport, verify_store
from projections.diffing import diff_versions
from projections.inline import InlineIndex, VersionRecord
from projections.stored_view import resolve_stored, stored_data, version_for

__all__ = [
    "AsOf",
    "AuditSource",
    "HistoryRow",
    "IndexCheck",
    "LogEntry",
    "Shown",
    "VersionDiff",
    "VersionInfo",
    "as_of",
    "check_index",
    "diff",
    "history",
    "parse_address",
    "parse_id",
    "recent_events",
    "show",
    "verify_url",
]

#: The fewest records read per page when paging the log backwards: filters that
#: match rarely would otherwise cost one store round trip per few events.
_MIN_PAGE = 500


class AuditSource(Protocol):
    """What these reads need of a ledger: its store, its inline index, and the
    opening of sealed payloads (``ledger.Ledger`` provides all three)."""

    store: EventStore
    index: InlineIndex

    def open_payload(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """Where one stored entity version sits: its ids, its number in the lineage, its log position."""

    entity_type: str  # the stored topic, e.g. ``school:Student``
    ecs_id: UUID
    lineage_id: UUID
    version: int  # 1 for the lineage's first version
    position: int
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event of the log as readers may see it (sealed failure text opened or ``ERASED``)."""

    position: int
    topic: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Shown:
    """The stored value at an address, as plain data, and the version it was read from."""

    version: VersionInfo
    value: Any


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One version of a lineage and what changed since the row before (``None`` for the first)."""

    version: VersionInfo
    changes: dict[str, tuple[Any, Any]] | None


@dataclass(frozen=True, slots=True)
class AsOf:
    """The version of a lineage current at a point, or ``None`` when it did not exist yet."""

    lineage_id: UUID
    version: VersionInfo | None
    data: dict[str, Any] | None  # the version and its subtree as plain data
    versions: int  # how many versions the lineage has now
    first_position: int  # where its first version was recorded


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """Field-level changes between two stored versions, keyed by dotted path."""

    old: VersionInfo
    new: VersionInfo
    changes: dict[str, tuple[Any, Any]]


def parse_id(value: Any, argument: str) -> UUID:
    """``value`` as a UUID (a leading ``@`` allowed), or an ``EntityNotFoundError`` naming ``argument``.

    Separate from the reads so a tool can reject a malformed id before it opens
    a store. The message is the one ``EntityRegistry`` gives for the same mistake.
    """
    return as_uuid(value, argument)


def _info(record: VersionRecord) -> VersionInfo:
    return VersionInfo(
        entity_type=record.topic,
        ecs_id=record.ecs_id,
        lineage_id=record.lineage_id,
        version=record.lineage_index + 1,
        position=record.position,
        recorded_at=record.recorded_at,
    )


def recent_events(
    source: AuditSource, *, limit: int = 20, event_type: str | None = None, function: str | None = None
) -> list[LogEntry]:
    """The ``limit`` most recent events that pass the filters, oldest first.

    ``event_type`` keeps a topic and its sub-topics (``execution`` keeps
    ``execution.completed`` and ``execution.failed``); ``function`` keeps events
    whose payload names that registered function. The log is read backwards from
    its head a page at a time and reading stops once ``limit`` events matched, so
    the cost follows what is shown, not the length of the log.
    """
    store = source.store
    picked: list[LogEntry] = []
    end = store.head()
    page = max(limit, _MIN_PAGE)
    while end >= 1 and len(picked) < limit:
        start = max(1, end - page + 1)
        # one record past ``end`` too: a page then also proves nothing is missing where it
        # meets the page read before it
        rows = store.read_columns(start, end - start + 2)
        # every record read is checked, and (sealed v2) no position may be missing
        check_page(start, rows.positions, rows.stream_ids, rows.versions, rows.topics, rows.states)
        for i in reversed(range(len(rows))):
            position = rows.positions[i]
            if position > end:
                continue
            topic = rows.topics[i]  # checked above, seal included: only the payload is left to decode
            payload = record_payload(position, topic, rows.states[i])
            if event_type and not (topic == event_type or topic.startswith(event_type + ".")):
                continue
            if function and payload.get("function_name") != function:
                continue
            picked.append(LogEntry(position, topic, source.open_payload(topic, payload)))
            if len(picked) == limit:
                break
        end = start - 1
    picked.reverse()
    return picked


def show(source: AuditSource, address: str | Address, *, argument: str = "address") -> Shown:
    """The stored value at ``@<uuid>[.path]`` as plain data; needs no entity classes.

    The uuid is an ecs_id or a lineage id (its latest version); a path walks
    fields, children, list indexes and dict keys.
    """
    if not isinstance(address, Address):
        address = parse_address(address, argument=argument)
    found = resolve_stored(source.index, address, argument=argument)
    return Shown(_info(found.source), found.value)


def history(source: AuditSource, ref: UUID | str, *, argument: str = "lineage_id") -> list[HistoryRow]:
    """Every version of a lineage, oldest first, each with what changed since the one before.

    ``ref`` is the lineage id or any ecs_id of it. Values are compared as the
    entity classes read them where those import, else as stored JSON.
    """
    index = source.index
    record = version_for(index, parse_id(ref, argument), argument=argument)
    rows: list[HistoryRow] = []
    previous: VersionRecord | None = None
    for rec in index.lineages[record.lineage_id]:
        changes = None if previous is None else diff_versions(index, previous, rec)
        rows.append(HistoryRow(_info(rec), changes))
        previous = rec
    return rows


def as_of(
    source: AuditSource,
    lineage_id: UUID | str,
    *,
    position: int | None = None,
    at: datetime | None = None,
    argument: str = "lineage_id",
) -> AsOf:
    """The version of a lineage that was current at a log position or a (timezone-aware) time.

    Unlike ``EntityRegistry.as_of`` it returns stored data, not an entity, so it
    needs no entity classes, and it says how the answer sits in the lineage.
    """
    if (position is None) == (at is None):
        raise ValueError("as_of: give exactly one of position= or at=")
    if at is not None and at.tzinfo is None:
        raise ValueError("at: must be timezone-aware (UTC)")
    uuid = parse_id(lineage_id, argument)
    index = source.index
    versions = index.lineages.get(uuid)
    if not versions:
        raise EntityNotFoundError(f"{argument}: no entity lineage {uuid}")
    rec = index.version_at_time(uuid, at) if at is not None else index.version_at(uuid, position)  # type: ignore[arg-type]
    return AsOf(
        lineage_id=uuid,
        version=None if rec is None else _info(rec),
        data=None if rec is None else stored_data(index, rec),
        versions=len(versions),
        first_position=versions[0].position,
    )


def diff(source: AuditSource, ecs_id_a: UUID | str, ecs_id_b: UUID | str) -> VersionDiff:
    """Changed values between two stored versions, children included (``EntityRegistry.diff``'s answer)."""
    index = source.index
    a = index.get(parse_id(ecs_id_a, "ecs_id_a"), "ecs_id_a")
    b = index.get(parse_id(ecs_id_b, "ecs_id_b"), "ecs_id_b")
    return VersionDiff(_info(a), _info(b), diff_versions(index, a, b))


def verify_url(url: str, digest: Digest | None = None) -> VerifyReport:
    """``Ledger.verify`` for a store that cannot be opened as a ledger.

    A record that replay cannot decode makes ``Ledger(url)`` raise, yet that is
    when a check is needed most. The integrity walk needs no index, so this opens
    only the store, without creating anything (a missing or foreign store is a
    ``StoreNotFoundError``), and closes it again.
    """
    store = EventStore(url, create=False)
    try:
        return verify_store(store, digest)
    finally:
        store.close()


@dataclass(frozen=True, slots=True)
class IndexCheck:
    """The store's version index against a rebuild of it from the log (``ledger replay``)."""

    tracked: int  # every record up to here is indexed
    head: int
    rows: int
    missing: list[tuple[Any, ...]]  # rows the log implies that the index lacks
    extra: list[tuple[Any, ...]]  # rows the index holds that the log does not imply

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra


def check_index(source: AuditSource) -> IndexCheck | None:
    """Compare the stored version index with the rows computed from the log alone, up to its
    tracked position; None for a store without one (``memory://``, or written before it)."""
    store = source.store
    state = store.index_state()
    if state is None:
        return None
    upto, head = state[0], store.head()
    stored = store.stored_index()
    have = {("version", *r) for r in stored.versions} | {("erasure", *r) for r in stored.erasures}
    # every row up to the tracked position must be there; past it (appends while the index
    # lagged) rows may be missing, but none may differ from what the log implies
    rebuilt = store.rebuilt_index(head)
    implied = {("version", *r) for r in rebuilt.versions} | {("erasure", *r) for r in rebuilt.erasures}
    required = {r for r in implied if r[-1] <= upto}
    missing = sorted(required - have, key=lambda r: r[-1])
    extra = sorted(have - implied, key=lambda r: r[-1])
    # tree rows name no position (a later root moves a version's row): compared whole once
    # the index covers the log
    tree_have = {("tree", *r) for r in stored.roots}
    if upto == head:
        tree_implied = {("tree", *r) for r in rebuilt.roots}
        missing += sorted(tree_implied - tree_have, key=str)
        extra += sorted(tree_have - tree_implied, key=str)
    return IndexCheck(tracked=upto, head=head, rows=len(have) + len(tree_have), missing=missing, extra=extra)

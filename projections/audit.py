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

import re
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Protocol
from uuid import UUID

from ledger.errors import EntityNotFoundError
from ledger.errors import LedgerError
from ledger.events.bodies import ENTITY_ERASED, ENTITY_VERSION, EXECUTION_REEXECUTED, RUN_FIELDS
from ledger.events.decode import check_page, record_payload
from ledger.events.digest import Digest
from ledger.model.address import Address, as_uuid, parse_address
from ledger.model.personal import ERASED
from ledger.store import EventStore
from ledger.store.index_check import IndexCheck, compare_index
from ledger.store.integrity import VerifyReport, verify_store
from projections.diffing import diff_versions
from projections.index_protocol import VersionReads
from projections.inline import VersionRecord
from projections.stored_reads import prefetch_children, read_checked
from projections.stored_view import resolve_stored, stored_data, version_for

__all__ = [
    "MIN_PREFIX",
    "AsOf",
    "AuditSource",
    "Erasure",
    "ExecutionArgument",
    "ExecutionDetail",
    "ExecutionInput",
    "ExecutionOutput",
    "HistoryRow",
    "IndexCheck",
    "LogEntry",
    "Neighbours",
    "Reexecution",
    "Shown",
    "VersionDiff",
    "VersionInfo",
    "as_of",
    "check_index",
    "diff",
    "erasure",
    "execution",
    "execution_record",
    "reexecutions_of",
    "head",
    "history",
    "lineage_of",
    "neighbours",
    "resolve_address",
    "resolve_id",
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

    @property
    def index(self) -> VersionReads:
        """The version index (``Ledger.index`` or ``StoredReader.index``: the same Protocol)."""
        ...

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
    #: The version's lineage was erased: its personal fields read ``ERASED`` (None otherwise).
    erased: Erasure | None = None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One version of a lineage and what changed since the row before (``None`` for the first).

    ``origin`` says what wrote it: ``"execution"`` (then ``execution_id`` and ``function``
    name it), ``"registered"`` (a first version written by hand) or ``"edited by hand"``.
    ``parent`` is the version it was made from; ``branch`` is True when that is not the
    row before (several versions made from one old version), so ``changes`` are then
    against ``parent``, not against the row above.
    """

    version: VersionInfo
    changes: dict[str, tuple[Any, Any]] | None
    origin: str = "registered"
    execution_id: UUID | None = None
    function: str | None = None
    parent: UUID | None = None
    branch: bool = False


@dataclass(frozen=True, slots=True)
class Erasure:
    """A lineage's erasure: where it sits in the log, when and why."""

    lineage_id: UUID
    position: int
    recorded_at: datetime | None
    reason: str | None
    #: Per version (ecs_id text), the personal fields that changed in it (read before the key went).
    personal_changes: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExecutionInput:
    """One argument of an execution: the version read (``None`` for a plain value) and its address."""

    param_name: str
    ecs_id: UUID | None
    address: str | None
    version: VersionInfo | None  # where that version sits in its lineage (None when not stored)


@dataclass(frozen=True, slots=True)
class ExecutionOutput:
    """One entity version an execution wrote, and how (mutation, creation or detachment)."""

    ecs_id: UUID
    lineage_id: UUID
    semantic: str
    output_index: int | None
    version: VersionInfo | None


@dataclass(frozen=True, slots=True)
class ExecutionArgument:
    """One argument as called (the run record's ``arguments``).

    ``value`` is the recorded JSON (an entity as ``{"$e": id}``, a value JSON cannot hold as
    ``{"$r": {"type", "repr"}}``); ``address`` the pinned reference where the argument was
    an entity or an ``@`` reference; ``read`` what that reference reads (stored data, personal
    fields ``ERASED`` once erased), for references to a value or entity below the one named.
    """

    name: str
    value: Any
    address: str | None
    read: Any = None


@dataclass(frozen=True, slots=True)
class Reexecution:
    """One re-run of an execution (an ``execution.reexecuted`` record)."""

    reexecution_id: UUID
    matches: bool
    position: int
    recorded_at: datetime | None
    actor: str | None
    error_type: str | None


@dataclass(frozen=True, slots=True)
class ExecutionDetail:
    """One function execution as recorded: what it read, what it wrote, or how it failed.

    ``error_message`` and ``traceback`` are opened where they were sealed for personal
    data and read ``ERASED`` once a lineage they were sealed with was erased.
    """

    execution_id: UUID
    function: str
    succeeded: bool
    position: int
    recorded_at: datetime | None
    duration_ms: float
    isolation: str
    inputs: list[ExecutionInput]
    outputs: list[ExecutionOutput]
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    #: A cache hit: the execution whose outputs it returned (``cache=True`` functions).
    reused_execution_id: UUID | None = None
    #: An ``execution.reexecuted`` record: the execution it ran again (``succeeded`` then
    #: says whether the outputs matched) and each difference ``{"path", "recorded", "now"}``.
    reexecution_of: UUID | None = None
    differences: list[dict[str, Any]] | None = None
    config_ids: list[UUID] = field(default_factory=list)  # the ConfigEntity versions it was given
    sibling_group: list[UUID] = field(default_factory=list)  # the outputs written together
    #: Every argument as called; None when the record holds none (recorded before arguments were kept).
    arguments: list[ExecutionArgument] | None = None
    #: The run record (``bodies.RUN_FIELDS``): each None when unknown (an older record).
    run: dict[str, Any] = field(default_factory=dict)
    #: The re-runs of this execution, oldest first.
    reexecutions: list[Reexecution] = field(default_factory=list)


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


#: The fewest hex digits a short id must have: 8 is what every table shows.
MIN_PREFIX = 8
#: Candidates an ambiguous prefix lists.
_CANDIDATES = 10
_HEX = re.compile(r"[0-9a-f]+")


def resolve_id(source: AuditSource, value: Any, argument: str) -> UUID:
    """``value`` as a whole id: a UUID, or a unique prefix of at least 8 of its hex digits.

    A prefix is looked up among stored versions (ecs_ids) and streams (lineage and
    execution ids) with one range scan each. An unknown prefix is an
    ``EntityNotFoundError``; an ambiguous one is too, listing the candidates, and so is
    a prefix shorter than ``MIN_PREFIX`` (too many ids would share it to be useful).
    """
    if isinstance(value, UUID):
        return value
    text = str(value).strip().lstrip("@")
    digits = text.replace("-", "").lower()
    if len(digits) == 32:
        return parse_id(text, argument)
    if not _HEX.fullmatch(digits):
        raise EntityNotFoundError(f"{argument}: {text!r:.80} is not an id (a UUID, or at least {MIN_PREFIX} of its leading hex digits)")
    if len(digits) < MIN_PREFIX:
        raise EntityNotFoundError(f"{argument}: {text!r} is too short: give at least {MIN_PREFIX} hex digits of the id")
    found = _prefix_candidates(source, digits)
    if not found:
        raise EntityNotFoundError(f"{argument}: no stored id starts with {digits}")
    if len(found) > 1:
        shown = ", ".join(f"{uuid} ({kind})" for uuid, kind in found[:_CANDIDATES])
        more = f" and {len(found) - _CANDIDATES} more" if len(found) > _CANDIDATES else ""
        raise EntityNotFoundError(f"{argument}: {digits} is ambiguous: {len(found)}{'+' if more else ''} ids start with it: {shown}{more}")
    return found[0][0]


def _prefix_candidates(source: AuditSource, digits: str) -> list[tuple[UUID, str]]:
    """(id, kind) of the stored versions and streams whose id starts with ``digits``, by id."""
    limit = _CANDIDATES + 1
    store = source.store
    records = source.index.records
    if isinstance(records, dict):  # an in-memory index holds every version: no query needed
        versions = sorted(e for e in records if e.hex.startswith(digits))[:limit]
    else:
        versions = [e for e, _ in store.versions_with_prefix(digits, limit)]
    found: dict[UUID, str] = {e: "version" for e in versions}
    for stream, position in store.streams_with_prefix(digits, limit):
        found.setdefault(stream, _stream_kind(store, position))
    return sorted(found.items())


def _stream_kind(store: EventStore, position: int) -> str:
    rows = store.read_columns(position, 1, past_head=True)
    topic = rows.topics[0] if len(rows) else ""
    return "execution" if topic.startswith("execution.") else "lineage"


def resolve_address(source: AuditSource, text: str, argument: str = "address") -> Address:
    """``@<id>[.path]`` with the id whole: a short id (``resolve_id``) is looked up first."""
    head, dot, path = text.lstrip("@").partition(".")
    if not _HEX.fullmatch(head.replace("-", "").lower()):
        parse_address("@" + text.lstrip("@"), argument=argument)  # says what is wrong with it
    uuid = resolve_id(source, head, argument)
    return parse_address(f"@{uuid}{dot}{path}", argument=argument)


def _info(record: VersionRecord) -> VersionInfo:
    return VersionInfo(
        entity_type=record.topic,
        ecs_id=record.ecs_id,
        lineage_id=record.lineage_id,
        version=record.lineage_index + 1,
        position=record.position,
        recorded_at=record.recorded_at,
    )


def head(source: AuditSource) -> int:
    """The newest log position (0 for an empty log): one indexed lookup, no record read."""
    return source.store.head()


def recent_events(
    source: AuditSource,
    *,
    limit: int = 20,
    event_type: str | None = None,
    function: str | None = None,
    since: int | datetime | None = None,
    until: int | datetime | None = None,
    lineage: UUID | None = None,
) -> list[LogEntry]:
    """The ``limit`` most recent events that pass the filters, oldest first.

    ``event_type`` keeps a topic and its sub-topics (``execution`` keeps
    ``execution.completed`` and ``execution.failed``); ``function`` keeps events
    whose payload names a registered function matching that glob (``school.*``);
    ``since``/``until`` bound the events kept, inclusive, by log position (an int)
    or recorded time (a timezone-aware datetime); ``lineage`` keeps that lineage's
    own events (its versions, its erasure) and the executions that read or wrote
    one of its versions. The log is read backwards from its head (or ``until``) a
    page at a time and reading stops once ``limit`` events matched or ``since`` is
    passed, so the cost follows what is shown, not the length of the log.
    """
    store = source.store
    picked: list[LogEntry] = []
    end = store.head()
    if isinstance(until, int):
        end = min(end, until)
    floor = since if isinstance(since, int) else 1
    touches = _touches(source, lineage) if lineage is not None else None
    page = max(limit, _MIN_PAGE)
    while end >= floor and len(picked) < limit:
        start = max(1, end - page + 1)
        # one record past ``end`` too: a page then also proves nothing is missing where it
        # meets the page read before it
        rows = store.read_columns(start, end - start + 2)
        # every record read is checked, and (sealed v2) no position may be missing
        check_page(start, rows.positions, rows.stream_ids, rows.versions, rows.topics, rows.states)
        for i in reversed(range(len(rows))):
            position = rows.positions[i]
            if position > end or position < floor:
                continue
            topic = rows.topics[i]  # checked above, seal included: only the payload is left to decode
            if event_type and not (topic == event_type or topic.startswith(event_type + ".")):
                continue
            payload = record_payload(position, topic, rows.states[i])
            if function and not fnmatchcase(str(payload.get("function_name", "")), function):
                continue
            if touches is not None and not touches(topic, payload):
                continue
            if isinstance(since, datetime) or isinstance(until, datetime):
                when = _recorded(payload)
                if when is None or (isinstance(since, datetime) and when < since) or (isinstance(until, datetime) and when > until):
                    continue
            picked.append(LogEntry(position, topic, source.open_payload(topic, payload)))
            if len(picked) == limit:
                break
        end = start - 1
    picked.reverse()
    return picked


def _recorded(payload: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(payload["recorded_at"]))
    except (KeyError, ValueError):
        return None


def _touches(source: AuditSource, lineage_id: UUID) -> Any:
    """A test for "this event is about ``lineage_id``": one of its versions or its erasure, or
    an execution that read (an input, or an address into it) or wrote one of its versions."""
    ids = getattr(source.index, "lineage_ids", None)
    ecs_ids = set(ids.get(lineage_id, ())) if ids is not None else {e for e, _, _ in source.store.lineage_entries(lineage_id)}
    if not ecs_ids and lineage_id not in source.index.erased:
        raise EntityNotFoundError(f"lineage: no entity lineage {lineage_id}")
    texts = {str(e) for e in _tree_versions(source.index, ecs_ids)}
    lineage_text = str(lineage_id)

    def touches(topic: str, payload: dict[str, Any]) -> bool:
        if topic in (ENTITY_VERSION, ENTITY_ERASED):
            return str(payload.get("lineage_id")) == lineage_text
        for out in payload.get("outputs", ()):
            if str(out.get("lineage_id")) == lineage_text:
                return True
        for arg in payload.get("inputs", ()):
            named = _address_uuid(arg.get("address"))
            if str(arg.get("ecs_id")) in texts or named in texts or named == lineage_text:
                return True
        return False

    return touches


def _tree_versions(index: VersionReads, ecs_ids: set[UUID]) -> set[UUID]:
    """``ecs_ids`` and every version below any of them: what an execution reads when it reads
    anything in those versions' trees. A version is immutable, so a child already seen brings
    nothing new (versions of one tree share their unchanged children): the walk costs the
    distinct versions, not versions times tree size."""
    seen = set(ecs_ids)
    frontier = list(ecs_ids)
    while frontier:
        prefetch = getattr(index, "prefetch", None)  # a stored index reads ahead in one query
        if prefetch is not None:
            prefetch(ecs_ids=frontier)
        below: list[UUID] = []
        for ecs_id in frontier:
            record = index.records.get(ecs_id)
            for child in record.child_ids if record is not None else ():
                if child not in seen:
                    seen.add(child)
                    below.append(child)
        frontier = below
    return seen


def _address_uuid(address: Any) -> str | None:
    """The canonical id an ``@<uuid>[.path]`` address names (as an ecs_id or a lineage id)."""
    head = str(address or "").lstrip("@").partition(".")[0]
    try:
        return str(UUID(head))
    except ValueError:
        return None


def show(source: AuditSource, address: str | Address, *, argument: str = "address") -> Shown:
    """The stored value at ``@<uuid>[.path]`` as plain data; needs no entity classes.

    The uuid is an ecs_id or a lineage id (its latest version); a path walks
    fields, children, list indexes and dict keys.
    """
    if not isinstance(address, Address):
        address = resolve_address(source, address, argument)
    found = resolve_stored(source.index, address, argument=argument)
    return Shown(_info(found.source), found.value, erasure(source, found.source.lineage_id))


def history(source: AuditSource, ref: UUID | str, *, argument: str = "lineage_id") -> list[HistoryRow]:
    """Every version of a lineage, oldest first, each with what changed and what wrote it.

    ``ref`` is the lineage id or any ecs_id of it (or a unique prefix of either).
    Each row is compared with the version it was made from: the row before, or,
    for a branch (``HistoryRow.branch``), an older one. Values are compared as the
    entity classes read them where those import, else as stored JSON.
    """
    index = source.index
    record = version_for(index, resolve_id(source, ref, argument), argument=argument)
    rows: list[HistoryRow] = []
    previous: VersionRecord | None = None
    versions = list(index.lineages[record.lineage_id])
    prefetch_children(index.records, versions)  # the diffs below read them: in batches, not one by one
    erased = erasure(source, record.lineage_id)
    gone = erased.personal_changes if erased is not None else {}
    for rec in versions:
        parent = rec.previous_ecs_id
        base = previous
        if previous is not None and parent is not None and parent != previous.ecs_id:
            base = index.records.get(parent) or previous
        changes = None if base is None else diff_versions(index, base, rec)
        if changes is not None:  # a personal change, told apart before the key went (both sides ERASED now)
            changes.update((name, (ERASED, ERASED)) for name in gone.get(str(rec.ecs_id), ()) if name not in changes)
        meta = rec.meta or {}
        execution_id = meta.get("derived_from_execution_id")
        origin = "execution" if execution_id else ("registered" if previous is None else "edited by hand")
        rows.append(
            HistoryRow(
                _info(rec),
                changes,
                origin=origin,
                execution_id=UUID(str(execution_id)) if execution_id else None,
                function=meta.get("derived_from_function") if execution_id else None,
                parent=parent,
                branch=previous is not None and parent is not None and parent != previous.ecs_id,
            )
        )
        previous = rec
    return rows


@dataclass(frozen=True, slots=True)
class Neighbours:
    """Where one version sits among its lineage's versions: the one before, the one after, how many."""

    previous: VersionInfo | None
    next: VersionInfo | None
    versions: int


def neighbours(source: AuditSource, ecs_id: UUID | str, *, argument: str = "ecs_id") -> Neighbours:
    """The versions of the same lineage just before and just after ``ecs_id`` (by log order).

    Reads the two neighbouring records only, whatever the lineage's length.
    """
    index = source.index
    record = index.get(resolve_id(source, ecs_id, argument), argument)
    versions = index.lineages[record.lineage_id]
    i = record.lineage_index
    before = _info(versions[i - 1]) if i > 0 else None
    after = _info(versions[i + 1]) if i + 1 < len(versions) else None
    return Neighbours(before, after, len(versions))


def lineage_of(source: AuditSource, ref: UUID | str, argument: str = "lineage_id") -> UUID:
    """The lineage ``ref`` names: a lineage id or any ecs_id of it (or a unique prefix of either)."""
    return version_for(source.index, resolve_id(source, ref, argument), argument=argument).lineage_id


def erasure(source: AuditSource, lineage_id: UUID) -> Erasure | None:
    """The lineage's erasure (read from its ``entity.erased`` record), or None when it was not erased."""
    position = source.index.erased.get(lineage_id)
    if position is None:
        return None
    _, _, topic, payload = read_checked(source.store, position)
    if topic != ENTITY_ERASED:
        return Erasure(lineage_id, position, None, None)
    changed = payload.get("personal_changes") or {}
    return Erasure(lineage_id, position, _recorded(payload), payload.get("reason"), {str(k): list(v) for k, v in changed.items()})


def execution(source: AuditSource, execution_id: UUID | str, *, argument: str = "execution_id") -> ExecutionDetail | None:
    """One execution as recorded (None when ``execution_id`` names no execution).

    Its inputs and outputs say which version of which lineage they are, so a
    failure can be traced to the data it read. Sealed failure text is opened as
    ``Ledger.open_payload`` does.
    """
    uuid = resolve_id(source, execution_id, argument)
    found = execution_record(source, uuid)
    if found is None:
        return None
    position, topic, payload = found
    payload = source.open_payload(topic, payload)
    records = source.index.records

    def where(ecs_id: Any) -> VersionInfo | None:
        if not ecs_id:
            return None
        rec = records.get(UUID(str(ecs_id)))
        return None if rec is None else _info(rec)

    inputs = [
        ExecutionInput(
            a["param_name"],
            UUID(str(a["ecs_id"])) if a.get("ecs_id") else None,
            a.get("address"),
            where(a.get("ecs_id")),
        )
        for a in payload.get("inputs", ())
    ]
    outputs = [
        ExecutionOutput(UUID(str(o["ecs_id"])), UUID(str(o["lineage_id"])), o["semantic"], o.get("output_index"), where(o["ecs_id"]))
        for o in payload.get("outputs", ())
    ]
    run = {name: payload.get(name) for name in RUN_FIELDS}
    if topic == EXECUTION_REEXECUTED:
        return ExecutionDetail(
            run=run,
            execution_id=uuid,
            function=payload["function_name"],
            succeeded=bool(payload["matches"]),
            position=position,
            recorded_at=_recorded(payload),
            duration_ms=float(payload.get("duration_ms", 0.0)),
            isolation=str(payload.get("isolation", "")),
            inputs=[],
            outputs=[],
            error_type=payload.get("error_type"),
            reexecution_of=UUID(str(payload["execution_id"])),
            differences=list(payload.get("differences", ())),
        )
    failed = topic != "execution.completed"
    reused = payload.get("reused_execution_id")
    return ExecutionDetail(
        execution_id=uuid,
        function=payload["function_name"],
        succeeded=not failed,
        position=position,
        recorded_at=_recorded(payload),
        duration_ms=float(payload.get("duration_ms", 0.0)),
        isolation=str(payload.get("isolation", "")),
        inputs=inputs,
        outputs=outputs,
        error_type=payload.get("error_type") if failed else None,
        error_message=payload.get("error_message") if failed else None,
        traceback=payload.get("traceback") if failed else None,
        reused_execution_id=UUID(str(reused)) if reused else None,
        config_ids=[UUID(str(c)) for c in payload.get("config_ids", ())],
        sibling_group=[UUID(str(s)) for s in payload.get("sibling_group", ())],
        arguments=_arguments(source, payload.get("arguments")),
        run=run,
        reexecutions=reexecutions_of(source, uuid, position),
    )


def _arguments(source: AuditSource, arguments: dict[str, Any] | None) -> list[ExecutionArgument] | None:
    """The recorded arguments with their pinned addresses and, for references, what they read."""
    if arguments is None:
        return None
    out = []
    for name, value in arguments.items():
        address: str | None = None
        read: Any = None
        if isinstance(value, str) and value.startswith("@") and not value.startswith("@@"):
            address = value
            try:
                read = show(source, value, argument=name).value
            except LedgerError as exc:  # a version no longer readable: say why rather than fail the page
                read = f"<unreadable: {exc}>"
        elif isinstance(value, dict) and list(value) == ["$e"]:
            address = f"@{value['$e']}"
        out.append(ExecutionArgument(name, value, address, read))
    return out


def reexecutions_of(source: AuditSource, execution_id: UUID, after: int) -> list[Reexecution]:
    """Every ``execution.reexecuted`` record of ``execution_id`` (they follow it in the log).

    A scan of the log after the execution (records that cannot name it are skipped without
    being decoded): what ``show`` of one execution can afford, not a hot path."""
    store = source.store
    needle = str(execution_id).encode()
    found: list[Reexecution] = []
    start = after + 1
    head = store.head()
    while start <= head:
        page = store.read_columns(start, 20_000)
        if not page.positions:
            break
        for position, topic, state in zip(page.positions, page.topics, page.states):
            raw = state if isinstance(state, bytes) else str(state).encode()
            if topic != EXECUTION_REEXECUTED or needle not in raw:
                continue
            _, _, _, payload = read_checked(store, position)
            if payload.get("execution_id") != str(execution_id):
                continue
            found.append(
                Reexecution(
                    UUID(str(payload["reexecution_id"])),
                    bool(payload["matches"]),
                    position,
                    _recorded(payload),
                    payload.get("actor"),
                    payload.get("error_type"),
                )
            )
        start = page.positions[-1] + 1
    return found


def execution_record(source: AuditSource, execution_id: UUID) -> tuple[int, str, dict[str, Any]] | None:
    """(position, topic, payload as stored) of an execution's record; None when ``execution_id``
    names no execution stream. One index lookup and one record read, seal checked."""
    found = source.store.streams_with_prefix(execution_id.hex, 1)
    if not found or found[0][0] != execution_id:
        return None
    position = found[0][1]
    _, _, topic, payload = read_checked(source.store, position)
    if not topic.startswith("execution."):
        return None
    return position, topic, payload


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
    uuid = resolve_id(source, lineage_id, argument)
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
    """Changed values between two stored versions, children included (``EntityRegistry.diff``'s answer).

    Either side may be a lineage id, naming its latest version (as ``show`` and ``history`` take one)."""
    index = source.index

    def version(ref: UUID | str, argument: str) -> VersionRecord:
        uuid = resolve_id(source, ref, argument)
        versions = None if uuid in index.records else index.lineages.get(uuid)
        return index.get(versions[-1].ecs_id if versions else uuid, argument)  # EntityNotFoundError names the argument

    a, b = version(ecs_id_a, "ecs_id_a"), version(ecs_id_b, "ecs_id_b")
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


def check_index(source: AuditSource) -> IndexCheck | None:
    """Compare the stored version index with the rows computed from the log alone
    (``ledger.store.index_check``); None for a store without one."""
    return compare_index(source.store)

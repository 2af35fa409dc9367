"""Blame: where the value at an address came from, read from the version index.

``blame(source, "@<uuid>.field.path")`` answers three questions and then asks them
again of every input it names:

1. Which version first held the current value? The address resolves to the entity
   version that holds the field (the last entity on the path) and the path below it;
   its earlier versions (``previous_ecs_id``, never the whole lineage's other
   branches) are walked back while they hold the same value at that path. Values are
   compared as stored (JSON data; a child entity by its content, ids left out), so a
   version that changed another field, or re-recorded the same value, does not count.
   An erased personal value cannot be compared: its holder is the answer (and it reads
   ``ERASED``, ``"<erased>"`` in ``to_dict``).
2. What wrote that version? The execution named in its metadata, else "registered"
   (a lineage's first version written by hand) or "edited by hand".
3. What did that execution read? Its record's inputs: a reference argument by its
   address, an entity argument as the whole entity (``@<ecs_id>``). Each is blamed
   in turn, ``depth`` levels down. A reference given by lineage id is read as the
   version that lineage had when the execution ran, not today's.

Everything is an indexed read (one record per version compared, one per execution),
so the cost is the size of the answer, not of the log; no analytics catch-up. A
(version, field) already blamed elsewhere in the tree is listed again with
``repeated=True`` and not expanded twice, which bounds the work on diamonds (and
would on cycles, which immutable versions cannot form).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.errors import BadPathError, LedgerError
from ledger.model.address import Address, parse_address
from ledger.model.personal import ERASED
from ledger.model.tree import Ref
from ledger.model.walk import map_leaves
from projections.audit import AuditSource, execution_record
from projections.index_protocol import VersionReads
from projections.inline import VersionRecord
from projections.stored_view import plain_data, walk_stored

__all__ = ["DEFAULT_DEPTH", "BlameQueryError", "Provenance", "blame"]

DEFAULT_DEPTH = 10
#: How far back a reference given by lineage id is matched against the version the execution read.
_MATCH_BACK = 64


class BlameQueryError(LedgerError, ValueError):
    """A blame query with an argument that cannot be answered (a negative depth)."""


@dataclass
class Provenance:
    """Where one value came from, and (``sources``) where the values it was computed from came from.

    ``version`` is the ecs_id of the version that first held the value (of the entity
    that holds the field: for ``@student.grades.0.score`` a Grade version), ``current``
    the version the address resolved to. ``origin`` is ``"execution"`` (then
    ``execution_id`` and ``function`` name it), ``"registered"`` or ``"edited by hand"``.
    ``param`` is the parameter through which the execution one level up read this
    value (None at the top). ``truncated``: the execution read inputs that ``depth``
    left unblamed. ``repeated``: this (version, field) is blamed elsewhere in the tree.
    """

    address: str
    field: str
    value: Any
    current: UUID
    version: UUID
    lineage_id: UUID
    entity_type: str
    position: int
    recorded_at: datetime
    origin: str
    execution_id: UUID | None = None
    function: str | None = None
    param: str | None = None
    sources: list[Provenance] = dataclasses.field(default_factory=list)  # not `field`: a field here is named so
    truncated: bool = False
    repeated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ids as text, the time in ISO 8601, sources nested the same way."""
        return {
            "address": self.address,
            "field": self.field,
            "value": _json_ready(self.value),
            "current": str(self.current),
            "version": str(self.version),
            "lineage_id": str(self.lineage_id),
            "entity_type": self.entity_type,
            "position": self.position,
            "recorded_at": self.recorded_at.isoformat(),
            "origin": self.origin,
            "execution_id": None if self.execution_id is None else str(self.execution_id),
            "function": self.function,
            "param": self.param,
            "truncated": self.truncated,
            "repeated": self.repeated,
            "sources": [s.to_dict() for s in self.sources],
        }

    def walk(self) -> list[Provenance]:
        """This node and every node below it, depth first."""
        out = [self]
        for s in self.sources:
            out.extend(s.walk())
        return out


_MISSING = object()


def _json_ready(value: Any) -> Any:
    """``value`` with an erased personal value as ``"<erased>"`` (what the analytics tables show)."""
    return map_leaves(value, lambda v: "<erased>" if v is ERASED else v, tuples_as_lists=True, str_keys=True)


def _holds_erased(value: Any) -> bool:
    found = False

    def leaf(v: Any) -> Any:
        nonlocal found
        found = found or v is ERASED
        return v

    map_leaves(value, leaf)
    return found


def _content(index: VersionReads, value: Any) -> Any:
    """A stored value for comparison: children by their content (type, values, children), ids left out."""
    return map_leaves(
        value,
        lambda v: _entity_content(index, index.records[v.ecs_id]) if type(v) is Ref else v,
        tuples_as_lists=True,
        str_keys=True,
    )


def _entity_content(index: VersionReads, rec: VersionRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"$type": rec.topic, **rec.values_data()}
    for name, shape in rec.shape.items():
        out[name] = _content(index, shape)
    return out


def _value_in(index: VersionReads, rec: VersionRecord, below: tuple[str, ...]) -> Any:
    """The value at ``below`` in version ``rec`` for comparison, or ``_MISSING`` when it has no such path."""
    address = Address(f"@{rec.ecs_id}", rec.ecs_id, below)
    try:
        current, _, _ = walk_stored(index, address)
    except BadPathError:
        return _MISSING
    return _content(index, current)


def _first_holder(index: VersionReads, rec: VersionRecord, below: tuple[str, ...]) -> VersionRecord:
    """The earliest version on ``rec``'s chain of previous versions that holds the same value at ``below``."""
    value = _value_in(index, rec, below)
    if _holds_erased(value):
        return rec  # an erased personal value cannot be compared with earlier ones: no walk back
    while rec.previous_ecs_id is not None:
        previous = index.records.get(rec.previous_ecs_id)
        if previous is None or _value_in(index, previous, below) != value:
            break
        rec = previous
    return rec


def _origin(rec: VersionRecord) -> tuple[str, UUID | None, str | None]:
    """What wrote a version: as ``projections.audit.history`` names it."""
    meta = rec.meta or {}
    execution_id = meta.get("derived_from_execution_id")
    if execution_id:
        return "execution", UUID(str(execution_id)), meta.get("derived_from_function")
    return ("registered" if rec.previous_ecs_id is None else "edited by hand"), None, None


def _address_text(ecs_id: UUID, below: tuple[str, ...]) -> str:
    return "@" + ".".join((str(ecs_id), *below))


def _read_address(index: VersionReads, text: str, read_ecs_id: UUID | None, position: int) -> Address:
    """The address an execution at ``position`` read, pinned to the version it read.

    An address by ecs_id names an immutable version already. One by lineage id named
    the lineage's version current when the call ran: the latest one at ``position``
    whose walk ends at the entity the record says was read (``read_ecs_id``); a
    version written by this very execution (a mutation of the lineage) is skipped
    that way when the value it holds changed.
    """
    address = parse_address(text, argument="input address")
    if index.records.get(address.uuid) is not None:
        return address
    versions = index.lineages.get(address.uuid)
    if not versions:
        return address  # blamed as it is: the lookup names what is missing
    candidate = index.version_at(address.uuid, position)
    first = candidate
    for _ in range(_MATCH_BACK):
        if candidate is None:
            break
        pinned = Address(_address_text(candidate.ecs_id, address.path), candidate.ecs_id, address.path)
        try:
            _, holder, _ = walk_stored(index, pinned)
        except BadPathError:
            holder = None
        if read_ecs_id is None or (holder is not None and holder.ecs_id == read_ecs_id):
            return pinned
        candidate = index.records.get(candidate.previous_ecs_id) if candidate.previous_ecs_id else None
    rec = first if first is not None else versions[-1]
    return Address(_address_text(rec.ecs_id, address.path), rec.ecs_id, address.path)


class _Blamer:
    """One blame query: the source it reads and the (version, field) pairs already expanded."""

    def __init__(self, source: AuditSource, depth: int) -> None:
        self.source = source
        self.index: VersionReads = source.index
        self.depth = depth
        self.expanded: set[tuple[UUID, tuple[str, ...]]] = set()

    def node(self, address: Address, level: int, param: str | None = None) -> Provenance:
        index = self.index
        current, holder, below = walk_stored(index, address, argument="address")
        first = _first_holder(index, holder, below)
        origin, execution_id, function = _origin(first)
        value = plain_data(index, current)
        prov = Provenance(
            address=address.text,
            field=".".join(below),
            value=value,
            current=holder.ecs_id,
            version=first.ecs_id,
            lineage_id=first.lineage_id,
            entity_type=first.topic,
            position=first.position,
            recorded_at=first.recorded_at,
            origin=origin,
            execution_id=execution_id,
            function=function,
            param=param,
        )
        if execution_id is None:
            return prov
        key = (first.ecs_id, below)
        if key in self.expanded:
            prov.repeated = True
            return prov
        inputs = self.inputs(execution_id)
        if level >= self.depth:
            prov.truncated = bool(inputs)
            return prov
        self.expanded.add(key)
        prov.sources = [self.node(read, level + 1, name) for name, read in inputs]
        return prov

    def inputs(self, execution_id: UUID) -> list[tuple[str, Address]]:
        """(parameter, address pinned to the version read) of each input the execution's record names."""
        found = execution_record(self.source, execution_id)
        if found is None:
            return []
        position, _, payload = found
        out: list[tuple[str, Address]] = []
        for item in payload.get("inputs", ()):
            read = UUID(str(item["ecs_id"])) if item.get("ecs_id") else None
            text = item.get("address")
            if text:
                out.append((item["param_name"], _read_address(self.index, text, read, position)))
            elif read is not None:
                out.append((item["param_name"], Address(f"@{read}", read, ())))
        return out


def blame(source: AuditSource, address: str | Address, *, depth: int = DEFAULT_DEPTH) -> Provenance:
    """Where the value at ``address`` (``@<ecs_id or lineage id>[.path]``) came from, ``depth`` levels down.

    ``depth=0`` answers for the address alone; each level blames the inputs of the
    execution one level up. Errors are the address errors of every read
    (``MalformedAddressError``, ``UnknownEntityError``, ``BadPathError``) and
    ``BlameQueryError`` for a negative depth.
    """
    if type(depth) is not int or depth < 0:
        raise BlameQueryError(f"depth: must be a whole number, 0 or more, got {depth!r}")
    if not isinstance(address, Address):
        address = parse_address(address, argument="address")
    return _Blamer(source, depth).node(address, 0)

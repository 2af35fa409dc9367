"""Stored versions as plain JSON-ready data, readable without the entity classes.

An auditor inspecting a ledger (``ledger show``, ``ledger history``) often runs
where the user's entity classes cannot be imported. Everything needed to show a
version is in its event: the plain values in their stored JSON form and the
children as references, so this view never resolves a topic to a class.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import UnknownEntityError
from ledger.model.address import Address
from ledger.model.tree import Ref
from ledger.model.walk import map_leaves
from projections.addresses import version_named, walk_address
from projections.index_protocol import VersionReads
from projections.inline import VersionRecord

__all__ = ["StoredValue", "resolve_stored", "plain_data", "stored_data", "version_for", "walk_stored"]


def version_for(index: VersionReads, uuid: Any, *, argument: str) -> VersionRecord:
    """The version named by ``uuid``: an ecs_id, or a lineage id (its latest version)."""
    rec = version_named(index, uuid)
    if rec is None:
        raise UnknownEntityError(f"{argument}: no stored entity version or lineage {uuid}")
    return rec


def stored_data(index: VersionReads, record: VersionRecord) -> dict[str, Any]:
    """One version and its subtree as nested dicts, each headed by its type and ecs_id."""
    out: dict[str, Any] = {"entity_type": record.topic, "ecs_id": str(record.ecs_id)}
    out.update(record.values_data())
    for name, shape in record.shape.items():
        out[name] = plain_data(index, shape)
    return out


def plain_data(index: VersionReads, shape: Any) -> Any:
    """A stored value as plain data: each child entity as ``stored_data`` (type, ecs_id, fields)."""
    return map_leaves(
        shape,
        lambda v: stored_data(index, index.records[v.ecs_id]) if type(v) is Ref else v,
        tuples_as_lists=True,
        str_keys=True,
    )


class StoredValue:
    """What an address points at: the value as plain data and the version it was read from."""

    __slots__ = ("value", "source")

    def __init__(self, value: Any, source: VersionRecord) -> None:
        self.value = value
        self.source = source


def resolve_stored(index: VersionReads, address: Address, *, argument: str = "address") -> StoredValue:
    """Walk ``@<uuid>.path`` over stored data: fields, children, list indexes, dict keys."""
    current, source, _ = walk_stored(index, address, argument=argument)
    return StoredValue(plain_data(index, current), source)


def walk_stored(index: VersionReads, address: Address, *, argument: str = "address") -> tuple[Any, VersionRecord, tuple[str, ...]]:
    """(the stored value at ``address``, children still as ``Ref``; the last entity version on
    the path; the path below that version). Blame compares values this way, version by version.

    ``addresses.walk_address`` with the versions' stored JSON values: no class is resolved."""
    source = version_for(index, address.uuid, argument=argument)
    return walk_address(index, source, address, argument=argument, read_values=VersionRecord.values_data)

"""``@<uuid>.path`` references to stored data: resolution (the syntax is ``ledger/model/address.py``).

The uuid names a stored version (an ``ecs_id``) or, for convenience, a lineage
(its latest version). The path walks fields, list/tuple indexes and dict keys,
through child entities and into plain values alike. Errors name the argument
and the address, and are ``ValueError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from ledger.errors import BadPathError, UnknownEntityError
from ledger.model.address import Address
from ledger.model.tree import Ref, copy_value
from ledger.model.walk import map_leaves
from projections.index_protocol import VersionReads
from projections.inline import InlineIndex, VersionRecord
from projections.live import materialize

__all__ = ["Resolved", "resolve_address", "step_into", "version_named", "walk_address"]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A resolved reference: the value and the entity version it was read from."""

    address: Address
    value: Any
    source_ecs_id: UUID  # the last entity on the path
    source_root_ecs_id: UUID
    field_path: tuple[str, ...]  # the path below that entity


def resolve_address(index: InlineIndex, address: Address, *, argument: str) -> Resolved:
    rec = version_named(index, address.uuid)
    if rec is None:
        raise UnknownEntityError(
            f"{argument}: address {address.text!r} names no stored entity "
            f"(no version or lineage {address.uuid})"
        )
    root_id = rec.ecs_id if rec.is_root else index.root_of.get(rec.ecs_id, rec.ecs_id)
    current, source, below = walk_address(index, rec, address, argument=argument, read_values=VersionRecord.values)
    value: Any
    if type(current) is Ref:
        value = materialize(index, current.ecs_id, root_id)
    else:
        value = _fill(index, current, root_id)
    return Resolved(address, value, source.ecs_id, root_id, below)


def version_named(index: VersionReads, uuid: Any) -> VersionRecord | None:
    """The version an address's uuid names: an ecs_id, or a lineage id (its latest version); None if neither."""
    rec = index.records.get(uuid)
    if rec is not None:
        return rec
    versions = index.lineages.get(uuid)
    return versions[-1] if versions else None


def walk_address(
    index: VersionReads,
    start: VersionRecord,
    address: Address,
    *,
    argument: str,
    read_values: Callable[[VersionRecord], Mapping[str, Any]],
) -> tuple[Any, VersionRecord, tuple[str, ...]]:
    """Walk ``address.path`` from version ``start``: (the value there, child entities still as
    ``Ref``; the last entity version on the path; the path below that version).

    The one walker of ``@<uuid>.path``: ``resolve_address`` reads each version's fields as
    Python values of its class (``VersionRecord.values``) and ``stored_view.walk_stored`` as
    their stored JSON (``VersionRecord.values_data``), so ``ledger show`` and ``history`` walk
    where the entity classes cannot be imported; the path rules and errors are the same.
    """
    current: Any = Ref(start.ecs_id)
    source = start
    below: list[str] = []
    for i, seg in enumerate(address.path):
        if type(current) is Ref:
            source = index.records[current.ecs_id]
            below = []
            if seg in source.shape:
                current = source.shape[seg]
            else:
                values = read_values(source)
                if seg not in values:
                    raise BadPathError(
                        f"{argument}: address {address.text!r}: {source.topic.rpartition(':')[2]} "
                        f"has no field {seg!r}"
                    )
                current = values[seg]
        else:
            current = step_into(current, seg, address, argument, ".".join(address.path[: i + 1]))
        below.append(seg)
    if type(current) is Ref:
        source = index.records[current.ecs_id]
        below = []
    return current, source, tuple(below)


def step_into(current: Any, seg: str, address: Address, argument: str, where: str) -> Any:
    if isinstance(current, (list, tuple)):
        try:
            return current[int(seg)]
        except (ValueError, IndexError):
            raise BadPathError(
                f"{argument}: address {address.text!r}: {where!r} is not a valid index "
                f"(length {len(current)})"
            ) from None
    if isinstance(current, dict):
        if seg in current:
            return current[seg]
        if seg.lstrip("-").isdigit() and int(seg) in current:
            return current[int(seg)]
        raise BadPathError(f"{argument}: address {address.text!r}: no key {seg!r} at {where!r}")
    if isinstance(current, BaseModel) and seg in type(current).model_fields:
        return getattr(current, seg)
    raise BadPathError(
        f"{argument}: address {address.text!r}: cannot step into "
        f"{type(current).__name__} with {seg!r}"
    )


def _fill(index: InlineIndex, shape: Any, root_id: UUID) -> Any:
    """Replace refs inside a resolved structure with fresh entity copies."""
    return map_leaves(
        shape, lambda v: materialize(index, v.ecs_id, root_id) if type(v) is Ref else copy_value(v)
    )

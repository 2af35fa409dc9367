"""Auditing the key table against the commitments in the log.

A lineage's first personal version carries ``key_check`` (an HMAC of a fixed
text under its key, ``ledger.store.keys.key_check``). An erasure is recorded by an
``entity.erased`` event; anything else that makes a key unusable is damage to
the key table: a deleted row (reads as if erased, but nobody erased it), a row
holding another lineage's key (swapped or copied), or a value that is not a
key at all. ``verify_store`` collects the commitments and erasures while it
walks the log (``note_key_facts``) and asks ``key_problems`` at the end.

Lineages written before commitments existed have none and are not checked.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledger.events.bodies import ENTITY_ERASED, ENTITY_VERSION
from ledger.store.keys import TABLE, key_check, key_defect

if TYPE_CHECKING:
    from ledger.store.base import EventStore

__all__ = ["key_problems", "note_key_facts"]


def note_key_facts(
    topic: str,
    body: Any,
    position: int,
    commitments: dict[UUID, tuple[int, str]],
    erased: dict[UUID, int],
) -> None:
    """Remember a lineage's first key commitment, or its erasure, from one decoded event."""
    if type(body) is not dict:
        return
    if topic == ENTITY_VERSION:
        check = body.get("key_check")
        if type(check) is str:
            lineage = _uuid(body.get("lineage_id"))
            if lineage is not None and lineage not in commitments:
                commitments[lineage] = (position, check)
    elif topic == ENTITY_ERASED:
        lineage = _uuid(body.get("lineage_id"))
        if lineage is not None:
            erased.setdefault(lineage, position)


def key_problems(
    store: EventStore, commitments: dict[UUID, tuple[int, str]], erased: dict[UUID, int]
) -> list[tuple[int, str]]:
    """(position, text) for each key row that contradicts the log, oldest position first.

    Position is the event holding the commitment (or the erasure, for a key
    that outlived its erasure).
    """
    rows = store.keys.all_keys()
    problems: list[tuple[int, str]] = []
    for lineage in rows:
        if not isinstance(lineage, UUID):
            problems.append(
                (0, f"{TABLE!r} holds a row whose lineage_id {str(lineage)[:60]!r} ({type(lineage).__name__}) "
                    "is not a UUID: the key table was edited or a row inserted")
            )
    for lineage, position in erased.items():
        if lineage in rows:
            problems.append(
                (
                    position,
                    f"lineage {lineage} was erased but its data key is still in {TABLE!r} "
                    "(the erasure did not finish or the key was restored; erase it again)",
                )
            )
    for lineage, (position, check) in commitments.items():
        if lineage in erased:
            continue
        value = rows.get(lineage)
        if value is None:
            problems.append(
                (
                    position,
                    f"the data key of lineage {lineage} is missing from {TABLE!r}, and no "
                    "entity.erased event records an erasure (a deleted key row)",
                )
            )
            continue
        defect = key_defect(value)
        if defect is not None:
            problems.append(
                (position, f"the data key of lineage {lineage} in {TABLE!r} is malformed ({defect})")
            )
            continue
        if hmac.compare_digest(key_check(bytes(value), lineage), check):
            continue
        owner = _owner(bytes(value), lineage, commitments)
        whose = f"it is lineage {owner}'s key (swapped or copied rows)" if owner else "another key"
        problems.append(
            (
                position,
                f"the data key of lineage {lineage} in {TABLE!r} is not the key its first personal "
                f"version committed to: {whose}",
            )
        )
    problems.sort(key=lambda p: p[0])
    return problems


def _owner(key: bytes, lineage: UUID, commitments: dict[UUID, tuple[int, str]]) -> UUID | None:
    """The lineage whose commitment this key satisfies (a swapped key), if any."""
    for other, (_, check) in commitments.items():
        if other != lineage and hmac.compare_digest(key_check(key, other), check):
            return other
    return None


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(value) if type(value) is str else None
    except ValueError:
        return None

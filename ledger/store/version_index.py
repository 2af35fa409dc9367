"""The stored version index: a projection of the log kept in the store, beside the events.

Readers that need one version, one lineage or one erasure should not have to replay the
whole log into memory first (a 1M-event ledger took 17-27 s and 1.7 GiB to open). So the
store keeps, in tables of the same SQLite file or PostgreSQL schema:

- a *version row* ``(ecs_id, position)`` for every ``entity.version`` record (its lineage and
  stream version are the record's own columns, and a lineage's versions are found through
  the events table's own (stream, version) index, so nothing else needs a row);
- an *erasure row* ``(lineage_id, position)`` for each lineage's first ``entity.erased``;
- one *tracking row* ``(position, head_hash)``: every record at or below ``position`` is
  indexed, and ``head_hash`` is the chain link (``seal.link_hash``) of the record there, so
  a log rewritten below the tracked position is noticed and the index rebuilt.

The rows are a pure function of the log (``rows_for_page`` computes them from raw records,
``rows_for_batch`` from a batch being appended), so the index can always be rebuilt and
compared. An append writes its rows in the same transaction as its events and moves the
tracked position only when it was the log's head: a writer killed mid-batch leaves neither
events nor rows, and the tracked position never claims a record whose rows are missing. A
log written before the index existed (or by an older library) is indexed by ``catch_up`` on
the next writable open.

This module holds what every backend shares; the SQL is in ``sqlite.py`` and ``postgres.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson

from ledger.errors import CorruptLogError
from ledger.events.bodies import ENTITY_ERASED, ENTITY_VERSION
from ledger.events.seal import NewEvent

__all__ = ["INDEX_NAME", "IndexRows", "ecs_id_of", "lineage_versions", "rows_for_batch", "rows_for_page"]

#: The tracking row's name (one index today; the name leaves room for more).
INDEX_NAME = "versions"

# An entity.version body starts with its ecs_id (``bodies.entity_version_body`` puts it
# first and orjson keeps the order): read it without parsing the whole payload.
_ECS_PREFIX = b'{"ecs_id":"'
_ECS_END = len(_ECS_PREFIX) + 36


@dataclass(slots=True)
class IndexRows:
    """Rows to add: versions as (ecs_id, position), erasures as (lineage_id, position)."""

    versions: list[tuple[UUID, int]] = field(default_factory=list)
    erasures: list[tuple[UUID, int]] = field(default_factory=list)


def rows_for_batch(events: Sequence[NewEvent], first_position: int) -> IndexRows:
    """The rows of a batch about to be appended at ``first_position`` (ids known from planning)."""
    rows = IndexRows()
    for offset, event in enumerate(events):
        if event.topic == ENTITY_VERSION:
            ecs_id = event.ecs_id if event.ecs_id is not None else ecs_id_of(event.body, first_position + offset)
            rows.versions.append((ecs_id, first_position + offset))
        elif event.topic == ENTITY_ERASED:
            rows.erasures.append((event.stream_id, first_position + offset))
    return rows


def rows_for_page(
    positions: Sequence[int], stream_ids: Sequence[Any], versions: Sequence[Any], topics: Sequence[str], states: Sequence[bytes]
) -> IndexRows:
    """The rows of raw log records (as ``EventStore.read_columns`` returns them).

    A record the index needs but cannot read is a ``CorruptLogError`` naming its
    position: the index must not silently skip a version.
    """
    rows = IndexRows()
    for position, raw_id, version, topic, state in zip(positions, stream_ids, versions, topics, states):
        if topic != ENTITY_VERSION and topic != ENTITY_ERASED:
            continue
        try:
            stream_id = raw_id if isinstance(raw_id, UUID) else UUID(str(raw_id))
            version = int(version)
        except (TypeError, ValueError):
            raise CorruptLogError(f"position {position}: stream id or version cannot be read for the index", position) from None
        if topic == ENTITY_VERSION:
            rows.versions.append((ecs_id_of(state, position), position))
        else:
            rows.erasures.append((stream_id, position))
    return rows


def ecs_id_of(state: Any, position: int) -> UUID:
    """The ecs_id an ``entity.version`` record (or the first bytes of one) carries."""
    data = bytes(state) if isinstance(state, (bytearray, memoryview)) else state
    try:
        if isinstance(data, bytes) and data.startswith(_ECS_PREFIX) and data[_ECS_END : _ECS_END + 1] == b'"':
            return UUID(data[len(_ECS_PREFIX) : _ECS_END].decode())
        return UUID(orjson.loads(data)["ecs_id"])
    except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        raise CorruptLogError(f"position {position}: the entity.version record has no readable ecs_id", position) from None


def lineage_versions(
    rows: Iterable[tuple[int, Any, Any, Any]], whole: Callable[[int], Any]
) -> list[tuple[UUID, int, int]]:
    """(ecs_id, version, position) of a lineage's versions from its stream's records, checked.

    ``rows`` are the stream's records as (position, stream version, topic, first bytes of the
    state) in version order, straight from the events table; ``whole(position)`` reads a
    record in full when its first bytes are not in the usual layout. A lineage's stream holds
    its versions and at most its erasure, numbered 1, 2, 3, ... with no gap: a missing
    record or one of another kind is a ``CorruptLogError`` naming its position, never a
    shorter history.
    """
    out: list[tuple[UUID, int, int]] = []
    expected = 1
    for position, version, topic, head in rows:
        if version != expected:
            raise CorruptLogError(
                f"position {position}: the lineage's stream goes from version {expected - 1} to {version!r} "
                "(a record is missing or was renumbered); run ledger verify",
                position,
            )
        expected += 1
        if topic == ENTITY_ERASED:
            continue
        if topic != ENTITY_VERSION:
            raise CorruptLogError(f"position {position}: a lineage's stream holds a {topic!r} record; run ledger verify", position)
        try:
            ecs_id = ecs_id_of(head, position)
        except CorruptLogError:  # not in the usual layout (or damaged): judge the whole record
            ecs_id = ecs_id_of(whole(position), position)
        out.append((ecs_id, version, position))
    return out

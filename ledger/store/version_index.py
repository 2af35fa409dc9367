"""The stored version index: a projection of the log kept in the store, beside the events.

Readers that need one version, one lineage or one erasure should not have to replay the
whole log into memory first (a 1M-event ledger took 17-27 s and 1.7 GiB to open). So the
store keeps, in tables of the same SQLite file or PostgreSQL schema:

- a *version row* ``(ecs_id, lineage_id, version, position)`` for every ``entity.version``
  record (``version`` is the record's stream version, 1 for a lineage's first);
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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson

from ledger.errors import CorruptLogError
from ledger.events.bodies import ENTITY_ERASED, ENTITY_VERSION
from ledger.events.seal import NewEvent

__all__ = ["INDEX_NAME", "IndexRows", "rows_for_batch", "rows_for_page"]

#: The tracking row's name (one index today; the name leaves room for more).
INDEX_NAME = "versions"

# An entity.version body starts with its ecs_id (``bodies.entity_version_body`` puts it
# first and orjson keeps the order): read it without parsing the whole payload.
_ECS_PREFIX = b'{"ecs_id":"'
_ECS_END = len(_ECS_PREFIX) + 36


@dataclass(slots=True)
class IndexRows:
    """Rows to add: versions as (ecs_id, lineage_id, version, position), erasures as (lineage_id, position)."""

    versions: list[tuple[UUID, UUID, int, int]] = field(default_factory=list)
    erasures: list[tuple[UUID, int]] = field(default_factory=list)


def rows_for_batch(events: Sequence[NewEvent], first_position: int) -> IndexRows:
    """The rows of a batch about to be appended at ``first_position`` (ids known from planning)."""
    rows = IndexRows()
    for offset, event in enumerate(events):
        if event.topic == ENTITY_VERSION:
            ecs_id = event.ecs_id if event.ecs_id is not None else _ecs_id(event.body, first_position + offset)
            rows.versions.append((ecs_id, event.stream_id, event.version, first_position + offset))
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
            rows.versions.append((_ecs_id(state, position), stream_id, version, position))
        else:
            rows.erasures.append((stream_id, position))
    return rows


def _ecs_id(state: Any, position: int) -> UUID:
    data = bytes(state) if isinstance(state, (bytearray, memoryview)) else state
    try:
        if isinstance(data, bytes) and data.startswith(_ECS_PREFIX) and data[_ECS_END : _ECS_END + 1] == b'"':
            return UUID(data[len(_ECS_PREFIX) : _ECS_END].decode())
        return UUID(orjson.loads(data)["ecs_id"])
    except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
        raise CorruptLogError(f"position {position}: the entity.version record has no readable ecs_id", position) from None

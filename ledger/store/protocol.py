"""What one kind of database does for ``EventStore``: the ``StoreBackend`` protocol.

``memory.py``, ``sqlite.py`` and ``postgres.py`` each implement it; ``EventStore``
(``base.py``) reaches a database only through it, and ``tests/test_store_contract.py``
holds every member to a test on every backend. Kept apart from ``EventStore`` so the
contract can be read on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
)

from ledger.events.seal import NewEvent
from ledger.store.keys import KeyTable
from ledger.store.merkle import TileTable
from ledger.store.version_index import (
    IndexRows,
)

__all__ = ["Listener", "StoreBackend"]


class Listener(Protocol):
    """What ``StoreBackend.listen`` hands a follower: a wait that another process's append cuts short."""

    def wait(self, timeout: float) -> bool:
        """Return within ``timeout`` seconds, sooner when another process may have appended."""
        ...

    def close(self) -> None:
        """Stop listening and release the connection."""
        ...


class StoreBackend(TileTable, Protocol):
    """What one kind of database does for ``EventStore``: open, append sealed, read raw, close.

    A backend is opened with ``(spec, create)`` and, like ``EventStore``,
    writes nothing while opening when ``create`` is False. ``EventStore``
    reads the log through ``recorder``'s public API and reaches the database
    otherwise only through the methods below.
    """

    # The attributes are read-only properties here (``EventStore`` never sets them): a backend
    # may then hold its own key table class, and answer ``concurrent_appends`` with a property.

    @property
    def recorder(self) -> ApplicationRecorder:
        """The eventsourcing recorder: head, pages of notifications, one stream's events."""
        ...

    @property
    def key_table(self) -> KeyTable:
        """Where this backend keeps the per-lineage data keys."""
        ...

    @property
    def conflicts(self) -> tuple[type[BaseException], ...]:
        """What the database driver raises, beside ``IntegrityError``, when a (stream, version)
        was already taken."""
        ...

    @property
    def failures(self) -> tuple[type[BaseException], ...]:
        """What the driver raises, beside ``PersistenceError``, when it refuses a batch or a query."""
        ...

    @property
    def read_failures(self) -> tuple[type[BaseException], ...]:
        """What ``read_rows`` may raise from the driver (the recorder raises ``PersistenceError``)."""
        ...

    def append(self, events: Sequence[NewEvent], tracking: tuple[str, int] | None = None) -> list[int]:
        """Insert the batch atomically at the positions after the head, sealed for them.

        In one transaction: take the write lock, read the log's last record,
        ``seal_batch(events, head + 1, link_hash(last state))`` and insert each
        event at the position it was sealed for; return those positions.
        ``tracking`` (follower name, position): acknowledge it in that transaction.
        """
        ...

    @property
    def concurrent_appends(self) -> bool:
        """True where ``append`` may run while the process plans its next batch (PostgreSQL's
        concurrent writers, with group commit): ``Ledger.commit`` releases its lock around it."""
        ...

    def follower_position(self, name: str) -> int:
        """The position follower ``name`` last acknowledged; 0 when it never did."""
        ...

    def secret(self, name: str) -> bytes | None:
        """The store's secret ``name`` (made by a writable open); None where the store has none."""
        ...

    def hold_follower(self, name: str) -> Callable[[], None] | None:
        """Take follower ``name`` for this process until the returned release is called (or the
        holder dies); None when someone else holds it."""
        ...

    def acknowledge(self, name: str, position: int) -> None:
        """Move follower ``name`` forward to ``position`` (never back)."""
        ...

    def listen(self) -> Listener | None:
        """A ``Listener`` woken when another process may have appended, or None where followers poll."""
        ...

    def read_rows(self, start: int, limit: int, *, text_ids: bool = True, past_head: bool = False) -> list[tuple[Any, ...]]:
        """(position, stream id, version, topic, state) from ``start``, exactly as stored, up to
        ``head()`` unless ``past_head`` (the page may end early there)."""
        ...

    def version_positions(self, ecs_ids: Sequence[UUID]) -> dict[UUID, int]:
        """``version_position`` of many versions at once (those that are stored)."""
        ...

    def erasure_entries(self, since: int = 0) -> dict[UUID, int]:
        """lineage_id -> position of its first ``entity.erased``, for those after ``since``."""
        ...

    def erasure_position(self, lineage_id: UUID) -> int | None:
        """The position of a lineage's first ``entity.erased``; None when it has none."""
        ...

    def stream_heads(self, stream_ids: Sequence[UUID], upto: int) -> dict[UUID, tuple[int, int, bytes]]:
        """``stream_head`` of many streams at once (those with a record at or below ``upto``)."""
        ...

    def read_positions(self, positions: Sequence[int]) -> list[tuple[Any, ...]]:
        """(position, stream id, version, topic, state) of the records at ``positions``, in order."""
        ...

    def tree_root(self, ecs_id: UUID) -> UUID | None:
        """The version index's tree row: the root of the latest stored tree holding ``ecs_id``."""
        ...

    def memo_lookup(self, key: bytes) -> tuple[Any, ...] | None:
        """The memo index's row for a 32-byte cache key joined with its record:
        (execution_id, position, stream id, version, topic, state), or None."""
        ...

    def stream_head(self, stream_id: UUID, upto: int) -> tuple[int, int, bytes] | None:
        """(position, version, state) of a stream's last record at or below ``upto``; None when none."""
        ...

    def streams_between(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, int]]:
        """(stream id, position of its last record) of the streams with ``low <= id <= high``,
        by id, at most ``limit`` (a range scan of the events table's stream index)."""
        ...

    def versions_between(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, int]]:
        """(ecs_id, position) of the stored versions with ``low <= ecs_id <= high``, by id, at most ``limit``."""
        ...

    # The version index's upkeep and whole-lineage reads (``EventStore`` calls these too; memory://
    # keeps no stored index: its reads raise ``StoreError``, ``index_state`` is None).
    def index_state(self) -> tuple[int, str] | None:
        """(tracked position, that record's chain link) of the stored version index; None without one."""
        ...

    def add_index_rows(self, rows: IndexRows, expect: int, upto: int, upto_hash: str) -> bool:
        """Catch-up: add ``rows`` and move the tracked position from ``expect`` to ``upto`` in one
        transaction; False (nothing moved) when the position was not ``expect``."""
        ...

    def reset_index(self) -> None:
        """Forget every index row and track from position 0 (the log below it was rewritten)."""
        ...

    def version_position(self, ecs_id: UUID) -> int | None:
        """The log position of one stored version; None when it is not one."""
        ...

    def lineage_entries(self, lineage_id: UUID) -> list[tuple[UUID, int, int]]:
        """(ecs_id, stream version, position) of each version of a lineage, oldest first."""
        ...

    def index_dump(self) -> IndexRows:
        """Every row the stored index holds, by position (to compare with a rebuild)."""
        ...

    def head(self) -> int:
        """The last position readers may go to: every position at or below it is final (a
        record, or a hole no record will ever fill)."""
        ...

    def index_live_after(self) -> int | None:
        """Where appends write their own index rows without moving the tracking row (PostgreSQL's
        concurrent writers), the last position catch-up must index; None where every append
        moves the tracking row."""
        ...

    def records_between(self, after: int, upto: int) -> int:
        """How many records lie in positions (after, upto] (holes, where there are any, do not count)."""
        ...

    def checkpoints(self) -> list[tuple[int, int, int, str, list[int]]]:
        """(lo, hi, records, hash, holes) of each checkpoint of the whole-log chain, by position
        (``ledger.events.checkpoint``); [] where the seals chain the log themselves."""
        ...

    def checkpoint(self, at_least: int = 1) -> int | None:
        """Make the next checkpoint when it would cover at least ``at_least`` positions;
        returns its last position (None: none was made)."""
        ...

    def is_damaged(self, cause: BaseException | None) -> bool:
        """True when a read failed because the database file itself is damaged."""
        ...

    def close(self) -> None:
        """Release connections; a second call does nothing."""
        ...

    # The Merkle tree's tiles: ``merkle.TileTable`` (tree_state, tree_tiles, tree_tile_at, tree_write, tree_dump).

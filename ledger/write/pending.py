"""Batches held in memory by ``with led.batch():`` and appended together in one transaction.

Why: each commit costs a transaction (``BEGIN``, the head read, ``COMMIT``: ~65 µs of a
~400 µs execution on SQLite). A block of many executions pays it once per flush.

What stays the same: every write in the block is still its own batch (its own
``batch_id`` and ``batch_size``, sealed as it would be alone), and the batches are appended
in the order they were made, in one ``store.append`` (one transaction): the log is the one
the same calls would write one by one, and a reader (or a crash) sees whole executions only.

Pending state: a held batch is indexed at once (``Batch.apply(provisional=True)``) at the
positions it will take if no other writer appends first, so later calls in the block find
its versions by entity or by ``@`` reference and plan on its stream heads. Its events'
hashes are not known until the store seals them at append; stream heads carry None
meanwhile, which sealing never reads (the store chains events of one append to each other).
After the commit ``settle`` writes the positions and hashes the store assigned; a refused
append leaves the index to be rebuilt from the store (``Ledger`` does that).
"""

from __future__ import annotations

import threading
from uuid import UUID

from ledger.events.bodies import EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_REEXECUTED
from ledger.events.seal import NewEvent
from ledger.write.batch import Batch
from projections.inline import InlineIndex, StreamHead

__all__ = ["DEFAULT_FLUSH_EVENTS", "PendingBlock", "not_recorded", "settle"]

#: Events held before a block appends what it holds and goes on. Bounds the memory a block
#: takes and keeps every pending version inside the stored index's record cache (8,192
#: versions), where later calls of the block find them.
DEFAULT_FLUSH_EVENTS = 2000

_EXECUTION_TOPICS = frozenset({EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_REEXECUTED})


class PendingBlock:
    """The batches one ``with led.batch():`` block holds, with their provisional positions."""

    def __init__(self, index: InlineIndex, flush_events: int) -> None:
        self.index = index
        self.flush_events = flush_events
        #: The thread that opened the block: only its writes are held (it holds the write lock).
        self.owner = threading.get_ident()
        self.depth = 1
        self.held: list[tuple[Batch, list[int]]] = []
        self.events = 0

    def hold(self, batch: Batch) -> list[int]:
        """Seal ``batch`` and index it provisionally; the caller aborts it if this raises."""
        events = batch.seal()
        start = self.index.position + 1
        positions = list(range(start, start + len(events)))
        batch.apply(positions, provisional=True)
        self.held.append((batch, positions))
        self.events += len(events)
        return positions

    def full(self) -> bool:
        return self.events >= self.flush_events

    def take(self) -> list[tuple[Batch, list[int]]]:
        """Everything held, in order; the block holds nothing afterwards."""
        held, self.held, self.events = self.held, [], 0
        return held


def events_of(held: list[tuple[Batch, list[int]]]) -> list[NewEvent]:
    """The sealed events of the held batches, in the order they were made: one append."""
    return [event for batch, _ in held for event in batch.sealed]


def settle(index: InlineIndex, held: list[tuple[Batch, list[int]]], positions: list[int]) -> tuple[list[list[int]], bool]:
    """Give the index what the store assigned: each version's position, each stream's head hash.

    Returns each batch's positions and whether any differs from the provisional one
    (another writer appended first: the caller refreshes the index, which then sees both).
    """
    per_batch: list[list[int]] = []
    moved = False
    offset = 0
    for batch, provisional in held:
        actual = positions[offset : offset + len(provisional)]
        offset += len(provisional)
        moved = moved or actual != provisional
        for (stream_id, _topic, record), event, position in zip(batch.planned(), batch.sealed, actual):
            if record is not None:
                record.position = position
            index.streams[stream_id] = StreamHead(event.version, event.hash)
        per_batch.append(actual)
    if not moved and positions and positions[0] == index.caught_up + 1:
        index.caught_up = positions[-1]
    return per_batch, moved


def not_recorded(held: list[tuple[Batch, list[int]]]) -> list[UUID]:
    """The executions among the held batches (completed, failed, re-executed), in order."""
    return [stream_id for batch, _ in held for stream_id, topic, _ in batch.planned() if topic in _EXECUTION_TOPICS]

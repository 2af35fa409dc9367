"""``WriteHost``: the small protocol through which the write side reaches its ledger.

The write side never imports the facade that drives it (``ledger.ledger.Ledger``): that
would point an import up the layers and tie every write module to everything the facade
wires. It reads state from ``index`` (the inline projection) and appends through
``commit`` while holding ``writing()``; ``Ledger`` implements the protocol.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from ledger.store import EventStore
from ledger.write.batch import Batch
from projections.inline import InlineIndex

__all__ = ["WriteHost"]


class WriteHost(Protocol):
    index: InlineIndex
    store: EventStore
    url: str

    @property
    def actor(self) -> str:
        """Who the execution being recorded runs as (the run record's ``actor``)."""
        ...

    def writing(self) -> AbstractContextManager[None]:
        """The ledger's write lock: plans read the index and commit under it."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Hold the writes made inside for one transaction at the end (``Ledger.batch``)."""
        ...

    def commit(self, batch: Batch) -> list[int]:
        """Append ``batch`` atomically and apply it to the index; returns the positions."""
        ...

    def refresh(self) -> int:
        """Catch the index up with records other writers appended."""
        ...

"""What a backend whose writers take one lock through commit answers about positions.

SQLite (and ``memory://``) append under one writer lock: positions are given in commit order
without holes, every record's seal (v2) links it to the one before it, and every append moves
the version index's tracking row. So the head is the last position, a range of positions
holds exactly that many records, and there are no checkpoints to make or read. PostgreSQL's
concurrent writers answer these differently (``ledger.store.postgres``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SingleWriterLog"]


class SingleWriterLog:
    """Mixin for backends with a ``recorder`` whose appends commit one at a time, in position order."""

    recorder: Any
    #: One append at a time: ``Ledger.commit`` keeps its lock through ``append``.
    concurrent_appends = False

    def head(self) -> int:
        """The last position: one writer at a time commits, in position order."""
        return self.recorder.max_notification_id() or 0

    def index_live_after(self) -> None:
        return None  # every append moves the tracking row itself

    def records_between(self, after: int, upto: int) -> int:
        return max(0, upto - after)  # positions run without holes

    def checkpoints(self) -> list[tuple[int, int, int, str, list[int]]]:
        return []  # seal v2 chains every record to the one before it

    def checkpoint(self, at_least: int = 1) -> None:
        return None

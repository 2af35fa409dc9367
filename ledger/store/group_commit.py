"""Group commit: batches that arrive while a commit is under way share the next transaction.

Threads of one process that append at the same time (``CallableRegistry.map`` over a thread
pool, ``aexecute`` calls) would each pay a transaction: its round trips, its commit record and
its WAL flush. Here the first thread to arrive commits (the *leader*); every batch that arrives
meanwhile waits in the queue, and when the leader is done, the first waiting thread becomes the
next leader and commits the whole queue in one transaction. Nobody waits on purpose: a group is
whatever piled up during one commit, so one thread alone commits as it did before.

Each batch stays atomic and learns its own outcome: the backend (``commit_many``) commits the
group in one transaction, and when any batch of it fails (a lost race, a refused batch), it
commits each batch of the group alone instead, so only that batch gets its error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["GroupCommit", "Request"]


class Request:
    """One batch in the queue: what to append, then its positions or its error."""

    __slots__ = ("item", "positions", "error", "lead", "_wake")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.positions: list[int] | None = None
        self.error: BaseException | None = None
        self.lead = False  # woken to commit the queue rather than with an outcome
        self._wake = threading.Event()

    def succeed(self, positions: list[int]) -> None:
        self.positions = positions
        self._wake.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake.set()

    @property
    def settled(self) -> bool:
        return self.positions is not None or self.error is not None

    def outcome(self) -> list[int]:
        if self.error is not None:
            raise self.error
        assert self.positions is not None
        return self.positions


class GroupCommit:
    """The queue and the leader hand-over; ``commit_many(requests)`` settles every request it is given."""

    def __init__(self, commit_many: Callable[[list[Request]], None]) -> None:
        self._commit_many = commit_many
        self._lock = threading.Lock()
        self._queue: list[Request] = []
        self._busy = False

    def submit(self, item: Any) -> list[int]:
        """Append ``item`` in the next group; returns its positions or raises its own error."""
        request = Request(item)
        with self._lock:
            self._queue.append(request)
            lead = not self._busy
            self._busy = True
        if not lead:
            request._wake.wait()
            if not request.lead:
                return request.outcome()
        with self._lock:  # the leader takes everything queued so far, its own batch included
            group, self._queue = self._queue, []
        try:
            self._commit_many(group)
        except BaseException as exc:  # every batch of the group must hear something
            for r in group:
                if not r.settled:
                    r.fail(exc)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor._wake.set()
                else:
                    self._busy = False
        return request.outcome()

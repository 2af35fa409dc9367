"""Durable followers: ``Ledger.follow(name, handler, *, types=None)``.

A follower hands every log record after the position its name last acknowledged to its
handler, as a fact (``ledger.reactions.facts``), in log order, in its own thread: first
everything the log holds (``follow`` returns when that is done), then whatever any process
appends, until the ledger is closed. It wakes on this ledger's own commits at once, on other
processes' appends through PostgreSQL LISTEN/NOTIFY or, on SQLite, by polling.

One follower at a time holds a name (``EventStore.hold_follower``: an advisory lock of the
PostgreSQL session, an ``flock`` beside a SQLite file, a set for ``memory://``); a second
``follow`` of a held name, in any process, raises ``FollowerHeldError`` at once rather than
wait (a waiting follower would hide a deployment mistake: two workers meant to share the
work). The lock dies with its holder, so a crashed follower never keeps the name; its
successor starts after the last position acknowledged, read once the name is held.

Delivery guarantees, per follower name:

- **exactly once** for an event whose handler writes to the same ``Ledger`` object (for
  instance executes a function on the default ledger the follower belongs to): each batch
  the handler commits carries the acknowledgement of that event's position in its own
  transaction, so the writes and "handled" commit together or not at all. A handler that
  commits several batches has the event counted as handled from the first of them on; to
  keep the whole reaction atomic, make it one write (one ``execute``);
- **at least once** otherwise: positions are acknowledged after each page of records
  (and when the follower stops), so a process killed mid-page sees the records after its
  last acknowledgement again when it restarts. Such handlers should be idempotent.

A handler that raises is logged and the follower moves on (the event counts as handled).

The follower reads only through the store's log readers (``EventStore.read_columns``,
the same pages the analytics catch-up reads) and keeps its position in the store
(``follower_position`` / ``acknowledge``), so a position the store skips (a PostgreSQL
sequence gap) is simply never delivered, and whatever rule the store uses to hold back
records that may still be committing applies here unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any

from ledger.errors import ReactionError
from ledger.reactions.facts import fact_of_state, fact_types_of_topic

__all__ = ["Follower"]

log = logging.getLogger(__name__)

#: Records read per page (and acknowledged together, for handlers that do not write).
PAGE = 1_000
#: Seconds between looks at the log when nothing woke the follower (SQLite: other processes).
POLL_SECONDS = 0.1


class Follower:
    """One named follower of one ledger: its position, its thread, its handler."""

    def __init__(
        self,
        ledger: Any,
        name: str,
        handler: Callable[[Any], Any],
        types: Iterable[str] | None = None,
        *,
        poll: float = POLL_SECONDS,
        page: int = PAGE,
    ) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ReactionError(f"name: expected a non-empty follower name of at most 200 characters, got {name!r}")
        if not callable(handler):
            raise ReactionError(f"handler: expected a function of one event, got {handler!r}")
        if types is not None:
            if isinstance(types, str):
                types = [types]
            types = list(types)
            for t in types:
                if not isinstance(t, str) or not t:
                    raise ReactionError(f"types: expected event type names or globs such as 'entity.*', got {t!r}")
        if not ledger.store.create:
            raise ReactionError(
                f"follow({name!r}): ledger {ledger.url!r} was opened with create=False; a follower records its position"
            )
        #: Held until the thread ends: a second follower of the name, anywhere, is refused, so
        #: no record is delivered twice; the position is read only once the name is held.
        self._release: Callable[[], None] | None = ledger.store.hold_follower(name)
        self.ledger = ledger
        self.name = name
        self.handler = handler
        self.types: tuple[str, ...] | None = None if types is None else tuple(types)
        self.poll = poll
        self.page = page
        self.position = ledger.store.follower_position(name)
        self.delivered = 0
        self._acknowledged = self.position
        self._is_async = inspect.iscoroutinefunction(getattr(handler, "__func__", handler))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wanted_topics: dict[str, bool] = {}
        self._classes: dict[str, Any] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"ledger-follow-{name}", daemon=True)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Follower:
        """Start the thread and return once it has delivered what the log holds now."""
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            raise self._failure
        return self

    def wake(self) -> None:
        """Look at the log now (this ledger committed)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the event being handled; acknowledge what was delivered. Idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
        if not self._thread.is_alive() and self._thread.ident is None:
            self._let_go()  # never started

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __repr__(self) -> str:
        return f"<Follower {self.name!r} position={self.position} delivered={self.delivered}>"

    # ------------------------------------------------------------ the thread
    def _run(self) -> None:
        listener = None
        try:
            try:
                self._catch_up()
                listener = self.ledger.store.listen()
            except BaseException as exc:
                self._failure = exc
                return
            finally:
                self._ready.set()
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    if self._catch_up():
                        continue
                except Exception:  # the store went away for a moment: try again later
                    log.exception("follower %r: reading the log failed; retrying", self.name)
                if listener is not None:
                    listener.wait(self.poll)
                else:
                    self._wake.wait(self.poll)
        finally:
            if listener is not None:
                listener.close()
            if self._loop is not None:
                self._loop.close()
            self._let_go()

    def _let_go(self) -> None:
        """Release the name (after the last acknowledgement); idempotent."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def _catch_up(self) -> int:
        """Deliver every record after ``position``; returns how many records were read."""
        store = self.ledger.store
        read = 0
        try:
            while not self._stop.is_set():
                page = store.read_columns(self.position + 1, self.page)
                if not len(page):
                    break
                for position, topic, state in zip(page.positions, page.topics, page.states):
                    if self._stop.is_set():
                        break
                    if self._may_want(topic):
                        fact = fact_of_state(position, topic, state, self._classes)
                        if fact is not None and self._wants(fact.type):
                            self._deliver(fact, position)
                    self.position = position
                    read += 1
                self._acknowledge()
        finally:
            self._acknowledge()
        return read

    def _acknowledge(self) -> None:
        if self.position > self._acknowledged:
            self.ledger.store.acknowledge(self.name, self.position)
            self._acknowledged = self.position

    def _may_want(self, topic: str) -> bool:
        """Whether a record of ``topic`` can become a fact of a wanted type (saves decoding the rest)."""
        if self.types is None:
            return True
        known = self._wanted_topics.get(topic)
        if known is None:
            kinds = fact_types_of_topic(topic)
            known = self._wanted_topics[topic] = kinds is None or any(self._wants(k) for k in kinds)
        return known

    def _wants(self, kind: str) -> bool:
        types = self.types
        return types is None or any(kind == t or fnmatchcase(kind, t) for t in types)

    def _deliver(self, fact: Any, position: int) -> None:
        ledger = self.ledger
        ledger.begin_tracking(self.name, position)
        try:
            if self._is_async:
                if self._loop is None:
                    self._loop = asyncio.new_event_loop()
                self._loop.run_until_complete(self.handler(fact))
            else:
                result = self.handler(fact)
                if inspect.isawaitable(result):
                    if self._loop is None:
                        self._loop = asyncio.new_event_loop()
                    self._loop.run_until_complete(result)
        except Exception:
            log.exception("follower %r: handler failed on %s at position %d", self.name, fact.type, position)
        finally:
            if ledger.end_tracking():
                self._acknowledged = max(self._acknowledged, position)  # committed with the handler's writes
        self.delivered += 1

"""The event bus: subscriptions, the ``on`` decorator, ``emit``, and delivery of ledger facts.

Semantics kept from the original design's event module, which user code relies on:

- a handler subscribes by event class (``@on(StudentCreated)``, subclasses included), by a
  glob on ``event.type`` (``@on(pattern="student.*")``), by a predicate
  (``@on(predicate=fn)``, or a lambda given as the only positional argument), or by several
  of these at once (then all must match);
- handlers run in priority order (higher first), then in the order they subscribed;
- ``await emit(event)`` returns once every matching handler has run: async handlers are
  awaited, sync handlers called, in order; events they emit in turn are handled before
  ``emit`` returns, so a cascade has finished when the first ``emit`` does;
- a handler that raises is logged (``logging``) and the others still run.

The ledger publishes its facts (``ledger.reactions.facts``) through ``publish`` after each
commit, from the committing thread, in plain (non-async) code: sync handlers run at once;
async handlers run on the thread's running event loop as tasks (``emit_and_wait`` waits for
them) or, with no loop running, to completion on a fresh one. A fact published while this
thread is already delivering (a handler that executes a function) is queued and delivered
after the current handler returns, so cascades never recurse without bound and each
handler sees facts in commit order.

There is one bus per process (``ledger._process.event_bus``); ``get_event_bus`` makes it.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from ledger import _process
from ledger.errors import ReactionError
from ledger.reactions.events import Event, EventPriority

__all__ = ["EventBus", "Subscription", "emit", "emit_and_wait", "get_event_bus", "on"]

log = logging.getLogger(__name__)

_HISTORY = 1_000
_order = itertools.count()


@dataclass(eq=False)
class Subscription:
    """One handler and what it listens to: event classes, a glob on ``type``, a predicate."""

    handler: Callable[..., Any]
    event_types: tuple[type, ...] = ()
    pattern: str | None = None
    predicate: Callable[[Any], bool] | None = None
    priority: int = EventPriority.NORMAL
    weak: bool = False
    is_async: bool = field(init=False)
    order: int = field(init=False, default_factory=lambda: next(_order))
    _ref: Any = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        target = getattr(self.handler, "__func__", self.handler)
        self.is_async = inspect.iscoroutinefunction(target)
        if self.weak:  # the subscription ends when the handler's owner goes away
            self._ref = weakref.WeakMethod(self.handler) if inspect.ismethod(self.handler) else weakref.ref(self.handler)
            self.handler = None  # type: ignore[assignment]

    def get_handler(self) -> Callable[..., Any] | None:
        return self._ref() if self.weak else self.handler

    def matches(self, event: Any) -> bool:
        if self.event_types and not isinstance(event, self.event_types):
            return False
        if self.pattern is not None and not fnmatchcase(str(getattr(event, "type", "")), self.pattern):
            return False
        if self.predicate is not None:
            try:
                return bool(self.predicate(event))
            except Exception:  # a predicate that cannot judge this event does not match it
                log.debug("reactions: predicate %r raised on %s", self.predicate, getattr(event, "type", event))
                return False
        return True


class EventBus:
    """The process's subscriptions and the two ways events reach them: ``emit`` and ``publish``."""

    def __init__(self, history_size: int = _HISTORY) -> None:
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._history: deque[Any] = deque(maxlen=history_size)
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ subscribing
    @property
    def subscribed(self) -> bool:
        """True when any handler listens (the ledger publishes nothing otherwise)."""
        return bool(self._subscriptions)

    def subscribe(
        self,
        handler: Callable[..., Any],
        event_types: type | Iterable[type] | None = None,
        pattern: str | None = None,
        predicate: Callable[[Any], bool] | None = None,
        priority: int = EventPriority.NORMAL,
        weak: bool = False,
    ) -> Subscription:
        """Add ``handler`` for the events that match every filter given (at least one)."""
        if not callable(handler):
            raise ReactionError(f"handler: expected a function, got {handler!r}")
        if event_types is None:
            types: tuple[type, ...] = ()
        elif isinstance(event_types, type):
            types = (event_types,)
        else:
            types = tuple(event_types)
        for t in types:
            if not isinstance(t, type):
                raise ReactionError(f"event_types: expected event classes, got {t!r}")
        if pattern is not None and not isinstance(pattern, str):
            raise ReactionError(f"pattern: expected a glob string such as 'student.*', got {pattern!r}")
        if predicate is not None and not callable(predicate):
            raise ReactionError(f"predicate: expected a function of the event, got {predicate!r}")
        if not types and pattern is None and predicate is None:
            raise ReactionError("on(): give an event class, pattern= or predicate= (a handler must say what it listens to)")
        sub = Subscription(handler, types, pattern, predicate, int(priority), weak)
        with self._lock:
            subs = [*self._subscriptions, sub]
            subs.sort(key=lambda s: (-s.priority, s.order))
            self._subscriptions = subs  # replaced whole: delivery iterates a snapshot without locking
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions = [s for s in self._subscriptions if s is not subscription]

    def clear(self) -> None:
        """Drop every subscription (tests; an application shutting reactions down)."""
        with self._lock:
            self._subscriptions = []

    def _matching(self, event: Any) -> list[tuple[Subscription, Callable[..., Any]]]:
        found = []
        dead = []
        for sub in self._subscriptions:
            handler = sub.get_handler()
            if handler is None:
                dead.append(sub)
            elif sub.matches(event):
                found.append((sub, handler))
        for sub in dead:
            self.unsubscribe(sub)
        return found

    # ------------------------------------------------------------ emitting
    async def emit(self, event: Event[Any]) -> Event[Any]:
        """Run every matching handler on ``event`` (awaiting async ones), in order; returns the event."""
        self._history.append(event)
        for sub, handler in self._matching(event):
            try:
                if sub.is_async:
                    await handler(event)
                else:
                    result = handler(event)
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                log.exception("reactions: handler %s failed on %s event %s", _name(handler), event.type, event.id)
        return event

    # ------------------------------------------------------------ ledger facts
    def publish(self, events: list[Any]) -> None:
        """Deliver events from plain code (the ledger's facts after a commit); see the module doc."""
        local = self._local
        queue: deque[Any] | None = getattr(local, "queue", None)
        if queue is not None:  # a handler of this thread is running: deliver after it returns
            queue.extend(events)
            return
        queue = local.queue = deque(events)
        try:
            while queue:
                event = queue.popleft()
                self._history.append(event)
                for sub, handler in self._matching(event):
                    self._call(sub, handler, event)
        finally:
            local.queue = None

    def _call(self, sub: Subscription, handler: Callable[..., Any], event: Any) -> None:
        try:
            if not sub.is_async:
                result = handler(event)
                if not inspect.isawaitable(result):
                    return
                coroutine = result
            else:
                coroutine = handler(event)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                asyncio.run(_awaited(coroutine))
                return
            task = loop.create_task(self._logged(coroutine, handler, event))
            self._tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)
        except Exception:
            log.exception("reactions: handler %s failed on %s event %s", _name(handler), event.type, event.id)

    @staticmethod
    async def _logged(coroutine: Any, handler: Callable[..., Any], event: Any) -> None:
        try:
            await coroutine
        except Exception:
            log.exception("reactions: handler %s failed on %s event %s", _name(handler), event.type, event.id)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the async fact handlers scheduled on this loop (and those they schedule)."""
        loop = asyncio.get_running_loop()
        while True:
            pending = [t for t in self._tasks if t.get_loop() is loop and not t.done()]
            if not pending:
                return
            done, not_done = await asyncio.wait(pending, timeout=timeout)
            if not_done:
                return

    # ------------------------------------------------------------ reading back
    def get_history(
        self, limit: int | None = None, event_type: str | None = None, since: datetime | None = None
    ) -> list[Any]:
        """The last events this bus delivered (at most ``history_size``), oldest first."""
        events = list(self._history)
        if event_type is not None:
            events = [e for e in events if e.type == event_type]
        if since is not None:
            events = [e for e in events if e.timestamp >= since]
        return events[-limit:] if limit else events


async def _awaited(coroutine: Any) -> None:
    await coroutine


def _name(handler: Callable[..., Any]) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"


_bus_lock = threading.Lock()


def get_event_bus() -> EventBus:
    """The process's event bus (``ledger._process.event_bus``), made on first use."""
    bus = _process.event_bus
    if bus is None:
        with _bus_lock:
            if _process.event_bus is None:
                _process.event_bus = EventBus()
            bus = _process.event_bus
    return bus  # type: ignore[no-any-return]


def on(
    *event_types: Any,
    pattern: str | None = None,
    predicate: Callable[[Any], bool] | None = None,
    priority: int = EventPriority.NORMAL,
    weak: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Subscribe the decorated function (sync or async) to matching events; returns it unchanged.

    ``@on(StudentCreated)``, ``@on(pattern="student.*")``, ``@on(predicate=fn)``, and, as the
    original allowed, ``@on(lambda e: ...)``: a positional argument that is a function rather
    than a class is taken as the predicate.
    """
    classes: list[type] = []
    for arg in event_types:
        if isinstance(arg, type):
            classes.append(arg)
        elif callable(arg) and predicate is None:
            predicate = arg
        else:
            raise ReactionError(f"on(): expected event classes or one predicate function, got {arg!r}")

    def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
        get_event_bus().subscribe(handler, classes or None, pattern, predicate, priority, weak)
        return handler

    return decorator


async def emit(event: Event[Any], *, record: bool = False, ledger: Any = None) -> Event[Any]:
    """Deliver ``event`` to its handlers and return it once they (and what they emitted) are done.

    ``record=True`` first appends a ``reaction.emitted`` event to ``ledger`` (default: the
    process's default ledger), so the cascade is in the audit log and durable followers in
    any process receive it; if that append fails, the error is raised and no handler runs.
    """
    if not isinstance(event, Event):
        raise ReactionError(f"event: expected a ledger.reactions.Event, got {type(event).__name__}")
    if record:
        from ledger.reactions.recording import record_event

        record_event(event, ledger)
    return await get_event_bus().emit(event)


async def emit_and_wait(event: Event[Any], timeout: float | None = None, *, record: bool = False) -> list[Event[Any]]:
    """Emit ``event`` and return the events of its cascade: those with ``parent_id`` equal to its
    ``id`` or sharing its ``lineage_id`` (itself included), once every handler, and every async
    fact handler scheduled meanwhile on this loop, has finished (at most ``timeout`` seconds
    for the latter)."""
    bus = get_event_bus()
    seen: list[Event[Any]] = []

    def related(e: Any) -> bool:
        return getattr(e, "parent_id", None) == event.id or getattr(e, "lineage_id", None) == event.lineage_id

    collector = bus.subscribe(seen.append, predicate=related, priority=EventPriority.CRITICAL + 1)
    try:
        await emit(event, record=record)
        await bus.drain(timeout)
    finally:
        bus.unsubscribe(collector)
    return seen

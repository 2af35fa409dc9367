"""Reactions: handlers on events, the ledger's own facts, and durable followers.

Code written for the original design's event module (``abstractions.events.events``) runs
on these names: define events by subclassing ``Event`` or a lifecycle class
(``class StudentCreated(CreatedEvent[Student])``), subscribe with ``@on(...)``, and
``await emit(event)``. The ledger publishes its facts (``entity.registered``,
``execution.completed``, ...) to the same handlers after each commit
(``ledger.reactions.facts``), and ``Ledger.follow`` delivers the log durably
(``ledger.reactions.follow``).
"""

from ledger.reactions.bus import (
    EventBus,
    Subscription,
    emit,
    emit_and_wait,
    get_event_bus,
    on,
)
from ledger.reactions.events import (
    CreatedEvent,
    CreatingEvent,
    DeletedEvent,
    DeletingEvent,
    Event,
    EventPhase,
    EventPriority,
    LedgerFact,
    ModifiedEvent,
    ModifyingEvent,
    ProcessedEvent,
    ProcessingEvent,
    ValidatedEvent,
    ValidatingEvent,
)
from ledger.reactions.facts import FACT_TYPES
from ledger.reactions.follow import Follower

__all__ = [
    "FACT_TYPES",
    "CreatedEvent",
    "CreatingEvent",
    "DeletedEvent",
    "DeletingEvent",
    "Event",
    "EventBus",
    "EventPhase",
    "EventPriority",
    "Follower",
    "LedgerFact",
    "ModifiedEvent",
    "ModifyingEvent",
    "ProcessedEvent",
    "ProcessingEvent",
    "Subscription",
    "ValidatedEvent",
    "ValidatingEvent",
    "emit",
    "emit_and_wait",
    "get_event_bus",
    "on",
]

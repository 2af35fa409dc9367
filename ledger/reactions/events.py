"""The event classes of the original design's event module, and the facts the ledger publishes.

Code written for ``abstractions.events.events`` defines its events by subclassing these
(``class StudentCreated(CreatedEvent[Student])``) and reads the same fields (``type``,
``subject_type``, ``subject_id``, ``metadata``, ``timestamp``, ``id``, ``phase``, ...), so the
names, defaults and the "subject type and id together or neither" rule are kept. Events are
signals that name what they are about by id; they never carry the data itself.

``LedgerFact`` is what the ledger itself publishes after a commit (and what durable followers
receive): one per log record, with its ``position``.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timezone
from enum import Enum, IntEnum
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CreatedEvent",
    "CreatingEvent",
    "DeletedEvent",
    "DeletingEvent",
    "Event",
    "EventPhase",
    "EventPriority",
    "LedgerFact",
    "ModifiedEvent",
    "ModifyingEvent",
    "ProcessedEvent",
    "ProcessingEvent",
    "ValidatedEvent",
    "ValidatingEvent",
]

T = TypeVar("T")


class EventPhase(str, Enum):
    """Where the operation an event reports stands."""

    PENDING = "pending"
    STARTED = "started"
    PROGRESS = "progress"
    COMPLETING = "completing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class EventPriority(IntEnum):
    """Handler order: higher first; equal priorities run in the order they subscribed."""

    CRITICAL = 1000
    HIGH = 100
    NORMAL = 10
    LOW = 1


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Event(BaseModel, Generic[T]):
    """A signal about something that happened to a subject, named by type and id.

    ``subject_type`` is the subject's class (``Student``); where the class cannot be
    imported (a follower in another process) the ledger's facts give its stored type name.
    """

    model_config = ConfigDict(use_enum_values=True, arbitrary_types_allowed=True)

    id: UUID = Field(default_factory=uuid4)
    type: str = "event"
    phase: EventPhase = EventPhase.PENDING
    subject_type: builtins.type | str | None = None  # `type` is a field name here
    subject_id: UUID | None = None
    actor_type: builtins.type | str | None = None
    actor_id: UUID | None = None
    context: dict[str, UUID] = Field(default_factory=dict)
    timestamp: datetime = Field(default_factory=_now)
    lineage_id: UUID = Field(default_factory=uuid4)
    parent_id: UUID | None = None
    root_id: UUID | None = None
    children_ids: list[UUID] = Field(default_factory=list)
    pending_children: int = 0
    completed_children: int = 0
    failed_children: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    duration_ms: float | None = None

    @model_validator(mode="after")
    def _subject_and_actor_whole(self) -> Event[T]:
        # A half reference names nothing a handler could look up.
        if (self.subject_type is None) != (self.subject_id is None):
            raise ValueError("subject_type and subject_id must be set together (or neither)")
        if (self.actor_type is None) != (self.actor_id is None):
            raise ValueError("actor_type and actor_id must be set together (or neither)")
        return self

    def evolve(self, **changes: Any) -> Event[T]:
        """The next event of the same operation: a new ``id``, the same ``lineage_id``."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data["id"] = uuid4()
        data.update(changes)
        return type(self)(**data)

    def to_completed(self, **changes: Any) -> Event[T]:
        return self.evolve(phase=EventPhase.COMPLETED, **changes)

    def to_failed(self, error: str, **changes: Any) -> Event[T]:
        return self.evolve(phase=EventPhase.FAILED, error=error, **changes)


class CreatingEvent(Event[T], Generic[T]):
    type: str = "creating"
    phase: EventPhase = EventPhase.STARTED


class CreatedEvent(Event[T], Generic[T]):
    type: str = "created"
    phase: EventPhase = EventPhase.COMPLETED
    created_id: UUID | None = None


class ModifyingEvent(Event[T], Generic[T]):
    type: str = "modifying"
    phase: EventPhase = EventPhase.STARTED
    fields: list[str] = Field(default_factory=list)


class ModifiedEvent(Event[T], Generic[T]):
    type: str = "modified"
    phase: EventPhase = EventPhase.COMPLETED
    fields: list[str] = Field(default_factory=list)
    old_values: dict[str, Any] = Field(default_factory=dict)
    new_values: dict[str, Any] = Field(default_factory=dict)


class DeletingEvent(Event[T], Generic[T]):
    type: str = "deleting"
    phase: EventPhase = EventPhase.STARTED


class DeletedEvent(Event[T], Generic[T]):
    type: str = "deleted"
    phase: EventPhase = EventPhase.COMPLETED


class ProcessingEvent(Event[T], Generic[T]):
    type: str = "processing"
    phase: EventPhase = EventPhase.STARTED
    process_name: str
    input_ids: list[UUID] = Field(default_factory=list)


class ProcessedEvent(Event[T], Generic[T]):
    type: str = "processed"
    phase: EventPhase = EventPhase.COMPLETED
    process_name: str
    output_ids: list[UUID] = Field(default_factory=list)
    result_summary: dict[str, Any] | None = None


class ValidatingEvent(Event[T], Generic[T]):
    type: str = "validating"
    phase: EventPhase = EventPhase.STARTED
    validation_type: str = "schema"


class ValidatedEvent(Event[T], Generic[T]):
    type: str = "validated"
    phase: EventPhase = EventPhase.COMPLETED
    validation_type: str = "schema"
    is_valid: bool
    validation_errors: list[str] = Field(default_factory=list)


class LedgerFact(Event[Any]):
    """A fact the ledger recorded: one log record, published after its batch committed.

    ``type`` is one of ``entity.registered``, ``entity.versioned``, ``entity.detached``,
    ``entity.attached``, ``entity.erased``, ``execution.completed``, ``execution.failed``
    (and, for followers, any other record type as stored). ``subject_id`` is the entity
    version's ecs_id (``entity.erased``: the lineage id) or the execution id; ``position``
    the record's place in the log; ``id`` is derived from the record's seal, the same in every
    process that sees the record (a key for idempotent handlers). Like every event it names things by id and carries no
    entity data: read the entity (``EntityRegistry``, ``get("@<id>")``) when a handler needs it.
    """

    phase: EventPhase = EventPhase.COMPLETED
    position: int
    entity_lineage_id: UUID | None = None
    root_ecs_id: UUID | None = None
    is_root: bool | None = None
    function_name: str | None = None

"""``Call``: everything one execution needs, from preparation to recording.

Created per call, so concurrent ``aexecute`` calls never share anything but the ledger
(whose writes are locked).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from uuid import UUID

from ledger.events.bodies import input_record
from ledger.model.entity import Entity
from ledger.model.tree import EntityTree
from ledger.write.functions import FunctionMetadata
from ledger.write.host import WriteHost
from ledger.write.run_record import run_fields

__all__ = ["Call", "CallInput"]


@dataclass(slots=True)
class CallInput:
    param: str
    entity: Entity | None
    ecs_id: UUID | None
    address: str | None


@dataclass(slots=True)
class Call:
    """Everything one call needs, from preparation to recording."""

    ledger: WriteHost
    meta: FunctionMetadata
    execution_id: UUID
    kwargs: dict[str, Any] = field(default_factory=dict)  # what the function is called with
    config_kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: list[CallInput] = field(default_factory=list)
    input_entity_ids: list[UUID] = field(default_factory=list)
    config_ids: list[UUID] = field(default_factory=list)
    copies: list[Entity] = field(default_factory=list)  # the copies passed for entity arguments
    trees: list[EntityTree] = field(default_factory=list)  # pre-run trees of the root copies
    read_at: int = 0  # the index position when inputs were read (erasures up to it were tombstones)
    #: Each ``@`` reference given, pinned to the version it read: ``"@<ecs_id>[.path below it]"``.
    pinned: dict[str, str] = field(default_factory=dict)
    #: The arguments as recorded (``arguments.record_arguments``); None when one cannot be stored as JSON.
    arguments: dict[str, Any] | None = None
    #: The ConfigEntity arguments by parameter (None: left at its default).
    configs: dict[str, Any] = field(default_factory=dict)
    #: The memo key (functions registered with ``cache=True`` whose arguments could be recorded).
    cache_key: str | None = None
    #: Who runs it (the ledger's actor when the call was prepared, in the caller's context).
    actor: str = ""
    #: When the function started (or the memo lookup, for a cache hit); UTC.
    started_at: datetime | None = None
    #: When the function returned or raised (before its outputs were recorded); UTC.
    finished_at: datetime | None = None

    def start(self) -> None:
        """Mark the moment the run starts (the run record's ``started_at``)."""
        self.started_at = datetime.now(timezone.utc)

    def stop(self) -> None:
        """Mark the moment the function returned or raised (the run record's ``finished_at``)."""
        self.finished_at = datetime.now(timezone.utc)

    def run_record(self) -> dict[str, Any]:
        """The run record of this call (``run_record.run_fields``); finished now unless ``stop`` said when."""
        return run_fields(self.meta, self.actor, self.started_at, self.finished_at or datetime.now(timezone.utc))

    def bound(self) -> Callable[..., Any]:
        """The function with its ConfigEntity parameters bound (``functools.partial``)."""
        fn = self.meta.func
        return functools.partial(fn, **self.config_kwargs) if self.config_kwargs else fn

    def input_records(self) -> list[dict[str, Any]]:
        return [
            input_record(
                param_name=i.param,
                ecs_id=i.entity.ecs_id if i.entity is not None else i.ecs_id,
                address=i.address,
            )
            for i in self.inputs
        ]

"""Log records as the facts handlers receive: one ``LedgerFact`` per record.

Two sources, one mapping: a batch the ledger has just committed (bodies still as Python
values) and a page of the stored log a follower reads (bodies as JSON). An
``entity.version`` record becomes

- ``entity.detached`` / ``entity.attached`` when it is the version that left or joined a tree,
- ``entity.registered`` when it is the first version of its lineage (registration, or an
  entity an execution created),
- ``entity.versioned`` otherwise (a new version of an existing lineage);

``entity.erased``, ``execution.completed`` and ``execution.failed`` keep their names. A
``reaction.emitted`` record becomes the user's own event again (its class imported when it
can be, else a plain ``Event``) for followers; in this process ``emit`` delivered it already.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID, SafeUUID

import orjson

from ledger import _process
from ledger.events.bodies import (
    ENTITY_ERASED,
    ENTITY_VERSION,
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    EXECUTION_REEXECUTED,
    REACTION_EMITTED,
)
from ledger.model.function_execution import FunctionExecution
from ledger.reactions.events import Event, EventPhase, LedgerFact

__all__ = [
    "FACT_TYPES",
    "fact_of_record",
    "fact_of_state",
    "fact_types_of_topic",
    "facts_of_batch",
    "recorded_event",
    "resolve_type",
]

log = logging.getLogger(__name__)

_EXECUTION_TOPICS = frozenset({EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_REEXECUTED})

#: Every fact type the ledger publishes, by the log record type it comes from.
FACT_TYPES: dict[str, tuple[str, ...]] = {
    ENTITY_VERSION: ("entity.registered", "entity.versioned", "entity.detached", "entity.attached"),
    ENTITY_ERASED: ("entity.erased",),
    EXECUTION_COMPLETED: ("execution.completed",),
    EXECUTION_FAILED: ("execution.failed",),
    EXECUTION_REEXECUTED: ("execution.reexecuted",),
}


def fact_types_of_topic(topic: str) -> tuple[str, ...] | None:
    """The fact types a record of ``topic`` can become; None when any (a user's event)."""
    if topic == REACTION_EMITTED:
        return None
    return FACT_TYPES.get(topic, (topic,))


_new = object.__new__
_set = object.__setattr__
_SAFE = SafeUUID.unknown


def _uuid(value: Any) -> UUID | None:
    """An id as stored (UUID, or its text with or without dashes) as a UUID.

    Built as ``UUID.__init__`` would build it, without its argument checks: the text comes
    from records this library wrote (half the cost of ``UUID(text)``, measured)."""
    if value is None or type(value) is UUID:
        return value
    return _uuid_of_int(int(value.replace("-", ""), 16))


def _uuid_of_int(number: int) -> UUID:
    u = _new(UUID)
    _set(u, "int", number)
    _set(u, "is_safe", _SAFE)
    return u


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def resolve_type(topic: str | None, cache: dict[str, Any] | None = None) -> type | str | None:
    """The class a stored type name (``module:qualname``) names, or the name when it cannot be imported.

    ``cache`` (a follower's) remembers the answer, so a name that does not import is tried once.
    """
    if topic is None:
        return None
    cls = _process.topics.get(topic)
    if cls is not None:
        return cls
    if cache is not None:
        found = cache.get(topic)
        if found is None:
            found = cache[topic] = resolve_type(topic)
        return found
    module_name, _, qualname = topic.partition(":")
    if not qualname:
        return topic
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:  # not importable here: handlers get the stored name
        return topic
    return obj if isinstance(obj, type) else topic


#: The fields every fact shares (the mutable ones are made fresh for each fact).
_DEFAULTS: dict[str, Any] = {
    "phase": EventPhase.COMPLETED,
    "actor_type": None,
    "actor_id": None,
    "parent_id": None,
    "root_id": None,
    "pending_children": 0,
    "completed_children": 0,
    "failed_children": 0,
    "error": None,
    "duration_ms": None,
    "entity_lineage_id": None,
    "root_ecs_id": None,
    "is_root": None,
    "function_name": None,
}


def _fact(seal: str, **values: Any) -> LedgerFact:
    """A ``LedgerFact`` built as ``model_construct`` builds one, without its per-field loop.

    Every field is given: left to pydantic, each default factory is first asked whether it
    takes the validated data, which inspects its signature every time (95% of a follower's
    time, measured); ``model_construct`` with every field given still cost two thirds of the
    rest. The values come from records the library wrote itself, so nothing is validated.
    The fact's ``id`` is the first 128 bits of its record's seal: the same record gives the
    same id in this process and in every follower (a key for idempotent handlers).
    """
    fact_id = _uuid_of_int(int(seal[:32], 16))
    fields = {**_DEFAULTS, "id": fact_id, "lineage_id": fact_id, "context": {}, "children_ids": [], "metadata": {}, **values}
    fact = _new(LedgerFact)
    _set(fact, "__dict__", fields)
    _set(fact, "__pydantic_fields_set__", set(values))
    _set(fact, "__pydantic_extra__", None)
    _set(fact, "__pydantic_private__", None)
    return fact


def fact_of_record(
    position: int, topic: str, body: dict[str, Any], seal: str, cache: dict[str, Any] | None = None
) -> Event[Any] | None:
    """The fact a record stands for (None for a record of a type this library does not know).

    ``seal`` is the record's hash (its fact's id); ``cache``: see ``resolve_type``."""
    if topic == ENTITY_VERSION:
        if body.get("detached_from") is not None:
            kind = "entity.detached"
        elif body.get("attached_to") is not None:
            kind = "entity.attached"
        elif body.get("previous_ecs_id") is None:
            kind = "entity.registered"
        else:
            kind = "entity.versioned"
        entity_type = body["entity_type"]
        return _fact(
            seal,
            type=kind,
            subject_type=resolve_type(entity_type, cache),
            subject_id=_uuid(body["ecs_id"]),
            timestamp=_time(body["recorded_at"]),
            position=position,
            entity_lineage_id=_uuid(body["lineage_id"]),
            root_ecs_id=_uuid(body.get("tree_root")),
            is_root=bool(body.get("is_root")),
            metadata={"cause": body.get("cause"), "entity_type": entity_type},
        )
    if topic in _EXECUTION_TOPICS:
        if topic == EXECUTION_REEXECUTED:  # the verdict of running a recorded execution again
            metadata = {"matches": body["matches"], "reexecution_id": _uuid(body["reexecution_id"])}
        elif body.get("cache_hit"):
            metadata = {"cache_hit": True, "reused_execution_id": _uuid(body.get("reused_execution_id"))}
        else:
            metadata = {}
        return _fact(
            seal,
            type=topic,
            subject_type=FunctionExecution,
            subject_id=_uuid(body["execution_id"]),  # the execution run (again, for a re-execution)
            timestamp=_time(body["recorded_at"]),
            position=position,
            function_name=body["function_name"],
            error=None if topic == EXECUTION_COMPLETED else body.get("error_type"),
            metadata=metadata,
        )
    if topic == ENTITY_ERASED:
        return _fact(
            seal,
            type=topic,
            subject_type="lineage",
            subject_id=_uuid(body["lineage_id"]),
            timestamp=_time(body["recorded_at"]),
            position=position,
            entity_lineage_id=_uuid(body["lineage_id"]),
            metadata={"reason": body.get("reason")},
        )
    if topic == REACTION_EMITTED:
        return recorded_event(body, cache)
    return None


def facts_of_batch(records: Iterable[tuple[str, dict[str, Any], str]], positions: list[int]) -> list[Event[Any]]:
    """The facts of a committed batch, from its (topic, body, seal) records, in log order
    (``reaction.emitted`` left out: ``emit`` delivers it)."""
    out = []
    for (topic, body, seal), position in zip(records, positions):
        if topic == REACTION_EMITTED:
            continue
        fact = fact_of_record(position, topic, body, seal)
        if fact is not None:
            out.append(fact)
    return out


def fact_of_state(position: int, topic: str, state: bytes, cache: dict[str, Any] | None = None) -> Event[Any] | None:
    """``fact_of_record`` of a stored record (its sealed JSON body, which holds its hash)."""
    body = orjson.loads(state)
    return fact_of_record(position, topic, body, body["hash"], cache)


def recorded_event(body: dict[str, Any], cache: dict[str, Any] | None = None) -> Event[Any]:
    """A recorded user event, rebuilt as its own class where that class can be imported here."""
    data = dict(body.get("event") or {})
    for name in ("subject_type", "actor_type"):
        if isinstance(data.get(name), str):
            data[name] = resolve_type(data[name], cache)
    cls = resolve_type(body.get("event_class"), cache)
    if isinstance(cls, type) and issubclass(cls, Event):
        try:
            return cls.model_validate(data)
        except Exception as exc:  # the class changed since: the base fields still say what happened
            log.warning("reactions: recorded %s event %s no longer fits %s: %s", body.get("event_type"), body.get("event_id"), cls.__qualname__, exc)
    base = {name: data[name] for name in Event.model_fields if name in data}
    return Event.model_validate(base)

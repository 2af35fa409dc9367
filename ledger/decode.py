"""The raw columns of one stored record, checked before replay trusts them.

The store hands back whatever a database row holds, and a row can hold
anything once someone has edited the file: a stream id that is not a UUID, a
version that is text, a NULL or non-JSON payload, a payload of one event type
under another's topic. Replay must stop at such a record with one
``CorruptLogError`` that names its position and what is wrong, instead of the
``ValueError`` or ``KeyError`` of whichever line first touched it; ``verify``
is the tool that then reports every problem (``ledger.integrity``).

Unknown topics stay readable (a newer library may add event types): their
payload only has to be a sealed JSON object. The checks are type tests and
dict lookups, so replay does not slow down.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from .errors import CorruptLogError
from .events import ENTITY_ERASED, ENTITY_VERSION, EXECUTION_COMPLETED, EXECUTION_FAILED

__all__ = ["corrupt", "describe", "record_payload", "record_stream", "record_topic", "record_version"]

# Fields a payload of each known event type must have; a record whose payload
# lacks them was written as another type (an edited topic) or edited itself.
# The types of an entity.version's fields that the index keeps undecoded
# until a read needs them (the rest fail while the index reads them).
_REQUIRED: dict[str, tuple[str, ...]] = {
    ENTITY_VERSION: ("ecs_id", "entity_type"),
    ENTITY_ERASED: ("lineage_id", "reason"),
    EXECUTION_COMPLETED: ("execution_id", "function_name", "outputs"),
    EXECUTION_FAILED: ("execution_id", "function_name", "error_type"),
}


_ENTITY_TYPES: tuple[tuple[str, type], ...] = (
    ("entity_type", str),
    ("schema_version", int),
    ("is_root", bool),
    ("values", dict),
    ("children", dict),
    ("meta", dict),
)


def corrupt(position: int, what: str) -> CorruptLogError:
    """The one error for an undecodable record: position first, then what is wrong."""
    return CorruptLogError(f"corrupt record at position {position}: {what}", position)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def record_stream(position: int, value: Any, cache: dict[str, UUID]) -> UUID:
    """The stream id as a UUID (``cache`` maps texts already parsed)."""
    if type(value) is UUID:
        return value
    if type(value) is str:
        found = cache.get(value)
        if found is not None:
            return found
        try:
            found = cache[value] = UUID(value)
        except ValueError:
            pass
        else:
            return found
    raise corrupt(position, f"stream id {_short(value)} is not a UUID")


def record_version(position: int, value: Any) -> int:
    """The stream version: a positive integer (SQLite keeps whatever type was written)."""
    if type(value) is int and value >= 1:
        return value
    raise corrupt(position, f"stream version {_short(value)} is not a positive integer")


def record_topic(position: int, value: Any) -> str:
    if type(value) is str and value:
        return value
    raise corrupt(position, f"event type (topic) {_short(value)} is not a name")


def record_payload(position: int, topic: str, state: Any) -> dict[str, Any]:
    """The payload as a JSON object carrying its seal, with the fields its topic needs."""
    if state is None:
        raise corrupt(position, f"the {topic} record has no payload (NULL state)")
    try:
        payload = orjson.loads(state)
    except (orjson.JSONDecodeError, TypeError):
        raise corrupt(position, f"the payload of the {topic} record is not JSON") from None
    if type(payload) is not dict:
        raise corrupt(position, f"the payload of the {topic} record is a JSON {type(payload).__name__}, not an object")
    if type(payload.get("hash")) is not str:
        raise corrupt(position, f"the payload of the {topic} record has no seal (hash)")
    for name in _REQUIRED.get(topic, ()):
        if name not in payload:
            raise corrupt(
                position,
                f"the payload of the {topic} record has no {name!r} (its event type or payload was changed)",
            )
    if topic == ENTITY_VERSION:
        for name, kind in _ENTITY_TYPES:
            if type(payload.get(name)) is not kind:
                raise corrupt(position, f"field {name!r} of the {topic} record is not a JSON {kind.__name__}")
        for name in ("created_at", "recorded_at", "forked_at"):
            if type(payload.get(name)) is not str and not (name == "forked_at" and payload.get(name) is None):
                raise corrupt(position, f"field {name!r} of the {topic} record is not a time")
        personal = payload.get("personal")
        if personal is not None and (type(personal) is not list or not all(type(p) is str for p in personal)):
            raise corrupt(position, f"field 'personal' of the {topic} record is not a list of names")
    return payload


def describe(exc: BaseException) -> str:
    """What a decoding step that failed on a payload value found wrong, in a few words."""
    if isinstance(exc, KeyError):
        return f"field {exc.args[0]!r} is missing"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")

"""The raw columns of one stored record, checked before replay trusts them.

The store hands back whatever a database row holds, and a row can hold
anything once someone has edited the file: a stream id that is not a UUID, a
version that is text, a NULL or non-JSON payload, a payload of one event type
under another's topic. Replay must stop at such a record with one
``CorruptLogError`` that names its position and what is wrong, instead of the
``ValueError`` or ``KeyError`` of whichever line first touched it; ``verify``
is the tool that then reports every problem (``ledger.store.integrity``).

Unknown topics stay readable (a newer library may add event types): their
payload only has to be a sealed JSON object. Replay calls these once per
record, so each check is one boolean expression of type tests on the fast
path; only a record that fails it is examined again to say what is wrong.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from ledger.errors import CorruptLogError
from ledger.events.bodies import (
    ENTITY_ERASED,
    ENTITY_VERSION,
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    EXECUTION_REEXECUTED,
    REACTION_EMITTED,
)
from ledger.events.seal import SealCheck, check_seal, unsealed

__all__ = ["check_page", "checked_record", "corrupt", "describe", "record_payload", "record_stream", "record_topic", "record_version"]

# What an entity.version payload must hold for the index to keep it: the
# fields it reads at once (ids are parsed there, and fail there) and the ones
# it keeps undecoded until a read needs them. None means "or null".
_ENTITY_FIELDS: tuple[tuple[str, type, bool], ...] = (
    ("ecs_id", str, False),
    ("previous_ecs_id", str, True),
    ("entity_type", str, False),
    ("schema_version", int, False),
    ("is_root", bool, False),
    ("values", dict, False),
    ("children", dict, False),
    ("meta", dict, False),
    ("created_at", str, False),
    ("forked_at", str, True),
    ("recorded_at", str, False),
)

# Fields the other known event types must have: a payload without them was
# written as another type (an edited topic) or was edited itself.
_REQUIRED: dict[str, tuple[str, ...]] = {
    ENTITY_ERASED: ("lineage_id", "reason"),
    EXECUTION_COMPLETED: ("execution_id", "function_name", "outputs"),
    EXECUTION_FAILED: ("execution_id", "function_name", "error_type"),
    REACTION_EMITTED: ("event_id", "event_type"),
    EXECUTION_REEXECUTED: ("execution_id", "reexecution_id", "matches", "differences"),
}


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
    found = cache.get(value) if type(value) is str else None
    if found is not None:
        return found
    if type(value) is str:
        try:
            found = cache[value] = UUID(value)
            return found
        except ValueError:
            pass
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
    try:
        payload = orjson.loads(state)
    except (orjson.JSONDecodeError, TypeError):
        if state is None:
            raise corrupt(position, f"the {topic} record has no payload (NULL state)") from None
        raise corrupt(position, f"the payload of the {topic} record is not JSON") from None
    if type(payload) is not dict:
        raise corrupt(position, f"the payload of the {topic} record is a JSON {type(payload).__name__}, not an object")
    get = payload.get
    if topic == ENTITY_VERSION:
        previous, forked, personal = get("previous_ecs_id"), get("forked_at"), get("personal")
        if (
            type(get("hash")) is str
            and type(get("ecs_id")) is str
            and (previous is None or type(previous) is str)
            and type(get("entity_type")) is str
            and type(get("schema_version")) is int
            and type(get("is_root")) is bool
            and type(get("values")) is dict
            and type(get("children")) is dict
            and type(get("meta")) is dict
            and type(get("created_at")) is str
            and (forked is None or type(forked) is str)
            and type(get("recorded_at")) is str
            and (personal is None or (type(personal) is list and all(type(p) is str for p in personal)))
        ):
            return payload
        raise corrupt(position, _entity_problem(topic, payload))
    if type(get("hash")) is not str:
        raise corrupt(position, f"the payload of the {topic} record has no seal (hash)")
    for name in _REQUIRED.get(topic, ()):
        if name not in payload:
            raise corrupt(
                position,
                f"the payload of the {topic} record has no {name!r} (its event type or payload was changed)",
            )
    return payload


def _entity_problem(topic: str, payload: dict[str, Any]) -> str:
    """The slow path: which field of an entity.version payload failed the check."""
    if type(payload.get("hash")) is not str:
        return f"the payload of the {topic} record has no seal (hash)"
    for name, kind, nullable in _ENTITY_FIELDS:
        if name not in payload:
            return f"the payload of the {topic} record has no {name!r} (its event type or payload was changed)"
        value = payload[name]
        if type(value) is not kind and not (nullable and value is None):
            return f"field {name!r} of the {topic} record is {_short(value)}, not a JSON {kind.__name__}"
    return f"field 'personal' of the {topic} record is not a list of field names"


def describe(exc: BaseException) -> str:
    """What a decoding step that failed on a payload value found wrong, in a few words."""
    if isinstance(exc, KeyError):
        return f"field {exc.args[0]!r} is missing"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def checked_record(
    position: int, raw_id: Any, raw_version: Any, raw_topic: Any, state: Any, uuids: dict[str, UUID] | None = None
) -> tuple[UUID, int, str, dict[str, Any]]:
    """(stream id, version, topic, payload) of one record a reader is about to show, its seal checked.

    Readers that answer from a few records (``ledger show``, ``history``, ``log`` on the
    stored index) never replay the rest of the log, so each record they read must
    prove itself: it decodes, and its seal matches its topic, stream, version and
    bytes (and, sealed v2, its position). Anything else is ``CorruptLogError`` naming
    the position; ``ledger verify`` then reports every problem of the log. ``uuids``
    caches stream ids already parsed (a bulk read of one lineage's records).
    """
    stream_id = record_stream(position, raw_id, {} if uuids is None else uuids)
    version = record_version(position, raw_version)
    topic = record_topic(position, raw_topic)
    payload = record_payload(position, topic, state)
    _sealed(position, stream_id, version, topic, state)
    return stream_id, version, topic, payload


def _sealed(position: int, stream_id: UUID, version: int, topic: str, state: Any) -> SealCheck:
    """The record's seal, which must match its contents (and, sealed v2, its position)."""
    seal = check_seal(topic, stream_id, version, bytes(state))
    if not seal.intact:
        raise corrupt(position, "its seal does not match its contents (edited after it was written); run ledger verify")
    if seal.version >= 2 and seal.position != position:
        raise corrupt(position, f"its seal names position {seal.position} (records were moved); run ledger verify")
    return seal


def check_page(
    first: int, positions: list[int], stream_ids: list[Any], versions: list[Any], topics: list[Any], states: list[Any]
) -> None:
    """Check a page of raw records read from position ``first`` on, before a projection uses it.

    Each record must be where its position says (no gap), name a stream and a version, and
    carry an intact seal over its topic, stream, version and bytes (and, sealed v2 or v3, its
    position): whatever a projection derives from the page then comes from records as they
    were written. The first problem is a ``CorruptLogError`` naming its position.
    """
    uuids: dict[str, UUID] = {}
    # The fast path vouches for every v2 record that is intact and in place; each record it
    # leaves is looked at closely here, in log order, which accepts it (a v1 record, say)
    # or names what is wrong with it.
    for i in unsealed(first, positions, stream_ids, versions, topics, states):
        position, raw_id, raw_version, raw_topic, state = positions[i], stream_ids[i], versions[i], topics[i], states[i]
        expected = positions[i - 1] + 1 if i else first
        stream_id = record_stream(position, raw_id, uuids)
        version = record_version(position, raw_version)
        topic = record_topic(position, raw_topic)
        if not isinstance(state, (bytes, bytearray, memoryview)) or not state:
            raise corrupt(position, "the record holds no payload")
        seal = _sealed(position, stream_id, version, topic, state)
        # v2 positions run without gaps (old PostgreSQL logs may have them); v3 ones have holes where
        # a batch rolled back, which the checkpoints account for (``ledger verify``)
        if seal.version == 2 and position != expected:
            raise corrupt(expected, "the record is missing (the log has a gap here); run ledger verify")

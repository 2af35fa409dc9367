"""``emit(event, record=True)``: a user event appended to the log as ``reaction.emitted``.

Recorded, a reactive cascade is audited like everything else (``ledger log``, ``verify``,
the ``events`` table) and reaches durable followers in other processes, which get the
event back as its own class (``facts.recorded_event``). Classes in the event (its subject
type, its actor type, fields holding classes) are stored by import path.
"""

from __future__ import annotations

from typing import Any

from ledger import _process
from ledger.errors import ReactionError
from ledger.events.bodies import REACTION_EMITTED, reaction_emitted_body
from ledger.model.schema import topic_of
from ledger.reactions.events import Event
from ledger.write.batch import Batch

__all__ = ["record_event"]


def _stored_value(value: Any) -> Any:
    if isinstance(value, type):
        return topic_of(value)
    raise ReactionError(f"event: a field holds {value!r}, which cannot be recorded (use ids and plain values)")


def record_event(event: Event[Any], ledger: Any = None) -> int:
    """Append ``event`` to ``ledger`` (default: the process's default ledger); returns its position."""
    if ledger is None:
        ledger = _process.default_ledger()
    try:
        fields = event.model_dump(mode="json", fallback=_stored_value)
    except ReactionError:
        raise
    except Exception as exc:  # pydantic's serializer wraps what the fallback raised
        raise ReactionError(f"event: {type(event).__name__} {event.id} cannot be recorded: {exc}") from exc
    subject = event.subject_type
    body = reaction_emitted_body(
        event_id=event.id,
        event_type=event.type,
        event_class=topic_of(type(event)),
        subject_type=topic_of(subject) if isinstance(subject, type) else subject,
        subject_id=event.subject_id,
        event=fields,
    )
    with ledger.writing():
        batch = Batch(ledger.index)
        batch.add(event.id, REACTION_EMITTED, body)
        return int(ledger.commit(batch)[0])

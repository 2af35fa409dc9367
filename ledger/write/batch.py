"""One user action = one batch: events gathered, sealed, appended atomically.

A batch collects event bodies and the in-process updates to run once the store
has accepted them. Nothing touches the index or the caller's objects before
the append succeeds, so a refused batch leaves no trace anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from ledger import _process
from ledger.errors import UnstorableValueError
from ledger.events.bodies import ENTITY_VERSION
from ledger.events.seal import NewEvent
from ledger.model.entity import utc_now

if TYPE_CHECKING:
    from projections.inline import InlineIndex, VersionRecord

__all__ = ["Batch"]


class Batch:
    """Pending events of one atomic append, with their post-commit actions."""

    def __init__(self, index: InlineIndex) -> None:
        self.index = index
        self.batch_id = _process.random_id()
        self.recorded_at = utc_now()
        self._items: list[tuple[UUID, str, dict[str, Any], VersionRecord | None]] = []
        self._after: list[Callable[[], None]] = []
        self._undo: list[Callable[[], None]] = []
        self.sealed: list[NewEvent] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, stream_id: UUID, topic: str, body: dict[str, Any], record: VersionRecord | None = None) -> None:
        self._items.append((stream_id, topic, body, record))

    def planned(self) -> list[tuple[UUID, str, VersionRecord | None]]:
        """(stream id, topic, version record) of each event, in append order."""
        return [(stream_id, topic, record) for stream_id, topic, _, record in self._items]

    def stream_ids(self) -> set[UUID]:
        """The streams this batch appends to."""
        return {item[0] for item in self._items}

    def records(self) -> list[tuple[str, dict[str, Any], str]]:
        """(topic, body, seal hash) of each event, in append order, once appended (the facts
        published after commit)."""
        return [(topic, body, event.hash) for (_, topic, body, _), event in zip(self._items, self.sealed)]

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after.append(fn)

    def on_failure(self, fn: Callable[[], None]) -> None:
        """Undo a change made to a live object while planning, if the append fails."""
        self._undo.append(fn)

    def seal(self) -> list[NewEvent]:
        """Give each event its stream version and encode it; the store seals it at append.

        The seal needs the event's position and its predecessor in the log,
        which only the store knows inside its append transaction, so this
        stops at the body bytes and the stream head each chain starts from.
        """
        versions: dict[UUID, int] = {}
        heads: dict[UUID, str | None] = {}
        size = len(self._items)
        out: list[NewEvent] = []
        pending = {rec.ecs_id: rec for _, _, _, rec in self._items if rec is not None}
        self.index.prefetch(stream_ids=[stream_id for stream_id, _, _, _ in self._items])
        for stream_id, topic, body, record in self._items:
            version = versions.get(stream_id)
            if version is None:
                known = self.index.streams.get(stream_id)
                version, heads[stream_id] = (known.version, known.hash) if known is not None else (0, None)
            version += 1
            body["recorded_at"] = self.recorded_at
            body["batch_id"] = self.batch_id
            body["batch_size"] = size
            try:
                raw = orjson.dumps(body)
            except TypeError as exc:  # orjson.JSONEncodeError: a value JSON cannot hold
                raise UnstorableValueError(f"{_culprit(topic, body)}: {exc}") from None
            versions[stream_id] = version
            if record is None:
                out.append(NewEvent(stream_id, version, topic, raw, heads[stream_id]))
            else:  # the store's tree rows: a root version points its whole tree at itself
                members = tuple(self.index.subtree_ids(record.ecs_id, pending)) if record.is_root else ()
                out.append(NewEvent(stream_id, version, topic, raw, heads[stream_id], record.ecs_id, members))
        self.sealed = out
        return out

    def apply(self, positions: list[int], *, provisional: bool = False) -> None:
        """Index what the store accepted, then run the post-commit updates.

        ``provisional``: inside ``with led.batch():`` the batch is indexed before the store
        has it, at the positions it will take if no other writer appends first, so later
        calls in the block read its versions; ``caught_up`` stays where the store is
        (``write.pending`` settles positions and hashes once the block's transaction commits).
        """
        index = self.index
        roots: list[NewEvent] = []
        minted = _process.minted
        for (stream_id, topic, _body, record), event, position in zip(
            self._items, self.sealed, positions
        ):
            minted.pop(stream_id.int, None)  # stored now: no index may take it for absent
            if record is not None:
                minted.pop(record.ecs_id.int, None)
                record.recorded_at = self.recorded_at
                if record.is_root:
                    roots.append(event)
            index.apply(
                topic, position, stream_id, event.hash, payload=_body, record=record, mark=False, version=event.version
            )
        for event in roots:
            index.mark_tree(event.ecs_id, event.members)  # type: ignore[arg-type]
        if not provisional and positions and positions[0] == index.caught_up + 1:
            index.caught_up = positions[-1]
        for fn in self._after:
            fn()

    def abort(self) -> None:
        for fn in reversed(self._undo):
            fn()


def _culprit(topic: str, body: dict[str, Any]) -> str:
    """Which entity field of an unsealable event holds the value JSON cannot encode."""
    if topic == ENTITY_VERSION:
        for name, value in body["children"].items():  # plain values were encoded in planning
            try:
                orjson.dumps(value)
            except TypeError:
                kind = str(body["entity_type"]).rpartition(":")[2]
                return f"{kind}.{name} of {body['ecs_id']} cannot be stored"
    return f"a {topic} event cannot be stored"

"""The ``memory://`` backend: the eventsourcing POPO recorder, in this process only.

The log lives and dies with the store object, so this store is its only writer:
it remembers the head it sealed last and reads the stored record only when the
list was changed behind its back (tests do that to play an attacker).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from ledger.errors import StoreError, StoreNotFoundError
from ledger.events.bodies import ENTITY_VERSION
from ledger.events.seal import GENESIS, NewEvent, link_hash, seal_batch
from ledger.store.single_writer import SingleWriterLog
from ledger.store.version_index import ecs_id_of

if TYPE_CHECKING:
    from ledger.store.base import StoreURL

__all__ = ["MemoryBackend"]


class MemoryBackend(SingleWriterLog):
    """A POPO recorder and a dict of keys; nothing to open, nothing to close."""

    #: The POPO recorder raises only the eventsourcing errors ``EventStore`` maps already.
    conflicts: tuple[type[BaseException], ...] = ()
    failures: tuple[type[BaseException], ...] = ()
    read_failures: tuple[type[BaseException], ...] = ()

    def __init__(self, spec: StoreURL, create: bool = True) -> None:
        if not create:
            raise StoreNotFoundError(
                f"url {spec.url!r}: a memory:// store holds no ledger until this process writes one; "
                "create=False cannot open it"
            )
        from eventsourcing.popo import POPOApplicationRecorder

        self.url = spec.url
        self.recorder: ApplicationRecorder = POPOApplicationRecorder()
        self.key_table = MemoryKeyTable()
        self._lock = threading.Lock()
        self._head: tuple[int, str] = (0, GENESIS)  # (last position, its hash)
        self._followers: dict[str, int] = {}  # follower name -> acknowledged position
        #: The Merkle tree's tiles (``merkle.py``): (origin, size, position) and (level, index) -> (hashes, first position).
        self._tree_state = (f"entity-ledger/{uuid4().hex}", 0, 0)
        self._tree_tiles: dict[tuple[int, int], tuple[bytes, int]] = {}
        self._secrets: dict[str, bytes] = {}
        self._held: set[str] = set()  # follower names held (``hold_follower``)

    def append(self, events: Sequence[NewEvent], tracking: tuple[str, int] | None = None) -> list[int]:
        """Seal the batch after the head and insert it, under this store's lock (``tracking``: a
        follower's acknowledgement, made under the same lock)."""
        recorder = self.recorder
        with self._lock:
            # This object is the memory store's only writer, so the head it sealed last is
            # normally the head; the stored record is read only if the list was changed behind it.
            head, prev = self._head
            if (recorder.max_notification_id() or 0) != head:
                head = recorder.max_notification_id() or 0
                prev = link_hash(recorder.select_notifications(head, 1)[0].state) if head else GENESIS
            last = seal_batch(events, head + 1, prev)
            positions = recorder.insert_events(
                [StoredEvent(e.stream_id, e.version, e.topic, e.state) for e in events]
            )
            expected = list(range(head + 1, head + 1 + len(events)))
            if list(positions or ()) != expected:  # pragma: no cover - the POPO recorder numbers rows in order
                raise StoreError(f"store {self.url!r} gave positions {positions}, sealed for {expected}")
            self._head = (expected[-1], last)
            if tracking is not None:
                self._acknowledge(*tracking)
        return expected

    def follower_position(self, name: str) -> int:
        return self._followers.get(name, 0)

    def hold_follower(self, name: str) -> Callable[[], None] | None:
        """Follower ``name`` for one caller at a time: a memory store has one process."""
        with self._lock:
            if name in self._held:
                return None
            self._held.add(name)

        def release() -> None:
            with self._lock:
                self._held.discard(name)

        return release

    def secret(self, name: str) -> bytes | None:
        """A secret of this store, made on first use: it lives and dies with the store, as the log does."""
        with self._lock:
            return self._secrets.setdefault(name, os.urandom(32))

    def acknowledge(self, name: str, position: int) -> None:
        with self._lock:
            self._acknowledge(name, position)

    def _acknowledge(self, name: str, position: int) -> None:
        self._followers[name] = max(self._followers.get(name, 0), position)

    def listen(self) -> None:
        """Only this process writes a memory store: its commits wake followers directly."""
        return None

    def read_rows(self, start: int, limit: int, *, text_ids: bool = True, past_head: bool = False) -> list[tuple[Any, ...]]:
        """Rows from the recorder; ``text_ids=False`` keeps the UUIDs it holds (replay skips the text round trip)."""
        return [
            (n.id, str(n.originator_id) if text_ids else n.originator_id, n.originator_version, n.topic, n.state)
            for n in self.recorder.select_notifications(start, limit)
        ]

    def streams_between(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, int]]:
        """A walk of the whole log: a memory store is small, and keeps no index to scan."""
        first: dict[UUID, int] = {}
        for n in self._all():
            stream = n.originator_id if isinstance(n.originator_id, UUID) else UUID(str(n.originator_id))
            if low <= stream <= high:
                first[stream] = n.id
        return sorted(first.items())[:limit]

    def versions_between(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, int]]:
        """The ``entity.version`` records of the log whose ecs_id lies in [low, high]."""
        found = []
        for n in self._all():
            if n.topic == ENTITY_VERSION:
                ecs_id = ecs_id_of(n.state, n.id)
                if low <= ecs_id <= high:
                    found.append((ecs_id, n.id))
        return sorted(found)[:limit]

    def _all(self) -> list[Any]:
        return list(self.recorder.select_notifications(1, (self.recorder.max_notification_id() or 0) + 1))

    def is_damaged(self, cause: BaseException | None) -> bool:
        return False  # no file to damage

    # ------------------------------------------------------------ Merkle tree tiles
    def tree_state(self) -> tuple[str, int, int]:
        return self._tree_state

    def tree_tiles(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], tuple[bytes, int]]:
        return {k: self._tree_tiles[k] for k in keys if k in self._tree_tiles}

    def tree_tile_at(self, position: int) -> tuple[int, int] | None:
        """A scan of the level-0 tiles: a memory store is small."""
        found = [(first, index) for (level, index), (_, first) in self._tree_tiles.items() if level == 0 and first <= position]
        return None if not found else (max(found)[1], max(found)[0])

    def tree_write(self, expect: int, size: int, position: int, tiles: list[tuple[int, int, int, bytes]]) -> bool:
        with self._lock:
            if self._tree_state[1] != expect:
                return False
            for level, index, first, hashes in tiles:
                self._tree_tiles[(level, index)] = (hashes, first)
            self._tree_state = (self._tree_state[0], size, position)
        return True

    def tree_dump(self) -> Iterator[tuple[int, int, int, bytes]]:
        for (level, index), (hashes, first) in sorted(self._tree_tiles.items()):
            yield level, index, first, hashes

    def close(self) -> None:
        pass

    # ------------------------------------------------------------ version index
    # memory:// keeps no stored index: its ledgers replay in-process (the log dies with them).
    def index_state(self) -> None:
        return None

    def add_index_rows(self, *args: Any) -> bool:
        return False

    def reset_index(self) -> None:
        pass

    def _no_index(self, *args: Any) -> Any:
        raise StoreError("memory:// keeps no stored version index")

    version_position = memo_lookup = lineage_entries = erasure_entries = index_dump = tree_root = stream_head = version_positions = stream_heads = erasure_position = read_positions = _no_index


# ---------------------------------------------------------------- key table
class MemoryKeyTable:
    """The keys of a ``memory://`` store: a dict that lives and dies with the store."""

    def __init__(self) -> None:
        self._keys: dict[UUID, Any] = {}

    def fetch(self, lineage_id: UUID) -> Any:
        return self._keys.get(lineage_id)

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> Any:
        return self._keys.setdefault(lineage_id, key)

    def delete(self, lineage_id: UUID) -> bool:
        return self._keys.pop(lineage_id, None) is not None

    def shred(self) -> set[UUID]:
        return set()  # no files: a dropped entry is gone

    def fetch_all(self) -> dict[UUID, Any]:
        return dict(self._keys)

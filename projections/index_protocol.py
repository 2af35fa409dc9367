"""``VersionIndex``: the one interface of the inline version index, for the writer and every reader.

The index answers "which stored version is this id, what are this lineage's versions, which
tree holds it, what was current at position p or time t" (``docs/architecture.md``,
"Projections"). Two classes implement it: ``InlineIndex`` keeps everything in the heap (the
``memory://`` ledger, rebuilt by replay) and ``StoredInlineIndex`` answers from the store's
index tables through bounded caches (SQLite, PostgreSQL); the readers' ``StoredIndex`` is the
latter opened read-only. Naming what callers may use, in one place, is what lets an
implementation change its layout (a cache, a batched read) without a reader or the write
side following it, and lets a test check that reader and writer hold the same kind of index.

``VersionReads`` is what the audit reads, the UI and the address walker call; ``VersionIndex``
adds what the write side (``ledger.write``, through ``WriteHost.index``) calls to plan,
apply and chain appends. Both are ``runtime_checkable``; members are read-only properties
where the two implementations hold different mapping types (``dict`` in the heap, store-backed
views otherwise), so both satisfy them under ``mypy --strict``.

Not to be confused with ``ledger.store.version_index``: the store's tables this index reads.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

from ledger.events.bodies import EXECUTION_FAILED
from ledger.events.sealed_failure import is_sealed, open_failure

if TYPE_CHECKING:
    from ledger.model.entity import Entity
    from ledger.store.keys import KeyStore
    from projections.inline import StreamHead, ValuesCache, VersionRecord

__all__ = ["VersionIndex", "VersionReads", "open_payload"]


@runtime_checkable
class VersionReads(Protocol):
    """What a reader asks of a version index (``projections.audit``, ``addresses``, ``live``, the UI)."""

    @property
    def keys(self) -> KeyStore | None:
        """The store's data keys (personal values are sealed under one per lineage)."""
        ...

    @property
    def records(self) -> Mapping[UUID, VersionRecord]:
        """Stored versions by ecs_id (a store-backed index reads them on first use)."""
        ...

    @property
    def lineages(self) -> Mapping[UUID, Sequence[VersionRecord]]:
        """Each lineage's versions in stream order (a store-backed index reads them in batches)."""
        ...

    @property
    def erased(self) -> Mapping[UUID, int]:
        """Erased lineages and the position of their ``entity.erased`` event."""
        ...

    @property
    def root_of(self) -> Mapping[UUID, UUID]:
        """The root of the latest stored tree holding each version."""
        ...

    def get(self, ecs_id: UUID, argument: str = "ecs_id") -> VersionRecord:
        """The stored version ``ecs_id``; ``EntityNotFoundError`` naming ``argument`` otherwise."""
        ...

    def old_ids(self, record: VersionRecord) -> list[UUID]:
        """Earlier versions of ``record``, oldest first."""
        ...

    def version_at(self, lineage_id: UUID, position: int) -> VersionRecord | None:
        """The lineage's latest version recorded at or before ``position``."""
        ...

    def version_at_time(self, lineage_id: UUID, at: datetime) -> VersionRecord | None:
        """The lineage's latest version recorded at or before time ``at``."""
        ...

    def key_for(self, lineage_id: UUID) -> bytes | None:
        """The lineage's data key; None once it is erased."""
        ...

    def subtree_ids(self, ecs_id: UUID, pending: Mapping[UUID, VersionRecord] | None = None) -> list[UUID]:
        """``ecs_id`` and every version below it."""
        ...

    def prefetch(self, ecs_ids: Iterable[UUID] = (), stream_ids: Iterable[UUID] = ()) -> None:
        """Read ahead versions and stream heads about to be used, in few queries (a no-op in the heap)."""
        ...


@runtime_checkable
class VersionIndex(VersionReads, Protocol):
    """What the write side asks of the index as well: stream heads, live objects, memo hits, and applying appends."""

    streams: dict[UUID, StreamHead]
    live: weakref.WeakValueDictionary[UUID, Entity]
    memo_payloads: OrderedDict[str, dict[str, Any]]
    values_cache: ValuesCache
    #: Highest position applied, and the position up to which every event has been.
    position: int
    caught_up: int

    def apply(
        self,
        topic: str,
        position: int,
        stream_id: UUID,
        stream_hash: str,
        *,
        payload: dict[str, Any] | None = None,
        record: VersionRecord | None = None,
        uuids: dict[str, UUID] | None = None,
        mark: bool = True,
        version: int | None = None,
    ) -> None:
        """Apply one appended (or replayed) event."""
        ...

    def mark_tree(self, root_ecs_id: UUID, members: tuple[UUID, ...] | None = None) -> None:
        """Point every version of the tree below ``root_ecs_id`` at that root."""
        ...

    def memo_lookup(self, key: str) -> tuple[Any, ...] | None:
        """The first successful execution filed under memo ``key``."""
        ...


def open_payload(index: VersionReads, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    """An event payload as readers may see it: sealed failure text opened (``Ledger.open_payload``
    and ``StoredReader.open_payload`` are this function).

    The ``error_message`` and ``traceback`` of an ``execution.failed`` event that read personal
    data are stored encrypted under the keys of those lineages; they are decrypted while every key
    exists and read ``ERASED`` once any of the lineages was erased. Keys are read from the store
    (``KeyStore.fetch``), not a cache, so an erasure by another process counts at once.
    """
    if topic != EXECUTION_FAILED or not is_sealed(payload):
        return payload
    erased = index.erased
    keys = index.keys
    if keys is None:  # an index with no key store has nothing sealed it could open
        return open_failure(payload, lambda lineage: None)
    return open_failure(payload, lambda lineage: None if lineage in erased else keys.fetch(lineage))


if TYPE_CHECKING:
    from projections.inline import InlineIndex
    from projections.stored_inline import StoredIndex, StoredInlineIndex

    def _implementations(
        memory: InlineIndex, stored: StoredInlineIndex, reader: StoredIndex
    ) -> tuple[VersionIndex, VersionIndex, VersionReads]:
        """Never called: ``mypy`` checks here that both indexes, and the readers' one, implement the Protocol."""
        return memory, stored, reader

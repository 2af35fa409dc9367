"""Per-lineage data keys, kept outside the append-only event table.

Erasure must destroy something, and the event table cannot be edited, so the
keys that open personal fields live in a small table of their own in the same
database (``ledger_keys``), or in a dict for ``memory://``. Any ledger on the
same store reads the same keys: a miss is fetched from the table and cached.

Destroying a key is two steps, because deleting a row does not remove its
bytes from the database files:

1. *delete*: the row goes, and in the same transaction the lineage is written
   to ``ledger_key_shreds`` (the list of keys whose bytes may still be on disk).
2. *shred*: make the database drop every copy of the bytes, then clear the
   pending rows. SQLite zeroes freed cells (``secure_delete``) and copies the WAL
   back and truncates it (``wal_checkpoint(TRUNCATE)``), which cannot finish
   while another connection reads an older snapshot. PostgreSQL keeps a deleted
   row's bytes while any snapshot older than the deleting transaction exists,
   and a plain VACUUM leaves them in the page's free space, so it waits until no
   such snapshot exists and then rewrites the table (``VACUUM FULL``).

Each backend module holds its own table class (``MemoryKeyTable``, ``SQLiteKeyTable``,
``PostgresKeyTable``: they reach into the recorder's connections); this module holds what
they share and ``KeyStore``, the cache every ledger reads keys through.

Shredding never waits long: what it cannot finish now stays pending and is
retried by the next ``erase`` and by the next writable open of the store.
``KeyStore.destroy`` reports True only when no copy is left. Copies made outside
the database (backups, PostgreSQL's own WAL and its archive) are beyond reach;
they age out with the retention the operator chose.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol, TypeVar
from uuid import UUID

from eventsourcing.persistence import PersistenceError

from ledger.errors import KeyIntegrityError, StoreError
from ledger.model.personal import KEY_BYTES, new_key

__all__ = [
    "KeyStore",
    "KeyTable",
    "key_check",
    "key_defect",
]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

TABLE = "ledger_keys"
#: Lineages whose key row was deleted but whose bytes may still be in the database files.
SHREDS = "ledger_key_shreds"

#: How long shredding waits for a lock or a reader (ms): erase must return promptly.
SHRED_WAIT_MS = 200

_KEY_CHECK_CONTEXT = b"entity-ledger key check"


def key_check(key: bytes, lineage_id: UUID) -> str:
    """The commitment to a lineage's key: ``HMAC-SHA256(key, context || lineage id)``, hex.

    Written into the lineage's first personal event, so a key row that was
    deleted, swapped with another lineage's or damaged is told apart from an
    erasure. Keyed with the key itself: the commitment reveals nothing about it.
    """
    message = _KEY_CHECK_CONTEXT + str(lineage_id).encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def key_defect(value: Any) -> str | None:
    """Why a stored key value cannot be a data key (None when it is 32 bytes)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return f"a {type(value).__name__} value, not bytes"
    if len(value) != KEY_BYTES:
        return f"{len(value)} bytes instead of {KEY_BYTES}"
    return None


def raw_key(value: Any) -> Any:
    """A stored key as bytes when it is binary; anything else as it was read (for audits)."""
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else value


class KeyTable(Protocol):
    """Where one backend keeps the keys: read, insert once, delete for good."""

    def fetch(self, lineage_id: UUID) -> Any: ...

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> Any: ...

    def delete(self, lineage_id: UUID) -> bool:
        """Delete the row and mark its bytes as pending shredding (one transaction)."""

    def shred(self) -> set[UUID]:
        """Remove the bytes of deleted keys from the files if possible; the lineages still pending."""

    def fetch_all(self) -> dict[Any, Any]:
        """Every row as stored: by lineage UUID, or by the stored value where it is not one."""


class KeyStore:
    """The keys of one store, with a per-ledger cache in front of the table.

    Only keys are cached, never their absence: a lineage without a key yet may
    get one from another process. ``forget`` drops a cached key (applied when an
    ``entity.erased`` event is seen, so a second process stops using it).
    """

    def __init__(self, table: KeyTable) -> None:
        self._table = table
        self._cache: dict[UUID, bytes] = {}
        self._lock = threading.Lock()

    def get(self, lineage_id: UUID) -> bytes | None:
        """The lineage's key, or None when it has none; a damaged key row is a ``KeyIntegrityError``."""
        key = self._cache.get(lineage_id)
        if key is None:
            key = self._checked(lineage_id, self._call(self._table.fetch, lineage_id))
            if key is not None:
                with self._lock:
                    self._cache[lineage_id] = key
        return key

    def fetch(self, lineage_id: UUID) -> bytes | None:
        """The key as the table holds it now, bypassing the cache (for readers that must not use a stale key)."""
        return self._checked(lineage_id, self._call(self._table.fetch, lineage_id))

    def create(self, lineage_id: UUID) -> bytes:
        """The lineage's key, written to the table first if it has none (race-safe)."""
        key = self.get(lineage_id)
        if key is None:
            key = self._checked(lineage_id, self._call(self._table.insert_if_absent, lineage_id, new_key()))
            assert key is not None
            with self._lock:
                self._cache[lineage_id] = key
        return key

    def destroy(self, lineage_id: UUID) -> bool:
        """Delete the key for good; True only when no copy of it is left in the store's files.

        Also True for a lineage that never had a key. False means the row is
        gone but its bytes are not yet (a reader or snapshot holds them): a later
        ``destroy`` or ``finish_shredding`` completes the job.
        """
        self.forget(lineage_id)
        self._call(self._table.delete, lineage_id)
        try:
            return lineage_id not in self._call(self._table.shred)
        except StoreError as exc:  # the row is gone; its bytes stay pending and are retried
            log.warning("lineage %s: key deleted, shredding its bytes failed: %s", lineage_id, exc)
            return False

    def finish_shredding(self) -> set[UUID]:
        """Retry shredding every deleted key still pending; the lineages still pending after."""
        return self._call(self._table.shred)

    def forget(self, lineage_id: UUID) -> None:
        with self._lock:
            self._cache.pop(lineage_id, None)

    def all_keys(self) -> dict[Any, Any]:
        """Every key the table still holds, as stored (for audits: what could still be decrypted);
        by lineage UUID, or by the stored value where a row's ``lineage_id`` is not a UUID."""
        return self._call(self._table.fetch_all)

    @staticmethod
    def _checked(lineage_id: UUID, value: Any) -> bytes | None:
        if value is None:
            return None
        defect = key_defect(value)
        if defect is not None:
            raise KeyIntegrityError(
                f"lineage {lineage_id}: its data key in {TABLE!r} is malformed ({defect}); "
                "the key table was damaged, this is not an erasure (run ledger verify)"
            )
        return bytes(value)

    def _call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(*args)`` with a recorder error as ``StoreError``; returns what ``fn`` returns."""
        try:
            return fn(*args, **kwargs)
        except PersistenceError as exc:
            raise StoreError(f"key table {TABLE!r}: {exc}") from exc

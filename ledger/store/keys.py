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
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import PersistenceError

from ledger.errors import KeyIntegrityError, StoreError
from ledger.model.personal import KEY_BYTES, new_key

__all__ = [
    "KeyStore",
    "KeyTable",
    "MemoryKeyTable",
    "PostgresKeyTable",
    "SQLiteKeyTable",
    "create_postgres_key_table",
    "key_check",
    "key_defect",
]

log = logging.getLogger(__name__)

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


def _raw(value: Any) -> Any:
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

    def fetch_all(self) -> dict[UUID, Any]: ...


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


class SQLiteKeyTable:
    """``ledger_keys`` in the store's SQLite file, through the eventsourcing pool."""

    def __init__(self, datastore: Any, *, create: bool = True) -> None:
        """``create=False`` (a store opened for reading) leaves the schema as it is."""
        self._datastore = datastore
        if not create:
            return
        with datastore.transaction(commit=True) as cur:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} "
                "(lineage_id TEXT PRIMARY KEY, key BLOB NOT NULL) WITHOUT ROWID"
            )
            cur.execute(f"CREATE TABLE IF NOT EXISTS {SHREDS} (lineage_id TEXT PRIMARY KEY) WITHOUT ROWID")

    def fetch(self, lineage_id: UUID) -> Any:
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(f"SELECT key FROM {TABLE} WHERE lineage_id = ?", (str(lineage_id),))
            row = cur.fetchone()
        return None if row is None else _raw(row[0])

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> Any:
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (lineage_id, key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (str(lineage_id), key),
            )
            cur.execute(f"SELECT key FROM {TABLE} WHERE lineage_id = ?", (str(lineage_id),))
            return _raw(cur.fetchone()[0])

    def delete(self, lineage_id: UUID) -> bool:
        with self._datastore.get_connection(commit=True) as conn:
            conn._sqlite_conn.execute("PRAGMA secure_delete = ON")  # freed cells are overwritten with zeros
            with conn.transaction(commit=True) as cur:
                cur.execute(f"DELETE FROM {TABLE} WHERE lineage_id = ?", (str(lineage_id),))
                deleted = cur.sqlite_cursor.rowcount > 0
                if deleted:
                    cur.execute(
                        f"INSERT INTO {SHREDS} (lineage_id) VALUES (?) ON CONFLICT DO NOTHING",
                        (str(lineage_id),),
                    )
        return deleted

    def shred(self) -> set[UUID]:
        """Copy the WAL into the zeroed main file and truncate it, unless a reader prevents it.

        A checkpoint cannot copy WAL frames past the snapshot of a connection
        still reading, nor truncate the WAL: SQLite then reports ``busy`` (or
        fewer frames checkpointed than logged) and the deleted keys' bytes are
        still in the files, so they stay pending.
        """
        import sqlite3

        with self._datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            try:
                pending = [r[0] for r in raw.execute(f"SELECT lineage_id FROM {SHREDS}").fetchall()]
                if not pending:
                    return set()
                if not self._checkpoint(raw):
                    return {UUID(p) for p in pending}
            except sqlite3.Error as exc:
                raise StoreError(f"key table {TABLE!r}: shredding deleted keys failed: {exc}") from exc
            with conn.transaction(commit=True) as cur:
                cur.executemany(f"DELETE FROM {SHREDS} WHERE lineage_id = ?", [(p,) for p in pending])
            self._checkpoint(raw)  # leave the WAL empty again (it holds no key bytes either way)
        return set()

    @staticmethod
    def _checkpoint(raw: Any) -> bool:
        """``wal_checkpoint(TRUNCATE)`` with a short busy timeout; True when the WAL was emptied."""
        (timeout,) = raw.execute("PRAGMA busy_timeout").fetchone()
        raw.execute(f"PRAGMA busy_timeout = {SHRED_WAIT_MS}")
        try:
            busy, logged, copied = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            raw.execute(f"PRAGMA busy_timeout = {int(timeout)}")
        return busy == 0 and logged == copied

    def fetch_all(self) -> dict[UUID, Any]:
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(f"SELECT lineage_id, key FROM {TABLE}")
            return {UUID(r[0]): _raw(r[1]) for r in cur.fetchall()}


def create_postgres_key_table(conn: Any, schema: str) -> None:
    """Create ``ledger_keys`` and ``ledger_key_shreds`` in ``schema`` (under the store's creation lock)."""
    from psycopg import sql

    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (lineage_id uuid PRIMARY KEY, key bytea NOT NULL)"
        ).format(sql.Identifier(schema), sql.Identifier(TABLE))
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (lineage_id uuid PRIMARY KEY, deleted_by xid8 NOT NULL)"
        ).format(sql.Identifier(schema), sql.Identifier(SHREDS))
    )


# The oldest transaction id that may still see a row version, per holder, as xid8
# (backend_xmin is a 32-bit xid: widen it against the current epoch). A row deleted
# by transaction X is only removable once every holder is newer than X. Following
# PostgreSQL's own horizon (procarray.c): backends of this database and those that
# affect every database (no database: WAL senders), the xmin reported by standbys,
# replication slots, prepared transactions, and vacuum_defer_cleanup_age.
_HORIZON = """
WITH now AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS n),
holders AS (
    SELECT backend_xmin AS x FROM pg_stat_activity
        WHERE pid <> pg_backend_pid() AND (datname = current_database() OR datname IS NULL)
    UNION ALL SELECT backend_xid FROM pg_stat_activity
        WHERE pid <> pg_backend_pid() AND (datname = current_database() OR datname IS NULL)
    UNION ALL SELECT backend_xmin FROM pg_stat_replication
    UNION ALL SELECT xmin FROM pg_replication_slots
    UNION ALL SELECT transaction FROM pg_prepared_xacts
)
SELECT min(n - (((n % 4294967296) - x::text::bigint + 4294967296) % 4294967296)) AS oldest,
       (SELECT n FROM now) AS next_xid,
       coalesce((SELECT setting::bigint FROM pg_settings WHERE name = 'vacuum_defer_cleanup_age'), 0)
           AS defer_age
FROM holders, now WHERE x IS NOT NULL
"""


class PostgresKeyTable:
    """``ledger_keys`` in the store's PostgreSQL schema, through the eventsourcing pool."""

    def __init__(self, datastore: Any, schema: str) -> None:
        from psycopg import sql

        self._datastore = datastore
        self._table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(TABLE))
        self._shreds = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(SHREDS))
        self._sql = sql

    def _q(self, text: str) -> Any:
        return self._sql.SQL(text).format(table=self._table, shreds=self._shreds)

    def fetch(self, lineage_id: UUID) -> Any:
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(self._q("SELECT key FROM {table} WHERE lineage_id = %s"), (lineage_id,))
            row = cur.fetchone()
        return None if row is None else _raw(row["key"])

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> Any:
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(
                self._q("INSERT INTO {table} (lineage_id, key) VALUES (%s, %s) ON CONFLICT DO NOTHING"),
                (lineage_id, key),
            )
            cur.execute(self._q("SELECT key FROM {table} WHERE lineage_id = %s"), (lineage_id,))
            return _raw(cur.fetchone()["key"])

    def delete(self, lineage_id: UUID) -> bool:
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(self._q("DELETE FROM {table} WHERE lineage_id = %s"), (lineage_id,))
            deleted = cur.rowcount > 0
            if deleted:  # remember which transaction deleted it: its snapshot horizon decides
                cur.execute(
                    self._q(
                        "INSERT INTO {shreds} (lineage_id, deleted_by) VALUES (%s, pg_current_xact_id()) "
                        "ON CONFLICT (lineage_id) DO UPDATE SET deleted_by = EXCLUDED.deleted_by"
                    ),
                    (lineage_id,),
                )
        return deleted

    def shred(self) -> set[UUID]:
        """Rewrite the key table once no snapshot can still see a deleted key.

        ``VACUUM FULL`` copies only rows some snapshot may still need, into a new
        file, and drops the old one; a plain VACUUM would leave the dead row's
        bytes in the page's free space. It runs only when the horizon is past
        every pending deletion (otherwise it would copy the dead rows along) and
        gives up after a short lock wait.
        """
        import psycopg
        from psycopg import errors as pg_errors

        with self._datastore.transaction(commit=False) as cur:
            cur.execute(self._q("SELECT lineage_id, deleted_by::text::bigint AS xid FROM {shreds}"))
            pending = {r["lineage_id"]: r["xid"] for r in cur.fetchall()}
        if not pending:
            return set()
        try:
            return self._shred(pending, pg_errors)
        except psycopg.Error as exc:
            raise StoreError(f"key table {TABLE!r}: shredding deleted keys failed: {exc}") from exc

    def _shred(self, pending: dict[UUID, int], pg_errors: Any) -> set[UUID]:
        with self._datastore.get_connection() as conn:  # autocommit: VACUUM cannot run in a transaction
            row = conn.execute(_HORIZON).fetchone()
            oldest = row["oldest"] if row["oldest"] is not None else row["next_xid"]
            horizon = oldest - row["defer_age"]
            ready = {lineage for lineage, xid in pending.items() if xid < horizon}
            if not ready:
                return set(pending)
            conn.execute(f"SET lock_timeout = {SHRED_WAIT_MS}")
            try:
                conn.execute(self._q("VACUUM FULL {table}"))
            except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled):
                return set(pending)
            finally:
                conn.execute("RESET lock_timeout")
            with conn.transaction():
                conn.execute(
                    self._q("DELETE FROM {shreds} WHERE lineage_id = ANY(%s) AND deleted_by::text::bigint < %s"),
                    (list(ready), horizon),
                )
        return set(pending) - ready

    def fetch_all(self) -> dict[UUID, Any]:
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(self._q("SELECT lineage_id, key FROM {table}"))
            return {r["lineage_id"]: _raw(r["key"]) for r in cur.fetchall()}


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

    def all_keys(self) -> dict[UUID, Any]:
        """Every key the table still holds, as stored (for audits: what could still be decrypted)."""
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

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except PersistenceError as exc:
            raise StoreError(f"key table {TABLE!r}: {exc}") from exc

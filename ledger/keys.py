"""Per-lineage data keys, kept outside the append-only event table.

Erasure must destroy something, and the event table cannot be edited, so the
keys that open personal fields live in a small table of their own in the same
database (``ledger_keys``), or in a dict for ``memory://``. Any ledger on the
same store reads the same keys: a miss is fetched from the table and cached.

Destroying a key deletes its row and then makes the database drop the bytes
too: SQLite rewrites the freed page with zeros (``secure_delete``) and empties
its WAL; PostgreSQL vacuums the table so the dead row is removed. Copies made
outside the database (backups, PostgreSQL's own WAL archive) are beyond reach;
they age out with the retention the operator chose.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import PersistenceError

from .errors import StoreError
from .personal import new_key

__all__ = ["KeyStore", "KeyTable", "MemoryKeyTable", "PostgresKeyTable", "SQLiteKeyTable", "create_postgres_key_table"]

TABLE = "ledger_keys"


class KeyTable(Protocol):
    """Where one backend keeps the keys: read, insert once, delete for good."""

    def fetch(self, lineage_id: UUID) -> bytes | None: ...

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> bytes: ...

    def delete(self, lineage_id: UUID) -> bool: ...

    def fetch_all(self) -> dict[UUID, bytes]: ...


class MemoryKeyTable:
    """The keys of a ``memory://`` store: a dict that lives and dies with the store."""

    def __init__(self) -> None:
        self._keys: dict[UUID, bytes] = {}

    def fetch(self, lineage_id: UUID) -> bytes | None:
        return self._keys.get(lineage_id)

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> bytes:
        return self._keys.setdefault(lineage_id, key)

    def delete(self, lineage_id: UUID) -> bool:
        return self._keys.pop(lineage_id, None) is not None

    def fetch_all(self) -> dict[UUID, bytes]:
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

    def fetch(self, lineage_id: UUID) -> bytes | None:
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(f"SELECT key FROM {TABLE} WHERE lineage_id = ?", (str(lineage_id),))
            row = cur.fetchone()
        return None if row is None else bytes(row[0])

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> bytes:
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (lineage_id, key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (str(lineage_id), key),
            )
            cur.execute(f"SELECT key FROM {TABLE} WHERE lineage_id = ?", (str(lineage_id),))
            return bytes(cur.fetchone()[0])

    def delete(self, lineage_id: UUID) -> bool:
        with self._datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            raw.execute("PRAGMA secure_delete = ON")  # freed page content is overwritten with zeros
            with conn.transaction(commit=True) as cur:
                cur.execute(f"DELETE FROM {TABLE} WHERE lineage_id = ?", (str(lineage_id),))
                deleted = cur.sqlite_cursor.rowcount > 0
            # The key's old page also sits in WAL frames: copy back and truncate the WAL.
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return deleted

    def fetch_all(self) -> dict[UUID, bytes]:
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(f"SELECT lineage_id, key FROM {TABLE}")
            return {UUID(r[0]): bytes(r[1]) for r in cur.fetchall()}


def create_postgres_key_table(conn: Any, schema: str) -> None:
    """Create ``ledger_keys`` in ``schema`` (called once, under the store's creation lock)."""
    from psycopg import sql

    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.{} (lineage_id uuid PRIMARY KEY, key bytea NOT NULL)"
        ).format(sql.Identifier(schema), sql.Identifier(TABLE))
    )


class PostgresKeyTable:
    """``ledger_keys`` in the store's PostgreSQL schema, through the eventsourcing pool."""

    def __init__(self, datastore: Any, schema: str) -> None:
        from psycopg import sql

        self._datastore = datastore
        self._table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(TABLE))
        self._sql = sql

    def _q(self, text: str) -> Any:
        return self._sql.SQL(text).format(table=self._table)

    def fetch(self, lineage_id: UUID) -> bytes | None:
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(self._q("SELECT key FROM {table} WHERE lineage_id = %s"), (lineage_id,))
            row = cur.fetchone()
        return None if row is None else bytes(row["key"])

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> bytes:
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(
                self._q("INSERT INTO {table} (lineage_id, key) VALUES (%s, %s) ON CONFLICT DO NOTHING"),
                (lineage_id, key),
            )
            cur.execute(self._q("SELECT key FROM {table} WHERE lineage_id = %s"), (lineage_id,))
            return bytes(cur.fetchone()["key"])

    def delete(self, lineage_id: UUID) -> bool:
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(self._q("DELETE FROM {table} WHERE lineage_id = %s"), (lineage_id,))
            deleted = cur.rowcount > 0
        with self._datastore.get_connection() as conn:  # autocommit: VACUUM cannot run in a transaction
            conn.execute(self._q("VACUUM {table}"))
        return deleted

    def fetch_all(self) -> dict[UUID, bytes]:
        with self._datastore.transaction(commit=False) as cur:
            cur.execute(self._q("SELECT lineage_id, key FROM {table}"))
            return {r["lineage_id"]: bytes(r["key"]) for r in cur.fetchall()}


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
        key = self._cache.get(lineage_id)
        if key is None:
            key = self._call(self._table.fetch, lineage_id)
            if key is not None:
                with self._lock:
                    self._cache[lineage_id] = key
        return key

    def create(self, lineage_id: UUID) -> bytes:
        """The lineage's key, written to the table first if it has none (race-safe)."""
        key = self.get(lineage_id)
        if key is None:
            key = self._call(self._table.insert_if_absent, lineage_id, new_key())
            with self._lock:
                self._cache[lineage_id] = key
        return key

    def destroy(self, lineage_id: UUID) -> bool:
        """Delete the key for good; True when a key was there."""
        self.forget(lineage_id)
        return bool(self._call(self._table.delete, lineage_id))

    def forget(self, lineage_id: UUID) -> None:
        with self._lock:
            self._cache.pop(lineage_id, None)

    def all_keys(self) -> dict[UUID, bytes]:
        """Every key the table still holds (for audits: what could still be decrypted)."""
        return self._call(self._table.fetch_all)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except PersistenceError as exc:
            raise StoreError(f"key table {TABLE!r}: {exc}") from exc

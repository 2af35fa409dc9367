"""The PostgreSQL backend's key table: per-lineage data keys, and shredding the deleted ones.

``keys.py`` holds what every backend's key table shares; this module holds the SQL for
PostgreSQL, run through the eventsourcing datastore's pool, and the snapshot horizon that
decides when a deleted key's bytes can be rewritten away.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.errors import StoreError
from ledger.store.keys import SHRED_WAIT_MS, SHREDS, TABLE, raw_key

__all__ = ["PostgresKeyTable", "create_postgres_key_table"]


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
        return None if row is None else raw_key(row["key"])

    def insert_if_absent(self, lineage_id: UUID, key: bytes) -> Any:
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(
                self._q("INSERT INTO {table} (lineage_id, key) VALUES (%s, %s) ON CONFLICT DO NOTHING"),
                (lineage_id, key),
            )
            cur.execute(self._q("SELECT key FROM {table} WHERE lineage_id = %s"), (lineage_id,))
            return raw_key(cur.fetchone()["key"])

    def delete(self, lineage_id: UUID) -> bool:
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(self._q("DELETE FROM {table} WHERE lineage_id = %s"), (lineage_id,))
            count: int = cur.rowcount
            deleted = count > 0
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
            return {r["lineage_id"]: raw_key(r["key"]) for r in cur.fetchall()}

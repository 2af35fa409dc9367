"""The PostgreSQL backend's version index: its tables, and the queries that write and read them.

The index (``version_index.py``) is a projection kept in the same schema as the events and
written in the same transaction as each append, so the queries live beside the backend but
apart from its append paths and checkpoints: ``PostgresBackend`` takes them in as a mixin.
They reach the database only through the attributes declared on ``PostgresIndex`` (the
eventsourcing datastore and the table names the backend composes once when it opens).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from ledger.events.seal import GENESIS
from ledger.store.pg_append import LIVE_ROW
from ledger.store.version_index import ANALYTICS_SECRET, INDEX_NAME, IndexRows, lineage_versions

__all__ = ["PostgresIndex", "create_index_tables"]

# The stored version index (``version_index.py``).
_VERSIONS = "ledger_version_positions"
_ERASURES = "ledger_erasure_index"
_TRACKING = "ledger_index_tracking"
#: Durable followers (``Ledger.follow``): the last position each named follower acknowledged.
_FOLLOWERS = "ledger_followers"
_MEMOS = "ledger_memo_index"
_TREE_STATE = "ledger_tree_state"
_TREE_TILES = "ledger_tree_tiles"
_SECRETS = "ledger_secrets"


def create_index_tables(conn: Any, schema: str) -> None:
    """The version index's tables and tracking row (idempotent)."""
    from psycopg import sql

    s = sql.Identifier(schema)
    for statement in (
        "CREATE TABLE IF NOT EXISTS {s}.{v} (ecs_id uuid PRIMARY KEY, position bigint NOT NULL, root_ecs_id uuid)",
        "ALTER TABLE {s}.{v} ADD COLUMN IF NOT EXISTS root_ecs_id uuid",  # the layout before tree rows
        "CREATE TABLE IF NOT EXISTS {s}.{e} (lineage_id uuid PRIMARY KEY, position bigint NOT NULL)",
        "CREATE INDEX IF NOT EXISTS ledger_erasure_index_position ON {s}.{e} (position)",
        "CREATE TABLE IF NOT EXISTS {s}.{t} (name text PRIMARY KEY, position bigint NOT NULL, head_hash text NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {s}.{f} (name text PRIMARY KEY, position bigint NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {s}.{m} (cache_key bytea PRIMARY KEY, execution_id uuid NOT NULL, position bigint NOT NULL)",
        # The Merkle tree (``merkle.py``): the state row names the log (its signed heads' origin).
        "CREATE TABLE IF NOT EXISTS {s}.{ts} (name text PRIMARY KEY, origin text NOT NULL, size bigint NOT NULL, position bigint NOT NULL)",
        "INSERT INTO {s}.{ts} (name, origin, size, position) "
        "VALUES ('tree', 'entity-ledger/' || replace(gen_random_uuid()::text, '-', ''), 0, 0) ON CONFLICT DO NOTHING",
        "CREATE TABLE IF NOT EXISTS {s}.{tt} (level int NOT NULL, idx bigint NOT NULL, first_position bigint NOT NULL, "
        "hashes bytea NOT NULL, PRIMARY KEY (level, idx))",
        "CREATE INDEX IF NOT EXISTS ledger_tree_tiles_first ON {s}.{tt} (level, first_position)",
        # keys for what the store vouches for outside itself (the analytics cache's MAC)
        "CREATE TABLE IF NOT EXISTS {s}.{k} (name text PRIMARY KEY, value bytea NOT NULL)",
    ):
        conn.execute(
            sql.SQL(statement).format(
                s=s,
                v=sql.Identifier(_VERSIONS),
                e=sql.Identifier(_ERASURES),
                t=sql.Identifier(_TRACKING),
                f=sql.Identifier(_FOLLOWERS),
                m=sql.Identifier(_MEMOS),
                ts=sql.Identifier(_TREE_STATE),
                tt=sql.Identifier(_TREE_TILES),
                k=sql.Identifier(_SECRETS),
            )
        )
    conn.execute(
        sql.SQL("INSERT INTO {}.{} (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(s, sql.Identifier(_SECRETS)),
        (ANALYTICS_SECRET, os.urandom(32)),
    )
    conn.execute(
        sql.SQL("INSERT INTO {}.{} (name, position, head_hash) VALUES (%s, 0, %s) ON CONFLICT DO NOTHING").format(
            s, sql.Identifier(_TRACKING)
        ),
        (INDEX_NAME, GENESIS),
    )


class PostgresIndex:
    """The version index's queries of ``PostgresBackend`` (a mixin: the backend opens the pool
    and composes the table names; these methods run the index's SQL through them)."""

    #: The eventsourcing ``PostgresDatastore`` (its pool and transactions).
    _datastore: Any
    #: Schema-qualified names, composed by the backend when it opens.
    _versions: Any
    _erasures: Any
    _tracking: Any
    _memos: Any
    _events: Any
    _insert_memos: Any
    _memo_sql: Any
    #: Whether writers of this schema take positions concurrently (``PostgresBackend``).
    _concurrent: bool
    _lock_keys: Callable[[], tuple[int, int, int]]
    _select_records: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]

    def _write_index(self, curs: Any, rows: IndexRows, expect: int | None, upto: int, upto_hash: str) -> bool:
        """Add rows and move the tracked position from ``expect`` to ``upto``, in the caller's transaction
        (``expect`` None: leave the tracking row alone, as concurrent appends do)."""
        from psycopg import sql

        if not self._has_index(curs):
            return False
        versions, roots = rows.split_roots()
        if versions:  # a new version's tree row is a column of its own row
            curs.executemany(
                sql.SQL(
                    "INSERT INTO {} AS v (ecs_id, position, root_ecs_id) VALUES (%s, %s, %s) "
                    "ON CONFLICT (ecs_id) DO UPDATE SET root_ecs_id = coalesce(EXCLUDED.root_ecs_id, v.root_ecs_id)"
                ).format(self._versions),
                versions,
            )
        if roots:  # versions stored earlier that a new root's tree holds; never an older root (see pg_append)
            curs.executemany(
                sql.SQL(
                    "UPDATE {v} ix SET root_ecs_id = %s WHERE ix.ecs_id = %s AND NOT EXISTS ("
                    "SELECT 1 FROM {v} cur, {v} new WHERE cur.ecs_id = ix.root_ecs_id AND new.ecs_id = %s "
                    "AND cur.position > new.position)"
                ).format(v=self._versions),
                [(root, member, root) for member, root in roots.items()],
            )
        if rows.erasures:
            curs.executemany(
                sql.SQL("INSERT INTO {} (lineage_id, position) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(self._erasures),
                rows.erasures,
            )
        if rows.memos:
            self._write_memos(curs, rows.memos)
        if expect is None:
            return True
        curs.execute(
            sql.SQL("UPDATE {} SET position = %s, head_hash = %s WHERE name = %s AND position = %s").format(self._tracking),
            (upto, upto_hash, INDEX_NAME, expect),
            prepare=True,
        )
        count: int = curs.rowcount
        return count == 1

    def _write_memos(self, conn: Any, memos: list[tuple[bytes, UUID, int]]) -> None:
        """Memo rows (key, execution, position) in the caller's transaction; the first per key stays.

        Rows are sorted by position first: within one statement ``ON CONFLICT DO NOTHING``
        keeps whichever row of a key it meets first.
        """
        memos = sorted(memos, key=lambda m: m[2])
        conn.execute(self._insert_memos, ([m[0] for m in memos], [m[1] for m in memos], [m[2] for m in memos]))

    def memo_lookup(self, key: bytes) -> tuple[Any, ...] | None:
        """(execution_id, position, stream id, version, topic, state): the memo row and its record, one query."""
        from psycopg.rows import tuple_row

        with self._datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self._memo_sql, (key,), prepare=True)
            row: tuple[Any, ...] | None = curs.fetchone()
        return row

    def _has_index(self, curs: Any) -> bool:
        """Whether this schema has the index tables (a schema made by an older library has not)."""
        if getattr(self, "_index_known", False):
            return True
        curs.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (f'"{self._datastore.schema}".{_TRACKING}',))
        row = curs.fetchone()
        present = bool(row["present"])
        self._index_known = present
        return present

    def index_state(self) -> tuple[int, str] | None:
        from psycopg import sql

        with self._datastore.transaction(commit=False) as curs:
            if not self._has_index(curs):
                return None
            curs.execute(sql.SQL("SELECT position, head_hash FROM {} WHERE name = %s").format(self._tracking), (INDEX_NAME,))
            row = curs.fetchone()
        return None if row is None else (row["position"], row["head_hash"])

    def add_index_rows(self, rows: IndexRows, expect: int, upto: int, upto_hash: str) -> bool:
        with self._datastore.transaction(commit=True) as curs:
            return self._write_index(curs, rows, expect, upto, upto_hash)

    def reset_index(self) -> None:
        from psycopg import sql

        with self._datastore.transaction(commit=True) as curs:
            if self._concurrent:
                # no append may write rows while they are deleted: the write lock, exclusive, to
                # commit; catch-up then indexes up to the last record, and appends after it
                curs.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_keys()[0],))
                curs.execute(
                    sql.SQL("UPDATE {} SET position = (SELECT coalesce(max(notification_id), 0) FROM {}) WHERE name = %s").format(
                        self._tracking, self._events
                    ),
                    (LIVE_ROW,),
                )
            curs.execute(sql.SQL("DELETE FROM {}").format(self._versions))
            curs.execute(sql.SQL("DELETE FROM {}").format(self._erasures))
            curs.execute(sql.SQL("DELETE FROM {}").format(self._memos))
            curs.execute(
                sql.SQL("UPDATE {} SET position = 0, head_hash = %s WHERE name = %s").format(self._tracking), (GENESIS, INDEX_NAME)
            )

    def version_position(self, ecs_id: UUID) -> int | None:
        from psycopg import sql

        with self._datastore.transaction(commit=False) as curs:
            curs.execute(sql.SQL("SELECT position FROM {} WHERE ecs_id = %s").format(self._versions), (ecs_id,))
            row = curs.fetchone()
        return None if row is None else row["position"]

    def version_positions(self, ecs_ids: Sequence[UUID]) -> dict[UUID, int]:
        from psycopg import sql

        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL("SELECT ecs_id, position FROM {} WHERE ecs_id = ANY(%s)").format(self._versions), (list(ecs_ids),)
            )
            return {r["ecs_id"]: r["position"] for r in curs.fetchall()}

    def stream_heads(self, stream_ids: Sequence[UUID], upto: int) -> dict[UUID, tuple[int, int, bytes]]:
        from psycopg import sql

        table = self._events
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL(
                    "SELECT DISTINCT ON (originator_id) originator_id, notification_id, originator_version, state "
                    "FROM {} WHERE originator_id = ANY(%s) AND notification_id <= %s "
                    "ORDER BY originator_id, originator_version DESC"
                ).format(table),
                (list(stream_ids), upto),
            )
            return {
                r["originator_id"]: (r["notification_id"], r["originator_version"], bytes(r["state"] or b""))
                for r in curs.fetchall()
            }

    def read_positions(self, positions: Sequence[int]) -> list[tuple[Any, ...]]:
        return self._select_records("notification_id = ANY(%s) ORDER BY notification_id", (list(positions),))

    def tree_root(self, ecs_id: UUID) -> UUID | None:
        from psycopg import sql

        with self._datastore.transaction(commit=False) as curs:
            curs.execute(sql.SQL("SELECT root_ecs_id FROM {} WHERE ecs_id = %s").format(self._versions), (ecs_id,), prepare=True)
            row = curs.fetchone()
        return None if row is None else row["root_ecs_id"]

    def stream_head(self, stream_id: UUID, upto: int) -> tuple[int, int, bytes] | None:
        from psycopg import sql

        table = self._events
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL(
                    "SELECT notification_id, originator_version, state FROM {} "
                    "WHERE originator_id = %s AND notification_id <= %s ORDER BY originator_version DESC LIMIT 1"
                ).format(table),
                (stream_id, upto),
                prepare=True,
            )
            row = curs.fetchone()
        return None if row is None else (row["notification_id"], row["originator_version"], bytes(row["state"] or b""))

    def streams_between(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, int]]:
        """Streams with ids in [low, high] (uuids compare bytewise), each with its last record's position."""
        from psycopg import sql

        table = self._events
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL(
                    "SELECT originator_id, max(notification_id) AS position FROM {} "
                    "WHERE originator_id BETWEEN %s AND %s GROUP BY originator_id ORDER BY originator_id LIMIT %s"
                ).format(table),
                (low, high, limit),
            )
            return [(r["originator_id"], r["position"]) for r in curs.fetchall()]

    def versions_between(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, int]]:
        from psycopg import sql

        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL("SELECT ecs_id, position FROM {} WHERE ecs_id BETWEEN %s AND %s ORDER BY ecs_id LIMIT %s").format(
                    self._versions
                ),
                (low, high, limit),
            )
            return [(r["ecs_id"], r["position"]) for r in curs.fetchall()]

    def lineage_entries(self, lineage_id: UUID) -> list[tuple[UUID, int, int]]:
        """(ecs_id, version, position) of a lineage's versions, through the events table's
        (stream, version) index, checked by ``version_index.lineage_versions``."""
        from psycopg import sql

        table = self._events
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                sql.SQL(
                    "SELECT notification_id, originator_version, topic, substring(state from 1 for 64) AS head "
                    "FROM {} WHERE originator_id = %s ORDER BY originator_version"
                ).format(table),
                (lineage_id,),
            )
            rows = [
                (r["notification_id"], r["originator_version"], r["topic"], None if r["head"] is None else bytes(r["head"]))
                for r in curs.fetchall()
            ]

            def whole(position: int) -> Any:
                curs.execute(sql.SQL("SELECT state FROM {} WHERE notification_id = %s").format(table), (position,))
                state = curs.fetchone()["state"]
                return None if state is None else bytes(state)

            return lineage_versions(rows, whole, lineage_id)

    def erasure_entries(self, since: int = 0) -> dict[UUID, int]:
        from psycopg import sql

        with self._datastore.transaction(commit=False) as curs:
            curs.execute(sql.SQL("SELECT lineage_id, position FROM {} WHERE position > %s").format(self._erasures), (since,))
            return {r["lineage_id"]: r["position"] for r in curs.fetchall()}

    def erasure_position(self, lineage_id: UUID) -> int | None:
        from psycopg import sql

        with self._datastore.transaction(commit=False) as curs:
            curs.execute(sql.SQL("SELECT position FROM {} WHERE lineage_id = %s").format(self._erasures), (lineage_id,), prepare=True)
            row = curs.fetchone()
        return None if row is None else row["position"]

    def index_dump(self) -> IndexRows:
        from psycopg import sql

        with self._datastore.transaction(commit=False) as curs:
            curs.execute(sql.SQL("SELECT ecs_id, position FROM {} ORDER BY position").format(self._versions))
            versions = [(r["ecs_id"], r["position"]) for r in curs.fetchall()]
            curs.execute(sql.SQL("SELECT lineage_id, position FROM {} ORDER BY position").format(self._erasures))
            erasures = [(r["lineage_id"], r["position"]) for r in curs.fetchall()]
            curs.execute(sql.SQL("SELECT ecs_id, root_ecs_id FROM {} WHERE root_ecs_id IS NOT NULL").format(self._versions))
            roots = sorted((r["ecs_id"], r["root_ecs_id"]) for r in curs.fetchall())
            curs.execute(sql.SQL("SELECT cache_key, execution_id, position FROM {} ORDER BY position").format(self._memos))
            memos = [(bytes(r["cache_key"]), r["execution_id"], r["position"]) for r in curs.fetchall()]
        return IndexRows(versions, erasures, roots, memos)

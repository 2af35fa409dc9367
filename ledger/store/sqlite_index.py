"""The SQLite backend's version index queries: writing index rows in an append's transaction,
and the lookups the write side and the readers make.

The index (``version_index.py``) is a projection kept in the same file as the events and
written in the same transaction as each append; ``SQLiteBackend`` takes these queries in as a
mixin. They reach the file only through the attributes declared on ``SQLiteIndex``: the
eventsourcing datastore's pool and the backend's own connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from operator import attrgetter
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledger.events.seal import GENESIS
from ledger.store.version_index import INDEX_NAME, IndexRows, lineage_versions

if TYPE_CHECKING:
    from eventsourcing.sqlite import SQLiteApplicationRecorder

__all__ = ["SQLiteIndex"]

_INT = attrgetter("int")  # UUID -> its int, a C-level call

# The stored version index (``version_index.py``): ecs_ids as 16-byte blobs (half the pages
# of hex text: random keys make every batch touch many leaf pages, so size is speed here).
_VERSIONS = "ledger_version_positions"
_ERASURES = "ledger_erasure_index"
_TRACKING = "ledger_index_tracking"
_MEMOS = "ledger_memo_index"


class SQLiteIndex:
    """The version index's queries of ``SQLiteBackend`` (a mixin: the backend opens the file;
    these methods run the index's SQL on its connections)."""

    recorder: SQLiteApplicationRecorder
    #: The eventsourcing ``SQLiteDatastore`` (its pool and transactions).
    _datastore: Any
    #: The backend's own connection, under its lock (``SQLiteBackend._own_connection``).
    _own_connection: Callable[[], AbstractContextManager[Any]]

    def _write_index(
        self, raw: Any, rows: IndexRows, expect: int, upto: int, upto_hash: str, *, fresh: bool = False
    ) -> bool:
        """Add rows and move the tracked position from ``expect`` to ``upto``; False if it was elsewhere.

        Runs inside the caller's transaction. A file made before the index existed
        has no index tables: nothing is written (the next writable open builds them).
        ``fresh``: the rows are of records just appended, so no version row can exist
        yet (a catch-up may meet rows an older layout wrote, and fills in their roots).
        """
        try:
            # each member's last root in this batch, keyed by UUID.int (UUID.__hash__ is Python
            # code, called for every member and version); UUID.bytes is int.to_bytes(16, "big")
            roots: dict[int, UUID] = {}
            if rows.roots:
                members, tops = zip(*rows.roots)
                roots = dict(zip(map(_INT, members), tops))
            if rows.versions:
                versions = [
                    (e.int.to_bytes(16, "big"), p, None if (r := roots.pop(e.int, None)) is None else r.int.to_bytes(16, "big"))
                    for e, p in rows.versions
                ]
                # a new version's tree row is a column of its own row: no second random-key insert
                raw.executemany(
                    f"INSERT OR IGNORE INTO {_VERSIONS} (ecs_id, position, root_ecs_id) VALUES (?, ?, ?)"
                    if fresh
                    else f"INSERT INTO {_VERSIONS} (ecs_id, position, root_ecs_id) VALUES (?, ?, ?) "
                    "ON CONFLICT (ecs_id) DO UPDATE SET root_ecs_id = coalesce(excluded.root_ecs_id, root_ecs_id)",
                    versions,
                )
            if roots:  # versions stored earlier that a new root's tree holds
                raw.executemany(
                    f"UPDATE {_VERSIONS} SET root_ecs_id = ? WHERE ecs_id = ?",
                    [(root.int.to_bytes(16, "big"), member.to_bytes(16, "big")) for member, root in roots.items()],
                )
            if rows.erasures:
                raw.executemany(
                    f"INSERT OR IGNORE INTO {_ERASURES} (lineage_id, position) VALUES (?, ?)",
                    [(lineage.hex, p) for lineage, p in rows.erasures],
                )
            if rows.memos:  # the first execution filed under a key stays
                raw.executemany(
                    f"INSERT OR IGNORE INTO {_MEMOS} (cache_key, execution_id, position) VALUES (?, ?, ?)",
                    [(key, execution.bytes, p) for key, execution, p in rows.memos],
                )
            moved = raw.execute(
                f"UPDATE {_TRACKING} SET position = ?, head_hash = ? WHERE name = ? AND position = ?",
                (upto, upto_hash, INDEX_NAME, expect),
            )
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return False
            raise
        count: int = moved.rowcount
        return count == 1

    def index_state(self) -> tuple[int, str] | None:
        """The tracked (position, head_hash), or None where the index tables do not exist."""
        try:
            with self._datastore.get_connection(commit=False) as conn:
                row = conn._sqlite_conn.execute(
                    f"SELECT position, head_hash FROM {_TRACKING} WHERE name = ?", (INDEX_NAME,)
                ).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return None if row is None else (row[0], row[1])

    def add_index_rows(self, rows: IndexRows, expect: int, upto: int, upto_hash: str) -> bool:
        """Catch-up: add rows for records up to ``upto`` and move the tracked position there."""
        with self._datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            raw.execute("BEGIN IMMEDIATE")
            try:
                moved = self._write_index(raw, rows, expect, upto, upto_hash)
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
        return moved

    def reset_index(self) -> None:
        """Forget every index row (the log below the tracked position was rewritten)."""
        with self._datastore.transaction(commit=True) as cur:
            cur.execute(f"DELETE FROM {_VERSIONS}")
            cur.execute(f"DELETE FROM {_ERASURES}")
            cur.execute(f"DELETE FROM {_MEMOS}")
            cur.execute(f"UPDATE {_TRACKING} SET position = 0, head_hash = ? WHERE name = ?", (GENESIS, INDEX_NAME))

    def version_position(self, ecs_id: UUID) -> int | None:
        """The log position of one stored version, or None."""
        with self._own_connection() as conn:
            row = conn._sqlite_conn.execute(f"SELECT position FROM {_VERSIONS} WHERE ecs_id = ?", (ecs_id.bytes,)).fetchone()
        return None if row is None else row[0]

    def version_positions(self, ecs_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The positions of those of ``ecs_ids`` that are stored versions (one query per 500)."""
        out: dict[UUID, int] = {}
        with self._own_connection() as conn:
            raw = conn._sqlite_conn
            for i in range(0, len(ecs_ids), 500):
                part = ecs_ids[i : i + 500]
                rows = raw.execute(
                    f"SELECT ecs_id, position FROM {_VERSIONS} WHERE ecs_id IN ({','.join('?' * len(part))})",
                    [e.bytes for e in part],
                ).fetchall()
                out.update((UUID(bytes=bytes(e)), p) for e, p in rows)
        return out

    def stream_heads(self, stream_ids: Sequence[UUID], upto: int) -> dict[UUID, tuple[int, int, bytes]]:
        """``stream_head`` of each of ``stream_ids`` that has a record at or below ``upto``."""
        table = self.recorder.events_table_name
        out: dict[UUID, tuple[int, int, bytes]] = {}
        with self._own_connection() as conn:
            raw = conn._sqlite_conn
            for i in range(0, len(stream_ids), 500):
                part = stream_ids[i : i + 500]
                rows = raw.execute(
                    f"SELECT e.originator_id, e.rowid, e.originator_version, e.state FROM {table} e JOIN ("
                    f"SELECT originator_id, max(originator_version) AS v FROM {table} "
                    f"WHERE originator_id IN ({','.join('?' * len(part))}) AND rowid <= ? GROUP BY originator_id"
                    ") m ON e.originator_id = m.originator_id AND e.originator_version = m.v",
                    [*(s.hex for s in part), upto],
                ).fetchall()
                out.update((UUID(stream), (position, version, state)) for stream, position, version, state in rows)
        return out

    def read_positions(self, positions: Sequence[int]) -> list[tuple[Any, ...]]:
        """The records at ``positions`` (raw, as ``read_rows``), in position order; missing ones are absent."""
        table = self.recorder.events_table_name
        out: list[tuple[Any, ...]] = []
        with self._own_connection() as conn:
            raw = conn._sqlite_conn
            for i in range(0, len(positions), 500):
                part = positions[i : i + 500]
                out.extend(raw.execute(
                    f"SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
                    f"WHERE rowid IN ({','.join('?' * len(part))}) ORDER BY rowid",
                    list(part),
                ).fetchall())
        out.sort(key=lambda row: row[0])
        return out

    def memo_lookup(self, key: bytes) -> tuple[Any, ...] | None:
        """(execution_id, position, stream id, version, topic, state): the memo row filed under a key
        and its record, in one query; None when there is none (or the file has no memo table)."""
        table = self.recorder.events_table_name
        try:
            with self._own_connection() as conn:
                row = conn._sqlite_conn.execute(
                    f"SELECT m.execution_id, m.position, e.originator_id, e.originator_version, e.topic, e.state "
                    f"FROM {_MEMOS} m LEFT JOIN {table} e ON e.rowid = m.position WHERE m.cache_key = ?",
                    (key,),
                ).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
        return None if row is None else (UUID(bytes=bytes(row[0])), *row[1:])

    def tree_root(self, ecs_id: UUID) -> UUID | None:
        """The root version of the latest stored tree holding ``ecs_id``, or None."""
        with self._own_connection() as conn:
            row = conn._sqlite_conn.execute(f"SELECT root_ecs_id FROM {_VERSIONS} WHERE ecs_id = ?", (ecs_id.bytes,)).fetchone()
        return None if row is None or row[0] is None else UUID(bytes=bytes(row[0]))

    def stream_head(self, stream_id: UUID, upto: int) -> tuple[int, int, bytes] | None:
        """(position, version, state) of a stream's last record at or below ``upto``, or None."""
        table = self.recorder.events_table_name
        with self._own_connection() as conn:
            row: tuple[int, int, bytes] | None = conn._sqlite_conn.execute(
                f"SELECT rowid, originator_version, state FROM {table} WHERE originator_id = ? AND rowid <= ? "
                "ORDER BY originator_version DESC LIMIT 1",
                (stream_id.hex, upto),
            ).fetchone()
        return row

    def streams_between(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, int]]:
        """Streams with ids in [low, high] (hex text here), each with its last record's position."""
        table = self.recorder.events_table_name
        with self._own_connection() as conn:
            rows = conn._sqlite_conn.execute(
                f"SELECT originator_id, max(rowid) FROM {table} WHERE originator_id BETWEEN ? AND ? "
                "GROUP BY originator_id ORDER BY originator_id LIMIT ?",
                (low.hex, high.hex, limit),
            ).fetchall()
        return [(UUID(stream), position) for stream, position in rows]

    def versions_between(self, low: UUID, high: UUID, limit: int) -> list[tuple[UUID, int]]:
        """Stored versions with ecs_ids in [low, high] (16-byte blobs compare as the hex does)."""
        with self._own_connection() as conn:
            rows = conn._sqlite_conn.execute(
                f"SELECT ecs_id, position FROM {_VERSIONS} WHERE ecs_id BETWEEN ? AND ? ORDER BY ecs_id LIMIT ?",
                (low.bytes, high.bytes, limit),
            ).fetchall()
        return [(UUID(bytes=bytes(e)), p) for e, p in rows]

    def lineage_entries(self, lineage_id: UUID) -> list[tuple[UUID, int, int]]:
        """(ecs_id, version, position) of every version of a lineage, oldest first.

        From the events table's own (stream, version) index: a lineage's stream holds its
        versions (and at most its erasure); ``version_index.lineage_versions`` checks them.
        """
        table = self.recorder.events_table_name
        with self._datastore.get_connection(commit=False) as conn:
            raw = conn._sqlite_conn
            rows = raw.execute(
                f"SELECT rowid, originator_version, topic, substr(state, 1, 64) FROM {table} "
                "WHERE originator_id = ? ORDER BY originator_version",
                (lineage_id.hex,),
            ).fetchall()

            def whole(position: int) -> Any:
                return raw.execute(f"SELECT state FROM {table} WHERE rowid = ?", (position,)).fetchone()[0]

            return lineage_versions(rows, whole, lineage_id)

    def erasure_entries(self, since: int = 0) -> dict[UUID, int]:
        with self._datastore.get_connection(commit=False) as conn:
            rows = conn._sqlite_conn.execute(
                f"SELECT lineage_id, position FROM {_ERASURES} WHERE position > ?", (since,)
            ).fetchall()
        return {UUID(lineage): p for lineage, p in rows}

    def erasure_position(self, lineage_id: UUID) -> int | None:
        with self._own_connection() as conn:
            row = conn._sqlite_conn.execute(
                f"SELECT position FROM {_ERASURES} WHERE lineage_id = ?", (lineage_id.hex,)
            ).fetchone()
        return None if row is None else row[0]

    def index_dump(self) -> IndexRows:
        """Every stored row, sorted by position (to compare with a rebuild)."""
        with self._datastore.get_connection(commit=False) as conn:
            raw = conn._sqlite_conn
            versions = raw.execute(f"SELECT ecs_id, position FROM {_VERSIONS} ORDER BY position").fetchall()
            erasures = raw.execute(f"SELECT lineage_id, position FROM {_ERASURES} ORDER BY position").fetchall()
            roots = raw.execute(f"SELECT ecs_id, root_ecs_id FROM {_VERSIONS} WHERE root_ecs_id IS NOT NULL").fetchall()
            memos = raw.execute(f"SELECT cache_key, execution_id, position FROM {_MEMOS} ORDER BY position").fetchall()
        return IndexRows(
            [(UUID(bytes=bytes(e)), p) for e, p in versions],
            [(UUID(lineage), p) for lineage, p in erasures],
            sorted((UUID(bytes=bytes(e)), UUID(bytes=bytes(r))) for e, r in roots),
            [(bytes(k), UUID(bytes=bytes(x)), p) for k, x, p in memos],
        )

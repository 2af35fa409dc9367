"""The PostgreSQL backend's tables beside the log: followers, secrets and the Merkle tree's tiles.

Each is a small table of the schema that ``append`` never writes: a durable follower's
acknowledged position (and the session advisory lock that makes a name held by one follower
at a time), the secrets the store keys for what it vouches for outside itself (the analytics
cache's MAC), and the tiles of the tree over the seals (``merkle.py``). ``PostgresBackend``
takes them in as a mixin; the listener a follower waits on is here too. They reach the
database through the attributes declared on ``PostgresSideTables``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import psycopg

from ledger.store.pg_index import (
    _SECRETS,
    _TREE_STATE,
    _TREE_TILES,
)

if TYPE_CHECKING:

    from ledger.store.base import StoreURL

__all__ = ["UNDEFINED_TABLE", "PostgresListener", "PostgresSideTables", "connect_keywords", "sqlstate"]


class _ConnInfo(TypedDict, total=False):
    """``psycopg.connect`` keywords naming the server (typed, so each is checked against its parameter)."""

    host: str
    port: int
    user: str
    dbname: str
    password: str


def connect_keywords(spec: StoreURL) -> _ConnInfo:
    """Where a URL's server is, for a connection of our own (the password only when the URL has one)."""
    conninfo = _ConnInfo(host=spec.host, port=spec.port, user=spec.user, dbname=spec.dbname)
    if spec.password:
        conninfo["password"] = spec.password
    return conninfo


#: PostgreSQL's SQLSTATE for a table that does not exist (a schema written before the table was added).
UNDEFINED_TABLE = "42P01"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg error, or of the one an eventsourcing datastore wrapped (its cause)."""
    state = getattr(exc, "sqlstate", None) or getattr(exc.__cause__, "sqlstate", None)
    return state if isinstance(state, str) else None


class PostgresSideTables:
    """Followers, secrets and tree tiles of ``PostgresBackend`` (a mixin: the backend opens the pool
    and composes the follower statements; these methods run their SQL through them)."""

    #: The eventsourcing ``PostgresDatastore`` (its pool and transactions).
    _datastore: Any
    #: The parsed URL: where a follower's own connection goes.
    _spec: StoreURL
    #: Composed by the backend when it opens.
    _follower_position: Any
    _acknowledge: Any

    # ------------------------------------------------------------ followers
    def hold_follower(self, name: str) -> Callable[[], None] | None:
        """A session advisory lock on (schema, name), on a connection of its own kept open while
        held: the server releases it when that session ends, a crashed holder's too."""
        conn = psycopg.connect(**connect_keywords(self._spec), connect_timeout=5, autocommit=True)
        try:
            key = f"ledger follower {self._datastore.schema}/{name}"
            row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
        except BaseException:
            conn.close()
            raise
        if not (row and row[0]):
            conn.close()
            return None
        return conn.close  # ending the session releases its advisory locks

    def secret(self, name: str) -> bytes | None:
        """The store's secret ``name`` (made by a writable open), or None (a schema written before it)."""
        query = psycopg.sql.SQL("SELECT value FROM {}.{} WHERE name = %s").format(
            psycopg.sql.Identifier(self._datastore.schema), psycopg.sql.Identifier(_SECRETS)
        )
        try:
            with self._datastore.transaction(commit=False) as curs:
                curs.execute(query, (name,))
                row = curs.fetchone()
        except Exception as exc:  # the datastore wraps psycopg's errors; the SQLSTATE is on the cause
            if sqlstate(exc) == UNDEFINED_TABLE:
                return None
            raise
        return None if row is None else bytes(row["value"])

    def follower_position(self, name: str) -> int:
        """The position follower ``name`` last acknowledged (0: none, or a schema without the table)."""
        try:
            with self._datastore.transaction(commit=False) as curs:
                curs.execute(self._follower_position, (name,))
                row = curs.fetchone()
        except Exception as exc:  # the datastore wraps psycopg's errors; the SQLSTATE is on the cause
            if sqlstate(exc) == UNDEFINED_TABLE:
                return 0
            raise
        return 0 if row is None else int(row["position"])

    def acknowledge(self, name: str, position: int) -> None:
        """Move follower ``name`` forward to ``position`` (never back), in its own transaction."""
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(self._acknowledge, (name, position))

    # ------------------------------------------------------------ Merkle tree tiles
    def _tree_sql(self, text: str) -> Any:
        from psycopg import sql

        schema = sql.Identifier(self._datastore.schema)
        return sql.SQL(text).format(
            state=sql.SQL("{}.{}").format(schema, sql.Identifier(_TREE_STATE)),
            tiles=sql.SQL("{}.{}").format(schema, sql.Identifier(_TREE_TILES)),
        )

    def tree_state(self) -> tuple[str, int, int] | None:
        """(origin, size, position) of the stored tree; None in a schema written before the tree."""
        with self._datastore.transaction(commit=False) as curs:
            curs.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (f'"{self._datastore.schema}".{_TREE_STATE}',))
            if not curs.fetchone()["present"]:
                return None
            curs.execute(self._tree_sql("SELECT origin, size, position FROM {state} WHERE name = 'tree'"))
            row = curs.fetchone()
        return None if row is None else (str(row["origin"]), int(row["size"]), int(row["position"]))

    def tree_tiles(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], tuple[bytes, int]]:
        if not keys:
            return {}
        levels, indexes = zip(*keys)
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                self._tree_sql(
                    "SELECT t.level, t.idx, t.hashes, t.first_position FROM {tiles} t "
                    "JOIN unnest(%s::int[], %s::bigint[]) AS k(level, idx) ON t.level = k.level AND t.idx = k.idx"
                ),
                (list(levels), list(indexes)),
            )
            return {(r["level"], r["idx"]): (bytes(r["hashes"]), int(r["first_position"])) for r in curs.fetchall()}

    def tree_tile_at(self, position: int) -> tuple[int, int] | None:
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(
                self._tree_sql(
                    "SELECT idx, first_position FROM {tiles} WHERE level = 0 AND first_position <= %s "
                    "ORDER BY first_position DESC LIMIT 1"
                ),
                (position,),
            )
            row = curs.fetchone()
        return None if row is None else (int(row["idx"]), int(row["first_position"]))

    def tree_write(self, expect: int, size: int, position: int, tiles: list[tuple[int, int, int, bytes]]) -> bool:
        """Move the state row from ``expect`` (a concurrent extender waits on the row, then finds it moved) and store the tiles."""
        with self._datastore.transaction(commit=True) as curs:
            curs.execute(
                self._tree_sql("UPDATE {state} SET size = %s, position = %s WHERE name = 'tree' AND size = %s"),
                (size, position, expect),
            )
            if curs.rowcount != 1:
                return False
            if tiles:
                levels, indexes, firsts, hashes = map(list, zip(*tiles))
                curs.execute(
                    self._tree_sql(
                        "INSERT INTO {tiles} (level, idx, first_position, hashes) "
                        "SELECT * FROM unnest(%s::int[], %s::bigint[], %s::bigint[], %s::bytea[]) "
                        "ON CONFLICT (level, idx) DO UPDATE SET first_position = EXCLUDED.first_position, hashes = EXCLUDED.hashes"
                    ),
                    (levels, indexes, firsts, hashes),
                )
        return True

    def tree_dump(self) -> Iterator[tuple[int, int, int, bytes]]:
        with self._datastore.transaction(commit=False) as curs:
            curs.execute(self._tree_sql("SELECT level, idx, first_position, hashes FROM {tiles} ORDER BY level, idx"))
            rows = curs.fetchall()
        for r in rows:
            yield int(r["level"]), int(r["idx"]), int(r["first_position"]), bytes(r["hashes"])


class PostgresListener:
    """Wakes a follower when any process appends: its own connection, LISTENing on the channel
    the append NOTIFYs on commit (so a wake-up never comes before the events are visible)."""

    def __init__(self, spec: StoreURL, channel: str) -> None:
        from psycopg import sql

        self._conn = psycopg.connect(**connect_keywords(spec), connect_timeout=5, autocommit=True)
        self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def wait(self, timeout: float) -> bool:
        """Block until a notification arrives or ``timeout`` seconds pass; True when one arrived."""
        for _ in self._conn.notifies(timeout=timeout, stop_after=1):
            return True
        return False

    def close(self) -> None:
        self._conn.close()

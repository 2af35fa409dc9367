"""DuckDB analytics over the event log: a catch-up projection with a tracked position.

``Analytics`` follows the log from the position it last applied: each page of
raw events goes into DuckDB through Arrow, the SQL in ``projections.tables``
derives every table from it, and the tracking row moves forward in the same
DuckDB transaction, so a crash never leaves a page half applied or applied
twice. With ``path`` the tables live in a DuckDB file and a new process resumes
where the last one stopped; by default they live in memory and a new process
catches up from the start.

The file is a cache (``projections.cache_file``): one that was built from
another log, that DuckDB cannot read, or that is not a DuckDB database at all
is replaced and rebuilt from the log, with a warning; it is never trusted.

Queries through ``sql`` are read-only by construction (``projections.readonly``):
one checked SELECT, on a cursor in a READ ONLY transaction, on a DuckDB instance
with no file or network access and a locked configuration. The write side
(catch-up, rebuild) uses the instance's own connection; ``export_parquet``
writes through pyarrow, since DuckDB itself may not touch files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ledger.errors import KeyIntegrityError, LedgerError, ReadOnlyError
from ledger.events.bodies import EXECUTION_FAILED
from ledger.events.sealed_failure import open_failure
from ledger.model.personal import ERASED
from projections import cache_file
from projections.readonly import check_query, connect_locked, first_line, run_read_only
from projections.tables import DDL, LAYOUT, PAGE_STATEMENTS, TABLES, TRACKING

if TYPE_CHECKING:
    from ledger.store.base import EventStore, LogPage

__all__ = ["Analytics", "ProjectionMismatchError", "ReadOnlySQLError"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (events applied so far, events to apply in all)."""

_NAME = "analytics"
_STAGE = pa.schema(
    [
        ("position", pa.int64()),
        ("stream_id", pa.string()),
        ("stream_version", pa.int64()),
        ("event_type", pa.string()),
        ("payload", pa.string()),
        ("opened", pa.string()),
    ]
)
_HASH_SLICE = slice(-66, -2)  # a sealed record ends with "hash":"<64 hex>"}
_EXPORT_BATCH = 65_536

ReadOnlySQLError = ReadOnlyError
"""The name this error had before ``ledger.errors.ReadOnlyError``; the same class."""


class ProjectionMismatchError(LedgerError):
    """A persisted projection does not belong to this log (or the log was rewritten).

    No longer raised when opening: such a file is a stale cache and is rebuilt.
    Kept so code that imports or catches it keeps working.
    """


class Analytics:
    """DuckDB tables kept in step with one event store's log."""

    def __init__(self, store: EventStore, path: str | os.PathLike[str] | None = None) -> None:
        self._store = store
        self.path = None if path is None else Path(path)
        self.con = self._open()
        rows = self.con.execute(f"SELECT position, head_hash FROM {TRACKING} WHERE name = ?", [_NAME]).fetchall()
        self.position: int = rows[0][0] if rows else 0
        self._head_hash: str | None = rows[0][1] if rows else None

    def _open(self) -> duckdb.DuckDBPyConnection:
        """The writer's connection, on tables that are empty or a trusted cache of this very log."""
        if self.path is None:
            con = connect_locked(":memory:")
        else:
            con = cache_file.open_locked_file(self.path)
            try:
                stale = self._check_same_log(con)
            except duckdb.Error as exc:
                con.close()
                cache_file.set_aside(self.path, f"cannot be read ({first_line(exc)})")
                con = cache_file.open_locked_file(self.path)
            except BaseException:
                con.close()
                raise
            else:
                if stale is not None:
                    con.close()
                    reason, keep = stale
                    (cache_file.set_aside if keep else cache_file.discard)(self.path, reason)
                    con = cache_file.open_locked_file(self.path)
        try:
            for statement in DDL:
                con.execute(statement)
        except BaseException:
            con.close()
            raise
        return con

    # ----------------------------------------------------------- following
    def catch_up(self, progress: Progress | None = None, page: int = 50_000) -> int:
        """Apply every event after the tracked position; returns how many were applied."""
        store = self._store
        head = store.head()
        total = max(head - self.position, 0)
        applied = 0
        if progress is not None:
            progress(0, total)
        while True:
            batch = store.read_columns(self.position + 1, page)
            if not len(batch):
                return applied
            self._apply_page(batch)
            applied += len(batch)
            if progress is not None:
                progress(applied, max(total, applied))

    def rebuild(self, from_position: int = 1, progress: Progress | None = None) -> int:
        """Drop what was derived from events at ``from_position`` onwards and apply them again."""
        if from_position < 1:
            raise ValueError(f"from_position: positions start at 1, got {from_position}")
        con = self.con
        con.begin()
        try:
            for name in TABLES:
                con.execute(f"DELETE FROM {name} WHERE position >= ?", [from_position])
            # Rows before from_position keep their tombstones: the erasures that
            # made them are before from_position too, and stay.
            self._track(min(self.position, from_position - 1), None)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return self.catch_up(progress)

    def _apply_page(self, batch: LogPage) -> None:
        stage = pa.table(
            [
                pa.array(batch.positions, pa.int64()),
                pa.array(batch.stream_ids, pa.string()),
                pa.array(batch.versions, pa.int64()),
                pa.array(batch.topics, pa.string()),
                pa.array(batch.states, pa.string()),  # UTF-8 JSON bytes, taken as they are
                pa.array(self._opened_failures(batch), pa.string()),
            ],
            schema=_STAGE,
        )
        con = self.con
        con.register("stage", stage)
        con.begin()
        try:
            for statement in PAGE_STATEMENTS:
                con.execute(statement)
            self._track(batch.positions[-1], batch.states[-1][_HASH_SLICE].decode("ascii", "replace"))
            con.commit()
        except BaseException:
            con.rollback()
            raise
        finally:
            con.unregister("stage")

    def _opened_failures(self, batch: LogPage) -> list[str | None]:
        """Per event: the message of a failure sealed with personal keys, opened now (else None).

        Keys are read from the store's table, not a cache, so a key destroyed by
        any process counts; an erased lineage has none and the text is
        '<erased>'. A damaged key row is not an erasure and says so.
        """
        out: list[str | None] = [None] * len(batch)
        keys: dict[UUID, bytes | None] = {}

        def key_for(lineage: UUID) -> bytes | None:
            if lineage not in keys:
                keys[lineage] = self._store.keys.fetch(lineage)
            return keys[lineage]

        for i, (topic, state) in enumerate(zip(batch.topics, batch.states)):
            if topic != EXECUTION_FAILED or b'"sealed_with":["' not in state:
                continue
            try:
                text = open_failure(orjson.loads(state), key_for).get("error_message")
            except KeyIntegrityError:
                text = "<unreadable: a data key in ledger_keys is damaged; run ledger verify>"
            except orjson.JSONDecodeError:
                continue
            out[i] = "<erased>" if text is ERASED else str(text)
        return out

    def _track(self, position: int, head_hash: str | None) -> None:
        self.con.execute(
            f"INSERT OR REPLACE INTO {TRACKING} VALUES (?, ?, ?, ?)", [_NAME, position, head_hash, LAYOUT]
        )
        self.position = position
        self._head_hash = head_hash

    def _check_same_log(self, con: duckdb.DuckDBPyConnection) -> tuple[str, bool] | None:
        """Why the file behind ``con`` cannot be trusted as this log's projection, or None.

        Trusted means: empty, or written with this layout and, if it applied any
        events, the event at its tracked position is hash for hash the one in
        this log, and every block of every table reads back (checksums). The
        answer is (reason, keep): ``keep`` when the file holds something else
        than a cache (someone's own database), which is moved aside rather than
        deleted. Raises ``duckdb.Error`` when the file cannot be read.
        """
        tables = {
            name
            for (name,) in con.execute(
                "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()
        }
        if not tables:
            return None  # a new, empty database
        if TRACKING not in tables:
            if "main.projection_tracking" in tables:
                return "was written with an older layout", False
            return "holds tables that are not ledger analytics", True
        rows = con.execute(f"SELECT position, head_hash, layout FROM {TRACKING} WHERE name = ?", [_NAME]).fetchall()
        if not rows:
            return None  # nothing applied yet
        position, head_hash, layout = rows[0]
        if layout != LAYOUT:
            return "was written with another layout", False
        if position == 0:
            return None
        batch = self._store.read_columns(position, 1)
        found = (
            batch.states[0][_HASH_SLICE].decode("ascii", "replace")
            if len(batch) and batch.positions[0] == position
            else None
        )
        if head_hash is None:
            return f"tracks event {position} without its hash", False
        if found != head_hash:
            return f"was built from another log (event {position} differs)", False
        # DuckDB checks a block's checksum only when it reads it: read every
        # column of every table once, so a damaged block is found now (and the
        # file replaced) rather than by some later query. Measured at 0.56 s
        # for the tables of 200k events (3% of rebuilding them).
        for name in TABLES:
            con.execute(f"SELECT sum(hash(COLUMNS(*))) FROM main.{name}").fetchall()
        return None

    # ------------------------------------------------------------ reading
    def sql(self, query: str, params: list[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Catch up, then run one read-only SELECT (``?`` placeholders take ``params``).

        Anything that could write, change a setting, or read a file or the
        network raises ``ReadOnlyError`` naming ``query`` and changes nothing
        (``projections.readonly``). The relation reads the tables as they stood
        when this returned.
        """
        statement = check_query(self.con, query)
        self.catch_up()
        return run_read_only(self.con, statement, params)

    def tables(self) -> list[str]:
        """The projected tables, in the order they are documented."""
        return list(TABLES)

    def export_parquet(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Catch up, then write one Parquet file per table (``<table>.parquet``).

        DuckDB has no file access here, so the rows stream out through Arrow and
        pyarrow writes them.
        """
        self.catch_up()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in TABLES:
            target = out / f"{name}.parquet"
            reader = self.con.sql(f"SELECT * FROM main.{name} ORDER BY position").to_arrow_reader(_EXPORT_BATCH)
            with pq.ParquetWriter(target, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
            written.append(target)
        return written

    def close(self) -> None:
        self.con.close()

"""DuckDB analytics over the event log: a catch-up projection with a tracked position.

``Analytics`` follows the log from the position it last applied: each page of
raw events goes into DuckDB through Arrow, the SQL in ``projections.tables``
derives every table from it, and the tracking row moves forward in the same
DuckDB transaction, so a crash never leaves a page half applied or applied
twice. With ``path`` the tables live in a DuckDB file and a new process resumes
where the last one stopped; by default they live in memory and a new process
catches up from the start.

Queries through ``sql`` are read-only: anything but SELECT-like statements is
refused.
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

from ledger.errors import KeyIntegrityError, LedgerError
from ledger.events import EXECUTION_FAILED
from ledger.personal import ERASED
from ledger.sealed_failure import open_failure

from .tables import DDL, PAGE_STATEMENTS, TABLES, TRACKING_DDL

if TYPE_CHECKING:
    from ledger.store import EventStore, LogPage

__all__ = ["Analytics", "ProjectionMismatchError", "ReadOnlySQLError"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (events applied so far, events to apply in all)."""

_NAME = "analytics"
_READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
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


class ReadOnlySQLError(LedgerError, ValueError):
    """``sql()`` was given a statement that would write."""


class ProjectionMismatchError(LedgerError):
    """A persisted projection does not belong to this log (or the log was rewritten)."""


class Analytics:
    """DuckDB tables kept in step with one event store's log."""

    def __init__(self, store: EventStore, path: str | os.PathLike[str] | None = None) -> None:
        self._store = store
        self.path = None if path is None else Path(path)
        try:
            self.con = duckdb.connect(str(self.path) if self.path is not None else ":memory:")
        except duckdb.IOException as exc:
            raise LedgerError(f"path {str(path)!r}: cannot open the analytics database: {exc}") from None
        self.con.execute("SET TimeZone = 'UTC'")
        for statement in (*DDL, TRACKING_DDL):
            self.con.execute(statement)
        rows = self.con.execute(
            "SELECT position, head_hash FROM projection_tracking WHERE name = ?", [_NAME]
        ).fetchall()
        row = rows[0] if rows else None
        self.position: int = row[0] if row else 0
        self._head_hash: str | None = row[1] if row else None
        self._checked = self.position == 0

    # ----------------------------------------------------------- following
    def catch_up(self, progress: Progress | None = None, page: int = 50_000) -> int:
        """Apply every event after the tracked position; returns how many were applied."""
        store = self._store
        if not self._checked:
            self._check_same_log()
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
        self._checked = True
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
            "INSERT OR REPLACE INTO projection_tracking VALUES (?, ?, ?)", [_NAME, position, head_hash]
        )
        self.position = position
        self._head_hash = head_hash

    def _check_same_log(self) -> None:
        """A persisted projection must have been built from this very log."""
        batch = self._store.read_columns(self.position, 1)
        found = (
            batch.states[0][_HASH_SLICE].decode("ascii", "replace")
            if len(batch) and batch.positions[0] == self.position
            else None
        )
        if self._head_hash is not None and found != self._head_hash:
            raise ProjectionMismatchError(
                f"path {str(self.path)!r}: the analytics database was built from another log "
                f"(event {self.position} differs); rebuild it (ledger replay) or use another path"
            )
        self._checked = True

    # ------------------------------------------------------------ reading
    def sql(self, query: str, params: list[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Catch up, then run one read-only statement (``?`` placeholders take ``params``)."""
        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as exc:
            raise ReadOnlySQLError(f"query: {exc}".splitlines()[0]) from None
        if len(statements) != 1:
            raise ReadOnlySQLError(f"query: expected one statement, got {len(statements)}")
        if statements[0].type not in _READ_ONLY:
            raise ReadOnlySQLError(
                f"query: only read-only statements are allowed, got {statements[0].type.name}"
            )
        self.catch_up()
        return self.con.sql(query, params=params)

    def tables(self) -> list[str]:
        """The projected tables, in the order they are documented."""
        return list(TABLES)

    def export_parquet(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Catch up, then write one Parquet file per table (``<table>.parquet``)."""
        self.catch_up()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in TABLES:
            target = out / f"{name}.parquet"
            quoted = str(target).replace("'", "''")
            self.con.execute(f"COPY (SELECT * FROM {name} ORDER BY position) TO '{quoted}' (FORMAT parquet)")
            written.append(target)
        return written

    def close(self) -> None:
        self.con.close()

"""Opening the DuckDB file that keeps the analytics tables: a cache, never a source of truth.

Whatever is in the file can be derived again from the log, so a file that
cannot be trusted is replaced rather than repaired or refused: one that is not
a DuckDB database, or that DuckDB cannot read, is moved aside to
``<path>.bad`` (it may be something the user did not mean to give us); one that
is a cache of another log, or of an older layout, is deleted. Each is one
warning on the ``projections`` logger. What is *not* replaced is a file another
process (or another ledger in this process) has open: that is an error, since
the other writer's cache is fine.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from ledger.errors import LedgerError
from projections.readonly import connect_locked, first_line

__all__ = ["discard", "open_locked_file", "set_aside"]

log = logging.getLogger("projections.analytics")

_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file
_MAGIC_AT = 8


def _companions(path: Path) -> list[Path]:
    """The database file and the write-ahead log DuckDB keeps next to it."""
    return [path, path.with_name(path.name + ".wal")]


def _in_use(exc: duckdb.Error) -> bool:
    """DuckDB refused because someone holds the file, not because the file is bad."""
    if isinstance(exc, (duckdb.ConnectionException, duckdb.ResourceInUseException)):
        return True
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _not_duckdb(path: Path) -> str | None:
    """Why the file at ``path`` is certainly not a DuckDB database, or None (absent, or it might be)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_MAGIC_AT + len(_MAGIC))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LedgerError(f"path {str(path)!r}: cannot read the analytics database: {exc.strerror}") from None
    if head[_MAGIC_AT:] != _MAGIC:
        return "is not a DuckDB database" if head else "is empty"
    return None


def set_aside(path: Path, reason: str) -> None:
    """Move an untrusted file (and its WAL) to ``<path>.bad`` so a fresh cache can take its place."""
    for source in _companions(path):
        if source.exists():
            target = source.with_name(source.name.replace(path.name, path.name + ".bad", 1))
            try:
                os.replace(source, target)
            except OSError as exc:
                raise LedgerError(
                    f"path {str(path)!r}: the analytics database {reason} and cannot be moved aside: {exc.strerror}"
                ) from None
    log.warning("analytics database %s %s; moved it to %s.bad and rebuilding it from the log", path, reason, path)


def discard(path: Path, reason: str) -> None:
    """Delete a cache built from something else than this log (it holds nothing the log does not)."""
    for source in _companions(path):
        try:
            source.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LedgerError(f"path {str(path)!r}: cannot replace the analytics database: {exc.strerror}") from None
    log.warning("analytics database %s %s; rebuilding it from the log", path, reason)


def open_locked_file(path: Path) -> duckdb.DuckDBPyConnection:
    """A locked-down connection (``readonly.connect_locked``) to the DuckDB file at ``path``.

    A file that is not a DuckDB database or that DuckDB cannot open is set aside
    and a new, empty one created in its place. A file in use elsewhere raises
    ``LedgerError``.
    """
    reason = _not_duckdb(path)
    if reason is None:
        try:
            return connect_locked(str(path))
        except duckdb.Error as exc:
            if _in_use(exc):
                raise LedgerError(f"path {str(path)!r}: cannot open the analytics database: {first_line(exc)}") from None
            reason = f"cannot be opened ({first_line(exc)})"
    set_aside(path, reason)
    try:
        return connect_locked(str(path))
    except duckdb.Error as exc:
        raise LedgerError(f"path {str(path)!r}: cannot create the analytics database: {first_line(exc)}") from None

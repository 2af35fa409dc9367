"""Is there a ledger at this URL? Answered before anything can write to it.

``create=False`` promises that a missing, empty or foreign database is left
exactly as it was. Both libraries below us would break that promise on their
first connection: ``sqlite3.connect`` creates a missing file, and the
eventsourcing SQLite pool switches a file to WAL mode (a change of the file's
header) before any query runs. So the question is asked here, first, with
plain reads: the file's header bytes, then a read-only (and, where no WAL or
journal file exists, ``immutable``) SQLite connection, which creates no file
and takes no lock that could write. For PostgreSQL it is two catalog queries.

A file whose bytes cannot be read as a SQLite database (garbage, a truncated
copy, a CSV written over the log) is a ``CorruptLogError``, not a
``StoreNotFoundError``: something exists at the path, it may well have been
the user's ledger, and "not found" would send them looking for a typo instead
of a damaged file. ``StoreNotFoundError`` is kept for what is positively known
to hold no ledger: no file, an empty file, a readable database (or schema)
without the ledger's table. The file checks run in both modes: ``create=True``
may fill an empty file or a foreign database, but must never be pointed at a
damaged one (SQLite would refuse with a raw error, or worse, write into it).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import Any
from urllib.parse import quote

from ledger.errors import CorruptLogError, StoreNotFoundError, StoreURLError

__all__ = ["EVENTS_TABLE", "check_postgres_schema", "check_sqlite_file"]

#: The table that makes a database a ledger (eventsourcing's application recorder).
EVENTS_TABLE = "stored_events"
_EVENT_COLUMNS = {"originator_id", "originator_version", "topic", "state"}
_MAGIC = b"SQLite format 3\x00"
_HEADER = 100


def check_sqlite_file(url: str, path: str, *, create: bool) -> None:
    """Refuse a path that is not (or, with ``create=False``, does not hold) a ledger.

    Returns when the eventsourcing recorder may open ``path``: with
    ``create=True`` a missing or empty file, a foreign database or a ledger;
    with ``create=False`` only a database that has the ledger's event table.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if create:
            return
        raise StoreNotFoundError(
            f"url {url!r}: no ledger database at {path!r} (no such file; nothing was created)"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise StoreURLError(f"url {url!r}: {path!r} is not a regular file")
    if info.st_size == 0:
        if create:
            return  # SQLite initialises an empty file as a new database
        raise StoreNotFoundError(f"url {url!r}: {path!r} is an empty file, not a ledger (nothing was written)")
    with open(path, "rb") as fh:
        header = fh.read(_HEADER)
    _check_header(url, path, header, info.st_size)
    if create:
        return
    _check_tables(url, path)


def _check_header(url: str, path: str, header: bytes, size: int) -> None:
    """The SQLite file format's own header: magic string, page size, page count."""
    if not header.startswith(_MAGIC):
        if _MAGIC.startswith(header[: len(_MAGIC)]):
            raise CorruptLogError(f"url {url!r}: {path!r} is a truncated SQLite file ({size} bytes, not even a header)")
        raise CorruptLogError(
            f"url {url!r}: {path!r} is not a SQLite database (its first bytes are not the SQLite header); "
            "the ledger file was overwritten or this is another kind of file"
        )
    if len(header) < _HEADER:
        raise CorruptLogError(f"url {url!r}: {path!r} is a truncated SQLite file ({size} bytes, not even a header)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise CorruptLogError(f"url {url!r}: {path!r} has a damaged SQLite header (page size {page_size})")
    if os.path.exists(path + "-wal"):
        return  # pages may live in the WAL (or a checkpoint may be running): the main file alone says nothing
    pages = int.from_bytes(header[28:32], "big")
    counted = header[24:28] == header[92:96] and pages > 0  # the in-header size is valid
    expected = pages * page_size
    if size % page_size or (counted and size < expected):
        described = f"{pages} pages of {page_size} bytes" if counted else f"pages of {page_size} bytes"
        raise CorruptLogError(
            f"url {url!r}: {path!r} is a truncated SQLite file: its header describes {described} "
            f"but the file holds {size} bytes"
        )


def _check_tables(url: str, path: str) -> None:
    """Look for the ledger's event table through a connection that cannot write."""
    no_journal = not (os.path.exists(path + "-wal") or os.path.exists(path + "-journal"))
    # immutable=1: no locks and no -shm/-wal files are created. Exact only when
    # no WAL or hot journal could hold newer pages than the main file.
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro" + ("&immutable=1" if no_journal else "")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({EVENTS_TABLE})")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CorruptLogError(f"url {url!r}: {path!r} cannot be read as a SQLite database: {exc}") from None
    if not columns:
        raise StoreNotFoundError(
            f"url {url!r}: {path!r} is a SQLite database without a ledger "
            f"(no {EVENTS_TABLE} table); nothing was created"
        )
    if not _EVENT_COLUMNS <= columns:
        raise StoreNotFoundError(
            f"url {url!r}: the {EVENTS_TABLE} table in {path!r} is not a ledger's "
            f"(columns {sorted(columns)}); nothing was written"
        )


def check_postgres_schema(url: str, conn: Any, schema: str) -> None:
    """``create=False`` on PostgreSQL: the schema and the ledger's event table must exist."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s), "
        "EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s)",
        (schema, schema, EVENTS_TABLE),
    ).fetchone()
    schema_exists, table_exists = row[0], row[1]
    if not schema_exists:
        raise StoreNotFoundError(f"url {url!r}: schema {schema!r} does not exist; nothing was created")
    if not table_exists:
        raise StoreNotFoundError(
            f"url {url!r}: schema {schema!r} holds no ledger (no {EVENTS_TABLE} table); nothing was created"
        )

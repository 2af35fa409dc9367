"""Opening the DuckDB file that keeps the analytics tables: a cache, never a source of truth.

Whatever is in the file can be derived again from the log, so a file that
cannot be trusted is replaced rather than repaired: one that is not a DuckDB
database, that DuckDB cannot open or read, or that holds someone else's tables
is moved aside to ``<path>.bad`` (it may be something the user did not mean to
give us); one that is a cache of another log, or of an older layout, is
deleted. Each is one warning on the ``projections.analytics`` logger.

What is never replaced, and raises ``CacheUnavailableError`` with nothing
touched, is a file that cannot be used *now*:

- one another process holds (DuckDB allows one writer per file), or that this
  process already has open (DuckDB would hand back the very same instance, and
  two projections would apply every page twice);
- a path that is a symbolic link, a directory, a FIFO or device, or a file with
  other hard links, or whose ``.wal`` companion is one: following it would let
  whoever planted it make us create or overwrite a file elsewhere (a FIFO would
  also block the reader forever);
- a file or directory this process may not write (permissions, an immutable
  directory, a read-only file system).

The caller decides what that means: an error for a path the user named, the
tables in memory for the default file beside a SQLite store (``beside_store``).

The file is also authenticated against the store (``seal`` / ``unsealed``): after each write
the ledger checkpoints it and keeps, beside it in ``<path>.mac``, an HMAC-SHA256 of its bytes
under a key that lives in the store (``ledger_secrets``), never in the cache. A file edited
with DuckDB (or any other tool) no longer matches and is rebuilt with one warning, so rows
changed behind the ledger's back are never served. Checking costs one ``stat`` when the file
is the one sealed (its inode, size, mtime and ctime are in the MAC too; ctime cannot be set
back by a user), else one HMAC pass over the file (about 850 MB/s here).

Opening, checking and replacing happen while an exclusive ``flock`` is held on
the file's directory. DuckDB takes its own lock only once a file is open, and
replacing goes by name, so without it two processes opening a bad cache at once
could each move aside the file the other had just created.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import orjson

from ledger.errors import LedgerError
from ledger.store import parse_store_url
from projections.readonly import connect_unlocked, first_line, lock_down

__all__ = [
    "CacheUnavailableError",
    "Distrust",
    "beside_store",
    "discard",
    "is_damage",
    "open_cache",
    "replace",
    "seal",
    "set_aside",
    "unsealed",
]

log = logging.getLogger("projections.analytics")

SUFFIX = ".analytics.duckdb"
_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file
_MAGIC_AT = 8
_OPENING_WAIT_S = 10.0  # another process opening the same cache holds the directory lock this long at most

Distrust = Callable[[duckdb.DuckDBPyConnection], "tuple[str, bool] | None"]
"""Why an open cache cannot be trusted, as (reason, keep), or None; may raise ``duckdb.Error``."""


class CacheUnavailableError(LedgerError):
    """The analytics file cannot be used now; nothing was changed, and an in-memory projection is safe."""


def beside_store(url: str) -> Path | None:
    """The default cache file of the store at ``url``: ``<file>.analytics.duckdb`` beside a SQLite file.

    None for ``memory://``, PostgreSQL and SQLite's own ``:memory:``: there is no
    file to put it beside. A bad URL raises ``StoreURLError``, as opening it would.
    """
    parsed = parse_store_url(url)
    if parsed.kind != "sqlite" or parsed.path == ":memory:":
        return None
    return Path(parsed.path + SUFFIX)


def is_damage(exc: BaseException) -> bool:
    """DuckDB found a block of the file whose checksum does not match (it checks each block as it loads it)."""
    text = str(exc)
    return isinstance(exc, duckdb.Error) and ("Corrupt database file" in text or "checksum" in text)


def _companions(path: Path) -> list[Path]:
    """The database file and the write-ahead log DuckDB keeps next to it."""
    return [path, path.with_name(path.name + ".wal")]


_MAC_READ = 1 << 20


def _mac_path(path: Path) -> Path:
    return path.with_name(path.name + ".mac")


def _content_mac(path: Path, key: bytes) -> str:
    """HMAC-SHA256 of the file's bytes under the store's key (hashlib releases the GIL)."""
    mac = hmac.new(key, b"ledger analytics cache\0", hashlib.sha256)
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_MAC_READ):
            mac.update(chunk)
    return mac.hexdigest()


def _fingerprint(path: Path) -> list[int]:
    """What changes whenever the file's bytes do: its inode, size, mtime and ctime (nanoseconds)."""
    st = os.stat(path)
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _stat_mac(key: bytes, fingerprint: list[int], content: str) -> str:
    return hmac.new(key, orjson.dumps([fingerprint, content]), hashlib.sha256).hexdigest()


def seal(path: Path, key: bytes, content: str | None = None) -> None:
    """Write ``<path>.mac`` for the file as it is now (checkpointed: its WAL empty).

    Written to a temporary name and renamed, so a reader sees the old MAC or the new one.
    """
    content = _content_mac(path, key) if content is None else content
    fingerprint = _fingerprint(path)
    text = orjson.dumps({"content": content, "stat": fingerprint, "stat_mac": _stat_mac(key, fingerprint, content)})
    target = _mac_path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_bytes(text)
    os.replace(temporary, target)


def unsealed(path: Path, key: bytes) -> str | None:
    """Why the file's bytes are not those the ledger sealed with ``key``, or None.

    One ``stat`` when the file is untouched since it was sealed; one HMAC pass over it
    otherwise (a copy, a restore, DuckDB rewriting its header): a match re-seals it.
    """
    wal = path.with_name(path.name + ".wal")
    if wal.exists() and wal.stat().st_size:
        return "holds changes written after its MAC (its WAL is not empty)"
    try:
        sealed = orjson.loads(_mac_path(path).read_bytes())
        content, fingerprint, stat_mac = str(sealed["content"]), list(sealed["stat"]), str(sealed["stat_mac"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return "carries no MAC from this store (it was not written by this ledger, or before caches were sealed)"
    now = _fingerprint(path)
    if now == fingerprint and hmac.compare_digest(stat_mac, _stat_mac(key, fingerprint, content)):
        return None
    if not hmac.compare_digest(content, _content_mac(path, key)):
        return "was changed since this ledger wrote it (its MAC does not match)"
    seal(path, key, content)
    return None


def _held(exc: duckdb.Error) -> bool:
    """DuckDB refused because someone holds the file, not because the file is bad."""
    if isinstance(exc, (duckdb.ConnectionException, duckdb.ResourceInUseException)):
        return True
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _unavailable(path: Path, why: str) -> CacheUnavailableError:
    return CacheUnavailableError(f"path {str(path)!r}: cannot open the analytics database: {why}")


def _held_by(exc: duckdb.Error) -> str:
    """DuckDB's lock error in a few words: who holds the file, if it says."""
    holder = re.search(r"\(PID (\d+)\)", str(exc))
    if holder is None:
        return f"another connection holds it ({first_line(exc)})"
    return f"another process holds it (PID {holder.group(1)})"


@contextmanager
def _openers_excluded(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the directory of ``path`` (best effort where flock is missing)."""
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise _unavailable(path, f"its directory cannot be opened ({exc.strerror})") from None
    try:
        deadline = time.monotonic() + _OPENING_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _unavailable(path, f"another process has been opening it for {_OPENING_WAIT_S:.0f} s") from None
                time.sleep(0.02)
            except OSError as exc:
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    break  # no flock on this file system: DuckDB's own lock still guards each open file
                raise _unavailable(path, f"cannot lock its directory ({exc.strerror})") from None
        yield
    finally:
        os.close(fd)  # releases the flock


def _refusal(path: Path) -> str | None:
    """Why ``path`` (or its ``.wal``) must not be opened at all, or None."""
    for part in _companions(path):
        try:
            st = os.lstat(part)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"{part.name} cannot be examined ({exc.strerror})"
        if stat.S_ISLNK(st.st_mode):
            return f"{part.name} is a symbolic link (the cache must be a plain file; give the real path)"
        if not stat.S_ISREG(st.st_mode):
            return f"{part.name} is not a regular file"
        if st.st_nlink > 1:
            return f"{part.name} has other hard links"
    directory = path.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"its directory {str(directory)!r} is not writable"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "the file is not readable and writable by this process"
    return None


def _not_duckdb(path: Path) -> str | None:
    """Why the file at ``path`` is certainly not a DuckDB database, or None (absent, or it might be).

    Opened without following a symbolic link and without blocking, and checked
    to be a regular file once open, so a path swapped since ``_refusal`` cannot
    make this read a FIFO or another file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unavailable(path, f"cannot read it ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _unavailable(path, "it is not a regular file")
        head = os.pread(fd, _MAGIC_AT + len(_MAGIC), 0)
    finally:
        os.close(fd)
    if head[_MAGIC_AT:] != _MAGIC:
        return "is not a DuckDB database" if head else "is empty"
    return None


# DuckDB's buffer pool for a cache file (its default is 80% of the machine's memory). A file's
# blocks can be written out and read back, so the first build of a cache of any size, and a
# query over it, stays within this plus the pages in flight: without it, building a 1M-event
# cache kept every block it wrote in memory (1.87 GiB, growing with the log). In-memory tables
# cannot be capped: they are the memory.
MEMORY_LIMIT = "128MB"


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """A locked-down connection to the file, refusing an instance this process already has open."""
    con = connect_unlocked(str(path), MEMORY_LIMIT)
    try:
        (locked,) = con.execute("SELECT current_setting('lock_configuration')").fetchall()[0]
    except BaseException:
        con.close()
        raise
    if locked:  # nobody locks a fresh instance before us: this one is another ledger's
        con.close()
        raise _unavailable(path, "it is already open in this process")
    return lock_down(con)


def _create(path: Path) -> duckdb.DuckDBPyConnection:
    """A new, empty cache at ``path`` (the old file is gone or moved aside)."""
    try:
        return _connect(path)
    except duckdb.Error as exc:
        if _held(exc):
            raise _unavailable(path, _held_by(exc)) from None
        raise CacheUnavailableError(f"path {str(path)!r}: cannot create the analytics database: {first_line(exc)}") from None


def _open_or_replace(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection to the DuckDB file at ``path``; one that is not a DuckDB file, or fails to open, is set aside first."""
    reason = _not_duckdb(path)
    if reason is None:
        try:
            return _connect(path)
        except duckdb.Error as exc:
            if _held(exc):
                raise _unavailable(path, _held_by(exc)) from None
            if not path.exists():
                raise CacheUnavailableError(
                    f"path {str(path)!r}: cannot create the analytics database: {first_line(exc)}"
                ) from None
            reason = f"cannot be opened ({first_line(exc)})"
    set_aside(path, reason)
    return _create(path)


def open_cache(path: Path, distrust: Distrust) -> duckdb.DuckDBPyConnection:
    """A locked-down connection to the cache at ``path``: a file ``distrust`` accepts, or a new, empty one.

    ``distrust`` looks at the open file and says why it cannot be trusted
    (``(reason, keep)``: ``keep`` moves it aside rather than deleting it), or
    returns None; a ``duckdb.Error`` from it means DuckDB cannot read the file,
    which is then set aside. Raises ``CacheUnavailableError`` for a file that
    cannot be used now (see the module's docstring), having changed nothing.
    """
    with _openers_excluded(path):
        refusal = _refusal(path)
        if refusal is not None:
            raise _unavailable(path, refusal)
        con = _open_or_replace(path)
        try:
            verdict = distrust(con)
        except duckdb.Error as exc:
            con.close()
            set_aside(path, f"cannot be read ({first_line(exc)})")
            return _create(path)
        except BaseException:
            con.close()
            raise
        if verdict is None:
            return con
        con.close()
        reason, keep = verdict
        (set_aside if keep else discard)(path, reason)
        return _create(path)


def replace(con: duckdb.DuckDBPyConnection, path: Path, reason: str, *, keep: bool) -> duckdb.DuckDBPyConnection:
    """Close ``con``, move its file aside (``keep``) or delete it, and return a connection to a new, empty cache.

    Under the directory lock, so no other process opens the old file between
    the close and the move.
    """
    with _openers_excluded(path):
        con.close()
        (set_aside if keep else discard)(path, reason)
        return _create(path)


def set_aside(path: Path, reason: str) -> None:
    """Move an untrusted file (and its WAL) to ``<path>.bad`` so a fresh cache can take its place."""
    for source in _companions(path):
        if os.path.lexists(source):
            target = source.with_name(source.name.replace(path.name, path.name + ".bad", 1))
            try:
                os.replace(source, target)
            except OSError as exc:
                raise CacheUnavailableError(
                    f"path {str(path)!r}: the analytics database {reason} and cannot be moved aside: {exc.strerror}"
                ) from None
    log.warning("analytics database %s %s; moved it to %s.bad and rebuilding it from the log", path, reason, path)


def discard(path: Path, reason: str) -> None:
    """Delete a cache built from something else than this log (it holds nothing the log does not)."""
    for source in (*_companions(path), _mac_path(path)):
        try:
            source.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CacheUnavailableError(f"path {str(path)!r}: cannot replace the analytics database: {exc.strerror}") from None
    log.warning("analytics database %s %s; rebuilding it from the log", path, reason)

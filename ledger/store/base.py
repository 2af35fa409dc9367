"""The append-only event store: one ``EventStore`` over three backends chosen by URL.

The eventsourcing recorders give us what an audit log needs and nothing we
would have to maintain ourselves: a gap-free, totally ordered notification log
(our *positions*), atomic inserts across streams, and a unique (stream, version)
key that turns two writers racing on one lineage into an ``IntegrityError``
instead of a silent overwrite.

URLs: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////absolute.db``
(``?synchronous=NORMAL|FULL``, default NORMAL), ``postgresql://user[:pw]@host[:port]/db``
(``?schema=NAME``).

This module holds what every backend shares: the error mapping (the ``StoreBackend``
protocol is in ``protocol.py``) and the reads through the recorder's public API; the URL is parsed in
``urls.py`` and the backend for it chosen in ``factory.py`` (both names stay importable here).
What reaches into the library's internals (pools, raw connections, table
names, locks, SQL) stays in ``memory.py``, ``sqlite.py`` and ``postgres.py``;
the key tables are in ``keys.py``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    Notification,
    PersistenceError,
    StoredEvent,
)

from ledger.errors import (
    ConcurrencyError,
    CorruptLogError,
    FollowerHeldError,
    StoreError,
)
from ledger.events.bodies import ENTITY_VERSION
from ledger.events.seal import NewEvent, link_hash
from ledger.store.factory import _BACKENDS
from ledger.store.keys import KeyStore
from ledger.store.merkle import MerkleTree
from ledger.store.protocol import Listener, StoreBackend
from ledger.store.urls import StoreURL, parse_store_url
from ledger.store.version_index import (
    IndexRebuild,
    IndexRows,
    TreeWalker,
    ecs_id_of,
    rows_for_page,
    tree_facts,
)

__all__ = ["EventStore", "LogPage", "StoreBackend", "StoreURL", "parse_store_url"]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")


#: The largest position either database can hold (a signed 64-bit rowid or bigint). A record
#: moved there (SQLite: ``UPDATE ... SET rowid = 9223372036854775807``) is reported by ``verify``;
#: the page after it is empty, never an ``OverflowError`` from the driver.
MAX_POSITION = (1 << 63) - 1


def prefix_range(prefix: str) -> tuple[UUID, UUID]:
    """The lowest and highest UUID whose hex digits start with ``prefix`` (dashes ignored)."""
    digits = prefix.replace("-", "").lower()
    if len(digits) > 32 or not re.fullmatch(r"[0-9a-f]*", digits):
        raise ValueError(f"{prefix!r} is not a prefix of hex digits")
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))


@dataclass(slots=True)
class LogPage:
    """Consecutive log entries as parallel columns (stream ids as text, or UUIDs where the driver gives them)."""

    positions: list[int]
    stream_ids: list[str | UUID]
    versions: list[int]
    topics: list[str]
    states: list[bytes]

    def __len__(self) -> int:
        return len(self.positions)


class _IndexProgress:
    """Logs a long catch-up of the version index every tenth of the way (a ledger written
    before the index, or by an older layout of it, is indexed once, on its first writable open)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.start: int | None = None
        self.next_step = 0.1

    def __call__(self, position: int, head: int) -> None:
        if self.start is None:
            self.start = position
        span = head - self.start
        if span < 100_000:
            return
        done = (position - self.start) / span
        if done >= self.next_step or position == head:
            log.info("%s: indexing the log: %d of %d records (%.0f%%)", self.url, position, head, 100 * done)
            while self.next_step <= done:
                self.next_step += 0.1


class EventStore:
    """Append batches, read the ordered log; the key table sits beside it."""

    def __init__(self, url: str = "memory://", *, create: bool = True) -> None:
        """Open the store at ``url``, creating its tables unless ``create=False``.

        ``create=False`` opens only an existing ledger and writes nothing while
        opening: a missing or empty file, a foreign SQLite database, a PostgreSQL
        schema that is missing or has no ledger table raise ``StoreNotFoundError``
        (``ledger.store.probe`` says why the check runs before any connection).
        ``memory://`` never holds an existing ledger (it lives and dies with the
        store object), so it raises ``StoreNotFoundError`` too.
        """
        self.spec = parse_store_url(url)
        self.url = url
        #: False when opened for reading: whatever runs at open must not write then.
        self.create = create
        self._backend = _BACKENDS[self.spec.kind](self.spec, create)
        self.recorder: ApplicationRecorder = self._backend.recorder
        # Whole tuples, built once: ``except (A, *rest)`` is the same at run time, but a type
        # checker cannot see that an unpacked tuple holds only exception classes.
        self._conflicts: tuple[type[BaseException], ...] = (IntegrityError, *self._backend.conflicts)
        #: What any store operation may raise that means the store refused it.
        self._failures: tuple[type[BaseException], ...] = (PersistenceError, *self._backend.failures)
        #: Per-lineage data keys for personal fields, outside the event table.
        self.keys = KeyStore(self._backend.key_table)
        #: The log as a Merkle tree (signed heads, proofs), its tiles beside the log (``merkle.py``).
        self.tree = MerkleTree(self, self._backend)
        # A writable open finishes shredding the keys an earlier erase could not
        # (a reader held their bytes). A read-only open must skip this: it writes.
        if create:
            behind: tuple[type[BaseException], ...] = (StoreError, *self._failures)
            try:
                self.keys.finish_shredding()
            except StoreError as exc:  # never stops an open: the next erase or open retries
                log.warning("%s", exc)
            # ... and indexes what an older library (or a killed catch-up) left unindexed.
            try:
                self.catch_up_index(progress=_IndexProgress(url))
            except behind as exc:  # readers then replay
                log.warning("%s: the stored version index stays behind: %s", url, exc)
            # ... and finishes an erase killed between its event and the key's deletion.
            try:
                self._finish_erasures()
            except behind as exc:  # the next open retries
                log.warning("%s: cannot finish an earlier erasure: %s", url, exc)

    def _finish_erasures(self) -> None:
        """Destroy the data key of every erased lineage that still has one.

        ``erase`` appends ``entity.erased`` and then deletes the key; a process killed between
        the two leaves the key in the store, where any copy of the file could still decrypt
        the lineage's personal values. The log says the lineage is erased, so the next writable
        open finishes the job. One read of the erasure index, and of the key table only when
        there are erasures.
        """
        if self.spec.kind == "memory":
            return  # a memory store dies with the process that was erasing
        erased = self.erasure_entries()
        if not erased:
            return
        for lineage in erased.keys() & self.keys.all_keys().keys():
            destroyed = self.keys.destroy(lineage)
            log.warning(
                "%s: lineage %s was erased at position %d but its data key was still stored; key deleted%s",
                self.url, lineage, erased[lineage], "" if destroyed else " (its bytes are shredded on a later open)",
            )

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def concurrent_appends(self) -> bool:
        """True where appends of this process's threads may overlap (and share a transaction)."""
        return bool(self._backend.concurrent_appends)

    def append(self, events: Sequence[NewEvent], tracking: tuple[str, int] | None = None) -> list[int]:
        """Seal and insert the batch atomically; returns the positions the store assigned.

        The backend takes its write lock, reads the log's last record, seals
        the batch at the positions that follow it (``events.seal_batch``) and
        inserts with those positions, in one transaction: a record's seal can
        then name its own position and its predecessor in the log.
        ``tracking`` is ``(follower name, position)``: a durable follower whose
        handler wrote this batch acknowledges that position in the same
        transaction (``acknowledge``), so the event is handled exactly once.
        """
        if not events:
            return []
        self._fill_members(events)
        try:
            positions = self._backend.append(events, tracking)
        except self._conflicts as exc:
            streams = sorted({str(e.stream_id) for e in events})
            raise ConcurrencyError(
                "another writer appended to stream(s) "
                f"{', '.join(streams[:3])}{' …' if len(streams) > 3 else ''} first; "
                f"nothing of this batch was written ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
            ) from exc
        except self._failures as exc:
            raise StoreError(f"store {self.url!r} refused the batch: {exc}".strip().splitlines()[0]) from exc
        if len(positions) != len(events):  # pragma: no cover
            raise StoreError(f"store {self.url!r} did not report positions for the batch")
        self.tree.after_append(positions, [e.hash for e in events])  # the seals, as the append computed them
        return positions

    def head(self) -> int:
        """The position readers go up to (0 for an empty log).

        The last event's, where one writer at a time commits (SQLite, memory, an older
        PostgreSQL schema). Where PostgreSQL writers take positions concurrently, the
        high-water mark: every position at or below it is final, so a reader that stops
        there and goes on later from it never skips an event that commits late.
        """
        try:
            return self._backend.head()
        except self._failures as exc:
            raise self._read_error(exc, None) from exc

    def records_between(self, after: int, upto: int) -> int:
        """How many records lie in positions (after, upto]: PostgreSQL's concurrent writers leave holes."""
        return int(self._index_read(self._backend.records_between, after, upto))

    def checkpoints(self) -> list[tuple[int, int, int, str, list[int]]]:
        """(lo, hi, records, hash, holes) of the whole-log chain's checkpoints (PostgreSQL, seal v3), by position."""
        return list(self._index_read(self._backend.checkpoints))

    def checkpoint(self, at_least: int = 1) -> int | None:
        """Checkpoint the log up to the high-water mark (PostgreSQL, seal v3) when that covers at
        least ``at_least`` positions; writers do this themselves every few thousand positions."""
        try:
            return self._backend.checkpoint(at_least)
        except self._failures as exc:
            raise StoreError(f"store {self.url!r}: cannot make a checkpoint: {exc}") from exc

    def read(self, start: int = 1, limit: int = 10_000, stop: int | None = None) -> Sequence[Notification]:
        """Events with position >= start (and <= stop), oldest first, up to ``head()`` (see ``read_columns``)."""
        if start > MAX_POSITION:
            return []  # the page after a record at the largest position: nothing can be there
        if self.kind == "postgresql":  # the recorder knows nothing of the high-water mark
            head = self.head()
            stop = head if stop is None else min(stop, head)
            if stop < start:
                return []
        try:
            return self.recorder.select_notifications(start, limit, stop=stop)
        except PersistenceError as exc:
            raise self._read_error(exc, start) from exc

    def read_columns(self, start: int = 1, limit: int = 50_000, *, text_ids: bool = True, past_head: bool = False) -> LogPage:
        """A page of the log as columns, exactly as stored, for bulk readers (replay, verify, projections).

        SQLite and PostgreSQL are read with one plain SELECT into tuples: the
        recorder's per-row ``Notification`` objects cost more than the query,
        and its conversions would fail inside the recorder on an edited row
        (``ledger.decode`` and ``ledger.integrity`` check the raw values and
        name the position instead). A damaged SQLite file is a
        ``CorruptLogError``. ``text_ids=False`` lets ``memory://`` hand back
        its stream ids as the UUIDs it holds (replay skips the text round trip).

        A page stops at ``head()``: where PostgreSQL writers commit out of order, a record past
        the high-water mark may still get a neighbour below it. ``past_head`` reads whatever is
        committed (``verify``: a record no writer was given a position for is evidence too).
        """
        if start > MAX_POSITION:  # after a record moved to the largest position: nothing can be there
            return LogPage([], [], [], [], [])
        return self._page(lambda: self._backend.read_rows(start, limit, text_ids=text_ids, past_head=past_head), start)

    def read_positions(self, positions: Sequence[int]) -> LogPage:
        """The records at ``positions`` as columns (as ``read_columns``), in position order, in
        few round trips; a position with no record is simply absent (callers check)."""
        if not positions:
            return LogPage([], [], [], [], [])
        return self._page(lambda: self._backend.read_positions(positions), None)

    def _page(self, read: Callable[[], list[tuple[Any, ...]]], start: int | None) -> LogPage:
        """Raw rows from ``read`` as columns, with the store's error mapping."""
        try:
            rows = read()
        except self._backend.read_failures as exc:  # the raw connection, not the recorder
            raise self._read_error(exc, start) from exc
        except PersistenceError as exc:
            raise StoreError(f"store {self.url!r}: read failed: {exc}") from exc
        if not rows:
            return LogPage([], [], [], [], [])
        positions, stream_ids, versions, topics, states = map(list, zip(*rows))
        return LogPage(positions, stream_ids, versions, topics, states)

    def _read_error(self, exc: BaseException, start: int | None) -> StoreError:
        """A failed read as one line: ``CorruptLogError`` when the backend says the file is damaged."""
        # The recorder wraps the driver's error; a raw connection raises it as it is.
        cause = exc.__cause__ if isinstance(exc, PersistenceError) else exc
        where = "" if start is None else f" from position {start}"
        if self._backend.is_damaged(cause):
            # The damaged page's records are unknown, so no position is claimed.
            return CorruptLogError(f"store {self.url!r}: the log cannot be read{where}, the file is damaged: {cause}")
        return StoreError(f"store {self.url!r}: read failed{where}: {cause or exc}")

    def _fill_members(self, events: Sequence[NewEvent]) -> None:
        """Give each ``entity.version`` event whose writer did not say its tree members.

        The write side knows them from planning; any other writer's root versions are
        walked here, before the append transaction (the children of stored versions
        never change), so the version index's tree rows are right whoever appends.
        A body that cannot be read is left as it is: the append refuses it.
        """
        if self.spec.kind == "memory":
            return  # memory:// keeps no stored index
        missing = [e for e in events if e.topic == ENTITY_VERSION and e.members is None]
        if not missing:
            return
        walker = TreeWalker(self.children_of)
        facts: list[tuple[NewEvent, UUID, bool]] = []
        for event in events:  # this batch's versions may be each other's children
            if event.topic != ENTITY_VERSION:
                continue
            try:
                ecs_id = event.ecs_id if event.ecs_id is not None else ecs_id_of(event.body, 0)
                is_root, children = tree_facts(event.body, 0)
            except CorruptLogError:
                continue
            walker.note(ecs_id, children)
            facts.append((event, ecs_id, is_root))
        for event, ecs_id, is_root in facts:
            if event.members is None:
                event.members = tuple(walker.members(ecs_id)) if is_root else ()

    def secret(self, name: str) -> bytes | None:
        """A secret the store keeps for what it vouches for outside itself (``ANALYTICS_SECRET``
        keys the analytics cache's MAC), or None for a store a writable open has not given one."""
        return self._index_read(self._backend.secret, name)

    # ------------------------------------------------------------ followers
    def follower_position(self, name: str) -> int:
        """The last position durable follower ``name`` acknowledged (0: it never did)."""
        return int(self._index_read(self._backend.follower_position, name))

    def hold_follower(self, name: str) -> Callable[[], None]:
        """Hold follower ``name``: one follower at a time per name, across processes; returns the release.

        A lock that dies with its holder (PostgreSQL: a session advisory lock; SQLite: an
        ``flock`` on a file beside the store; memory: a set in this process), so a crashed
        holder never keeps the name. A name held elsewhere is ``FollowerHeldError`` at once.
        """
        refused: tuple[type[BaseException], ...] = (OSError, *self._failures)
        try:
            release = self._backend.hold_follower(name)
        except refused as exc:
            raise StoreError(f"store {self.url!r}: cannot take follower {name!r}: {exc}") from exc
        if release is None:
            raise FollowerHeldError(
                f"name: follower {name!r} of {self.url!r} is held by another follower (in this or another "
                "process); it is free again when that one stops"
            )
        return release

    def acknowledge(self, name: str, position: int) -> None:
        """Record that follower ``name`` has handled everything up to ``position`` (never moves back)."""
        try:
            self._backend.acknowledge(name, position)
        except self._failures as exc:
            raise StoreError(f"store {self.url!r}: cannot record follower {name!r} at position {position}: {exc}") from exc

    def listen(self) -> Listener | None:
        """A waiter woken by other processes' appends (PostgreSQL LISTEN), or None: poll."""
        return self._backend.listen()

    # ------------------------------------------------------------ version index
    def index_state(self) -> tuple[int, str] | None:
        """(tracked position, its record's chain link) of the stored version index; None without one."""
        return self._index_read(self._backend.index_state)

    def index_caught_up(self) -> bool:
        """True when the stored version index covers the whole log (readers may use it alone)."""
        state = self.index_state()
        if state is None:
            return False
        live = self._index_read(self._backend.index_live_after)
        if live is not None:  # appends past it wrote their own rows
            return state[0] >= live
        return state[0] == self.head()

    def index_covered(self) -> int | None:
        """The position up to which the stored version index holds every row (None: no index).

        The tracked position, or the head where appends index themselves (PostgreSQL's
        concurrent writers) and catch-up has reached where they began.
        """
        state = self.index_state()
        if state is None:
            return None
        live = self._index_read(self._backend.index_live_after)
        if live is not None and state[0] >= live:
            return self.head()
        return state[0]

    def catch_up_index(self, progress: Callable[[int, int], None] | None = None, page: int = 20_000) -> int:
        """Index the records after the tracked position; returns how many records were read.

        A tracked position whose record no longer has the remembered chain link
        means the log below it was rewritten: the index is dropped and rebuilt from
        the first record. Each page is added in its own transaction with the
        tracked position, so a killed catch-up resumes where it stopped. Another
        process moving the position meanwhile (appending or catching up) stops this
        one; whichever is behind finishes on a later open.
        """
        state = self.index_state()
        if state is None:
            return 0
        position, head_hash = state
        if position:
            at = self.read_columns(position, 1, past_head=True)
            if not len(at) or at.positions[0] != position or link_hash(at.states[0]) != head_hash:
                log.warning("%s: the log changed below the version index's position %d; rebuilding it", self.url, position)
                self._backend.reset_index()
                position = 0
        head = self.head()
        live = self._index_read(self._backend.index_live_after)
        if live is not None:  # past it, every append wrote its own rows
            head = min(head, live)
        done = 0
        walker = TreeWalker(self.children_of)
        if progress is not None and position < head:
            progress(position, head)  # where it starts
        while position < head:
            rows = self.read_columns(position + 1, page)
            keep = sum(1 for p in rows.positions if p <= head)
            if keep < len(rows):
                rows = LogPage(rows.positions[:keep], rows.stream_ids[:keep], rows.versions[:keep], rows.topics[:keep], rows.states[:keep])
            if not len(rows):
                break
            last = rows.positions[-1]
            found = rows_for_page(rows.positions, rows.stream_ids, rows.versions, rows.topics, rows.states, walker)
            if not self._backend.add_index_rows(found, position, last, link_hash(rows.states[-1])):
                break
            done += len(rows)
            position = last
            if progress is not None:
                progress(position, head)
        if done:
            log.info("%s: version index caught up with %d records (position %d)", self.url, done, position)
        return done

    def rebuilt_index(self, upto: int | None = None) -> IndexRows:
        """The index rows computed from the log alone, up to ``upto`` (default: where the index covers the log)."""
        if upto is None:
            upto = self.index_covered() or 0
        rebuild = IndexRebuild()
        start = 1
        while start <= upto:
            found = self.read_columns(start, min(20_000, upto - start + 1))
            if not len(found):
                break
            rebuild.add_page(found.positions, found.stream_ids, found.versions, found.topics, found.states)
            start = found.positions[-1] + 1
        rows = rebuild.rows
        rows.roots = rows.final_roots()
        return rows

    def stored_index(self) -> IndexRows:
        """Every row the stored version index holds, by position."""
        return self._index_read(self._backend.index_dump)

    def version_position(self, ecs_id: Any) -> int | None:
        """The log position of a stored version, from the index (None when there is none)."""
        return self._index_read(self._backend.version_position, ecs_id)

    def version_positions(self, ecs_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The positions of those of ``ecs_ids`` that are stored versions, in one round trip."""
        return self._index_read(self._backend.version_positions, ecs_ids) if ecs_ids else {}

    def stream_heads(self, stream_ids: Sequence[UUID], upto: int) -> dict[UUID, tuple[int, int, bytes]]:
        """``stream_head`` of each of ``stream_ids`` that has a record at or below ``upto``, in one round trip."""
        return self._index_read(self._backend.stream_heads, stream_ids, upto) if stream_ids else {}

    def memo_lookup(self, key: str) -> tuple[Any, ...] | None:
        """The first successful execution filed under memo key ``key`` (hex), from the store's memo
        index, with its record: (execution_id, position, stream id, version, topic, state), one
        keyed read. The record's columns are raw (``None`` if it is missing): callers check them."""
        return self._index_read(self._backend.memo_lookup, bytes.fromhex(key))

    def tree_root(self, ecs_id: UUID) -> UUID | None:
        """The root version of the latest stored tree that holds version ``ecs_id`` (None: no such version)."""
        return self._index_read(self._backend.tree_root, ecs_id)

    def stream_head(self, stream_id: UUID, upto: int) -> tuple[int, int, bytes] | None:
        """(position, version, sealed state) of a stream's last record at or below position ``upto``.

        None when it has none there. A writer asks as of the position it has seen: a
        version another writer appended since then must make its append conflict, not
        be quietly built on.
        """
        return self._index_read(self._backend.stream_head, stream_id, upto)

    def streams_with_prefix(self, prefix: str, limit: int = 11) -> list[tuple[UUID, int]]:
        """(stream id, position of its last record) of the streams (lineages, executions) whose id
        starts with the hex digits ``prefix``, by id, at most ``limit``.

        Ids are shown short; this turns a short one back into the whole id with one range scan
        (``>= prefix000... AND <= prefixfff...``), which orders the same on hex text, 16-byte
        blobs and PostgreSQL uuids.
        """
        low, high = prefix_range(prefix)
        return self._index_read(self._backend.streams_between, low, high, limit)

    def versions_with_prefix(self, prefix: str, limit: int = 11) -> list[tuple[UUID, int]]:
        """(ecs_id, position) of the stored versions whose ecs_id starts with the hex digits
        ``prefix``, from the version index, by id, at most ``limit``."""
        low, high = prefix_range(prefix)
        return self._index_read(self._backend.versions_between, low, high, limit)

    def children_of(self, ecs_id: UUID) -> tuple[UUID, ...]:
        """The child versions a stored version names (read from its record); () when unknown."""
        position = self.version_position(ecs_id)
        if position is None:
            return ()
        page = self.read_columns(position, 1, past_head=True)
        if not len(page) or page.positions[0] != position:
            raise CorruptLogError(f"position {position}: the version index names a record that is missing; run ledger verify", position)
        return tree_facts(page.states[0], position)[1]

    def lineage_entries(self, lineage_id: Any) -> list[tuple[Any, int, int]]:
        """(ecs_id, stream version, position) of each version of a lineage, oldest first."""
        return self._index_read(self._backend.lineage_entries, lineage_id)

    def erasure_entries(self, since: int = 0) -> dict[Any, int]:
        """lineage_id -> position of its erasure, from the index (those after position ``since``)."""
        return self._index_read(self._backend.erasure_entries, since)

    def erasure_position(self, lineage_id: UUID) -> int | None:
        """The position of a lineage's erasure, from the index; None when it was not erased."""
        return self._index_read(self._backend.erasure_position, lineage_id)

    def _index_read(self, read: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """An index query with the store's error mapping (a damaged file is ``CorruptLogError``);
        returns what ``read`` returns, so each caller keeps the backend method's type."""
        try:
            return read(*args, **kwargs)
        except self._failures as exc:
            raise self._read_error(exc, None) from exc

    def iter_all(self, start: int = 1, page: int = 10_000, stop: int | None = None) -> Iterator[Notification]:
        while True:
            batch = self.read(start, page, stop)
            if not batch:
                return
            yield from batch
            start = batch[-1].id + 1

    def read_stream(self, stream_id: Any) -> Sequence[StoredEvent]:
        return self.recorder.select_events(stream_id)

    def close(self) -> None:
        self._backend.close()

"""``Ledger``: one event store, the inline registry rebuilt from it, and the
process-wide default that the class-level APIs use.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from os import PathLike
from types import TracebackType
from typing import Any
from uuid import UUID

from ledger import _process
from ledger.errors import ActorError, BatchCommitError, ConcurrencyError, InputValidationError, LedgerClosedError, ReactionError
from ledger.events import decode
from ledger.events.digest import Digest
from ledger.model.address import Address, parse_address
from ledger.proofs import ConsistencyProof, InclusionProof, TreeHead
from ledger.reactions.facts import facts_of_batch
from ledger.reactions.follow import Follower
from ledger.registry import EntityRegistry
from ledger.store import EventStore
from ledger.store.integrity import VerifyReport, digest_store, verify_store
from ledger.write.batch import Batch
from ledger.write.erasure import Erasure, erase_lineage
from ledger.write.pending import DEFAULT_FLUSH_EVENTS, PendingBlock, events_of, not_recorded, settle
from ledger.write.reexecute import Reexecution, reexecute_on
from ledger.write.run_record import default_actor
from projections.addresses import Resolved, resolve_address
from projections.index_protocol import open_payload
from projections.inline import DEFAULT_VALUES_CACHE_BYTES, InlineIndex
from projections.stored_inline import DEFAULT_RECORDS_CACHE, StoredInlineIndex

__all__ = ["Ledger", "VerifyReport", "connect", "get_ledger", "sql"]

log = logging.getLogger(__name__)


class _Tracking(threading.local):
    """Per thread: the follower acknowledgement a commit carries (``Ledger.begin_tracking``).

    Class-level defaults: a thread that never tracked reads them without the AttributeError
    a bare ``threading.local`` raises first (2 µs a commit, measured; this is 40 ns)."""

    current: tuple[str, int] | None = None
    used: bool = False


class Ledger:
    """An event store plus everything derived from it that the write side needs."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        create: bool = True,
        analytics_path: str | None = None,
        analytics_fallback: bool = False,
        replay: bool = False,
        cache_versions: int = DEFAULT_RECORDS_CACHE,
        cache_values_bytes: int = DEFAULT_VALUES_CACHE_BYTES,
        actor: str | None = None,
    ) -> None:
        """Open the store at ``url`` and the inline index the write side reads.

        A SQLite or PostgreSQL ledger whose stored version index covers its log
        (a writable open brings it up to date first) opens in constant time and
        memory: the index is read from the store on demand
        (``projections.stored_inline``). ``memory://``, a store opened read-only
        whose stored index lags, and ``replay=True`` replay the whole log into
        memory instead (``projections.inline``), which ``ledger replay`` and the
        checks of the stored index compare with.

        ``cache_versions`` bounds how many stored versions the index keeps decoded
        from the log, ``cache_values_bytes`` (an estimate) how much their decoded
        field values may take; what falls out is read again when needed.

        ``create=False`` opens only an existing ledger and writes nothing: a
        missing, empty or foreign store raises ``StoreNotFoundError`` (see
        ``EventStore``). A record replay cannot decode raises ``CorruptLogError``
        naming its position; ``ledger.store.integrity.verify_store`` still runs on
        such a store. Either way the store is closed again before raising.

        ``analytics_path`` keeps the analytics tables in that DuckDB file (a
        cache; see ``projections.analytics``). A file that cannot be used then
        (another process holds it, it cannot be written, it is a symbolic link)
        raises ``CacheUnavailableError``, or with ``analytics_fallback`` the
        tables are kept in memory with a warning (what the CLI's default file does).

        ``actor`` names who runs the executions recorded through this ledger (the run
        record's ``actor``; default ``"<OS user>@<host>"``); ``acting_as`` overrides it
        for a block.
        """
        self._actor = _checked_actor(actor) if actor is not None else None
        #: ``acting_as``: per thread and per asyncio task (a context variable of this ledger).
        self._acting: ContextVar[str | None] = ContextVar(f"ledger_actor_{id(self)}", default=None)
        self.url = url
        self.analytics_path = analytics_path
        self.analytics_fallback = analytics_fallback
        self.store = EventStore(url, create=create)
        self._lock = threading.RLock()
        #: Streams of batches travelling to the store with the lock released (``_append``), and
        #: the condition their landing signals.
        self._in_flight: set[UUID] = set()
        self._landed = threading.Condition(self._lock)
        self._closed = False
        self._analytics: Any = None
        #: How deep this ledger's write lock is held (``writing``), and the facts of batches
        #: committed meanwhile, published when it is released.
        self._write_depth = 0
        self._pending_facts: list[Any] = []
        #: The open ``batch()`` block: batches held for one transaction (None: commit each).
        self._block: PendingBlock | None = None
        #: Durable followers of this ledger (``follow``), by name.
        self._followers: dict[str, Any] = {}
        #: Per thread: the (follower name, position) a follower's handler is handling, which
        #: each batch that handler commits acknowledges in its own transaction.
        self._tracking = _Tracking()
        try:
            if not replay and self.store.index_caught_up():
                self.index: InlineIndex = StoredInlineIndex(
                    self.store, records_cache=cache_versions, values_cache_bytes=cache_values_bytes
                )
            else:
                self.index = InlineIndex(self.store.keys, values_cache_bytes=cache_values_bytes)
            self.registry = EntityRegistry(self)
            if not isinstance(self.index, StoredInlineIndex):
                self.refresh()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------- the actor
    @property
    def actor(self) -> str:
        """Who the executions recorded now run as: ``acting_as``'s name inside such a block,
        else the ``actor`` this ledger was opened with, else ``"<OS user>@<host>"``."""
        return self._acting.get() or self._actor or default_actor()

    @contextmanager
    def acting_as(self, actor: str) -> Iterator[None]:
        """Record the executions run inside the block as run by ``actor``.

        Thread- and task-local (a context variable): two threads or ``asyncio`` tasks acting
        as different people record each their own name. Blocks nest; leaving one restores the
        actor before it. An empty or non-string name is an ``ActorError``.
        """
        token = self._acting.set(_checked_actor(actor))
        try:
            yield
        finally:
            self._acting.reset(token)

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release files and connections. The ledger cannot be used afterwards."""
        if not self._closed:
            for follower in list(self._followers.values()):
                follower.stop()  # before the store goes: a follower may be reading it
            self._followers.clear()
            self._closed = True
            if self._analytics is not None:
                self._analytics.close()
            self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Ledger {self.url} position={self.index.position}>"

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerClosedError(f"ledger {self.url!r} is closed")

    # ---------------------------------------------------------------- writing
    @contextmanager
    def writing(self) -> Iterator[None]:
        """Serialize writers of this process; planning and appending happen inside.

        The facts of batches committed inside are published when the outermost
        ``writing()`` of the thread ends (also when it ends with an error: they were
        committed), so handlers run with no write lock held and see the live objects
        already updated.
        """
        self._check_open()
        pending: list[Any] = []
        with self._lock:
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
                if not self._write_depth and self._pending_facts:
                    pending, self._pending_facts = self._pending_facts, []
        if pending:
            self._publish(pending)

    @contextmanager
    def batch(self, *, flush_events: int = DEFAULT_FLUSH_EVENTS) -> Iterator[None]:
        """Append the writes made inside the block in one transaction (``ledger.write.pending``).

        Every execution (and ``register``, ``version_entity``, ...) inside is still its own
        batch with its own ``batch_id``; they are appended together, in order, when the block
        ends, or as soon as ``flush_events`` events are held (bounded memory), so the log is
        the one the same calls make one by one and holds only whole executions. Later calls
        in the block read the earlier ones' outputs (by entity or ``@`` reference) from the
        index, where they are held until the commit. Reads that go to the store itself
        (``history``, ``as_of``, ``sql``, memo lookups of ``cache=True`` functions) see only
        what was committed.

        An exception inside the block: what ran before it (the failed execution's record
        included) is committed, then the exception propagates, as one by one. The commit
        refused (another writer appended to one of the lineages first, or the database
        failed): nothing of the held batches is written and ``BatchCommitError`` names the
        executions that were not recorded. A crash inside the block loses the executions
        held since the last flush, never part of one.

        The block holds this ledger's write lock: other threads' writes wait until it ends.
        A block inside a block joins it (the outer one commits). ``erase`` inside a block
        commits what is held first, then erases at once (it destroys a key).
        """
        if type(flush_events) is not int or flush_events < 1:
            raise InputValidationError(f"flush_events: expected a positive int, got {flush_events!r}")
        with self.writing():
            block = self._block
            if block is not None and block.owner == threading.get_ident():
                block.depth += 1
                try:
                    yield
                finally:
                    block.depth -= 1
                return
            self._block = PendingBlock(self.index, flush_events)
            try:
                yield
            finally:
                try:
                    self.flush()
                finally:
                    self._block = None

    def flush(self) -> None:
        """Append what the open ``batch()`` block holds now, in one transaction (nothing outside one)."""
        block = self._block
        if block is None or block.owner != threading.get_ident():
            return
        with self._lock:
            held = block.take()
            if not held:
                return
            try:
                positions = self._append(events_of(held), None)
            except BaseException as exc:
                for batch, _ in held:
                    batch.abort()
                self._forget_held()
                ids = not_recorded(held)
                raise BatchCommitError(
                    f"the {len(held)} batches held by the batch() block were not recorded "
                    f"({len(ids)} executions: {', '.join(str(i) for i in ids[:3])}{' …' if len(ids) > 3 else ''}): {exc}",
                    ids,
                    len(held),
                ) from exc
            per_batch, moved = settle(self.index, held, positions)
            if moved:  # another writer appended in between: see it, and the positions ours took
                self.refresh()
            bus = _process.event_bus
            if bus is not None and bus.subscribed:
                for (batch, _), actual in zip(held, per_batch):  # published when the block's lock goes
                    self._pending_facts.extend(facts_of_batch(batch.records(), actual))
        if self._followers:
            for follower in list(self._followers.values()):
                follower.wake()

    def _forget_held(self) -> None:
        """Drop what a refused block had indexed: rebuild the index's view from the store."""
        index = self.index
        if isinstance(index, StoredInlineIndex):
            index.records.cache.clear()  # type: ignore[attr-defined]  # held versions among them
            index.reload()
            return
        fresh = InlineIndex(index.keys, values_cache_bytes=index.values_cache.max_bytes)
        index.__dict__.update(fresh.__dict__)  # in place: the registry and commands hold this object
        self.refresh()

    def commit(self, batch: Batch) -> list[int]:
        """Append a batch atomically, then update the index and the live objects.

        Then, once no write lock of this thread is held (see ``writing``), the batch's facts
        go to the reactions bus (only while a handler is subscribed; a handler's failure is
        logged, never raised here) and this ledger's followers are woken. A refused batch
        publishes nothing.
        """
        self._check_open()
        with self._lock:
            block = self._block
            if block is not None and block.owner == threading.get_ident():
                if self._tracking.current is None:
                    try:
                        positions = block.hold(batch)
                    except BaseException:
                        batch.abort()
                        raise
                    if block.full():
                        self.flush()
                    return positions
                self.flush()  # a follower's acknowledgement goes with its own batch, after what is held
            streams = batch.stream_ids() if self.store.concurrent_appends else set()
            while streams & self._in_flight:  # another thread's batch on them is travelling: seal after it lands
                self._landed.wait()
            try:
                events = batch.seal()
            except BaseException:
                batch.abort()
                raise
            tracking = self._tracking.current if self._followers else None
            try:
                positions = self._append(events, tracking)
                if tracking is not None:  # a follower's handler wrote: the event it handles is acknowledged with it
                    self._tracking.used = True
            except ConcurrencyError:
                batch.abort()
                self.refresh()  # the next attempt plans against what the other writer wrote
                raise
            except BaseException:
                batch.abort()
                raise
            batch.apply(positions)
            facts: list[Any] = []
            bus = _process.event_bus
            if bus is not None and bus.subscribed:
                facts = facts_of_batch(batch.records(), positions)
                if self._write_depth:  # inside writing(): published when it ends
                    self._pending_facts.extend(facts)
                    facts = []
        if facts:
            self._publish(facts)
        if self._followers:
            for follower in list(self._followers.values()):
                follower.wake()
        return positions

    def _append(self, events: list[Any], tracking: tuple[str, int] | None) -> list[int]:
        """``store.append``, called holding the write lock.

        Where the store lets appends overlap (PostgreSQL's concurrent writers), the lock is
        released while the batch travels: other threads of this process plan and seal their
        batches meanwhile, and those arriving together share one transaction (group commit).
        A thread whose batch appends to a stream one in flight writes waits for it to land
        before sealing (``commit``), so threads of one process never race each other on a
        stream: what they get is what one lock through the append gave.
        """
        args = (events,) if tracking is None else (events, tracking)
        if not self.store.concurrent_appends:
            return self.store.append(*args)
        streams = {e.stream_id for e in events}
        self._in_flight |= streams
        saved = self._lock._release_save()  # type: ignore[attr-defined]  # every level this thread holds
        try:
            return self.store.append(*args)
        finally:
            self._lock._acquire_restore(saved)  # type: ignore[attr-defined]
            self._in_flight -= streams  # landed (applied by the caller before the lock goes again)
            self._landed.notify_all()

    def _publish(self, facts: list[Any]) -> None:
        """Hand committed facts to the reactions bus; nothing here may fail the write."""
        bus = _process.event_bus
        if bus is None:
            return
        try:
            bus.publish(facts)
        except Exception:  # the batches are committed; their facts must not turn that into an error
            log.exception("%s: publishing facts from position %d failed", self.url, getattr(facts[0], "position", 0))

    # ---------------------------------------------------------------- reacting
    def follow(self, name: str, handler: Callable[[Any], Any], *, types: Iterable[str] | None = None) -> Follower:
        """Deliver every log event after the position follower ``name`` last acknowledged to ``handler``.

        ``handler`` (sync or async) receives one fact per record (``ledger.reactions``:
        ``entity.registered``, ``execution.completed``, ..., and recorded user events as
        their own classes); ``types`` keeps only facts whose ``type`` equals or matches
        (glob) one of the names given. Returns once what the log holds now was delivered,
        then keeps delivering new events (from this and other processes) in a background
        thread until ``close()``. The position is kept in the store per name: a restarted
        process resumes where it stopped. Exactly once when the handler writes to this
        ledger, at least once otherwise (``ledger.reactions.follow``). Returns the
        ``Follower`` (``.position``, ``.delivered``, ``.stop()``).
        """
        self._check_open()
        if name in self._followers:
            raise ReactionError(f"name: follower {name!r} already follows {self.url!r} in this ledger")
        follower = Follower(self, name, handler, types)
        self._followers[name] = follower
        try:
            follower.start()
        except BaseException:
            self._followers.pop(name, None)
            raise
        return follower

    def unfollow(self, name: str) -> None:
        """Stop follower ``name`` (its position stays in the store for the next ``follow``)."""
        follower = self._followers.pop(name, None)
        if follower is not None:
            follower.stop()

    def begin_tracking(self, name: str, position: int) -> None:
        """Batches this thread commits until ``end_tracking`` acknowledge follower ``name`` at ``position``."""
        self._tracking.current = (name, position)
        self._tracking.used = False

    def end_tracking(self) -> bool:
        """Stop tracking in this thread; True when a committed batch carried the acknowledgement."""
        used = self._tracking.used
        self._tracking.current = None
        self._tracking.used = False
        return used

    # ---------------------------------------------------------------- reading
    def refresh(self) -> int:
        """See what other writers appended since this ledger last looked.

        Returns how many events that was. With the index in the store
        (``StoredInlineIndex``) the other writers' rows are there already: the
        caches they may have made stale (stream heads, tree roots) are dropped
        and erasures read again; nothing is replayed. Until a refresh, this
        ledger builds on what it has seen: a write onto a stream another writer
        moved meanwhile is a ``ConcurrencyError`` (then refreshed), as with the
        in-memory index.

        The in-memory index (``InlineIndex``) applies the new events instead.
        Events already in it (our own, applied at commit) are recognised by
        their stream version. The
        cyclic garbage collector is paused meanwhile: replay allocates only
        long-lived, acyclic index objects, and collections triggered by them
        were measured at two thirds of replay time.

        A record that cannot be decoded (``ledger.events.decode``), or a stream that
        skips a version, stops replay with ``CorruptLogError`` naming its
        position; everything before it stays applied.
        """
        self._check_open()
        if isinstance(self.index, StoredInlineIndex):
            with self._lock:
                if self.store.create and not self.store.index_caught_up():
                    # another process appended without index rows (an older library)
                    self.store.catch_up_index()
                return self.index.reload()
        applied = 0
        uuids: dict[str, UUID] = {}
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with self._lock:
                index = self.index
                streams = index.streams
                start = index.caught_up + 1
                while True:
                    page = self.store.read_columns(start, 10_000, text_ids=False)
                    if not len(page):
                        break
                    for position, raw_id, raw_version, raw_topic, state in zip(
                        page.positions, page.stream_ids, page.versions, page.topics, page.states
                    ):
                        stream_id = raw_id if isinstance(raw_id, UUID) else uuids.get(raw_id)
                        if stream_id is None:
                            stream_id = decode.record_stream(position, raw_id, uuids)
                        version = raw_version if type(raw_version) is int and raw_version > 0 else (
                            decode.record_version(position, raw_version)
                        )
                        head = streams.get(stream_id)
                        current = 0 if head is None else head.version
                        if current < version:
                            if version != current + 1:
                                raise decode.corrupt(
                                    position,
                                    f"stream {stream_id} jumps from v{current} to v{version} (a record is missing)",
                                )
                            self._apply(decode.record_topic(position, raw_topic), state, position, stream_id, version, uuids)
                            applied += 1
                        index.caught_up = position
                    start = page.positions[-1] + 1
        finally:
            if gc_was_enabled:
                gc.enable()
        return applied

    def _apply(
        self, topic: str, state: bytes, position: int, stream_id: UUID, version: int, uuids: dict[str, UUID] | None = None
    ) -> None:
        payload = decode.record_payload(position, topic, state)
        try:
            self.index.apply(topic, position, stream_id, payload["hash"], payload=payload, uuids=uuids, version=version)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise decode.corrupt(
                position, f"the {topic} record of stream {stream_id} cannot be decoded: {decode.describe(exc)}"
            ) from exc

    def erase(self, lineage_id: UUID | str, *, reason: str) -> Erasure:
        """Make the personal fields of every version of a lineage unreadable, for good.

        Appends one ``entity.erased`` event to the lineage's stream and destroys
        its data key. Afterwards every read path gives ``ERASED`` for fields
        marked ``Personal[...]`` (other fields are untouched), ``verify()`` stays
        ok (hashes cover the ciphertext, which is never edited), and the lineage
        refuses new versions (``ErasedError``). Erasing an erased lineage again
        writes nothing and returns ``already_erased=True``; an unknown lineage is
        an ``EntityNotFoundError``.
        """
        self._check_open()
        with self.writing():
            block, self._block = self._block, None
            try:
                if block is not None:  # the key is destroyed right after the event: commit it alone, now
                    self._block = block
                    self.flush()
                    self._block = None
                return erase_lineage(self, lineage_id, reason=reason)
            finally:
                self._block = block

    def reexecute(self, execution_id: UUID | str) -> Reexecution:
        """Run a recorded execution again on its recorded inputs and compare the outputs
        (``CallableRegistry.reexecute`` on this ledger; see ``ledger.write.reexecute``)."""
        self._check_open()
        return reexecute_on(self, execution_id)

    def open_payload(self, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        """An event payload as readers may see it: sealed failure text opened.

        The ``error_message`` and ``traceback`` of an ``execution.failed`` event
        that read personal data are stored encrypted under the keys of those
        lineages; here they are decrypted while every key exists and read
        ``ERASED`` once any of the lineages was erased. Keys are read from the
        store, not a cache, so an erasure by another process counts at once.
        Other payloads come back unchanged (``projections.index_protocol.open_payload``,
        which ``StoredReader`` calls too).
        """
        self._check_open()
        return open_payload(self.index, topic, payload)

    def resolve(self, address: str | Address, *, argument: str = "address") -> Resolved:
        """The stored value at ``@<uuid>.path`` (entities as fresh copies)."""
        self._check_open()
        if not isinstance(address, Address):
            address = parse_address(address, argument=argument)
        return resolve_address(self.index, address, argument=argument)

    @property
    def analytics(self) -> Any:
        """The DuckDB projection of this log (``projections.analytics.Analytics``).

        Created on first use: the write side never needs it, and DuckDB costs
        memory. It is in memory unless the ledger was opened with
        ``analytics_path``.
        """
        self._check_open()
        if self._analytics is None:
            from projections.analytics import (
                Analytics,  # the read side, loaded on first use
            )

            self._analytics = Analytics(self.store, self.analytics_path, fallback=self.analytics_fallback)
        return self._analytics

    def sql(self, query: str, params: list[Any] | None = None) -> Any:
        """Read-only DuckDB SQL over the analytics tables, after catching up with the log.

        Read-only by construction (``projections.readonly``): anything that could
        write, change a setting, or reach a file or the network raises
        ``errors.ReadOnlyError`` and changes nothing. Each call runs on its own
        cursor, and ``.to_arrow_table()`` / ``.arrow()`` (a ``RecordBatchReader``) on the
        relation returned fetch its rows whole, so a reader left unread never blocks the next call; ``.df()`` needs the
        ``notebook`` extra (pandas) and says so without it.
        """
        return self.analytics.sql(query, params)

    def lineage_graph(
        self,
        ref: str | UUID,
        *,
        direction: str = "both",
        depth: int | None = None,
        position: int | None = None,
    ) -> Any:
        """What ``ref`` (an ecs_id, lineage_id or execution_id) was derived from and what
        was derived from it, as the log stood at ``position`` (default: now)."""
        from projections.lineage import lineage_graph

        return self.analytics.read(
            lambda con: lineage_graph(con, ref, direction=direction, depth=depth, position=position)
        )

    def blame(self, address: str | Address, *, depth: int = 10) -> Any:
        """Where the value at ``"@<uuid>.field.path"`` came from (``projections.provenance``).

        Returns a ``Provenance``: ``.version`` (the ecs_id that first held this
        value in its lineage), ``.execution_id`` (what wrote it; None for a
        registration or a hand edit), ``.sources`` (the inputs that execution read,
        each blamed in turn, ``depth`` levels down) and ``.to_dict()``. Reads only
        the versions and execution records it names; the analytics tables are not used.
        """
        self._check_open()
        from projections.provenance import blame

        return blame(self, address, depth=depth)

    def export_openlineage(self, path: str | PathLike[str], *, since: int | datetime | None = None) -> Any:
        """Write every execution as OpenLineage RunEvents, one JSON object per line (``projections.openlineage``).

        Per execution a ``START`` and a ``COMPLETE`` or ``FAIL`` with ``run.runId`` =
        the execution_id; inputs and outputs are datasets named by entity type and
        lineage id, in a namespace made from this store's URL without credentials.
        ``since`` (a log position, or a timezone-aware time) keeps only executions
        recorded from there on. Returns an ``OpenLineageExport`` (path, events, executions).
        """
        self._check_open()
        from projections.openlineage import export_openlineage

        return export_openlineage(self.analytics, self.url, path, since=since, open_payload=self.open_payload)

    # ------------------------------------------------------------ integrity
    def digest(self) -> Digest:
        """The log's head position and chained hash, to keep outside the store.

        ``verify(digest)`` later proves the log still holds everything up to that
        position unchanged, which the seals alone cannot (a removed tail leaves
        them intact). Every record's seal is checked on the way: a damaged log gets no
        digest but a ``CorruptLogError`` naming its first bad record.
        """
        self._check_open()
        return digest_store(self.store)

    def verify(self, digest: Digest | None = None, *, head: TreeHead | None = None) -> VerifyReport:
        """Check every record's seal and the chain through the log (``ledger.store.integrity``).

        With a ``digest`` saved earlier, also check that the log still reaches
        its position with the same chained hash. With a ``head`` (a tree head kept
        outside the store, e.g. ``TreeHead.from_note``), also check that the log
        extends it: its first ``head.size`` records have the head's root.
        """
        self._check_open()
        return verify_store(self.store, digest, head)

    # ------------------------------------------------------------ signed tree heads and proofs
    def tree_head(self) -> TreeHead:
        """The log as a Merkle tree now (``ledger.proofs``): size, root, origin, last position; sign it to keep it."""
        self._check_open()
        return self.store.tree.head()

    def prove_inclusion(self, position: int, size: int | None = None) -> InclusionProof:
        """That the record at ``position`` is in the tree of ``size`` leaves (default: the whole log).

        Checked against the head it is built for before it is returned; a position with no
        record or a size larger than the log raise ``errors.ProofError`` naming the argument.
        """
        self._check_open()
        return self.store.tree.prove_inclusion(position, size)

    def prove_consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """That the tree of ``old_size`` leaves is a prefix of the one of ``new_size`` (default: the whole log)."""
        self._check_open()
        return self.store.tree.prove_consistency(old_size, new_size)[0]


_process.install_ledger_factory(Ledger)


def _checked_actor(actor: Any) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise ActorError(f"actor: expected a non-empty name, got {actor!r:.80}")
    return actor


def connect(
    url: str = "memory://", *, create: bool = True, analytics_path: str | None = None, actor: str | None = None
) -> Ledger:
    """Open a store and make it the process's default ledger (replaying its log).

    ``create=False`` opens only an existing ledger (``Ledger``); on any error
    the previous default stays in place. ``actor``: who runs the executions
    recorded through it (``Ledger``).
    """
    ledger = Ledger(url, create=create, analytics_path=analytics_path, actor=actor)
    _process.set_default_ledger(ledger)
    return ledger


def get_ledger() -> Ledger:
    """The default ledger; an in-memory one is created on first use."""
    ledger: Ledger = _process.default_ledger()
    return ledger


def set_default_ledger(ledger: Ledger | None) -> None:
    """Make ``ledger`` the default (tests and embedding applications)."""
    _process.set_default_ledger(ledger)


def sql(query: str, params: list[Any] | None = None) -> Any:
    """``Ledger.sql`` on the default ledger."""
    return get_ledger().sql(query, params)

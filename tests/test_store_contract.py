"""The store contract: every method of the backend protocol and of ``EventStore``, on every backend.

eventsourcing tests each recorder with one shared test case per backend; this is ours. One
class, ``TestStoreContract``, runs against ``memory://``, a SQLite file and a PostgreSQL schema
(``conftest.store_url``); each test names the methods it exercises and asserts what they return
on a log whose contents it knows. ``TestContractIsComplete`` fails when a method of the backend
protocol (``ledger.store.base.StoreBackend``), a backend method ``EventStore`` calls, or a public
member of ``EventStore`` is named by no test here: a new method must come with a contract test.

Where backends legitimately differ, the test says so in its docstring:

- ``memory://`` keeps no stored version index (its ledgers replay in-process and die with it):
  the index reads raise ``StoreError`` there, ``index_state`` is None and catch-up does nothing.
- Checkpoints and holes exist only where writers take positions concurrently (PostgreSQL,
  seal v3): elsewhere ``checkpoints()`` is empty, ``checkpoint()`` makes none and
  ``index_live_after()`` is None (every append moves the tracking row itself).
- Only PostgreSQL has a notification channel (``listen``); the others return None and
  followers poll (memory's own commits wake them directly).
- A stream id comes back as text from SQLite and PostgreSQL reads, and as the stored UUID from
  ``memory://`` when ``text_ids=False``.
"""

from __future__ import annotations

import ast
import inspect
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest

import ledger
from ledger import CallableRegistry, Ledger
from ledger.errors import ConcurrencyError, FollowerHeldError, StoreError
from ledger.events import ENTITY_VERSION
from ledger.events.seal import NewEvent, link_hash
from ledger.store import EventStore
from ledger.proofs import leaf_hash, root_of
from ledger.store.base import StoreBackend
from ledger.store.merkle import seal_of
from ledger.store.version_index import ANALYTICS_SECRET, IndexRows

from .models import Grade, Patient, Student

HERE = Path(__file__)


def contract_bump(s: Student, by: float) -> Student:
    """A memoized function: its execution files one memo row."""
    s.gpa = s.gpa + by
    return s


@dataclass
class Known:
    """What the fixture wrote, to check the store's answers against."""

    led: Ledger
    store: EventStore
    backend: Any
    student: Student  # registered, then bumped: two versions of one lineage, each a tree
    first_root: UUID  # the student's first version
    grade: UUID  # the grade's first version (a child in the first tree)
    patient_lineage: UUID  # erased
    erased_at: int


@pytest.fixture
def known(store_url: str) -> Iterator[Known]:
    """A ledger on each backend holding a tree, its mutation by a memoized execution and an erasure."""
    CallableRegistry.register("contract_bump", cache=True)(contract_bump)
    led = ledger.connect(store_url)
    try:
        s = Student(name="Ann", gpa=1.0, grades=[Grade(course="math", score=2.0)])
        led.registry.register_entity(s)
        first_root, grade = s.ecs_id, s.grades[0].ecs_id
        bumped = CallableRegistry.execute("contract_bump", s=s, by=1.0)
        p = Patient(name="Bo")
        led.registry.register_entity(p)
        erasure = led.erase(p.lineage_id, reason="contract")
        yield Known(led, led.store, led.store._backend, bumped, first_root, grade, p.lineage_id, erasure.position)
    finally:
        led.close()
        ledger.set_default_ledger(None)
        CallableRegistry.unregister("contract_bump")


def note(stream: UUID, version: int = 1, prev_hash: str | None = None, n: int = 0) -> NewEvent:
    """A plain event the store seals and keeps: no entity, so no index row."""
    return NewEvent(stream, version, "contract.note", orjson.dumps({"n": n}), prev_hash)


def has_index(k: Known) -> bool:
    return k.store.kind != "memory"


class TestStoreContract:
    """Each backend answers the protocol the same way, except where the module docstring says."""

    # ------------------------------------------------------------ appending
    def test_append_returns_consecutive_positions_after_the_head_and_seals_them(self, known: Known) -> None:
        """``append`` (store and backend) gives the batch the positions after ``head``; each record
        ends with its own hash, which ``link_hash`` reads back."""
        head = known.store.head()
        stream = uuid.uuid4()
        batch = [note(stream, 1, n=1), note(stream, 2, n=2)]
        positions = known.store.append(batch)
        assert len(positions) == 2 and positions[0] > head and positions[1] > positions[0]
        assert known.store.head() >= positions[1]
        page = known.store.read_columns(positions[0], 2)
        assert page.positions == positions
        assert [link_hash(s) for s in page.states] == [e.hash for e in batch]
        raw = [note(stream, 3, prev_hash=batch[-1].hash, n=3)]
        (third,) = known.backend.append(raw)
        assert third > positions[1] and known.backend.head() >= third
        assert known.store.append([]) == []

    def test_append_of_a_taken_stream_version_is_a_conflict_and_writes_nothing(self, known: Known) -> None:
        """A (stream, version) already stored raises ``ConcurrencyError`` via ``conflicts``; no record is
        added. (PostgreSQL's high-water mark may pass the positions the failed batch burned: holes.)"""
        stream = uuid.uuid4()
        known.store.append([note(stream, 1)])
        head = known.store.head()
        with pytest.raises(ConcurrencyError):
            known.store.append([note(uuid.uuid4(), 1), note(stream, 1)])
        assert known.store.records_between(0, known.store.head()) == known.store.records_between(0, head)
        if known.store.kind != "postgresql":
            assert known.store.head() == head
        assert all(isinstance(t, type) and issubclass(t, BaseException) for t in known.backend.conflicts)
        assert all(issubclass(t, BaseException) for t in (*known.backend.failures, *known.backend.read_failures))

    def test_append_with_tracking_acknowledges_in_the_same_transaction(self, known: Known) -> None:
        """``append(tracking=)`` moves the follower as ``acknowledge`` does; ``follower_position`` reads it."""
        assert known.store.follower_position("contract") == 0
        assert known.backend.follower_position("contract") == 0
        (position,) = known.store.append([note(uuid.uuid4())], tracking=("contract", 7))
        assert known.store.follower_position("contract") == 7
        known.store.acknowledge("contract", 3)  # never moves back
        assert known.store.follower_position("contract") == 7
        known.backend.acknowledge("contract", position)
        assert known.backend.follower_position("contract") == position

    def test_concurrent_appends_only_on_postgresql(self, known: Known) -> None:
        """``concurrent_appends``: True only where PostgreSQL writers take positions concurrently."""
        assert known.store.concurrent_appends is bool(known.backend.concurrent_appends)
        if known.store.kind != "postgresql":
            assert known.store.concurrent_appends is False
        else:
            assert known.store.concurrent_appends is True  # a schema this library made

    # ------------------------------------------------------------ reading the log
    def test_read_read_columns_iter_all_and_read_rows_agree(self, known: Known) -> None:
        """The recorder's notifications (``read``, ``iter_all``), the column pages (``read_columns``)
        and the backend's raw rows (``read_rows``) hold the same records in the same order."""
        head = known.store.head()
        notes = known.store.read(1, 10_000)
        assert [n.id for n in notes] == [n.id for n in known.store.iter_all(page=2)]
        assert notes[-1].id == head and len(notes) == known.store.records_between(0, head)
        page = known.store.read_columns(1, 10_000)
        assert page.positions == [n.id for n in notes] and len(page) == len(notes)
        assert page.topics == [n.topic for n in notes]
        assert [UUID(s) for s in page.stream_ids] == [UUID(str(n.originator_id)) for n in notes]
        rows = known.backend.read_rows(2, 3, text_ids=True)
        assert [r[0] for r in rows] == page.positions[1:4]
        assert known.store.read(1, 10_000, stop=2)[-1].id == 2
        assert known.store.read_columns(head + 1, 10).positions == []
        past = known.store.read_columns(1, 10_000, past_head=True)
        assert past.positions[: len(page)] == page.positions

    def test_read_rows_gives_memory_uuids_without_text(self, known: Known) -> None:
        """``text_ids=False``: memory hands back the UUIDs it holds; the others store text."""
        (row,) = known.backend.read_rows(1, 1, text_ids=False)
        first = known.store.read(1, 1)[0].originator_id
        if known.store.kind == "memory":
            assert isinstance(row[1], UUID) and row[1] == first
        else:
            assert isinstance(row[1], str) and UUID(row[1]) == UUID(str(first))

    def test_read_positions_and_read_stream(self, known: Known) -> None:
        """``read_positions`` (store and backend) returns just those records in order, skipping
        absent ones; ``read_stream`` gives one stream's events, oldest first."""
        if not has_index(known):  # memory's backend read_positions is an index read it does not keep
            with pytest.raises(StoreError):
                known.backend.read_positions([1])
        else:
            assert [r[0] for r in known.backend.read_positions([3, 1, 10_000_000])] == [1, 3]
        page = known.store.read_positions([1, 3]) if has_index(known) else None
        if page is not None:
            assert page.positions == [1, 3]
        assert len(known.store.read_positions([])) == 0
        events = known.store.read_stream(known.student.lineage_id)
        assert [e.originator_version for e in events] == [1, 2]

    def test_head_and_records_between(self, known: Known) -> None:
        """``head`` is the last position here (no holes); ``records_between`` counts records in (after, upto]."""
        head = known.store.head()
        assert head == known.backend.head() == len(known.store.read(1, 10_000))
        assert known.store.records_between(0, head) == head == known.backend.records_between(0, head)
        assert known.store.records_between(head, head) == 0
        assert known.store.records_between(1, 3) == 2

    def test_checkpoints_and_checkpoint_only_on_postgresql(self, known: Known) -> None:
        """``checkpoint`` makes a row covering the log up to the high-water mark on PostgreSQL
        (``checkpoints`` then lists it, ending at ``head``); elsewhere seal v2 chains every record,
        so there is nothing to make or list."""
        head = known.store.head()
        made = known.store.checkpoint(1)
        if known.store.kind == "postgresql":
            rows = known.store.checkpoints()
            assert rows and rows[-1][1] == head and (made is None or made == head)
            lo, hi, records, digest, holes = rows[-1]
            assert lo < hi and records == hi - lo - len(holes) and len(digest) == 64
            assert known.backend.checkpoint(1) is None  # nothing new to cover
            assert known.backend.checkpoints() == rows
        else:
            assert made is None and known.store.checkpoints() == [] == known.backend.checkpoints()
            assert known.backend.checkpoint(1) is None

    # ------------------------------------------------------------ the version index
    def test_index_state_index_caught_up_index_covered_and_index_live_after(self, known: Known) -> None:
        """The stored index covers the whole log after appends; memory keeps none."""
        live = known.backend.index_live_after()
        if not has_index(known):
            assert known.store.index_state() is None is known.backend.index_state()
            assert known.store.index_caught_up() is False and known.store.index_covered() is None
            assert live is None
            return
        assert known.store.index_caught_up() is True
        assert known.store.index_covered() == known.store.head()
        state = known.store.index_state()
        assert state is not None and state == known.backend.index_state()
        if known.store.kind == "postgresql":
            assert live is not None and state[0] <= live  # appends past it index themselves
        else:
            assert live is None and state[0] == known.store.head()
            assert state[1] == link_hash(known.store.read_columns(state[0], 1).states[0])

    def test_stored_index_equals_rebuilt_and_survives_reset_and_catch_up(self, known: Known) -> None:
        """``stored_index`` (backend ``index_dump``) equals ``rebuilt_index`` from the log alone;
        after ``reset_index`` the backend holds nothing and ``catch_up_index`` (through
        ``add_index_rows``) rebuilds the same rows."""
        if not has_index(known):
            with pytest.raises(StoreError):
                known.store.stored_index()
            assert known.store.catch_up_index() == 0 and known.backend.add_index_rows(IndexRows(), 0, 0, "") is False
            known.backend.reset_index()  # nothing to forget
            return
        stored = known.store.stored_index()
        assert stored == known.store.rebuilt_index() == known.backend.index_dump()
        assert {known.first_root, known.grade, known.student.ecs_id} <= {e for e, _ in stored.versions}
        assert len(stored.memos) == 1 and [lineage for lineage, _ in stored.erasures] == [known.patient_lineage]
        known.backend.reset_index()
        assert known.backend.index_dump() == IndexRows([], [], [], [])
        assert known.backend.index_state() is not None and known.backend.index_state()[0] == 0
        assert known.store.catch_up_index() == known.store.records_between(0, known.store.head())
        assert known.store.stored_index() == stored

    def test_add_index_rows_refuses_a_moved_tracking_position(self, known: Known) -> None:
        """``add_index_rows`` moves the tracking row only from the position it expects: False otherwise."""
        if not has_index(known):
            return  # memory: covered by the test above (it always answers False)
        state = known.backend.index_state()
        assert state is not None
        assert known.backend.add_index_rows(IndexRows(), state[0] + 1000, state[0] + 1001, state[1]) is False
        assert known.backend.index_state() == state

    def test_version_position_version_positions_and_children_of(self, known: Known) -> None:
        """A stored version's position, one or many at once; a root names its child versions."""
        if not has_index(known):
            with pytest.raises(StoreError):
                known.store.version_position(known.first_root)
            with pytest.raises(StoreError):
                known.backend.version_positions([known.first_root])
            assert known.store.version_positions([]) == {}
            return
        first = known.store.version_position(known.first_root)
        assert first is not None and first == known.backend.version_position(known.first_root)
        assert known.store.read_positions([first]).topics == [ENTITY_VERSION]
        many = known.store.version_positions([known.first_root, known.grade, uuid.uuid4()])
        assert set(many) == {known.first_root, known.grade} and many[known.first_root] == first
        assert known.backend.version_positions([known.grade]) == {known.grade: many[known.grade]}
        assert known.store.version_position(uuid.uuid4()) is None
        assert known.store.version_positions([]) == {}
        assert known.store.children_of(known.first_root) == (known.grade,)
        assert known.store.children_of(uuid.uuid4()) == ()

    def test_tree_root(self, known: Known) -> None:
        """The latest stored tree holding a version: the grade's first version is in the bumped tree too."""
        if not has_index(known):
            with pytest.raises(StoreError):
                known.store.tree_root(known.grade)
            return
        assert known.store.tree_root(known.first_root) == known.first_root
        assert known.backend.tree_root(known.student.ecs_id) == known.student.ecs_id
        assert known.store.tree_root(known.grade) in {known.first_root, known.student.ecs_id}
        assert known.store.tree_root(uuid.uuid4()) is None

    def test_stream_head_and_stream_heads(self, known: Known) -> None:
        """A stream's last record at or below a position: as of the first version, the first one."""
        lineage = known.student.lineage_id
        if not has_index(known):
            with pytest.raises(StoreError):
                known.store.stream_head(lineage, known.store.head())
            with pytest.raises(StoreError):
                known.backend.stream_heads([lineage], known.store.head())
            assert known.store.stream_heads([], 1) == {}
            return
        head = known.store.head()
        positions = [e.id for e in known.store.read(1, 10_000) if UUID(str(e.originator_id)) == lineage]
        position, version, state = known.store.stream_head(lineage, head)
        assert (position, version) == (positions[-1], 2) and link_hash(bytes(state)) == link_hash(known.store.read_positions([position]).states[0])
        assert known.backend.stream_head(lineage, positions[0])[:2] == (positions[0], 1)
        assert known.store.stream_head(lineage, positions[0] - 1) is None
        heads = known.store.stream_heads([lineage, uuid.uuid4()], head)
        assert list(heads) == [lineage] and heads[lineage][:2] == (positions[-1], 2)
        assert known.backend.stream_heads([lineage], positions[0])[lineage][:2] == (positions[0], 1)

    def test_streams_between_and_versions_between(self, known: Known) -> None:
        """Range scans by id (``streams_with_prefix``, ``versions_with_prefix``): memory walks its log instead."""
        lineage = known.student.lineage_id
        found = known.store.streams_with_prefix(lineage.hex[:8])
        assert lineage in {s for s, _ in found}
        last = max(e.id for e in known.store.read(1, 10_000) if UUID(str(e.originator_id)) == lineage)
        low, high = UUID(lineage.hex[:8].ljust(32, "0")), UUID(lineage.hex[:8].ljust(32, "f"))
        by_backend = dict(known.backend.streams_between(low, high, 11))
        if known.store.kind != "memory":  # memory lists each stream's first record
            assert by_backend[lineage] == last
        assert known.backend.streams_between(high, high, 11) == []
        versions = known.store.versions_with_prefix(known.first_root.hex[:6])
        assert known.first_root in {e for e, _ in versions}
        vlow, vhigh = UUID(known.grade.hex[:6].ljust(32, "0")), UUID(known.grade.hex[:6].ljust(32, "f"))
        assert known.grade in {e for e, _ in known.backend.versions_between(vlow, vhigh, 11)}
        assert known.store.versions_with_prefix(uuid.uuid4().hex, 11) == []

    def test_lineage_entries(self, known: Known) -> None:
        """(ecs_id, version, position) of each version of a lineage, oldest first."""
        lineage = known.student.lineage_id
        if not has_index(known):
            with pytest.raises(StoreError):
                known.store.lineage_entries(lineage)
            return
        entries = known.store.lineage_entries(lineage)
        assert [(e, v) for e, v, _ in entries] == [(known.first_root, 1), (known.student.ecs_id, 2)]
        assert known.backend.lineage_entries(lineage) == entries
        assert known.store.lineage_entries(uuid.uuid4()) == []

    def test_erasure_entries_and_erasure_position(self, known: Known) -> None:
        """The erased lineage's ``entity.erased`` position; none for the student."""
        if not has_index(known):
            with pytest.raises(StoreError):
                known.store.erasure_position(known.patient_lineage)
            with pytest.raises(StoreError):
                known.backend.erasure_entries(0)
            return
        assert known.store.erasure_entries() == {known.patient_lineage: known.erased_at}
        assert known.backend.erasure_entries(known.erased_at) == {}
        assert known.store.erasure_position(known.patient_lineage) == known.erased_at
        assert known.backend.erasure_position(known.student.lineage_id) is None

    def test_memo_lookup(self, known: Known) -> None:
        """The memo row of the bump's cache key joined with its record; None for an unknown key."""
        if not has_index(known):
            with pytest.raises(StoreError):
                known.store.memo_lookup("00" * 32)
            return
        (key, execution_id, position) = known.store.stored_index().memos[0]
        row = known.store.memo_lookup(key.hex())
        assert row is not None and row[0] == execution_id and row[1] == position
        assert UUID(str(row[2])) == execution_id and row[4] == known.store.read_positions([position]).topics[0]
        assert known.backend.memo_lookup(key)[:2] == (execution_id, position)
        assert known.store.memo_lookup("00" * 32) is None

    def test_secret(self, known: Known) -> None:
        """A writable open gives the store a 32-byte analytics secret, the same on every read. An unknown
        name is None on SQLite and PostgreSQL; ``memory://`` makes any secret on first use (it dies with the store)."""
        first = known.store.secret(ANALYTICS_SECRET)
        assert isinstance(first, bytes) and len(first) == 32
        assert known.store.secret(ANALYTICS_SECRET) == first == known.backend.secret(ANALYTICS_SECRET)
        other = known.store.secret("no such secret")
        assert other is None if known.store.kind != "memory" else (other is not None and other != first)

    def test_hold_follower(self, known: Known) -> None:
        """One holder per name: a second hold is refused until the first is released; other names are free."""
        release = known.store.hold_follower("contract-follower")
        try:
            with pytest.raises(FollowerHeldError):
                known.store.hold_follower("contract-follower")
            known.store.hold_follower("another-follower")()
            if known.store.kind == "memory":  # one process: the backend answers None while held
                assert known.backend.hold_follower("contract-follower") is None
        finally:
            release()
        known.store.hold_follower("contract-follower")()

    def test_tree(self, known: Known) -> None:
        """The Merkle tree over the seals: its head covers every record, its root is RFC 9162's over them."""
        page = known.store.read_columns(1, 100_000)
        head = known.store.tree.head()
        assert head.size == len(page.positions) and head.position == page.positions[-1] == known.store.head()
        assert head.root == root_of([leaf_hash(seal_of(state)) for state in page.states])

    # ------------------------------------------------------------ the rest
    def test_kind_spec_url_create_recorder_and_keys(self, known: Known) -> None:
        """The store says what it opened; the recorder is the backend's; the key table holds a key
        for the patient until its erasure removed it."""
        assert known.store.kind == known.store.spec.kind and known.store.url == known.led.url
        assert known.store.create is True
        assert known.store.recorder is known.backend.recorder
        assert known.store.recorder.max_notification_id() == known.store.head()
        assert known.backend.key_table.fetch(known.patient_lineage) is None  # erased: no key left
        assert known.store.keys is not None

    def test_listen_only_on_postgresql(self, known: Known) -> None:
        """PostgreSQL gives a waiter woken by another connection's append; the others return None."""
        waiter = known.store.listen()
        if known.store.kind != "postgresql":
            assert waiter is None and known.backend.listen() is None
            return
        try:
            other = EventStore(known.store.url)
            try:
                other.append([note(uuid.uuid4())])
            finally:
                other.close()
            assert waiter.wait(60.0) is True  # the NOTIFY arrives on commit: no timing involved
        finally:
            waiter.close()

    def test_is_damaged(self, known: Known) -> None:
        """Only SQLite's corrupt / not-a-database codes count as a damaged file."""
        assert known.backend.is_damaged(None) is False
        assert known.backend.is_damaged(RuntimeError("x")) is False
        if known.store.kind == "sqlite":
            import sqlite3

            damaged = sqlite3.DatabaseError("file is not a database")
            damaged.sqlite_errorcode = 26  # type: ignore[attr-defined]
            assert known.backend.is_damaged(damaged) is True

    def test_close_twice_does_nothing_the_second_time(self, store_url: str) -> None:
        """``close`` (store and backend) releases connections; a second call does nothing."""
        store = EventStore(store_url)
        store.append([note(uuid.uuid4())])
        store.close()
        store.close()
        store._backend.close()


# ---------------------------------------------------------------- completeness
def protocol_members(protocol: type) -> set[str]:
    """The methods and attributes a Protocol declares (its own, not ``object``'s or ``Protocol``'s)."""
    names = {n for n in vars(protocol) if not n.startswith("_")}
    names |= set(getattr(protocol, "__annotations__", {}))
    return names


def backend_calls(cls: type) -> set[str]:
    """Every ``self._backend.<name>`` a class's source reaches for."""
    tree = ast.parse(inspect.getsource(cls))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_backend"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }


def public_members(cls: type) -> set[str]:
    """``EventStore``'s public methods and properties, and the attributes its ``__init__`` sets."""
    names = {n for n in vars(cls) if not n.startswith("_")}
    init = ast.parse(inspect.getsource(cls.__init__).lstrip())  # type: ignore[misc]
    for node in ast.walk(init):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            if isinstance(node.ctx, ast.Store) and not node.attr.startswith("_"):
                names.add(node.attr)
    return names


def named_in(source: str, class_name: str) -> set[str]:
    """The attribute names a test class reads or calls (``x.name``): naming one in prose does not count."""
    (cls,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == class_name]
    return {node.attr for node in ast.walk(cls) if isinstance(node, ast.Attribute)}


class TestContractIsComplete:
    """A method added to the store must come with a contract test."""

    def test_every_backend_and_event_store_member_is_exercised(self) -> None:
        """Every protocol member, backend method ``EventStore`` calls and public ``EventStore`` member
        is read or called in ``TestStoreContract``."""
        wanted = protocol_members(StoreBackend) | backend_calls(EventStore) | public_members(EventStore)
        assert {"append", "read_rows", "checkpoint", "index_dump", "read_stream"} <= wanted  # it read them
        missing = sorted(wanted - named_in(HERE.read_text(), "TestStoreContract"))
        assert missing == [], f"store methods no contract test exercises: {missing}"

    def test_the_check_finds_a_method_no_test_names(self) -> None:
        """The check itself can fail: a protocol with a method the test class never reaches."""

        class Wider(StoreBackend):  # type: ignore[misc]
            def vanish(self) -> None: ...

        source = "class TestStoreContract:\n    def test_x(self, b):\n        b.append([])\n"
        assert protocol_members(Wider) - named_in(source, "TestStoreContract") >= {"vanish"}
        assert "append" in named_in(source, "TestStoreContract")

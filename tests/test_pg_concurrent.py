"""PostgreSQL writers without a table lock (``ledger.store.pg_append``): the high-water mark and checkpoints.

Writers take positions from the sequence and commit in any order. These tests hold the
promises that replace the table lock's: a reader never sees a position before every lower
one is final (committed or rolled back for good); the whole-log chain, now checkpoint rows,
catches a record removed, inserted or replaced inside a checkpointed range and an edited or
removed checkpoint row; the SQL checkpoint hash is the Python one; an older library cannot
write seal v2 records into such a log.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger.store.postgres as pg_module
from ledger import Ledger
from ledger.errors import ConcurrencyError, StoreError
from ledger.events.bodies import ENTITY_VERSION
from ledger.events.checkpoint import CheckpointHash
from ledger.events.seal import NewEvent, check_seal
from ledger.store.base import EventStore
from ledger.store.pg_append import LIVE_ROW, lock_keys

from .conftest import PG_BASE, requires_pg
from .models import Student, student

pytestmark = requires_pg


def _schema(url: str) -> str:
    return url.split("schema=")[1]


def _raw(url: str) -> psycopg.Connection:
    return psycopg.connect(url.split("?")[0], autocommit=True)


def _event(stream: uuid.UUID | None = None, version: int = 1, prev: str | None = None) -> NewEvent:
    return NewEvent(stream or uuid.uuid4(), version, "test.event", orjson.dumps({"n": str(uuid.uuid4())}), prev)


@pytest.fixture
def led(pg_url: str) -> Iterator[Ledger]:
    with Ledger(pg_url) as ledger_:
        yield ledger_


class TestHighWaterMark:
    def test_a_reader_never_sees_a_position_before_a_lower_one_is_final(self, led: Ledger) -> None:
        """Writer A takes position p and stops before its commit; writer B takes p+1 and commits.
        A reader asking meanwhile waits (it must not hand out p+1 and later skip p); once A
        commits, it reads p then p+1."""
        store = led.store
        base = store.head()
        a_inside = threading.Event()
        a_may_commit = threading.Event()
        real = pg_module.seal_at

        def slow_for_a(events, positions, *link):  # runs inside A's transaction, after the insert
            real(events, positions, *link)
            if threading.current_thread().name == "writer-a":
                a_inside.set()
                assert a_may_commit.wait(120)

        pg_module.seal_at = slow_for_a
        try:
            a_positions: list[int] = []
            a = threading.Thread(target=lambda: a_positions.extend(store.append([_event()])), name="writer-a")
            a.start()
            assert a_inside.wait(120)
            # B: another writer (this store's own appends queue behind A's); a bare store, since
            # opening a Ledger reads the high-water mark, which waits for A
            other = EventStore(led.url, create=False)
            try:
                (b_position,) = other.append([_event()])  # B commits while A is open
            finally:
                other._backend._appended = 0  # no closing checkpoint: it would wait for A too
                other.close()
            seen: list[int] = []
            reader = threading.Thread(target=lambda: seen.extend(store.read_columns(base + 1, 100).positions))
            reader.start()
            reader.join(0.5)
            assert reader.is_alive(), "the reader answered while a lower position was still in flight"
            a_may_commit.set()
            a.join(120)
            reader.join(120)
        finally:
            pg_module.seal_at = real
            a_may_commit.set()
        assert a_positions and a_positions[0] < b_position
        assert seen == [a_positions[0], b_position]
        assert led.verify().ok

    def test_a_rolled_back_batch_leaves_a_hole_readers_pass(self, led: Ledger, pg_url: str) -> None:
        """A position taken by a batch that rolls back is a hole below the mark: pages skip it,
        verify accepts it, and a checkpoint records it."""
        store = led.store
        first = _event()
        store.append([first])
        with pytest.raises(ConcurrencyError):  # its insert fails after it took a position
            store.append([_event(first.stream_id, 1)])
        hole = store.head()
        after = store.append([_event()])
        assert after[0] > hole
        page = store.read_columns(1, 100)
        assert hole not in page.positions and after[0] in page.positions
        assert store.checkpoint() is not None
        (checkpoint,) = store.checkpoints()
        assert hole in checkpoint[4]
        report = led.verify()
        assert report.ok, report.problems
        assert report.checkpointed_to == store.head() and report.unchecked_tail == 0

    def test_head_waits_for_a_writer_holding_a_position(self, led: Ledger, pg_url: str) -> None:
        store = led.store
        store.append([_event()])
        with _raw(pg_url) as conn:
            table = f'"{_schema(pg_url)}".stored_events'
            write_lock = lock_keys(_schema(pg_url), "stored_events")[0]
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (write_lock,))
            taken = conn.execute("SELECT nextval(pg_get_serial_sequence(%s, 'notification_id'))", (table,)).fetchone()[0]
            heads: list[int] = []
            reader = threading.Thread(target=lambda: heads.append(store.head()))
            reader.start()
            reader.join(0.5)
            assert reader.is_alive() and not heads
            conn.execute("ROLLBACK")
            reader.join(120)
        assert heads == [taken]  # final now: a hole


class TestCheckpoints:
    def test_writers_checkpoint_every_so_many_positions_and_on_close(self, pg_url: str, monkeypatch) -> None:
        monkeypatch.setattr(pg_module, "CHECKPOINT_EVERY", 5)
        monkeypatch.setattr(pg_module, "CHECKPOINT_SECONDS", 3600.0)
        with Ledger(pg_url) as led:
            for _ in range(4):
                led.store.append([_event(), _event()])
            rows = led.store.checkpoints()
            assert rows and rows[0][0] == 0 and all(hi - lo >= 5 for lo, hi, *_ in rows)
            led.store.append([_event()])
        with Ledger(pg_url) as again:
            rows = again.store.checkpoints()
            assert rows[-1][1] == again.store.head()  # the closing writer checkpointed its tail
            assert [lo for lo, *_ in rows[1:]] == [hi for _, hi, *_ in rows[:-1]]
            report = again.verify()
            assert report.ok and report.unchecked_tail == 0

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(states=st.lists(st.one_of(st.binary(max_size=80), st.none(), st.just(b'{"a":1,"hash":"' + b"ab" * 32 + b'"}')), min_size=1, max_size=6))
    def test_the_server_hashes_a_range_as_checkpoint_hash_does(self, led: Ledger, states: list[bytes | None]) -> None:
        """Whatever the records hold (a stated hash, bytes that state none, NULL), the SQL hash of
        a range is ``CheckpointHash`` over the same records."""
        store = led.store
        schema = _schema(led.url)
        with _raw(led.url) as conn:
            table = f'"{schema}".stored_events'
            for state in states:  # raw rows at positions the sequence hands out, as a writer would
                conn.execute(
                    f"INSERT INTO {table} (originator_id, originator_version, topic, state, notification_id) "
                    "VALUES (%s, 1, 't', %s, nextval(pg_get_serial_sequence(%s, 'notification_id')))",
                    (uuid.uuid4(), state, table),
                )
        rows_before = store.checkpoints()
        assert store.checkpoint() is not None
        lo, hi, records, stated, _ = store.checkpoints()[-1]
        page = store.read_columns(lo + 1, hi - lo)
        expected = CheckpointHash(rows_before[-1][3] if rows_before else None, lo, hi)
        for position, state in zip(page.positions, page.states):
            expected.add(position, None if state is None else bytes(state))
        assert (records, stated) == (expected.records, expected.hexdigest())
        with _raw(led.url) as conn:  # leave the schema to the next example as writers would
            conn.execute(f'DELETE FROM "{schema}".stored_events WHERE topic = %s', ("t",))
            conn.execute(f'DELETE FROM "{schema}".ledger_checkpoints')


@pytest.fixture
def checkpointed(pg_url: str) -> Iterator[tuple[Ledger, psycopg.Connection, str]]:
    """A ledger of a few lineages and executions, checkpointed, and a raw connection to tamper with."""
    with Ledger(pg_url) as led:
        for i in range(4):
            s = student(n=2)
            led.registry.register_entity(s)
            s.gpa = float(i)
            led.registry.version_entity(s)
        led.store.checkpoint()
        assert led.verify().ok
        with _raw(pg_url) as conn:
            yield led, conn, f'"{_schema(pg_url)}"'


class TestTamperingWithCheckpointedRecords:
    def test_a_removed_stream_last_record_is_named(self, checkpointed) -> None:
        """The record no stream chain covers (a stream's last) is found at its own position."""
        led, conn, schema = checkpointed
        (last,) = conn.execute(f"SELECT max(notification_id) FROM {schema}.stored_events").fetchone()
        conn.execute(f"DELETE FROM {schema}.stored_events WHERE notification_id = %s", (last,))
        report = led.verify()
        assert not report.ok and report.first_bad_position == last, report.problems
        assert "missing" in report.problems[0]

    def test_a_record_inserted_into_a_hole_is_found(self, checkpointed) -> None:
        led, conn, schema = checkpointed
        store = led.store
        first = _event()
        store.append([first])
        with pytest.raises(ConcurrencyError):  # a batch refused after taking a position: a hole
            store.append([_event(first.stream_id, 1)])
        hole = store.head()
        store.append([_event()])
        store.checkpoint()
        assert led.verify().ok
        forged = _event()
        pg_module.seal_at([forged], [hole])
        conn.execute(
            f"INSERT INTO {schema}.stored_events (originator_id, originator_version, topic, state, notification_id) "
            "VALUES (%s, 1, %s, %s, %s)",
            (forged.stream_id, forged.topic, forged.state, hole),
        )
        report = led.verify()
        assert not report.ok and report.first_bad_position == hole, report.problems

    def test_a_replaced_record_with_a_valid_seal_is_found(self, checkpointed) -> None:
        """A record rewritten and sealed again (its stream's last, so no chain notices) changes its checkpoint."""
        led, conn, schema = checkpointed
        position, stream, version, topic, state = conn.execute(
            f"SELECT notification_id, originator_id, originator_version, topic, state FROM {schema}.stored_events "
            "ORDER BY notification_id DESC LIMIT 1"
        ).fetchone()
        body = orjson.loads(bytes(state))
        prev = body.pop("prev_hash")
        link = check_seal(topic, stream, version, bytes(state)).session  # sealed again in its place in its session
        for key in ("session", "session_after", "session_prev", "checkpoint", "position", "hash"):
            body.pop(key)
        body["forged"] = True
        forged = NewEvent(stream, version, topic, orjson.dumps(body), prev)
        pg_module.seal_at([forged], [position], link)
        assert check_seal(topic, stream, version, forged.state).intact
        conn.execute(f"UPDATE {schema}.stored_events SET state = %s WHERE notification_id = %s", (forged.state, position))
        report = led.verify()
        assert not report.ok and "differ from their checkpoint" in " ".join(report.problems), report.problems

    def test_a_removed_or_edited_checkpoint_row_is_found(self, checkpointed) -> None:
        led, conn, schema = checkpointed
        store = led.store
        for _ in range(2):
            store.append([_event()])
            store.checkpoint()
        rows = store.checkpoints()
        assert len(rows) == 3
        conn.execute(f"UPDATE {schema}.ledger_checkpoints SET hash = %s WHERE hi = %s", ("0" * 64, rows[0][1]))
        assert not led.verify().ok  # the row itself, and the next one chained to the true hash
        conn.execute(f"UPDATE {schema}.ledger_checkpoints SET hash = %s WHERE hi = %s", (rows[0][3], rows[0][1]))
        assert led.verify().ok
        conn.execute(f"DELETE FROM {schema}.ledger_checkpoints WHERE hi = %s", (rows[1][1],))
        report = led.verify()
        assert not report.ok and "checkpoint row was removed" in " ".join(report.problems), report.problems

    def test_a_record_past_every_position_given_out_is_found(self, checkpointed) -> None:
        led, conn, schema = checkpointed
        head = led.store.head()
        forged = _event()
        pg_module.seal_at([forged], [head + 5])
        conn.execute(
            f"INSERT INTO {schema}.stored_events (originator_id, originator_version, topic, state, notification_id) "
            "VALUES (%s, 1, %s, %s, %s)",
            (forged.stream_id, forged.topic, forged.state, head + 5),
        )
        report = led.verify()
        assert not report.ok and report.first_bad_position == head + 5, report.problems


class TestUncheckpointedTail:
    def test_the_tail_rests_on_session_and_stream_chains_and_a_digest(self, pg_url: str, monkeypatch) -> None:
        """After the last checkpoint, a removed record is named by the next record of its writer
        session; documented limit: a session's last record (here the log's newest) removed passes
        verify() alone (as a truncated tail does); the report says how many records the tail
        holds, and a digest finds it."""
        monkeypatch.setattr(pg_module, "CHECKPOINT_SECONDS", 3600.0)
        with Ledger(pg_url) as led:
            led.store.append([_event()])
            led.store.checkpoint()
            positions = led.store.append([_event(), _event()])
            report = led.verify()
            assert report.ok and report.checkpointed_to == positions[0] - 1 and report.unchecked_tail == 2
            digest = led.digest()
            with _raw(pg_url) as conn:
                (tiles,) = conn.execute(f'SELECT count(*) FROM "{_schema(pg_url)}".ledger_tree_tiles').fetchone()
                conn.execute(f'DELETE FROM "{_schema(pg_url)}".stored_events WHERE notification_id = %s', (positions[0],))
                if tiles:  # the stored Merkle tree would notice: forget it, as one who removes records can
                    conn.execute(f'DELETE FROM "{_schema(pg_url)}".ledger_tree_tiles')
                    conn.execute(f'UPDATE "{_schema(pg_url)}".ledger_tree_state SET size = 0, position = 0')
            report = led.verify()  # the batch's second record is the session's next: it names the first
            assert not report.ok and report.first_bad_position == positions[0], report.problems
            with _raw(pg_url) as conn:
                conn.execute(f'DELETE FROM "{_schema(pg_url)}".stored_events WHERE notification_id = %s', (positions[1],))
            assert led.verify().ok
            assert not led.verify(digest).ok


class TestOlderLibraries:
    def test_the_old_append_function_refuses(self, led: Ledger, pg_url: str) -> None:
        """An older library calls ledger_append_v1 (seal v2 under the table lock): it must not
        write into a log whose writers take positions concurrently."""
        with _raw(pg_url) as conn, pytest.raises(psycopg.Error, match="seal v3") as caught:
            conn.execute(
                f'SELECT * FROM "{_schema(pg_url)}".ledger_append_v1(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)',
                ([uuid.uuid4()], [1], ["t"], [b"{}"], [None], [0], [], [], [], [], [], [], []),
            )
        assert caught.value.sqlstate == "LDG03"

    def test_new_records_are_sealed_v4(self, led: Ledger) -> None:
        led.registry.register_entity(Student(name="x"))
        page = led.store.read_columns(1, 100)
        assert {
            check_seal(t, uuid.UUID(s), v, bytes(b)).version for s, v, t, b in zip(page.stream_ids, page.versions, page.topics, page.states)
        } == {4}
        assert ENTITY_VERSION in page.topics

    def test_the_previous_append_function_refuses(self, led: Ledger, pg_url: str) -> None:
        """The previous library calls ledger_append_v2 (seal v3, no writer session): refused."""
        with _raw(pg_url) as conn, pytest.raises(psycopg.Error, match="seal v4") as caught:
            conn.execute(
                f'SELECT * FROM "{_schema(pg_url)}".ledger_append_v2(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)',
                ([uuid.uuid4()], [1], ["t"], [b"{}"], [None], [0], [], [], [], [], [], [], []),
            )
        assert caught.value.sqlstate == "LDG03"


def test_a_store_error_names_the_url_when_a_checkpoint_fails(pg_url: str) -> None:
    with Ledger(pg_url) as led:
        led.store.append([_event()])
        with _raw(pg_url) as conn:
            conn.execute(f'DROP TABLE "{_schema(pg_url)}".ledger_checkpoints')
        with pytest.raises(StoreError, match="checkpoint"):
            led.store.checkpoint()


class TestUpgrade:
    def test_a_schema_an_older_library_wrote_is_upgraded_on_a_writable_open(self, pg_url: str) -> None:
        """Seal v2 records (positions given under the table lock, the sequence left behind) are
        followed by v3 ones: the upgrade moves the sequence past them, appends index themselves
        from there, the first checkpoint covers the old part too, and everything verifies."""
        schema = _schema(pg_url)
        with Ledger(pg_url):
            pass
        with _raw(pg_url) as conn:  # what an older library's schema lacks
            for fn in ("ledger_append_v3", "ledger_append_v2", "ledger_hwm_v1", "ledger_checkpoint_v1"):
                conn.execute(f'DROP FUNCTION "{schema}".{fn}')
            conn.execute(f'DROP TABLE "{schema}".ledger_checkpoints')
            conn.execute(f'DELETE FROM "{schema}".ledger_index_tracking WHERE name = %s', (LIVE_ROW,))
        with Ledger(pg_url, create=False) as old:  # writes the old way: seal v2, explicit positions
            for _ in range(3):
                old.registry.register_entity(student(n=1))
            old_head = old.store.head()
        with Ledger(pg_url) as led:
            for _ in range(3):
                led.registry.register_entity(student(n=1))
            page = led.store.read_columns(1, 1000)
            seals = [check_seal(t, uuid.UUID(s), v, bytes(b)) for s, v, t, b in zip(page.stream_ids, page.versions, page.topics, page.states)]
            assert [c.version for c, p in zip(seals, page.positions) if p <= old_head] == [2] * old_head
            assert {c.version for c, p in zip(seals, page.positions) if p > old_head} == {4}
            assert page.positions == list(range(1, len(page.positions) + 1))
            led.store.checkpoint()
            assert led.store.checkpoints()[0][:2] == (0, led.store.head())
            report = led.verify()
            assert report.ok, report.problems
            assert led.store.stored_index() == led.store.rebuilt_index()
        with Ledger(pg_url, replay=True) as replayed:
            assert replayed.verify().ok


    def test_seal_v3_records_of_the_previous_library_are_followed_by_v4_ones(self, pg_url: str) -> None:
        """A log the previous library wrote (seal v3, no writer session) verifies as before once v4
        records follow; a v3 record after them is reported (only a rewrite would put it there)."""
        schema = _schema(pg_url)
        table = f'"{schema}".stored_events'

        def v3_record() -> NewEvent:  # as ledger_append_v2 wrote it: the next position, no session
            e = _event()
            with _raw(pg_url) as conn:
                (position,) = conn.execute("SELECT nextval(pg_get_serial_sequence(%s, 'notification_id'))", (table,)).fetchone()
                pg_module.seal_at([e], [position])
                conn.execute(
                    f"INSERT INTO {table} (originator_id, originator_version, topic, state, notification_id) VALUES (%s, 1, %s, %s, %s)",
                    (e.stream_id, e.topic, e.state, position),
                )
            return e

        with Ledger(pg_url) as led:
            v3_record()
            v3_record()
            led.store.append([_event()])
            led.store.checkpoint()
            assert led.verify().ok
            v3_record()
            report = led.verify()
            assert not report.ok and "v3 seal after records sealed v4" in report.problems[0], report.problems


@settings(max_examples=80, deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)), max_size=5),
    blobs=st.lists(st.binary(max_size=40), max_size=4),
    ints=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
    uuids=st.lists(st.one_of(st.none(), st.uuids()), max_size=4),
)
def test_array_literals_carry_any_value(texts: list[str | None], blobs: list[bytes], ints: list[int], uuids: list[uuid.UUID | None]) -> None:
    """The append's parameters are written as array literals (``pg_params``): whatever a topic,
    body, hash or id holds, the server reads back exactly the values."""
    from ledger.store.pg_params import bytea_array, int_array, text_array, uuid_array

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        row = conn.execute(
            "SELECT %s::text[], %s::bytea[], %s::bigint[], %s::uuid[]",
            (text_array(texts), bytea_array(blobs), int_array(ints), uuid_array(uuids)),
        ).fetchone()
    assert (row[0], [bytes(b) for b in row[1]], row[2], row[3]) == (texts, blobs, ints, uuids)


class TestLocksNeverOutliveTheirCaller:
    def test_a_high_water_mark_wait_cut_short_holds_nothing(self, led: Ledger, pg_url: str) -> None:
        """A reader whose wait is cancelled (statement_timeout) must not keep the write lock:
        a session holding it would stop every writer."""
        schema = _schema(pg_url)
        with _raw(pg_url) as writer, _raw(pg_url) as reader:
            write_lock = lock_keys(schema, "stored_events")[0]
            writer.execute("BEGIN")
            writer.execute("SELECT pg_advisory_xact_lock_shared(%s)", (write_lock,))
            reader.execute("SET statement_timeout = 200")
            with pytest.raises(psycopg.errors.QueryCanceled):
                reader.execute(f'SELECT "{schema}".ledger_hwm_v1()')
            writer.execute("COMMIT")
            held = reader.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
            ).fetchone()[0]
            assert held == 0
        assert led.store.append([_event()])  # writers go on

    def test_a_failed_checkpoint_does_not_fail_the_committed_batch(self, pg_url: str, monkeypatch, caplog) -> None:
        monkeypatch.setattr(pg_module, "CHECKPOINT_EVERY", 1)
        with Ledger(pg_url) as led:
            with _raw(pg_url) as conn:
                conn.execute(f'DROP TABLE "{_schema(pg_url)}".ledger_checkpoints')
            with caplog.at_level("WARNING"):
                positions = led.store.append([_event()])
            assert positions and led.store.records_between(0, led.store.head()) == 1
            assert "checkpoint" in caplog.text


def test_ledger_verify_says_how_far_the_checkpoints_reach(pg_url: str, monkeypatch) -> None:
    """``ledger verify`` on PostgreSQL: ok, and the records past the last checkpoint, in text and JSON."""
    import json

    from typer.testing import CliRunner

    from ledger.cli import app

    monkeypatch.setattr(pg_module, "CHECKPOINT_SECONDS", 3600.0)
    with Ledger(pg_url) as led:
        led.store.append([_event()])
        led.store.checkpoint()
        led.store.append([_event(), _event()])
        head = led.store.head()
        led.store._backend._appended = 0  # leave the tail unchecked on close, as a writer still running would
    runner = CliRunner()
    text = runner.invoke(app, ["verify", "--db", pg_url])
    assert text.exit_code == 0, text.output
    assert f"checkpoints chain the log up to position {head - 2}; 2 records after it" in " ".join(text.stdout.split())
    shown = json.loads(runner.invoke(app, ["verify", "--format", "json", "--db", pg_url]).stdout)
    assert shown["ok"] and shown["checkpointed_to"] == head - 2 and shown["unchecked_tail"] == 2


def test_a_writer_stopped_inside_its_transaction_stalls_readers_only_briefly(pg_url: str, monkeypatch) -> None:
    """A writer whose process stops between the append function and its commit holds the write
    lock; the server ends its session after ``IDLE_IN_TRANSACTION_S``: readers go on, its batch
    leaves a hole, and the stopped writer hears that nothing was written."""
    monkeypatch.setattr(pg_module, "IDLE_IN_TRANSACTION_S", 1.0)
    real = pg_module.seal_at
    with Ledger(pg_url) as led:
        led.store.append([_event()])
        stuck = threading.Event()
        answered = threading.Event()

        def stopped(events, positions, *link):  # type: ignore[no-untyped-def]
            real(events, positions, *link)
            if threading.current_thread().name == "stopped-writer":
                stuck.set()
                # "stopped": idle inside its transaction until the reader has its answer (which
                # needs the server to end this session), however long a busy machine takes
                answered.wait(120)

        monkeypatch.setattr(pg_module, "seal_at", stopped)
        outcome: list[BaseException | list[int]] = []

        def write() -> None:
            try:
                outcome.append(led.store.append([_event()]))
            except BaseException as exc:  # noqa: BLE001 - asserted below
                outcome.append(exc)

        writer = threading.Thread(target=write, name="stopped-writer")
        writer.start()
        assert stuck.wait(120)
        reader = EventStore(led.url, create=False)
        try:
            head = reader.head()  # waits ~1 s, until the server ends the stopped writer's session
        finally:
            answered.set()
            reader.close()
        writer.join(120)
        assert isinstance(outcome[0], BaseException), outcome
        assert led.store.records_between(0, head) == 1  # the stopped batch is a hole
        monkeypatch.setattr(pg_module, "seal_at", real)
        assert led.store.append([_event()])  # the pool gave up the ended connection
        assert led.verify().ok


def test_a_checkpoint_row_claiming_a_huge_range_is_reported_quickly(checkpointed) -> None:
    """An edited checkpoint row may claim positions up to 10^12: verify counts what it cannot
    name instead of walking the range."""
    led, conn, schema = checkpointed
    (hi,) = conn.execute(f"SELECT max(hi) FROM {schema}.ledger_checkpoints").fetchone()
    conn.execute(f"UPDATE {schema}.ledger_checkpoints SET hi = %s WHERE hi = %s", (10**12, hi))
    report = led.verify()
    assert not report.ok
    assert len(report.problems) < 200 and any("more positions" in p for p in report.problems), report.problems[-3:]


def test_no_position_appears_below_a_high_water_mark_already_given(pg_url: str) -> None:
    """Stress: writers (each its own store, so their transactions overlap) append while a reader
    asks for the mark and reads up to it, over and over. No record may ever turn up at or below
    a mark already handed out: such a record would be skipped by every follower."""
    with Ledger(pg_url):
        pass
    reader = EventStore(pg_url, create=False)
    failures: list[str] = []
    marks: list[int] = []
    try:
        with _writers_appending(pg_url, 4):
            seen: set[int] = set()
            # a number of rounds, not a time span: a busy machine makes the test slower, never weaker
            while len(marks) < 40 and not failures:
                mark = reader.head()
                present = set(reader.read_columns(1, 1_000_000, past_head=True).positions)
                late = {p for p in present - seen if marks and p <= marks[-1]}
                if late:
                    failures.append(f"positions {sorted(late)} appeared at or below the mark {marks[-1]} given earlier")
                seen |= {p for p in present if p <= mark}
                marks.append(mark)
    finally:
        reader.close()
    assert not failures, failures[0]
    assert len(marks) == 40 and marks[-1] > marks[0]  # the writers went on while the reader read


@contextmanager
def _writers_appending(url: str, count: int) -> Iterator[None]:
    """``count`` writers, each its own store (so their transactions overlap), appending one event
    per batch in threads until the block ends."""
    stores = [EventStore(url, create=False) for _ in range(count)]
    stop = threading.Event()

    def write(store: EventStore) -> None:
        while not stop.is_set():
            store.append([_event()])

    writers = [threading.Thread(target=write, args=(s,)) for s in stores]
    for w in writers:
        w.start()
    try:
        yield
    finally:
        stop.set()
        for w in writers:
            w.join(120)
        for s in stores:
            s._backend._appended = 0  # no closing checkpoints: the tests make their own
            s.close()


@pytest.fixture(scope="module")
def repeatable_read_base() -> Iterator[str]:
    """A database whose transactions default to REPEATABLE READ (a server setting users choose),
    made for this module and dropped after it: its name is unique, so runs sharing the server
    neither meet nor drop each other's, and none is left behind."""
    name = f"ledger_rr_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_BASE.split("?")[0], autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_isolation = \'repeatable read\'')
    except psycopg.Error as exc:
        pytest.skip(f"cannot make a REPEATABLE READ database on this server: {exc}".splitlines()[0])
    try:
        yield PG_BASE.split("?")[0].rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_BASE.split("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_checkpoints_are_right_whatever_the_default_isolation(repeatable_read_base: str) -> None:
    """Checkpoints made while four writers commit, on a database that defaults to REPEATABLE READ:
    none may list as a hole a position whose record was committed (verify stays ok)."""
    url = f"{repeatable_read_base}?schema=t_{uuid.uuid4().hex[:12]}"
    try:
        with Ledger(url) as led:
            with _writers_appending(url, 4):
                # checkpoints until six were made while the writers commit: a count, not a
                # time span, so a busy machine makes the test slower, never wrong
                made = 0
                for _ in range(100_000):
                    if led.store.checkpoint() is not None:
                        made += 1
                    if made > 5:
                        break
            led.store.checkpoint()
            assert made > 5 and len(led.store.checkpoints()) > 5
            report = led.verify()
            assert report.ok, report.problems[:3]
    finally:
        with _raw(url) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{_schema(url)}" CASCADE')

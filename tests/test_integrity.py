"""verify reports what it finds, in lines, where an edited store used to make it raise."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ledger import EntityRegistry, Ledger
from ledger.cli import app
from ledger.events.seal import check_seal

from .conftest import requires_pg
from .models import Patient, Student
from .tamper import _rows, behind

runner = CliRunner()
LAST_ROWID = 9223372036854775807


def three_students(url: str) -> None:
    with Ledger(url) as led:
        for i in range(3):
            led.registry.register_entity(Student(name=f"s{i}", gpa=1.0))


def one_line_failure(result: Any) -> str:
    """The CLI failed with exit 1 and no traceback; its last line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "OverflowError" not in result.output
    return str(result.output).strip().splitlines()[-1]


class TestLargestRowid:
    @pytest.fixture
    def moved(self, tmp_path: Path) -> str:
        url = f"sqlite:///{tmp_path / 'l.db'}"
        three_students(url)
        behind(url, f"UPDATE stored_events SET rowid = {LAST_ROWID} WHERE rowid = 2")
        return url

    def test_verify_reports_the_moved_record(self, moved: str) -> None:
        """Ledger.verify() returns a report naming the position, not an OverflowError."""
        from projections.audit import verify_url

        report = verify_url(moved)
        assert not report.ok and report.first_bad_position == 2
        assert any(p.startswith(f"position {LAST_ROWID}: ") and "sealed for position 2" in p for p in report.problems)

    @pytest.mark.parametrize("command", [["verify"], ["log"], ["sql", "select count(*) from events"]])
    def test_commands_fail_in_one_line(self, moved: str, command: list[str]) -> None:
        """verify, log and sql: exit 1, one line naming a position."""
        last = one_line_failure(runner.invoke(app, [*command, "--db", moved]))
        assert "position" in last


class TestKeyRowsThatAreNotUUIDs:
    @pytest.mark.parametrize("lineage", ["garbage", 12345, "e78461bc-ff65-4e62-9fa5-83bd314c0fb"])
    def test_an_inserted_key_row_is_reported(self, tmp_path: Path, lineage: Any) -> None:
        """An inserted row (text, an integer, a UUID one digit short) is a problem line naming the row."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as led:
            led.registry.register_entity(Patient(name="Ann"))
        behind(url, "INSERT INTO ledger_keys (lineage_id, key) VALUES (?, x'00')", (lineage,))
        with Ledger(url, create=False) as led:
            report = led.verify()
        assert not report.ok
        assert report.problems == [
            f"key row: 'ledger_keys' holds a row whose lineage_id {str(lineage)!r} (str) is not a UUID: "
            "the key table was edited or a row inserted"
        ]
        assert one_line_failure(runner.invoke(app, ["verify", "--db", url])) == "FAILED: 1 problems"

    def test_an_edited_key_row_is_reported_with_its_missing_key(self, tmp_path: Path) -> None:
        """An edited lineage id: the row is named, and the lineage's key is missing at its position."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as led:
            p = Patient(name="Ann")
            led.registry.register_entity(p)
        behind(url, "UPDATE ledger_keys SET lineage_id = 'edited'")
        with Ledger(url, create=False) as led:
            report = led.verify()
        assert not report.ok and report.first_bad_position == 1
        assert any("'edited'" in line for line in report.problems)
        assert any(line.startswith("position 1: the data key of lineage") for line in report.problems)


# ---------------------------------------------------------------- PostgreSQL: records removed with checkpoints
def pgchk_double(s: Student) -> float:
    return s.gpa * 2


@pytest.fixture
def executions(pg_url: str) -> Iterator[tuple[str, psycopg.Connection, str]]:
    """A PostgreSQL ledger of 6 executions (one checkpoint after the third), a raw connection, its schema."""
    import ledger as ledger_module
    from ledger import CallableRegistry

    CallableRegistry.register("pgchk_double")(pgchk_double)
    try:
        led = ledger_module.connect(pg_url)
        try:
            for i in range(6):
                s = Student(name=f"s{i}", gpa=float(i))
                led.registry.register_entity(s)
                CallableRegistry.execute("pgchk_double", s=s)
                if i == 2:
                    led.store.checkpoint()
        finally:
            led.close()  # its close checkpoints the rest
        with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
            yield pg_url, conn, f'"{pg_url.split("schema=")[1]}"'
    finally:
        CallableRegistry.unregister("pgchk_double")


def completed_positions(conn: psycopg.Connection, schema: str) -> list[int]:
    return [p for (p,) in conn.execute(
        f"SELECT notification_id FROM {schema}.stored_events WHERE topic = 'execution.completed' ORDER BY notification_id"
    ).fetchall()]


def forget_tree(conn: psycopg.Connection, schema: str) -> None:
    """The Merkle tree's tiles are derived state too: drop them, so only the records and checkpoints speak."""
    conn.execute(f"DELETE FROM {schema}.ledger_tree_tiles")
    conn.execute(f"UPDATE {schema}.ledger_tree_state SET size = 0, position = 0")


def pg_verify(url: str, head: Any = None) -> Any:
    with Ledger(url, create=False) as led:
        return led.verify(head=head)


@requires_pg
class TestRecordsRemovedWithCheckpoints:
    def test_all_checkpoints_and_a_mid_log_completion_removed_is_named(self, executions) -> None:
        url, conn, schema = executions
        assert pg_verify(url).ok
        removed = completed_positions(conn, schema)[2]
        conn.execute(f"DELETE FROM {schema}.ledger_checkpoints")
        conn.execute(f"DELETE FROM {schema}.stored_events WHERE notification_id = %s", (removed,))
        forget_tree(conn, schema)
        report = pg_verify(url)
        assert not report.ok and report.first_bad_position == removed, report.problems
        assert any(p.startswith(f"position {removed}: ") for p in report.problems)

    def test_the_last_checkpoint_and_a_record_it_covered_removed_is_named(self, executions, monkeypatch) -> None:
        """The removed record was its session's last (the closing writer's): the later writer's records
        name the checkpoint that covered it, and with that row gone its empty position is named."""
        import ledger.store.postgres as pg_module

        url, conn, schema = executions
        monkeypatch.setattr(pg_module, "CHECKPOINT_SECONDS", 3600.0)
        with Ledger(url) as led:  # a later writer: its records follow the last checkpoint, none after them
            led.registry.register_entity(Student(name="later"))
            led.store._backend._appended = 0  # no closing checkpoint
        (last_hi,) = conn.execute(f"SELECT max(hi) FROM {schema}.ledger_checkpoints").fetchone()
        removed = completed_positions(conn, schema)[-1]  # the last execution's, covered by that checkpoint
        assert removed <= last_hi
        conn.execute(f"DELETE FROM {schema}.ledger_checkpoints WHERE hi = %s", (last_hi,))
        conn.execute(f"DELETE FROM {schema}.stored_events WHERE notification_id = %s", (removed,))
        forget_tree(conn, schema)
        report = pg_verify(url)
        assert not report.ok and report.first_bad_position == removed, report.problems

    def test_a_rolled_back_batch_is_a_hole_not_a_break_in_its_session(self, executions) -> None:
        """Legitimate holes stay legitimate: a batch that rolled back leaves a hole, and the next
        batch on the same connection chains to the session's last committed record."""
        url, conn, schema = executions
        from ledger.events.seal import NewEvent

        from psycopg.rows import dict_row

        with Ledger(url) as led, psycopg.connect(url.split("?")[0], autocommit=True, row_factory=dict_row) as one:
            backend = led.store._backend

            def append(events: list[NewEvent]) -> list[int]:  # through the function, on this one connection
                with one.transaction():
                    return backend._call_in(one, events, backend._server_call(events), None)[0]

            first = [NewEvent(uuid.uuid4(), 1, "test.event", b'{"n":1}', None)]
            (at,) = append(first)
            with pytest.raises(psycopg.errors.UniqueViolation):  # takes a position, then rolls back: a hole
                append([NewEvent(first[0].stream_id, 1, "test.event", b'{"n":2}', None)])
            third = [NewEvent(first[0].stream_id, 2, "test.event", b'{"n":3}', first[0].hash)]
            (after,) = append(third)
            hole = at + 1
            assert after == hole + 1
            links = [check_seal(e.topic, e.stream_id, e.version, e.state).session for e in (first[0], third[0])]
            assert links[0] is not None and links[1] is not None
            assert links[1].session == links[0].session and (links[1].after, links[1].prev) == (at, first[0].hash)
        report = pg_verify(url)
        assert report.ok, report.problems
        assert hole not in [p for p, in conn.execute(f"SELECT notification_id FROM {schema}.stored_events").fetchall()]

    def test_a_removed_record_mid_session_is_named_with_every_checkpoint_intact_or_not(self, executions) -> None:
        """Not the last of its session: the session's next record names it, whatever else was removed."""
        url, conn, schema = executions
        first = conn.execute(f"SELECT min(notification_id) FROM {schema}.stored_events").fetchone()[0]
        conn.execute(f"DELETE FROM {schema}.ledger_checkpoints")
        conn.execute(f"DELETE FROM {schema}.stored_events WHERE notification_id = %s", (first,))
        forget_tree(conn, schema)
        report = pg_verify(url)
        assert not report.ok and report.first_bad_position == first
        assert f"position {first}: the record is missing: the record at position" in report.problems[0]

    def test_the_session_last_record_of_a_closed_writer_needs_a_head(self, executions) -> None:
        """What stays undetectable without something kept outside: the last record of a writer
        session that nothing later vouches for, removed with the checkpoint rows no record names
        (and the tree's tiles). A tree head kept outside catches it."""
        url, conn, schema = executions
        with Ledger(url, create=False) as led:
            head = led.tree_head()
        removed = completed_positions(conn, schema)[-1]
        last_record = conn.execute(f"SELECT max(notification_id) FROM {schema}.stored_events").fetchone()[0]
        assert removed == last_record  # the closing writer's last record, the log's newest
        (last_hi,) = conn.execute(f"SELECT max(hi) FROM {schema}.ledger_checkpoints").fetchone()
        conn.execute(f"DELETE FROM {schema}.ledger_checkpoints WHERE hi = %s", (last_hi,))
        conn.execute(f"DELETE FROM {schema}.stored_events WHERE notification_id = %s", (removed,))
        forget_tree(conn, schema)
        assert pg_verify(url).ok  # documented: detectable only against a head or a digest
        report = pg_verify(url, head=head)
        assert not report.ok


class TestBulkSealPathReportsAsRecordByRecord:
    """``verify`` checks a page's seals in bulk (``seal.unsealed``) and reads only the records it
    cannot vouch for the long way (``check_seal``). For random edits of a small log, the report is
    the one the record-by-record path gives (every record sent to ``check_seal``), line for line."""

    _EDITS = st.lists(
        st.tuples(
            st.sampled_from(["delete", "flip", "truncate", "topic", "version", "stream", "upper", "move", "swap", "garbage"]),
            st.integers(1, 9),
            st.integers(0, 10_000),
        ),
        min_size=1,
        max_size=3,
    )

    @pytest.fixture(scope="class")
    @classmethod
    def template(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        path = tmp_path_factory.mktemp("bulk") / "template.db"
        with Ledger(f"sqlite:///{path}") as led:
            people = [Student(name=f"s{i}", gpa=1.0) for i in range(3)]
            for i, s in enumerate(people):
                led.registry.register_entity(s)
                s.gpa = 2.0 + i
                led.registry.version_entity(s)
            led.registry.register_entity(Patient(name="p", ssn="123-45-6789"))
        return path

    @staticmethod
    def _edit(con: Any, what: str, position: int, n: int) -> None:
        row = con.execute("SELECT originator_id, originator_version, topic, state FROM stored_events WHERE rowid = ?", (position,)).fetchone()
        if row is None:
            return
        stream, version, topic, state = row
        state = bytes(state)
        if not state and what in ("flip", "truncate"):  # an earlier edit left no bytes to change
            return
        if what == "delete":
            con.execute("DELETE FROM stored_events WHERE rowid = ?", (position,))
        elif what == "flip":  # one byte changed anywhere, the seal's tail included
            i = n % len(state)
            con.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state[:i] + bytes([state[i] ^ 1]) + state[i + 1 :], position))
        elif what == "truncate":
            con.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state[: n % len(state)], position))
        elif what == "topic":
            con.execute("UPDATE stored_events SET topic = ? WHERE rowid = ?", ("entity.erased" if n % 2 else "", position))
        elif what == "version":
            con.execute("UPDATE OR IGNORE stored_events SET originator_version = ? WHERE rowid = ?", (n % 4 - 1, position))
        elif what == "stream":
            con.execute("UPDATE OR IGNORE stored_events SET originator_id = ? WHERE rowid = ?", (uuid.UUID(int=n).hex, position))
        elif what == "upper":  # the same id in capitals: a UUID still, not the text the seal's fast path takes
            con.execute("UPDATE stored_events SET originator_id = ? WHERE rowid = ?", (stream.upper(), position))
        elif what == "move":
            con.execute("UPDATE OR IGNORE stored_events SET rowid = ? WHERE rowid = ?", (position + 1 + n % 3, position))
        elif what == "swap":  # two records trade bytes
            other = 1 + n % 9
            theirs = con.execute("SELECT state FROM stored_events WHERE rowid = ?", (other,)).fetchone()
            if theirs is not None:
                con.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (theirs[0], position))
                con.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state, other))
        else:
            con.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (b'{"hash":"' + b"0" * 64 + b'"}', position))

    @given(edits=_EDITS)
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    def test_same_report(self, template: Path, tmp_path: Path, edits: list[tuple[str, int, int]]) -> None:
        import shutil
        import sqlite3
        from unittest import mock

        import ledger.store.integrity as integrity
        from ledger.events import seal

        path = tmp_path / f"l-{uuid.uuid4().hex}.db"
        shutil.copy(template, path)
        con = sqlite3.connect(path)
        for what, position, n in edits:
            self._edit(con, what, position, n)
        con.commit()
        con.close()

        def none_vouched(first: int, positions: Any, *columns: Any) -> list[int]:
            kinds = columns[-1]
            kinds.extend([0] * len(positions))
            return list(range(len(positions)))

        from projections.audit import verify_url

        bulk = verify_url(f"sqlite:///{path}")  # the store alone: a damaged log cannot be opened as a Ledger
        with mock.patch.object(integrity, "unsealed", none_vouched):
            one_by_one = verify_url(f"sqlite:///{path}")
        assert seal.unsealed is not none_vouched
        assert bulk.problems == one_by_one.problems
        assert (bulk.ok, bulk.first_bad_position, bulk.events_checked) == (one_by_one.ok, one_by_one.first_bad_position, one_by_one.events_checked)


def edit_payload(led: Ledger, position: int) -> None:
    if led.store.kind == "memory":
        rec = led.store.recorder
        i = position - 1
        ev = rec._stored_events[i]
        rec._stored_events[i] = dataclasses.replace(ev, state=ev.state.replace(b'"Alice"', b'"Mallory"'))
        return
    conn, table, pos = _rows(led.url)
    (state,) = conn.execute(f"SELECT state FROM {table} WHERE {pos}={position}").fetchone()
    state = bytes(state).replace(b'"Alice"', b'"Mallory"')
    conn.execute(f"UPDATE {table} SET state=%s WHERE {pos}={position}".replace("%s", "?" if led.store.kind == "sqlite" else "%s"), (state,))
    conn.commit() if led.store.kind == "sqlite" else None
    conn.close()


def delete_event(led: Ledger, position: int) -> None:
    if led.store.kind == "memory":
        led.store.recorder._stored_events.pop(position - 1)
        return
    conn, table, pos = _rows(led.url)
    conn.execute(f"DELETE FROM {table} WHERE {pos}={position}")
    conn.commit() if led.store.kind == "sqlite" else None
    conn.close()


def swap_states(led: Ledger, p1: int, p2: int) -> None:
    """Exchange two records of one stream (a reordering of that stream's history)."""
    if led.store.kind == "memory":
        rec = led.store.recorder
        a, b = rec._stored_events[p1 - 1], rec._stored_events[p2 - 1]
        rec._stored_events[p1 - 1] = dataclasses.replace(a, state=b.state)
        rec._stored_events[p2 - 1] = dataclasses.replace(b, state=a.state)
        return
    conn, table, pos = _rows(led.url)
    ph = "?" if led.store.kind == "sqlite" else "%s"
    (s1,) = conn.execute(f"SELECT state FROM {table} WHERE {pos}={p1}").fetchone()
    (s2,) = conn.execute(f"SELECT state FROM {table} WHERE {pos}={p2}").fetchone()
    conn.execute(f"UPDATE {table} SET state={ph} WHERE {pos}={p1}", (bytes(s2),))
    conn.execute(f"UPDATE {table} SET state={ph} WHERE {pos}={p2}", (bytes(s1),))
    conn.commit() if led.store.kind == "sqlite" else None
    conn.close()


def three_versions(led: Ledger) -> Student:
    s = Student(name="Alice")
    s.promote_to_root()
    for gpa in (1.0, 2.0):
        s.gpa = gpa
        EntityRegistry.version_entity(s)
    return s


class TestTamperEvidence:
    def test_untouched_log_verifies(self, led) -> None:
        three_versions(led)
        report = led.verify()
        assert report.ok and report.problems == [] and report.events_checked == 3

    def test_edited_payload_is_found_at_its_position(self, led) -> None:
        three_versions(led)
        edit_payload(led, 2)
        report = led.verify()
        assert not report.ok and report.first_bad_position == 2
        assert "edited" in report.problems[0]

    def test_deleted_event_is_found(self, led) -> None:
        three_versions(led)
        delete_event(led, 2)
        report = led.verify()
        # named at its own position: memory renumbers its list, so the record now at 2 no longer chains;
        # SQLite and PostgreSQL keep a version-index row for the record that was at 2
        assert not report.ok and report.first_bad_position == 2
        assert any("v1 to v3" in p for p in report.problems), report.problems

    def test_reordered_events_are_found(self, led) -> None:
        three_versions(led)
        swap_states(led, 2, 3)
        report = led.verify()
        assert not report.ok and report.first_bad_position == 2

"""ledger/write/memo.py: memoization by content (``cache=True``) on every backend, and the memo index
is derived state: a hit is held to the reused execution's own sealed record."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import ledger
from ledger import CallableRegistry, Ledger

from .memo_calls import RAN, bump, events, executions, stored_student
from .memo_calls import m_functions  # noqa: F401  (an autouse fixture)
from .models import Patient, Student
from .tamper import behind


def memo_double(s: Student) -> float:
    return s.gpa * 2


def memo_triple(s: Student) -> float:
    return s.gpa * 3


@pytest.fixture
def functions() -> Iterator[None]:
    CallableRegistry.register("memo_double", cache=True)(memo_double)
    CallableRegistry.register("memo_triple", cache=True)(memo_triple)
    yield
    CallableRegistry.unregister("memo_double")
    CallableRegistry.unregister("memo_triple")


def poisoned(url: str) -> tuple[Ledger, Student]:
    """A ledger whose memo row for ``memo_double(s)`` names the execution of ``memo_triple(s)``."""
    led = ledger.connect(url)
    s = Student(name="Ann", gpa=7.0)
    led.registry.register_entity(s)
    assert CallableRegistry.execute("memo_double", s=s).result == 14.0
    assert CallableRegistry.execute("memo_triple", s=s).result == 21.0
    rows = behind(url, "SELECT cache_key, execution_id, position FROM ledger_memo_index ORDER BY position")
    (double_key, _, _), (_, triple_id, triple_position) = rows
    behind(url, "UPDATE ledger_memo_index SET execution_id = ?, position = ? WHERE cache_key = ?", (triple_id, triple_position, double_key))
    led.close()
    return ledger.connect(url), s


@pytest.mark.usefixtures("functions")
class TestMemoPoisoning:
    def test_a_memo_row_naming_another_execution_is_a_miss_with_a_warning(
        self, durable_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The hit's record must carry the call's memo key: another execution's outputs are never served."""
        led, s = poisoned(durable_url)
        with caplog.at_level(logging.WARNING, logger="ledger"):
            again = CallableRegistry.execute("memo_double", s=s)
        assert again.result == 14.0
        hits = led.sql("select cache_hit from executions where function_name = 'memo_double' order by position").fetchall()
        assert hits == [(False,), (False,)]  # ran again, not a cache hit
        lines = [r.getMessage() for r in caplog.records if "memo" in r.getMessage()]
        assert len(lines) == 1 and "does not carry this call's memo key" in lines[0]
        led.close()

    def test_verify_names_the_memo_row_a_rebuild_would_not_give(self, durable_url: str) -> None:
        """verify rebuilds the memo index from the log and names the poisoned row."""
        led, _ = poisoned(durable_url)
        report = led.verify()
        assert not report.ok
        assert any("memo index" in p and "memo_double" not in p for p in report.problems), report.problems
        assert report.first_bad_position is not None
        led.close()


class TestMemoization:
    def test_a_repeated_call_returns_the_recorded_outputs_without_running(self, led: Ledger) -> None:
        """Same function, same input version, same argument: the outputs of the first run, same ecs_ids."""
        s = stored_student(led)
        first = CallableRegistry.execute("m_bump", s=s, by=0.5)
        versions = len([t for _, t in events(led) if t == "entity.version"])
        again = CallableRegistry.execute("m_bump", s=s, by=0.5)
        assert RAN == ["bump"]
        assert again.ecs_id == first.ecs_id and again.gpa == 3.5 and again is not first
        assert len([t for _, t in events(led) if t == "entity.version"]) == versions  # no new version
        rows = executions(led)
        assert [r[2] for r in rows] == [False, True]
        assert rows[1][3] == rows[0][0] == str(first.derived_from_execution_id)
        assert led.verify().ok

    def test_a_changed_argument_input_version_or_source_runs_again(self, led: Ledger) -> None:
        """Each part of the key counts: the argument, the input's version, the function's source."""
        s = stored_student(led)
        CallableRegistry.execute("m_bump", s=s, by=0.5)
        CallableRegistry.execute("m_bump", s=s, by=0.25)
        assert RAN == ["bump", "bump"]
        s.gpa = 3.1  # a new version of the input (traced before the call)
        CallableRegistry.execute("m_bump", s=s, by=0.5)
        assert RAN == ["bump"] * 3

        def bump(s: Student, by: float) -> Student:  # same name, other source
            RAN.append("bump2")
            s.gpa += by
            return s

        CallableRegistry.register("m_bump", cache=True)(bump)
        CallableRegistry.execute("m_bump", s=s, by=0.5)
        assert RAN[-1] == "bump2"
        assert [r[2] for r in executions(led)] == [False] * 4

    def test_unpacked_and_wrapped_results_come_back_in_their_shape(self, led: Ledger) -> None:
        """A tuple of entities comes back as the same list of versions; a plain result as its wrapper."""
        s = stored_student(led)
        a = CallableRegistry.execute("m_split", s=s)
        b = CallableRegistry.execute("m_split", s=s)
        assert isinstance(b, list) and [x.ecs_id for x in b] == [x.ecs_id for x in a]
        assert b[1].score == 3.0 and b[1].sibling_output_entities == [a[0].ecs_id]
        m1 = CallableRegistry.execute("m_mean", scores=[1.0, 2.0])
        m2 = CallableRegistry.execute("m_mean", scores=[1.0, 2.0])
        assert m2.ecs_id == m1.ecs_id and m2.result == 1.5
        assert RAN == ["split", "mean"]

    def test_configs_built_from_keywords_are_keyed_by_content(self, led: Ledger) -> None:
        """A ConfigEntity built per call (a new id each time) hits when its values are the same."""
        s = stored_student(led)
        CallableRegistry.execute("m_weighted", s=s, factor=2.0)
        CallableRegistry.execute("m_weighted", s=s, factor=2.0)
        CallableRegistry.execute("m_weighted", s=s, factor=3.0)
        assert RAN == ["weighted", "weighted"]

    def test_an_argument_with_no_recorded_form_is_never_reused(self, led: Ledger) -> None:
        """``inf`` cannot be recorded (JSON has none): such a call runs every time."""
        CallableRegistry.execute("m_mean", scores=[float("inf"), 1.0])
        CallableRegistry.execute("m_mean", scores=[float("inf"), 1.0])
        CallableRegistry.execute("m_mean", scores=[None or 2.0, 1.0])
        CallableRegistry.execute("m_mean", scores=[2.0, 1.0])
        assert RAN == ["mean", "mean", "mean"]

    def test_failures_are_never_reused(self, led: Ledger) -> None:
        """A call that raised is recorded as failed and carries no key: the same call runs again."""
        s = stored_student(led)
        with pytest.raises(RuntimeError):
            CallableRegistry.execute("m_fails_once", s=s)
        CallableRegistry.execute("m_fails_once", s=s)
        CallableRegistry.execute("m_fails_once", s=s)
        assert RAN == ["fails_once", "fails_once"]

    def test_without_cache_every_call_runs(self, led: Ledger) -> None:
        CallableRegistry.register("m_plain")(bump)
        try:
            s = stored_student(led)
            CallableRegistry.execute("m_plain", s=s, by=0.5)
            CallableRegistry.execute("m_plain", s=s, by=0.5)
        finally:
            CallableRegistry.unregister("m_plain")
        assert RAN == ["bump", "bump"]

    def test_an_erased_output_is_not_reused(self, led: Ledger) -> None:
        """Its outputs could only come back as tombstones: the call runs again."""
        p = Patient(name="Bo")
        led.registry.register_entity(p)
        first = CallableRegistry.execute("m_visit", p=p)
        other = Patient(name="Cy")
        led.registry.register_entity(other)
        RAN.clear()
        CallableRegistry.execute("m_visit", p=other)
        hit = CallableRegistry.execute("m_visit", p=other)
        assert hit.visits == 1
        assert [r[2] for r in executions(led)][-1] is True
        led.erase(first.lineage_id, reason="request")
        with pytest.raises(ledger.errors.ErasedError):  # the input itself was erased too (same lineage)
            CallableRegistry.execute("m_visit", p=p)

    def test_another_process_ledger_finds_the_memo(self, durable_url: str) -> None:
        """The memo index is in the store: a ledger opened later (or elsewhere) reuses the execution."""
        with Ledger(durable_url) as a:
            ledger.set_default_ledger(a)
            s = stored_student(a)
            first = CallableRegistry.execute("m_bump", s=s, by=1.0)
        with Ledger(durable_url) as b:
            ledger.set_default_ledger(b)
            again = CallableRegistry.execute("m_bump", s=b.registry.get_stored_entity(s.ecs_id, s.ecs_id), by=1.0)
            assert again.ecs_id == first.ecs_id and RAN == ["bump"]
            stored, rebuilt = b.store.stored_index(), b.store.rebuilt_index()
            assert len(stored.memos) == 1 and stored.memos == rebuilt.memos
        ledger.set_default_ledger(None)

    def test_aexecute_reuses_too(self, led: Ledger) -> None:
        s = stored_student(led)
        first = asyncio.run(CallableRegistry.aexecute("m_bump", s=s, by=0.5))
        again = asyncio.run(CallableRegistry.aexecute("m_bump", s=s, by=0.5))
        assert again.ecs_id == first.ecs_id and RAN == ["bump"]

    def test_postgresql_appends_from_python_file_the_memo_too(self, pg_url: str) -> None:
        """The path that bypasses ``ledger_append_v1`` writes the memo rows in its transaction as well."""
        with Ledger(pg_url) as led:
            ledger.set_default_ledger(led)
            led.store._backend._server_append = False
            s = stored_student(led)
            first = CallableRegistry.execute("m_bump", s=s, by=2.0)
            again = CallableRegistry.execute("m_bump", s=s, by=2.0)
            assert again.ecs_id == first.ecs_id and RAN == ["bump"]
            stored, rebuilt = led.store.stored_index(), led.store.rebuilt_index()
            assert len(stored.memos) == 1 and stored.memos == rebuilt.memos
        ledger.set_default_ledger(None)

    def test_replay_finds_a_memo_row_missing_from_the_store(self, tmp_path: Path) -> None:
        """The memo index is a projection of the log: ``check_index`` (``ledger replay``) compares it."""
        from projections import audit

        url = f"sqlite:///{tmp_path / 'm.db'}"
        with Ledger(url) as led:
            ledger.set_default_ledger(led)
            CallableRegistry.execute("m_mean", scores=[1.0, 3.0])
            assert audit.check_index(led).ok
        ledger.set_default_ledger(None)
        with sqlite3.connect(tmp_path / "m.db") as con:
            con.execute("DELETE FROM ledger_memo_index")
        with Ledger(url) as led:
            check = audit.check_index(led)
            assert not check.ok and [row[0] for row in check.missing] == ["memo"]

    def test_the_sqlite_lookup_is_a_primary_key_search(self, tmp_path: Path) -> None:
        """Not a scan: SQLite's plan for the memo lookup searches the key's index."""
        path = tmp_path / "m.db"
        Ledger(f"sqlite:///{path}").close()
        with sqlite3.connect(path) as con:
            plan = " ".join(
                str(r[-1]) for r in con.execute("EXPLAIN QUERY PLAN SELECT execution_id, position FROM ledger_memo_index WHERE cache_key = ?", (b"x",))
            )
        assert "SEARCH" in plan and "PRIMARY KEY" in plan, plan

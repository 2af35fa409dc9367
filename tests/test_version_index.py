"""The stored version index: rows written with the events, a pure function of the log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import CallableRegistry, Entity, Ledger, Personal, errors
from ledger.store import EventStore
from ledger.write.calls import execute_on

from .conftest import requires_pg


class Mark(Entity):
    course: str = "x"
    score: int = 0


class Pupil(Entity):
    name: Personal[str]
    marks: list[Mark] = []


def _workload(led: Ledger) -> Pupil:
    """Registers, versions, detaches, an execution, a failure and an erasure."""

    def index_raise(p: Pupil) -> Pupil:
        raise RuntimeError("no")

    def index_bump(p: Pupil) -> Pupil:
        p.marks[0].score += 1
        return p

    CallableRegistry.register("index_bump")(index_bump)
    CallableRegistry.register("index_raise")(index_raise)
    try:
        p = Pupil(name="ann", marks=[Mark(), Mark(course="y")])
        led.registry.register_entity(p)
        p.marks[1].score = 3
        led.registry.version_entity(p)
        led.registry.detach(p.marks[1])
        p = execute_on(led, "index_bump", p=p)
        with pytest.raises(RuntimeError):
            execute_on(led, "index_raise", p=p)
        led.erase(p.lineage_id, reason="request")
        return p
    finally:
        CallableRegistry.unregister("index_bump")
        CallableRegistry.unregister("index_raise")


def _check_whole(store: EventStore) -> None:
    assert store.index_caught_up()
    stored = store.stored_index()
    assert stored == store.rebuilt_index()
    assert [p for _, p in stored.versions] == sorted(p for _, p in stored.versions)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=requires_pg)])
def durable(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'i.db'}"
    else:
        from .conftest import fresh_pg_url

        yield from fresh_pg_url()


class TestRowsWithTheEvents:
    def test_every_append_indexes_its_records_and_a_rebuild_gives_the_same_rows(self, durable) -> None:
        with Ledger(durable) as led:
            p = _workload(led)
            _check_whole(led.store)
            versions = led.store.lineage_entries(p.lineage_id)
            assert [v for _, v, _ in versions] == list(range(1, len(versions) + 1))
            assert [e for e, _, _ in versions] == [r.ecs_id for r in led.index.lineages[p.lineage_id]]
            assert led.store.version_position(p.ecs_id) == led.index.records[p.ecs_id].position
            assert p.lineage_id in led.store.erasure_entries()

    def test_a_refused_batch_leaves_no_rows(self, durable) -> None:
        with Ledger(durable) as a, Ledger(durable) as b:
            m = Mark()
            a.registry.register_entity(m)
            b.refresh()
            twin = b.registry.get_latest(m.lineage_id)
            m.score = 1
            a.registry.version_entity(m)
            before = a.store.stored_index()
            twin.score = 2
            with pytest.raises(errors.ConcurrencyError):
                b.registry.version_entity(twin)
            assert a.store.stored_index() == before
            _check_whole(a.store)

    def test_a_failure_inside_the_append_transaction_leaves_neither_events_nor_rows(self, durable, monkeypatch) -> None:
        with Ledger(durable) as led:
            led.registry.register_entity(Mark())
            head, rows = led.store.head(), led.store.stored_index()
            if durable.startswith("postgresql"):
                # the server's append function writes the rows; the process "dies" as it checks the seal
                import ledger.store.postgres as where

                real, name = where.seal_at, "seal_at"
            else:
                where = type(led.store._backend)
                real, name = where._write_index, "_write_index"

            def dies(*args, **kwargs):
                real(*args, **kwargs)  # the rows are written, then the process "dies"
                raise KeyboardInterrupt

            monkeypatch.setattr(where, name, dies)
            with pytest.raises(KeyboardInterrupt):
                led.registry.register_entity(Mark())
            monkeypatch.undo()
            # PostgreSQL: the rolled-back batch leaves a hole, no record
            assert led.store.records_between(0, led.store.head()) == head and led.store.stored_index() == rows
            _check_whole(led.store)


class TestCatchUp:
    def _strip_index(self, path: Path) -> None:
        con = sqlite3.connect(path)
        for table in ("ledger_version_positions", "ledger_erasure_index", "ledger_index_tracking"):
            con.execute(f"DROP TABLE {table}")
        con.commit()
        con.close()

    def test_a_ledger_written_before_the_index_is_indexed_on_the_next_writable_open(self, tmp_path) -> None:
        path = tmp_path / "old.db"
        with Ledger(f"sqlite:///{path}") as led:
            _workload(led)
            expected = led.store.stored_index()
        self._strip_index(path)

        before = path.read_bytes()
        reader = EventStore(f"sqlite:///{path}", create=False)  # reading never writes ...
        try:
            assert reader.index_state() is None and not reader.index_caught_up()
        finally:
            reader.close()
        assert path.read_bytes() == before

        seen: list[tuple[int, int]] = []
        store = EventStore(f"sqlite:///{path}")  # ... a writable open indexes the old log
        try:
            _check_whole(store)
            assert store.stored_index() == expected
            store._backend.reset_index()
            assert store.catch_up_index(progress=lambda done, head: seen.append((done, head)), page=3) == store.head()
            assert seen[-1] == (store.head(), store.head()) and len(seen) > 1
            _check_whole(store)
        finally:
            store.close()

    def test_appends_while_the_index_lags_keep_it_correct(self, tmp_path) -> None:
        url = f"sqlite:///{tmp_path / 'lag.db'}"
        with Ledger(url) as led:
            led.registry.register_entity(Mark())
            led.store._backend.reset_index()  # as if the index had never seen the log
            led.registry.register_entity(Mark())  # rows written, tracked position left alone
            assert led.store.index_state()[0] == 0 and not led.store.index_caught_up()
            led.store.catch_up_index()
            _check_whole(led.store)

    def test_a_log_rewritten_below_the_tracked_position_rebuilds_the_index(self, tmp_path) -> None:
        path = tmp_path / "rw.db"
        with Ledger(f"sqlite:///{path}") as led:
            _workload(led)
        con = sqlite3.connect(path)
        con.execute("UPDATE ledger_index_tracking SET head_hash = ?", ("f" * 64,))
        con.execute("DELETE FROM ledger_version_positions WHERE position = 1")  # and a row is lost
        con.commit()
        con.close()
        store = EventStore(f"sqlite:///{path}")
        try:
            _check_whole(store)
        finally:
            store.close()

    def test_memory_keeps_no_stored_index(self) -> None:
        with Ledger("memory://") as led:
            led.registry.register_entity(Mark())
            assert led.store.index_state() is None and not led.store.index_caught_up()
            with pytest.raises(errors.StoreError, match="no stored version index"):
                led.store.version_position(led.index.position)


ops = st.lists(st.sampled_from(["new", "edit", "child", "erase"]), min_size=1, max_size=12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_any_sequence_of_writes_keeps_the_stored_index_equal_to_a_rebuild(tmp_path_factory, sequence) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('h') / 'h.db'}"
    with Ledger(url) as led:
        pupils: list[Pupil] = []
        for op in sequence:
            if op == "new" or not pupils:
                pupils.append(Pupil(name="p", marks=[Mark()]))
                led.registry.register_entity(pupils[-1])
            elif op == "edit":
                pupils[-1].marks[0].score += 1
                if pupils[-1].lineage_id not in led.index.erased:
                    led.registry.version_entity(pupils[-1])
            elif op == "child":
                pupils[-1].marks.append(Mark())
                if pupils[-1].lineage_id not in led.index.erased:
                    led.registry.version_entity(pupils[-1])
            else:
                led.erase(pupils[-1].lineage_id, reason="r")
        _check_whole(led.store)


class TestReplayCommand:
    def test_replay_checks_the_index_against_a_rebuild_and_names_a_tampered_row(self, tmp_path) -> None:
        from typer.testing import CliRunner

        from ledger.cli import app

        path = tmp_path / "cli.db"
        url = f"sqlite:///{path}"
        with Ledger(url) as led:
            _workload(led)
        runner = CliRunner()
        ok = runner.invoke(app, ["replay", "--db", url])
        assert ok.exit_code == 0, ok.output
        assert "equal to a rebuild from the log" in ok.stdout

        con = sqlite3.connect(path)
        con.execute("UPDATE ledger_version_positions SET position = position + 100 WHERE position = 1")
        con.commit()
        con.close()
        bad = runner.invoke(app, ["replay", "--db", url])
        assert bad.exit_code == 1
        assert "missing version row at position 1" in bad.stderr and "unexpected version row at position 101" in bad.stderr
        assert "error: the stored version index differs" in bad.stderr

"""The write side's index read from the store (``projections.stored_inline``).

A SQLite or PostgreSQL ledger opens without replaying its log: what the write side looks
up by id comes from the store's version index through bounded caches. These tests pin
what that must keep: the same answers as a replay, conflicts between writers, bounded
caches, the tree rows, and ledgers indexed by an older layout.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import ConcurrencyError
from ledger.store.version_index import INDEX_NAME

from .conftest import requires_pg
from .models import Grade, Student, student
from .test_store import stored_dump


def _kind(led: Ledger) -> str:
    return type(led.index).__name__


def _fork_twice(led: Ledger) -> Student:
    s = student(n=3)
    led.registry.register_entity(s)
    s.gpa = 2.0
    led.registry.version_entity(s)
    s.grades[0].score = 9.0
    led.registry.version_entity(s)
    return s


class TestOpening:
    def test_sqlite_and_postgres_open_the_stored_index_memory_replays(self, store_url: str) -> None:
        with Ledger(store_url) as led:
            _fork_twice(led)
            expected = "InlineIndex" if store_url.startswith("memory") else "StoredInlineIndex"
            assert _kind(led) == expected
            if store_url.startswith("memory"):
                return
            with Ledger(store_url) as again:
                assert _kind(again) == "StoredInlineIndex"
                # opening read no record: nothing is cached until something asks
                assert len(again.index.records.cache) == 0 and len(again.index.values_cache) == 0
                assert again.index.position == led.store.head()

    def test_replay_true_gives_the_same_answers(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as led:
            s = _fork_twice(led)
            child_versions = [r.ecs_id for r in led.index.lineages[s.grades[1].lineage_id]]
        with Ledger(url) as stored, Ledger(url, replay=True) as replayed:
            assert _kind(replayed) == "InlineIndex"
            assert stored.index.snapshot() == replayed.index.snapshot()
            for reg_a, reg_b in ((stored.registry, replayed.registry),):
                assert [e.ecs_id for e in reg_a.history(s.lineage_id)] == [e.ecs_id for e in reg_b.history(s.lineage_id)]
                # the unchanged grade's only version sits in all three trees: the newest names it
                assert reg_a.ecs_id_to_root_id(child_versions[-1]) == reg_b.ecs_id_to_root_id(child_versions[-1]) == s.ecs_id
                assert [e.old_ids for e in reg_a.history(s.lineage_id)] == [e.old_ids for e in reg_b.history(s.lineage_id)]


class TestWriters:
    def test_a_stale_copy_conflicts_even_when_its_stream_head_was_never_read(self, tmp_path: Path) -> None:
        """The second ledger never looked at the lineage's head before the first wrote: its
        append must still conflict, not build quietly on a version it never saw."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as a:
            s = student(n=1)
            a.registry.register_entity(s)
            with Ledger(url) as b:
                stale = b.registry.get_stored_tree(s.ecs_id).root
                s.gpa = 1.0
                a.registry.version_entity(s)
                stale.gpa = 2.0
                with pytest.raises(ConcurrencyError):
                    b.registry.version_entity(stale)
                head = a.store.head()
                b.registry.version_entity(b.registry.get_latest(s.lineage_id))  # after refresh: builds on a's version
                assert b.store.head() == head  # nothing changed: no new version needed
                fresh = b.registry.get_latest(s.lineage_id)
                assert fresh.gpa == 1.0
                fresh.gpa = 3.0
                b.registry.version_entity(fresh)
                assert a.store.head() == head + 1

    def test_refresh_drops_tree_roots_another_writer_moved(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as a, Ledger(url) as b:
            s = student(n=2)
            a.registry.register_entity(s)
            grade = s.grades[1].ecs_id
            assert b.registry.ecs_id_to_root_id(grade) == s.ecs_id  # cached in b
            s.gpa = 1.5
            a.registry.version_entity(s)  # a new root; the unchanged grade now sits in it
            b.refresh()
            assert b.registry.ecs_id_to_root_id(grade) == s.ecs_id == a.registry.ecs_id_to_root_id(grade)


class TestBoundedCaches:
    def test_the_caches_stay_within_their_bounds_and_answers_stay_right(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as led:
            led.index.records.cache.limit = 8
            led.index.root_of.cache.limit = 8
            led.index.streams.cache.limit = 8
            students = [student(name=f"s{i}", n=2) for i in range(30)]
            for s in students:
                led.registry.register_entity(s)
            for s in students:
                s.grades[0].score = 4.0
                led.registry.version_entity(s)
            for cache in (led.index.records.cache, led.index.root_of.cache, led.index.streams.cache):
                assert len(cache) <= 8
            with Ledger(url, replay=True) as replayed:
                for s in students:
                    assert stored_dump(led, s.ecs_id) == stored_dump(replayed, s.ecs_id)
                    assert led.registry.ecs_id_to_root_id(s.grades[1].ecs_id) == s.ecs_id
                assert led.index.snapshot() == replayed.index.snapshot()


class TestOlderLayouts:
    def _as_older_layout(self, path: Path) -> None:
        """What the previous library left: no tree rows, its tracking row under the old name."""
        with sqlite3.connect(path) as con:
            con.execute("ALTER TABLE ledger_version_positions DROP COLUMN root_ecs_id")
            con.execute("UPDATE ledger_index_tracking SET name = 'versions' WHERE name = ?", (INDEX_NAME,))

    def test_a_writable_open_indexes_it_again_and_tree_rows_appear(self, tmp_path: Path) -> None:
        path = tmp_path / "l.db"
        url = f"sqlite:///{path}"
        with Ledger(url) as led:
            s = _fork_twice(led)
            expected = led.store.stored_index()
        self._as_older_layout(path)
        with Ledger(url, create=False) as reader:  # read-only: writes nothing, replays instead
            assert _kind(reader) == "InlineIndex"
            assert reader.registry.ecs_id_to_root_id(s.grades[2].ecs_id) == s.ecs_id
        with Ledger(url) as led:
            assert _kind(led) == "StoredInlineIndex"
            assert led.store.stored_index() == expected == led.store.rebuilt_index()
            assert led.registry.ecs_id_to_root_id(s.grades[2].ecs_id) == s.ecs_id


class TestOtherWriters:
    def test_a_root_version_appended_without_members_gets_its_tree_rows(self, tmp_path: Path) -> None:
        """A batch from elsewhere (no ``members`` on its events): the store walks the tree itself."""
        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as led:
            s = _fork_twice(led)
            s.grades.append(Grade(course="late", score=1.0))
            batch_events: list = []
            original = led.store.append

            def strip_members(events):  # as a writer that does not know its trees would send them
                for e in events:
                    e.members = None
                batch_events.extend(events)
                return original(events)

            led.store.append = strip_members  # type: ignore[method-assign]
            led.registry.version_entity(s)
            led.store.append = original  # type: ignore[method-assign]
            assert batch_events
            assert led.store.stored_index() == led.store.rebuilt_index()


@requires_pg
def test_postgres_tree_rows_equal_a_rebuild(pg_url: str) -> None:
    with Ledger(pg_url) as led:
        s = _fork_twice(led)
        led.registry.detach(s.grades[0])
        assert _kind(led) == "StoredInlineIndex"
        assert led.store.stored_index() == led.store.rebuilt_index()
        with Ledger(pg_url, replay=True) as replayed:
            assert led.index.snapshot() == replayed.index.snapshot()


def _open_and_write(url: str) -> int:
    from ledger import Ledger as _Ledger

    from .models import student as _student

    with _Ledger(url) as led:
        led.registry.register_entity(_student(n=1))
        return led.store.head()


def test_processes_opening_a_new_store_at_once_all_get_in(tmp_path: Path) -> None:
    """map workers open a brand-new file together: creating the index tables waits for the
    write lock (an IMMEDIATE transaction) instead of failing with "database is locked"."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        for attempt in range(3):
            url = f"sqlite:///{tmp_path / f'fresh{attempt}.db'}"
            heads = list(pool.map(_open_and_write, [url] * 8))
            assert len(heads) == 8
            with Ledger(url) as led:
                assert led.store.head() == 8 * 2  # each wrote one 2-entity tree (a student, one grade)
                assert led.store.stored_index() == led.store.rebuilt_index()


def test_an_edited_tree_row_is_refused_not_followed(tmp_path: Path) -> None:
    """A hostile edit of a version's tree root (to another stored root) is a CorruptLogError
    naming it when read, and ``ledger replay``'s index check and ``verify`` list it; the log is untouched."""
    from ledger.errors import CorruptLogError
    from projections import audit

    path = tmp_path / "l.db"
    url = f"sqlite:///{path}"
    with Ledger(url) as led:
        a, b = student(name="a", n=2), student(name="b", n=2)
        led.registry.register_entity(a)
        led.registry.register_entity(b)
        grade = a.grades[1].ecs_id
    with sqlite3.connect(path) as con:
        con.execute(
            "UPDATE ledger_version_positions SET root_ecs_id = ? WHERE ecs_id = ?", (b.ecs_id.bytes, grade.bytes)
        )
    with Ledger(url) as led:
        with pytest.raises(CorruptLogError, match=str(grade)):
            led.registry.ecs_id_to_root_id(grade)
        check = audit.check_index(led)
        assert check is not None and not check.ok
        assert ("tree", grade, b.ecs_id) in check.extra and ("tree", grade, a.ecs_id) in check.missing
        report = led.verify()  # the log itself is intact, the derived tree row is named
        assert not report.ok and any("tree index holds a row" in p and str(grade) in p for p in report.problems)


def _register_in_another_process(url: str, entity: Student) -> int:
    with Ledger(url) as led:
        led.registry.register_entity(entity)
        return led.store.head()


class TestMintedIds:
    """Ids this process minted since the index last looked (``ledger._process.mint``) are
    absent without a query; the answers must stay those of a replayed index."""

    def _counting(self, led: Ledger, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
        calls = {"version_positions": 0, "stream_heads": 0, "stream_head": 0, "version_position": 0}
        for name in calls:
            real = getattr(led.store, name)

            def spy(*args: object, _real: object = real, _name: str = name) -> object:
                calls[_name] += 1
                return _real(*args)  # type: ignore[operator]

            monkeypatch.setattr(led.store, name, spy)
        return calls

    def test_new_trees_and_executions_look_nothing_up(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from ledger import CallableRegistry

        @CallableRegistry.register("minted_grade")
        def minted_grade(s: Student) -> Grade:
            return Grade(course=s.name, score=s.gpa)

        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as led:
            import ledger

            ledger.set_default_ledger(led)
            try:
                s = student(n=3)
                led.registry.register_entity(s)
                calls = self._counting(led, monkeypatch)
                led.registry.register_entity(student(n=4))
                out = CallableRegistry.execute("minted_grade", s=s)
                assert calls == {"version_positions": 0, "stream_heads": 0, "stream_head": 0, "version_position": 0}
                with Ledger(url, replay=True) as replayed:
                    assert stored_dump(led, out.ecs_id) == stored_dump(replayed, out.ecs_id)
                    assert led.index.snapshot() == replayed.index.snapshot()
            finally:
                ledger.set_default_ledger(None)

    def test_the_minted_set_keeps_nothing_an_execution_stored_and_stays_bounded(self, tmp_path: Path) -> None:
        from ledger import CallableRegistry, _process

        @CallableRegistry.register("minted_copy")
        def minted_copy(s: Student, label: str) -> Grade:
            return Grade(course=label, score=s.gpa)

        with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as led:
            import ledger

            ledger.set_default_ledger(led)
            try:
                s = student(n=1)
                led.registry.register_entity(s)
                _process.minted.clear()
                for i in range(20):
                    CallableRegistry.execute("minted_copy", s=s, label=f"g{i}")
                assert len(_process.minted) == 0  # outputs, executions and argument models: all forgotten
                for _ in range(_process._MINTED_MAX + 10):
                    _process.mint()
                assert len(_process.minted) <= _process._MINTED_MAX
            finally:
                ledger.set_default_ledger(None)
                _process.minted.clear()

    def test_an_id_minted_here_and_stored_by_another_process_conflicts_until_refresh(self, tmp_path: Path) -> None:
        """As with a replayed index: another writer's records are unseen until ``refresh``, so
        writing the same new entity conflicts (the log is unchanged), and after it, is a no-op."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        url = f"sqlite:///{tmp_path / 'l.db'}"
        with Ledger(url) as led:
            s = student(n=2)  # minted after the open
            with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                head = pool.submit(_register_in_another_process, url, s).result()
            with pytest.raises(ConcurrencyError):
                led.registry.register_entity(s)
            assert led.store.head() == head
            led.refresh()
            led.registry.register_entity(s)
            assert led.store.head() == head  # already stored, unchanged: nothing written
            assert stored_dump(led, s.ecs_id) is not None

    def test_an_id_minted_before_the_open_is_looked_up(self, tmp_path: Path) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        url = f"sqlite:///{tmp_path / 'l.db'}"
        Ledger(url).close()
        s = student(n=2)  # minted before this process's ledger looks at the store
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            head = pool.submit(_register_in_another_process, url, s).result()
        with Ledger(url) as led:
            led.registry.register_entity(s)
            assert led.store.head() == head

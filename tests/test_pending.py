"""``with led.batch():`` (ledger/write/pending.py): many writes, one transaction, the same log.

Each test runs on memory, SQLite and PostgreSQL where the backend matters.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

import ledger
from ledger import CallableRegistry, Entity, EntityRegistry, Ledger
from ledger.errors import BatchCommitError, InputValidationError
from ledger.write.calls import execute_on

from .conftest import fresh_pg_url
from .writer_procs import assert_index_whole, kill_after, whole_batches

ROOT = Path(__file__).resolve().parent.parent


class BlockPoint(Entity):
    x: int = 0


class BlockPair(Entity):
    left: BlockPoint
    right: BlockPoint


@CallableRegistry.register("block_make")
def block_make(x: int) -> BlockPoint:
    return BlockPoint(x=x)


@CallableRegistry.register("block_bump")
def block_bump(p: BlockPoint) -> BlockPoint:
    p.x += 1
    return p


@CallableRegistry.register("block_split")
def block_split(p: BlockPoint) -> tuple[BlockPoint, BlockPoint]:
    return BlockPoint(x=p.x - 1), BlockPoint(x=p.x + 1)


@CallableRegistry.register("block_fail")
def block_fail(p: BlockPoint) -> BlockPoint:
    raise RuntimeError(f"no for {p.x}")


def scenario(led: Ledger) -> list[Any]:
    """Creations, mutations (by entity and by reference), a tuple, a failure and a manual version."""
    out: list[Any] = []
    a = execute_on(led, "block_make", x=1)
    b = execute_on(led, "block_bump", p=a)
    c = execute_on(led, "block_bump", p=f"@{b.ecs_id}")
    pair = execute_on(led, "block_split", p=c)
    with pytest.raises(RuntimeError):
        execute_on(led, "block_fail", p=pair[0])
    manual = BlockPoint(x=40)
    led.registry.register_entity(manual)
    manual.x = 41
    led.registry.version_entity(manual)
    d = execute_on(led, "block_bump", p=manual)  # a live root edited by hand, then read
    out.extend([a.x, b.x, c.x, [p.x for p in pair], d.x])
    return out


def log_shape(led: Ledger) -> list[tuple[Any, ...]]:
    """The log without ids and times: per record its topic, stream version, batch size and
    place in its batch, and which earlier record opened its stream."""
    shape: list[tuple[Any, ...]] = []
    first_of_stream: dict[str, int] = {}
    batch_start: dict[str, int] = {}
    for i, n in enumerate(led.store.iter_all()):
        body = orjson.loads(n.state)
        stream = str(n.originator_id)
        opened = first_of_stream.setdefault(stream, i)
        start = batch_start.setdefault(body["batch_id"], i)
        shape.append((n.topic, n.originator_version, body["batch_size"], i - start, opened))
    return shape


def logged_positions(led: Ledger) -> dict[str, int]:
    """ecs_id (text) -> the position of its version record, read from the log itself."""
    return {orjson.loads(n.state)["ecs_id"]: n.id for n in led.store.iter_all() if n.topic == "entity.version"}


def second_url(url: str, tmp_path: Path) -> str:
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.db'}"
    return url


class TestSameLog:
    def test_block_writes_the_log_one_by_one_writes(self, store_url: str, tmp_path: Path) -> None:
        with Ledger(store_url) as one:
            expected = scenario(one)
            expected_shape = log_shape(one)
        other = fresh_pg_url() if store_url.startswith("postgresql") else None
        url = next(other) if other is not None else second_url(store_url, tmp_path)
        with Ledger(url) as held:
            with held.batch():
                got = scenario(held)
                assert held.store.head() == 0  # nothing appended inside the block
            assert got == expected
            assert log_shape(held) == expected_shape
            assert held.verify().ok
            assert whole_batches(held)
        if other is not None:
            next(other, None)  # drops the schema

    def test_replay_rebuilds_the_state(self, store_url: str) -> None:
        with Ledger(store_url) as led:
            with led.batch():
                scenario(led)
            if store_url.startswith("memory"):  # memory dies with its store: replay it into a new index
                from projections.inline import InlineIndex

                snapshot = led.index.snapshot()
                led.index.__dict__.update(InlineIndex(led.store.keys).__dict__)
                led.refresh()
                assert led.index.snapshot() == snapshot
                return
            snapshot = led.index.snapshot() if hasattr(led.index, "snapshot") else None
            assert led.store.stored_index() == led.store.rebuilt_index()
        with Ledger(store_url, replay=True) as again:
            assert again.verify().ok
            assert again.index.position == again.store.head()
            if snapshot is not None:
                assert again.index.snapshot() == snapshot

    def test_positions_and_reads_after_the_block(self, led: Ledger) -> None:
        with led.batch():
            a = execute_on(led, "block_make", x=5)
            b = execute_on(led, "block_bump", p=a)
        versions = EntityRegistry.history(b.lineage_id)
        assert [v.x for v in versions] == [5, 6]
        assert led.index.position == led.store.head()
        # the index's positions are the store's
        logged = logged_positions(led)
        for version in versions:
            assert led.index.records[version.ecs_id].position == logged[str(version.ecs_id)]
        c = execute_on(led, "block_bump", p=b)  # one by one after the block, on top of it
        assert c.x == 7 and led.verify().ok


class TestPendingReads:
    def test_later_calls_read_earlier_outputs(self, led: Ledger) -> None:
        with led.batch():
            a = execute_on(led, "block_make", x=1)
            stored = EntityRegistry.get_stored_entity(a.ecs_id, a.ecs_id)
            assert stored is not None and stored.x == 1
            b = execute_on(led, "block_bump", p=f"@{a.ecs_id}")
            c = execute_on(led, "block_bump", p=b)
            assert ledger.get(f"@{c.ecs_id}.x") == 3
            pair = execute_on(led, "block_split", p=f"@{c.ecs_id}")
            assert [p.x for p in pair] == [2, 4]
            assert led.store.head() == 0
        assert led.store.head() > 0 and whole_batches(led)
        assert [v.x for v in EntityRegistry.history(a.lineage_id)] == [1, 2, 3]


class TestFailures:
    def test_exception_in_the_block_commits_what_ran(self, led: Ledger) -> None:
        made: list[BlockPoint] = []
        with pytest.raises(RuntimeError, match="no for 1"):
            with led.batch():
                made.append(execute_on(led, "block_make", x=1))
                execute_on(led, "block_fail", p=made[0])
                execute_on(led, "block_make", x=99)  # never runs
        topics = [n.topic for n in led.store.iter_all()]
        assert topics.count("execution.completed") == 1
        assert topics.count("execution.failed") == 1
        assert led.verify().ok and whole_batches(led)
        assert EntityRegistry.get_stored_entity(made[0].ecs_id, made[0].ecs_id).x == 1

    def test_user_exception_without_execution_still_commits(self, led: Ledger) -> None:
        with pytest.raises(KeyError):
            with led.batch():
                execute_on(led, "block_make", x=3)
                raise KeyError("mine")
        assert [n.topic for n in led.store.iter_all()].count("execution.completed") == 1

    def test_conflict_at_commit_writes_nothing_and_names_the_executions(self, durable_url: str) -> None:
        with Ledger(durable_url) as mine:
            base = execute_on(mine, "block_make", x=10)
            head_before = mine.store.head()
            with Ledger(durable_url) as other:
                other.refresh()
                ids: list[Any] = []
                with pytest.raises(BatchCommitError) as caught:
                    with mine.batch():
                        first = execute_on(mine, "block_make", x=1)
                        bumped = execute_on(mine, "block_bump", p=base)
                        ids = [first.derived_from_execution_id, bumped.derived_from_execution_id]
                        execute_on(other, "block_bump", p=f"@{base.ecs_id}")  # commits now, on base's lineage
                other_head = other.store.head()
            err = caught.value
            assert err.execution_ids == ids
            assert err.batches == 2
            assert mine.store.head() == other_head > head_before  # only the other writer's records
            assert whole_batches(mine) and mine.verify().ok
            # the ledger goes on: the refused executions can run again, on what the other wrote
            assert mine.index.records.get(first.ecs_id) is None
            again = execute_on(mine, "block_bump", p=f"@{base.ecs_id}")
            assert again.x == 11 and mine.verify().ok


class TestBlocks:
    def test_nested_block_joins_the_outer(self, led: Ledger) -> None:
        with led.batch():
            with led.batch():
                execute_on(led, "block_make", x=1)
            assert led.store.head() == 0
            execute_on(led, "block_make", x=2)
        assert [n.topic for n in led.store.iter_all()].count("execution.completed") == 2

    def test_flush_events_bounds_what_is_held(self, led: Ledger) -> None:
        heads = []
        with led.batch(flush_events=7):
            for x in range(6):
                execute_on(led, "block_make", x=x)
                heads.append(led.store.head())
        assert heads[0] == 0 and heads[-1] > 0  # committed inside the block, in whole batches
        assert whole_batches(led) and led.verify().ok
        assert [n.topic for n in led.store.iter_all()].count("execution.completed") == 6

    @pytest.mark.parametrize("bad", [0, -1, 1.5, "10", None])
    def test_bad_flush_events(self, mem: Ledger, bad: Any) -> None:
        with pytest.raises(InputValidationError, match="flush_events"):
            with mem.batch(flush_events=bad):
                pass

    def test_other_threads_write_after_the_block(self, led: Ledger) -> None:
        done = threading.Event()
        theirs: list[Any] = []

        def writer() -> None:
            theirs.append(execute_on(led, "block_make", x=100))
            done.set()

        with led.batch():
            mine = execute_on(led, "block_make", x=1)
            thread = threading.Thread(target=writer)
            thread.start()
            assert not done.wait(0.3)  # it waits for the block's write lock
            mine2 = execute_on(led, "block_make", x=2)
        thread.join(30)
        assert done.is_set()
        logged = logged_positions(led)
        pos = {e.x: logged[str(e.ecs_id)] for e in (mine, mine2, theirs[0])}
        assert pos[100] > pos[2] > pos[1]
        assert whole_batches(led) and led.verify().ok

    def test_facts_published_after_commit_in_order(self, mem: Ledger) -> None:
        from ledger.reactions import get_event_bus, on

        got: list[str] = []

        @on(pattern="execution.completed")
        def seen(event: Any) -> None:
            got.append(str(event.subject_id))

        try:
            with mem.batch():
                a = execute_on(mem, "block_make", x=1)
                b = execute_on(mem, "block_bump", p=a)
                assert got == []
            assert got == [str(a.derived_from_execution_id), str(b.derived_from_execution_id)]
        finally:
            get_event_bus().unsubscribe(seen) if hasattr(get_event_bus(), "unsubscribe") else None

    def test_erase_inside_a_block_commits_first(self, led: Ledger) -> None:
        with led.batch():
            a = execute_on(led, "block_make", x=1)
            led.erase(a.lineage_id, reason="test")
            assert led.store.head() > 0
            execute_on(led, "block_make", x=2)
        assert led.verify().ok and whole_batches(led)


class TestMap:
    def test_map_in_chunks_same_results(self, led: Ledger) -> None:
        from ledger.write.batch_map import MAP_CHUNK

        n = MAP_CHUNK + 5
        out = CallableRegistry.map("block_make", [{"x": i} for i in range(n)])
        assert [p.x for p in out] == list(range(n))
        assert [t.topic for t in led.store.iter_all()].count("execution.completed") == n
        assert whole_batches(led) and led.verify().ok
        for p in out[:3] + out[-3:]:
            assert EntityRegistry.get_stored_entity(p.ecs_id, p.ecs_id).x == p.x

    def test_map_failures_recorded_first_reraised(self, led: Ledger) -> None:
        base = execute_on(led, "block_make", x=1)
        with pytest.raises(RuntimeError, match="no for 1"):
            CallableRegistry.map("block_fail", [{"p": base}, {"p": base}])
        assert [t.topic for t in led.store.iter_all()].count("execution.failed") == 2


class TestCrash:
    def test_sigkill_mid_block_leaves_whole_executions(self, durable_url: str) -> None:
        Ledger(durable_url).close()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.batch_worker", durable_url, "20"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        done = kill_after(proc, 25, timeout=60)
        assert_index_whole(durable_url)
        with Ledger(durable_url) as led:
            assert whole_batches(led)
            assert led.verify().ok
            completed = [n.topic for n in led.store.iter_all()].count("execution.completed")
            # flushes of >= 20 events: some executions committed, the held tail lost
            assert 0 < completed < 2 * done + 2
            execute_on(led, "block_make", x=1)  # the ledger goes on
            assert led.verify().ok

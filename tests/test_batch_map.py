"""CallableRegistry.map over no executor, threads, a process pool and a Dask LocalCluster."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import ledger
from ledger import CallableRegistry, Ledger
from ledger.errors import ExecutorError, InputValidationError, UnknownFunctionError

from .scale_worker import Tally


def count(led: Ledger, event_type: str) -> int:
    return sum(1 for n in led.store.iter_all() if n.topic == event_type)


@pytest.fixture
def sqlite_led(tmp_path) -> Iterator[Ledger]:
    lg = ledger.connect(f"sqlite:///{tmp_path / 'map.db'}")
    yield lg
    lg.close()
    ledger.set_default_ledger(None)


@pytest.fixture(scope="module")
def spawn_pool() -> Iterator[ProcessPoolExecutor]:
    """Spawned workers: they share nothing with the test process but the store URL."""
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


class TestMapInProcess:
    def test_sequential_results_in_input_order(self, mem) -> None:
        """executor=None runs a loop: one recorded execution per call, results in order."""
        out = CallableRegistry.map("scale.make", [{"worker": 0, "n": i} for i in range(5)])
        assert [t.n for t in out] == list(range(5))
        assert all(isinstance(t, Tally) for t in out)
        assert count(mem, "execution.completed") == 5

    def test_threads_share_the_ledger(self, mem) -> None:
        """A ThreadPoolExecutor runs in this process, so even memory:// works."""
        with ThreadPoolExecutor(4) as pool:
            out = CallableRegistry.map("scale.make", [{"worker": 1, "n": i} for i in range(8)], executor=pool)
        assert [t.n for t in out] == list(range(8))
        assert count(mem, "execution.completed") == 8
        assert mem.verify().ok

    def test_a_failure_is_recorded_and_reraised_after_every_call_ran(self, mem) -> None:
        with pytest.raises(ValueError, match="negative input -2"):
            CallableRegistry.map("scale.fail", [{"x": 1}, {"x": -2}, {"x": 3}, {"x": -4}])
        assert count(mem, "execution.completed") == 2
        assert count(mem, "execution.failed") == 2

    def test_bad_arguments_are_refused_before_anything_runs(self, mem) -> None:
        with pytest.raises(UnknownFunctionError, match="nope"):
            CallableRegistry.map("nope", [{}])
        with pytest.raises(InputValidationError, match=r"kwargs_list\[1\]"):
            CallableRegistry.map("scale.make", [{"worker": 0, "n": 0}, 5])  # type: ignore[list-item]
        with pytest.raises(ExecutorError, match="executor"):
            CallableRegistry.map("scale.make", [], executor=object())  # type: ignore[arg-type]
        assert mem.store.head() == 0

    def test_progress_bar(self, mem, capsys) -> None:
        CallableRegistry.map("scale.make", [{"worker": 0, "n": i} for i in range(3)], progress=True)
        out = capsys.readouterr()
        assert "map scale.make" in out.out + out.err and "3/3" in out.out + out.err


class TestMapInProcesses:
    def test_memory_store_is_refused_for_a_process_pool(self, mem, spawn_pool) -> None:
        with pytest.raises(ExecutorError, match="memory://"):
            CallableRegistry.map("scale.make", [{"worker": 0, "n": 0}], executor=spawn_pool)
        assert mem.store.head() == 0

    def test_workers_write_the_shared_store(self, sqlite_led, spawn_pool) -> None:
        """Calls run in other processes, which append to the file; the parent reads results back."""
        out = CallableRegistry.map("scale.whoami", [{"x": i} for i in range(6)], executor=spawn_pool)
        assert [e.result[0] for e in out] == list(range(6))  # input order
        assert os.getpid() not in {e.result[1] for e in out}
        assert count(sqlite_led, "execution.completed") == 6
        assert sqlite_led.verify().ok

    def test_references_to_the_parents_entities_and_mutations(self, sqlite_led, spawn_pool) -> None:
        """Workers catch up first, so they resolve entities the parent has just stored."""
        made = CallableRegistry.map("scale.make", [{"worker": 9, "n": i} for i in range(4)])
        out = CallableRegistry.map("scale.bump", [{"t": f"@{t.ecs_id}"} for t in made], executor=spawn_pool)
        assert [t.n for t in out] == [1, 2, 3, 4]
        assert [t.lineage_id for t in out] == [t.lineage_id for t in made]  # new versions, same lineage
        assert [t.previous_ecs_id for t in out] == [t.ecs_id for t in made]

    def test_a_worker_failure_is_recorded_and_reraised(self, sqlite_led, spawn_pool) -> None:
        with pytest.raises(ValueError, match="negative input -1"):
            CallableRegistry.map("scale.fail", [{"x": 2}, {"x": -1}], executor=spawn_pool)
        sqlite_led.refresh()
        assert count(sqlite_led, "execution.failed") == 1
        assert count(sqlite_led, "execution.completed") == 1


class TestMapOnDask:
    def test_local_cluster_executor(self, tmp_path) -> None:
        """dask.distributed's Client.get_executor() is just another Executor: workers write the store."""
        distributed = pytest.importorskip("distributed")
        url = f"sqlite:///{tmp_path / 'dask.db'}"
        led = ledger.connect(url)
        try:
            with distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster, distributed.Client(cluster) as client:
                out = CallableRegistry.map(
                    "scale.whoami", [{"x": i} for i in range(6)], executor=client.get_executor()
                )
            assert [e.result[0] for e in out] == list(range(6))
            assert os.getpid() not in {e.result[1] for e in out}
            assert count(led, "execution.completed") == 6
            assert led.verify().ok
        finally:
            led.close()
            ledger.set_default_ledger(None)

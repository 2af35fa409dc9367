"""Group commit (``ledger.store.group_commit``): threads of one process share a transaction.

The queue is tested alone (every request hears its own outcome, groups form only while a
commit is under way) and on PostgreSQL: a group with a batch that loses a race commits the
others and tells only that one; threads executing through one ``Ledger`` lose nothing, and
the log verifies and matches its index.
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest

import ledger.store.postgres as pg_module
from ledger import CallableRegistry, Entity, Ledger, set_default_ledger
from ledger.events.seal import NewEvent
from ledger.store.group_commit import GroupCommit, Request

from .conftest import requires_pg


class TestTheQueue:
    def test_batches_arriving_during_a_commit_share_the_next_one(self) -> None:
        groups: list[list[int]] = []
        release = threading.Event()

        def commit_many(group: list[Request]) -> None:
            groups.append([r.item for r in group])
            if len(groups) == 1:
                assert release.wait(120)  # the first commit is slow: the others pile up
            for r in group:
                r.succeed([r.item])

        queue = GroupCommit(commit_many)
        results: dict[int, list[int]] = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, queue.submit(i))) for i in range(6)]
        threads[0].start()
        while not groups:
            time.sleep(0.001)
        for t in threads[1:]:
            t.start()
        while len(queue._queue) < 5:
            time.sleep(0.001)
        release.set()
        for t in threads:
            t.join(120)
        assert results == {i: [i] for i in range(6)}
        assert groups[0] == [0] and sorted(groups[1]) == [1, 2, 3, 4, 5] and len(groups) == 2

    def test_each_request_hears_its_own_error(self) -> None:
        def commit_many(group: list[Request]) -> None:
            for r in group:
                if r.item == "bad":
                    r.fail(ValueError("bad batch"))
                else:
                    r.succeed([1])

        queue = GroupCommit(commit_many)
        assert queue.submit("good") == [1]
        with pytest.raises(ValueError, match="bad batch"):
            queue.submit("bad")
        assert queue.submit("good") == [1]  # the queue goes on

    def test_a_commit_that_raises_fails_every_unsettled_request_and_frees_the_queue(self) -> None:
        calls = []

        def commit_many(group: list[Request]) -> None:
            calls.append(len(group))
            if len(calls) == 1:
                raise RuntimeError("connection lost")
            for r in group:
                r.succeed([2])

        queue = GroupCommit(commit_many)
        with pytest.raises(RuntimeError, match="connection lost"):
            queue.submit("x")
        assert queue.submit("y") == [2]


def _event(stream: uuid.UUID | None = None, version: int = 1) -> NewEvent:
    return NewEvent(stream or uuid.uuid4(), version, "test.event", orjson.dumps({"n": str(uuid.uuid4())}), None)


class Job(Entity):
    n: int


class Done(Entity):
    n: int


@CallableRegistry.register("group_commit_tests.finish")
def finish(job: Job) -> Done:
    return Done(n=job.n * 2)


@requires_pg
class TestOnPostgres:
    def test_a_batch_that_loses_a_race_fails_alone(self, pg_url: str) -> None:
        with Ledger(pg_url) as led:
            backend = led.store._backend
            taken = _event()
            led.store.append([taken])
            good_a, good_b = [_event(), _event()], [_event()]
            loser = [_event(), _event(taken.stream_id, 1)]  # version 1 of that stream is taken
            group = [Request((good_a, None)), Request((loser, None)), Request((good_b, None))]
            backend._commit_many(group)
            assert group[0].positions and group[2].positions
            assert isinstance(group[1].error, led.store._conflicts)  # EventStore.append turns it into ConcurrencyError
            stored = led.store.read_columns(1, 100).positions
            assert set(group[0].positions) | set(group[2].positions) <= set(stored)
            assert len(stored) == 1 + len(good_a) + len(good_b)  # nothing of the loser
            assert led.verify().ok
            assert led.store.stored_index() == led.store.rebuilt_index()

    def test_threads_through_one_ledger_share_transactions_and_lose_nothing(self, pg_url: str, monkeypatch) -> None:
        sizes: list[int] = []
        real = pg_module.PostgresBackend._commit_many

        def counted(self, group):  # type: ignore[no-untyped-def]
            sizes.append(len(group))
            return real(self, group)

        monkeypatch.setattr(pg_module.PostgresBackend, "_commit_many", counted)
        threads, per = 6, 15
        with Ledger(pg_url) as led:
            set_default_ledger(led)
            try:
                jobs = [Job(n=i) for i in range(threads)]
                for job in jobs:
                    led.registry.register_entity(job)
                errors: list[BaseException] = []
                done: list[int] = []

                def work(job: Job) -> None:
                    try:
                        for _ in range(per):
                            done.append(CallableRegistry.execute("group_commit_tests.finish", job=job).n)
                    except BaseException as exc:  # noqa: BLE001 - asserted below
                        errors.append(exc)

                workers = [threading.Thread(target=work, args=(job,)) for job in jobs]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join(120)
                assert errors == []
                assert sorted(done) == sorted(2 * j.n for j in jobs for _ in range(per))
                completed = led.sql("select count(*) from executions").fetchall()[0][0]
                assert completed == threads * per
                assert led.verify().ok
                assert led.store.stored_index() == led.store.rebuilt_index()
            finally:
                set_default_ledger(None)
        assert max(sizes) > 1, "no two batches ever shared a transaction"
        with Ledger(pg_url, replay=True) as replayed:
            assert replayed.verify().ok

    def test_threads_versioning_one_entity_never_race_each_other(self, pg_url: str) -> None:
        """Threads of one process writing the same stream: a batch waits for the one in flight
        on that stream to land before it seals, so none of them hears ``ConcurrencyError`` (as
        with one lock through the append; what each writes is its own object's state, as on
        SQLite), and the stream runs 1, 2, 3, ... with every version verified."""
        with Ledger(pg_url) as led:
            job = Job(n=0)
            led.registry.register_entity(job)
            errors: list[BaseException] = []
            written: list[bool] = []

            def bump(step: int) -> None:
                try:
                    for i in range(10):
                        current = led.registry.get_latest(job.lineage_id)
                        current.n = step * 100 + i
                        written.append(led.registry.version_entity(current))
                except BaseException as exc:  # noqa: BLE001 - asserted below
                    errors.append(exc)

            workers = [threading.Thread(target=bump, args=(k,)) for k in range(4)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(120)
            assert errors == []
            history = led.registry.history(job.lineage_id)
            assert len(history) == 1 + sum(written)
            assert led.verify().ok
            assert led.store.stored_index() == led.store.rebuilt_index()

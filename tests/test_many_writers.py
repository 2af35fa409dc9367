"""Many OS processes writing one SQLite file / one PostgreSQL schema at the same time."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest

from ledger import Ledger

from .conftest import fresh_pg_url
from .scale_worker import Counter, Tally
from .writer_procs import run_together

WORKERS = 4
N = 12  # make+bump pairs per worker: 24 executions each
INCREMENTS = 6  # shared-counter increments per worker, with the caller's retry loop


def check_log(led: Ledger) -> None:
    """Positions strictly increase and every stream's versions are 1, 2, 3, ... in log order."""
    versions: dict[object, list[int]] = defaultdict(list)
    last = 0
    for n in led.store.iter_all():
        assert n.id > last
        last = n.id
        versions[n.originator_id].append(n.originator_version)
    for stream, vs in versions.items():
        assert vs == list(range(1, len(vs) + 1)), f"stream {stream}: {vs}"


class TestManyWriters:
    def test_four_processes_lose_and_duplicate_nothing(self, durable_url) -> None:
        """4 writers at once: every event a worker committed is in the log once, nothing else is."""
        setup = Ledger(durable_url)  # creates the tables once, before the workers start
        counter = Counter()
        setup.registry.register_entity(counter)
        base = setup.store.head()
        reports = run_together(
            [["writers", durable_url, w, N, counter.lineage_id, INCREMENTS] for w in range(WORKERS)]
        )
        for r in reports:
            assert r["positions"] == sorted(r["positions"])
        mine = [p for r in reports for p in r["positions"]]
        assert len(mine) == len(set(mine)), "a position was handed to two writers"
        # PostgreSQL positions may skip a number (a losing insert consumed it), so
        # compare with what the log holds rather than with range(base, head).
        logged = [n.id for n in setup.store.iter_all(start=base + 1)]
        assert sorted(mine) == logged, "lost or foreign events"

        fresh = Ledger(durable_url)  # replays everything the workers wrote
        check_log(fresh)
        assert fresh.verify().ok
        assert fresh.registry.get_latest(counter.lineage_id).value == WORKERS * INCREMENTS  # no lost update
        tallies = [r for r in fresh.index.records.values() if r.topic.endswith("Tally")]
        assert len({r.lineage_id for r in tallies}) == WORKERS * N
        assert len(tallies) == 2 * WORKERS * N  # created, then bumped
        completed = fresh.sql("select count(*) from events where event_type='execution.completed'").fetchall()[0][0]
        assert completed == sum(r["executions"] for r in reports) == 2 * WORKERS * N
        assert setup.refresh() == len(logged)  # the first ledger catches up with all of it
        setup.close()
        fresh.close()

    def test_two_writers_on_one_lineage_one_loses(self, durable_url) -> None:
        """Two processes versioning the same head at once: one wins, the other gets ConcurrencyError."""
        setup = Ledger(durable_url)
        counter = Counter()
        setup.registry.register_entity(counter)
        reports = run_together([["race", durable_url, counter.lineage_id, w] for w in range(2)])
        assert sorted(r["outcome"] for r in reports) == ["lost", "won"]
        loser = next(r for r in reports if r["outcome"] == "lost")
        assert str(counter.lineage_id) in loser["error"]
        winner = reports.index(next(r for r in reports if r["outcome"] == "won"))
        history = Ledger(durable_url).registry.history(counter.lineage_id)
        assert [c.value for c in history] == [0, 100 + winner]  # never a silent overwrite
        assert setup.verify().ok
        setup.close()


class TestFollowers:
    def test_readers_following_the_log_skip_nothing_and_see_nothing_twice(self, durable_url) -> None:
        """Readers page through the log from their last position while 4 writers commit: each
        sees every position exactly once, in order, though writers commit in any order."""
        from .writer_procs import spawn

        setup = Ledger(durable_url)
        counter = Counter()
        setup.registry.register_entity(counter)
        base = setup.store.head()
        marker = Counter(value=-1)
        readers = [spawn("follow", durable_url, marker.lineage_id, page) for page in (1, 7)]
        try:
            for r in readers:
                assert r.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
                r.stdin.write("go\n")  # type: ignore[union-attr]
                r.stdin.flush()  # type: ignore[union-attr]
            run_together([["writers", durable_url, w, N, counter.lineage_id, INCREMENTS] for w in range(WORKERS)])
            setup.registry.register_entity(marker)  # after every writer: the readers' stop sign
            logged = [n.id for n in setup.store.iter_all()]
            for r in readers:
                out, err = r.communicate(timeout=300)
                assert r.returncode == 0, err
                report = __import__("json").loads(out.strip().splitlines()[-1])
                assert "timeout" not in report
                assert report["seen"] == logged, "a reader skipped or repeated a position"
            assert len(logged) > base + WORKERS * N * 2
        finally:
            for r in readers:
                if r.poll() is None:
                    r.kill()
                    r.wait()
            setup.close()


class TestFreshSchema:
    def test_processes_opening_a_new_schema_at_once(self) -> None:
        """The advisory lock around table creation lets 4 processes open a new PG schema together."""
        for url in fresh_pg_url():
            reports = run_together([["open", url, w] for w in range(WORKERS)])
            with Ledger(url) as led:
                assert led.store.head() == sum(len(r["positions"]) for r in reports) == WORKERS
                assert led.verify().ok

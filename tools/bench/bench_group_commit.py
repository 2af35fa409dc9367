"""Threads of one process executing through one PostgreSQL ``Ledger``: group commit against one lock.

For 1, 2, 4 and 8 threads, each runs ``--calls`` creation executions (one small registered
entity in, one out) through the same ``Ledger``:

- *group commit*: the library as it is (``Ledger.commit`` releases its lock while a batch
  travels; batches arriving together share a transaction, ``ledger.store.group_commit``);
- *one lock*: the same code with the backend's ``group_commit`` switched off, so every append
  runs under the ledger's lock, one transaction per batch (what the library did before).

Floor, same run: the same number of threads in one process, each committing ``--calls``
transactions of the rows one execution writes (the real sealed payloads) with raw psycopg into
an equivalent table, one connection per thread, no lock.

    .venv/bin/python tools/bench/bench_group_commit.py [--calls 200] [--pg URL] [--threads 1,2,4,8]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ledger import CallableRegistry, Ledger, set_default_ledger  # noqa: E402
from tools.bench._benchutil import Clock, fmt_rate, machine, note, table  # noqa: E402
from tools.bench.bench_writers import (  # noqa: E402
    PG,
    Reading,
    drop_schema,
    execution_rows,
    floor_schema,
)


def ledger_rate(pg: str, threads: int, calls: int, grouped: bool) -> tuple[float, int]:
    """Executions/s of ``threads`` threads through one ledger, and the largest group committed."""
    schema = f"bench_{uuid.uuid4().hex[:8]}_gc"
    sizes: list[int] = []
    try:
        led = Ledger(f"{pg}?schema={schema}")
        set_default_ledger(led)
        backend: Any = led.store._backend
        real = backend._commit_many
        backend._commit_many = lambda group: sizes.append(len(group)) or real(group)
        backend._group._commit_many = backend._commit_many
        backend.group_commit = grouped
        readings = [Reading(sensor=f"t{i}", value=1.0) for i in range(threads)]
        for r in readings:
            led.registry.register_entity(r)
        for _ in range(20):
            CallableRegistry.execute("bw_scale", r=readings[0])
        sizes.clear()
        errors: list[BaseException] = []

        def work(r: Reading) -> None:
            try:
                for _ in range(calls):
                    CallableRegistry.execute("bw_scale", r=r)
            except BaseException as exc:  # noqa: BLE001 - reported
                errors.append(exc)

        elapsed = run_threads(work, readings)
        if errors:
            raise errors[0]
        assert led.verify().ok
        led.close()
        set_default_ledger(None)
        return threads * calls / elapsed, max(sizes, default=1)
    finally:
        drop_schema(schema)


def run_threads(work: Any, items: list[Any]) -> float:
    """Seconds from starting one thread per item (``work(item)``) to the last one's end."""
    workers = [threading.Thread(target=work, args=(item,)) for item in items]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


def floor_rate(pg: str, threads: int, calls: int, rows: list[tuple[str, bytes]]) -> float:
    """Transactions/s of ``threads`` threads of one process committing one execution's rows each, raw psycopg."""
    import psycopg

    schema = floor_schema(pg, "gcfloor")
    insert = f'INSERT INTO "{schema}".floor (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)'
    conns = [psycopg.connect(pg) for _ in range(threads)]

    def work(conn: Any) -> None:
        for _ in range(calls):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(insert, [(uuid.uuid4(), 1, topic, state) for topic, state in rows])

    try:
        return threads * calls / run_threads(work, conns)
    finally:
        for c in conns:
            c.close()
        drop_schema(schema)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200, help="executions per thread")
    ap.add_argument("--pg", default=PG)
    ap.add_argument("--threads", default="1,2,4,8")
    args = ap.parse_args()
    clock = Clock()
    print(machine())
    print()
    sample = execution_rows(args.pg)
    rows = []
    for n in (int(x) for x in args.threads.split(",")):
        grouped, biggest = ledger_rate(args.pg, n, args.calls, grouped=True)
        locked, _ = ledger_rate(args.pg, n, args.calls, grouped=False)
        floor = floor_rate(args.pg, n, args.calls, sample)
        note(f"{n} threads: group commit {grouped:.0f}/s (largest group {biggest}), one lock {locked:.0f}/s, floor {floor:.0f}/s")
        rows.append(
            [str(n), f"{fmt_rate(grouped)}/s", str(biggest), f"{fmt_rate(locked)}/s", f"{grouped / locked:.2f}×", f"{fmt_rate(floor)}/s", f"{grouped / floor:.0%}"]
        )
    print(f"### Threads of one process, one Ledger, PostgreSQL ({args.calls} executions per thread)\n")
    print(
        table(
            ["threads", "group commit", "largest group", "one lock through the append", "speed-up", "floor: psycopg, a connection per thread", "group commit / floor"],
            rows,
        )
    )
    print(f"\n(total {clock.elapsed_s():.0f} s)")


if __name__ == "__main__":
    main()

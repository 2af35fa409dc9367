"""Aggregate executions/s with 1, 2, 4 and 8 writer processes, and ``map`` over a process pool.

Part 1: N spawned processes (released together by a barrier) each run ``--calls``
creation executions (one small entity in, one out) against one SQLite file (WAL,
synchronous=NORMAL) and one PostgreSQL schema; the rate is all executions over the wall
time from release to the last writer's finish. On PostgreSQL the ledger is run twice: alone,
and while a follower process reads the log as a follower does (pages from its last position,
every 5 ms, each page waiting for the high-water mark). PostgreSQL floors, same run, same
number of processes: each process commits ``--calls`` transactions of the rows one execution
writes (the real sealed payloads, fresh stream ids) with raw psycopg into an equivalent
table with a bigserial position: without any lock; holding ``LOCK TABLE ... IN EXCLUSIVE
MODE`` through commit (what the eventsourcing recorder, and this library's appends before
seal v3, do); and holding an advisory lock shared through commit while a reader takes it
exclusively every 5 ms (what ``ledger_append_v2`` and its readers do, without their work).
See docs/scale.md.
Part 2: ``CallableRegistry.map`` of a CPU-bound function (``--spins`` calls of
~``--rounds`` loop iterations) as a plain loop vs a warm 2-process pool.

    .venv/bin/python tools/bench/bench_writers.py [--calls 300] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ledger import CallableRegistry, Entity, Ledger, set_default_ledger  # noqa: E402
from tools.bench._benchutil import Clock, fmt_rate, machine, note, table  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"


class Reading(Entity):
    sensor: str
    value: float


class Scaled(Entity):
    sensor: str
    value: float


@CallableRegistry.register("bw_scale")
def bw_scale(r: Reading, factor: float = 2.0) -> Scaled:
    return Scaled(sensor=r.sensor, value=r.value * factor)


@CallableRegistry.register("bw_spin")
def bw_spin(x: int, rounds: int) -> int:
    acc = x
    for i in range(rounds):
        acc = (acc * 31 + i) % 1_000_003
    return acc


def _writer(url: str, calls: int, barrier: Any, out: Any) -> None:
    led = Ledger(url)
    set_default_ledger(led)
    reading = Reading(sensor=f"s{os.getpid()}", value=1.0)
    led.registry.register_entity(reading)
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(calls):
        CallableRegistry.execute("bw_scale", r=reading)
    out.put((t0, time.perf_counter()))
    led.close()


def released_together(target: Any, args: tuple[Any, ...], n: int, calls: int) -> float:
    """Calls/s of ``n`` spawned processes running ``target(*args, barrier, out)``, released at once;
    each reports (its start, its end) on ``out``: all calls over the wall time from release to the last end."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(n + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    spans = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return n * calls / (max(e for _, e in spans) - min(start, min(s for s, _ in spans)))


def writers_rate(url: str, n: int, calls: int, follower: bool = False) -> float:
    """Executions/s of ``n`` writer processes; with ``follower``, while a follower process reads the log."""
    reader = stop = None
    if follower:
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        reader = ctx.Process(target=_follower, args=(url, stop))
        reader.start()
    try:
        return released_together(_writer, (url, calls), n, calls)
    finally:
        if reader is not None:
            stop.set()
            reader.join()


def _follower(url: str, stop: Any) -> None:
    """Read the log from the last position seen, every 5 ms, as ``Ledger.follow`` does."""
    with Ledger(url, create=False) as led:
        last = 0
        while not stop.is_set():
            page = led.store.read_columns(last + 1, 1000)
            if len(page):
                last = page.positions[-1]
            time.sleep(0.005)


def execution_rows(pg: str) -> list[tuple[str, bytes]]:
    """(topic, sealed state) of the rows one creation execution writes, from a real one."""
    schema = f"bench_{uuid.uuid4().hex[:8]}_rows"
    url = f"{pg}?schema={schema}"
    try:
        with Ledger(url) as led:
            set_default_ledger(led)
            reading = Reading(sensor="probe", value=1.0)
            led.registry.register_entity(reading)
            head = led.store.head()
            CallableRegistry.execute("bw_scale", r=reading)
            rows = [(n.topic, bytes(n.state)) for n in led.store.iter_all(start=head + 1)]
            set_default_ledger(None)
    finally:
        drop_schema(schema)
    return rows


#: The advisory lock of the "barrier" floor: writers hold it shared through commit, the
#: high-water-mark reader takes it exclusively for an instant (see ``_barrier_reader``).
_BARRIER_KEY = 7245077


def _floor_writer(pg: str, schema: str, rows: list[tuple[str, bytes]], calls: int, lock: str, barrier: Any, out: Any) -> None:
    import psycopg

    conn = psycopg.connect(pg)
    insert = f'INSERT INTO "{schema}".floor (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)'
    barrier.wait()
    t0 = time.perf_counter()
    for _ in range(calls):
        with conn.transaction(), conn.cursor() as cur:
            if lock == "table":
                cur.execute(f'LOCK TABLE "{schema}".floor IN EXCLUSIVE MODE')
            elif lock == "barrier":
                cur.execute(f"SELECT pg_advisory_xact_lock_shared({_BARRIER_KEY})")
            cur.executemany(insert, [(uuid.uuid4(), 1, topic, state) for topic, state in rows])
    out.put((t0, time.perf_counter()))
    conn.close()


def _barrier_reader(pg: str, schema: str, stop: Any) -> None:
    """A follower's high-water mark, every 5 ms: once the exclusive advisory lock is granted, no
    writer that took a position is still in flight, so every position up to the sequence's
    value is final (committed, or a hole left by a rollback) and a reader may pass it."""
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        while not stop.is_set():
            with conn.transaction():
                conn.execute(f"SELECT pg_advisory_xact_lock({_BARRIER_KEY})")
                conn.execute(f'SELECT last_value FROM "{schema}".floor_notification_id_seq').fetchone()
            time.sleep(0.005)


def floor_rate(pg: str, n: int, calls: int, rows: list[tuple[str, bytes]], lock: str) -> float:
    """Transactions/s of ``n`` processes committing one execution's rows each, raw psycopg.

    ``lock``: "none"; "table" (``LOCK TABLE ... IN EXCLUSIVE MODE`` through commit, what the
    appends did before seal v3); "barrier" (each writer holds an advisory lock shared through
    commit while a reader process computes a high-water mark with it every 5 ms: what
    ``ledger_append_v2`` and its readers do, without their Python and plpgsql).
    """
    schema = floor_schema(pg, "floor")
    reader = stop = None
    if lock == "barrier":
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        reader = ctx.Process(target=_barrier_reader, args=(pg, schema, stop))
        reader.start()
    try:
        return released_together(_floor_writer, (pg, schema, rows, calls, lock), n, calls)
    finally:
        if reader is not None:
            stop.set()
            reader.join()
        drop_schema(schema)


def floor_schema(pg: str, tag: str) -> str:
    """A new schema holding ``floor``, a table like the ledger's events table (same key, a bigserial
    position with a unique index), for the raw-psycopg floors; returns its name."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}_{tag}"
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".floor (originator_id uuid NOT NULL, originator_version bigint NOT NULL, '
            "topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
        )
        conn.execute(f'CREATE UNIQUE INDEX ON "{schema}".floor (notification_id)')
    return schema


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def part_writers(calls: int, pg: str | None, tmp: str, counts: list[int]) -> None:
    rows = []
    sample = execution_rows(pg) if pg else []
    for n in counts:
        cells: list[str] = [str(n)]
        url = f"sqlite:///{tmp}/w{n}.db"
        Ledger(url).close()
        rate = writers_rate(url, n, calls)
        note(f"sqlite, {n} writers: {rate:.0f}/s")
        cells.append(f"{fmt_rate(rate)}/s")
        if pg:
            schema = f"bench_{uuid.uuid4().hex[:8]}_w{n}"
            url = f"{pg}?schema={schema}"
            Ledger(url).close()  # tables once, before the writers start
            try:
                rate = writers_rate(url, n, calls)
                followed = writers_rate(url, n, calls, follower=True)
            finally:
                drop_schema(schema)
            note(f"postgresql, {n} writers: {rate:.0f}/s, {followed:.0f}/s with a follower")
            free = floor_rate(pg, n, calls, sample, lock="none")
            locked = floor_rate(pg, n, calls, sample, lock="table")
            fenced = floor_rate(pg, n, calls, sample, lock="barrier")
            note(f"postgresql floors, {n} processes: {free:.0f}/s without a lock, {locked:.0f}/s table lock, {fenced:.0f}/s barrier")
            cells += [
                f"{fmt_rate(rate)}/s",
                f"{fmt_rate(followed)}/s",
                f"{fmt_rate(free)}/s",
                f"{fmt_rate(locked)}/s ({locked / free:.0%})",
                f"{fmt_rate(fenced)}/s ({fenced / free:.0%})",
                f"{rate / free:.0%}",
            ]
        else:
            cells += ["skipped"] * 6
        rows.append(cells)
    per = f"{len(sample)} rows" if sample else "its rows"
    print(f"### Writer processes ({calls} executions each; an execution commits {per} in one transaction)\n")
    print(
        table(
            [
                "writers",
                "SQLite executions/s",
                "PostgreSQL executions/s",
                "PostgreSQL, a follower reading",
                "floor: psycopg txns/s, no lock",
                "floor: psycopg txns/s, table lock",
                "floor: psycopg txns/s, shared lock + high-water-mark reader",
                "PostgreSQL / no-lock floor",
            ],
            rows,
        )
    )


def part_map(spins: int, rounds: int, tmp: str) -> None:
    led = Ledger(f"sqlite:///{tmp}/map.db")
    set_default_ledger(led)
    calls = [{"x": i, "rounds": rounds} for i in range(spins)]
    t0 = time.perf_counter()
    raw = [bw_spin(**kw) for kw in calls]
    t_raw = time.perf_counter() - t0
    t0 = time.perf_counter()
    looped = CallableRegistry.map("bw_spin", calls)
    t_loop = time.perf_counter() - t0
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        CallableRegistry.map("bw_spin", calls[:4], executor=pool)  # warm: workers imported, ledgers open
        t0 = time.perf_counter()
        pooled = CallableRegistry.map("bw_spin", calls, executor=pool)
        t_pool = time.perf_counter() - t0
    assert [e.result for e in looped] == [e.result for e in pooled] == raw
    led.close()
    per = t_raw / spins * 1000
    print(f"\n### map of a CPU-bound function ({spins} calls of ~{per:.0f} ms each, SQLite)\n")
    print(
        table(
            ["how", "wall time", "calls/s", "speed-up vs loop"],
            [
                ["raw Python loop (not recorded)", f"{t_raw:.2f} s", f"{spins / t_raw:.1f}", "–"],
                ["map, executor=None", f"{t_loop:.2f} s", f"{spins / t_loop:.1f}", "1.00×"],
                ["map, 2-process pool (warm)", f"{t_pool:.2f} s", f"{spins / t_pool:.1f}", f"{t_loop / t_pool:.2f}×"],
            ],
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--pg", default=PG)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--spins", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=400_000)
    ap.add_argument("--writers", default="1,2,4,8", help="numbers of writer processes, comma-separated")
    ap.add_argument("--no-map", action="store_true", help="skip part 2")
    args = ap.parse_args()
    clock = Clock()
    pg: str | None = None if args.no_pg else args.pg
    if pg:
        try:
            Ledger(f"{pg}?schema=bench_probe").close()
            drop_schema("bench_probe")
        except Exception as exc:  # noqa: BLE001 - reported, PostgreSQL columns skipped
            note(f"PostgreSQL skipped: {exc}")
            pg = None
    print(machine())
    print()
    with tempfile.TemporaryDirectory() as tmp:
        part_writers(args.calls, pg, tmp, [int(n) for n in args.writers.split(",")])
        if not args.no_map:
            part_map(args.spins, args.rounds, tmp)
    print(f"\n(total {clock.elapsed_s():.0f} s)")


if __name__ == "__main__":
    main()

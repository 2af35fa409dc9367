"""Aggregate executions/s with 1, 2 and 4 writer processes, and ``map`` over a process pool.

Part 1: N spawned processes (released together by a barrier) each run ``--calls``
creation executions (one small entity in, one out: 5 events per batch) against
one SQLite file (WAL, synchronous=NORMAL) and one PostgreSQL schema; the rate is
all executions over the wall time from release to the last writer's finish.
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


def writers_rate(url: str, n: int, calls: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(n + 1), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, calls, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    spans = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    end = max(e for _, e in spans)
    return n * calls / (end - min(start, min(s for s, _ in spans)))


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def part_writers(calls: int, pg: str | None, tmp: str) -> None:
    rows = []
    for n in (1, 2, 4):
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
            finally:
                drop_schema(schema)
            note(f"postgresql, {n} writers: {rate:.0f}/s")
            cells.append(f"{fmt_rate(rate)}/s")
        else:
            cells.append("skipped")
        rows.append(cells)
    print(f"### Writer processes ({calls} executions each, 5 events per execution batch)\n")
    print(table(["writers", "SQLite executions/s", "PostgreSQL executions/s"], rows))


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
        part_writers(args.calls, pg, tmp)
        part_map(args.spins, args.rounds, tmp)
    print(f"\n(total {clock.elapsed_s():.0f} s)")


if __name__ == "__main__":
    main()

"""The read side at scale: rebuild, DuckDB sync, GROUP BY, as_of, incremental catch-up.

A log of about ``--events`` events of the realistic mix in ``tools/workload.py``
(registration, versions, executions of every output semantic, references,
configs, failures, detach/attach) is written once through the real API into a
SQLite file (kept in ``--cache`` and reused), then measured against the floor:
raw ``sqlite3`` SELECT of the same rows, and ``orjson.loads`` of the same payloads.

    .venv/bin/python tools/bench/bench_read.py [--events 1000000] [--versions 100000]
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import orjson  # noqa: E402

import ledger  # noqa: E402
from ledger import Entity, Ledger  # noqa: E402
from projections.analytics import Analytics  # noqa: E402
from tools.bench._benchutil import Clock, fmt_rate, fmt_us, machine, median, note, table  # noqa: E402
from tools.workload import Workload  # noqa: E402


class Counter(Entity):
    n: int


def build_log(path: str, events: int) -> None:
    if os.path.exists(path):
        with sqlite3.connect(path) as con:
            have = con.execute("SELECT max(rowid) FROM stored_events").fetchone()[0] or 0
        if have >= events:
            note(f"reusing {path} ({have:,} events)")
            return
        os.remove(path)
    note(f"writing ~{events:,} events to {path} through the API (once; reused next time)…")
    t = time.perf_counter()
    led = ledger.connect(f"sqlite:///{path}")
    work = Workload(led, seed=7)
    while led.store.head() < events:
        work.run(2_000)
        if len(work.students) > 2_000:  # keep the live working set small, as a long-running writer would
            work.students = work.students[-500:]
    note(f"  {led.store.head():,} events in {time.perf_counter() - t:.0f} s")
    led.close()


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``fn``, with the cyclic GC paused (as the ledger's own replay does)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        finally:
            gc.enable()
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--versions", type=int, default=100_000)
    ap.add_argument("--cache", default="/tmp/entity-ledger-bench")
    args = ap.parse_args()
    clock = Clock()
    os.makedirs(args.cache, exist_ok=True)
    path = os.path.join(args.cache, f"read_{args.events}.db")
    build_log(path, args.events)

    rows: list[list[object]] = []
    with sqlite3.connect(path) as con:
        n = con.execute("SELECT count(*) FROM stored_events").fetchone()[0]
        t_select = timed(lambda: con.execute("SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid").fetchall())
        states = [r[0] for r in con.execute("SELECT state FROM stored_events ORDER BY rowid")]
    t_loads = timed(lambda: [orjson.loads(s) for s in states])
    del states
    floor = n / (t_select + t_loads)
    rows.append(["floor: sqlite3 SELECT all + orjson.loads", f"{n:,}", f"{t_select + t_loads:.2f} s", fmt_rate(floor) + "/s", "1.00"])

    t_index = timed(lambda: Ledger(f"sqlite:///{path}").close())
    rows.append(["inline index replay (new Ledger)", f"{n:,}", f"{t_index:.2f} s", fmt_rate(n / t_index) + "/s", f"{(n / t_index) / floor:.2f}"])

    led = Ledger(f"sqlite:///{path}")
    store = led.store
    t_read = timed(lambda: [store.read_columns(p, 50_000) for p in range(1, n + 1, 50_000)])
    rows.append(["store.read_columns (raw pages)", f"{n:,}", f"{t_read:.2f} s", fmt_rate(n / t_read) + "/s", f"{(n / t_read) / floor:.2f}"])

    analytics = Analytics(store)
    t_rebuild = timed(analytics.catch_up)
    rows.append(["analytics full rebuild (all tables)", f"{n:,}", f"{t_rebuild:.2f} s", fmt_rate(n / t_rebuild) + "/s", f"{(n / t_rebuild) / floor:.2f}"])
    t_duck = t_rebuild - t_read
    rows.append(["  of which DuckDB (rebuild − read)", f"{n:,}", f"{t_duck:.2f} s", fmt_rate(n / t_duck) + "/s", "–"])

    executions = analytics.con.execute("SELECT count(*) FROM executions").fetchall()[0][0]
    group_by = "SELECT function_name, succeeded, count(*), avg(duration_ms), max(duration_ms) FROM {} GROUP BY ALL"
    t_group = timed(lambda: analytics.con.execute(group_by.format("executions")).fetchall(), repeat=5)
    rows.append([f"GROUP BY over executions ({executions:,} rows)", "–", fmt_us(t_group * 1e9), "–", "–"])
    copies = max(1, -(-1_000_000 // max(executions, 1)))
    analytics.con.execute(f"CREATE TEMP TABLE executions_1m AS SELECT e.* FROM executions e, range({copies}) LIMIT 1000000")
    t_group_1m = timed(lambda: analytics.con.execute(group_by.format("executions_1m")).fetchall(), repeat=5)
    rows.append(["GROUP BY over 1,000,000 execution rows (real rows ×%d)" % copies, "–", fmt_us(t_group_1m * 1e9), "–", "–"])

    # Incremental: 1k new events on top of the big log cost ~1k events, not the whole log.
    work = Workload(led, seed=11)
    head = store.head()
    while store.head() < head + 1_000:
        work.step("curve" if work.students else "register", store.head())
    added = store.head() - head
    t_incr = timed(analytics.catch_up)
    rows.append([f"incremental catch-up of {added:,} new events", f"{added:,}", fmt_us(t_incr * 1e9), fmt_rate(added / t_incr) + "/s", "–"])
    t_nothing = timed(analytics.catch_up, repeat=5)
    rows.append(["catch-up with nothing new", "0", fmt_us(t_nothing * 1e9), "–", "–"])
    led.close()

    print(f"# read side, {n:,} events of the workload mix on SQLite\n\n{machine()}\n")
    print(table(["operation", "events", "time", "rate", "× floor"], rows))

    # as_of latency at growing history lengths of one lineage (binary search: must not grow linearly).
    led = ledger.connect("memory://")
    c = Counter(n=0)
    led.registry.register_entity(c)
    marks = sorted({10, 1_000, args.versions})
    as_rows = []
    done = 1
    for m in marks:
        while done < m:
            c.n += 1
            led.registry.version_entity(c)
            done += 1
        head = led.store.head()
        probes = [1 + (i * 7919) % head for i in range(2_000)]
        lat, find = [], []
        for p in probes:
            t = time.perf_counter_ns()
            led.index.version_at(c.lineage_id, p)
            find.append(time.perf_counter_ns() - t)
            t = time.perf_counter_ns()
            led.registry.as_of(c.lineage_id, position=p)
            lat.append(time.perf_counter_ns() - t)
        as_rows.append([f"{m:,}", fmt_us(median(find)), fmt_us(median(lat)), fmt_us(sorted(lat)[int(len(lat) * 0.99)])])
    led.close()
    print("\n## as_of latency, one lineage\n")
    print(table(["versions", "find the version (median)", "as_of with the entity (median)", "as_of p99"], as_rows))
    print(f"\n(wall time {clock.elapsed_s():.0f} s)")


if __name__ == "__main__":
    main()

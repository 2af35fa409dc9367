"""Per-call cost of ``CallableRegistry.execute`` next to the raw Python call.

Cases: (a) creation from one 5-field entity, (b) mutation, (c) two ``@uuid.field``
references, (d) a tuple of 3 entities, (e) process isolation; on a memory store
and SQLite (WAL, synchronous=NORMAL and FULL), with a small and a large number
of entities already in the ledger; then RSS growth over many executions on SQLite.

    .venv/bin/python tools/bench/bench_execute.py [--small 1000] [--large 100000] [--calls 2000]
    .venv/bin/python tools/bench/bench_execute.py --target-only [--rounds 7] [--calls 300] [--batch-calls 1000]

First it prints issue 28's target: ``execute`` of creation, mutation and a tuple of 3 on
SQLite NORMAL at most 5x the raw ``sqlite3`` write of the same records (moonshot 3x). The
floor runs in the same process, interleaved round by round with ours: the rows one call of
ours wrote (read back from ``stored_events``), ``orjson.dumps`` of each and one
``BEGIN; INSERT ...; COMMIT`` into a WAL database with ``synchronous=NORMAL``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import ledger  # noqa: E402
from ledger import CallableRegistry, Entity  # noqa: E402
from ledger.write.batch import Batch  # noqa: E402
from ledger.model.tree import build_entity_tree  # noqa: E402
from ledger.write.planning import add_plan, plan_tree  # noqa: E402


class Item(Entity):
    name: str
    qty: int
    price: float
    sku: str
    active: bool


class Summary(Entity):
    label: str
    total: float


@CallableRegistry.register("b_create")
def b_create(item: Item) -> Summary:
    return Summary(label=item.name, total=item.qty * item.price)


@CallableRegistry.register("b_mutate")
def b_mutate(item: Item) -> Item:
    item.qty += 1
    return item


@CallableRegistry.register("b_refs")
def b_refs(qty: int, price: float) -> float:
    return qty * price


@CallableRegistry.register("b_tuple")
def b_tuple(item: Item) -> tuple[Summary, Summary, Summary]:
    return (
        Summary(label="a", total=item.price),
        Summary(label="b", total=item.qty),
        Summary(label="c", total=item.price * item.qty),
    )


@CallableRegistry.register("b_process", isolation="process")
def b_process(item: Item) -> Summary:
    return Summary(label=item.name, total=item.qty * item.price)


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fill(led: ledger.Ledger, n: int) -> None:
    """n root entities, written in batches of 1,000 through the normal planner."""
    for start in range(0, n, 1000):
        batch = Batch(led.index)
        for i in range(start, min(n, start + 1000)):
            plan = plan_tree(led.index, build_entity_tree(Item(name=f"f{i}", qty=i, price=1.0, sku="s", active=True)))
            add_plan(batch, plan, "register")
        led.commit(batch)


def per_call(fn: Callable[[], Any], calls: int) -> float:
    """Median of 5 rounds of the mean per-call time, in microseconds."""
    rounds = []
    per_round = max(1, calls // 5)
    for _ in range(5):
        gc.collect()
        t = time.perf_counter()
        for _ in range(per_round):
            fn()
        rounds.append((time.perf_counter() - t) / per_round * 1e6)
    rounds.sort()
    return rounds[2]


def measure(url: str, preload: int, calls: int, process_calls: int) -> dict[str, tuple[float, float]]:
    led = ledger.connect(url)
    try:
        fill(led, preload)
        item = Item(name="widget", qty=3, price=2.5, sku="W-1", active=True)
        item.promote_to_root()
        ex = CallableRegistry.execute
        refs = (f"@{item.ecs_id}.qty", f"@{item.ecs_id}.price")
        state = {"cur": item}

        def mutate() -> None:
            state["cur"] = ex("b_mutate", item=state["cur"])

        raw_item = Item(name="widget", qty=3, price=2.5, sku="W-1", active=True)
        cases: dict[str, tuple[Callable[[], Any], Callable[[], Any], int]] = {
            "(a) creation": (lambda: ex("b_create", item=item), lambda: b_create(raw_item), calls),
            "(b) mutation": (mutate, lambda: b_mutate(raw_item), calls),
            "(c) 2 @refs": (lambda: ex("b_refs", qty=refs[0], price=refs[1]), lambda: b_refs(3, 2.5), calls),
            "(d) tuple of 3": (lambda: ex("b_tuple", item=item), lambda: b_tuple(raw_item), calls),
            "(e) process": (lambda: ex("b_process", item=item), lambda: b_process(raw_item), process_calls),
        }
        out = {}
        for name, (run, raw, n) in cases.items():
            for _ in range(min(50, n)):  # warm up
                run()
            out[name] = (per_call(run, n), per_call(raw, max(n, 1000)))
        return out
    finally:
        led.close()
        ledger.set_default_ledger(None)


def rss_growth(url: str, executions: int) -> tuple[float, float]:
    led = ledger.connect(url)
    try:
        item = Item(name="widget", qty=3, price=2.5, sku="W-1", active=True)
        item.promote_to_root()
        for _ in range(200):
            CallableRegistry.execute("b_create", item=item)
        gc.collect()
        before = rss_mib()
        t = time.perf_counter()
        for _ in range(executions):
            CallableRegistry.execute("b_create", item=item)
        elapsed = time.perf_counter() - t
        gc.collect()
        return rss_mib() - before, elapsed / executions * 1e6
    finally:
        led.close()
        ledger.set_default_ledger(None)


TARGET = 5.0
MOONSHOT = 3.0
TARGET_CASES = ("creation", "mutation", "tuple of 3")


class RawFloor:
    """Raw ``sqlite3`` + ``orjson``: one transaction inserting the rows one call of ours wrote."""

    def __init__(self, path: str) -> None:
        self.con = sqlite3.connect(path, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute(
            "CREATE TABLE ev (id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, "
            "version INTEGER NOT NULL, topic TEXT NOT NULL, state BLOB NOT NULL, UNIQUE(stream, version))"
        )

    def write(self, rows: list[tuple[str, Any]]) -> int:
        """One call's rows (topic, decoded state) written once; returns nanoseconds."""
        import uuid

        import orjson

        streams = [uuid.uuid4().hex for _ in rows]  # ids made before the clock starts
        t0 = time.perf_counter_ns()
        params = [(s, 1, t, orjson.dumps(d)) for s, (t, d) in zip(streams, rows)]
        self.con.execute("BEGIN")
        self.con.executemany("INSERT INTO ev (stream, version, topic, state) VALUES (?, ?, ?, ?)", params)
        self.con.execute("COMMIT")
        return time.perf_counter_ns() - t0


def rows_of_last_call(path: str, before: int) -> list[tuple[str, Any]]:
    """The (topic, state) rows the store gained after notification ``before``."""
    import orjson

    con = sqlite3.connect(path)
    try:
        got = con.execute(
            "SELECT topic, state FROM stored_events WHERE rowid > ? ORDER BY rowid", (before,)
        ).fetchall()
    finally:
        con.close()
    return [(t, orjson.loads(s)) for t, s in got]


def max_rowid(path: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT coalesce(max(rowid), 0) FROM stored_events").fetchone()[0])
    finally:
        con.close()


def target_table(tmp: str, rounds: int, calls: int) -> list[str]:
    """Issue 28's execute target: p50 per scenario on SQLite NORMAL against the raw floor, same run."""
    path = f"{tmp}/target.db"
    led = ledger.connect(f"sqlite:///{path}?synchronous=NORMAL")
    floor = RawFloor(f"{tmp}/floor.db")
    try:
        item = Item(name="widget", qty=3, price=2.5, sku="W-1", active=True)
        item.promote_to_root()
        ex = CallableRegistry.execute
        state = {"cur": item}

        def mutate() -> None:
            state["cur"] = ex("b_mutate", item=state["cur"])

        runs: dict[str, Callable[[], Any]] = {
            "creation": lambda: ex("b_create", item=item),
            "mutation": mutate,
            "tuple of 3": lambda: ex("b_tuple", item=item),
        }
        captured: dict[str, list[tuple[str, Any]]] = {}
        for name, run in runs.items():
            for _ in range(50):  # warm up
                run()
            before = max_rowid(path)
            run()
            captured[name] = rows_of_last_call(path, before)
        ours: dict[str, list[float]] = {n: [] for n in runs}
        raw: dict[str, list[float]] = {n: [] for n in runs}
        ratios: dict[str, list[float]] = {n: [] for n in runs}
        for r in range(rounds):
            for name, run in runs.items():
                gc.collect()
                samples = []
                for _ in range(calls):
                    t0 = time.perf_counter_ns()
                    run()
                    samples.append(time.perf_counter_ns() - t0)
                floor_samples = [floor.write(captured[name]) for _ in range(calls)]
                o, f = statistics.median(samples) / 1e3, statistics.median(floor_samples) / 1e3
                ours[name].append(o)
                raw[name].append(f)
                ratios[name].append(o / f)
    finally:
        led.close()
        ledger.set_default_ledger(None)
    lines = [
        f"Target (issue 28): execute on SQLite NORMAL <= {TARGET:g}x the raw sqlite3 write of the same records "
        f"(moonshot {MOONSHOT:g}x); {rounds} rounds x {calls} calls, p50 per round, median [range] over rounds.",
        "",
        "| scenario | rows | ours p50 | raw sqlite3 floor p50 | ours / floor | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in runs:
        ratio = statistics.median(ratios[name])
        verdict = "met (moonshot too)" if ratio <= MOONSHOT else "met" if ratio <= TARGET else "NOT met"
        lines.append(
            f"| {name} | {len(captured[name])} | {statistics.median(ours[name]):,.0f} µs "
            f"[{min(ours[name]):,.0f}–{max(ours[name]):,.0f}] | {statistics.median(raw[name]):,.1f} µs "
            f"[{min(raw[name]):,.1f}–{max(raw[name]):,.1f}] | {ratio:.1f}× [{min(ratios[name]):.1f}–"
            f"{max(ratios[name]):.1f}] | {verdict} |"
        )
    return lines


def batch_table(tmp: str, rounds: int, per_block: int) -> list[str]:
    """Creations inside ``with led.batch():`` next to the raw floor of the same rows in one transaction.

    Per call: the block's whole time (every execution and the one commit at its end) divided
    by its executions; the floor: the rows those executions wrote, ``orjson.dumps`` of each and
    one ``BEGIN; INSERT ...; COMMIT`` of them all, divided the same way.
    """
    path = f"{tmp}/batch.db"
    led = ledger.connect(f"sqlite:///{path}?synchronous=NORMAL")
    floor = RawFloor(f"{tmp}/batch_floor.db")
    ours: list[float] = []
    raw: list[float] = []
    ratios: list[float] = []
    one: list[float] = []
    try:
        item = Item(name="widget", qty=3, price=2.5, sku="W-1", active=True)
        item.promote_to_root()
        ex = CallableRegistry.execute
        with led.batch():  # warm up
            for _ in range(50):
                ex("b_create", item=item)
        for _ in range(rounds):
            gc.collect()
            before = max_rowid(path)
            t0 = time.perf_counter_ns()
            with led.batch(flush_events=1 << 30):
                for _ in range(per_block):
                    ex("b_create", item=item)
            o = (time.perf_counter_ns() - t0) / per_block / 1e3
            rows = rows_of_last_call(path, before)
            f = floor.write(rows) / per_block / 1e3
            singles = []
            for _ in range(min(per_block, 200)):
                t1 = time.perf_counter_ns()
                ex("b_create", item=item)
                singles.append(time.perf_counter_ns() - t1)
            ours.append(o)
            raw.append(f)
            ratios.append(o / f)
            one.append(statistics.median(singles) / 1e3)
    finally:
        led.close()
        ledger.set_default_ledger(None)
    ratio = statistics.median(ratios)
    verdict = "met (moonshot too)" if ratio <= MOONSHOT else "met" if ratio <= TARGET else "NOT met"
    return [
        "",
        f"Batch: {per_block} creations in one `with led.batch():` per round, {rounds} rounds; per call = block time / "
        "calls; floor = the same rows in one raw sqlite3 transaction / calls; one by one = p50 of single calls, same round.",
        "",
        "| scenario | rows | ours per call | raw floor per call | ours / floor | one by one p50 | target |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| creation, batch of {per_block} | {len(rows)} | {statistics.median(ours):,.0f} µs [{min(ours):,.0f}–{max(ours):,.0f}] "
        f"| {statistics.median(raw):,.1f} µs [{min(raw):,.1f}–{max(raw):,.1f}] | {ratio:.1f}× [{min(ratios):.1f}–{max(ratios):.1f}] "
        f"| {statistics.median(one):,.0f} µs | {verdict} |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--process-calls", type=int, default=200)
    ap.add_argument("--rss-executions", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=7, help="target table: rounds (each: ours, then the floor)")
    ap.add_argument("--target-calls", type=int, default=300, help="target table: calls per scenario per round")
    ap.add_argument("--batch-calls", type=int, default=1000, help="batch table: creations per block")
    ap.add_argument("--target-only", action="store_true", help="print only the target table")
    args = ap.parse_args()
    try:
        from _benchutil import machine  # type: ignore[import-not-found]

        print(machine())
    except Exception:  # noqa: BLE001 - the helper is optional
        pass
    tmp = tempfile.mkdtemp(prefix="bench-execute-")
    print("\n".join(target_table(tmp, args.rounds, args.target_calls)))
    print("\n".join(batch_table(tmp, args.rounds, args.batch_calls)))
    if args.target_only:
        return
    # first, while the process is fresh: freed memory of later runs would hide growth
    growth, per = rss_growth(f"sqlite:///{tmp}/rss.db?synchronous=NORMAL", args.rss_executions)
    stores = [
        ("memory", lambda n: "memory://"),
        ("sqlite NORMAL", lambda n: f"sqlite:///{tmp}/normal-{n}.db?synchronous=NORMAL"),
        ("sqlite FULL", lambda n: f"sqlite:///{tmp}/full-{n}.db?synchronous=FULL"),
    ]
    rows = []
    for store, make_url in stores:
        for preload in (args.small, args.large):
            res = measure(make_url(preload), preload, args.calls, args.process_calls)
            rows.append((store, preload, res))
            print(f"  measured {store} with {preload:,} entities", file=sys.stderr)
    names = list(rows[0][2])
    print()
    print("| store | entities in ledger | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for store, preload, res in rows:
        cells = [f"{res[n][0]:,.0f} µs" for n in names]
        print(f"| {store} | {preload:,} | " + " | ".join(cells) + " |")
    raw = rows[0][2]
    print("| raw Python call | – | " + " | ".join(f"{raw[n][1]:,.1f} µs" for n in names) + " |")
    print()
    print(
        f"RSS growth over {args.rss_executions:,} executions of (a) on SQLite NORMAL: "
        f"{growth:.1f} MiB ({per:,.0f} µs per call)"
    )


if __name__ == "__main__":
    main()

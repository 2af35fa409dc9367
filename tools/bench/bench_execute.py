"""Per-call cost of ``CallableRegistry.execute`` next to the raw Python call.

Cases: (a) creation from one 5-field entity, (b) mutation, (c) two ``@uuid.field``
references, (d) a tuple of 3 entities, (e) process isolation; on a memory store
and SQLite (WAL, synchronous=NORMAL and FULL), with a small and a large number
of entities already in the ledger; then RSS growth over many executions on SQLite.

    .venv/bin/python tools/bench/bench_execute.py [--small 1000] [--large 100000] [--calls 2000]
"""

from __future__ import annotations

import argparse
import gc
import os
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--process-calls", type=int, default=200)
    ap.add_argument("--rss-executions", type=int, default=10_000)
    args = ap.parse_args()
    try:
        from _benchutil import machine  # type: ignore[import-not-found]

        print(machine())
    except Exception:  # noqa: BLE001 - the helper is optional
        pass
    tmp = tempfile.mkdtemp(prefix="bench-execute-")
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

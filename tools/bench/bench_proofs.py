"""Signed tree heads and proofs (``ledger.store.merkle``): what they cost at several log sizes.

For each size, a SQLite log of one-record batches' worth of small records is written raw
(``EventStore.append``, 500 records a batch) and measured:

- ``tree_head``: the head of the whole log (tiles read, last partial tile checked against the records);
- ``prove_inclusion`` / ``prove_consistency``: one proof at a random position / old size, checked
  against its head before it is returned (median of 30);
- ``verify`` per record: the whole ``Ledger.verify`` (seals, chains, and the tiles rebuilt and compared);
- next to each, a hashlib floor: for a proof, the hashes a verifier does (log2 n), for verify the
  2n hashes of rebuilding the tree from the seals;
- append cost with and without the tree's maintenance (records/s over 20,000 records, same batches,
  5 rounds taking turns), and the same through the entity API (``execute`` creation, p50).

    .venv/bin/python tools/bench/bench_proofs.py [--sizes 10000,100000,1000000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ledger import Ledger  # noqa: E402
from ledger.events.seal import NewEvent  # noqa: E402
from tools.bench._benchutil import machine, median, note, table  # noqa: E402

BATCH = 500


def fill(led: Ledger, count: int) -> float:
    """Append ``count`` small records in batches; returns the seconds it took."""
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        led.store.append([NewEvent(uuid.uuid4(), 1, "bench.note", b'{"n":%d,"pad":"%s"}' % (i, b"x" * 200), None) for i in range(start, min(count, start + BATCH))])
    return time.perf_counter() - started


def timed_ms(fn: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return median(samples)


def floor_path_ms(n: int) -> float:
    """The hashes a verifier does for one proof: about log2(n) node hashes."""
    depth, blob = max(1, n.bit_length()), b"\x01" + b"a" * 64
    started = time.perf_counter()
    for _ in range(1000):
        for _ in range(depth):
            hashlib.sha256(blob).digest()
    return (time.perf_counter() - started) / 1000 * 1000


def floor_tree_us_per_record() -> float:
    """Rebuilding a tree from seals: one leaf hash and (about) one node hash per record."""
    seal, node = b"\x00" + b"s" * 32, b"\x01" + b"n" * 64
    started = time.perf_counter()
    for _ in range(200_000):
        hashlib.sha256(seal).digest()
        hashlib.sha256(node).digest()
    return (time.perf_counter() - started) / 200_000 * 1e6


def append_rates(directory: str, rounds: int = 5) -> tuple[float, float]:
    """Records/s appending 20,000 records with the tree's maintenance, and with it switched off:
    the median of ``rounds`` rounds, the two taking turns (the machine's load drifts)."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds):
        for maintain in (True, False):
            path = os.path.join(directory, f"append-{maintain}-{r}.db")
            with Ledger(f"sqlite:///{path}") as led:
                if not maintain:
                    led.store.tree.after_append = lambda positions, seals=None: None  # type: ignore[method-assign]
                fill(led, 2_000)  # warm up
                rates[maintain].append(20_000 / fill(led, 20_000))
    return median(rates[True]), median(rates[False])


def execute_cost(directory: str, rounds: int = 5, calls: int = 400) -> tuple[float, float, float, float]:
    """µs per ``CallableRegistry.execute`` creation (bench_execute's ``b_create``, SQLite NORMAL) with the
    tree's maintenance and with it switched off, as (p50 with, p50 without, mean with, mean without):
    medians over ``rounds`` rounds taking turns. The mean counts what p50 hides, the call that writes tiles."""
    import statistics

    import ledger
    from ledger import CallableRegistry
    from tools.bench.bench_execute import Item  # registers b_create

    leds = {}
    for maintain in (True, False):
        led = ledger.connect(f"sqlite:///{directory}/execute-{maintain}.db?synchronous=NORMAL")
        if not maintain:
            led.store.tree.after_append = lambda positions, seals=None: None  # type: ignore[method-assign]
        leds[maintain] = led
    p50: dict[bool, list[float]] = {True: [], False: []}
    mean: dict[bool, list[float]] = {True: [], False: []}
    try:
        items = {}
        for maintain, led in leds.items():
            ledger.set_default_ledger(led)
            items[maintain] = Item(name="widget", qty=3, price=2.5, sku="W-1", active=True)
            items[maintain].promote_to_root()
            for _ in range(100):  # warm up
                CallableRegistry.execute("b_create", item=items[maintain])
        for r in range(rounds):
            for maintain in (True, False) if r % 2 else (False, True):
                led = leds[maintain]
                ledger.set_default_ledger(led)
                samples = []
                for _ in range(calls):
                    started = time.perf_counter_ns()
                    CallableRegistry.execute("b_create", item=items[maintain])
                    samples.append(time.perf_counter_ns() - started)
                p50[maintain].append(statistics.median(samples) / 1e3)
                mean[maintain].append(statistics.fmean(samples) / 1e3)
    finally:
        for led in leds.values():
            led.close()
        ledger.set_default_ledger(None)
    return median(p50[True]), median(p50[False]), median(mean[True]), median(mean[False])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    print(machine())
    directory = tempfile.mkdtemp(prefix="bench-proofs-", dir=args.dir)
    with_tree, without = append_rates(directory)
    note(f"append (SQLite, {BATCH} records a batch): {with_tree:,.0f}/s with the tree, {without:,.0f}/s without ({(without / with_tree - 1) * 100:+.1f}% cost)")
    ours, off, ours_mean, off_mean = execute_cost(directory)
    note(
        f"execute creation (SQLite NORMAL): p50 {ours:,.1f} µs with the tree, {off:,.1f} µs without ({(ours / off - 1) * 100:+.1f}%); "
        f"mean {ours_mean:,.1f} µs with, {off_mean:,.1f} µs without ({(ours_mean / off_mean - 1) * 100:+.1f}%)"
    )
    tree_floor = floor_tree_us_per_record()
    rows = []
    rng = random.Random(7)
    for n in (int(s) for s in args.sizes.split(",")):
        path = os.path.join(directory, f"log-{n}.db")
        with Ledger(f"sqlite:///{path}") as led:
            built = fill(led, n)
            head = led.tree_head()
            floor = floor_path_ms(n)
            rows.append((f"{n:,}", "tree_head", f"{timed_ms(led.tree_head, 30):.2f} ms", f"{floor:.3f} ms"))
            rows.append((f"{n:,}", "prove_inclusion", f"{timed_ms(lambda: led.prove_inclusion(rng.randint(1, n)), 30):.2f} ms", f"{floor:.3f} ms"))
            rows.append((f"{n:,}", "prove_consistency", f"{timed_ms(lambda: led.prove_consistency(rng.randint(1, n)), 30):.2f} ms", f"{2 * floor:.3f} ms"))
            started = time.perf_counter()
            report = led.verify(head=head)
            per = (time.perf_counter() - started) / n * 1e6
            assert report.ok, report.problems[:3]
            rows.append((f"{n:,}", "verify (per record)", f"{per:.1f} µs", f"{tree_floor:.2f} µs"))
            note(f"{n:,} records written in {built:.1f} s")
    print(table(("records", "operation", "median", "hashlib floor"), rows))


if __name__ == "__main__":
    main()

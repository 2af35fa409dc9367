"""cProfile of the ledger's hot paths; prints the top lines of each (by own time).

    .venv/bin/python tools/bench/profile_hot.py [--top 10] [--sort tottime|cumulative] [--only NAME,...]

Paths: ``register21`` (fresh Student + 20 Grades tree, ×300), ``version21`` (one
leaf field changed, ×500 consecutive versions), ``version1000`` (3-level
1 + 9 + 990 tree, one leaf changed, ×40), ``replay`` (``Ledger.refresh()`` of
100k events on a fresh memory index), ``replay-sqlite`` (``Ledger(url)`` on a
SQLite file of the same 100k events); all on a memory ledger unless named.

Each path runs twice on fresh state: once unprofiled with GC on, timing the
garbage collector through ``gc.callbacks`` (cProfile would charge GC pauses to
whatever function happened to allocate), then under cProfile with GC off, so
the table shows the code's own costs.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from bench_entities import leaf_changer, make_flat, make_school  # noqa: E402
from _benchutil import GCTimer  # noqa: E402
from bench_store import chunks, make_events  # noqa: E402
from ledger import Ledger  # noqa: E402
from ledger.store import EventStore  # noqa: E402

Setup = Callable[[], Callable[[], object]]


def run_path(title: str, setup: Setup, *, sort: str, top: int) -> None:
    # 1. unprofiled, GC on: wall time and the collector's share
    run = setup()
    gc.collect()
    with GCTimer() as timer:
        t0 = time.perf_counter_ns()
        run()
        wall = time.perf_counter_ns() - t0
    del run
    gc.collect()
    # 2. profiled, GC off
    run = setup()
    gc.collect()
    gc.disable()
    pr = cProfile.Profile()
    try:
        pr.enable()
        run()
        pr.disable()
    finally:
        gc.enable()
    del run
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).strip_dirs().sort_stats(sort).print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
    total = next((ln.strip() for ln in lines if "function calls" in ln), "")
    print(f"### {title}\n")
    print(
        f"unprofiled, GC on: {wall / 1e6:.0f} ms wall, of which GC {timer.ns / 1e6:.0f} ms "
        f"({timer.ns / wall:.0%}, {timer.count} collections)  \nprofiled, GC off: {total}\n"
    )
    print("```")
    print("\n".join(lines[start : start + top + 1]))
    print("```\n", flush=True)


def setup_register21() -> Callable[[], object]:
    led = Ledger("memory://")
    for i in range(50):
        led.registry.register_entity(make_flat(20, i))
    roots = [make_flat(20, i) for i in range(300)]
    reg = led.registry.register_entity

    def run() -> None:
        for r in roots:
            reg(r)

    return run


def setup_version(make: Callable[[], object], warm: int, reps: int) -> Setup:
    def setup() -> Callable[[], object]:
        led = Ledger("memory://")
        root = make()
        led.registry.register_entity(root)  # type: ignore[arg-type]
        ch = leaf_changer(root)  # type: ignore[arg-type]
        ver = led.registry.version_entity
        for k in range(warm):
            ch(k)
            ver(root)

        def run() -> None:
            for k in range(warm, warm + reps):
                ch(k)
                ver(root)

        return run

    return setup


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--only", default="")
    ap.add_argument("--events", type=int, default=100_000, help="events in the replayed log")
    args = ap.parse_args()
    kw = dict(sort=args.sort, top=args.top)
    only = set(args.only.split(",")) if args.only else None

    def want(name: str) -> bool:
        return only is None or name in only

    if want("register21"):
        run_path("register 21 (Student + 20 Grades, fresh tree ×300, memory)", setup_register21, **kw)
    if want("version21"):
        run_path(
            "version 21 after one leaf change (×500 consecutive, memory)",
            setup_version(lambda: make_flat(20), 50, 500),
            **kw,
        )
    if want("version1000"):
        run_path(
            "version 1,000 (3-level 1+9+990) after one leaf change (×40, memory)",
            setup_version(lambda: make_school(9, 110), 5, 40),
            **kw,
        )
    if want("replay") or want("replay-sqlite"):
        events = make_events(args.events)
        if want("replay"):

            def setup_replay() -> Callable[[], object]:
                led = Ledger("memory://")
                for c in chunks(events, 1000):
                    led.store.append(c)
                return led.refresh

            run_path(f"replay: refresh() of {len(events)} events into a fresh index (memory)", setup_replay, **kw)
        if want("replay-sqlite"):
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/replay.db?synchronous=NORMAL"
                st = EventStore(url)
                for c in chunks(events, 1000):
                    st.append(c)
                st.close()
                opened: list[Ledger] = []

                def setup_sqlite() -> Callable[[], object]:
                    for led in opened:
                        led.close()
                    opened.clear()
                    return lambda: opened.append(Ledger(url))

                run_path(f"replay: Ledger(url) on a SQLite file of {len(events)} events", setup_sqlite, **kw)
                for led in opened:
                    led.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Bounded state: what opening a ledger costs as its log grows, GC pauses, history of one long lineage.

For each log size, a log of the ``tools/workload.py`` mix is written once through the
API into a SQLite file (the same files ``bench_read.py`` uses, kept in ``--cache``), and a
fresh process (so RSS is not shared with the writer) measures, on a copy of it:

- open: ``Ledger(url)`` wall time, RSS it adds, GC-tracked objects it adds; floors: a raw
  ``sqlite3`` connect reading the head and the index's tracking row (what an open must do),
  and a raw read + ``orjson.loads`` of every record (what a replay must do); on logs up to
  ``--replay-upto`` events also ``Ledger(url, replay=True)``, the in-memory index;
- ``--executions`` creation executions right after open, GC on: the largest GC pause and the
  time in GC (``gc.callbacks``, from the end of open: replay pauses the GC, so the first
  collections afterwards visit everything it built), RSS growth per 10k executions;
- one full ``gc.collect()`` after that (what any later full collection costs);
- the floor of the same rows in the same process: ``sqlite3`` SELECT + ``orjson.loads``.

Then ``history()`` of a lineage of each ``--versions`` length (one entity versioned N
times on SQLite, cached too): wall time, RSS held by the result and its peak while
building, reading the last version's ``old_ids``; floor: SELECT the lineage's rows +
``orjson.loads``.

    .venv/bin/python tools/bench/bench_state.py [--events 10000,100000] [--versions 2000,20000]
        [--executions 10000] [--freeze] [--values-cache-mib N]

``--freeze`` adds a what-if row per size: ``gc.freeze()`` right after open (not what the
library does). ``--values-cache-mib`` sets the inline index's decoded-values cache.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any
from uuid import UUID

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, _ROOT)

import orjson  # noqa: E402

import ledger  # noqa: E402
from ledger import CallableRegistry, Entity, Ledger  # noqa: E402
from tools.bench._benchutil import Clock, fmt_rate, machine, note, table  # noqa: E402

MiB = 1 << 20


class StateItem(Entity):
    name: str
    qty: int
    price: float


class StateSummary(Entity):
    label: str
    total: float


class StateCounter(Entity):
    n: int
    note: str = "a counter versioned many times"


@CallableRegistry.register("bench_state_create")
def bench_state_create(item: StateItem) -> StateSummary:
    return StateSummary(label=item.name, total=item.qty * item.price)


# ----------------------------------------------------------------- measuring helpers
def rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRSS:
    """Samples RSS every few ms in a thread: the peak of a call, not only what it leaves."""

    def __init__(self, every_s: float = 0.002) -> None:
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakRSS:
        self.peak = rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


class Pauses:
    """Every collection's duration and generation, via ``gc.callbacks``."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t))

    def __enter__(self) -> Pauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def largest(self) -> float:
        return max((p for _, p in self.pauses), default=0.0)

    def total(self) -> float:
        return sum(p for _, p in self.pauses)

    def full(self) -> int:
        return sum(1 for g, _ in self.pauses if g == 2)


def set_values_cache(led: Ledger, mib: float | None) -> None:
    """Size the inline index's decoded-values cache, where this version of the library has one."""
    cache = getattr(led.index, "values_cache", None)
    if mib is not None and cache is not None:
        cache.resize(int(mib * MiB))


# ------------------------------------------------------------------------- children
def child_open(path: str, executions: int, freeze: bool, cache_mib: float | None, replay: bool = False) -> dict[str, Any]:
    """Open a copy of the log at ``path``, then run executions on it (one fresh process)."""
    out: dict[str, Any] = {}
    with sqlite3.connect(path) as con:
        out["events"] = con.execute("SELECT count(*) FROM stored_events").fetchone()[0]
        out["payload_bytes"] = con.execute("SELECT sum(length(state)) FROM stored_events").fetchone()[0]
        gc.collect()
        gc.disable()  # the floor with the GC paused, as the ledger's own replay runs
        t = time.perf_counter()
        rows = con.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
        ).fetchall()
        decoded = [orjson.loads(r[4]) for r in rows]
        out["floor_s"] = time.perf_counter() - t
        gc.enable()
        del rows, decoded
    t = time.perf_counter()  # the floor of an open: connect, read the head and one index row
    with sqlite3.connect(path) as con:
        con.execute("SELECT max(rowid) FROM stored_events").fetchone()
        con.execute("SELECT position FROM ledger_index_tracking").fetchall()
    out["floor_open_s"] = time.perf_counter() - t
    t = time.perf_counter()
    gc.collect()
    out["gc_before_s"] = time.perf_counter() - t
    tracked0 = len(gc.get_objects())
    rss0 = rss()
    with Pauses() as during_open:
        t = time.perf_counter()
        led = Ledger(f"sqlite:///{path}?synchronous=NORMAL", replay=replay)
        out["open_s"] = time.perf_counter() - t
    out["index"] = type(led.index).__name__
    set_values_cache(led, cache_mib)
    out["open_rss"] = rss() - rss0
    out["open_tracked"] = len(gc.get_objects()) - tracked0
    out["open_largest_pause_s"] = during_open.largest()
    if freeze:
        gc.freeze()
    ledger.set_default_ledger(led)
    # From here the GC runs as it would for the application: replay left its objects
    # uncollected, so the first collections after open visit all of them.
    run_t0 = time.perf_counter()
    with Pauses() as during_run:
        item = StateItem(name="widget", qty=3, price=2.5)
        item.promote_to_root()
        for _ in range(200):  # warm up: classes, adapters, caches
            CallableRegistry.execute("bench_state_create", item=item)
        rss1 = rss()
        t = time.perf_counter()
        for _ in range(executions):
            CallableRegistry.execute("bench_state_create", item=item)
        out["exec_s"] = time.perf_counter() - t
        out["exec_rss"] = rss() - rss1
    out["run_s"] = time.perf_counter() - run_t0
    out["exec_largest_pause_s"] = during_run.largest()
    out["exec_gc_s"] = during_run.total()
    out["exec_full_gcs"] = during_run.full()
    t = time.perf_counter()
    gc.collect()
    out["full_gc_s"] = time.perf_counter() - t
    out["executions"] = executions
    led.close()
    return out


def child_history(path: str, lineage: str, cache_mib: float | None) -> dict[str, Any]:
    """``history()`` of one lineage of a ledger file (one fresh process)."""
    out: dict[str, Any] = {}
    uid = UUID(lineage)
    with sqlite3.connect(path) as con:
        gc.collect()
        gc.disable()
        t = time.perf_counter()
        states = [
            orjson.loads(r[0])
            for r in con.execute(
                "SELECT state FROM stored_events WHERE originator_id IN (?, ?, ?) ORDER BY originator_version",
                (uid.hex, str(uid), uid.bytes),  # however the recorder spelled the stream id
            )
        ]
        out["floor_s"] = time.perf_counter() - t
        gc.enable()
        out["versions"] = len(states)
        del states
    led = Ledger(f"sqlite:///{path}")
    set_values_cache(led, cache_mib)
    gc.collect()
    rss0 = rss()
    with PeakRSS() as peak:
        t = time.perf_counter()
        hist = led.registry.history(uid)
        out["history_s"] = time.perf_counter() - t
    out["held_rss"] = rss() - rss0
    out["peak_rss"] = peak.peak - rss0
    t = time.perf_counter()
    last = list(hist[-1].old_ids)
    out["old_ids_s"] = time.perf_counter() - t
    assert len(hist) == out["versions"] and len(last) == len(hist) - 1, (len(hist), len(last))
    assert last == [h.ecs_id for h in hist[:-1]]
    led.close()
    return out


# ------------------------------------------------------------------------ log files
def build_history_log(path: str, versions: int) -> str:
    """A SQLite ledger holding one StateCounter versioned ``versions - 1`` times; its lineage id."""
    marker = path + ".lineage"
    if os.path.exists(path) and os.path.exists(marker):
        with open(marker) as fh:
            return fh.read().strip()
    for p in (path, marker):
        if os.path.exists(p):
            os.remove(p)
    note(f"writing a {versions:,}-version lineage to {path} (once; reused next time)…")
    led = Ledger(f"sqlite:///{path}")
    c = StateCounter(n=0)
    led.registry.register_entity(c)
    for i in range(1, versions):
        c.n = i
        led.registry.version_entity(c)
    lineage = str(c.lineage_id)
    led.close()
    with open(marker, "w") as fh:
        fh.write(lineage)
    return lineage


def run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / MiB:,.1f} MiB"


def secs(s: float) -> str:
    if s != s:
        return "–"
    if s < 0.01:
        return f"{s * 1000:.1f} ms"
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", default="10000,100000", help="log sizes, comma-separated")
    ap.add_argument("--versions", default="2000,20000", help="lineage lengths for history, comma-separated")
    ap.add_argument("--executions", type=int, default=10_000)
    ap.add_argument("--cache", default="/tmp/entity-ledger-bench")
    ap.add_argument("--freeze", action="store_true", help="add a gc.freeze()-after-open what-if row")
    ap.add_argument("--values-cache-mib", type=float, default=None)
    ap.add_argument("--child-open", nargs=2, metavar=("PATH", "EXECUTIONS"), help=argparse.SUPPRESS)
    ap.add_argument("--child-history", nargs=2, metavar=("PATH", "LINEAGE"), help=argparse.SUPPRESS)
    ap.add_argument("--child-freeze", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-replay", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--replay-upto", type=int, default=100_000,
                    help="also measure Ledger(url, replay=True) (the in-memory index) on logs up to this size")
    args = ap.parse_args()

    if args.child_open:
        print(json.dumps(child_open(args.child_open[0], int(args.child_open[1]), args.child_freeze, args.values_cache_mib, args.child_replay)))
        return
    if args.child_history:
        print(json.dumps(child_history(args.child_history[0], args.child_history[1], args.values_cache_mib)))
        return

    from tools.bench.bench_read import build_log  # the same cached logs as bench_read.py

    clock = Clock()
    os.makedirs(args.cache, exist_ok=True)
    extra = [] if args.values_cache_mib is None else ["--values-cache-mib", str(args.values_cache_mib)]
    open_rows, run_rows = [], []
    for events in (int(x) for x in args.events.split(",") if x):
        path = os.path.join(args.cache, f"read_{events}.db")
        if not os.path.exists(path):  # written in a child: its index must not share our RSS
            subprocess.run(
                [sys.executable, "-c", f"import sys; sys.path.insert(0, {_ROOT!r}); "
                 f"from tools.bench.bench_read import build_log; build_log({path!r}, {events})"],
                check=True,
            )
        build_log(path, events)  # reuses the file (only checks its size)
        variants = [(False, False)] + ([(True, False)] if args.freeze else []) + (
            [(False, True)] if events <= args.replay_upto else []
        )
        for freeze, replay in variants:
            with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
                copy = os.path.join(tmp, "log.db")
                shutil.copyfile(path, copy)
                what = " (gc.freeze what-if)" if freeze else " (replay=True)" if replay else ""
                note(f"measuring open of {events:,} events{what}…")
                r = run_child([
                    "--child-open", copy, str(args.executions), *extra,
                    *(["--child-freeze"] if freeze else []), *(["--child-replay"] if replay else []),
                ])
            label = f"{r['events']:,} {r['index']}" + (" + gc.freeze()" if freeze else "")
            open_rows.append([
                label,
                mib(r["payload_bytes"]),
                secs(r["open_s"]),
                secs(r["floor_open_s"]),
                f"{secs(r['floor_s'])} ({fmt_rate(r['events'] / r['floor_s'])}/s)",
                mib(r["open_rss"]),
                f"{r['open_tracked']:,}",
                f"{secs(r['full_gc_s'])} (before open: {secs(r['gc_before_s'])})",
            ])
            per10k = r["exec_rss"] / r["executions"] * 10_000
            run_rows.append([
                label,
                f"{r['executions']:,}",
                f"{r['exec_s'] / r['executions'] * 1e6:.0f} µs",
                secs(r["exec_largest_pause_s"]),
                f"{secs(r['exec_gc_s'])} ({r['exec_gc_s'] / r['run_s']:.0%})",
                str(r["exec_full_gcs"]),
                mib(per10k),
            ])

    hist_rows = []
    for versions in (int(x) for x in args.versions.split(",") if x):
        path = os.path.join(args.cache, f"history_{versions}.db")
        lineage = build_history_log(path, versions)
        note(f"measuring history of {versions:,} versions…")
        r = run_child(["--child-history", path, lineage, *extra])
        hist_rows.append([
            f"{r['versions']:,}",
            secs(r["history_s"]),
            secs(r["floor_s"]),
            f"{r['history_s'] / r['floor_s']:.1f}×",
            mib(r["held_rss"]),
            mib(r["peak_rss"]),
            secs(r["old_ids_s"]),
        ])

    print(f"# bounded state: open, GC, history (SQLite, synchronous=NORMAL)\n\n{machine()}\n")
    print("## Open (`Ledger(url)`) and what a full collection costs afterwards\n")
    print(table(
        ["events, index", "payloads", "open", "floor: sqlite3 connect + head + index row",
         "floor of a replay: SELECT all + orjson.loads", "RSS added by open",
         "GC-tracked objects added", "one full gc.collect() after the run"],
        open_rows,
    ))
    print(f"\n## {args.executions:,} creation executions right after open (GC on; pauses counted from the end of open, warm-up included)\n")
    print(table(
        ["events in the log", "executions", "per execution", "largest GC pause", "time in GC", "full collections",
         "RSS growth per 10k"],
        run_rows,
    ))
    print("\n## `history()` of one lineage\n")
    print(table(
        ["versions", "history()", "floor: SELECT the lineage + orjson.loads", "history / floor", "RSS held by the result",
         "peak RSS while building", "read the last version's old_ids"],
        hist_rows,
    ))
    print(f"\n_total wall time {clock.elapsed_s():.0f} s_")


if __name__ == "__main__":
    main()

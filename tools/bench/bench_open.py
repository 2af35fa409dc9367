"""What an audit read costs as the log grows: replay-everything against the stored version index.

For SQLite logs of several sizes (entities written in batches of 1,000 through the normal
planner; every 10th lineage gets 50 versions), times:

- opening: ``Ledger(url, create=False)`` (replays the log into memory) and the RSS it adds,
  against ``StoredReader.open(url)`` (a few queries);
- the reads behind ``ledger log -n 20``, ``ledger show @lineage``, ``ledger history`` (50
  versions) and ``ledger as-of``, each from the stored reader (including its open) and from
  the already-replayed ledger;
- the floor of the same run: raw ``sqlite3`` finding one version in the index table and
  ``orjson.loads`` of its record, which is the least any ``show`` must do;
- whole-process ``ledger show`` (the installed command, start-up included), median of 3.

    .venv/bin/python tools/bench/bench_open.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import orjson  # noqa: E402

from ledger import Entity, Ledger  # noqa: E402
from ledger.model.tree import build_entity_tree  # noqa: E402
from ledger.write.batch import Batch  # noqa: E402
from ledger.write.planning import add_plan, plan_tree  # noqa: E402
from projections import audit  # noqa: E402
from projections.stored_reads import StoredReader  # noqa: E402
from tools.bench._benchutil import machine, median  # noqa: E402

HOT_VERSIONS = 50


class Reading(Entity):
    sensor: str
    value: float
    unit: str = "C"
    note: str = ""


def build(url: str, events: int) -> Reading:
    """About ``events`` entity.version records; returns one lineage with HOT_VERSIONS versions."""
    hot: Reading | None = None
    written = 0
    with Ledger(url) as led:
        while written < events:
            batch = Batch(led.index)
            for i in range(min(1000, events - written)):
                r = Reading(sensor=f"s{written + i}", value=float(i))
                add_plan(batch, plan_tree(led.index, build_entity_tree(r)), "register")
                if hot is None:
                    hot = r
            led.commit(batch)
            written += len(batch)
        assert hot is not None
        for v in range(HOT_VERSIONS - 1):
            hot.value = float(v + 1000)
            led.registry.version_entity(hot)
    return hot


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[], Any], runs: int = 5) -> float:
    """Median seconds of ``runs`` calls."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return median(out)


def fmt_s(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def floor_show(path: str, ecs_bytes: bytes) -> float:
    def once() -> None:
        con = sqlite3.connect(path)
        pos = con.execute("SELECT position FROM ledger_version_positions WHERE ecs_id = ?", (ecs_bytes,)).fetchone()[0]
        orjson.loads(con.execute("SELECT state FROM stored_events WHERE rowid = ?", (pos,)).fetchone()[0])
        con.close()

    return timed(once)


def cli_show(url: str, lineage: str) -> float:
    exe = os.path.join(os.path.dirname(sys.executable), "ledger")
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([exe, "show", f"@{lineage}", "--db", url], check=True, capture_output=True)
        runs.append(time.perf_counter() - t)
    return median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"## Audit reads against log size\n\n{machine()}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"log{n}.db")
            url = f"sqlite:///{path}"
            t = time.perf_counter()
            hot = build(url, n)
            build_s = time.perf_counter() - t
            lid = hot.lineage_id
            gc.collect()

            def stored(read: Callable[[Any], Any]) -> Callable[[], Any]:
                def run() -> Any:
                    reader = StoredReader.open(url)
                    assert reader is not None
                    with reader:
                        return read(reader)

                return run

            reads = {
                "log -n 20": lambda s: audit.recent_events(s, limit=20),
                "show @lineage": lambda s: audit.show(s, f"@{lid}"),
                f"history ({HOT_VERSIONS} versions)": lambda s: audit.history(s, lid),
                "as-of --position": lambda s: audit.as_of(s, lid, position=n // 2),
            }
            open_stored = timed(stored(lambda s: None))
            before = rss_mib()
            t = time.perf_counter()
            led = Ledger(url, create=False)
            open_replay = time.perf_counter() - t
            replay_rss = rss_mib() - before
            try:
                for name, read in reads.items():
                    rows.append((n, name, timed(stored(read)), timed(lambda: read(led))))
            finally:
                led.close()
            rows.append((n, "open", open_stored, open_replay))
            floor = floor_show(path, hot.ecs_id.bytes)
            print(
                f"- {n:,} events (built in {build_s:.1f} s): replay open adds {replay_rss:.0f} MiB RSS; "
                f"floor of a show (sqlite3 index lookup + one record + orjson.loads) {fmt_s(floor)}; "
                f"whole-process `ledger show` {fmt_s(cli_show(url, str(lid)))}"
            )
    print()
    print("| events in log | read | stored index (open included) | replayed ledger (after its open) |")
    print("|---:|---|---:|---:|")
    for n, name, s, r in rows:
        print(f"| {n:,} | {name} | {fmt_s(s)} | {fmt_s(r)} |")
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

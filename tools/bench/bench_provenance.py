"""What blame and the OpenLineage export cost, against raw floors measured in the same run.

Blame (SQLite): a chain of ``--chain`` executions, each adding 1 to the previous result
read by reference (``@<ecs_id>.result``), then ``Ledger.blame`` of the last result at
several depths, on a warm ledger (versions cached) and from a cold ``StoredReader``
(opened per call, as ``ledger blame`` does; the open is included). A second case walks
back through ``--versions`` hand-edited versions that changed another field, to find the
version that first held the blamed value. Floor: the records the answer names, read with
raw ``sqlite3`` (the version index row + the record; the execution's record by stream id)
and ``orjson.loads``.

Export (SQLite): ``--executions`` executions (two references read per call, one entity
argument) exported with ``Ledger.export_openlineage``: the first export includes the
analytics catch-up, the second runs on tables already caught up. Floor: the same four
DuckDB queries fetched, plus ``orjson.dumps`` of one flat dict per event (no assembly),
written to a file.

    .venv/bin/python tools/bench/bench_provenance.py [--chain 50] [--versions 1000] [--executions 2000]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import orjson  # noqa: E402

import ledger  # noqa: E402
from ledger import CallableRegistry, Entity, EntityRegistry, Ledger  # noqa: E402
from projections.openlineage import query_rows  # noqa: E402
from projections.provenance import Provenance, blame  # noqa: E402
from projections.stored_reads import StoredReader  # noqa: E402
from tools.bench._benchutil import fmt_rate, machine, median, table  # noqa: E402


class Reading(Entity):
    sensor: str
    value: float
    note: str = ""


@CallableRegistry.register("bench_step")
def step(previous: float) -> float:
    return previous + 1.0


@CallableRegistry.register("bench_combine")
def combine(a: float, b: float, reading: Reading) -> float:
    return a + b + reading.value


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def floor_blame(path: str, answer: Provenance, walked: list[Any] = ()) -> Callable[[], None]:
    """Raw sqlite3 + orjson reads of every version and execution record the answer names
    (and of ``walked``: the versions a walk back must compare)."""
    versions = [n.version.bytes for n in answer.walk()] + [e.bytes for e in walked]
    streams = [n.execution_id.hex for n in answer.walk() if n.execution_id is not None]

    def run() -> None:
        con = sqlite3.connect(path)
        try:
            for ecs in versions:
                pos = con.execute("SELECT position FROM ledger_version_positions WHERE ecs_id = ?", (ecs,)).fetchone()[0]
                orjson.loads(con.execute("SELECT state FROM stored_events WHERE rowid = ?", (pos,)).fetchone()[0])
            for stream in streams:
                orjson.loads(
                    con.execute(
                        "SELECT state FROM stored_events WHERE originator_id = ? ORDER BY originator_version DESC LIMIT 1",
                        (stream,),
                    ).fetchone()[0]
                )
        finally:
            con.close()

    return run


def bench_blame(tmp: str, chain: int, versions: int) -> str:
    path = os.path.join(tmp, "blame.db")
    url = f"sqlite:///{path}"
    led = ledger.connect(url)
    first = Reading(sensor="s", value=0.0)
    first.promote_to_root()
    out = CallableRegistry.execute("bench_step", previous=f"@{first.ecs_id}.value")
    for _ in range(chain - 1):
        out = CallableRegistry.execute("bench_step", previous=f"@{out.ecs_id}.result")
    last = f"@{out.ecs_id}.result"
    held = Reading(sensor="h", value=1.0)
    held.promote_to_root()
    for i in range(versions):
        held.note = f"edit {i}"
        EntityRegistry.version_entity(held)
    rows = []
    depths = sorted({d for d in (1, 5, 10, 25, chain) if d <= chain})
    cases: list[tuple[str, str, int, list[Any]]] = [(f"chain, depth {d}", last, d, []) for d in depths]
    walked = [r.ecs_id for r in led.index.lineages[held.lineage_id]][1:]
    cases.append((f"value unchanged over {versions} later versions", f"@{held.ecs_id}.value", 0, walked))

    def open_only() -> None:
        StoredReader.open(url).close()

    opening = timed(open_only, 5)
    for label, address, depth, walk in cases:
        answer = led.blame(address, depth=depth)
        nodes = len(answer.walk())
        warm = timed(lambda: led.blame(address, depth=depth), 5)

        def cold() -> None:
            with StoredReader.open(url) as reader:
                blame(reader, address, depth=depth)

        cold_s = timed(cold, 3)
        floor = timed(floor_blame(path, answer, walk), 5)
        reads = nodes + len(walk)
        rows.append(
            (label, nodes, f"{warm * 1e3:.2f} ms", f"{cold_s * 1e3:.2f} ms", f"{floor * 1e3:.2f} ms",
             f"{cold_s / floor:.0f}×", f"{(cold_s - opening) / reads * 1e6:.0f} µs")
        )
    led.close()
    ledger.set_default_ledger(None)
    return table(
        ["blame", "nodes", "warm ledger", "cold (open + blame)", "floor (raw reads)", "cold / floor", "cold per record read (open excluded)"],
        rows,
    ) + f"\n\nOpening the StoredReader alone: {opening * 1e3:.2f} ms (median of 5)."


def bench_export(tmp: str, executions: int) -> str:
    path = os.path.join(tmp, "export.db")
    url = f"sqlite:///{path}"
    led = ledger.connect(url)
    readings = [Reading(sensor=f"s{i}", value=float(i)) for i in range(20)]
    for r in readings:
        r.promote_to_root()
    for i in range(executions):
        a, b, c = readings[i % 20], readings[(i + 7) % 20], readings[(i + 3) % 20]
        CallableRegistry.execute("bench_combine", a=f"@{a.ecs_id}.value", b=f"@{b.lineage_id}.value", reading=c)
    led.close()
    ledger.set_default_ledger(None)
    rows = []
    with Ledger(url, create=False) as fresh:
        t0 = time.perf_counter()
        done = fresh.export_openlineage(os.path.join(tmp, "first.ndjson"))
        first = time.perf_counter() - t0
        warm = timed(lambda: fresh.export_openlineage(os.path.join(tmp, "again.ndjson")), 3)

        def floor() -> None:
            def read(con: Any) -> dict[str, Any]:
                return query_rows(con, "", [])

            got = fresh.analytics.read(read)
            with open(os.path.join(tmp, "floor.ndjson"), "wb") as f:
                for row in got["executions"]:
                    for kind in ("START", "COMPLETE"):
                        f.write(orjson.dumps({"eventType": kind, "runId": row[0], "job": row[1], "time": row[3]}))
                        f.write(b"\n")

        floor_s = timed(floor, 3)
    events = done.events
    size = os.path.getsize(os.path.join(tmp, "first.ndjson"))
    rows.append(("first export (analytics catch-up included)", events, f"{first * 1e3:.0f} ms", fmt_rate(events / first)))
    rows.append(("export, tables caught up", events, f"{warm * 1e3:.0f} ms", fmt_rate(events / warm)))
    rows.append(("floor: the same DuckDB queries + orjson.dumps of a flat dict per event", events,
                 f"{floor_s * 1e3:.0f} ms", fmt_rate(events / floor_s)))
    return table(["OpenLineage export", "events", "time", "events/s"], rows) + (
        f"\n\n{executions} executions, {size / events:.0f} bytes per event on average; "
        f"caught-up export / floor = {warm / floor_s:.1f}×"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--executions", type=int, default=2000)
    args = parser.parse_args()
    print(f"# bench_provenance\n\n{machine()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        print(bench_blame(tmp, args.chain, args.versions))
        print()
        print(bench_export(tmp, args.executions))


if __name__ == "__main__":
    main()

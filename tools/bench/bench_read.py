"""The read side at scale: rebuild, DuckDB sync, GROUP BY, as_of, incremental catch-up.

A log of about ``--events`` events of the realistic mix in ``tools/workload.py``
(registration, versions, executions of every output semantic, references,
configs, failures, detach/attach) is written once through the real API into a
SQLite file (kept in ``--cache`` and reused), then measured against the floor:
raw ``sqlite3`` SELECT of the same rows, and ``orjson.loads`` of the same payloads.

The analytics catch-up from zero is also set against DuckDB's own ingest of the
same payloads in the same run: ``read_ndjson_objects`` of them written to an
NDJSON file (no parse), and Arrow columns of them plus one ``json_transform``,
into one struct of every field the tables read or, as the projection parses them,
each payload into its own event type's struct (the one parse the projection cannot
skip). The reader's own floor is there too: the store's pages read and every
record's seal checked (``decode.check_page``), which the projection does in a
second thread while DuckDB applies the page before. ``--cli``
adds the ``ledger sql`` command itself, first on no cache file and then again
(the second one resumes from the file beside the store).

``--catchup`` measures only the analytics catch-up from zero, each run in a fresh child
process so its peak RSS is its own (``ru_maxrss``): DuckDB's ``read_ndjson_objects`` of the
same payloads (the floor, in a child too), then the catch-up in memory and into a DuckDB
file, ``--rounds`` times in turn; it prints each rate, its ratio to the floor of the same
round, and each peak RSS.

    .venv/bin/python tools/bench/bench_read.py [--events 1000000] [--versions 100000] [--cli] [--skip-index]
    .venv/bin/python tools/bench/bench_read.py --catchup --events 300000 [--rounds 2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from array import array
from itertools import accumulate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import duckdb  # noqa: E402
import orjson  # noqa: E402
import pyarrow as pa  # noqa: E402

import ledger  # noqa: E402
from ledger import Entity, Ledger  # noqa: E402
from ledger.events.decode import check_page  # noqa: E402
from projections.analytics import Analytics  # noqa: E402
from projections.tables import (  # noqa: E402
    ERASURE_STRUCT,
    EVENT_STRUCT,
    EXECUTION_STRUCT,
    OTHER_STRUCT,
    VERSION_STRUCT,
)
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


def duckdb_floors(states: list[bytes], topics: list[str]) -> tuple[float, float, float, float]:
    """Seconds for DuckDB's own ingest of ``states``: NDJSON objects; Arrow building; json_transform twice.

    A plain DuckDB connection (the floor is DuckDB, not our locked instance),
    two threads like the projection's, the same page size, each page in record
    batches of 10,240 rows like the projection's (DuckDB scans one batch per
    thread). ``json_transform`` once into one struct of every field the tables
    read, and once per payload into its own event type's struct (what the
    projection parses).
    """
    con = duckdb.connect()
    with tempfile.NamedTemporaryFile(suffix=".ndjson", delete=False) as fh:
        for s in states:
            fh.write(s)
            fh.write(b"\n")
    try:
        t_ndjson = timed(lambda: con.execute(f"CREATE OR REPLACE TABLE nd AS SELECT json FROM read_ndjson_objects('{fh.name}')"))
    finally:
        os.remove(fh.name)
    pages = [(states[i : i + 50_000], topics[i : i + 50_000]) for i in range(0, len(states), 50_000)]

    def arrow() -> list[pa.Table]:
        out = []
        for chunk, kinds in pages:
            offsets = array("q", accumulate(map(len, chunk), initial=0))
            column = pa.Array.from_buffers(pa.large_string(), len(chunk), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(chunk))])
            page = pa.table({"event_type": pa.array(kinds, pa.string()), "payload": column})
            out.append(pa.Table.from_batches(page.to_batches(max_chunksize=10_240)))
        return out

    t_arrow = timed(arrow)
    tables = arrow()

    def transform() -> None:
        for staged in tables:
            con.register("p", staged)
            con.execute(f"CREATE OR REPLACE TEMP TABLE t AS SELECT json_transform(payload, '{EVENT_STRUCT}') AS e FROM p")
            con.unregister("p")

    known = "('entity.version', 'execution.completed', 'execution.failed', 'entity.erased')"
    typed_sql = ";".join(
        f"CREATE OR REPLACE TEMP TABLE t{i} AS SELECT json_transform(payload, '{struct}') AS e FROM p WHERE {where}"
        for i, (struct, where) in enumerate(
            [
                (VERSION_STRUCT, "event_type = 'entity.version'"),
                (EXECUTION_STRUCT, "event_type IN ('execution.completed', 'execution.failed')"),
                (ERASURE_STRUCT, "event_type = 'entity.erased'"),
                (OTHER_STRUCT, f"event_type NOT IN {known}"),
            ]
        )
    )

    def typed() -> None:
        for staged in tables:
            con.register("p", staged)
            con.execute(typed_sql)
            con.unregister("p")

    t_transform = timed(transform)
    t_typed = timed(typed)
    con.close()
    return t_ndjson, t_arrow, t_transform, t_typed


_CHILD = """
import os, resource, sys, time, gc
sys.path.insert(0, {root!r})
kind, path, cache = sys.argv[1:4]
if kind == "floor":
    import duckdb, sqlite3
    nd = cache + ".ndjson"
    with sqlite3.connect(path) as src, open(nd, "wb") as fh:
        for (state,) in src.execute("SELECT state FROM stored_events ORDER BY rowid"):
            fh.write(bytes(state)); fh.write(b"\\n")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    con = duckdb.connect()
    t = time.perf_counter()
    n = con.execute(f"CREATE TABLE nd AS SELECT json FROM read_ndjson_objects('{{nd}}')").fetchall()[0][0]
    elapsed = time.perf_counter() - t
    os.remove(nd)
else:
    from ledger import Ledger
    from projections.analytics import Analytics
    led = Ledger(f"sqlite:///{{path}}")
    for stale in (cache, cache + ".wal", cache + ".mac"):
        if os.path.exists(stale):
            os.remove(stale)
    gc.collect()
    analytics = Analytics(led.store, cache if kind == "file" else None)
    t = time.perf_counter()
    n = analytics.catch_up()
    elapsed = time.perf_counter() - t
    analytics.close()
print(n, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def catchup_child(kind: str, path: str, cache: str) -> tuple[int, float, int]:
    """(events, seconds, peak RSS bytes) of one catch-up (``memory``, ``file``) or the floor, in a fresh process."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=root), kind, path, cache], check=True, capture_output=True, text=True
    )
    n, seconds, rss = done.stdout.split()[-3:]  # the last line: the child prints it last
    return int(n), float(seconds), int(rss)


def catchup_only(path: str, cache: str, rounds: int) -> None:
    """The ``--catchup`` table: floor, in memory and into a file, each round in turn, each in its own process."""
    out = []
    for r in range(1, rounds + 1):
        n, t_floor, rss_floor = catchup_child("floor", path, cache)
        out.append([f"{r}", "floor: `read_ndjson_objects` (no parse)", f"{t_floor:.2f} s", fmt_rate(n / t_floor) + "/s", "1.00", f"{rss_floor / 2**20:,.0f} MiB"])
        for kind in ("memory", "file"):
            n, seconds, rss = catchup_child(kind, path, cache)
            out.append([f"{r}", f"catch-up from zero, {'in memory' if kind == 'memory' else 'into a DuckDB file'}", f"{seconds:.2f} s", fmt_rate(n / seconds) + "/s", f"{t_floor / seconds:.2f}", f"{rss / 2**20:,.0f} MiB"])
    print(f"# analytics catch-up from zero, {n:,} events of the workload mix on SQLite\n\n{machine()}\n")
    print(table(["round", "operation", "time", "rate", "× floor", "peak RSS (process)"], out))


def cli_sql(path: str) -> float:
    """Wall time of one ``ledger sql`` process on the SQLite file (its cache file beside it)."""
    script = os.path.join(os.path.dirname(sys.executable), "ledger")
    env = {k: v for k, v in os.environ.items() if k not in ("LEDGER_URL", "LEDGER_ANALYTICS")}
    t = time.perf_counter()
    subprocess.run(
        [script, "sql", "select function_name, count(*) from executions group by 1", "--db", f"sqlite:///{path}"],
        check=True, capture_output=True, env=env,
    )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--versions", type=int, default=100_000)
    ap.add_argument("--cache", default="/tmp/entity-ledger-bench")
    ap.add_argument("--cli", action="store_true", help="also time `ledger sql` twice (no cache file, then resumed)")
    ap.add_argument("--skip-index", action="store_true", help="skip the inline index replay (a new Ledger): slow at 1M")
    ap.add_argument("--catchup", action="store_true", help="only the analytics catch-up from zero against its floor, with peak RSS")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of --catchup")
    args = ap.parse_args()
    clock = Clock()
    os.makedirs(args.cache, exist_ok=True)
    path = os.path.join(args.cache, f"read_{args.events}.db")
    build_log(path, args.events)
    if args.catchup:
        catchup_only(path, os.path.join(args.cache, f"catchup_{args.events}.analytics.duckdb"), args.rounds)
        return

    rows: list[list[object]] = []
    with sqlite3.connect(path) as con:
        n = con.execute("SELECT count(*) FROM stored_events").fetchone()[0]
        t_select = timed(lambda: con.execute("SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid").fetchall())
        raw = con.execute("SELECT state, topic FROM stored_events ORDER BY rowid").fetchall()
        states = [bytes(r[0]) for r in raw]
        topics = [r[1] for r in raw]
        del raw
    t_loads = timed(lambda payloads=states: [orjson.loads(s) for s in payloads])
    t_ndjson, t_arrow, t_transform, t_typed = duckdb_floors(states, topics)
    del states, topics
    floor = n / (t_select + t_loads)
    rows.append(["floor: sqlite3 SELECT all + orjson.loads", f"{n:,}", f"{t_select + t_loads:.2f} s", fmt_rate(floor) + "/s", "1.00"])
    duck_rows = [
        ["floor: DuckDB `read_ndjson_objects` of the payloads (no parse)", f"{t_ndjson:.2f} s", fmt_rate(n / t_ndjson) + "/s"],
        ["floor: payloads → Arrow (one buffer per page)", f"{t_arrow:.2f} s", fmt_rate(n / t_arrow) + "/s"],
        ["floor: one `json_transform` into the tables' struct", f"{t_transform:.2f} s", fmt_rate(n / t_transform) + "/s"],
        ["floor: Arrow + one `json_transform`", f"{t_arrow + t_transform:.2f} s", fmt_rate(n / (t_arrow + t_transform)) + "/s"],
        ["floor: one `json_transform` per payload into its type's struct (what the tables parse)", f"{t_typed:.2f} s", fmt_rate(n / t_typed) + "/s"],
        ["floor: Arrow + that `json_transform` per type", f"{t_arrow + t_typed:.2f} s", fmt_rate(n / (t_arrow + t_typed)) + "/s"],
    ]

    if not args.skip_index:
        t_index = timed(lambda: Ledger(f"sqlite:///{path}").close())
        rows.append(["inline index replay (new Ledger)", f"{n:,}", f"{t_index:.2f} s", fmt_rate(n / t_index) + "/s", f"{(n / t_index) / floor:.2f}"])

    led = Ledger(f"sqlite:///{path}")
    store = led.store
    t_read = timed(lambda: [store.read_columns(p, 50_000) for p in range(1, n + 1, 50_000)])
    rows.append(["store.read_columns (raw pages)", f"{n:,}", f"{t_read:.2f} s", fmt_rate(n / t_read) + "/s", f"{(n / t_read) / floor:.2f}"])

    def read_and_check() -> None:
        for p in range(1, n + 1, 50_000):
            page = store.read_columns(p, 50_000)
            check_page(p, page.positions, page.stream_ids, page.versions, page.topics, page.states)

    t_checked = timed(read_and_check)
    rows.append(["store.read_columns + decode.check_page (every seal)", f"{n:,}", f"{t_checked:.2f} s", fmt_rate(n / t_checked) + "/s", f"{(n / t_checked) / floor:.2f}"])
    duck_rows.append(["reader alone: store.read_columns + decode.check_page", f"{t_checked:.2f} s", fmt_rate(n / t_checked) + "/s"])

    fresh = Analytics(store)
    t_rebuild = timed(fresh.catch_up)
    fresh.close()
    rows.append(["analytics catch-up from zero, in memory (all tables)", f"{n:,}", f"{t_rebuild:.2f} s", fmt_rate(n / t_rebuild) + "/s", f"{(n / t_rebuild) / floor:.2f}"])
    duck_rows.append(["analytics catch-up from zero, in memory (read + all tables)", f"{t_rebuild:.2f} s", fmt_rate(n / t_rebuild) + "/s"])
    cache = os.path.join(args.cache, f"bench_{args.events}.analytics.duckdb")
    for stale in (cache, cache + ".wal"):
        if os.path.exists(stale):
            os.remove(stale)
    to_file = Analytics(store, cache)
    t_file = timed(to_file.catch_up)
    to_file.close()
    duck_rows.append(["analytics catch-up from zero, into a DuckDB file", f"{t_file:.2f} s", fmt_rate(n / t_file) + "/s"])

    def reopen_and_query() -> None:
        again = Analytics(store, cache)
        again.rows("select function_name, count(*) from executions group by 1")
        again.close()

    t_reopen = timed(reopen_and_query, repeat=3)
    duck_rows.append(["open that file again + one GROUP BY (nothing new)", fmt_us(t_reopen * 1e9), "–"])
    analytics = Analytics(store)
    analytics.catch_up()

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

    if args.cli:
        beside = f"{path}.analytics.duckdb"
        for stale in (beside, beside + ".wal"):
            if os.path.exists(stale):
                os.remove(stale)
        first, second = cli_sql(path), cli_sql(path)
        duck_rows.append(["`ledger sql` (whole command), no cache file yet", f"{first:.2f} s", "–"])
        duck_rows.append(["`ledger sql` again (resumes from the file beside the store)", f"{second:.2f} s", "–"])

    print(f"# read side, {n:,} events of the workload mix on SQLite\n\n{machine()}\n")
    print(table(["operation", "events", "time", "rate", "× floor"], rows))
    print(f"\n## analytics catch-up against DuckDB's own ingest of the same {n:,} payloads (same run)\n")
    print(table(["operation", "time", "rate"], duck_rows))

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

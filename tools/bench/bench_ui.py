"""``ledger ui`` page times on a large SQLite ledger, against raw ``sqlite3`` reading the same rows.

A log of about ``--events`` events of the ``tools/workload.py`` mix is written once through
the API (``bench_read.build_log``; kept in ``--cache`` and reused). The real command,
``ledger ui``, serves it from a child process (``tools/ui_server.running_ui``; its start
includes building the analytics cache beside the store the first time). Each page is then
fetched ``--repeat`` times over one keep-alive HTTP connection (httpx2), whole response
read: the log (``/``, 50 rows), a typical lineage and the longest one (``/lineage/<id>``,
graph depth 2), an execution (``/execution/<id>``) and a version (``/entity/<id>``).

The floor, measured in the same run: raw ``sqlite3`` on the same file reading the records
each page shows and ``orjson.loads`` of their payloads (the log's last 50 records; the
lineage's stream; the execution's stream; the version's record). The page does more than the
floor (seal checks, diffs, the DuckDB graph walk, HTML): the ratio says how much more.

    .venv/bin/python tools/bench/bench_ui.py [--events 1000000] [--repeat 20] [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import httpx2  # noqa: E402
import orjson  # noqa: E402

from tools.bench._benchutil import machine  # noqa: E402
from tools.bench.bench_read import build_log  # noqa: E402
from tools.ui_server import running_ui  # noqa: E402


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def times(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def ms(values: list[float]) -> str:
    p95 = sorted(values)[int(0.95 * (len(values) - 1))]
    return f"{statistics.median(values):.2f} ms (p95 {p95:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--cache", default="/tmp/entity-ledger-bench")
    ap.add_argument("--db", help="an existing SQLite store of the workload mix to use as it is (no --events build)")
    ap.add_argument("--layout-only", action="store_true", help="only the 300-version lineage's layout time")
    args = ap.parse_args()
    if args.db:
        path = args.db
    else:
        os.makedirs(args.cache, exist_ok=True)
        path = os.path.join(args.cache, f"ui_{args.events}.db")
        build_log(path, args.events)
    layout_report(path, args.repeat)
    if args.layout_only:
        return
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    head = raw.execute("SELECT max(rowid) FROM stored_events").fetchone()[0]
    url = f"sqlite:///{path}"
    note(f"starting ledger ui on {head:,} events (the first start builds the analytics cache beside the store)…")
    t = time.perf_counter()
    with running_ui(url, timeout=3600) as base, httpx2.Client(base_url=base, timeout=600) as client:
        started = time.perf_counter() - t

        def sql(query: str) -> list[dict]:
            answer = client.get("/sql", params={"q": query, "format": "json"})
            answer.raise_for_status()
            return answer.json()

        per_lineage = "select lineage_id, count(*) as n from entity_versions group by 1"
        typical = sql(f"select lineage_id, n from ({per_lineage}) where n between 3 and 6 limit 1")[0]
        longest = sql(f"select lineage_id, n from ({per_lineage}) order by n desc limit 1")[0]
        execution = sql("select execution_id from executions where function_name = 'wl_curve' order by position desc limit 1")[0]
        version = sql(f"select ecs_id from entity_versions where lineage_id = '{typical['lineage_id']}' order by position desc limit 1")[0]

        def stream(stream_id: str) -> Callable[[], object]:
            hexid = stream_id.replace("-", "")
            return lambda: [orjson.loads(s) for (s,) in raw.execute(
                "SELECT state FROM stored_events WHERE originator_id = ? ORDER BY originator_version", (hexid,)
            )]

        def record_of(ecs_id: str) -> Callable[[], object]:
            return lambda: [orjson.loads(s) for (s,) in raw.execute(
                "SELECT e.state FROM ledger_version_positions v JOIN stored_events e ON e.rowid = v.position "
                "WHERE v.ecs_id = ?", (bytes.fromhex(ecs_id.replace("-", "")),)
            )]

        pages = [
            ("`/` (the log, newest 50)", "/", lambda: [orjson.loads(s) for (s,) in raw.execute(
                "SELECT state FROM stored_events ORDER BY rowid DESC LIMIT 50")]),
            (f"`/lineage/<id>`, {typical['n']} versions", f"/lineage/{typical['lineage_id']}", stream(typical["lineage_id"])),
            (f"`/lineage/<id>`, the longest: {longest['n']} versions", f"/lineage/{longest['lineage_id']}", stream(longest["lineage_id"])),
            ("`/execution/<id>`", f"/execution/{execution['execution_id']}", stream(execution["execution_id"])),
            ("`/entity/<id>`", f"/entity/{version['ecs_id']}", record_of(version["ecs_id"])),
        ]
        rows = []
        for name, path_, floor in pages:
            first = client.get(path_)
            assert first.status_code == 200, (path_, first.status_code, first.text[:300])
            page_ms = times(lambda: client.get(path_).raise_for_status(), args.repeat)
            floor_ms = times(floor, args.repeat)
            ratio = statistics.median(page_ms) / max(statistics.median(floor_ms), 1e-6)
            rows.append((name, ms(page_ms), f"{len(first.content) / 1024:.0f} KiB", ms(floor_ms), f"{ratio:,.0f}×"))
            note(f"  {name}: {rows[-1][1]}")
    print(f"ledger ui on {head:,} events ({os.path.getsize(path) / 2**30:.2f} GiB SQLite file); "
          f"server start {started:.1f} s; {args.repeat} requests per page, median (p95)")
    print(machine())
    print()
    print("| page | page time | page size | floor: raw sqlite3 + orjson of the same records | page / floor |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


LONG = 300


def layout_report(path: str, repeat: int) -> None:
    """The lineage picture's server time for a 300-version lineage in this log.

    The lineage (``tools/long_lineage.py``) is appended to the store once (kept with it). The
    layout is measured in-process, uncached each time: the graph walk (DuckDB), the collapse,
    ``dot`` and the conversion; then the whole page over HTTP, first request (the layout made)
    and later ones (the layout cached, as a reader panning and expanding sees).
    """
    from ledger import Ledger
    from ledger.cli.commands import open_reader
    from ledger.cli.ui.layout import lineage_layout
    from projections import audit
    from tools.long_lineage import build_long_lineage

    url = f"sqlite:///{path}"
    with Ledger(url, create=False) as led:
        found = led.sql(f"select lineage_id from entity_versions where entity_type like '%Account' "
                        f"group by 1 having count(*) = {LONG} limit 1").fetchall()
        lineage = str(found[0][0]) if found else None
        if lineage is None:
            note(f"appending a {LONG}-version lineage…")
            lineage = str(build_long_lineage(url, LONG, led=led))
        events = led.sql("select max(position) from events").fetchall()[0][0]
    reader = open_reader(url, with_analytics=True)
    try:
        rows = audit.history(reader, lineage)
        for depth in (0, 2):
            made = lineage_layout(reader, lineage, rows, depth=depth, position=None)
            took = times(lambda: lineage_layout(reader, lineage, rows, depth=depth, position=None), repeat)
            history = times(lambda: audit.history(reader, lineage), repeat)
            print(f"layout of a {LONG}-version lineage at {events:,} events, depth {depth}: {ms(took)} "
                  f"({len(made.nodes)} nodes, {len(made.edges)} edges); audit.history {ms(history)}")
    finally:
        reader.close()
    with running_ui(url, timeout=3600) as base, httpx2.Client(base_url=base, timeout=600) as client:
        t = time.perf_counter()
        client.get(f"/lineage/{lineage}").raise_for_status()
        first = (time.perf_counter() - t) * 1000
        again = times(lambda: client.get(f"/lineage/{lineage}").raise_for_status(), repeat)
        print(f"page /lineage/<300 versions> over HTTP: first {first:.1f} ms, cached layout {ms(again)}")


if __name__ == "__main__":
    main()

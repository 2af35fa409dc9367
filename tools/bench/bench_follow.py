"""Durable followers (``Ledger.follow``): events/s delivered on a large SQLite log, against the read floor.

The log is the ``tools/workload.py`` mix written through the API (``bench_read.build_log``,
``--events`` of it, cached in ``--log``). Written through the API on this 2-core VM it grows by
~25k events a minute when the machine is shared, so ``--copies K`` also measures a K-times
larger file made from it in seconds: the workload's records inserted K times with raw
``sqlite3`` under fresh stream ids (positions and seals do not match in the copies, so
``verify`` would fail there; a follower reads records, it does not check seals, so its work
per record is the same). Measured in one run, each from position 0 under a fresh follower
name, with the cyclic GC on (a follower runs in a live process):

- floor: raw ``sqlite3`` pages of the same rows (1,000 and 50,000 per SELECT), with and
  without ``orjson.loads`` of every payload (the least a reader that looks at the events does);
- ``follow`` with a handler that only counts: what the follower costs per event (store pages,
  a ``LedgerFact`` per record, the handler call, one acknowledgement per page);
- ``follow(types=["execution.completed"])``: records of other types are skipped before decoding.

Each follower leaves one row in the file's ``ledger_followers`` table, nothing else.

    .venv/bin/python tools/bench/bench_follow.py [--events 1000000] [--cache /tmp/entity-ledger-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import orjson  # noqa: E402

from ledger import Ledger  # noqa: E402
from ledger.events.seal import link_hash  # noqa: E402
from ledger.store.version_index import INDEX_NAME  # noqa: E402
from tools.bench._benchutil import fmt_rate, machine, note, table  # noqa: E402
from tools.bench.bench_read import build_log  # noqa: E402


def floor(path: str, page: int, decode: bool) -> tuple[int, float]:
    """Rows read (and decoded) per second by raw sqlite3 SELECT pages."""
    con = sqlite3.connect(path)
    n = 0
    start = 1
    t = time.perf_counter()
    while True:
        rows = con.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
            "WHERE rowid >= ? ORDER BY rowid LIMIT ?",
            (start, page),
        ).fetchall()
        if not rows:
            break
        if decode:
            for row in rows:
                orjson.loads(row[4])
        n += len(rows)
        start = rows[-1][0] + 1
    elapsed = time.perf_counter() - t
    con.close()
    return n, elapsed


def follow(url: str, types: list[str] | None = None) -> tuple[int, float]:
    """Events delivered and seconds for a new follower to catch up with the whole log."""
    led = Ledger(url)
    count = 0

    def handler(fact: object) -> None:
        nonlocal count
        count += 1

    t = time.perf_counter()
    led.follow(f"bench-{uuid.uuid4().hex[:8]}", handler, types=types)
    elapsed = time.perf_counter() - t
    led.close()
    return count, elapsed


def replicate(src: str, dst: str, copies: int) -> None:
    """``dst``: the records of ``src`` ``copies`` times, each copy under fresh stream ids (see the module doc)."""
    with sqlite3.connect(src) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(src, dst)
    con = sqlite3.connect(dst)
    rows = con.execute("SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid").fetchall()
    position = len(rows)
    for _ in range(copies - 1):
        fresh: dict[str, str] = {}
        batch = []
        for stream, version, topic, state in rows:
            new = fresh.get(stream)
            if new is None:
                new = fresh[stream] = uuid.uuid4().hex
            position += 1
            batch.append((position, new, version, topic, state))
        con.executemany(
            "INSERT INTO stored_events (rowid, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)", batch
        )
    # the version index is told it is caught up, so opening the ledger does not index the copies
    con.execute(
        "UPDATE ledger_index_tracking SET position = ?, head_hash = ? WHERE name = ?",
        (position, link_hash(rows[-1][3]), INDEX_NAME),
    )
    con.commit()
    con.close()


def measure(path: str, what: str) -> None:
    url = f"sqlite:///{path}"
    with Ledger(url) as led:
        head = led.store.head()
    print(f"\n{what}: {head:,} records, SQLite NORMAL, {os.path.getsize(path) / 2**20:.0f} MiB\n")
    rows = []
    for page in (1_000, 50_000):
        n, s = floor(path, page, decode=False)
        rows.append([f"floor: sqlite3 SELECT, {page:,} rows per page", f"{n:,}", f"{s:.2f} s", fmt_rate(n / s) + "/s", "–"])
    n, s = floor(path, 1_000, decode=True)
    decoded = n / s
    rows.append(["floor: sqlite3 SELECT + orjson.loads, 1,000 per page", f"{n:,}", f"{s:.2f} s", fmt_rate(decoded) + "/s", "1.00"])
    for label, kwargs in (
        ("follow, handler counts", {}),
        ("follow(types=['execution.completed'])", {"types": ["execution.completed"]}),
    ):
        delivered, s = follow(url, **kwargs)  # type: ignore[arg-type]
        rate = head / s
        rows.append([f"{label} ({delivered:,} delivered)", f"{head:,}", f"{s:.2f} s", fmt_rate(rate) + "/s", f"{rate / decoded:.2f}"])
    print(table(["what", "records read", "time", "records/s", "vs decode floor"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="events of the workload log written through the API")
    ap.add_argument("--log", default="/tmp/entity-ledger-bench/follow_workload.db")
    ap.add_argument("--copies", type=int, default=10, help="also measure a file of this many copies of the log (0: no)")
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.log), exist_ok=True)
    build_log(args.log, args.events)
    print(machine())
    measure(args.log, "the workload log (written through the API)")
    if args.copies > 1:
        big = args.log.replace(".db", f"_x{args.copies}.db")
        t = time.perf_counter()
        replicate(args.log, big, args.copies)
        note(f"{big}: {args.copies} copies made in {time.perf_counter() - t:.0f} s")
        measure(big, f"{args.copies} copies of it (raw inserts, fresh stream ids)")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(big + suffix):
                os.remove(big + suffix)
    note("the machine is shared (2 cores, other engineers' jobs): expect ±30% between runs")


if __name__ == "__main__":
    main()

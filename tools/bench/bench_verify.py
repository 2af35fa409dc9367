"""``Ledger.verify()``: records checked per second at several log sizes, against a hashlib floor.

For each size a SQLite (or PostgreSQL) log is written raw (``EventStore.append``, 500 records
a batch) with the kinds of record ``verify`` treats differently: every other record is an
``entity.version`` (a root version naming one child version written just before it, so the
version, tree and index checks all have rows), the rest plain notes. Then, in one run:

- ``verify``: the whole ``Ledger.verify()`` (seals, chains, tiles rebuilt and compared, the
  stored version index against a rebuild from the log, key audits), records per second;
- floor: one SHA-256 of each record's stored bytes, read from the same store's pages
  (``read_columns``) and hashed in a tight loop: the least any check of every seal must do.

    PYTHONPATH=. .venv/bin/python tools/bench/bench_verify.py [--sizes 10000,100000,1000000]
        [--url postgresql://127.0.0.1:5432/db] [--runs 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ledger import Ledger  # noqa: E402
from ledger.events.bodies import ENTITY_VERSION, entity_version_body  # noqa: E402
from ledger.events.seal import NewEvent  # noqa: E402
from ledger.model.tree import Ref  # noqa: E402
from tools.bench._benchutil import machine, median, note, table  # noqa: E402

BATCH = 500
_WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _version(ecs_id: uuid.UUID, lineage: uuid.UUID, is_root: bool, children: dict[str, object]) -> bytes:
    return orjson.dumps(
        entity_version_body(
            ecs_id=ecs_id, lineage_id=lineage, previous_ecs_id=None, entity_type="bench.Item", schema_version=1,
            is_root=is_root, tree_root=ecs_id, cause="created", values_json=b'{"name":"item","qty":3,"price":1.5}',
            children=children, meta={}, created_at=_WHEN, forked_at=None,
        )
    )


def fill(led: Ledger, count: int) -> float:
    """Append ``count`` records: (child version, root version naming it, note, note) repeated."""
    started = time.perf_counter()
    batch: list[NewEvent] = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            child = uuid.uuid4()
            batch.append(NewEvent(uuid.uuid4(), 1, ENTITY_VERSION, _version(child, uuid.uuid4(), False, {}), None, ecs_id=child))
        elif kind == 1:
            root = uuid.uuid4()
            body = _version(root, uuid.uuid4(), True, {"part": Ref(child)})
            batch.append(NewEvent(uuid.uuid4(), 1, ENTITY_VERSION, body, None, ecs_id=root))
        else:
            batch.append(NewEvent(uuid.uuid4(), 1, "bench.note", b'{"n":%d,"pad":"%s"}' % (i, b"x" * 200), None))
        if len(batch) == BATCH:
            led.store.append(batch)
            batch = []
    if batch:
        led.store.append(batch)
    led.store.catch_up_index()
    return time.perf_counter() - started


def floor_rate(led: Ledger) -> float:
    """Records/s of reading every page and hashing each record's bytes once (SHA-256)."""
    sha256 = hashlib.sha256
    started = time.perf_counter()
    start, count = 1, 0
    while True:
        page = led.store.read_columns(start, 10_000, past_head=True)
        for state in page.states:
            sha256(state).digest()
        count += len(page)
        if len(page) < 10_000:
            break
        start = page.positions[-1] + 1
    return count / (time.perf_counter() - started)


def verify_rate(led: Ledger, n: int) -> float:
    started = time.perf_counter()
    report = led.verify()
    elapsed = time.perf_counter() - started
    assert report.ok and report.events_checked == n, report.problems[:3]
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--url", default=None, help="a PostgreSQL URL (a fresh schema per size); default SQLite files")
    parser.add_argument("--runs", type=int, default=3, help="verify runs per size (the median is shown)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the SQLite files go (kept: rerun reuses them)")
    args = parser.parse_args()
    print(machine())
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        if args.url:
            url = f"{args.url}{'&' if '?' in args.url else '?'}schema=bench_verify_{n}"
        else:
            url = f"sqlite:///{os.path.join(args.dir, f'bench-verify-{n}.db')}"
        with Ledger(url) as led:
            if led.store.head() != n:
                if led.store.head():
                    raise SystemExit(f"{url} holds {led.store.head()} records, not {n}: remove it first")
                note(f"{n:,} records written in {fill(led, n):.1f} s")
            rates, floors = [], []
            for _ in range(args.runs):  # taking turns: the machine's load drifts
                floors.append(floor_rate(led))
                rates.append(verify_rate(led, n))
            rate, floor = median(rates), median(floors)
            rows.append((f"{n:,}", "sqlite" if not args.url else "postgresql", f"{rate:,.0f}/s", f"{1e6 / rate:.2f} µs",
                         f"{floor:,.0f}/s", f"{floor / rate:.1f}×", "met" if rate >= 300_000 else "not met"))
    print(table(("records", "store", "verify", "per record", "floor: read + SHA-256", "verify / floor", "≥ 300k/s"), rows))


if __name__ == "__main__":
    main()

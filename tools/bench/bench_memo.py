"""Memoization: a cache hit against a real execution of the same cheap function, and the raw lookup.

For each store (memory://, SQLite NORMAL, PostgreSQL when reachable) the memo index is first
filled with ``--fill`` distinct memoized executions, then per call (p50 / p90 of ``--calls``):

- *real*: ``execute`` of the cheapest functions, registered without ``cache``: ``b_mul(qty: int,
  price: float) -> float`` (plain arguments, a wrapped result) and ``b_make(item: Item) -> Summary``
  (one entity in, one created);
- *hit*: the same functions registered with ``cache=True``, called with arguments already seen
  (a hit: no run, copies of the stored outputs, one ``execution.completed`` appended); repeated,
  so the reused execution's payload is kept by the ledger after the first lookup;
- *hit, key not met before*: each call a key of the ``--fill`` executions not yet looked up here
  (one indexed read of the memo table joined with the record, then the same as a hit);
- *lookup*: the index's ``memo_lookup`` of a stored key (the memo row and its record, one query);
- *floor*: the raw keyed read of the same table joined with the record's state, with ``sqlite3`` /
  psycopg on their own connection (a dict lookup for memory://), measured in the same run.

    .venv/bin/python tools/bench/bench_memo.py [--fill 2000] [--calls 400] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ledger import CallableRegistry, Entity, Ledger, set_default_ledger  # noqa: E402
from tools.bench._benchutil import Clock, fmt_us, machine, note, pct, table  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"


class Item(Entity):
    name: str
    qty: int
    price: float


class Summary(Entity):
    label: str
    total: float


def b_mul(qty: int, price: float) -> float:
    return qty * price


def b_make(item: Item) -> Summary:
    return Summary(label=item.name, total=item.qty * item.price)


for _fn in (b_mul, b_make):
    CallableRegistry.register(_fn.__name__)(_fn)
    CallableRegistry.register(f"{_fn.__name__}_memo", cache=True)(_fn)


def timed(fn: Callable[[int], object], calls: int) -> list[float]:
    out = []
    for i in range(calls):
        t0 = time.perf_counter_ns()
        fn(i)
        out.append(time.perf_counter_ns() - t0)
    return out


def cells(ns: list[float]) -> tuple[str, str]:
    return fmt_us(pct(ns, 50)), fmt_us(pct(ns, 90))


def floor_reader(url: str, led: Ledger) -> Callable[[bytes], object]:
    """The raw keyed read of the memo table on its own connection (a dict lookup for memory://)."""
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        query = (
            "SELECT m.execution_id, m.position, e.state FROM ledger_memo_index m "
            "JOIN stored_events e ON e.rowid = m.position WHERE m.cache_key = ?"
        )
        return lambda key: con.execute(query, (key,)).fetchone()
    if url.startswith("postgresql"):
        import psycopg

        base, _, schema = url.partition("?schema=")
        pg = psycopg.connect(base, autocommit=True)
        query = (
            f'SELECT m.execution_id, m.position, e.state FROM "{schema}".ledger_memo_index m '
            f'JOIN "{schema}".stored_events e ON e.notification_id = m.position WHERE m.cache_key = %s'
        )
        return lambda key: pg.execute(query, (key,), prepare=True).fetchone()
    memos = {bytes.fromhex(k): v for k, v in led.index.memos.items()}
    return memos.get


def run_store(label: str, url: str, fill: int, calls: int) -> list[list[str]]:
    led = Ledger(url)
    set_default_ledger(led)
    try:
        note(f"{label}: filling the memo index with {fill} executions")
        for i in range(fill):
            CallableRegistry.execute("b_mul_memo", qty=i, price=1.5)
        item = Item(name="widget", qty=3, price=2.5)
        led.registry.register_entity(item)
        CallableRegistry.execute("b_make_memo", item=item)  # the execution the hits reuse
        rows = []
        for name, kwargs in (("b_mul", {"qty": 7, "price": 1.5}), ("b_make", {"item": item})):
            CallableRegistry.execute(f"{name}_memo", **kwargs)
            CallableRegistry.execute(name, **kwargs)  # warm both paths
            real = timed(lambda i: CallableRegistry.execute(name, **kwargs), calls)
            hit = timed(lambda i: CallableRegistry.execute(f"{name}_memo", **kwargs), calls)
            rows.append([label, f"`{name}` real execution", *cells(real), "1.0×"])
            rows.append([label, f"`{name}` cache hit", *cells(hit), f"{pct(real, 50) / pct(hit, 50):.1f}×"])
        first = timed(lambda i: CallableRegistry.execute("b_mul_memo", qty=i, price=1.5), min(calls, fill))
        rows.append([label, "`b_mul` cache hit, key not met before in this process", *cells(first), ""])
        keys = list(led.index.memo_rows())[:calls]
        lookup = timed(lambda i: led.index.memo_lookup(keys[i % len(keys)]), calls)
        raw = floor_reader(url, led)
        key_bytes = [bytes.fromhex(k) for k in keys]
        floor = timed(lambda i: raw(key_bytes[i % len(key_bytes)]), calls)
        rows.append([label, "memo lookup + its record (`memo_lookup`, one query)", *cells(lookup), ""])
        rows.append([label, "floor: raw keyed read (memo row + record state)", *cells(floor), ""])
        assert led.verify().ok
        return rows
    finally:
        set_default_ledger(None)
        led.close()


def pg_url(base: str) -> tuple[str, str] | None:
    try:
        import psycopg

        with psycopg.connect(base, connect_timeout=3, autocommit=True):
            pass
    except Exception as exc:  # noqa: BLE001 - no server: the PostgreSQL rows are skipped
        note(f"PostgreSQL at {base} unreachable ({type(exc).__name__}); skipped")
        return None
    schema = f"bench_{uuid.uuid4().hex[:8]}_memo"
    return f"{base}?schema={schema}", schema


def drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    clock = Clock()
    print(f"# bench_memo: cache hit vs real execution (fill {args.fill}, {args.calls} calls per cell)\n")
    print(machine() + "\n")
    rows: list[list[str]] = []
    rows += run_store("memory://", "memory://", args.fill, args.calls)
    with tempfile.TemporaryDirectory() as tmp:
        rows += run_store("SQLite NORMAL", f"sqlite:///{os.path.join(tmp, 'memo.db')}", args.fill, args.calls)
    target = None if args.no_pg else pg_url(args.pg)
    if target is not None:
        url, schema = target
        try:
            rows += run_store("PostgreSQL", url, args.fill, args.calls)
        finally:
            drop_schema(args.pg, schema)
    print(table(["store", "call", "p50", "p90", "real p50 / this p50"], rows))
    print(f"\n({clock.elapsed_s():.0f} s)")


if __name__ == "__main__":
    main()

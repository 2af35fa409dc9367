"""Event-store benchmark: append and replay throughput of the ledger against raw floors.

    .venv/bin/python tools/bench/bench_store.py [--events 100000] [--pg URL | --no-pg]

All numbers come from one run on the same payloads: real ``entity.version``
event states written by the ledger itself (Student trees with 20 Grade children
registered in a memory ledger). Prints markdown tables:

(a) append: ``EventStore.append`` with 1, 100 and 1000 events per call for
    memory://, sqlite (synchronous NORMAL and FULL) and PostgreSQL, against raw
    ``sqlite3.executemany`` of the same rows in one transaction into an
    equivalent table and raw psycopg ``COPY`` of the same rows;
(b) replay: ``Ledger(url, replay=True)`` on a store of N events (rebuilds the inline index via
    ``refresh()``) against raw ``SELECT`` + ``orjson.loads`` of the same rows, and
    ``Ledger.verify()`` over the same log.

PostgreSQL uses a throw-away schema ``bench_<random>_<case>`` that is dropped at
the end; an unreachable server is skipped with a note.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import orjson  # noqa: E402

from _benchutil import NS, Clock, GCTimer, fmt_rate, fmt_us, machine, median, note, pct, table  # noqa: E402
from ledger import Entity, Ledger  # noqa: E402
from ledger.events.seal import GENESIS, NewEvent, seal_batch  # noqa: E402
from ledger.store import EventStore  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


class Grade(Entity):
    __ledger_topic__ = "bench_store:Grade"
    course: str
    score: float


class Student(Entity):
    __ledger_topic__ = "bench_store:Student"
    name: str
    gpa: float = 0.0
    grades: list[Grade] = []


# --------------------------------------------------------------------- payloads
def make_events(n: int) -> list[NewEvent]:
    """``n`` real entity.version events, in log order, from a memory ledger."""
    led = Ledger("memory://")
    i = 0
    while led.index.position < n:
        s = Student(
            name=f"student-{i}",
            gpa=3.0 + (i % 10) / 10,
            grades=[Grade(course=f"course-{i}-{j}", score=float(j) / 4) for j in range(20)],
        )
        led.registry.register_entity(s)
        i += 1
    out = [unsealed(n_) for n_ in led.store.iter_all()][:n]
    for event in out:  # what the write side hands the store: the version's id and its tree
        payload = orjson.loads(event.body)
        event.ecs_id = UUID(payload["ecs_id"])
        event.members = tuple(led.index.subtree_ids(event.ecs_id)) if payload["is_root"] else ()
    seal_batch(out, 1, GENESIS)  # floors write the same sealed bytes the store would
    led.close()
    return out


_SEAL_KEYS = ("prev_hash", "log_prev", "position", "hash")


def unsealed(n: Any) -> NewEvent:
    """A stored record back as the batch handed it to the store: body bytes without the seal."""
    payload = orjson.loads(n.state)
    body = orjson.dumps({k: v for k, v in payload.items() if k not in _SEAL_KEYS})
    return NewEvent(n.originator_id, n.originator_version, n.topic, body, payload.get("prev_hash"))


def chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


# ----------------------------------------------------------------------- append
class AppendResult:
    def __init__(self, events: int, seconds: float, per_call_ns: list[int]) -> None:
        self.events = events
        self.seconds = seconds
        self.per_call = per_call_ns

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else float("nan")


def bench_append(store: EventStore, events: Sequence[NewEvent], batch: int, budget_s: float, warm: int) -> AppendResult:
    """Append ``events`` in calls of ``batch``; the first ``warm`` calls are not timed.

    Stops after ``budget_s`` seconds of timed appends (slow single-event cases).
    """
    calls = chunks(events, batch)
    append = store.append
    for c in calls[:warm]:
        append(c)
    per_call: list[int] = []
    n_ev = 0
    total = 0
    limit = int(budget_s * NS)
    gc.collect()
    for c in calls[warm:]:
        t0 = time.perf_counter_ns()
        append(c)
        dt = time.perf_counter_ns() - t0
        per_call.append(dt)
        total += dt
        n_ev += len(c)
        if total > limit:
            break
    return AppendResult(n_ev, total / NS, per_call)


# ----------------------------------------------------------------------- floors
_SQLITE_DDL = (
    "CREATE TABLE IF NOT EXISTS {t} (originator_id TEXT, originator_version INTEGER, "
    "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
)  # the same table eventsourcing's SQLiteApplicationRecorder creates


def sqlite_floor_append(path: str, rows: list[tuple], synchronous: str) -> float:
    """rows/s of executemany in one transaction into the equivalent table (WAL)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    con.execute(_SQLITE_DDL.format(t="floor_events"))
    gc.collect()
    t0 = time.perf_counter_ns()
    con.execute("BEGIN")
    con.executemany("INSERT INTO floor_events VALUES (?,?,?,?)", rows)
    con.execute("COMMIT")
    dt = time.perf_counter_ns() - t0
    con.close()
    return len(rows) / (dt / NS)


def sqlite_floor_single(path: str, rows: list[tuple], synchronous: str, budget_s: float) -> float:
    """rows/s of one INSERT per transaction (the floor for single-event appends)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    con.execute(_SQLITE_DDL.format(t="floor_single"))
    limit = int(budget_s * NS)
    gc.collect()
    n = 0
    t0 = time.perf_counter_ns()
    for row in rows:
        con.execute("BEGIN")
        con.execute("INSERT INTO floor_single VALUES (?,?,?,?)", row)
        con.execute("COMMIT")
        n += 1
        if time.perf_counter_ns() - t0 > limit:
            break
    dt = time.perf_counter_ns() - t0
    con.close()
    return n / (dt / NS)


def sqlite_floor_replay(path: str) -> tuple[float, int]:
    """rows/s of SELECT (in log order) + orjson.loads of each state."""
    con = sqlite3.connect(path)
    loads = orjson.loads
    gc.collect()
    t0 = time.perf_counter_ns()
    n = 0
    for _rowid, _oid, _ver, _topic, state in con.execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
    ):
        loads(state)
        n += 1
    dt = time.perf_counter_ns() - t0
    con.close()
    return n / (dt / NS), n


def pg_conninfo(url: str) -> dict[str, Any]:
    from ledger.store import parse_store_url

    spec = parse_store_url(url)
    info: dict[str, Any] = dict(host=spec.host, port=spec.port, user=spec.user, dbname=spec.dbname)
    if spec.password:
        info["password"] = spec.password
    return info


def pg_floor_copy(conninfo: dict[str, Any], schema: str, events: Sequence[NewEvent]) -> float:
    """rows/s of COPY (one transaction) into a table equivalent to the recorder's."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.floor_events (originator_id uuid NOT NULL, "
                "originator_version bigint NOT NULL, topic text, state bytea, "
                "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            ).format(sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL("CREATE UNIQUE INDEX ON {}.floor_events (notification_id ASC)").format(
                sql.Identifier(schema)
            )
        )
        gc.collect()
        t0 = time.perf_counter_ns()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(
                sql.SQL(
                    "COPY {}.floor_events (originator_id, originator_version, topic, state) FROM STDIN"
                ).format(sql.Identifier(schema))
            ) as cp:
                for e in events:
                    cp.write_row((e.stream_id, e.version, e.topic, e.state))
        dt = time.perf_counter_ns() - t0
    return len(events) / (dt / NS)


def pg_floor_single(conninfo: dict[str, Any], schema: str, events: Sequence[NewEvent], budget_s: float) -> float:
    """rows/s of one INSERT per transaction (the floor for single-event appends)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.floor_single (originator_id uuid NOT NULL, "
                "originator_version bigint NOT NULL, topic text, state bytea, "
                "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            ).format(sql.Identifier(schema))
        )
        stmt = sql.SQL(
            "INSERT INTO {}.floor_single (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)"
        ).format(sql.Identifier(schema))
        limit = int(budget_s * NS)
        gc.collect()
        n = 0
        t0 = time.perf_counter_ns()
        for e in events:
            with conn.transaction():
                conn.execute(stmt, (e.stream_id, e.version, e.topic, e.state), prepare=True)
            n += 1
            if time.perf_counter_ns() - t0 > limit:
                break
        dt = time.perf_counter_ns() - t0
    return n / (dt / NS)


def pg_floor_replay(conninfo: dict[str, Any], schema: str) -> tuple[float, int]:
    import psycopg
    from psycopg import sql

    loads = orjson.loads
    with psycopg.connect(**conninfo) as conn:
        gc.collect()
        t0 = time.perf_counter_ns()
        n = 0
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state "
                    "FROM {}.stored_events ORDER BY notification_id"
                ).format(sql.Identifier(schema))
            )
            for _nid, _oid, _ver, _topic, state in cur:
                loads(state)
                n += 1
        dt = time.perf_counter_ns() - t0
    return n / (dt / NS), n


def pg_drop(conninfo: dict[str, Any], schemas: Sequence[str]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(**conninfo, autocommit=True) as conn:
        for s in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s)))


def pg_reachable(conninfo: dict[str, Any]) -> str | None:
    try:
        import psycopg

        with psycopg.connect(**conninfo, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: skip PostgreSQL
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


# ----------------------------------------------------------------------- replay
def timed(fn: Callable[[], Any], collect: bool = True) -> tuple[Any, float]:
    if collect:
        gc.collect()
    t0 = time.perf_counter_ns()
    out = fn()
    return out, (time.perf_counter_ns() - t0) / NS


def timed_gc(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, seconds, seconds spent in GC) with GC on."""
    gc.collect()  # outside the GC timer: only collections triggered by ``fn`` count
    with GCTimer() as t:
        out, secs = timed(fn, collect=False)
    return out, secs, t.ns / NS


def timed_nogc(fn: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    gc.disable()
    try:
        return timed(fn)
    finally:
        gc.enable()


# ------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="events per batched run and in the replayed log")
    ap.add_argument("--single-budget", type=float, default=2.5, help="seconds per single-event append case")
    ap.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL (without ?schema=)")
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    clock = Clock()
    N = args.events

    note(f"generating {N} events …")
    events = make_events(N)
    sizes = [len(e.state) for e in events]
    rows = [(e.stream_id.hex, e.version, e.topic, e.state) for e in events]
    n_streams = len({e.stream_id for e in events})

    tmp = tempfile.mkdtemp(prefix="ledger-bench-")
    pg_schemas: list[str] = []
    pg_info: dict[str, Any] | None = None
    pg_skip: str | None = None
    if args.no_pg:
        pg_skip = "--no-pg given"
    else:
        pg_info = pg_conninfo(args.pg)
        pg_skip = pg_reachable(pg_info)
    tag = secrets.token_hex(4)

    append_rows: list[list[object]] = []
    floor_rows: list[list[object]] = []
    replay_rows: list[list[object]] = []
    notes: list[str] = []
    replay_sources: dict[str, str] = {}
    floors: dict[str, float] = {}

    def record(backend: str, batch: int, res: AppendResult, floor_key: str | None) -> None:
        if floor_key and batch == 1:
            floor_key += "-single"
        floor = floors.get(floor_key) if floor_key else None
        ratio = f"{res.rate / floor:.0%}" if floor else "–"
        append_rows.append(
            [
                backend,
                batch,
                res.events,
                fmt_rate(res.rate),
                fmt_us(median(res.per_call)),
                fmt_us(pct(res.per_call, 90)),
                ratio,
            ]
        )

    try:
        # ---- floors first, so ratios can be printed with each case
        for sync in ("NORMAL", "FULL"):
            rates = [sqlite_floor_append(os.path.join(tmp, f"floor-{sync}-{r}.db"), rows, sync) for r in range(3)]
            floors[f"sqlite-{sync}"] = median(rates)
            floor_rows.append([f"sqlite3 executemany, 1 txn, sync={sync}", N, fmt_rate(median(rates)), f"{fmt_rate(min(rates))}–{fmt_rate(max(rates))}"])
            rate = sqlite_floor_single(os.path.join(tmp, f"floor1-{sync}.db"), rows, sync, args.single_budget)
            floors[f"sqlite-{sync}-single"] = rate
            floor_rows.append([f"sqlite3 1 row per txn, sync={sync}", "(timed)", fmt_rate(rate), "one run"])
        if pg_skip is None:
            assert pg_info is not None
            rates = []
            for r in range(3):
                schema = f"bench_{tag}_floor{r}"
                pg_schemas.append(schema)
                rates.append(pg_floor_copy(pg_info, schema, events))
            floors["pg"] = median(rates)
            floor_rows.append(["psycopg COPY, 1 txn", N, fmt_rate(median(rates)), f"{fmt_rate(min(rates))}–{fmt_rate(max(rates))}"])
            schema = f"bench_{tag}_floor1"
            pg_schemas.append(schema)
            rate = pg_floor_single(pg_info, schema, events, args.single_budget)
            floors["pg-single"] = rate
            floor_rows.append(["psycopg 1 INSERT per txn", "(timed)", fmt_rate(rate), "one run"])

        # ---- memory
        for batch in (1, 100, 1000):
            note(f"append memory batch={batch}")
            st = EventStore("memory://")
            res = bench_append(st, events, batch, budget_s=args.single_budget if batch == 1 else 60, warm=max(1, 1000 // batch))
            record("memory", batch, res, None)
            st.close()

        # ---- sqlite
        for sync in ("NORMAL", "FULL"):
            for batch in (1, 100, 1000):
                note(f"append sqlite sync={sync} batch={batch}")
                path = os.path.join(tmp, f"ledger-{sync}-{batch}.db")
                url = f"sqlite:///{path}?synchronous={sync}"
                st = EventStore(url)
                res = bench_append(st, events, batch, budget_s=args.single_budget if batch == 1 else 60, warm=max(1, 200 // batch))
                record(f"sqlite {sync}", batch, res, f"sqlite-{sync}")
                st.close()
                if batch == 1000 and sync == "NORMAL":
                    replay_sources["sqlite NORMAL"] = url

        # ---- postgres
        if pg_skip is None:
            for batch in (1, 100, 1000):
                note(f"append postgresql batch={batch}")
                schema = f"bench_{tag}_b{batch}"
                pg_schemas.append(schema)
                url = f"{args.pg}?schema={schema}"
                st = EventStore(url)
                res = bench_append(st, events, batch, budget_s=args.single_budget if batch == 1 else 60, warm=max(1, 200 // batch))
                record("postgresql", batch, res, "pg")
                st.close()
                if batch == 1000:
                    replay_sources["postgresql"] = url
        else:
            notes.append(f"PostgreSQL skipped: {pg_skip}")

        # ---- replay + verify
        note("replay memory")
        def mem_ledger() -> Ledger:
            m = Ledger("memory://")
            for c in chunks(events, 1000):
                m.store.append(c)
            return m

        led = mem_ledger()
        applied, secs, gcsecs = timed_gc(led.refresh)
        _, vsecs = timed(led.verify)
        led.close()
        del led
        led = mem_ledger()
        _, nogc_secs = timed_nogc(led.refresh)
        loads = orjson.loads
        states = [e.state for e in events]

        def raw_mem() -> int:
            for s in states:
                loads(s)
            return len(states)

        _, fsecs = timed(raw_mem)
        replay_rows.append(
            ["memory (refresh on a fresh index)", applied, fmt_rate(applied / secs), fmt_rate(N / fsecs) + " (orjson.loads only)",
             f"{(applied / secs) / (N / fsecs):.0%}", f"{secs:.2f} s", f"{gcsecs / secs:.0%}",
             f"{fmt_rate(applied / nogc_secs)} ({(applied / nogc_secs) / (N / fsecs):.0%})", fmt_rate(N / vsecs)]
        )
        led.close()

        for name, url in replay_sources.items():
            note(f"replay {name}")
            led, secs, gcsecs = timed_gc(lambda: Ledger(url, replay=True))
            applied = led.index.event_count
            report, vsecs = timed(led.verify)
            if not report.ok:
                notes.append(f"{name}: verify reported problems: {report.problems[:3]}")
            led.close()
            del led
            led, nogc_secs = timed_nogc(lambda: Ledger(url, replay=True))
            led.close()
            del led
            if name.startswith("sqlite"):
                frate, fn = sqlite_floor_replay(url.split("///", 1)[1].split("?", 1)[0])
                label = "sqlite3 SELECT + orjson.loads"
            else:
                assert pg_info is not None
                frate, fn = pg_floor_replay(pg_info, url.rsplit("schema=", 1)[1])
                label = "psycopg SELECT + orjson.loads"
            rate = applied / secs
            replay_rows.append(
                [f"{name}: Ledger(url, replay=True)", applied, fmt_rate(rate), f"{fmt_rate(frate)} ({label})", f"{rate / frate:.0%}", f"{secs:.2f} s",
                 f"{gcsecs / secs:.0%}", f"{fmt_rate(applied / nogc_secs)} ({(applied / nogc_secs) / frate:.0%})", fmt_rate(report.events_checked / vsecs)]
            )
    finally:
        if pg_info is not None and pg_schemas:
            try:
                pg_drop(pg_info, pg_schemas)
            except Exception as exc:  # noqa: BLE001
                print(f"warning: could not drop schemas {pg_schemas}: {exc}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)

    # ---- report
    print("## Event store benchmark\n")
    print(f"Machine: {machine()}\n")
    print(
        f"Payload: {N} real `entity.version` states from the ledger (Student + 20 Grade trees), "
        f"{n_streams} streams; state size mean {sum(sizes) / len(sizes):.0f} B "
        f"(min {min(sizes)}, median {int(median(sizes))}, max {max(sizes)}).\n"
    )
    print("### Floors (same rows)\n")
    print(table(["floor", "rows", "rows/s (median of 3)", "range"], floor_rows))
    print("\n### (a) `EventStore.append`\n")
    print(
        table(
            ["store", "events/append", "events timed", "events/s", "per append p50", "per append p90", "vs raw floor"],
            append_rows,
        )
    )
    print(
        "\nFloors: batched sqlite rows vs `sqlite3.executemany` (same sync), batched postgresql vs psycopg `COPY`; "
        "single-event rows vs one raw INSERT per transaction. "
        f"Single-event cases run for ~{args.single_budget:.1f} s of appends.\n"
    )
    print("### (b) replay (rebuild the inline index) and `Ledger.verify()`\n")
    print(
        table(
            ["store", "events", "replay events/s", "raw floor rows/s", "replay / floor", "replay time",
             "time in GC", "replay with GC off (/ floor)", "verify events/s"],
            replay_rows,
        )
    )
    print(
        "\nReplay = opening `Ledger(url, replay=True)` (recorder setup + `refresh()` over the whole log); memory: `refresh()` "
        "of a fresh index over a POPO store holding the events. \"time in GC\" is measured with `gc.callbacks`; "
        "\"GC off\" repeats the replay with `gc.disable()` (what-if, not the library's behaviour)."
    )
    for n_ in notes:
        print(f"\n> {n_}")
    print(f"\n_total wall time {clock.elapsed_s():.0f} s_")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Side by side with the seeds: entity-ledger against the implementation it grew from.

    .venv/bin/python tools/bench/bench_seeds.py --seeds PATH [--rounds 7] [--calls 30] [--top 15]
    LEDGER_SEEDS=PATH .venv/bin/python tools/bench/bench_seeds.py

The "seeds" are the ECS entity + callable registry of github.com/furlat/Abstractions
(package ``abstractions``): ``abstractions/ecs/entity.py``, ``callable_registry.py`` and what
they import (``ecs_address_parser``, ``functional_api``, ``return_type_analyzer``,
``entity_unpacker``, ``type_safe_unpacker``). They keep every tree in process dictionaries;
they have no store. Issue 11 asks for >= 25x on every scenario on SQLite NORMAL, measured in
the same run, so this script runs both, interleaved, on the same machine.

Getting a seeds checkout (none is shipped here, on purpose: it is not our code):
``git clone https://github.com/furlat/Abstractions /path/to/seeds`` and check out a commit
from before the ``abstractions/events`` package (mid-2025, when ``callable_registry.py``
imported only ``abstractions.ecs.*``); or copy just the seven files above into
``PATH/abstractions/ecs/`` with empty ``__init__.py`` files in ``abstractions/`` and
``abstractions/ecs/``. ``import abstractions.ecs.callable_registry`` with ``PATH`` on
``sys.path`` must work; the seeds need only pydantic v2, which our venv already has.
Without ``--seeds`` / ``$LEDGER_SEEDS`` the script prints a note and exits 0.

Scenarios (the same work on both sides, written the way each side's README shows it):

* register a 21-entity tree (root + 4 children in a list + 4 grandchildren each):
  ``root.promote_to_root()`` on a freshly built tree (building it is not timed);
* version it after one leaf changed: fetch the current version with
  ``EntityRegistry.get_stored_entity`` and change one leaf (not timed), then time
  ``EntityRegistry.version_entity(root)``. The fetch is there because the seeds store the
  very objects they registered: a leaf edited on the live tree edits the "stored" tree too,
  so ``version_entity`` finds no change and writes nothing. Both sides do the same and the
  self-check asserts that every call writes one new version;
* ``CallableRegistry.execute`` of a creation (entity in, new entity out), a mutation (the
  function changes its input and returns it; the next call passes the returned version), and
  a function returning a tuple of three new entities;
* reading a stored entity back: ``EntityRegistry.get_stored_entity`` of a 21-entity tree
  and of a single entity (a rotating pool of recently registered ones).

Each side runs in its own spawned process, so neither pays for the other's heap in its
garbage collections (the seeds keep every tree alive as Python objects). The parent sends
the batches in rounds (one discarded warm-up round), rotating which side goes first; every
call is timed alone (``perf_counter_ns``), GC enabled, a ``gc.collect()`` before each batch.
Ours runs on SQLite (WAL, ``?synchronous=NORMAL``) in a temp dir, and on ``memory://``.

Floor (same run, in the SQLite worker): the rows ours wrote for one call of each scenario
(the real payloads), ``orjson.dumps``-ed and inserted with raw ``sqlite3`` in one
transaction (WAL, NORMAL); for reads, ``SELECT`` of the same rows by key + ``orjson.loads``.

Then cProfile (top ``--top`` by cumulative time, GC off so pauses are not charged to random
functions; only the timed calls are profiled) of our side on SQLite for the scenario with
the worst seeds/ours ratio, and for the worst write or ``execute`` when that was a read
(``--profile NAME,...`` picks others).
"""

# No ``from __future__ import annotations``: the entity classes and registered functions are
# defined inside functions (one set per side, after that side's import), and both pydantic
# and the registries resolve their annotations; evaluated eagerly they are plain classes.

import argparse
import cProfile
import gc
import io
import multiprocessing as mp
import os
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
import types
from typing import Any, Callable, List, Optional, Tuple
from uuid import uuid4

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from _benchutil import Clock, GCTimer, fmt_us, machine, median, note, pct, table  # noqa: E402

SCENARIOS: List[Tuple[str, str]] = [
    ("register21", "register a 21-entity tree (1 + 4 + 16)"),
    ("version21", "version it, one leaf changed"),
    ("create", "`execute`: creation (entity → new entity)"),
    ("mutate", "`execute`: mutation (returns its input)"),
    ("tuple3", "`execute`: returns a tuple of 3 entities"),
    ("read21", "read back a stored 21-entity tree"),
    ("read1", "read back one stored entity"),
]
READS = ("read21", "read1")
TARGET = 25.0  # issue 11: seeds / ours on SQLite NORMAL, every scenario
POOL = 40  # trees / entities registered up front for the read scenarios


# ------------------------------------------------------------------ the workload (both sides)
def define_models(Entity: type, topic_prefix: Optional[str]) -> types.SimpleNamespace:
    """The entity classes, once per side (``Entity`` is that side's base class)."""

    class Pupil(Entity):  # type: ignore[misc, valid-type]
        if topic_prefix:
            __ledger_topic__ = topic_prefix + "Pupil"
        name: str = ""
        score: float = 0.0

    class Klass(Entity):  # type: ignore[misc, valid-type]
        if topic_prefix:
            __ledger_topic__ = topic_prefix + "Klass"
        name: str = ""
        pupils: List[Pupil] = []

    class School(Entity):  # type: ignore[misc, valid-type]
        if topic_prefix:
            __ledger_topic__ = topic_prefix + "School"
        name: str = ""
        classes: List[Klass] = []

    class Item(Entity):  # type: ignore[misc, valid-type]
        if topic_prefix:
            __ledger_topic__ = topic_prefix + "Item"
        name: str = ""
        qty: int = 0
        price: float = 0.0
        sku: str = ""
        active: bool = True

    class Summary(Entity):  # type: ignore[misc, valid-type]
        if topic_prefix:
            __ledger_topic__ = topic_prefix + "Summary"
        label: str = ""
        total: float = 0.0

    return types.SimpleNamespace(Pupil=Pupil, Klass=Klass, School=School, Item=Item, Summary=Summary)


def define_functions(CallableRegistry: Any, m: types.SimpleNamespace) -> None:
    """The registered functions, once per side, in the README style of both projects."""
    Item, Summary = m.Item, m.Summary

    def b_create(item: Item) -> Summary:  # type: ignore[valid-type]
        return Summary(label=item.name, total=item.qty * item.price)

    def b_mutate(item: Item) -> Item:  # type: ignore[valid-type]
        item.qty += 1
        return item

    def b_tuple3(item: Item) -> Tuple[Summary, Summary, Summary]:  # type: ignore[valid-type]
        return (
            Summary(label="a", total=item.price),
            Summary(label="b", total=float(item.qty)),
            Summary(label="c", total=item.price * item.qty),
        )

    CallableRegistry.register("b_create")(b_create)
    CallableRegistry.register("b_mutate")(b_mutate)
    CallableRegistry.register("b_tuple3")(b_tuple3)


def make_school(m: types.SimpleNamespace, i: int) -> Any:
    return m.School(
        name=f"school {i}",
        classes=[
            m.Klass(name=f"class {c}", pupils=[m.Pupil(name=f"pupil {c}.{p}", score=1.0) for p in range(4)])
            for c in range(4)
        ],
    )


def make_item(m: types.SimpleNamespace, i: int) -> Any:
    return m.Item(name=f"widget {i}", qty=3, price=2.5, sku=f"W-{i}", active=True)


class Workload:
    """The scenarios over one side's ``EntityRegistry`` / ``CallableRegistry``.

    ``versions_of(lineage_id)`` counts a lineage's stored versions (only for the self-check);
    ``after_call(scenario)`` lets our SQLite side capture the rows one call wrote.
    """

    def __init__(self, Entity: type, EntityRegistry: Any, CallableRegistry: Any, *,
                 topic_prefix: Optional[str], versions_of: Callable[[Any], int]) -> None:
        self.m = define_models(Entity, topic_prefix)
        define_functions(CallableRegistry, self.m)
        self.ER, self.CR = EntityRegistry, CallableRegistry
        self.versions_of = versions_of
        self.timer = GCTimer()
        self.timer.__enter__()  # for the life of the worker: GC time inside timed calls
        self.profiler: Optional[cProfile.Profile] = None
        self.k = 0  # names of built objects
        m = self.m
        self.item = make_item(m, -1)
        self.item.promote_to_root()
        self.cur = make_item(m, -2)
        self.cur.promote_to_root()
        vroot = make_school(m, -1)
        vroot.promote_to_root()
        self.vroot_id = vroot.ecs_id
        self.vlineage = vroot.lineage_id
        self.leaf = 0
        self.pool21 = []
        self.pool1 = []
        for i in range(POOL):
            s = make_school(m, 1000 + i)
            s.promote_to_root()
            self.pool21.append(s.ecs_id)
            it = make_item(m, 1000 + i)
            it.promote_to_root()
            self.pool1.append(it.ecs_id)
        self.r21 = 0
        self.r1 = 0

    # --------------------------------------------------------------- one call of each
    def prepare(self, scenario: str) -> Any:
        """The untimed part of one call: returns what ``op`` needs."""
        if scenario == "register21":
            self.k += 1
            return make_school(self.m, self.k)
        if scenario == "version21":
            root = self.ER.get_stored_entity(self.vroot_id, self.vroot_id)
            self.leaf += 1
            root.classes[self.leaf % 4].pupils[(self.leaf // 4) % 4].score += 1.0
            return root
        if scenario == "read21":
            self.r21 = (self.r21 + 1) % POOL
            return self.pool21[self.r21]
        if scenario == "read1":
            self.r1 = (self.r1 + 1) % POOL
            return self.pool1[self.r1]
        return None

    def op(self, scenario: str, arg: Any) -> Any:
        """The timed part of one call."""
        if scenario == "register21":
            arg.promote_to_root()
            return arg
        if scenario == "version21":
            self.ER.version_entity(arg)
            return arg
        if scenario == "create":
            return self.CR.execute("b_create", item=self.item)
        if scenario == "mutate":
            self.cur = self.CR.execute("b_mutate", item=self.cur)
            return self.cur
        if scenario == "tuple3":
            return self.CR.execute("b_tuple3", item=self.item)
        # reads
        return self.ER.get_stored_entity(arg, arg)

    def done(self, scenario: str, result: Any) -> None:
        if scenario == "version21":
            self.vroot_id = result.ecs_id

    # ------------------------------------------------------------------- a batch
    def batch(self, scenario: str, n: int) -> Tuple[List[int], int]:
        """``n`` calls: the time of each (ns) and the GC time inside them."""
        args = [self.prepare(scenario) for _ in range(n)] if scenario in ("register21",) else None
        gc.collect()
        timer, prof = self.timer, self.profiler
        out: List[int] = []
        gc_ns = 0
        for i in range(n):
            arg = args[i] if args is not None else self.prepare(scenario)
            g0 = timer.ns
            if prof is not None:
                prof.enable()
            t0 = time.perf_counter_ns()
            res = self.op(scenario, arg)
            t1 = time.perf_counter_ns()
            if prof is not None:
                prof.disable()
            out.append(t1 - t0)
            gc_ns += timer.ns - g0
            self.done(scenario, res)
        return out, gc_ns

    # ---------------------------------------------------------------- self-check
    def check(self, scenario: str) -> Any:
        """One call of ``scenario`` with its outcome asserted (not timed)."""
        m = self.m
        if scenario == "register21":
            root = self.prepare(scenario)
            self.op(scenario, root)
            assert root.is_root_entity() and self.versions_of(root.lineage_id) == 1, "register wrote no tree"
            return root
        if scenario == "version21":
            before = self.versions_of(self.vlineage)
            root = self.prepare(scenario)
            self.done(scenario, self.op(scenario, root))
            after = self.versions_of(self.vlineage)
            assert after == before + 1, f"version_entity wrote {after - before} versions, not 1"
            return root
        if scenario == "create":
            out = self.op(scenario, None)
            assert isinstance(out, m.Summary) and out.lineage_id != self.item.lineage_id, out
            return out
        if scenario == "mutate":
            prev = self.cur
            before = self.versions_of(prev.lineage_id)
            out = self.op(scenario, None)
            assert isinstance(out, m.Item) and out.lineage_id == prev.lineage_id and out.ecs_id != prev.ecs_id
            assert out.qty == prev.qty + 1, (out.qty, prev.qty)
            after = self.versions_of(prev.lineage_id)
            assert after == before + 1, f"mutation wrote {after - before} versions, not 1"
            return out
        if scenario == "tuple3":
            out = self.op(scenario, None)
            assert isinstance(out, list) and len(out) == 3 and all(isinstance(e, m.Summary) for e in out), out
            assert len({e.lineage_id for e in out}) == 3
            return out
        if scenario == "read21":
            eid = self.prepare(scenario)
            out = self.op(scenario, eid)
            assert isinstance(out, m.School) and out.ecs_id == eid and len(out.classes) == 4
            assert sum(len(c.pupils) for c in out.classes) == 16
            return out
        eid = self.prepare(scenario)
        out = self.op(scenario, eid)
        assert isinstance(out, m.Item) and out.ecs_id == eid and out.qty == 3
        return out


# ------------------------------------------------------------------------------- sides
def seeds_side(path: str) -> Workload:
    sys.path.insert(0, path)
    from abstractions.ecs.callable_registry import CallableRegistry
    from abstractions.ecs.entity import Entity, EntityRegistry

    def versions_of(lineage_id: Any) -> int:
        return len(EntityRegistry.lineage_registry.get(lineage_id, []))

    return Workload(Entity, EntityRegistry, CallableRegistry, topic_prefix=None, versions_of=versions_of)


class LedgerSide:
    """Our side on one URL; on SQLite it also records the rows one call of each scenario wrote."""

    def __init__(self, url: str, capture: bool) -> None:
        import ledger
        from ledger import CallableRegistry, Entity, EntityRegistry

        self.led = ledger.connect(url)

        def versions_of(lineage_id: Any) -> int:
            return len(EntityRegistry.history(lineage_id))

        self.work = Workload(Entity, EntityRegistry, CallableRegistry, topic_prefix="bench_seeds:",
                             versions_of=versions_of)
        self.captured: dict = {}
        self.events: dict = {}
        for sc, _ in SCENARIOS:
            head = self.led.index.position
            self.work.check(sc)
            new = self.led.store.read(head + 1, 10_000) if self.led.index.position > head else []
            self.events[sc] = len(new)
            if capture:
                self.captured[sc] = [(n.topic, bytes(n.state)) for n in new]
        if capture:  # the row of one registered Item: what the read1 floor reads back
            head = self.led.index.position
            make_item(self.work.m, -3).promote_to_root()
            self.captured["item_row"] = [(n.topic, bytes(n.state)) for n in self.led.store.read(head + 1, 10)]

    def close(self) -> None:
        self.led.close()


class Floor:
    """Raw ``sqlite3`` + ``orjson`` doing the storage part of each scenario on the same rows."""

    def __init__(self, path: str, captured: dict) -> None:
        import orjson

        self.orjson = orjson
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute(
            "CREATE TABLE ev (id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, "
            "version INTEGER NOT NULL, topic TEXT NOT NULL, state BLOB NOT NULL, UNIQUE(stream, version))"
        )
        # rows as dicts: the floor pays orjson.dumps for each, as ours pays for its payloads
        self.rows = {sc: [(t, orjson.loads(s)) for t, s in captured[sc]] for sc, _ in SCENARIOS if sc not in READS}
        self.bytes = {sc: sum(len(s) for _, s in captured[sc]) for sc, _ in SCENARIOS if sc not in READS}
        # read fixtures: POOL copies of a 21-row tree and of one row
        self.groups21: List[List[int]] = [self._insert(self.rows["register21"]) for _ in range(POOL)]
        one = [(t, orjson.loads(s)) for t, s in captured["item_row"]]
        self.groups1: List[List[int]] = [self._insert(one) for _ in range(POOL)]
        self.timer = GCTimer()
        self.timer.__enter__()
        self.r = 0

    def _insert(self, rows: List[Tuple[str, Any]]) -> List[int]:
        dumps = self.orjson.dumps
        params = [(uuid4().hex, 1, t, dumps(d)) for t, d in rows]
        self.con.execute("BEGIN")
        first = None
        for p in params:
            cur = self.con.execute("INSERT INTO ev (stream, version, topic, state) VALUES (?, ?, ?, ?)", p)
            first = cur.lastrowid if first is None else first
        self.con.execute("COMMIT")
        return list(range(first, first + len(params)))

    def batch(self, scenario: str, n: int) -> Tuple[List[int], int]:
        dumps, loads, con = self.orjson.dumps, self.orjson.loads, self.con
        gc.collect()
        out: List[int] = []
        gc_ns = 0
        if scenario in READS:
            groups = self.groups21 if scenario == "read21" else self.groups1
            for _ in range(n):
                self.r = (self.r + 1) % POOL
                ids = groups[self.r]
                sql = f"SELECT state FROM ev WHERE id IN ({','.join('?' * len(ids))})"
                g0 = self.timer.ns
                t0 = time.perf_counter_ns()
                got = [loads(r[0]) for r in con.execute(sql, ids).fetchall()]
                t1 = time.perf_counter_ns()
                assert len(got) == len(ids)
                out.append(t1 - t0)
                gc_ns += self.timer.ns - g0
            return out, gc_ns
        rows = self.rows[scenario]
        for _ in range(n):
            streams = [uuid4().hex for _ in rows]  # ids are made before the clock starts
            g0 = self.timer.ns
            t0 = time.perf_counter_ns()
            params = [(s, 1, t, dumps(d)) for s, (t, d) in zip(streams, rows)]
            con.execute("BEGIN")
            con.executemany("INSERT INTO ev (stream, version, topic, state) VALUES (?, ?, ?, ?)", params)
            con.execute("COMMIT")
            t1 = time.perf_counter_ns()
            out.append(t1 - t0)
            gc_ns += self.timer.ns - g0
        return out, gc_ns


# ------------------------------------------------------------------------------ workers
def profile_text(work: Workload, scenario: str, n: int, top: int) -> str:
    """cProfile of ``n`` timed calls (GC off), top ``top`` by cumulative time."""
    pr = cProfile.Profile()
    gc.collect()
    gc.disable()
    work.profiler = pr
    try:
        work.batch(scenario, n)
    finally:
        work.profiler = None
        gc.enable()
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
    total = next((ln.strip() for ln in lines if "function calls" in ln), "")
    return total + "\n" + "\n".join(lines[start : start + top + 1])


def worker(conn: Any, kind: str, url: str, seeds_path: str, floor_path: str) -> None:
    """One side (and the floor, in the SQLite worker): answers the parent's batches."""
    hosts: dict = {}
    info: dict = {}
    try:
        if kind == "seeds":
            # the seeds print a line per registration and per tuple unpack: keep it off the table
            # (the printing itself still runs, into /dev/null)
            sys.stdout = open(os.devnull, "w")
            work = seeds_side(seeds_path)
            for sc, _ in SCENARIOS:
                work.check(sc)
            hosts["seeds"] = work
            import pydantic

            info["pydantic"] = pydantic.VERSION
            info["files"] = sorted(
                os.path.relpath(m.__file__, seeds_path)
                for name, m in sys.modules.items()
                if name.startswith("abstractions") and getattr(m, "__file__", None)
            )
        else:
            side = LedgerSide(url, capture=bool(floor_path))
            hosts[kind] = side.work
            info["events"] = side.events
            if floor_path:
                floor = Floor(floor_path, side.captured)
                hosts["floor"] = floor
                info["floor_rows"] = {sc: len(r) for sc, r in floor.rows.items()}
                info["bytes"] = floor.bytes
        conn.send(("ready", info))
    except BaseException:  # noqa: BLE001 - reported to the parent, which prints it
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        msg = conn.recv()
        try:
            if msg[0] == "batch":
                _, host, scenario, n = msg
                conn.send(("ok", hosts[host].batch(scenario, n)))
            elif msg[0] == "profile":
                _, host, scenario, n, top = msg
                conn.send(("ok", profile_text(hosts[host], scenario, n, top)))
            else:
                conn.send(("ok", None))
                return
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))


class Worker:
    def __init__(self, ctx: Any, kind: str, url: str = "", seeds_path: str = "", floor_path: str = "") -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, kind, url, seeds_path, floor_path), daemon=True)
        self.proc.start()
        child.close()
        self.kind = kind

    def ready(self) -> dict:
        status, payload = self.conn.recv()
        if status != "ok" and status != "ready":
            raise RuntimeError(f"{self.kind} worker failed to start:\n{payload}")
        return payload

    def ask(self, *msg: Any) -> Any:
        self.conn.send(msg)
        status, payload = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.kind} worker failed on {msg}:\n{payload}")
        return payload

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
            self.conn.recv()
        except (EOFError, OSError):
            pass
        self.proc.join(timeout=10)


# --------------------------------------------------------------------------------- main
def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b else "–"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default=os.environ.get("LEDGER_SEEDS", ""),
                    help="a directory holding the seeds' abstractions/ package (default $LEDGER_SEEDS)")
    ap.add_argument("--rounds", type=int, default=7, help="measured rounds (one more is a discarded warm-up)")
    ap.add_argument("--calls", type=int, default=30, help="calls per scenario, per side, per round")
    ap.add_argument("--top", type=int, default=15, help="lines of the cProfile table")
    ap.add_argument("--profile-calls", type=int, default=200, help="calls profiled (our side, SQLite)")
    ap.add_argument("--profile", default="", help="scenarios to profile, comma-separated (default: the worst "
                    "seeds/ours ratio, plus the worst write or execute if that was a read); names: "
                    + ", ".join(sc for sc, _ in SCENARIOS))
    args = ap.parse_args()
    if not args.seeds:
        print("bench_seeds: no seeds checkout given (--seeds PATH or $LEDGER_SEEDS); see the "
              "docstring for how to get one. Nothing measured.")
        return 0
    unknown = [sc for sc in args.profile.split(",") if sc.strip() and sc.strip() not in dict(SCENARIOS)]
    if unknown:
        ap.error(f"--profile: unknown scenario(s) {unknown}")
    seeds_path = os.path.abspath(args.seeds)
    if not os.path.isfile(os.path.join(seeds_path, "abstractions", "ecs", "callable_registry.py")):
        print(f"bench_seeds: {seeds_path} has no abstractions/ecs/callable_registry.py; see the docstring.")
        return 2

    clock = Clock()
    tmp = tempfile.mkdtemp(prefix="bench-seeds-")
    ctx = mp.get_context("spawn")
    sqlite_url = f"sqlite:///{os.path.join(tmp, 'ours.db')}?synchronous=NORMAL"
    workers = {
        "seeds": Worker(ctx, "seeds", seeds_path=seeds_path),
        "sqlite": Worker(ctx, "sqlite", url=sqlite_url, floor_path=os.path.join(tmp, "floor.db")),
        "memory": Worker(ctx, "memory", url="memory://"),
    }
    sides = [("seeds", "seeds"), ("sqlite", "sqlite"), ("floor", "sqlite"), ("memory", "memory")]
    times: dict = {s: {sc: [] for sc, _ in SCENARIOS} for s, _ in sides}
    gcs: dict = {s: {sc: 0 for sc, _ in SCENARIOS} for s, _ in sides}
    try:
        infos = {}
        for name, w in workers.items():
            try:
                infos[name] = w.ready()
            except RuntimeError as exc:
                print(f"bench_seeds: the {name} side could not start.\n{exc}")
                return 2
        note(f"workers ready ({clock.elapsed_s():.1f} s); {args.rounds} rounds × {args.calls} calls")
        for rnd in range(args.rounds + 1):
            n = max(3, args.calls // 3) if rnd == 0 else args.calls
            for sc, _ in SCENARIOS:
                order = sides[rnd % len(sides):] + sides[: rnd % len(sides)]
                for side, wname in order:
                    ts, g = workers[wname].ask("batch", side, sc, n)
                    if rnd > 0:
                        times[side][sc].extend(ts)
                        gcs[side][sc] += g
            note(f"round {rnd}/{args.rounds} done ({clock.elapsed_s():.0f} s)")

        p50 = {s: {sc: median(times[s][sc]) for sc, _ in SCENARIOS} for s, _ in sides}

        def worst_of(names: List[str]) -> str:
            return min(names, key=lambda sc: p50["seeds"][sc] / p50["sqlite"][sc])

        worst = worst_of([sc for sc, _ in SCENARIOS])
        if args.profile:
            to_profile = [sc.strip() for sc in args.profile.split(",") if sc.strip()]
        else:  # the worst overall, and the worst write if that was a read
            to_profile = [worst]
            worst_write = worst_of([sc for sc, _ in SCENARIOS if sc not in READS])
            if worst_write != worst:
                to_profile.append(worst_write)
        profiles = []
        for sc in to_profile:
            note(f"profiling our side (SQLite) on {sc} ×{args.profile_calls}")
            profiles.append((sc, workers["sqlite"].ask("profile", "sqlite", sc, args.profile_calls, args.top)))
    finally:
        for w in workers.values():
            w.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    events = infos["sqlite"]["events"]
    byts = infos["sqlite"]["bytes"]
    print("## Seeds vs entity-ledger, same scenarios, same run\n")
    print(f"Machine: {machine()}\n")
    print(f"Seeds: `{seeds_path}` ({', '.join(infos['seeds']['files'])}), pydantic {infos['seeds']['pydantic']}, "
          "in-process dictionaries (no store).\n")
    print(f"{args.rounds} rounds × {args.calls} calls per scenario per side ({args.rounds * args.calls} timed calls "
          "each, after a warm-up round); each side in its own process; p50 per call, GC on.\n")
    rows = []
    for sc, label in SCENARIOS:
        s, q, f, mm = p50["seeds"][sc], p50["sqlite"][sc], p50["floor"][sc], p50["memory"][sc]
        mark = "✅" if s / q >= TARGET else "❌"
        rows.append([label, fmt_us(s), fmt_us(q), f"{mark} {ratio(s, q)}", fmt_us(f), ratio(q, f), fmt_us(mm), ratio(s, mm)])
    print(table(["scenario", "seeds p50", "ours SQLite NORMAL p50", "seeds / ours", "floor p50",
                 "ours / floor", "ours memory:// p50", "seeds / ours (memory)"], rows))
    print(
        "\nFloor: the rows ours wrote for one call (real payloads), `orjson.dumps` + raw `sqlite3` INSERT in "
        "one transaction (WAL, synchronous=NORMAL); reads: `SELECT` of the same rows by key + `orjson.loads`. "
        f"Target (issue 11): seeds / ours ≥ {TARGET:.0f}× on SQLite NORMAL.\n"
    )
    detail = []
    for sc, label in SCENARIOS:
        def gshare(side: str) -> str:
            tot = sum(times[side][sc])
            return f"{gcs[side][sc] / tot:.0%}" if tot else "–"

        detail.append([
            sc,
            f"{fmt_us(pct(times['seeds'][sc], 90))} / {fmt_us(pct(times['sqlite'][sc], 90))} / "
            f"{fmt_us(pct(times['memory'][sc], 90))}",
            f"{gshare('seeds')} / {gshare('sqlite')} / {gshare('memory')}",
            str(events.get(sc, "–")),
            "–" if sc in READS else f"{byts[sc]:,} B",
        ])
    print(table(["scenario", "p90 seeds / ours SQLite / ours memory", "GC share of timed calls (same order)",
                 "events ours wrote per call", "bytes ours wrote per call"], detail))
    ws = p50["seeds"][worst] / p50["sqlite"][worst]
    print(f"\nWorst ratio on SQLite NORMAL: {dict(SCENARIOS)[worst]} ({ws:.1f}×); target ≥ {TARGET:.0f}× "
          f"{'met' if ws >= TARGET else 'not met'} on every scenario.\n")
    for sc, prof in profiles:
        gc_share = gcs["sqlite"][sc] / sum(times["sqlite"][sc])
        print(f"### cProfile, ours on SQLite NORMAL: {dict(SCENARIOS)[sc]} ({sc}, ×{args.profile_calls}, "
              f"timed calls only, GC off, top {args.top} by cumulative time)\n")
        print(f"Seeds / ours here: {p50['seeds'][sc] / p50['sqlite'][sc]:.1f}×; in the measured calls (GC on) "
              f"the collector took {gc_share:.0%} of the time.\n")
        print("```")
        print(prof)
        print("```\n")
    print(f"_total wall time {clock.elapsed_s():.0f} s_")
    return 0


if __name__ == "__main__":
    sys.exit(main())

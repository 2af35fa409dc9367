"""Entity benchmark: register and version trees through the public registry.

    .venv/bin/python tools/bench/bench_entities.py [--quick] [--no-sqlite]

For a memory ledger and a SQLite file (synchronous=NORMAL), per operation
(µs, median and p90, after a warm-up; building the Python objects is not timed):

* ``register_entity`` of a fresh 21-entity tree (Student + 20 Grades, and a
  3-level School → 4 Classes → 4 Pupils each), of a 1-entity tree and of a
  1,000-entity tree;
* ``version_entity`` after a one-field change in trees of 1, 21 and 1,000
  entities (flat and 3-level), with the events and bytes written per version
  (only the changed path should be re-serialized), and a call with no change;
* drift: versions 1–100 vs 1,901–2,000 of the same 21-entity lineage (the
  target is flat).

Targets (issue 2): register 21 ≤ 400 µs; version 21 ≤ 1 ms and flat across
versions. Seed reference implementation: 8 ms register 21, 36 ms version 21,
55 ms at version 2,000.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from _benchutil import Clock, fmt_us, machine, median, note, pct, table  # noqa: E402
from ledger import Entity, Ledger  # noqa: E402

SEED_REGISTER_21_NS = 8_000_000
SEED_VERSION_21_NS = 36_000_000
SEED_VERSION_21_AT_2000_NS = 55_000_000


# ----------------------------------------------------------------------- models
class Note(Entity):
    __ledger_topic__ = "bench:Note"
    text: str
    value: float = 0.0


class Grade(Entity):
    __ledger_topic__ = "bench:Grade"
    course: str
    score: float


class Student(Entity):
    __ledger_topic__ = "bench:Student"
    name: str
    gpa: float = 0.0
    grades: list[Grade] = []


class Pupil(Entity):
    __ledger_topic__ = "bench:Pupil"
    name: str
    score: float = 0.0


class Klass(Entity):
    __ledger_topic__ = "bench:Klass"
    name: str
    pupils: list[Pupil] = []


class School(Entity):
    __ledger_topic__ = "bench:School"
    name: str
    classes: list[Klass] = []


def make_note(i: int = 0) -> Note:
    return Note(text=f"note {i}", value=float(i))


def make_flat(children: int, i: int = 0) -> Student:
    return Student(
        name=f"student {i}",
        gpa=3.5,
        grades=[Grade(course=f"course {j}", score=float(j % 5)) for j in range(children)],
    )


def make_school(classes: int, pupils: int, i: int = 0) -> School:
    return School(
        name=f"school {i}",
        classes=[
            Klass(name=f"class {c}", pupils=[Pupil(name=f"pupil {c}.{p}", score=1.0) for p in range(pupils)])
            for c in range(classes)
        ],
    )


# One-field change on a leaf, rotating over leaves so each version changes a different one.
def leaf_changer(root: Entity) -> Callable[[int], None]:
    if isinstance(root, Note):
        def change(k: int) -> None:
            root.value += 1.0
    elif isinstance(root, Student):
        grades = root.grades

        def change(k: int) -> None:
            grades[k % len(grades)].score += 1.0
    else:
        assert isinstance(root, School)
        leaves = [p for c in root.classes for p in c.pupils]

        def change(k: int) -> None:
            leaves[k % len(leaves)].score += 1.0
    return change


TREES: dict[str, tuple[int, Callable[[int], Entity]]] = {
    "1 (single entity)": (1, make_note),
    "21 flat (Student + 20 Grades)": (21, lambda i: make_flat(20, i)),
    "21 3-level (1 + 4 + 16)": (21, lambda i: make_school(4, 4, i)),
    "1,000 flat (1 + 999)": (1000, lambda i: make_flat(999, i)),
    "1,000 3-level (1 + 9 + 990)": (1000, lambda i: make_school(9, 110, i)),
}


# ------------------------------------------------------------------ measuring
class Series:
    def __init__(self) -> None:
        self.ns: list[int] = []
        self.events: list[int] = []
        self.bytes: list[int] = []

    def p50(self) -> float:
        return median(self.ns)

    def p90(self) -> float:
        return pct(self.ns, 90)


def written_since(led: Ledger, head: int, sample_bytes: bool) -> tuple[int, int]:
    new_head = led.index.position
    if not sample_bytes:
        return new_head - head, -1
    states = led.store.read(head + 1, 100_000)
    return new_head - head, sum(len(n.state) for n in states)


def bench_register(led: Ledger, make: Callable[[int], Entity], reps: int, warm: int) -> Series:
    s = Series()
    reg = led.registry.register_entity
    roots = [make(i) for i in range(reps + warm)]
    gc.collect()
    for i, root in enumerate(roots):
        head = led.index.position
        t0 = time.perf_counter_ns()
        reg(root)
        dt = time.perf_counter_ns() - t0
        if i >= warm:
            s.ns.append(dt)
            ev, by = written_since(led, head, i < warm + 5)
            s.events.append(ev)
            if by >= 0:
                s.bytes.append(by)
    return s


def bench_version(led: Ledger, make: Callable[[int], Entity], reps: int, warm: int, *, change: bool = True) -> Series:
    """Consecutive versions of one lineage, one leaf field changed before each call."""
    s = Series()
    root = make(0)
    led.registry.register_entity(root)
    changer = leaf_changer(root)
    ver = led.registry.version_entity
    gc.collect()
    for k in range(reps + warm):
        if change:
            changer(k)
        head = led.index.position
        t0 = time.perf_counter_ns()
        wrote = ver(root)
        dt = time.perf_counter_ns() - t0
        assert wrote == change, (wrote, change)
        if k >= warm:
            s.ns.append(dt)
            ev, by = written_since(led, head, k < warm + 5)
            s.events.append(ev)
            if by >= 0:
                s.bytes.append(by)
    return s


def drift(led: Ledger, make: Callable[[int], Entity], total: int) -> list[int]:
    """Per-version times of versions 1..total of one lineage (no warm-up excluded)."""
    root = make(0)
    led.registry.register_entity(root)
    changer = leaf_changer(root)
    ver = led.registry.version_entity
    out: list[int] = []
    gc.collect()
    for k in range(total):
        changer(k)
        t0 = time.perf_counter_ns()
        ver(root)
        out.append(time.perf_counter_ns() - t0)
    return out


def vs(target_ns: float | None, value_ns: float) -> str:
    if target_ns is None:
        return "–"
    return ("✅ " if value_ns <= target_ns else "❌ ") + fmt_us(target_ns)


def seed(ref: float | None, value_ns: float) -> str:
    if ref is None:
        return "–"
    return f"{fmt_us(ref)} ({ref / value_ns:.0f}× faster)"


def mean_or_dash(xs: list[int]) -> str:
    if not xs:
        return "–"
    lo, hi = min(xs), max(xs)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def bytes_str(xs: list[int]) -> str:
    if not xs:
        return "–"
    m = median(xs)
    return f"{m / 1024:.1f} KiB" if m >= 10_240 else f"{m:.0f} B"


def run_backend(name: str, url: str, quick: bool) -> tuple[list[list[object]], list[list[object]]]:
    scale = 0.3 if quick else 1.0

    def n(x: int) -> int:
        return max(10, int(x * scale))

    rows: list[list[object]] = []

    def fresh() -> Ledger:
        return Ledger(url() if callable(url) else url)

    # register
    for label, (size, make) in TREES.items():
        reps = n(400) if size < 1000 else n(30)
        warm = n(50) if size < 1000 else 3
        note(f"[{name}] register {label} ×{reps}")
        led = fresh()
        s = bench_register(led, make, reps, warm)
        led.close()
        target = 400_000 if size == 21 else None
        ref = SEED_REGISTER_21_NS if size == 21 else None
        rows.append([f"register {label}", len(s.ns), fmt_us(s.p50()), fmt_us(s.p90()), mean_or_dash(s.events), bytes_str(s.bytes), vs(target, s.p50()), seed(ref, s.p50())])

    # version after a one-field change, and with no change
    for label, (size, make) in TREES.items():
        reps = n(400) if size < 1000 else n(60)
        warm = n(50) if size < 1000 else 5
        note(f"[{name}] version {label} ×{reps}")
        led = fresh()
        s = bench_version(led, make, reps, warm)
        led.close()
        target = 1_000_000 if size == 21 else None
        ref = SEED_VERSION_21_NS if size == 21 else None
        rows.append([f"version {label}, one leaf field changed", len(s.ns), fmt_us(s.p50()), fmt_us(s.p90()), mean_or_dash(s.events), bytes_str(s.bytes), vs(target, s.p50()), seed(ref, s.p50())])
    for label, (size, make) in TREES.items():
        if size == 1:
            continue
        reps = n(200) if size < 1000 else n(40)
        led = fresh()
        s = bench_version(led, make, reps, 5, change=False)
        led.close()
        rows.append([f"version {label}, nothing changed", len(s.ns), fmt_us(s.p50()), fmt_us(s.p90()), mean_or_dash(s.events), "–", "–", "–"])

    # drift over 2,000 versions of one lineage
    total = 2000
    drift_rows: list[list[object]] = []
    for label in ("21 flat (Student + 20 Grades)", "21 3-level (1 + 4 + 16)"):
        note(f"[{name}] drift {label} ×{total}")
        led = fresh()
        t = drift(led, TREES[label][1], total)
        led.close()
        first, last = t[:100], t[-100:]
        drift_rows.append([
            label,
            f"{fmt_us(median(first))} / {fmt_us(pct(first, 90))}",
            f"{fmt_us(median(last))} / {fmt_us(pct(last, 90))}",
            f"{median(last) / median(first):.2f}×",
            f"{fmt_us(SEED_VERSION_21_NS)} → {fmt_us(SEED_VERSION_21_AT_2000_NS)} (1.53×)",
        ])
    return rows, drift_rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    ap.add_argument("--no-sqlite", action="store_true")
    args = ap.parse_args()
    clock = Clock()
    tmp = tempfile.mkdtemp(prefix="ledger-bench-ent-")
    counter = iter(range(1_000_000))
    backends: list[tuple[str, Any]] = [("memory://", "memory://")]
    if not args.no_sqlite:
        backends.append(
            ("sqlite NORMAL", lambda: f"sqlite:///{os.path.join(tmp, f'e{next(counter)}.db')}?synchronous=NORMAL")
        )
    results = []
    try:
        for name, url in backends:
            results.append((name, *run_backend(name, url, args.quick)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("## Entity benchmark (register / version through `EntityRegistry`)\n")
    print(f"Machine: {machine()}\n")
    print(
        "Per call of `register_entity` / `version_entity` (object construction and the one-field edit "
        "are not timed); GC enabled; events and bytes = what the call appended to the log "
        "(bytes: median of the first 5 timed calls).\n"
    )
    for name, rows, drift_rows in results:
        print(f"### {name}\n")
        print(table(["operation", "runs", "p50", "p90", "events written", "bytes written", "target (p50)", "seed reference"], rows))
        print(f"\n**Drift: the same lineage, versions 1–100 vs 1,901–2,000 ({name})**\n")
        print(table(["tree", "v1–100 p50 / p90", "v1901–2000 p50 / p90", "growth (p50)", "seed"], drift_rows))
        print()
    print(f"_total wall time {clock.elapsed_s():.0f} s_")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Demo data: a small school whose records go through every kind of change.

``build_demo(url)`` fills a new ledger at ``url`` (refused when that store already
holds events: a second run would add a second school to the first) with the grading pipeline of
``ledger.cli.demo_pipeline`` (every input pattern A1-A7 and return pattern B1-B7, a
ConfigEntity, a recorded failure, a detachment, a manual edit) and returns what
it did for the CLI to show; it never prints.

It writes the way a user's script does, through the class-level APIs
(``CallableRegistry.execute``, ``EntityRegistry.register_entity``), so the new
ledger is the process's default while the demo runs; the previous default is put
back afterwards.

Its ids are the same on every run: while it writes, ``ledger.id_source``
makes ids from ``random.Random(SEED)`` (version-4 UUIDs, as uuid4 makes), and the
previous source is put back afterwards. That is what lets the README print ids a
reader can paste after running ``ledger demo`` on a new file; timestamps, durations
and anything else taken from the clock still differ from run to run. Only the demo
does this: a seeded source would make two processes mint the same ids.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from ledger import (
    CallableRegistry,
    EntityRegistry,
    Ledger,
    get_ledger,
    id_source,
    set_default_ledger,
)
from ledger.cli.demo_pipeline import (
    PREFIX,
    Course,
    Grade,
    Student,
    Transcript,
    register_functions,
)
from ledger.errors import StoreError, StoreNotFoundError
from projections import audit

__all__ = ["SEED", "DemoResult", "DemoStoreNotEmptyError", "build_demo", "seeded_ids"]

#: The seed of the demo's ids: change it and every id printed in docs/cli.md changes.
SEED = 20261130

_COURSES = [("math", "Linear algebra", 5), ("physics", "Mechanics", 5), ("history", "Modern history", 4)]
_NAMES = ["Alice", "Bob", "Chen", "Dana"]


@dataclass
class DemoResult:
    """The filled ledger, the lineage worth looking at, and one line per step taken."""

    ledger: Ledger
    featured_lineage: UUID
    steps: list[str] = field(default_factory=list)
    failure: str = ""


def _student(i: int, name: str) -> Student:
    grades = [Grade(course=c, score=2.0 + ((i + j) % 5) * 0.5) for j, (c, _, _) in enumerate(_COURSES)]
    return Student(name=name, transcript=Transcript(term="2026-fall", grades=grades))


class DemoStoreNotEmptyError(StoreError):
    """The demo's store already holds events; nothing was written."""


def seeded_ids(seed: int = SEED) -> Callable[[], UUID]:
    """Version-4 UUIDs drawn from ``random.Random(seed)``: the same sequence on every run."""
    rng = random.Random(seed)
    return lambda: UUID(int=rng.getrandbits(128), version=4)


def refuse_filled(url: str) -> None:
    """Raise ``DemoStoreNotEmptyError`` when ``url`` names a store that holds events.

    Checked through ``Ledger(url, create=False)``, which writes nothing (as every
    reading command opens a store), so a refused run leaves the file's bytes as they
    were. A missing or empty store is fine (the demo creates it); a foreign file is
    refused by ``Ledger`` when the demo opens it.
    """
    try:
        led = Ledger(url, create=False)
    except StoreNotFoundError:
        return
    with led:
        last = audit.recent_events(led, limit=1)
    events = last[-1].position if last else 0
    if events:
        raise DemoStoreNotEmptyError(
            f"{url} already holds {events} events; the demo fills only a new store (use --db or LEDGER_URL to name one)"
        )


def build_demo(url: str) -> DemoResult:
    """Run the school pipeline against a new ledger at ``url``, with the demo's seeded ids."""
    refuse_filled(url)
    register_functions()
    led = Ledger(url)
    previous = get_ledger()
    previous_ids = id_source(seeded_ids())
    set_default_ledger(led)
    try:
        return _fill(led)
    except BaseException:
        led.close()
        raise
    finally:
        set_default_ledger(previous)
        id_source(previous_ids)


def _fill(led: Ledger) -> DemoResult:
    """The demo's steps, written to the default ledger (``led``)."""
    steps: list[str] = []

    def run(function: str, pattern: str, /, **kwargs: Any) -> Any:
        out = CallableRegistry.execute(PREFIX + function, **kwargs)
        steps.append(f"{pattern:<8} {function}")
        return out

    students = [_student(i, n) for i, n in enumerate(_NAMES)]
    courses = [Course(code=c, title=t, credits=k) for c, t, k in _COURSES]
    full = Course(code="seminar", title="Research seminar", credits=12)
    for entity in [*students, *courses, full]:
        EntityRegistry.register_entity(entity)
    steps.append(f"register {len(students)} students (5 entities each), {len(courses) + 1} courses")
    alice, bob, chen, dana = students

    alice = run("compute_gpa", "A2 B1", student=alice)
    alice = run("apply_curve", "A4 B1", student=f"@{alice.lineage_id}", curve=0.25)
    run("describe", "A1 B7", name=f"@{alice.lineage_id}.name", gpa=f"@{alice.lineage_id}.gpa")
    assert chen.transcript is not None  # every demo student has one (_student)
    run("grade_points", "A3 B7", grade=chen.transcript.grades[0])
    run("grade_points", "A5 B7", grade=f"@{chen.lineage_id}.transcript.grades.1")
    dana, _honors = run("award_honors", "A6 B2", student=dana, threshold=3.0)
    run("course_reports", "list B3", students=[alice, bob], course=courses[0])
    run("reports_by_course", "B4", student=chen)
    run("summarize", "B5", student=alice)
    run("head_to_head", "B6", a=alice, b=bob)
    run(
        "review",
        "A7",
        name=f"@{bob.lineage_id}.name",
        student=alice,
        grade=f"@{alice.lineage_id}.transcript.grades.0",
        threshold=3.0,
    )
    scores = [f"@{s.lineage_id}.transcript.grades.0.score" for s in (alice, bob, chen)]
    run("class_mean", "refs B7", scores=[*scores, 3.5])
    steps[-1] += " (isolation=process)"
    run("best_grade", "detach", student=dana)
    failure = ""
    try:
        run("enroll", "failure", student=bob, course=full)
    except ValueError as exc:
        failure = str(exc)
        steps.append(f"failure  enroll raised ValueError ({exc}); recorded as execution.failed")
    alice.name = "Alice Liddell"
    EntityRegistry.version_entity(alice)
    steps.append("edit     Alice renamed outside any function -> a new version")
    return DemoResult(led, alice.lineage_id, steps, failure)

"""The demo's entity classes and functions: a small school's grading pipeline.

They live in an importable module, not inside ``build_demo``, so stored events
name classes that a later ``ledger`` run can import, and so ``isolation="process"``
has a module-level function to run. ``register_functions()`` adds them to the
process's function table; registering is explicit because importing a module
should not change process-wide state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Optional

from ledger import CallableRegistry, ConfigEntity, Entity

__all__ = [
    "FUNCTIONS",
    "PREFIX",
    "Course",
    "Grade",
    "GradingPolicy",
    "Honors",
    "Report",
    "Student",
    "Transcript",
    "register_functions",
]


class Grade(Entity):
    __ledger_topic__ = "tools.demo_pipeline:Grade"  # pinned: demo ledgers written before the move still read
    course: str
    score: float


class Transcript(Entity):
    __ledger_topic__ = "tools.demo_pipeline:Transcript"  # pinned: demo ledgers written before the move still read
    term: str
    grades: list[Grade] = []


class Student(Entity):
    __ledger_topic__ = "tools.demo_pipeline:Student"  # pinned: demo ledgers written before the move still read
    name: str
    gpa: float = 0.0
    transcript: Optional[Transcript] = None


class Course(Entity):
    __ledger_topic__ = "tools.demo_pipeline:Course"  # pinned: demo ledgers written before the move still read
    code: str
    title: str
    credits: int = 5


class Report(Entity):
    __ledger_topic__ = "tools.demo_pipeline:Report"  # pinned: demo ledgers written before the move still read
    title: str
    text: str


class Honors(Entity):
    __ledger_topic__ = "tools.demo_pipeline:Honors"  # pinned: demo ledgers written before the move still read
    student: str
    gpa: float


class GradingPolicy(ConfigEntity):
    """The curve applied to every grade, capped: a ConfigEntity built from primitives."""
    __ledger_topic__ = "tools.demo_pipeline:GradingPolicy"  # pinned: demo ledgers written before the move still read

    curve: float = 0.0
    cap: float = 4.0


def _mean(scores: list[float]) -> float:
    return round(sum(scores) / len(scores), 2) if scores else 0.0


def _grades(student: Student) -> list[Grade]:
    return student.transcript.grades if student.transcript else []


# ------------------------------------------------------------- the functions
def compute_gpa(student: Student) -> Student:
    """B1: one entity, the input itself (a MUTATION: a new version of its lineage)."""
    student.gpa = _mean([g.score for g in _grades(student)])
    return student


def apply_curve(student: Student, policy: GradingPolicy) -> Student:
    """A4 (by address) with a ConfigEntity built from primitives; B1."""
    for g in _grades(student):
        g.score = min(policy.cap, round(g.score + policy.curve, 2))
    student.gpa = _mean([g.score for g in _grades(student)])
    return student


def describe(name: str, gpa: float) -> str:
    """A1: only references to plain values; B7: a str wrapped in ``result``."""
    return f"{name}: GPA {gpa:.2f}"


def grade_points(grade: Grade) -> float:
    """A3 (a child entity, directly) and A5 (a child by address); B7."""
    return round(grade.score * 25, 1)


def award_honors(student: Student, threshold: float) -> tuple[Student, Honors]:
    """A6: an entity plus a primitive; B2: a tuple of entities, unpacked as siblings."""
    student.gpa = _mean([g.score for g in _grades(student)])
    level = "honors" if student.gpa >= threshold else "none"
    return student, Honors(student=f"{student.name} ({level})", gpa=student.gpa)


def course_reports(students: list[Student], course: Course) -> list[Report]:
    """A list of entities as input; B3: a list of new entities."""
    out = []
    for s in students:
        scores = [g.score for g in _grades(s) if g.course == course.code]
        out.append(Report(title=f"{course.code}/{s.name}", text=f"{course.title}: {scores}"))
    return out


def reports_by_course(student: Student) -> dict[str, Report]:
    """B4: a dict of entities, unpacked in key order."""
    return {g.course: Report(title=f"{student.name}/{g.course}", text=f"{g.score}") for g in _grades(student)}


def summarize(student: Student) -> tuple[Report, float]:
    """B5: entities and plain values together, kept as one container entity."""
    return Report(title=student.name, text=f"{len(_grades(student))} grades"), student.gpa


def head_to_head(a: Student, b: Student) -> list[tuple[Grade, Grade]]:
    """B6: nested containers of entities, one container entity (``wrapped_value``)."""
    theirs = {g.course: g.score for g in _grades(b)}
    return [
        (Grade(course=g.course, score=g.score), Grade(course=g.course, score=theirs[g.course]))
        for g in _grades(a)
        if g.course in theirs
    ]


def review(name: str, student: Student, grade: Grade, threshold: float) -> tuple[str, bool]:
    """A7: a reference, an entity, a child by address and a primitive; a tuple of values."""
    return f"{name} reviewed {student.name}", grade.score >= threshold


def class_mean(scores: list[float]) -> float:
    """References inside a list; B7. Runs in a forked process (``isolation="process"``)."""
    return _mean(scores)


def best_grade(student: Student) -> Grade:
    """Returns a child of the input: a DETACHMENT (the grade becomes its own root)."""
    return max(_grades(student), key=lambda g: g.score)


def enroll(student: Student, course: Course) -> Student:
    """Refuses a full course: the demo's recorded failure."""
    if course.credits > 10:
        raise ValueError(f"{course.code} is full; {student.name} was not enrolled")
    return student


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "compute_gpa": compute_gpa,
    "apply_curve": apply_curve,
    "describe": describe,
    "grade_points": grade_points,
    "award_honors": award_honors,
    "course_reports": course_reports,
    "reports_by_course": reports_by_course,
    "summarize": summarize,
    "head_to_head": head_to_head,
    "review": review,
    "class_mean": class_mean,
    "best_grade": best_grade,
    "enroll": enroll,
}
_PROCESS = {"class_mean"}
#: Registered names are prefixed so the demo never replaces a user's function of the same name.
PREFIX = "school."


def register_functions() -> list[str]:
    """Register every demo function as ``school.<name>``; returns the registered names."""
    for name, fn in FUNCTIONS.items():
        isolation: Literal["inline", "process"] = "process" if name in _PROCESS else "inline"
        CallableRegistry.register(PREFIX + name, isolation=isolation)(fn)
    return [PREFIX + name for name in FUNCTIONS]

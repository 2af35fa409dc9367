"""A small, realistic mix of writes: the read-side tests and benchmarks replay it.

Importable by subprocesses (the functions register at import). Every kind of
event and edge the projections derive appears: registration, versioning,
mutation / creation / detachment outputs, sibling groups, ``@uuid.path``
references, a ConfigEntity, failed executions, detach and attach.
"""

from __future__ import annotations

import random

from ledger import CallableRegistry, ConfigEntity, Entity, Ledger, Personal
from ledger.ledger import set_default_ledger


class WGrade(Entity):
    course: str
    score: float


class WStudent(Entity):
    name: str
    gpa: float = 0.0
    grades: list[WGrade] = []


class WPatient(Entity):
    name: Personal[str]
    ward: str = "north"


class WPolicy(ConfigEntity):
    bonus: float = 0.5


@CallableRegistry.register("wl_curve")
def wl_curve(student: WStudent, policy: WPolicy) -> WStudent:
    for g in student.grades:
        g.score += policy.bonus
    student.gpa = round(sum(g.score for g in student.grades) / max(len(student.grades), 1), 3)
    return student


@CallableRegistry.register("wl_split")
def wl_split(student: WStudent) -> tuple[WStudent, WGrade]:
    grade = student.grades.pop()
    return student, grade


@CallableRegistry.register("wl_mean")
def wl_mean(scores: list[float]) -> float:
    return sum(scores) / len(scores)


@CallableRegistry.register("wl_enroll")
def wl_enroll(name: str, courses: int) -> WStudent:
    return WStudent(name=name, grades=[WGrade(course=f"c{i}", score=float(i % 4)) for i in range(courses)])


@CallableRegistry.register("wl_reject")
def wl_reject(student: WStudent) -> WStudent:
    raise ValueError(f"{student.name} cannot be processed")


class Workload:
    """Applies numbered steps to one ledger; the same seed gives the same kinds of events."""

    STEPS = ("register", "edit", "curve", "split", "mean", "enroll", "fail", "detach", "attach", "patient", "erase")

    def __init__(self, led: Ledger, seed: int = 0) -> None:
        set_default_ledger(led)  # CallableRegistry writes to the default ledger
        self.led = led
        self.rng = random.Random(seed)
        self.students: list[WStudent] = []
        self.patients: list[WPatient] = []

    def step(self, kind: str, pick: int = 0) -> None:
        reg, ex = self.led.registry, CallableRegistry.execute
        if kind == "patient" or (kind == "erase" and not self.patients):
            p = WPatient(name=f"patient {len(self.patients)}")
            reg.register_entity(p)
            p.ward = "south"
            reg.version_entity(p)
            self.patients.append(p)
            return
        if kind == "erase":
            self.led.erase(self.patients.pop(pick % len(self.patients)).lineage_id, reason="request")
            return
        if kind == "register" or not self.students:
            s = WStudent(name=f"s{len(self.students)}", grades=[WGrade(course="c0", score=2.0), WGrade(course="c1", score=3.0)])
            reg.register_entity(s)
            self.students.append(s)
            return
        i = pick % len(self.students)
        s = self.students[i]
        if kind == "edit":
            s.gpa += 1
            reg.version_entity(s)
        elif kind == "curve":
            self.students[i] = ex("wl_curve", student=s, policy=WPolicy(bonus=0.25))
        elif kind == "split" and len(s.grades) > 1:
            self.students[i] = ex("wl_split", student=s)[0]
        elif kind == "mean" and s.grades:
            ex("wl_mean", scores=[f"@{s.ecs_id}.grades.0.score", 1.0])
        elif kind == "enroll":
            self.students.append(ex("wl_enroll", name=f"e{len(self.students)}", courses=2))
        elif kind == "fail":
            try:
                ex("wl_reject", student=s)
            except ValueError:
                pass
        elif kind == "detach" and s.grades:
            s.grades[-1].detach()
        elif kind == "attach" and len(self.students) > 1:
            other = self.students[(i + 1) % len(self.students)]
            if other is not s and other.is_root_entity():
                loose = WGrade(course="extra", score=1.0)
                reg.register_entity(loose)
                other.grades.append(loose)
                loose.attach(other)

    def run(self, n: int) -> None:
        for _ in range(n):
            self.step(self.rng.choice(self.STEPS), self.rng.randrange(1 << 16))

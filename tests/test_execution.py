"""ledger/write/execution.py (the one pipeline for every input and return pattern): the seed's input patterns A1–A7 and return patterns B1–B7, as tables."""

from __future__ import annotations

from typing import Any, Optional

import orjson
import pytest

from ledger import CallableRegistry, Entity, FunctionExecution, Ledger
from ledger.events import EXECUTION_COMPLETED, ExecutionCompleted


class PGrade(Entity):
    course: str
    score: float


class PRecord(Entity):
    grades: list[PGrade] = []
    courses: dict[str, PGrade] = {}


class PStudent(Entity):
    name: str
    age: int = 20
    gpa: float = 0.0
    record: Optional[PRecord] = None


class PSummary(Entity):
    text: str


# ------------------------------------------------------------------ functions
@CallableRegistry.register("p_summary")
def p_summary(name: str, age: int) -> str:
    return f"{name}:{age}"


@CallableRegistry.register("p_student_name")
def p_student_name(student: PStudent) -> str:
    return student.name


@CallableRegistry.register("p_grade_score")
def p_grade_score(grade: PGrade) -> float:
    return grade.score


@CallableRegistry.register("p_bump")
def p_bump(student: PStudent, threshold: float, reason: str) -> PStudent:
    student.gpa = threshold
    student.name = f"{student.name} ({reason})"
    return student


@CallableRegistry.register("p_mixed")
def p_mixed(name: str, student: PStudent, grade: PGrade, threshold: float) -> tuple[str, float]:
    return f"{name}/{student.name}", grade.score + threshold


@CallableRegistry.register("p_scores")
def p_scores(scores: list[float], by_course: dict[str, float]) -> float:
    return sum(scores) + sum(by_course.values())


def make_student() -> PStudent:
    s = PStudent(
        name="Ada",
        age=31,
        record=PRecord(
            grades=[PGrade(course="math", score=3.5), PGrade(course="art", score=2.0)],
            courses={"math": PGrade(course="math", score=4.0)},
        ),
    )
    s.promote_to_root()
    return s


def completed(led: Ledger) -> list[dict[str, Any]]:
    return [orjson.loads(n.state) for n in led.store.read() if n.topic == EXECUTION_COMPLETED]


# ------------------------------------------------------------------- A1–A7
def _a1(s: PStudent) -> tuple[str, dict[str, Any]]:
    return "p_summary", {"name": f"@{s.ecs_id}.name", "age": f"@{s.ecs_id}.age"}


def _a2(s: PStudent) -> tuple[str, dict[str, Any]]:
    return "p_student_name", {"student": s}


def _a3(s: PStudent) -> tuple[str, dict[str, Any]]:
    assert s.record is not None
    return "p_grade_score", {"grade": s.record.grades[0]}


def _a4(s: PStudent) -> tuple[str, dict[str, Any]]:
    return "p_student_name", {"student": f"@{s.ecs_id}"}


def _a5_list(s: PStudent) -> tuple[str, dict[str, Any]]:
    return "p_grade_score", {"grade": f"@{s.ecs_id}.record.grades.1"}


def _a5_dict(s: PStudent) -> tuple[str, dict[str, Any]]:
    return "p_grade_score", {"grade": f"@{s.ecs_id}.record.courses.math"}


def _a6(s: PStudent) -> tuple[str, dict[str, Any]]:
    return "p_bump", {"student": s, "threshold": 3.9, "reason": "update"}


def _a7(s: PStudent) -> tuple[str, dict[str, Any]]:
    return "p_mixed", {
        "name": f"@{s.ecs_id}.name",
        "student": s,
        "grade": f"@{s.ecs_id}.record.grades.0",
        "threshold": 0.25,
    }


def _refs_in_containers(s: PStudent) -> tuple[str, dict[str, Any]]:
    return "p_scores", {
        "scores": [f"@{s.ecs_id}.record.grades.0.score", 1.0],
        "by_course": {"m": f"@{s.ecs_id}.record.courses.math.score"},
    }


def _value(out: Entity) -> Any:
    return out.result if hasattr(out, "result") else out  # type: ignore[attr-defined]


A_CASES = [
    # id, build call, expected result, expected input records [(param, address is set)]
    ("A1 pure references", _a1, "Ada:31", [("name", True), ("age", True)]),
    ("A2 direct entity", _a2, "Ada", [("student", False)]),
    ("A3 direct sub-entity", _a3, 3.5, [("grade", False)]),
    ("A4 entity by address", _a4, "Ada", [("student", True)]),
    ("A5 sub-entity by address (list index)", _a5_list, 2.0, [("grade", True)]),
    ("A5 sub-entity by address (dict key)", _a5_dict, 4.0, [("grade", True)]),
    ("A7 mixed everything", _a7, None, [("name", True), ("grade", True), ("student", False)]),
    ("references inside list and dict", _refs_in_containers, 8.5, [("scores", True), ("by_course['m']", True)]),
]


class TestInputPatterns:
    @pytest.mark.parametrize("case", A_CASES, ids=[c[0] for c in A_CASES])
    def test_input_pattern(self, led: Ledger, case: Any) -> None:
        """Each input pattern resolves to stored values and records its inputs."""
        _, build, expected, records = case
        s = make_student()
        fname, kwargs = build(s)
        out = CallableRegistry.execute(fname, **kwargs)
        if expected is not None:
            assert _value(out) == expected
        else:  # A7: a tuple of non-entities
            assert (out.field_0, out.field_1) == ("Ada/Ada", 3.75)
        (body,) = completed(led)
        got = [(i["param_name"], i["address"] is not None) for i in body["inputs"]]
        assert sorted(got) == sorted(records)
        for i in body["inputs"]:
            assert i["ecs_id"] is not None

    def test_a6_entity_and_parameters(self, led: Ledger) -> None:
        """A6: an entity plus primitives; the result is a new version of the entity's lineage."""
        s = make_student()
        name, kwargs = _a6(s)
        out = CallableRegistry.execute(name, **kwargs)
        assert (out.gpa, out.name) == (3.9, "Ada (update)")
        assert out.lineage_id == s.lineage_id and out.ecs_id != s.ecs_id
        assert (s.gpa, s.name) == (0.0, "Ada")  # the caller's object is untouched

    def test_reference_ecs_ids_are_the_entity_read(self, led: Ledger) -> None:
        """The input record of a field reference names the entity the value was read from."""
        s = make_student()
        assert s.record is not None
        CallableRegistry.execute("p_grade_score", grade=f"@{s.ecs_id}.record.grades.1")
        (body,) = completed(led)
        assert body["inputs"][0]["ecs_id"] == str(s.record.grades[1].ecs_id)

    def test_at_at_escapes_a_literal_at(self, led: Ledger) -> None:
        """'@@x' reaches the function as the literal string '@x'."""
        out = CallableRegistry.execute("p_summary", name="@@handle", age=3)
        assert out.result == "@handle:3"


# ------------------------------------------------------------------- B1–B7
@CallableRegistry.register("r_single")
def r_single(student: PStudent) -> PStudent:
    student.gpa = 1.0
    return student


@CallableRegistry.register("r_tuple")
def r_tuple(student: PStudent) -> tuple[PStudent, PSummary]:
    student.gpa = 2.0
    return student, PSummary(text=student.name)


@CallableRegistry.register("r_list")
def r_list(n: int) -> list[PSummary]:
    return [PSummary(text=str(i)) for i in range(n)]


@CallableRegistry.register("r_dict")
def r_dict(student: PStudent) -> dict[str, PSummary]:
    return {"a": PSummary(text="a"), "b": PSummary(text=student.name)}


@CallableRegistry.register("r_mixed")
def r_mixed(student: PStudent) -> tuple[PSummary, float]:
    return PSummary(text=student.name), 0.5


@CallableRegistry.register("r_nested")
def r_nested(n: int) -> list[tuple[PGrade, PGrade]]:
    return [(PGrade(course=f"a{i}", score=i), PGrade(course=f"b{i}", score=-i)) for i in range(n)]


@CallableRegistry.register("r_float")
def r_float(x: float) -> float:
    return x * 2


@CallableRegistry.register("r_plain_tuple")
def r_plain_tuple(x: int) -> tuple[int, str]:
    return x, str(x)


@CallableRegistry.register("r_packed", unpack=False)
def r_packed(n: int) -> list[PSummary]:
    return [PSummary(text=str(i)) for i in range(n)]


def _check_b1(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    assert isinstance(out, PStudent) and out.gpa == 1.0 and out.lineage_id == s.lineage_id
    assert [o["semantic"] for o in body["outputs"]] == ["mutation"]


def _check_b2(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    assert isinstance(out, list) and [type(o) for o in out] == [PStudent, PSummary]
    assert [o.output_index for o in out] == [0, 1]
    assert out[0].sibling_output_entities == [out[1].ecs_id]
    assert out[1].sibling_output_entities == [out[0].ecs_id]
    assert [o["semantic"] for o in body["outputs"]] == ["mutation", "creation"]
    assert body["sibling_group"] == [str(o.ecs_id) for o in out]


def _check_b3(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    assert [o.text for o in out] == ["0", "1", "2"]
    assert len({o.derived_from_execution_id for o in out}) == 1
    assert len(body["sibling_group"]) == 3


def _check_b3_empty(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    assert out == [] and body["outputs"] == [] and body["return_pattern"] == "B3"


def _check_b4(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    assert [o.text for o in out] == ["a", "Ada"]
    assert [o["output_index"] for o in body["outputs"]] == [0, 1]


def _check_b5(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    summary, x = out.wrapped_value
    assert isinstance(summary, PSummary) and x == 0.5
    assert body["sibling_group"] == [str(summary.ecs_id)]


def _check_b6(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    pairs = out.wrapped_value
    assert [(a.course, b.course) for a, b in pairs] == [("a0", "b0"), ("a1", "b1")]
    assert len(body["sibling_group"]) == 4


def _check_b7(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    assert out.result == 5.0 and out.derived_from_function == "r_float"


def _check_b7_tuple(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    assert (out.field_0, out.field_1) == (7, "7")


def _check_packed(out: Any, s: PStudent, body: dict[str, Any]) -> None:
    assert [o.text for o in out.wrapped_value] == ["0", "1"]
    assert len(body["outputs"]) == 1 and len(body["sibling_group"]) == 2


B_CASES = [
    ("B1 single entity", "r_single", lambda s: {"student": s}, "B1", _check_b1),
    ("B2 tuple of entities", "r_tuple", lambda s: {"student": s}, "B2", _check_b2),
    ("B3 list of entities", "r_list", lambda s: {"n": 3}, "B3", _check_b3),
    ("B3 empty list", "r_list", lambda s: {"n": 0}, "B3", _check_b3_empty),
    ("B4 dict of entities", "r_dict", lambda s: {"student": s}, "B4", _check_b4),
    ("B5 mixed container", "r_mixed", lambda s: {"student": s}, "B5", _check_b5),
    ("B6 nested containers", "r_nested", lambda s: {"n": 2}, "B6", _check_b6),
    ("B7 non-entity", "r_float", lambda s: {"x": 2.5}, "B7", _check_b7),
    ("B7 tuple of non-entities", "r_plain_tuple", lambda s: {"x": 7}, "B7", _check_b7_tuple),
    ("unpack=False container", "r_packed", lambda s: {"n": 2}, "B3", _check_packed),
]


class TestReturnPatterns:
    @pytest.mark.parametrize("case", B_CASES, ids=[c[0] for c in B_CASES])
    def test_return_pattern(self, led: Ledger, case: Any) -> None:
        """Each return pattern is unpacked or wrapped as specified and recorded once."""
        _, fname, kwargs, pattern, check = case
        s = make_student()
        out = CallableRegistry.execute(fname, **kwargs(s))
        (body,) = completed(led)
        assert body["return_pattern"] == pattern
        check(out, s, body)
        ExecutionCompleted.model_validate(body)
        # every output is stored as returned
        outs = out if isinstance(out, list) else [out]
        for o in outs:
            stored = led.registry.get_stored_entity(o.ecs_id, o.ecs_id)
            assert type(stored) is type(o)
            assert stored.model_dump(include=set(type(o).ledger_schema().plain_fields)) == o.model_dump(
                include=set(type(o).ledger_schema().plain_fields)
            )

    def test_wrapped_outputs_read_back(self, led: Ledger) -> None:
        """A wrapped container output reads back from the store with its entities inside."""
        out = CallableRegistry.execute("r_nested", n=1)
        tree = led.registry.get_stored_tree(out.ecs_id)
        (a, b), = tree.root.wrapped_value
        assert (a.course, b.score) == ("a0", 0.0)

    def test_execution_entity_describes_the_call(self, led: Ledger) -> None:
        """The FunctionExecution entity lists inputs, outputs and their semantics."""
        s = make_student()
        out = CallableRegistry.execute("r_tuple", student=s)
        (body,) = completed(led)
        fe = led.registry.get_latest(__import__("uuid").UUID(body["execution_id"]))
        assert isinstance(fe, FunctionExecution)
        assert fe.function_name == "r_tuple"
        assert fe.output_entity_ids == [o.ecs_id for o in out]
        assert fe.output_semantics == ["mutation", "creation"]
        assert fe.input_entity_ids == [s.ecs_id]
        assert fe.unpacked and fe.return_pattern == "B2" and fe.isolation == "inline"

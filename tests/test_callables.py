"""ledger/callables.py (``CallableRegistry``): semantics, isolation, tracing, errors, ConfigEntity, records, async
and replay (process isolation is test_isolation.py)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest

import ledger
from ledger import CallableRegistry, ConfigEntity, Entity, EntityRegistry, Ledger, errors
from ledger.events import (
    ENTITY_VERSION,
    EXECUTION_COMPLETED,
    EXECUTION_FAILED,
    ExecutionCompleted,
    ExecutionFailed,
)

from .callables_models import XGrade, XStudent, events, student


class XNote(Entity):
    text: str


class XConfig(ConfigEntity):
    threshold: float = 3.5
    reason: str = "update"


def _stable(value: Any) -> Any:
    """A dump without the per-copy live ids."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in ("live_id", "root_live_id")}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


# ------------------------------------------------------------------ functions
@CallableRegistry.register("x_curve")
def x_curve(student: XStudent, bonus: float = 1.0) -> XStudent:
    for g in student.grades:
        g.score += bonus
    return student


@CallableRegistry.register("x_identity")
def x_identity(student: XStudent) -> XStudent:
    return student


@CallableRegistry.register("x_note")
def x_note(student: XStudent) -> XNote:
    student.name = "changed-but-not-returned"
    return XNote(text=student.name)


@CallableRegistry.register("x_first_grade")
def x_first_grade(student: XStudent) -> XGrade:
    return student.grades[0]


@CallableRegistry.register("x_split")
def x_split(student: XStudent) -> tuple[XStudent, XGrade]:
    g = student.grades.pop(0)
    return student, g


@CallableRegistry.register("x_keep")
def x_keep(student: XStudent) -> tuple[XStudent, XGrade]:
    student.gpa = 9.0
    return student, student.grades[0]


@CallableRegistry.register("x_bump_grade")
def x_bump_grade(grade: XGrade) -> XGrade:
    grade.score = 100.0
    return grade


@CallableRegistry.register("x_configured")
def x_configured(student: XStudent, config: XConfig) -> XStudent:
    student.gpa = config.threshold
    student.name = config.reason
    return student


@CallableRegistry.register("x_boom")
def x_boom(student: XStudent, message: str) -> XStudent:
    student.name = "half-done"
    raise ValueError(message)


@CallableRegistry.register("x_add")
def x_add(a: float, b: float) -> float:
    return a + b


@CallableRegistry.register("x_async_add")
async def x_async_add(a: float, b: float) -> float:
    await asyncio.sleep(0.001)
    return a + b


@CallableRegistry.register("x_async_curve")
async def x_async_curve(student: XStudent, bonus: float) -> XStudent:
    await asyncio.sleep(0.001)
    for g in student.grades:
        g.score += bonus
    return student


# ============================================================== semantics
class TestSemantics:
    def test_mutation_is_a_new_version_of_the_same_lineage(self, led: Ledger) -> None:
        """Returning the input copy changed records a new version in the input's lineage."""
        s = student()
        old_ids = {s.ecs_id, *(g.ecs_id for g in s.grades)}
        out = CallableRegistry.execute("x_curve", student=s, bonus=0.5)
        assert out.lineage_id == s.lineage_id and out.ecs_id not in old_ids
        assert out.previous_ecs_id == s.ecs_id
        assert [g.score for g in out.grades] == [0.5, 1.5]
        assert [v.ecs_id for v in EntityRegistry.history(s.lineage_id)] == [s.ecs_id, out.ecs_id]

    def test_unchanged_mutation_writes_no_spurious_version(self, led: Ledger) -> None:
        """Returning an input unchanged records the execution but no new entity version."""
        s = student()
        out = CallableRegistry.execute("x_identity", student=s)
        assert out.ecs_id == s.ecs_id
        assert len(EntityRegistry.history(s.lineage_id)) == 1
        # and calling again on the output does not see a divergence
        CallableRegistry.execute("x_identity", student=out)
        assert len(EntityRegistry.history(s.lineage_id)) == 1

    def test_creation_carries_derivation(self, led: Ledger) -> None:
        """A new entity records the function, the execution and the input ids."""
        s = student()
        note = CallableRegistry.execute("x_note", student=s)
        assert note.derived_from_function == "x_note"
        assert note.function_input_entities == [s.ecs_id]
        stored = led.registry.get_stored_entity(note.ecs_id, note.ecs_id)
        assert stored.derived_from_execution_id == note.derived_from_execution_id is not None
        assert stored.function_input_entities == [s.ecs_id]

    def test_detachment_keeps_lineage_and_leaves_the_parent(self, led: Ledger) -> None:
        """A child returned alone becomes its own root in the same lineage; the parent is not versioned."""
        s = student()
        g0 = s.grades[0]
        out = CallableRegistry.execute("x_first_grade", student=s)
        assert out.lineage_id == g0.lineage_id and out.ecs_id != g0.ecs_id
        assert out.is_root_entity()
        (body,) = [b for _, t, b in events(led) if t == EXECUTION_COMPLETED]
        assert body["outputs"][0]["semantic"] == "detachment"
        assert len(EntityRegistry.history(s.lineage_id)) == 1

    def test_detachment_with_parent_returned(self, led: Ledger) -> None:
        """Child taken out and parent returned: the parent's new version no longer holds it."""
        s = student(3)
        moved = s.grades[0]
        parent, child = CallableRegistry.execute("x_split", student=s)
        assert child.lineage_id == moved.lineage_id and child.is_root_entity()
        assert [g.course for g in parent.grades] == ["c1", "c2"]
        stored = led.registry.get_stored_tree(parent.ecs_id)
        assert child.lineage_id not in {n.lineage_id for n in stored.nodes.values()}
        (body,) = [b for _, t, b in events(led) if t == EXECUTION_COMPLETED]
        assert [o["semantic"] for o in body["outputs"]] == ["mutation", "detachment"]

    def test_child_still_in_returned_parent_is_changed_in_place(self, led: Ledger) -> None:
        """A returned child that stays inside the returned parent is recorded inside that tree."""
        s = student()
        parent, child = CallableRegistry.execute("x_keep", student=s)
        assert parent.grades[0] is child and not child.is_root_entity()
        stored = led.registry.get_stored_tree(parent.ecs_id)
        assert child.ecs_id in stored.nodes
        (body,) = [b for _, t, b in events(led) if t == EXECUTION_COMPLETED]
        assert [o["semantic"] for o in body["outputs"]] == ["mutation", "mutation"]

    def test_sub_entity_mutation_versions_its_tree(self, led: Ledger) -> None:
        """Mutating a sub-entity input gives its whole tree a new version."""
        s = student()
        out = CallableRegistry.execute("x_bump_grade", grade=s.grades[1])
        assert out.score == 100.0 and out.lineage_id == s.grades[1].lineage_id
        latest = EntityRegistry.get_latest(s.lineage_id)
        assert latest.ecs_id != s.ecs_id and latest.grades[1].score == 100.0
        assert s.grades[1].score == 1.0


# ============================================================== isolation
class TestIsolation:
    def test_caller_objects_and_stored_versions_unchanged(self, led: Ledger) -> None:
        """Whatever the function does, the caller's objects and stored versions stay as they were."""
        s = student()
        before = s.model_dump()
        stored_before = _stable(led.registry.get_stored_tree(s.ecs_id).root.model_dump())
        for fn in ("x_curve", "x_note", "x_split", "x_first_grade"):
            CallableRegistry.execute(fn, student=s)
            assert s.model_dump() == before
        stored_after = _stable(led.registry.get_stored_tree(s.ecs_id).root.model_dump())
        assert stored_after == stored_before

    def test_primitive_containers_are_copied(self, led: Ledger) -> None:
        """A list argument the function mutates is a copy of the caller's list."""

        @CallableRegistry.register("x_append")
        def x_append(items: list[int]) -> int:
            items.append(99)
            return len(items)

        mine = [1, 2]
        assert CallableRegistry.execute("x_append", items=mine).result == 3
        assert mine == [1, 2]

    def test_diverged_input_is_versioned_first(self, led: Ledger) -> None:
        """An input edited outside any function gets its own version before the call."""
        s = student()
        first = s.ecs_id
        s.grades[0].score = 50.0
        out = CallableRegistry.execute("x_curve", student=s, bonus=1.0)
        assert s.ecs_id != first  # traced: the caller's object now names the new version
        versions = [v.ecs_id for v in EntityRegistry.history(s.lineage_id)]
        assert versions == [first, s.ecs_id, out.ecs_id]
        assert out.grades[0].score == 51.0

    def test_unregistered_input_is_registered(self, led: Ledger) -> None:
        """An entity never registered is registered before the call and named in the record."""
        s = XStudent(name="new")
        out = CallableRegistry.execute("x_note", student=s)
        assert led.index.records[s.ecs_id].is_root
        assert out.function_input_entities == [s.ecs_id]

    def test_separate_batches_for_tracing_and_outputs(self, led: Ledger) -> None:
        """Tracing a diverged input is its own batch; outputs and the record are another."""
        s = student(1)
        s.name = "edited"
        head = led.store.head()
        CallableRegistry.execute("x_curve", student=s)
        batches = {}
        for pos, _topic, body in events(led, head + 1):
            batches.setdefault(body["batch_id"], []).append(pos)
        assert len(batches) == 2


# ================================================================= errors
class TestErrors:
    @pytest.mark.parametrize(
        ("value", "exc"),
        [
            ("@not-a-uuid", errors.MalformedAddressError),
            ("@00000000-0000-0000-0000-000000000000", errors.UnknownEntityError),
            ("@{id}.nope", errors.BadPathError),
            ("@{id}.grades.7", errors.BadPathError),
        ],
    )
    def test_bad_reference_names_argument_and_records_nothing(self, led: Ledger, value: str, exc: type) -> None:
        """A bad address raises a ValueError naming the argument and address; nothing is written."""
        s = student()
        address = value.format(id=s.ecs_id)
        head = led.store.head()
        with pytest.raises(exc) as info:
            CallableRegistry.execute("x_add", a=address, b=1.0)
        assert isinstance(info.value, ValueError)
        assert "'a'" in str(info.value) or "a:" in str(info.value)
        assert address in str(info.value)
        assert led.store.head() == head

    def test_type_mismatch_records_nothing(self, led: Ledger) -> None:
        """A resolved value that fails validation is an InputValidationError; nothing is written."""
        s = student()
        head = led.store.head()
        with pytest.raises(errors.InputValidationError, match="'a'"):
            CallableRegistry.execute("x_add", a=f"@{s.ecs_id}.name", b=1.0)
        with pytest.raises(errors.InputValidationError):
            CallableRegistry.execute("x_curve", student=s, bonus="lots")
        with pytest.raises(errors.InputValidationError, match="unexpected"):
            CallableRegistry.execute("x_add", a=1.0, b=2.0, c=3.0)
        assert led.store.head() == head

    def test_unknown_function(self, led: Ledger) -> None:
        """An unknown name is an UnknownFunctionError, also a KeyError."""
        with pytest.raises(KeyError, match="nope"):
            CallableRegistry.execute("nope")

    def test_registration_needs_type_hints(self) -> None:
        """Missing parameter or return hints fail at registration with a clear message."""
        with pytest.raises(errors.FunctionRegistrationError, match="'x' has no type hint"):

            @CallableRegistry.register("x_bad")
            def bad(x) -> int:  # type: ignore[no-untyped-def]
                return 1

        with pytest.raises(errors.FunctionRegistrationError, match="no return type hint"):

            @CallableRegistry.register("x_bad2")
            def bad2(x: int):  # type: ignore[no-untyped-def]
                return 1

        assert "x_bad" not in CallableRegistry.list_functions()

    def test_same_inputs_different_outputs_do_not_collide(self, led: Ledger) -> None:
        """Input and output models are cached separately: same inputs, different returns."""

        @CallableRegistry.register("x_as_int")
        def as_int(v: float) -> int:
            return int(v)

        @CallableRegistry.register("x_as_str")
        def as_str(v: float) -> str:
            return str(v)

        m1, m2 = CallableRegistry.get_metadata("x_as_int"), CallableRegistry.get_metadata("x_as_str")
        assert m1.input_model is m2.input_model
        a = CallableRegistry.execute("x_as_int", v=2.5)
        b = CallableRegistry.execute("x_as_str", v=2.5)
        assert type(a) is not type(b)
        assert (a.result, b.result) == (2, "2.5")
        assert "x_as_int" in CallableRegistry.list_functions()


# =========================================================== ConfigEntity
class TestConfigEntity:
    def test_instance(self, led: Ledger) -> None:
        """A ConfigEntity instance is registered and referenced by the execution record."""
        s = student()
        cfg = XConfig(threshold=4.0, reason="final")
        out = CallableRegistry.execute("x_configured", student=s, config=cfg)
        assert (out.gpa, out.name) == (4.0, "final")
        assert led.index.records[cfg.ecs_id].is_root
        (body,) = [b for _, t, b in events(led) if t == EXECUTION_COMPLETED]
        assert body["config_ids"] == [str(cfg.ecs_id)]

    def test_built_from_primitives_with_defaults(self, led: Ledger) -> None:
        """Primitive keywords build the ConfigEntity (other fields keep the class defaults)."""
        s = student()
        out = CallableRegistry.execute("x_configured", student=s, threshold=2.5)
        assert (out.gpa, out.name) == (2.5, "update")
        (body,) = [b for _, t, b in events(led) if t == EXECUTION_COMPLETED]
        (cfg_id,) = body["config_ids"]
        cfg = led.registry.get_stored_entity(UUID(cfg_id), UUID(cfg_id))
        assert isinstance(cfg, XConfig) and (cfg.threshold, cfg.reason) == (2.5, "update")

    def test_config_excluded_from_input_model(self) -> None:
        """Top-level ConfigEntity parameters are not fields of the input model."""
        model = CallableRegistry.get_metadata("x_configured").input_model
        assert "config" not in model.model_fields and "student" in model.model_fields

    def test_bad_config_value(self, led: Ledger) -> None:
        """A primitive that does not fit the config field is an InputValidationError."""
        s = student()
        head = led.store.head()
        with pytest.raises(errors.InputValidationError, match="threshold"):
            CallableRegistry.execute("x_configured", student=s, threshold="high")
        assert led.store.head() == head


# ================================================================ records
class TestRecords:
    def test_outputs_and_record_in_one_batch(self, led: Ledger) -> None:
        """Outputs, the FunctionExecution entity and execution.completed share one batch."""
        s = student()
        head = led.store.head()
        out = CallableRegistry.execute("x_curve", student=s)
        evs = events(led, head + 1)
        assert {b["batch_id"] for _, _, b in evs} == {evs[0][2]["batch_id"]}
        positions = [p for p, _, _ in evs]
        assert positions == list(range(head + 1, head + 1 + len(evs)))
        assert all(b["batch_size"] == len(evs) for _, _, b in evs)
        topics = [t for _, t, _ in evs]
        assert topics.count(EXECUTION_COMPLETED) == 1
        body = next(b for _, t, b in evs if t == EXECUTION_COMPLETED)
        record = ExecutionCompleted.model_validate(body)
        assert record.function_name == "x_curve" and record.isolation == "inline"
        assert record.outputs[0].ecs_id == out.ecs_id and record.outputs[0].semantic == "mutation"
        assert record.inputs[0].param_name == "student" and record.inputs[0].ecs_id == s.ecs_id
        assert record.duration_ms >= 0
        fe_events = [b for _, t, b in evs if t == ENTITY_VERSION and b["entity_type"] == "ledger:FunctionExecution"]
        assert len(fe_events) == 1 and fe_events[0]["lineage_id"] == body["execution_id"]

    def test_failure_is_recorded_then_reraised(self, led: Ledger) -> None:
        """A raising function: one execution.failed event, nothing else, then its own exception."""
        s = student()
        head = led.store.head()
        with pytest.raises(ValueError, match="bad day"):
            CallableRegistry.execute("x_boom", student=s, message="bad day")
        evs = events(led, head + 1)
        assert [t for _, t, _ in evs] == [EXECUTION_FAILED]
        failed = ExecutionFailed.model_validate(evs[0][2])
        assert (failed.error_type, failed.error_message) == ("ValueError", "bad day")
        assert "x_boom" in failed.traceback and "raise ValueError" in failed.traceback
        assert failed.inputs[0].ecs_id == s.ecs_id
        assert s.name == "Bo"


# ================================================================== async
class TestAsync:
    def test_gather_many_calls(self, led: Ledger) -> None:
        """Concurrent aexecute calls (async and sync functions) each record their own execution."""
        s = student()

        async def main() -> list[Any]:
            calls = [CallableRegistry.aexecute("x_async_add", a=i, b=1.0) for i in range(10)]
            calls += [CallableRegistry.aexecute("x_add", a=i, b=2.0) for i in range(10)]
            calls += [CallableRegistry.aexecute("x_async_curve", student=s, bonus=float(i)) for i in range(5)]
            return await asyncio.gather(*calls)

        results = asyncio.run(main())
        assert [r.result for r in results[:10]] == [i + 1.0 for i in range(10)]
        assert [r.result for r in results[10:20]] == [i + 2.0 for i in range(10)]
        assert [r.grades[1].score for r in results[20:]] == [1.0 + i for i in range(5)]
        bodies = [b for _, t, b in events(led) if t == EXECUTION_COMPLETED]
        assert len({b["execution_id"] for b in bodies}) == 25
        assert led.verify().ok

    def test_execute_runs_async_function(self, led: Ledger) -> None:
        """execute() on an async function runs it to completion."""
        assert CallableRegistry.execute("x_async_add", a=1.0, b=2.0).result == 3.0


# ================================================================= replay
class TestReplay:
    def test_reopening_a_file_ledger_gives_the_same_state(self, tmp_path: Any) -> None:
        """Executions written to SQLite replay to exactly the same inline state."""
        url = f"sqlite:///{tmp_path / 'exec.db'}"
        first = ledger.connect(url)
        try:
            s = student()
            CallableRegistry.execute("x_curve", student=s)
            CallableRegistry.execute("x_split", student=s)
            CallableRegistry.execute("x_configured", student=s, threshold=1.0)
            with pytest.raises(ValueError):
                CallableRegistry.execute("x_boom", student=s, message="no")
            CallableRegistry.execute("x_add", a=f"@{s.ecs_id}.gpa", b=1.0)
            snapshot = first.index.snapshot()
        finally:
            first.close()
        second = Ledger(url)
        try:
            assert second.index.snapshot() == snapshot
            assert second.verify().ok
            # the reopened ledger keeps executing on the replayed state
            ledger.set_default_ledger(second)
            out = CallableRegistry.execute("x_curve", student=f"@{s.lineage_id}")
            assert out.lineage_id == s.lineage_id
        finally:
            second.close()
            ledger.set_default_ledger(None)

"""Property: whatever sequence of writes happened, replaying the log rebuilds the same registry."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import CallableRegistry, Ledger
from ledger.errors import LedgerError
from ledger.reactions import Event
from ledger.reactions.recording import record_event
from ledger.write.calls import execute_on

from .models import Grade, Student
from .test_store import stored_dump

ops = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 3)),
        st.tuples(st.just("edit_gpa"), st.integers(0, 50), st.floats(-10, 10, allow_nan=False)),
        st.tuples(st.just("edit_grade"), st.integers(0, 50), st.integers(0, 5), st.floats(0, 5, allow_nan=False)),
        st.tuples(st.just("add_grade"), st.integers(0, 50)),
        st.tuples(st.just("remove_grade"), st.integers(0, 50), st.integers(0, 5)),
        st.tuples(st.just("reorder"), st.integers(0, 50)),
        st.tuples(st.just("version"), st.integers(0, 50)),
        st.tuples(st.just("detach"), st.integers(0, 50), st.integers(0, 5)),
        st.tuples(st.just("attach"), st.integers(0, 50), st.integers(0, 50)),
        st.tuples(st.just("emit"), st.integers(0, 50)),
        st.tuples(st.just("memo"), st.integers(0, 50), st.sampled_from([0.5, 1.0])),
        st.tuples(st.just("reexecute"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=30,
).map(lambda rest: [("create", 3), ("create", 2), *rest])


def _bump(s: Student, by: float) -> Student:
    s.gpa += by
    return s


def run(led: Ledger, program: list[tuple]) -> None:
    """Interpret a random program against the ledger's registry (and, for ``memo`` and
    ``reexecute``, a memoized function: cache hits, misses and ``execution.reexecuted``)."""
    CallableRegistry.register("replay_bump", cache=True)(_bump)
    reg = led.registry
    executions: list = []
    students: list[Student] = []
    loose: list[Grade] = []  # detached grades (roots)
    for op, *args in program:
        if op == "create":
            s = Student(name=f"s{len(students)}", grades=[Grade(course=f"c{i}", score=i) for i in range(args[0])])
            reg.register_entity(s)
            students.append(s)
            continue
        if not students:
            continue
        s = students[args[0] % len(students)]
        if op == "edit_gpa":
            s.gpa = args[1]
        elif op == "edit_grade" and s.grades:
            s.grades[args[1] % len(s.grades)].score = args[2]
        elif op == "add_grade":
            s.grades.append(Grade(course="new", score=1.0))
        elif op == "remove_grade" and s.grades:
            s.grades.pop(args[1] % len(s.grades))
        elif op == "reorder":
            s.grades.reverse()
        elif op == "version":
            reg.version_entity(s)
        elif op == "detach" and s.grades:
            reg.version_entity(s)  # the child must be stored in the tree before it can be detached
            g = s.grades[args[1] % len(s.grades)]
            reg.detach(g)
            loose.append(g)
        elif op == "emit":  # a recorded user event (reaction.emitted) between the versions
            record_event(Event(type="student.touched", subject_type=Student, subject_id=s.ecs_id), led)
        elif op == "memo":
            out = execute_on(led, "replay_bump", s=s, by=args[1])
            executions.append(out.derived_from_execution_id)
        elif op == "reexecute" and executions:
            assert led.reexecute(executions[args[0] % len(executions)]).matches
        elif op == "attach" and loose:
            g = loose.pop(args[1] % len(loose))
            reg.version_entity(g)
            s.grades.append(g)
            reg.attach(g, s)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=ops)
def test_replay_rebuilds_the_live_registry(program) -> None:
    """The live ledger (its index in the store, read through caches), the store's index tables,
    a replay of the log into memory and a rebuild of the tables from the log all agree."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'p.db'}"
        live = Ledger(url)
        assert type(live.index).__name__ == "StoredInlineIndex"
        try:
            run(live, program)
        except LedgerError as exc:  # pragma: no cover - any refusal here is a bug worth seeing
            raise AssertionError(f"valid program refused: {exc}") from exc
        versions = list(live.index.records.keys())
        # through the live ledger's caches, as its writes left them
        live_roots = {v: live.index.root_of.get(v) for v in versions}
        live_heads = {r.lineage_id: (live.index.streams.get(r.lineage_id).version) for r in live.index.records.values()}
        snapshot = live.index.snapshot()
        roots = [r for r, rec in live.index.records.items() if rec.is_root]
        trees = {r: stored_dump(live, r) for r in roots}
        assert live.verify().ok
        stored, rebuilt = live.store.stored_index(), live.store.rebuilt_index()
        assert stored.versions == rebuilt.versions and stored.erasures == rebuilt.erasures
        assert stored.roots == rebuilt.roots  # row for row
        assert stored.memos == rebuilt.memos
        live.close()
        replayed = Ledger(url, replay=True)
        assert type(replayed.index).__name__ == "InlineIndex"
        assert replayed.index.snapshot() == snapshot
        assert {v: replayed.index.root_of.get(v) for v in versions} == live_roots
        assert {lid: replayed.index.streams[lid].version for lid in live_heads} == live_heads
        assert {r: stored_dump(replayed, r) for r in roots} == trees
        replayed.close()
        reopened = Ledger(url)
        assert {r: stored_dump(reopened, r) for r in roots} == trees
        assert {v: reopened.registry.ecs_id_to_root_id(v) for v in versions} == live_roots
        reopened.close()


@settings(max_examples=40, deadline=None)
@given(program=ops)
def test_every_stored_version_is_reachable_and_history_is_ordered(program) -> None:
    """History of every lineage is oldest-first and each version chains to an earlier one."""
    led = Ledger("memory://")
    run(led, program)
    for lineage_id, ids in led.index.lineage_ids.items():
        hist = led.registry.history(lineage_id)
        assert [h.ecs_id for h in hist] == ids
        seen: set = set()
        for h in hist:
            assert h.previous_ecs_id is None or h.previous_ecs_id in seen
            seen.add(h.ecs_id)
    led.close()

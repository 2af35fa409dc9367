"""Reactions: the original event API, the ledger's facts after commit, durable followers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from uuid import UUID, uuid4

import pytest
from pydantic import BaseModel, Field, ValidationError

import ledger
from ledger import CallableRegistry, Entity, Ledger, _process
from ledger.errors import ConcurrencyError, ReactionError
from ledger.reactions import (
    CreatedEvent,
    Event,
    EventPriority,
    LedgerFact,
    ProcessedEvent,
    emit,
    emit_and_wait,
    get_event_bus,
    on,
)
from ledger.reactions.recording import record_event

from . import reaction_worker
from .conftest import requires_pg
from .models import Grade, Student

WAIT = 300  # seconds a liveness wait may take before the test fails (never a timing assertion)


@pytest.fixture(autouse=True)
def fresh_bus() -> Iterator[None]:
    """Each test starts with no handlers and leaves none behind."""
    _process.event_bus = None
    yield
    _process.event_bus = None


class Tally(Entity):
    label: str
    count: int = 0


# --------------------------------------------------------------- the original README's patterns
class StudentCreatedEvent(CreatedEvent[Student]):
    type: str = "student.created"


class ProcessedStudent(BaseModel):
    id: UUID = Field(default_factory=uuid4)
    student_id: UUID
    processed_gpa: float = 0.0


class BatchReport(Entity):
    batch_size: int = 0
    average_gpa: float = 0.0


class Summary(Entity):
    reports: int = 0


class StudentProcessedEvent(CreatedEvent[ProcessedStudent]):
    type: str = "student.processed"


class TestOriginalEventApi:
    def test_class_pattern_predicate_and_lambda_handlers_sync_and_async(self) -> None:
        """The "Event-driven observation" example: every kind of subscription sees its events, async
        handlers are awaited by emit, and a handler that raises does not stop the others."""
        seen: list[tuple[str, str]] = []

        @on(StudentCreatedEvent)
        async def by_class(event: StudentCreatedEvent) -> None:
            await asyncio.sleep(0)
            seen.append(("class", event.type))

        @on(pattern="student.*")
        def by_pattern(event: Event) -> None:
            seen.append(("pattern", event.type))

        @on(pattern="student.*")
        def broken(event: Event) -> None:
            raise RuntimeError("this handler fails")

        @on(predicate=lambda e: e.subject_id is not None)
        async def by_predicate(event: Event) -> None:
            seen.append(("predicate", event.type))

        @on(lambda e: e.type == "other")
        def by_lambda(event: Event) -> None:
            seen.append(("lambda", event.type))

        sid = uuid4()
        returned = asyncio.run(emit(StudentCreatedEvent(subject_type=Student, subject_id=sid)))
        assert returned.type == "student.created" and returned.subject_type is Student
        assert seen == [("class", "student.created"), ("pattern", "student.created"), ("predicate", "student.created")]
        seen.clear()
        asyncio.run(emit(Event(type="other")))
        assert seen == [("lambda", "other")]

    def test_handlers_run_by_priority_then_subscription_order(self) -> None:
        order: list[str] = []
        on(pattern="*", priority=EventPriority.LOW)(lambda e: order.append("low"))
        on(pattern="*")(lambda e: order.append("normal-1"))
        on(pattern="*", priority=EventPriority.HIGH)(lambda e: order.append("high"))
        on(pattern="*")(lambda e: order.append("normal-2"))
        asyncio.run(emit(Event(type="x")))
        assert order == ["high", "normal-1", "normal-2", "low"]

    def test_three_step_cascade(self, mem: Ledger) -> None:
        """The "Multi-step reactive cascades" example: processed students are batched by threes,
        each batch is analysed by a registered function, and every three reports make a summary;
        all of it has happened when the emits return."""
        pending: list[UUID] = []
        reports: list[UUID] = []

        @CallableRegistry.register("rx_analyze_batch")
        def analyze_batch(gpas: list[float]) -> BatchReport:
            return BatchReport(batch_size=len(gpas), average_gpa=sum(gpas) / len(gpas))

        @CallableRegistry.register("rx_summarize")
        def summarize(reports: list[BatchReport]) -> Summary:
            return Summary(reports=len(reports))

        gpas: dict[UUID, float] = {}

        @on(StudentProcessedEvent)
        async def collect_processed(event: StudentProcessedEvent) -> None:
            pending.append(event.subject_id)
            if len(pending) >= 3:
                batch, pending[:] = pending[:3], []
                report = await CallableRegistry.aexecute("rx_analyze_batch", gpas=[gpas[i] for i in batch])
                await emit(CreatedEvent[BatchReport](subject_type=BatchReport, subject_id=report.ecs_id))

        @on(lambda event: event.type == "created" and event.subject_type == BatchReport)
        async def aggregate_reports(event: Event) -> None:
            reports.append(event.subject_id)
            if len(reports) >= 3:
                batch, reports[:] = reports[:3], []
                await CallableRegistry.aexecute("rx_summarize", reports=[f"@{r}" for r in batch])

        async def process_student(student: Student) -> None:
            processed = ProcessedStudent(student_id=student.ecs_id, processed_gpa=student.gpa * 1.1)
            gpas[processed.id] = processed.processed_gpa
            await emit(StudentProcessedEvent(subject_type=ProcessedStudent, subject_id=processed.id))

        async def main() -> None:
            for i in range(9):
                await process_student(Student(name=f"s{i}", gpa=3.0 + i * 0.1))

        try:
            asyncio.run(main())
            names = [r[0] for r in mem.sql("select function_name from executions order by position").fetchall()]
            assert names == ["rx_analyze_batch"] * 3 + ["rx_summarize"]
            ((count,),) = mem.sql("select count(*) from entity_versions where entity_type like '%Summary'").fetchall()
            assert count == 1 and pending == [] and reports == []
        finally:
            CallableRegistry.unregister("rx_analyze_batch")
            CallableRegistry.unregister("rx_summarize")

    def test_emit_and_wait_returns_the_cascade(self) -> None:
        @on(pattern="order.placed")
        async def confirm(event: Event) -> None:
            await emit(Event(type="order.confirmed", parent_id=event.id))
            await emit(Event(type="unrelated"))

        root = Event(type="order.placed")
        got = asyncio.run(emit_and_wait(root))
        assert [e.type for e in got] == ["order.placed", "order.confirmed"]
        assert got[1].parent_id == root.id

    def test_lifecycle_classes_keep_the_original_fields(self) -> None:
        done = ProcessedEvent[Student](process_name="grade", output_ids=[], subject_type=Student, subject_id=uuid4())
        assert done.type == "processed" and done.phase == "completed"
        failed = done.to_failed("no grades")
        assert failed.phase == "failed" and failed.error == "no grades"
        assert failed.lineage_id == done.lineage_id and failed.id != done.id
        with pytest.raises(ValidationError, match="together"):
            Event(type="x", subject_type=Student)

    def test_bad_subscriptions_name_the_argument(self) -> None:
        with pytest.raises(ReactionError, match="pattern="):
            on()(lambda e: None)
        with pytest.raises(ReactionError, match="on\\(\\)"):
            on("student.*")
        with pytest.raises(ReactionError, match="pattern"):
            on(pattern=3)(lambda e: None)  # type: ignore[arg-type]
        assert not get_event_bus().subscribed


# --------------------------------------------------------------- ledger facts
class TestLedgerFacts:
    def test_every_fact_kind_reaches_handlers_after_its_commit(self, led: Ledger) -> None:
        """Each handler call finds its position already in the store and the entity readable."""
        seen: list[tuple[str, UUID, int]] = []
        problems: list[str] = []

        @on(pattern="entity.*")
        @on(pattern="execution.*")
        def observe(fact: LedgerFact) -> None:
            if led.store.head() < fact.position:
                problems.append(f"{fact.type} at {fact.position} published before its commit")
            seen.append((fact.type, fact.subject_id, fact.position))

        @CallableRegistry.register("rx_bump")
        def bump(t: Tally) -> Tally:
            t.count += 1
            return t

        @CallableRegistry.register("rx_fail")
        def fail(t: Tally) -> Tally:
            raise ValueError("no")

        try:
            s = Student(name="a", grades=[Grade(course="m", score=1.0)])
            s.promote_to_root()
            s.gpa = 2.0
            led.registry.version_entity(s)
            grade = s.grades[0]
            led.registry.detach(grade)
            led.registry.version_entity(grade)
            s.grades.append(grade)
            led.registry.attach(grade, s)
            t = Tally(label="t")
            t.promote_to_root()
            CallableRegistry.execute("rx_bump", t=t)
            with pytest.raises(ValueError):
                CallableRegistry.execute("rx_fail", t=t)
            led.erase(t.lineage_id, reason="test")
        finally:
            CallableRegistry.unregister("rx_bump")
            CallableRegistry.unregister("rx_fail")
        kinds = Counter(kind for kind, _, _ in seen)
        assert set(kinds) == {
            "entity.registered", "entity.versioned", "entity.detached", "entity.attached",
            "entity.erased", "execution.completed", "execution.failed",
        }
        assert not problems
        positions = [p for _, _, p in seen]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert ("entity.erased", t.lineage_id) in {(k, i) for k, i, _ in seen}
        detached = [i for k, i, _ in seen if k == "entity.detached"]
        assert len(detached) == 1 and led.registry.get_stored_entity(detached[0], detached[0]) is not None

    def test_no_fact_for_a_refused_batch(self, tmp_path) -> None:
        """A batch the store refuses (another writer moved the lineage) publishes nothing."""
        url = f"sqlite:///{tmp_path / 'c.db'}"
        with Ledger(url) as first, Ledger(url) as second:
            t = Tally(label="x")
            first.registry.register_entity(t)
            second.refresh()
            other = second.registry.get_latest(t.lineage_id)
            other.count = 5
            second.registry.version_entity(other)
            seen: list[int] = []
            on(pattern="*")(lambda fact: seen.append(fact.position))
            t.count = 7
            head = first.store.head()
            with pytest.raises(ConcurrencyError):
                first.registry.version_entity(t)
            assert seen == [] and first.store.head() == head

    def test_a_failing_handler_is_logged_and_the_write_stands(self, led: Ledger, caplog) -> None:
        @on(pattern="entity.registered")
        def broken(fact: LedgerFact) -> None:
            raise RuntimeError("handler bug")

        t = Tally(label="kept")
        with caplog.at_level(logging.ERROR, logger="ledger.reactions"):
            t.promote_to_root()
        assert "handler bug" in caplog.text
        assert led.registry.get_latest(t.lineage_id).label == "kept"

    def test_a_handler_cascade_of_executions_runs_in_commit_order(self, mem: Ledger) -> None:
        """A handler that executes a function triggers the next step: three steps, each after the
        commit of the one before; facts of a nested commit wait until the running handler returns."""
        order: list[str] = []

        @CallableRegistry.register("rx_step")
        def step(t: Tally) -> Tally:
            t.count += 1
            return t

        @on(predicate=lambda f: f.type == "execution.completed" and f.function_name == "rx_step")
        def next_step(fact: LedgerFact) -> None:
            order.append(f"start {fact.position}")
            ((out,),) = mem.sql(
                "select ecs_id from execution_outputs where execution_id = ?", [str(fact.subject_id)]
            ).fetchall()
            if mem.registry.get_stored_entity(UUID(out), UUID(out)).count < 3:
                CallableRegistry.execute("rx_step", t=f"@{out}")
            order.append(f"end {fact.position}")

        try:
            t = Tally(label="c")
            t.promote_to_root()
            CallableRegistry.execute("rx_step", t=t)
        finally:
            CallableRegistry.unregister("rx_step")
        starts = [line for line in order if line.startswith("start")]
        assert len(starts) == 3
        # never nested: each handler call ends before the next one starts
        assert all(a.split()[0] == "start" and b.split()[0] == "end" and a.split()[1] == b.split()[1]
                   for a, b in zip(order[::2], order[1::2]))
        assert mem.sql("select count(*) from executions where function_name = 'rx_step'").fetchall()[0][0] == 3

    def test_async_fact_handlers_inside_a_loop_are_awaited_by_emit_and_wait(self, mem: Ledger) -> None:
        got: list[str] = []

        @on(pattern="entity.registered")
        async def later(fact: LedgerFact) -> None:
            await asyncio.sleep(0)
            got.append(fact.type)

        @on(pattern="go")
        async def register(event: Event) -> None:
            Tally(label="in-loop").promote_to_root()

        asyncio.run(emit_and_wait(Event(type="go")))
        assert got == ["entity.registered"]


# --------------------------------------------------------------- recorded user events
class TestRecordedEvents:
    def test_a_recorded_event_is_in_the_log_and_every_reader_takes_it(self, tmp_path) -> None:
        from typer.testing import CliRunner

        from ledger.cli import app

        url = f"sqlite:///{tmp_path / 'r.db'}"
        led = ledger.connect(url)
        try:
            s = Student(name="r")
            s.promote_to_root()
            event = StudentCreatedEvent(subject_type=Student, subject_id=s.ecs_id, metadata={"why": "test"})
            delivered: list[Event] = []
            on(StudentCreatedEvent)(delivered.append)
            asyncio.run(emit(event, record=True))
            assert delivered == [event]  # delivered once: by emit, not again as a fact
            assert led.verify().ok
            (row,) = led.sql("select event_type, payload->>'event_type' from events where event_type = 'reaction.emitted'").fetchall()
            assert row == ("reaction.emitted", "student.created")
            followed: list[Event] = []
            led.follow("audit", followed.append, types=["student.*"])
            assert len(followed) == 1
            again = followed[0]
            assert type(again) is StudentCreatedEvent and again.id == event.id
            assert again.subject_type is Student and again.metadata == {"why": "test"}
        finally:
            led.close()
            ledger.set_default_ledger(None)
        replayed = Ledger(url, replay=True)
        assert replayed.index.position == replayed.store.head()
        replayed.close()
        out = CliRunner().invoke(app, ["log", "--db", url, "--format", "json"])
        assert out.exit_code == 0, out.output
        rows = json.loads(out.output)
        assert rows[-1]["event"] == "reaction.emitted" and rows[-1]["id"] == str(event.id)
        table = CliRunner().invoke(app, ["log", "--db", url])
        assert table.exit_code == 0 and f"student.created Student {s.ecs_id}" in table.output
        assert CliRunner().invoke(app, ["verify", "--db", url]).exit_code == 0

    def test_an_event_that_cannot_be_recorded_is_refused_and_nothing_is_written(self, mem: Ledger) -> None:
        class Odd(Event):
            thing: object = None

        head = mem.store.head()
        with pytest.raises(ReactionError, match="cannot be recorded"):
            record_event(Odd(type="odd", thing=threading.Lock()), mem)
        assert mem.store.head() == head


# --------------------------------------------------------------- durable followers
def _wait_until(condition, what: str) -> None:
    done = threading.Event()
    for _ in range(WAIT * 100):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError(f"still waiting for {what}")


class TestFollowers:
    def test_catches_up_before_returning_then_follows_new_writes(self, store_url: str) -> None:
        led = Ledger(store_url)
        try:
            for i in range(5):
                led.registry.register_entity(Tally(label=str(i)))
            got: list[tuple[str, int]] = []
            follower = led.follow("f", lambda fact: got.append((fact.type, fact.position)))
            assert got == [("entity.registered", p) for p in range(1, 6)]
            led.registry.register_entity(Tally(label="new"))
            _wait_until(lambda: len(got) == 6, "the new event")
            assert got[-1] == ("entity.registered", 6) and follower.position == 6
            with pytest.raises(ReactionError, match="already follows"):
                led.follow("f", print)
        finally:
            led.close()

    def test_the_position_survives_a_restart_and_types_filter(self, durable_url: str) -> None:
        with Ledger(durable_url) as led:
            t = Tally(label="a")
            led.registry.register_entity(t)
            t.count = 1
            led.registry.version_entity(t)
            first: list[int] = []
            led.follow("versions", lambda f: first.append(f.position), types=["entity.versioned"])
            assert first == [2]
        with Ledger(durable_url) as writer:
            u = writer.registry.get_latest(t.lineage_id)
            u.count = 2
            writer.registry.version_entity(u)
            writer.registry.register_entity(Tally(label="b"))
        with Ledger(durable_url) as led:
            later: list[int] = []
            follower = led.follow("versions", lambda f: later.append(f.position), types=["entity.versioned"])
            assert later == [3] and follower.position == 4
            assert led.store.follower_position("versions") == 4

    def test_a_follower_in_another_ledger_sees_this_ones_writes(self, durable_url: str) -> None:
        """The live path across connections: SQLite polling, PostgreSQL LISTEN/NOTIFY."""
        with Ledger(durable_url) as watcher, Ledger(durable_url) as writer:
            got: list[int] = []
            watcher.follow("w", lambda f: got.append(f.position))
            assert got == []
            for i in range(3):
                writer.registry.register_entity(Tally(label=str(i)))
            _wait_until(lambda: len(got) == 3, "three events from the other connection")
            assert got == [1, 2, 3]

    @requires_pg
    def test_a_gap_in_postgresql_positions_does_not_stall_a_follower(self, pg_url: str) -> None:
        """Positions the log never holds (a rolled-back sequence value) are stepped over."""
        import psycopg
        from psycopg import sql

        with Ledger(pg_url) as led:
            for i in range(5):
                led.registry.register_entity(Tally(label=str(i)))
            schema = pg_url.rsplit("schema=", 1)[1]
            table = led.store.recorder.events_table_name  # type: ignore[attr-defined]
            with psycopg.connect(pg_url.split("?")[0], autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DELETE FROM {}.{} WHERE notification_id = 3").format(sql.Identifier(schema), sql.Identifier(table))
                )
            got: list[int] = []
            follower = led.follow("gaps", lambda f: got.append(f.position))
            assert got == [1, 2, 4, 5] and follower.position == 5

    def test_a_fact_has_the_same_id_published_and_followed(self, mem: Ledger) -> None:
        """The id comes from the record's seal: a handler can deduplicate on it."""
        published: list[LedgerFact] = []
        on(pattern="*")(published.append)
        t = Tally(label="same")
        t.promote_to_root()
        t.count = 1
        mem.registry.version_entity(t)
        followed: list[LedgerFact] = []
        mem.follow("ids", followed.append)
        assert [(f.id, f.type, f.position) for f in followed] == [(f.id, f.type, f.position) for f in published]
        assert len({f.id for f in followed}) == 2
        # built without validation: every field is there, and it reads like a validated one
        for fact in followed:
            assert set(fact.__dict__) == set(LedgerFact.model_fields)
            assert LedgerFact.model_validate(fact.model_dump()) == fact

    def test_bad_arguments_are_refused_by_name(self, mem: Ledger) -> None:
        with pytest.raises(ReactionError, match="name"):
            mem.follow("", print)
        with pytest.raises(ReactionError, match="handler"):
            mem.follow("x", "not a function")  # type: ignore[arg-type]
        with pytest.raises(ReactionError, match="types"):
            mem.follow("x", print, types=[3])  # type: ignore[list-item]

    def test_a_read_only_ledger_cannot_follow(self, tmp_path) -> None:
        url = f"sqlite:///{tmp_path / 'ro.db'}"
        Ledger(url).close()
        with Ledger(url, create=False) as ro, pytest.raises(ReactionError, match="create=False"):
            ro.follow("x", print)

    def test_sigkill_and_restart_resume_without_loss_or_duplicates(self, durable_url: str) -> None:
        """A follower that executes a function per order is killed mid-way and restarted: every order
        is shipped exactly once (its writes and its position commit together)."""
        orders = 40
        with Ledger(durable_url) as led:
            ids = []
            for i in range(orders):
                o = reaction_worker.Order(item=f"item-{i}")
                led.registry.register_entity(o)
                ids.append(o.ecs_id)
        proc = reaction_worker.spawn("ship", durable_url, "shipper")
        try:
            for _ in range(8):
                line = proc.stdout.readline()  # type: ignore[union-attr]
                assert line, proc.stderr.read()  # type: ignore[union-attr]
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with Ledger(durable_url) as led:
            shipped_before = led.sql("select count(*) from executions where function_name = 'ship'").fetchall()[0][0]
        assert 8 <= shipped_before < orders
        restarted = reaction_worker.spawn("ship", durable_url, "shipper")
        out, err = restarted.communicate(timeout=WAIT * 2)
        assert restarted.returncode == 0, err
        with Ledger(durable_url) as led:
            rows = led.sql(
                "select i.ecs_id, count(*) from executions x join execution_inputs i using (execution_id) "
                "where x.function_name = 'ship' group by 1"
            ).fetchall()
            assert {UUID(e): n for e, n in rows} == {i: 1 for i in ids}
            assert led.store.follower_position("shipper") == led.store.head()

    def test_two_follower_processes_with_different_names_each_see_everything(self, durable_url: str) -> None:
        with Ledger(durable_url) as led:
            for i in range(10):
                led.registry.register_entity(Tally(label=f"before-{i}"))
        procs = [reaction_worker.spawn("watch", durable_url, name) for name in ("audit", "mailer")]
        try:
            for p in procs:
                assert p.stdout.readline().strip() == "ready", p.stderr.read()  # type: ignore[union-attr]
            with Ledger(durable_url) as led:
                for i in range(10):
                    led.registry.register_entity(Tally(label=f"after-{i}"))
                head = led.store.head()
            outs = [p.communicate(f"{head}\n", timeout=WAIT) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
            assert json.loads(out.strip().splitlines()[-1]) == list(range(1, head + 1))

"""ledger/write/reexecute.py and ledger/write/memo.py (they share these fixtures): memoization by content (``cache=True``) and re-execution (``reexecute``), on every backend."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger
from ledger import CallableRegistry, ConfigEntity, Ledger
from ledger.errors import (
    EntityNotFoundError,
    ErasedInputError,
    NotReexecutableError,
    UnknownFunctionError,
)
from ledger.write.arguments import arguments_to_kwargs, has_unstorable, record_arguments
from ledger.write.signatures import ParamSpec

from .models import Grade, Patient, Student

#: What the functions below ran, in order (reset per test).
RAN: list[str] = []
#: Added to results by the "drifting" functions: a re-execution must see it.
DRIFT = {"value": 0.0}


class Weights(ConfigEntity):
    factor: float = 1.0


def bump(s: Student, by: float) -> Student:
    RAN.append("bump")
    s.gpa = s.gpa + by + DRIFT["value"]
    return s


def split(s: Student) -> tuple[Student, Grade]:
    RAN.append("split")
    return s, Grade(course="made", score=s.gpa)


def mean(scores: list[float]) -> float:
    RAN.append("mean")
    return sum(scores) / len(scores)


def weighted(s: Student, w: Weights) -> float:
    RAN.append("weighted")
    return s.gpa * w.factor


def fails_once(s: Student) -> Student:
    RAN.append("fails_once")
    if RAN.count("fails_once") == 1:
        raise RuntimeError("first time")
    return s


def visit(p: Patient) -> Patient:
    p.visits += 1 + int(DRIFT["value"])
    return p


FUNCTIONS = {"bump": bump, "split": split, "mean": mean, "weighted": weighted, "fails_once": fails_once, "visit": visit}


@pytest.fixture(autouse=True)
def functions() -> Iterator[None]:
    RAN.clear()
    DRIFT["value"] = 0.0
    for name, fn in FUNCTIONS.items():
        CallableRegistry.register(f"m_{name}", cache=True)(fn)
    yield
    for name in FUNCTIONS:
        CallableRegistry.unregister(f"m_{name}")
    DRIFT["value"] = 0.0


def events(led: Ledger) -> list[tuple[int, str]]:
    return [(n.id, n.topic) for n in led.store.read(1, 100_000)]


def executions(led: Ledger) -> list[tuple]:
    return led.sql(
        "select execution_id, function_name, cache_hit, reused_execution_id from executions order by position"
    ).fetchall()


def stored_student(led: Ledger, gpa: float = 3.0) -> Student:
    s = Student(name="Ann", gpa=gpa, grades=[Grade(course="math", score=2.0)])
    led.registry.register_entity(s)
    return s


class TestMemoization:
    def test_a_repeated_call_returns_the_recorded_outputs_without_running(self, led: Ledger) -> None:
        """Same function, same input version, same argument: the outputs of the first run, same ecs_ids."""
        s = stored_student(led)
        first = CallableRegistry.execute("m_bump", s=s, by=0.5)
        versions = len([t for _, t in events(led) if t == "entity.version"])
        again = CallableRegistry.execute("m_bump", s=s, by=0.5)
        assert RAN == ["bump"]
        assert again.ecs_id == first.ecs_id and again.gpa == 3.5 and again is not first
        assert len([t for _, t in events(led) if t == "entity.version"]) == versions  # no new version
        rows = executions(led)
        assert [r[2] for r in rows] == [False, True]
        assert rows[1][3] == rows[0][0] == str(first.derived_from_execution_id)
        assert led.verify().ok

    def test_a_changed_argument_input_version_or_source_runs_again(self, led: Ledger) -> None:
        """Each part of the key counts: the argument, the input's version, the function's source."""
        s = stored_student(led)
        CallableRegistry.execute("m_bump", s=s, by=0.5)
        CallableRegistry.execute("m_bump", s=s, by=0.25)
        assert RAN == ["bump", "bump"]
        s.gpa = 3.1  # a new version of the input (traced before the call)
        CallableRegistry.execute("m_bump", s=s, by=0.5)
        assert RAN == ["bump"] * 3

        def bump(s: Student, by: float) -> Student:  # same name, other source
            RAN.append("bump2")
            s.gpa += by
            return s

        CallableRegistry.register("m_bump", cache=True)(bump)
        CallableRegistry.execute("m_bump", s=s, by=0.5)
        assert RAN[-1] == "bump2"
        assert [r[2] for r in executions(led)] == [False] * 4

    def test_unpacked_and_wrapped_results_come_back_in_their_shape(self, led: Ledger) -> None:
        """A tuple of entities comes back as the same list of versions; a plain result as its wrapper."""
        s = stored_student(led)
        a = CallableRegistry.execute("m_split", s=s)
        b = CallableRegistry.execute("m_split", s=s)
        assert isinstance(b, list) and [x.ecs_id for x in b] == [x.ecs_id for x in a]
        assert b[1].score == 3.0 and b[1].sibling_output_entities == [a[0].ecs_id]
        m1 = CallableRegistry.execute("m_mean", scores=[1.0, 2.0])
        m2 = CallableRegistry.execute("m_mean", scores=[1.0, 2.0])
        assert m2.ecs_id == m1.ecs_id and m2.result == 1.5
        assert RAN == ["split", "mean"]

    def test_configs_built_from_keywords_are_keyed_by_content(self, led: Ledger) -> None:
        """A ConfigEntity built per call (a new id each time) hits when its values are the same."""
        s = stored_student(led)
        CallableRegistry.execute("m_weighted", s=s, factor=2.0)
        CallableRegistry.execute("m_weighted", s=s, factor=2.0)
        CallableRegistry.execute("m_weighted", s=s, factor=3.0)
        assert RAN == ["weighted", "weighted"]

    def test_an_argument_with_no_recorded_form_is_never_reused(self, led: Ledger) -> None:
        """``inf`` cannot be recorded (JSON has none): such a call runs every time."""
        CallableRegistry.execute("m_mean", scores=[float("inf"), 1.0])
        CallableRegistry.execute("m_mean", scores=[float("inf"), 1.0])
        CallableRegistry.execute("m_mean", scores=[None or 2.0, 1.0])
        CallableRegistry.execute("m_mean", scores=[2.0, 1.0])
        assert RAN == ["mean", "mean", "mean"]

    def test_failures_are_never_reused(self, led: Ledger) -> None:
        """A call that raised is recorded as failed and carries no key: the same call runs again."""
        s = stored_student(led)
        with pytest.raises(RuntimeError):
            CallableRegistry.execute("m_fails_once", s=s)
        CallableRegistry.execute("m_fails_once", s=s)
        CallableRegistry.execute("m_fails_once", s=s)
        assert RAN == ["fails_once", "fails_once"]

    def test_without_cache_every_call_runs(self, led: Ledger) -> None:
        CallableRegistry.register("m_plain")(bump)
        try:
            s = stored_student(led)
            CallableRegistry.execute("m_plain", s=s, by=0.5)
            CallableRegistry.execute("m_plain", s=s, by=0.5)
        finally:
            CallableRegistry.unregister("m_plain")
        assert RAN == ["bump", "bump"]

    def test_an_erased_output_is_not_reused(self, led: Ledger) -> None:
        """Its outputs could only come back as tombstones: the call runs again."""
        p = Patient(name="Bo")
        led.registry.register_entity(p)
        first = CallableRegistry.execute("m_visit", p=p)
        other = Patient(name="Cy")
        led.registry.register_entity(other)
        RAN.clear()
        CallableRegistry.execute("m_visit", p=other)
        hit = CallableRegistry.execute("m_visit", p=other)
        assert hit.visits == 1
        assert [r[2] for r in executions(led)][-1] is True
        led.erase(first.lineage_id, reason="request")
        with pytest.raises(ledger.errors.ErasedError):  # the input itself was erased too (same lineage)
            CallableRegistry.execute("m_visit", p=p)

    def test_another_process_ledger_finds_the_memo(self, durable_url: str) -> None:
        """The memo index is in the store: a ledger opened later (or elsewhere) reuses the execution."""
        with Ledger(durable_url) as a:
            ledger.set_default_ledger(a)
            s = stored_student(a)
            first = CallableRegistry.execute("m_bump", s=s, by=1.0)
        with Ledger(durable_url) as b:
            ledger.set_default_ledger(b)
            again = CallableRegistry.execute("m_bump", s=b.registry.get_stored_entity(s.ecs_id, s.ecs_id), by=1.0)
            assert again.ecs_id == first.ecs_id and RAN == ["bump"]
            stored, rebuilt = b.store.stored_index(), b.store.rebuilt_index()
            assert len(stored.memos) == 1 and stored.memos == rebuilt.memos
        ledger.set_default_ledger(None)

    def test_aexecute_reuses_too(self, led: Ledger) -> None:
        s = stored_student(led)
        first = asyncio.run(CallableRegistry.aexecute("m_bump", s=s, by=0.5))
        again = asyncio.run(CallableRegistry.aexecute("m_bump", s=s, by=0.5))
        assert again.ecs_id == first.ecs_id and RAN == ["bump"]

    def test_postgresql_appends_from_python_file_the_memo_too(self, pg_url: str) -> None:
        """The path that bypasses ``ledger_append_v1`` writes the memo rows in its transaction as well."""
        with Ledger(pg_url) as led:
            ledger.set_default_ledger(led)
            led.store._backend._server_append = False
            s = stored_student(led)
            first = CallableRegistry.execute("m_bump", s=s, by=2.0)
            again = CallableRegistry.execute("m_bump", s=s, by=2.0)
            assert again.ecs_id == first.ecs_id and RAN == ["bump"]
            stored, rebuilt = led.store.stored_index(), led.store.rebuilt_index()
            assert len(stored.memos) == 1 and stored.memos == rebuilt.memos
        ledger.set_default_ledger(None)

    def test_replay_finds_a_memo_row_missing_from_the_store(self, tmp_path: Path) -> None:
        """The memo index is a projection of the log: ``check_index`` (``ledger replay``) compares it."""
        from projections import audit

        url = f"sqlite:///{tmp_path / 'm.db'}"
        with Ledger(url) as led:
            ledger.set_default_ledger(led)
            CallableRegistry.execute("m_mean", scores=[1.0, 3.0])
            assert audit.check_index(led).ok
        ledger.set_default_ledger(None)
        with sqlite3.connect(tmp_path / "m.db") as con:
            con.execute("DELETE FROM ledger_memo_index")
        with Ledger(url) as led:
            check = audit.check_index(led)
            assert not check.ok and [row[0] for row in check.missing] == ["memo"]

    def test_the_sqlite_lookup_is_a_primary_key_search(self, tmp_path: Path) -> None:
        """Not a scan: SQLite's plan for the memo lookup searches the key's index."""
        path = tmp_path / "m.db"
        Ledger(f"sqlite:///{path}").close()
        with sqlite3.connect(path) as con:
            plan = " ".join(
                str(r[-1]) for r in con.execute("EXPLAIN QUERY PLAN SELECT execution_id, position FROM ledger_memo_index WHERE cache_key = ?", (b"x",))
            )
        assert "SEARCH" in plan and "PRIMARY KEY" in plan, plan


_text = st.text(max_size=8).filter(lambda t: not t.startswith("@") or t.startswith("@@"))
_plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3)
    | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(_text, inner, max_size=3)
    | st.dictionaries(st.integers(-5, 5), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(value=_plain)
def test_recorded_arguments_give_back_the_arguments_given(value) -> None:
    """Any plain value (nested lists, tuples, dicts with str or int keys, marker-like keys,
    ``@@`` escapes) comes back as given from its stored JSON form: what re-execution passes."""
    import orjson

    spec = {"v": ParamSpec("v", object, None, False)}
    stored = orjson.loads(orjson.dumps(record_arguments({"v": value}, spec, {}, {})))
    assert arguments_to_kwargs(stored)["v"] == value


@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan"), [1.0, float("inf")]])
def test_a_non_finite_float_is_recorded_as_its_repr(value) -> None:
    """JSON has no inf or NaN (orjson would write null, which is another argument): the run
    record keeps its type and repr, marked so, and the call cannot be re-run from it."""
    spec = {"v": ParamSpec("v", object, None, False)}
    recorded = record_arguments({"v": value}, spec, {}, {})
    assert has_unstorable(recorded) == "v"
    assert {"$r": {"type": "builtins.float", "repr": repr(float(str(value).strip("[]").split(", ")[-1]))}} in (
        [recorded["v"]] if isinstance(recorded["v"], dict) else recorded["v"]
    )


class TestReexecution:
    def test_a_deterministic_execution_matches_and_writes_no_version(self, led: Ledger) -> None:
        """One execution.reexecuted event, matches=True, no entity version, a reexecutions row."""
        s = stored_student(led)
        out = CallableRegistry.execute("m_bump", s=s, by=0.5)
        before = events(led)
        result = CallableRegistry.reexecute(out.derived_from_execution_id)
        after = events(led)
        assert result.matches and result.differences == {} and result.execution_id == out.derived_from_execution_id
        assert after[: len(before)] == before and [t for _, t in after[len(before):]] == ["execution.reexecuted"]
        assert result.position == after[-1][0]
        rows = led.sql("select execution_id, matches, position from reexecutions").fetchall()
        assert rows == [(str(result.execution_id), True, result.position)]
        assert led.verify().ok

    def test_a_drifting_result_is_a_difference_floats_exactly(self, led: Ledger) -> None:
        """A result one ulp off is a difference, keyed by output index and path."""
        s = stored_student(led, gpa=3.0)
        out = CallableRegistry.execute("m_bump", s=s, by=0.5)
        DRIFT["value"] = 1e-15
        result = CallableRegistry.reexecute(out.derived_from_execution_id)
        assert not result.matches
        assert result.differences == {"0.gpa": (3.5, 3.5 + 1e-15)}
        (row,) = led.sql("select matches, differences from reexecutions").fetchall()
        assert row[0] is False and '"0.gpa"' in row[1]

    def test_the_recorded_versions_are_used_not_todays(self, led: Ledger) -> None:
        """An argument given as "@<lineage>" ran on the then-latest version; a newer one changes nothing."""
        s = stored_student(led, gpa=2.0)
        out = CallableRegistry.execute("m_bump", s=f"@{s.lineage_id}", by=1.0)
        s.gpa = 9.0
        led.registry.version_entity(s)
        mean_out = CallableRegistry.execute("m_mean", scores=[f"@{s.lineage_id}.gpa", 1.0])
        s.gpa = 5.0
        led.registry.version_entity(s)
        assert CallableRegistry.reexecute(out.derived_from_execution_id).matches
        assert CallableRegistry.reexecute(mean_out.derived_from_execution_id).matches

    def test_a_raising_rerun_is_a_mismatch_naming_the_error(self, led: Ledger) -> None:
        s = stored_student(led)
        CallableRegistry.register("m_flaky")(fails_once)
        try:
            RAN.append("fails_once")  # the first call succeeds ...
            CallableRegistry.execute("m_flaky", s=s)
            RAN.clear()  # ... and the re-run is a "first" call again
            ((execution,),) = led.sql("select execution_id from executions").fetchall()
            result = CallableRegistry.reexecute(execution)
        finally:
            CallableRegistry.unregister("m_flaky")
        assert not result.matches and result.error_type == "RuntimeError"

    def test_process_isolation_runs_again_in_a_child(self, led: Ledger) -> None:
        CallableRegistry.register("m_forked", isolation="process")(bump)
        try:
            s = stored_student(led)
            out = CallableRegistry.execute("m_forked", s=s, by=0.5)
            assert CallableRegistry.reexecute(out.derived_from_execution_id).matches
        finally:
            CallableRegistry.unregister("m_forked")

    def test_refusals_are_specific_and_write_nothing(self, led: Ledger) -> None:
        """Unknown id, unregistered function, failed execution, erased input: each its own error."""
        s = stored_student(led)
        out = CallableRegistry.execute("m_bump", s=s, by=0.5)
        with pytest.raises(RuntimeError):
            CallableRegistry.execute("m_fails_once", s=s)
        ((failed,),) = led.sql("select execution_id from executions where not succeeded").fetchall()
        p = Patient(name="Di")
        led.registry.register_entity(p)
        seen = CallableRegistry.execute("m_visit", p=p)
        led.erase(p.lineage_id, reason="request")
        before = events(led)
        with pytest.raises(EntityNotFoundError):
            CallableRegistry.reexecute("6f1c2a9e-0000-4000-8000-000000000000")
        with pytest.raises(EntityNotFoundError):
            CallableRegistry.reexecute(s.lineage_id)  # a lineage, not an execution
        with pytest.raises(ErasedInputError):
            CallableRegistry.reexecute(seen.derived_from_execution_id)
        CallableRegistry.unregister("m_bump")
        with pytest.raises(UnknownFunctionError, match="m_bump"):
            CallableRegistry.reexecute(out.derived_from_execution_id)
        assert events(led) == before

    def test_a_reference_is_recorded_pinned_never_its_personal_value(self, led: Ledger) -> None:
        """``"@<lineage>.name"`` is kept as a reference to the version it read, not as the
        (personal) value: the log never holds it in clear, and re-execution reads it again."""

        def greet(name: str) -> str:
            return f"hello {name}"

        CallableRegistry.register("m_greet", cache=True)(greet)
        try:
            p = Patient(name="Private Person")
            led.registry.register_entity(p)
            out = CallableRegistry.execute("m_greet", name=f"@{p.lineage_id}.name")
            again = CallableRegistry.execute("m_greet", name=f"@{p.ecs_id}.name")  # the same version: a hit
            assert out.result == "hello Private Person" and again.ecs_id == out.ecs_id
            completed = [n.state for n in led.store.read(1, 100_000) if n.topic == "execution.completed"]
            assert all(b"Private" not in state for state in completed)
            assert f'"name":"@{p.ecs_id}.name"'.encode() in completed[0]
            assert CallableRegistry.reexecute(out.derived_from_execution_id).matches
        finally:
            CallableRegistry.unregister("m_greet")

    def test_an_argument_with_no_json_form_runs_but_cannot_be_rerun(self, led: Ledger) -> None:
        """The call is not refused for it; re-execution says why it cannot run again."""

        class Opaque:
            pass

        def size(thing: Any) -> int:
            return 1

        CallableRegistry.register("m_size")(size)
        try:
            assert CallableRegistry.execute("m_size", thing=Opaque()).result == 1
            ((execution,),) = led.sql("select execution_id from executions").fetchall()
            with pytest.raises(NotReexecutableError, match="no JSON form"):
                CallableRegistry.reexecute(execution)
        finally:
            CallableRegistry.unregister("m_size")

    def test_personal_values_never_reach_the_event_in_clear(self, led: Ledger) -> None:
        """A difference in a personal field is recorded as "<personal>" (the caller still sees it)."""

        def rename(p: Patient) -> Patient:
            p.name = p.name + ("!" if DRIFT["value"] else "")
            return p

        CallableRegistry.register("m_rename")(rename)
        try:
            p = Patient(name="Secret Name")
            led.registry.register_entity(p)
            CallableRegistry.execute("m_rename", p=p)  # unchanged: its output is the input's version
            DRIFT["value"] = 1.0
            ((execution,),) = led.sql("select execution_id from executions").fetchall()
            result = CallableRegistry.reexecute(execution)
        finally:
            CallableRegistry.unregister("m_rename")
        assert result.differences == {"0.name": ("Secret Name", "Secret Name!")}
        raw = b"".join(n.state for n in led.store.read(1, 100_000) if n.topic == "execution.reexecuted")
        assert b"Secret" not in raw and b"<personal>" in raw


# ------------------------------------------------------------------ command line
PIPELINE = textwrap.dedent(
    """
    import os
    from ledger import CallableRegistry, Entity

    class Pupil(Entity):
        name: str
        gpa: float = 0.0

    @CallableRegistry.register("rx_raise")
    def rx_raise(p: Pupil, bonus: float) -> Pupil:
        p.gpa = p.gpa + bonus + float(os.environ.get("RX_DRIFT", "0"))
        return p
    """
)


def _ledger_script() -> str:
    return str(Path(sys.executable).with_name("ledger"))


class TestCommandLine:
    @pytest.fixture
    def recorded(self, tmp_path: Path) -> tuple[Path, str, str]:
        """A store with one execution recorded by another process that imported ``rxmod``."""
        (tmp_path / "rxmod.py").write_text(PIPELINE)
        url = f"sqlite:///{tmp_path / 'rx.db'}"
        code = (
            "import ledger, rxmod\n"
            f"ledger.connect({url!r})\n"
            "p = rxmod.Pupil(name='a', gpa=3.0); p.promote_to_root()\n"
            "print(ledger.CallableRegistry.execute('rx_raise', p=p, bonus=0.5).derived_from_execution_id)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
        return tmp_path, url, done.stdout.strip()

    def run(self, cwd: Path, *args: str, drift: str = "0") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RX_DRIFT": drift, "COLUMNS": "200"}
        return subprocess.run([_ledger_script(), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)

    def test_exit_status_says_whether_the_outputs_match(self, recorded: tuple[Path, str, str]) -> None:
        cwd, url, execution = recorded
        same = self.run(cwd, "reexecute", execution[:8], "--import", "rxmod", "--db", url)
        assert same.returncode == 0, same.stderr
        assert "outputs match" in same.stdout
        drifted = self.run(cwd, "reexecute", execution, "-i", "rxmod.py", "--db", url, "--format", "json", drift="0.25")
        assert drifted.returncode == 1, drifted.stderr
        verdict = json.loads(drifted.stdout)
        assert verdict["matches"] is False and verdict["execution_id"] == execution
        assert verdict["differences"] == [{"path": "0.gpa", "recorded": 3.5, "now": 3.75}]
        log = self.run(cwd, "log", "--db", url)
        assert "re-executed" in log.stdout and "DIFFERS at 1 path(s): 0.gpa" in log.stdout

    def test_errors_are_one_line(self, recorded: tuple[Path, str, str]) -> None:
        cwd, url, execution = recorded
        elsewhere = cwd / "elsewhere"  # where the recorded module cannot be imported
        elsewhere.mkdir()
        lost = self.run(elsewhere, "reexecute", execution, "--db", url)
        assert lost.returncode == 1 and "--import" in lost.stderr, lost.stderr
        assert "Traceback" not in lost.stderr and len(lost.stderr.strip().splitlines()) == 1
        for args, needle in (
            (("reexecute", "00000000", "--db", url, "-i", "rxmod"), "no stored id"),
            (("reexecute", execution, "--db", url, "-i", "no_such_module_here"), "ModuleNotFoundError"),
        ):
            done = self.run(cwd, *args)
            assert done.returncode == 1 and needle in done.stderr, (args, done.stderr)
            assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


class TestFacts:
    """A cache hit and a re-execution reach ``ledger.reactions`` handlers like every other fact."""

    def test_cache_hits_and_reexecutions_are_published(self, led: Ledger) -> None:
        from ledger import _process
        from ledger.reactions import get_event_bus, on

        seen: list = []
        try:
            on(pattern="execution.*")(seen.append)
            s = stored_student(led)
            first = CallableRegistry.execute("m_bump", s=s, by=0.5)
            CallableRegistry.execute("m_bump", s=s, by=0.5)
            verdict = CallableRegistry.reexecute(first.derived_from_execution_id)
        finally:
            _process.event_bus = None
        assert get_event_bus() is not None
        kinds = [(f.type, f.metadata) for f in seen]
        assert kinds[0] == ("execution.completed", {})
        assert kinds[1] == (
            "execution.completed",
            {"cache_hit": True, "reused_execution_id": first.derived_from_execution_id},
        )
        assert kinds[2][0] == "execution.reexecuted" and kinds[2][1]["matches"] is True
        assert seen[2].subject_id == first.derived_from_execution_id and seen[2].position == verdict.position

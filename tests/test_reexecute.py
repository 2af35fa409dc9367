"""ledger/write/reexecute.py: re-execution (``reexecute``) on every backend, from the library and the
command line (memoization by content is test_memo.py; the functions are in memo_calls.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ledger import CallableRegistry, Ledger
from ledger.errors import (
    EntityNotFoundError,
    ErasedInputError,
    NotReexecutableError,
    UnknownFunctionError,
)

from .memo_calls import DRIFT, RAN, bump, events, fails_once, stored_student
from .memo_calls import m_functions  # noqa: F401  (an autouse fixture)
from .models import Patient


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

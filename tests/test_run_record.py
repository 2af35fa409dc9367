"""The run record (``ledger/write/run_record.py``): what every execution records and where it shows.

Completed, failed, cache-hit and re-executed calls alike carry their arguments, the code that
ran, who ran it, where and when; SQL, ``show`` and re-execution read it back. Old records
(written before the run record existed) still read, with the new fields unknown.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

import ledger
from ledger import CallableRegistry, Ledger, errors
from ledger.events.bodies import EXECUTION_COMPLETED, EXECUTION_FAILED, RUN_FIELDS
from ledger.write import run_record
from projections import audit
from tests.models import Patient, Student, student


@CallableRegistry.register("rr_charge")
def rr_charge(st: Student, amount: float) -> Student:
    """Fails for a large amount: the failure the run record must explain."""
    if amount > 100:
        raise ValueError(f"amount {amount} over the limit")
    st.gpa -= amount
    return st


@CallableRegistry.register("rr_double", cache=True)
def rr_double(x: float) -> float:
    return 2 * x


@CallableRegistry.register("rr_greet")
def rr_greet(name: str, visits: int) -> str:
    return f"{name}:{visits}"


@CallableRegistry.register("rr_opaque")
def rr_opaque(thing: Any) -> int:
    return 1


@pytest.fixture
def led(store_url: str) -> Iterator[Ledger]:
    lg = ledger.connect(store_url, actor="alice@audit")
    yield lg
    lg.close()
    ledger.set_default_ledger(None)


def payloads(lg: Ledger, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(n.state) for n in lg.store.read(1, 100_000) if n.topic == topic]


class TestWhatEveryExecutionRecords:
    def test_a_failure_records_its_arguments_code_actor_host_and_times(self, led: Ledger) -> None:
        """``charge(st, amount=500.0)`` failed because of the 500: the 500 is in the record."""
        s = student()
        s.promote_to_root()
        before = datetime.now(timezone.utc)
        with pytest.raises(ValueError):
            CallableRegistry.execute("rr_charge", st=s, amount=500.0)
        (failed,) = payloads(led, EXECUTION_FAILED)
        assert failed["arguments"] == {"st": {"$e": str(s.ecs_id)}, "amount": 500.0}
        assert failed["function_version"] == run_record.code_facts(ledger.CallableRegistry.get_metadata("rr_charge"))["function_version"]
        assert len(failed["function_version"]) == 64
        assert (failed["module"], failed["qualname"]) == ("tests.test_run_record", "rr_charge")
        assert failed["source_file"] == __file__
        assert failed["actor"] == "alice@audit"
        assert failed["host"] == socket.gethostname() and failed["pid"] == os.getpid()
        assert failed["ledger_version"] == ledger.__version__
        started = datetime.fromisoformat(failed["started_at"])
        finished = datetime.fromisoformat(failed["finished_at"])
        assert before <= started <= finished <= datetime.fromisoformat(failed["recorded_at"])
        assert started.microsecond or finished.microsecond  # not cut to seconds

    def test_completed_cache_hit_and_reexecution_carry_it_too(self, led: Ledger) -> None:
        """Every kind of execution record has the run record's fields."""
        s = student()
        s.promote_to_root()
        out = CallableRegistry.execute("rr_charge", st=s, amount=1.0)
        CallableRegistry.execute("rr_double", x=2.0)
        CallableRegistry.execute("rr_double", x=2.0)  # a cache hit
        led.reexecute(out.derived_from_execution_id)
        completed = payloads(led, EXECUTION_COMPLETED)
        assert [p.get("cache_hit", False) for p in completed] == [False, False, True]
        records = [*completed, *payloads(led, "execution.reexecuted")]
        for p in records:
            assert {"function_version", "module", "qualname", "actor", "host", "pid", "started_at", "finished_at"} <= set(p)
        assert completed[0]["arguments"] == {"st": {"$e": str(s.ecs_id)}, "amount": 1.0}
        assert completed[2]["arguments"] == {"x": 2.0}

    def test_the_actor_is_per_ledger_per_block_and_per_task(self, led: Ledger) -> None:
        """``acting_as`` nests, restores, and two concurrent tasks each record their own name."""
        CallableRegistry.execute("rr_double", x=1.0)
        with led.acting_as("bob"):
            CallableRegistry.execute("rr_double", x=3.0)
            with led.acting_as("carol"):
                CallableRegistry.execute("rr_double", x=4.0)
            CallableRegistry.execute("rr_double", x=5.0)

        async def as_(name: str, x: float) -> None:
            with led.acting_as(name):
                await asyncio.sleep(0)
                await CallableRegistry.aexecute("rr_double", x=x)

        async def both() -> None:
            await asyncio.gather(as_("dan", 6.0), as_("eve", 7.0))

        asyncio.run(both())
        rows = led.sql("select actor, count(*) from executions group by 1 order by 1").fetchall()
        assert rows == [("alice@audit", 1), ("bob", 2), ("carol", 1), ("dan", 1), ("eve", 1)]
        with pytest.raises(errors.ActorError, match="actor"):
            with led.acting_as(""):
                pass

    def test_the_default_actor_is_user_at_host(self, tmp_path) -> None:
        with Ledger(f"sqlite:///{tmp_path / 'd.db'}") as lg:
            assert lg.actor == f"{run_record.process_facts()['user']}@{socket.gethostname()}"
        with pytest.raises(errors.ActorError, match="actor"):
            Ledger("memory://", actor=" ")

    def test_a_value_json_cannot_hold_is_its_type_and_repr(self, led: Ledger) -> None:
        class Opaque:
            def __repr__(self) -> str:
                return "Opaque(7)"

        CallableRegistry.execute("rr_opaque", thing=Opaque())
        (done,) = payloads(led, EXECUTION_COMPLETED)
        assert done["arguments"]["thing"] == {
            "$r": {"type": f"{__name__}.TestWhatEveryExecutionRecords.test_a_value_json_cannot_hold_is_its_type_and_repr.<locals>.Opaque", "repr": "Opaque(7)"}
        }
        with pytest.raises(errors.NotReexecutableError, match="'thing'"):
            led.reexecute(done["execution_id"])


class TestGitFacts:
    def test_a_checkout_gives_its_head_commit_and_dirtiness(self, tmp_path) -> None:
        """Read from .git directly (HEAD and its ref), dirtiness from one git status; cached."""
        repo = tmp_path / "repo"
        repo.mkdir()
        git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
        if subprocess.run([*git, "init", "-q"], capture_output=True).returncode != 0:
            pytest.skip("no git here")
        (repo / "f.py").write_text("x = 1\n")
        subprocess.run([*git, "add", "f.py"], check=True)
        subprocess.run([*git, "commit", "-qm", "one"], check=True)
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        assert run_record.git_facts(str(repo / "f.py")) == {"git_commit": head, "git_dirty": False}
        (repo / "f.py").write_text("x = 2\n")
        assert run_record.git_facts(str(repo / "f.py"))["git_dirty"] is False  # cached for the process
        ledger._process.run_git_facts.clear()
        assert run_record.git_facts(str(repo / "f.py")) == {"git_commit": head, "git_dirty": True}
        assert run_record.git_facts(str(tmp_path / "nowhere.py")) == {"git_commit": None, "git_dirty": None}


class TestWhereItShows:
    def test_sql_has_the_columns_and_one_row_per_argument(self, led: Ledger) -> None:
        s = student()
        s.promote_to_root()
        with pytest.raises(ValueError):
            CallableRegistry.execute("rr_charge", st=s, amount=500.0)
        CallableRegistry.execute("rr_greet", name=f"@{s.lineage_id}.name", visits=3)
        rows = led.sql(
            "select function_name, succeeded, actor, host, length(function_version), started_at <= finished_at "
            "from executions order by position"
        ).fetchall()
        assert rows == [
            ("rr_charge", False, "alice@audit", socket.gethostname(), 64, True),
            ("rr_greet", True, "alice@audit", socket.gethostname(), 64, True),
        ]
        args = led.sql(
            "select e.function_name, a.name, a.value, a.address from execution_arguments a "
            "join executions e using (execution_id) order by a.position, a.name"
        ).fetchall()
        assert args == [
            ("rr_charge", "amount", "500.0", None),
            ("rr_charge", "st", f'{{"$e":"{s.ecs_id}"}}', f"@{s.ecs_id}"),
            ("rr_greet", "name", f'"@{s.ecs_id}.name"', f"@{s.ecs_id}.name"),
            ("rr_greet", "visits", "3", None),
        ]

    def test_show_reads_arguments_what_references_read_and_reexecutions(self, led: Ledger) -> None:
        p = Patient(name="Private Person")
        p.promote_to_root()
        out = CallableRegistry.execute("rr_greet", name=f"@{p.lineage_id}.name", visits=2)
        again = led.reexecute(out.derived_from_execution_id)
        detail = audit.execution(led, out.derived_from_execution_id)
        assert detail is not None and detail.arguments is not None
        assert [(a.name, a.value, a.address, a.read) for a in detail.arguments] == [
            ("name", f"@{p.ecs_id}.name", f"@{p.ecs_id}.name", "Private Person"),
            ("visits", 2, None, None),
        ]
        assert detail.run["actor"] == "alice@audit" and detail.run["qualname"] == "rr_greet"
        assert [(r.reexecution_id, r.matches) for r in detail.reexecutions] == [(again.reexecution_id, True)]
        led.erase(p.lineage_id, reason="request")
        (name, _) = audit.execution(led, out.derived_from_execution_id).arguments  # type: ignore[union-attr]
        assert name.read is ledger.ERASED  # the personal value read through the reference is gone

    def test_an_old_record_reads_with_the_run_record_unknown(self, led: Ledger) -> None:
        """An execution.completed written as before the run record existed: every new field None."""
        s = student()
        s.promote_to_root()
        out = CallableRegistry.execute("rr_charge", st=s, amount=1.0)
        position, topic, payload = audit.execution_record(led, out.derived_from_execution_id)  # type: ignore[misc]
        old = {k: v for k, v in payload.items() if k not in RUN_FIELDS and k != "arguments"}
        from ledger.events.bodies import ExecutionCompleted

        model = ExecutionCompleted.model_validate(old)
        assert all(getattr(model, name) is None for name in RUN_FIELDS) and model.arguments is None
        detail = audit._arguments(led, old.get("arguments"))
        assert detail is None


class TestReexecution:
    def test_a_failure_reexecutes_and_the_same_error_matches(self, led: Ledger) -> None:
        s = student()
        s.promote_to_root()
        with pytest.raises(ValueError):
            CallableRegistry.execute("rr_charge", st=s, amount=500.0)
        (failed,) = payloads(led, EXECUTION_FAILED)
        verdict = led.reexecute(failed["execution_id"])
        assert verdict.matches and verdict.error_type == "ValueError"
        (recorded,) = payloads(led, "execution.reexecuted")
        assert recorded["recorded_error_type"] == "ValueError" and recorded["actor"] == "alice@audit"

    def test_a_read_of_only_plain_fields_of_an_erased_lineage_still_reexecutes(self, led: Ledger) -> None:
        p = Patient(name="Ann", visits=4)
        p.promote_to_root()
        plain = CallableRegistry.execute("rr_greet", name="x", visits=f"@{p.ecs_id}.visits")
        personal = CallableRegistry.execute("rr_greet", name=f"@{p.ecs_id}.name", visits=1)
        led.erase(p.lineage_id, reason="request")
        assert led.reexecute(plain.derived_from_execution_id).matches
        with pytest.raises(errors.ErasedInputError, match="'name'"):
            led.reexecute(personal.derived_from_execution_id)


@CallableRegistry.register("rr_welcome")
def rr_welcome(name: ledger.Personal[str], ward: str) -> int:
    if ward == "closed":
        raise ValueError("ward closed")
    return len(name)


class TestPersonalArguments:
    SECRET = "Yolanda Unlisted-Name"

    def test_a_plain_value_for_a_personal_parameter_is_withheld(self, led: Ledger, tmp_path) -> None:
        """Completed or failed, the clear value never reaches the store: the argument reads
        ``{"$p": "withheld"}``; the plain argument beside it is recorded as usual."""
        CallableRegistry.execute("rr_welcome", name=self.SECRET, ward="north")
        with pytest.raises(ValueError):
            CallableRegistry.execute("rr_welcome", name=self.SECRET, ward="closed")
        recorded = [p["arguments"] for p in payloads(led, EXECUTION_COMPLETED) + payloads(led, EXECUTION_FAILED)]
        assert recorded == [{"name": {"$p": "withheld"}, "ward": "north"}, {"name": {"$p": "withheld"}, "ward": "closed"}]
        raw = b"".join(bytes(n.state) for n in led.store.iter_all())
        assert self.SECRET.encode() not in raw
        if led.url.startswith("sqlite:///"):
            path = led.url.removeprefix("sqlite:///")
            files = [path, path + "-wal"]
            assert not any(self.SECRET.encode() in open(f, "rb").read() for f in files if os.path.exists(f))

    def test_a_reference_to_a_personal_field_stays_a_pinned_reference(self, led: Ledger) -> None:
        p = Patient(name=self.SECRET)
        led.registry.register_entity(p)
        CallableRegistry.execute("rr_welcome", name=f"@{p.lineage_id}.name", ward="north")
        (recorded,) = [x["arguments"] for x in payloads(led, EXECUTION_COMPLETED)]
        assert recorded == {"name": f"@{p.ecs_id}.name", "ward": "north"}

    def test_a_withheld_call_is_neither_memoized_nor_reexecuted(self, led: Ledger) -> None:
        out = CallableRegistry.execute("rr_welcome", name=self.SECRET, ward="north")
        with pytest.raises(errors.NotReexecutableError, match="personal"):
            CallableRegistry.reexecute(out.derived_from_execution_id)

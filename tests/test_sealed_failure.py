"""ledger/events/sealed_failure.py: the failure text of an execution that read personal fields is
sealed under every key it read, opens exactly while every key exists, and reads ERASED after.
"""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ledger import ERASED, Ledger
from ledger.events import EXECUTION_FAILED, ExecutionFailed
from ledger.model.personal import new_key

from .clinic import OTHER, SECRET, _fail, _patient, _payloads, _raw_states
from .models import Clinic, Grade, Patient


# ======================================================= 2. sealed failure text
class TestSealedFailureText:
    def test_the_log_never_holds_the_personal_value_in_clear(self, lg: Ledger) -> None:
        """The message and traceback are ciphertext in the event; the caller's error is unchanged."""
        p = _patient(lg)
        error = _fail(lg, "trust_admit", patient=p)
        assert type(error) is ValueError and str(error) == "cannot admit " + SECRET
        assert SECRET.encode() not in _raw_states(lg)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        event = ExecutionFailed.model_validate(failed)
        assert event.error_type == "ValueError"  # the type stays readable
        assert event.sealed_with == [p.lineage_id] and len(event.key_shares) == 1

    def test_readable_through_the_library_until_erased(self, lg: Ledger) -> None:
        """open_payload gives the text while the key exists and ERASED for message and traceback after."""
        p = _patient(lg)
        _fail(lg, "trust_admit", patient=p)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        opened = lg.open_payload(EXECUTION_FAILED, failed)
        assert opened["error_message"] == "cannot admit " + SECRET
        assert "raise ValueError" in opened["traceback"] and SECRET in opened["traceback"]
        lg.erase(p.lineage_id, reason="request")
        erased = lg.open_payload(EXECUTION_FAILED, failed)
        assert erased["error_message"] is ERASED and erased["traceback"] is ERASED
        assert erased["error_type"] == "ValueError"

    def test_analytics_and_parquet_show_erased(self, lg: Ledger, tmp_path: Path) -> None:
        """executions.error_message is the text before erasure, '<erased>' after; Parquet the same."""
        p = _patient(lg)
        _fail(lg, "trust_admit", patient=p)
        query = "select error_type, error_message from executions where not succeeded"
        assert lg.sql(query).fetchall() == [("ValueError", "cannot admit " + SECRET)]
        lg.erase(p.lineage_id, reason="request")
        assert lg.sql(query).fetchall() == [("ValueError", "<erased>")]
        lg.analytics.export_parquet(tmp_path / "pq")
        exported = pq.read_table(tmp_path / "pq" / "executions.parquet").to_pylist()
        assert [r["error_message"] for r in exported] == ["<erased>"]
        assert not [f for f in (tmp_path / "pq").iterdir() if SECRET.encode() in f.read_bytes()]

    def test_a_rebuilt_projection_agrees(self, durable_url: str) -> None:
        """A fresh ledger's analytics, built after the erasure, also read '<erased>'."""
        with Ledger(durable_url) as a:
            p = _patient(a)
            _fail(a, "trust_admit", patient=p)
            a.erase(p.lineage_id, reason="request")
        with Ledger(durable_url) as b:
            assert b.sql("select error_message from executions").fetchall() == [("<erased>",)]

    def test_several_lineages_need_every_key(self, lg: Ledger) -> None:
        """A failure that read two personal lineages turns unreadable when either one is erased."""
        first, second = _patient(lg), _patient(lg, name=OTHER)
        _fail(lg, "trust_pair", first=first, second=second)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert sorted(failed["sealed_with"]) == sorted([str(first.lineage_id), str(second.lineage_id)])
        assert lg.open_payload(EXECUTION_FAILED, failed)["error_message"] == f"cannot pair {SECRET} with {OTHER}"
        lg.erase(second.lineage_id, reason="request")
        assert lg.open_payload(EXECUTION_FAILED, failed)["error_message"] is ERASED
        assert lg.registry.get_latest(first.lineage_id).name == SECRET

    def test_children_of_an_input_tree_count(self, lg: Ledger) -> None:
        """A failure of a function given a Clinic is sealed with its patients' keys too."""
        clinic = Clinic(title="East", patients=[Patient(name=SECRET), Patient(name=OTHER)])
        lg.registry.register_entity(clinic)
        _fail(lg, "trust_clinic", clinic=clinic)
        assert SECRET.encode() not in _raw_states(lg)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert set(failed["sealed_with"]) == {str(x.lineage_id) for x in clinic.patients}
        lg.erase(clinic.patients[0].lineage_id, reason="request")
        assert lg.open_payload(EXECUTION_FAILED, failed)["error_message"] is ERASED

    def test_a_child_erased_before_the_call_does_not_hide_the_text(self, lg: Ledger) -> None:
        """An input tree member erased earlier gave the function only tombstones; the others' keys seal it."""
        clinic = Clinic(title="East", patients=[Patient(name=OTHER), Patient(name=SECRET)])
        lg.registry.register_entity(clinic)
        gone, kept = clinic.patients
        lg.erase(gone.lineage_id, reason="request")
        stored = lg.registry.get_latest(clinic.lineage_id)
        stored.patients = [stored.patients[1], stored.patients[0]]  # the kept patient first
        lg.registry.version_entity(stored)
        _fail(lg, "trust_clinic", clinic=stored)
        assert SECRET.encode() not in _raw_states(lg)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert failed["sealed_with"] == [str(kept.lineage_id)]
        assert lg.open_payload(EXECUTION_FAILED, failed)["error_message"] == "first patient: " + SECRET

    def test_a_reference_to_a_personal_field_counts(self, lg: Ledger) -> None:
        """A failure of a function given "@<uuid>.name" is sealed with that entity's key."""
        p = _patient(lg)
        error = _fail(lg, "trust_by_name", name=f"@{p.ecs_id}.name")
        assert SECRET in str(error)
        assert SECRET.encode() not in _raw_states(lg)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert failed["sealed_with"] == [str(p.lineage_id)]

    def test_a_failure_in_a_forked_child_is_sealed(self, tmp_path: Path) -> None:
        """Process isolation: the child's message and traceback are sealed the same way."""
        with Ledger(f"sqlite:///{tmp_path / 'f.db'}") as led:
            p = _patient(led)
            error = _fail(led, "trust_forked", patient=p)
            assert str(error) == "forked cannot admit " + SECRET
            assert SECRET.encode() not in _raw_states(led)
            (failed,) = _payloads(led, EXECUTION_FAILED)
            assert led.open_payload(EXECUTION_FAILED, failed)["error_message"] == "forked cannot admit " + SECRET

    def test_failures_without_personal_inputs_stay_in_clear(self, lg: Ledger) -> None:
        """No personal lineage among the inputs: the text is stored as it was."""
        g = Grade(course="astronomy", score=1.0)
        lg.registry.register_entity(g)
        _fail(lg, "trust_plain", grade=g)
        (failed,) = _payloads(lg, EXECUTION_FAILED)
        assert failed["error_message"] == "bad course astronomy" and "sealed_with" not in failed
        assert lg.sql("select error_message from executions").fetchall() == [("bad course astronomy",)]

    def test_the_cli_log_shows_the_text_then_erased(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """`ledger log` prints the failure text while the key exists and never after erasure."""
        from rich.console import Console

        from ledger.cli import commands as cli

        monkeypatch.setattr(cli, "console", Console(width=250))
        url = f"sqlite:///{tmp_path / 'c.db'}"
        with Ledger(url) as led:
            p = _patient(led)
            _fail(led, "trust_admit", patient=p)
        out = CliRunner().invoke(cli.app, ["log", "--db", url])
        assert out.exit_code == 0, out.output
        assert "cannot admit " + SECRET in out.output
        with Ledger(url) as led:
            led.erase(p.lineage_id, reason="request")
        out = CliRunner().invoke(cli.app, ["log", "--db", url, "--type", "execution"])
        assert out.exit_code == 0, out.output
        assert SECRET not in out.output and "FAILED ValueError: <erased>" in out.output


class TestSealingRule:
    @settings(max_examples=60, deadline=None)
    @given(
        text=st.text(max_size=200),
        count=st.integers(min_value=1, max_value=5),
        gone=st.sets(st.integers(min_value=0, max_value=4)),
    )
    def test_the_text_opens_exactly_while_every_key_exists(self, text: str, count: int, gone: set[int]) -> None:
        """For any text and lineages, the sealed text opens iff no involved key is missing."""
        from ledger.events.sealed_failure import open_failure, seal_failure

        lineages = [uuid4() for _ in range(count)]
        keys = {lineage: new_key() for lineage in lineages}
        execution_id = uuid4()
        sealed = seal_failure(execution_id, {"error_message": text, "traceback": text}, keys)
        payload = orjson.loads(orjson.dumps({"execution_id": execution_id, **sealed}))
        missing = {lineages[i] for i in gone if i < count}
        opened = open_failure(payload, lambda lineage: None if lineage in missing else keys[lineage])
        if missing:
            assert opened["error_message"] is ERASED and opened["traceback"] is ERASED
        else:
            assert opened["error_message"] == text and opened["traceback"] == text

    def test_a_wrong_key_does_not_open_it(self) -> None:
        """Another lineage's key in place of the right one gives ERASED, never garbage."""
        from ledger.events.sealed_failure import open_failure, seal_failure

        a, b = uuid4(), uuid4()
        keys = {a: new_key(), b: new_key()}
        sealed = seal_failure(uuid4(), {"error_message": "x"}, keys)
        swapped = {a: keys[b], b: keys[a]}
        assert open_failure(sealed, swapped.get)["error_message"] is ERASED

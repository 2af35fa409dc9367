"""Erasure by crypto-shredding: personal fields sealed per lineage, keys destroyed on erase."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field
from typer.testing import CliRunner

import ledger
from ledger import ERASED, CallableRegistry, Entity, Ledger, Personal, errors
from ledger.events import ENTITY_ERASED, ENTITY_VERSION, EntityErased, check_seal
from tests.models import Clinic, Grade, Patient

SECRET = "Zelda Quixotic-Secret"
MAIL = "zelda@example.invalid"


@CallableRegistry.register("erasure_name_length")
def name_length(patient: Patient) -> int:
    return len(patient.name)


@CallableRegistry.register("erasure_visit")
def visit(patient: Patient) -> Patient:
    patient.visits += 1
    return patient


def _patient(led: Ledger, name: str = SECRET) -> Patient:
    p = Patient(name=name, email=MAIL, ward="north", notes=[Grade(course="bp", score=1.5)])
    led.registry.register_entity(p)
    p.ward = "south"
    led.registry.version_entity(p)
    return p


def _raw(led: Ledger) -> list[Any]:
    return [(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state)) for n in led.store.iter_all()]


def _ciphertexts(led: Ledger) -> list[tuple[str, str, bytes]]:
    """(lineage, field, nonce+ciphertext) of every sealed value in the raw log."""
    out = []
    for n in led.store.iter_all():
        if n.topic != ENTITY_VERSION:
            continue
        body = orjson.loads(n.state)
        for name in body.get("personal", []):
            out.append((body["lineage_id"], name, base64.b64decode(body["values"][name]["$enc"])))
    return out


class TestSealing:
    def test_personal_values_never_reach_the_log_in_clear(self, lg: Ledger) -> None:
        """The stored events hold ciphertext for personal fields and clear text for the rest."""
        _patient(lg)
        raw = b"".join(r[4] for r in _raw(lg))
        assert SECRET.encode() not in raw and MAIL.encode() not in raw
        assert b'"ward":"south"' in raw
        assert len(_ciphertexts(lg)) == 4  # two versions x (name, email)

    def test_readable_before_erasure_in_every_read_path(self, lg: Ledger) -> None:
        """History, stored copies, as_of, addresses and a fresh ledger all decrypt."""
        p = _patient(lg)
        reg = lg.registry
        assert [v.name for v in reg.history(p.lineage_id)] == [SECRET, SECRET]
        assert reg.get_stored_entity(p.ecs_id, p.ecs_id).email == MAIL
        first = lg.index.lineage_positions[p.lineage_id][0]
        assert reg.as_of(p.lineage_id, position=first).name == SECRET
        assert lg.resolve(f"@{p.ecs_id}.name").value == SECRET
        assert not reg.get_latest(p.lineage_id).is_erased()

    def test_a_personal_field_that_holds_entities_is_refused(self, lg: Ledger) -> None:
        """Only plain fields can be personal: a child is protected by its own fields."""

        class BadHolder(Entity):
            child: Personal[Grade]

        with pytest.raises(errors.EntityDefinitionError, match="BadHolder.child"):
            lg.registry.register_entity(BadHolder(child=Grade(course="a", score=1.0)))
        assert lg.store.head() == 0


class TestErase:
    def test_erased_fields_read_as_tombstones_everywhere(self, lg: Ledger) -> None:
        """After erase every read path gives ERASED for personal fields, the rest intact."""
        p = _patient(lg)
        other = _patient(lg, name="Other Person")
        lg.erase(p.lineage_id, reason="art. 17 request")
        reg = lg.registry
        versions = reg.history(p.lineage_id)
        assert [(v.name, v.email, v.ward) for v in versions] == [
            (ERASED, ERASED, "north"),
            (ERASED, ERASED, "south"),
        ]
        assert all(v.is_erased() for v in versions)
        assert versions[1].notes[0].course == "bp"  # children (own lineages) untouched
        assert reg.get_stored_entity(p.ecs_id, p.ecs_id).name is ERASED
        first = lg.index.lineage_positions[p.lineage_id][0]
        assert reg.as_of(p.lineage_id, position=first).email is ERASED
        assert lg.resolve(f"@{p.ecs_id}.name").value is ERASED
        assert lg.resolve(f"@{p.ecs_id}").value.name is ERASED
        assert lg.resolve(f"@{p.ecs_id}.ward").value == "south"
        assert reg.get_latest(other.lineage_id).name == "Other Person"
        assert lg.verify().ok

    def test_the_erasure_event_is_chained_in_the_lineage_stream(self, lg: Ledger) -> None:
        """One entity.erased event at the lineage's next stream version, sealed like the rest."""
        p = _patient(lg)
        head = lg.store.head()
        result = lg.erase(p.lineage_id, reason="art. 17 request")
        events = lg.store.read_stream(p.lineage_id)
        last = events[-1]
        assert (last.topic, last.originator_version, len(events)) == (ENTITY_ERASED, 3, 3)
        assert check_seal(last.topic, last.originator_id, last.originator_version, last.state).intact
        event = EntityErased.model_validate_json(last.state)
        assert event.lineage_id == p.lineage_id and event.reason == "art. 17 request"
        assert event.prev_hash == orjson.loads(events[-2].state)["hash"]
        assert event.batch_size == 1 and event.versions == 2
        assert result.position == head + 1 == lg.store.head()
        assert result.key_destroyed and not result.already_erased

    def test_no_key_left_in_the_store_opens_the_ciphertext(self, lg: Ledger) -> None:
        """The raw stored bytes no longer yield the value with any key the store still has."""
        p = _patient(lg)
        keep = _patient(lg, name="Kept Person")
        key = lg.store.keys.all_keys()[p.lineage_id]
        sealed = [c for c in _ciphertexts(lg) if c[0] == str(p.lineage_id)]
        aad = lambda c: f"{c[0]}:{c[1]}".encode()  # noqa: E731
        AESGCM(key).decrypt(sealed[0][2][:12], sealed[0][2][12:], aad(sealed[0]))  # opens before
        lg.erase(p.lineage_id, reason="request")
        remaining = lg.store.keys.all_keys()
        assert p.lineage_id not in remaining and keep.lineage_id in remaining
        for c in sealed:
            for k in remaining.values():
                with pytest.raises(InvalidTag):
                    AESGCM(k).decrypt(c[2][:12], c[2][12:], aad(c))
        fresh = Ledger(lg.url) if lg.store.kind != "memory" else lg
        assert fresh.store.keys.all_keys().keys() == remaining.keys()

    def test_executions_stay_intact(self, lg: Ledger) -> None:
        """Execution events and their outputs survive; verify is ok."""
        ledger.set_default_ledger(lg)
        try:
            p = _patient(lg)
            out = CallableRegistry.execute("erasure_name_length", patient=p)
            before = [r for r in _raw(lg) if r[3] != ENTITY_VERSION]
            lg.erase(p.lineage_id, reason="request")
            after = [r for r in _raw(lg) if r[3] != ENTITY_VERSION and r[3] != ENTITY_ERASED]
            assert after == before
            assert lg.registry.get_latest(out.lineage_id).result == len(SECRET)
            fe = lg.registry.get_latest(out.derived_from_execution_id)
            assert fe.function_name == "erasure_name_length"
            assert lg.verify().ok
        finally:
            ledger.set_default_ledger(None)

    def test_unknown_lineage_and_bad_arguments_are_specific_errors(self, lg: Ledger) -> None:
        """Unknown or malformed ids and an empty reason are refused; nothing is written."""
        p = _patient(lg)
        before = _raw(lg)
        with pytest.raises(errors.EntityNotFoundError, match="lineage_id"):
            lg.erase(uuid4(), reason="x")
        with pytest.raises(errors.EntityNotFoundError, match="lineage_id"):
            lg.erase("not-a-uuid", reason="x")
        with pytest.raises(errors.InputValidationError, match="reason"):
            lg.erase(p.lineage_id, reason="  ")
        assert _raw(lg) == before

    def test_erasing_twice_writes_nothing_more(self, lg: Ledger) -> None:
        """A second erase is a no-op that reports the first erasure."""
        p = _patient(lg)
        first = lg.erase(p.lineage_id, reason="once")
        before = _raw(lg)
        again = lg.erase(str(p.lineage_id), reason="twice")
        assert again.already_erased and again.key_destroyed  # still true: no copy of the key is left
        assert again.position == first.position
        assert _raw(lg) == before

    def test_an_erased_lineage_refuses_new_versions(self, lg: Ledger) -> None:
        """Neither a stored copy nor the caller's old live object can write the lineage again."""
        p = _patient(lg)
        lg.erase(p.lineage_id, reason="request")
        before = _raw(lg)
        with pytest.raises(errors.ErasedError, match="erased"):
            lg.registry.version_entity(p)  # still holds the clear text
        copy = lg.registry.get_latest(p.lineage_id)
        assert lg.registry.version_entity(copy) is False  # unchanged: nothing to write
        copy.ward = "east"
        with pytest.raises(errors.ErasedError):
            lg.registry.version_entity(copy)
        stranger = Patient(name="x")
        stranger.name = copy.name  # the tombstone cannot be smuggled into another lineage
        with pytest.raises(errors.ErasedError, match="ERASED"):
            lg.registry.register_entity(stranger)
        assert _raw(lg) == before

    def test_erased_data_is_not_a_function_input(self, lg: Ledger) -> None:
        """Executing on an erased lineage or its erased field is refused before anything is written."""
        ledger.set_default_ledger(lg)
        try:
            p = _patient(lg)
            lg.erase(p.lineage_id, reason="request")
            before = _raw(lg)
            copy = lg.registry.get_latest(p.lineage_id)
            with pytest.raises(errors.ErasedError, match="argument 'patient'"):
                CallableRegistry.execute("erasure_visit", patient=copy)
            with pytest.raises(errors.ErasedError, match="argument 'patient'"):
                CallableRegistry.execute("erasure_visit", patient=f"@{copy.ecs_id}")
            assert _raw(lg) == before
            assert ledger.get(f"@{copy.ecs_id}.name") is ERASED
        finally:
            ledger.set_default_ledger(None)

    def test_an_erased_child_reads_as_tombstone_inside_its_parents_tree(self, lg: Ledger) -> None:
        """Erasing a child lineage leaves the parent tree readable with the child's fields erased."""
        c = Clinic(title="East", patients=[Patient(name=SECRET), Patient(name="Bob")])
        lg.registry.register_entity(c)
        lg.erase(c.patients[0].lineage_id, reason="request")
        tree = lg.registry.get_latest(c.lineage_id)
        assert tree.title == "East"
        assert [x.name for x in tree.patients] == [ERASED, "Bob"]
        tree.title = "West"  # the parent can still change: the erased child is not rewritten
        assert lg.registry.version_entity(tree)
        assert lg.registry.get_latest(c.lineage_id).title == "West"
        assert lg.verify().ok


class TestHistoryAfterErasure:
    def test_history_names_the_personal_fields_that_changed(self, lg: Ledger) -> None:
        """A version whose only change was a personal field still says which field changed,
        its values gone; the version after it keeps its plain change."""
        from projections import audit

        p = Patient(name=SECRET, email=MAIL)
        lg.registry.register_entity(p)
        p.name = "Another Name"
        lg.registry.version_entity(p)
        p.ward, p.email = "east", "other@example.invalid"
        lg.registry.version_entity(p)
        lg.erase(p.lineage_id, reason="request 7")
        rows = audit.history(lg, p.lineage_id)
        assert [r.changes for r in rows] == [None, {"name": (ERASED, ERASED)}, {"ward": ("general", "east"), "email": (ERASED, ERASED)}]

    def test_an_erased_version_says_so_in_show(self, lg: Ledger) -> None:
        """``audit.show`` of a version of an erased lineage carries the erasure (position, reason)."""
        from projections import audit

        p = _patient(lg)
        done = lg.erase(p.lineage_id, reason="request 8")
        shown = audit.show(lg, f"@{p.ecs_id}")
        assert shown.erased is not None and (shown.erased.position, shown.erased.reason) == (done.position, "request 8")
        assert audit.show(lg, f"@{p.notes[0].ecs_id}").erased is None  # the child's own lineage was not erased


class TestAcrossLedgers:
    def test_replay_gives_the_same_erased_state(self, durable_url: str) -> None:
        """A new Ledger on the same store replays to the same erased state and snapshot."""
        with Ledger(durable_url) as a:
            p = _patient(a)
            a.erase(p.lineage_id, reason="request")
            snap = a.index.snapshot()
            expected = [(v.name, v.email, v.ward) for v in a.registry.history(p.lineage_id)]
        with Ledger(durable_url) as b:
            assert b.index.snapshot() == snap
            assert [(v.name, v.email, v.ward) for v in b.registry.history(p.lineage_id)] == expected
            assert b.index.erased == {p.lineage_id: snap["erased"][str(p.lineage_id)]}
            assert b.verify().ok

    def test_a_second_ledger_that_cached_the_key_sees_the_erasure_on_refresh(self, durable_url: str) -> None:
        """Keys are shared through the store; applying entity.erased drops the cached key."""
        with Ledger(durable_url) as a, Ledger(durable_url) as b:
            p = _patient(a)
            b.refresh()
            assert b.registry.get_latest(p.lineage_id).name == SECRET  # fetched on miss, cached
            late = Ledger(durable_url)  # replayed, but never read the key
            a.erase(p.lineage_id, reason="request")
            assert late.registry.get_latest(p.lineage_id).name is ERASED  # key fetch misses
            late.close()
            b.refresh()
            assert b.registry.get_latest(p.lineage_id).name is ERASED
            assert [v.email for v in b.registry.history(p.lineage_id)] == [ERASED, ERASED]
            assert b.erase(p.lineage_id, reason="again").already_erased
            with pytest.raises(errors.ErasedError):
                b.registry.version_entity(p)

    def test_a_writer_that_missed_the_erasure_cannot_revive_the_lineage(self, durable_url: str) -> None:
        """A stale ledger's new version fails (no key, stream moved on); no new key appears."""
        with Ledger(durable_url) as a, Ledger(durable_url) as b:
            p = _patient(a)
            b.refresh()
            copy = b.registry.get_latest(p.lineage_id)
            b.store.keys.forget(p.lineage_id)
            a.erase(p.lineage_id, reason="request")
            copy.ward = "east"
            before = _raw(a)
            with pytest.raises(errors.ErasedError):
                b.registry.version_entity(copy)
            assert _raw(a) == before
            assert p.lineage_id not in a.store.keys.all_keys()


class TestKeyDestruction:
    def test_sqlite_file_no_longer_contains_the_key(self, tmp_path: Path) -> None:
        """The key's bytes are gone from the database file and its WAL, not just unlinked."""
        path = tmp_path / "k.db"
        with Ledger(f"sqlite:///{path}") as led:
            p = _patient(led)
            key = led.store.keys.all_keys()[p.lineage_id]
            on_disk = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.is_file())
            assert key in on_disk
            led.erase(p.lineage_id, reason="request")
            on_disk = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.is_file())
            assert key not in on_disk

    def test_postgres_row_is_deleted(self, pg_url: str) -> None:
        """The key row is deleted from ledger_keys (and the table vacuumed)."""
        import psycopg

        schema = pg_url.rpartition("schema=")[2]
        with Ledger(pg_url) as led:
            p = _patient(led)
            led.erase(p.lineage_id, reason="request")
            with psycopg.connect(pg_url.split("?")[0]) as conn:
                rows = conn.execute(
                    f'SELECT count(*) FROM "{schema}".ledger_keys WHERE lineage_id = %s', (p.lineage_id,)
                ).fetchone()
            assert rows == (0,)


class TestCli:
    def test_history_of_an_erased_lineage_shows_no_personal_data(self, tmp_path: Path, monkeypatch) -> None:
        """``ledger history`` and ``ledger show`` work after erasure and print no personal value."""
        from rich.console import Console

        from ledger.cli import commands as cli
        from ledger.cli import app

        monkeypatch.setattr(cli, "console", Console(width=250))
        url = f"sqlite:///{tmp_path / 'c.db'}"
        with Ledger(url) as led:
            p = _patient(led)
            done = led.erase(p.lineage_id, reason="request")
        out = CliRunner().invoke(app, ["history", str(p.lineage_id), "--db", url])
        assert out.exit_code == 0, out.output
        assert "created" in out.output and SECRET not in out.output
        shown = CliRunner().invoke(app, ["show", f"@{p.ecs_id}", "--db", url])
        assert shown.exit_code == 0, shown.output
        assert SECRET not in shown.output and "erased" in shown.output
        assert "<erased>" not in shown.output
        assert "personal data erased at position" in shown.output and "request" in shown.output
        assert "name, email" in shown.output
        as_json = orjson.loads(CliRunner().invoke(app, ["show", f"@{p.ecs_id}", "--db", url, "--format", "json"]).output)
        assert as_json["erased"]["reason"] == "request" and as_json["erased"]["position"] == done.position
        history = CliRunner().invoke(app, ["history", str(p.lineage_id), "--db", url]).output
        assert "tree membership" not in history
        entries = orjson.loads(CliRunner().invoke(app, ["history", str(p.lineage_id), "--db", url, "--format", "json"]).output)
        assert [c for e in entries["versions"] for c in (e["changes"] or ())] == [{"path": "ward", "old": "north", "new": "south"}]



class TestAnEraseKilledBeforeTheKeyWent:
    """``erase`` appends its event, then deletes the key: a kill between the two must not keep the key."""

    def test_the_next_writable_open_destroys_the_key(self, durable_url: str, caplog: pytest.LogCaptureFixture) -> None:
        """The state a kill leaves (event appended, key row still there) is found by verify and finished on open."""
        from tests.tamper import behind

        with Ledger(durable_url) as led:
            p = Patient(name="Ann")
            led.registry.register_entity(p)
            (row,) = behind(durable_url, "SELECT lineage_id, key FROM ledger_keys")
            position = led.erase(p.lineage_id, reason="request").position
        behind(durable_url, "INSERT INTO ledger_keys (lineage_id, key) VALUES (?, ?)", row)  # as if killed before the delete
        with Ledger(durable_url, create=False) as led:  # a reader writes nothing, and says what is wrong
            report = led.verify()
            assert not report.ok and report.first_bad_position == position
            assert f"lineage {p.lineage_id} was erased but its data key is still in 'ledger_keys'" in report.problems[0]
        assert len(behind(durable_url, "SELECT key FROM ledger_keys")) == 1
        with caplog.at_level("WARNING", logger="ledger"):
            with Ledger(durable_url) as led:
                assert led.verify().ok
        assert behind(durable_url, "SELECT key FROM ledger_keys") == []
        assert any(f"lineage {p.lineage_id} was erased at position {position}" in r.getMessage() for r in caplog.records)

"""ledger/store/key_audit.py: keys are committed to by the first personal version, and ``verify()`` /
``ledger verify`` report a key row deleted, swapped, malformed or outliving its erasure.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from ledger import Ledger, errors
from ledger.events import ENTITY_VERSION

from .clinic import OTHER, _patient, _payloads, _schema
from .conftest import PG_BASE
from .models import Grade


# ============================================================ 3. key commitments
def _delete_key_row(led: Ledger, lineage: UUID) -> None:
    _set_key_row(led, lineage, None)


def _set_key_row(led: Ledger, lineage: UUID, value: Any) -> None:
    """Tamper with ledger_keys behind the library's back (None deletes the row)."""
    kind = led.store.kind
    if kind == "memory":
        table = led.store.keys._table._keys  # type: ignore[attr-defined]
        if value is None:
            table.pop(lineage, None)
        else:
            table[lineage] = value
    elif kind == "sqlite":
        conn = sqlite3.connect(led.store.spec.path, isolation_level=None)
        if value is None:
            conn.execute("DELETE FROM ledger_keys WHERE lineage_id = ?", (str(lineage),))
        else:
            conn.execute("UPDATE ledger_keys SET key = ? WHERE lineage_id = ?", (value, str(lineage)))
        conn.close()
    else:
        import psycopg

        with psycopg.connect(PG_BASE.split("?")[0], autocommit=True) as conn:
            table = f'"{_schema(led.url)}".ledger_keys'
            if value is None:
                conn.execute(f"DELETE FROM {table} WHERE lineage_id = %s", (lineage,))
            else:
                conn.execute(f"UPDATE {table} SET key = %s WHERE lineage_id = %s", (value, lineage))
    led.store.keys.forget(lineage)


def _drop_decoded(led: Ledger, lineage: UUID) -> None:
    """Forget the values this ledger decoded when it wrote them, as a fresh process would have none."""
    for rec in led.index.lineages[lineage]:
        rec.forget_values()


def _first_position(led: Ledger, lineage: UUID) -> int:
    return led.index.lineage_positions[lineage][0]


class TestKeyCommitments:
    def test_the_first_personal_version_commits_to_its_key(self, lg: Ledger) -> None:
        """Only a lineage's first personal event carries key_check, the HMAC of its key."""
        from ledger.store.keys import key_check

        p = _patient(lg)
        p.ward = "south"
        lg.registry.version_entity(p)
        bodies = [b for b in _payloads(lg, ENTITY_VERSION) if b["lineage_id"] == str(p.lineage_id)]
        key = lg.store.keys.all_keys()[p.lineage_id]
        assert [b.get("key_check") for b in bodies] == [key_check(key, p.lineage_id), None]
        g = Grade(course="x", score=1.0)
        lg.registry.register_entity(g)
        assert "key_check" not in _payloads(lg, ENTITY_VERSION)[-1]
        assert lg.verify().ok

    def test_a_deleted_key_row_is_reported(self, lg: Ledger) -> None:
        """A key row gone without an entity.erased event is a problem at the commitment's position."""
        p = _patient(lg)
        kept = _patient(lg, name=OTHER)
        _delete_key_row(lg, p.lineage_id)
        report = lg.verify()
        assert not report.ok
        assert report.first_bad_position == _first_position(lg, p.lineage_id)
        assert any(str(p.lineage_id) in x and "missing" in x for x in report.problems)
        assert not any(str(kept.lineage_id) in x for x in report.problems)

    def test_swapped_key_rows_are_reported(self, lg: Ledger) -> None:
        """Two lineages holding each other's keys are both reported, naming the owner of the key."""
        a, b = _patient(lg), _patient(lg, name=OTHER)
        keys = lg.store.keys.all_keys()
        _set_key_row(lg, a.lineage_id, keys[b.lineage_id])
        _set_key_row(lg, b.lineage_id, keys[a.lineage_id])
        report = lg.verify()
        assert not report.ok and len(report.problems) == 2
        assert any(str(a.lineage_id) in x and f"lineage {b.lineage_id}'s key" in x for x in report.problems)

    def test_a_malformed_key_is_reported_and_reads_as_an_integrity_error(self, lg: Ledger) -> None:
        """A key of the wrong length is a verify problem; reading raises KeyIntegrityError, not ERASED."""
        p = _patient(lg)
        _set_key_row(lg, p.lineage_id, b"too short")
        report = lg.verify()
        assert not report.ok and "malformed" in report.problems[0]
        _drop_decoded(lg, p.lineage_id)
        with pytest.raises(errors.KeyIntegrityError, match=str(p.lineage_id)):
            lg.registry.get_latest(p.lineage_id)

    def test_a_text_value_in_the_key_column_is_reported(self, tmp_path: Path) -> None:
        """SQLite stores any type: a TEXT key is malformed, reported, and reads as an integrity error."""
        with Ledger(f"sqlite:///{tmp_path / 'k.db'}") as led:
            p = _patient(led)
            _set_key_row(led, p.lineage_id, "not a key at all")
            report = led.verify()
            assert not report.ok and "malformed" in report.problems[0]
        with Ledger(f"sqlite:///{tmp_path / 'k.db'}") as fresh, pytest.raises(errors.KeyIntegrityError):
            fresh.registry.get_latest(p.lineage_id)

    def test_an_erased_lineage_is_no_problem(self, lg: Ledger) -> None:
        """A missing key with an entity.erased event is a legitimate erasure."""
        p = _patient(lg)
        lg.erase(p.lineage_id, reason="request")
        assert lg.verify().ok

    def test_a_key_that_outlived_its_erasure_is_reported(self, lg: Ledger) -> None:
        """An erased lineage whose key row is back (restored from a backup) is a problem."""
        p = _patient(lg)
        key = lg.store.keys.all_keys()[p.lineage_id]
        lg.erase(p.lineage_id, reason="request")
        if lg.store.kind == "memory":
            lg.store.keys._table._keys[p.lineage_id] = key  # type: ignore[attr-defined]
        else:
            lg.store.keys._table.insert_if_absent(p.lineage_id, key)  # type: ignore[attr-defined]
        report = lg.verify()
        assert not report.ok and "still in" in report.problems[0]

    def test_old_ledgers_without_commitments_are_not_checked(self, lg: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
        """Events written before key_check existed: a missing key is not reported (nothing to check against)."""
        from ledger.write import planning

        monkeypatch.setattr(planning, "key_check", lambda key, lineage: None)
        p = _patient(lg)
        assert "key_check" not in _payloads(lg, ENTITY_VERSION)[-1]
        _delete_key_row(lg, p.lineage_id)
        assert lg.verify().ok

    def test_the_cli_verify_reports_a_deleted_key_in_one_line_each(self, tmp_path: Path) -> None:
        """`ledger verify` exits 1 and names the lineage whose key row is missing."""
        from ledger.cli import app

        url = f"sqlite:///{tmp_path / 'k.db'}"
        with Ledger(url) as led:
            p = _patient(led)
            _delete_key_row(led, p.lineage_id)
        out = CliRunner().invoke(app, ["verify", "--db", url])
        assert out.exit_code == 1 and str(p.lineage_id) in out.output
        assert "Traceback" not in out.output

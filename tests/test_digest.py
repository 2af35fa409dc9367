"""Digest: a removed tail is found against a digest saved earlier, on every backend."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ledger import Digest, Ledger
from ledger.errors import DigestError
from ledger.cli import app as cli_app

from .models import student
from .tamper import _rows


def delete_tail(led: Ledger, n: int) -> None:
    """Remove the newest ``n`` records with raw access, as an attacker would."""
    head = led.store.head()
    if led.store.kind == "memory":
        del led.store.recorder._stored_events[-n:]
        return
    conn, table, pos = _rows(led.url)
    conn.execute(f"DELETE FROM {table} WHERE {pos} > {head - n}")
    conn.commit() if led.store.kind == "sqlite" else None
    conn.close()


def filled(led: Ledger, n: int = 3) -> None:
    for i in range(n):
        s = student(name=f"s{i}", n=1)
        led.registry.register_entity(s)
        s.gpa = float(i)
        led.registry.version_entity(s)


class TestDigest:
    def test_untouched_log_verifies_against_its_digest(self, led) -> None:
        """A digest taken now matches the log; every check passes."""
        filled(led)
        d = led.digest()
        assert d.position == led.store.head() > 0
        report = led.verify(d)
        assert report.ok, report.problems

    def test_truncated_tail_fails_naming_the_first_missing_position(self, led) -> None:
        """Deleting the newest records keeps every stream chain intact but breaks the digest.

        (Where they were entity versions, the version index written with them names them too:
        ``verify()`` alone then fails as well; the digest is what names the truncation.)"""
        filled(led)
        d = led.digest()
        delete_tail(led, 2)
        report = led.verify(d)
        assert not report.ok
        missing = d.position - 1
        assert report.first_bad_position == missing
        assert any(f"position {missing}" in p and "truncated" in p for p in report.problems), report.problems

    def test_appending_after_the_digest_still_verifies(self, led) -> None:
        """A digest is a prefix check: later appends do not invalidate it."""
        filled(led, 2)
        d = led.digest()
        filled(led, 2)
        assert led.store.head() > d.position
        assert led.verify(d).ok

    def test_truncate_then_append_is_still_found(self, durable_url) -> None:
        """Refilling the removed positions with other records changes the chained hash."""
        led = Ledger(durable_url)
        filled(led, 2)
        d = led.digest()
        delete_tail(led, 2)
        led.close()
        led = Ledger(durable_url)
        filled(led, 2)
        report = led.verify(d)
        assert not report.ok
        assert any(f"position {d.position}" in p or "no longer holds" in p for p in report.problems)
        led.close()

    def test_digest_round_trips_through_json(self, mem) -> None:
        filled(mem, 1)
        d = mem.digest()
        assert Digest.from_json(d.to_json()) == d
        assert json.loads(d.to_json())["position"] == d.position

    @pytest.mark.parametrize(
        "text", ["not json", "[]", '{"position": -1, "head_hash": "", "chain": ""}', '{"position": 1}',
                 '{"position": 1, "head_hash": "ab", "chain": ""}']
    )
    def test_bad_digest_text_is_a_digest_error(self, text) -> None:
        with pytest.raises(DigestError, match="text"):
            Digest.from_json(text)

    def test_verify_refuses_a_non_digest(self, mem) -> None:
        with pytest.raises(DigestError, match="digest"):
            mem.verify({"position": 1})  # type: ignore[arg-type]


class TestDigestCommand:
    def app(self) -> typer.Typer:
        return cli_app

    def test_prints_the_digest_json(self, tmp_path) -> None:
        url = f"sqlite:///{tmp_path / 'a.db'}"
        with Ledger(url) as led:
            filled(led, 1)
            expected = led.digest()
        result = CliRunner().invoke(self.app(), ["digest", "--db", url])
        assert result.exit_code == 0, result.output
        assert Digest.from_json(result.output.strip()) == expected

    def test_writes_the_digest_to_a_file(self, tmp_path) -> None:
        url = f"sqlite:///{tmp_path / 'a.db'}"
        with Ledger(url) as led:
            filled(led, 1)
        out = tmp_path / "head.json"
        result = CliRunner().invoke(self.app(), ["digest", "--db", url, "--out", str(out)])
        assert result.exit_code == 0, result.output
        d = Digest.from_json(out.read_text())
        assert f"position {d.position}" in result.output
        with Ledger(url) as led:
            assert led.verify(d).ok
        ok = CliRunner().invoke(self.app(), ["verify", "--db", url, "--digest", str(out)])
        assert ok.exit_code == 0 and f"against the digest of position {d.position}" in ok.output
        with Ledger(url) as led:
            delete_tail(led, 1)
        bad = CliRunner().invoke(self.app(), ["verify", "--db", url, "--digest", str(out)])
        assert bad.exit_code == 1 and f"position {d.position}" in bad.output

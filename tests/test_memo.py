"""The memo index is derived state: a hit is held to the reused execution's own sealed record."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import ledger
from ledger import CallableRegistry, Ledger

from .models import Student
from .tamper import behind


def memo_double(s: Student) -> float:
    return s.gpa * 2


def memo_triple(s: Student) -> float:
    return s.gpa * 3


@pytest.fixture
def functions() -> Iterator[None]:
    CallableRegistry.register("memo_double", cache=True)(memo_double)
    CallableRegistry.register("memo_triple", cache=True)(memo_triple)
    yield
    CallableRegistry.unregister("memo_double")
    CallableRegistry.unregister("memo_triple")


def poisoned(url: str) -> tuple[Ledger, Student]:
    """A ledger whose memo row for ``memo_double(s)`` names the execution of ``memo_triple(s)``."""
    led = ledger.connect(url)
    s = Student(name="Ann", gpa=7.0)
    led.registry.register_entity(s)
    assert CallableRegistry.execute("memo_double", s=s).result == 14.0
    assert CallableRegistry.execute("memo_triple", s=s).result == 21.0
    rows = behind(url, "SELECT cache_key, execution_id, position FROM ledger_memo_index ORDER BY position")
    (double_key, _, _), (_, triple_id, triple_position) = rows
    behind(url, "UPDATE ledger_memo_index SET execution_id = ?, position = ? WHERE cache_key = ?", (triple_id, triple_position, double_key))
    led.close()
    return ledger.connect(url), s


@pytest.mark.usefixtures("functions")
class TestMemoPoisoning:
    def test_a_memo_row_naming_another_execution_is_a_miss_with_a_warning(
        self, durable_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The hit's record must carry the call's memo key: another execution's outputs are never served."""
        led, s = poisoned(durable_url)
        with caplog.at_level(logging.WARNING, logger="ledger"):
            again = CallableRegistry.execute("memo_double", s=s)
        assert again.result == 14.0
        hits = led.sql("select cache_hit from executions where function_name = 'memo_double' order by position").fetchall()
        assert hits == [(False,), (False,)]  # ran again, not a cache hit
        lines = [r.getMessage() for r in caplog.records if "memo" in r.getMessage()]
        assert len(lines) == 1 and "does not carry this call's memo key" in lines[0]
        led.close()

    def test_verify_names_the_memo_row_a_rebuild_would_not_give(self, durable_url: str) -> None:
        """verify rebuilds the memo index from the log and names the poisoned row."""
        led, _ = poisoned(durable_url)
        report = led.verify()
        assert not report.ok
        assert any("memo index" in p and "memo_double" not in p for p in report.problems), report.problems
        assert report.first_bad_position is not None
        led.close()

"""``ledger.cli.render``: how stored things are named in tables and titles."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

import ledger
from ledger import CallableRegistry, Ledger
from ledger.cli import app, render
from projections import audit

HASHED = re.compile(r"\b[0-9a-f]{16}\b")  # an output topic's shape hash


@CallableRegistry.register("render_mean")
def render_mean(scores: list[float]) -> float:
    return sum(scores) / len(scores)


@CallableRegistry.register("render_pair")
def render_pair(x: float) -> tuple[float, float]:
    return x, x * 2


def test_wrapped_outputs_are_named_after_their_field() -> None:
    assert render.short_type("ledger.outputs:result:c9f4174100d81ea1") == "output(result)"
    assert render.short_type("ledger.outputs:wrapped:c9f4174100d81ea1") == "output(wrapped_value)"
    assert render.short_type("ledger.outputs:fields:c9f4174100d81ea1") == "output(field_*)"
    assert render.short_type("ledger.outputs:anytuple:3") == "output(field_*)"
    assert render.short_type("ledger.cli.demo_pipeline:Student") == "Student"


def test_log_show_and_history_name_a_wrapped_output_by_its_field(tmp_path: Path) -> None:
    """No type hash in ``log``, ``show`` or the ``history`` title (SQLite, through the CLI)."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    led = ledger.connect(url)
    try:
        mean = CallableRegistry.execute("render_mean", scores=[1.0, 2.0])
        CallableRegistry.execute("render_pair", x=1.0)
    finally:
        led.close()
        ledger.set_default_ledger(None)
    runner = CliRunner()
    log = runner.invoke(app, ["log", "--db", url])
    assert log.exit_code == 0, log.output
    assert "output(result)" in log.output and "output(field_*)" in log.output
    shown = runner.invoke(app, ["show", f"@{mean.ecs_id}", "--db", url])
    history = runner.invoke(app, ["history", str(mean.lineage_id), "--db", url])
    assert shown.output.startswith("output(result) ecs_id")
    assert history.exit_code == 0, history.output
    with Ledger(url, create=False) as reader:  # the title (printed in a terminal only)
        assert render.history_table(audit.history(reader, mean.lineage_id)).title == f"history of output(result) lineage {mean.lineage_id}"
    for out in (log.output, shown.output.splitlines()[0], history.output):  # show's body is the stored data, topic included
        assert not HASHED.search(out), out

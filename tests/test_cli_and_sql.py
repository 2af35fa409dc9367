"""The ``ledger`` command (driven through typer's runner) and read-only SQL."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ledger import EntityRegistry, Ledger
from projections.analytics import ReadOnlySQLError
from tools.cli import app

from .models import student

runner = CliRunner()


class TestSQL:
    def test_entity_versions_are_queryable_and_follow_new_events(self, mem) -> None:
        s = student(n=2)
        s.promote_to_root()
        rows = mem.sql("select count(*) from entity_versions").fetchall()
        assert rows == [(3,)]
        s.gpa = 1.0
        EntityRegistry.version_entity(s)
        got = mem.sql(
            "select position, data->>'gpa' from entity_versions where lineage_id = ? order by position".replace("?", f"'{s.lineage_id}'")
        ).fetchall()
        assert [g[1] for g in got] == ["0.0", "1.0"]
        assert mem.sql("select count(*) from events").fetchall() == [(4,)]

    @pytest.mark.parametrize("query", ["delete from events", "create table x (a int)", "select 1; select 2"])
    def test_writes_are_refused(self, mem, query) -> None:
        with pytest.raises(ReadOnlySQLError, match="query"):
            mem.sql(query)


class TestCLI:
    def test_every_command_has_help_with_an_example(self) -> None:
        for name in ("demo", "history", "verify"):
            out = runner.invoke(app, [name, "--help"])
            assert out.exit_code == 0 and "Example:" in out.output, name

    def test_demo_shows_history_lineage_and_sql(self, tmp_path) -> None:
        out = runner.invoke(app, ["demo", "--db", f"sqlite:///{tmp_path / 'd.db'}"])
        assert out.exit_code == 0, out.output
        assert "history of lineage" in out.output and "graph LR" in out.output
        assert "verify: ok" in out.output and "versions per entity type" in out.output

    def test_history_and_verify_on_a_file(self, tmp_path) -> None:
        url = f"sqlite:///{tmp_path / 'h.db'}"
        led = Ledger(url)
        s = student()
        led.registry.register_entity(s)
        s.name = "Alicia"
        led.registry.version_entity(s)
        led.close()
        out = runner.invoke(app, ["history", str(s.lineage_id), "--db", url])
        assert out.exit_code == 0 and "'Alice' ->" in out.output and "'Alicia'" in out.output
        out = runner.invoke(app, ["verify", "--db", url])
        assert out.exit_code == 0 and "ok: 4 events verified" in out.output

    @pytest.mark.parametrize(
        "args, fragment",
        [
            (["verify", "--db", "bogus://x"], "unknown scheme"),
            (["history", "not-a-uuid", "--db", "memory://"], "lineage_id"),
        ],
    )
    def test_bad_input_is_one_line_not_a_traceback(self, args, fragment) -> None:
        out = runner.invoke(app, args)
        assert out.exit_code == 1
        assert fragment in out.output and "Traceback" not in out.output
        assert len(out.output.strip().splitlines()) == 1

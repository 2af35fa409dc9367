"""Read-only SQL over the analytics tables (the ``ledger`` command is tested in test_cli.py)."""

from __future__ import annotations

import pytest

from ledger import EntityRegistry, Ledger
from projections.analytics import ReadOnlySQLError

from .models import student


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

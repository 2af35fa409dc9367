"""The read side: analytics tables, catch-up and rebuild, the lineage graph and its time travel."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger
from ledger import CallableRegistry, EntityRegistry, Ledger
from ledger.errors import MalformedAddressError, UnknownEntityError
from projections.analytics import Analytics, ReadOnlySQLError
from projections.lineage import LineageQueryError

from tools.workload import WGrade, WPolicy, WStudent, Workload

API_COLUMNS = {
    "events": "position stream_id stream_version event_type recorded_at payload",
    "entity_versions": "ecs_id lineage_id root_ecs_id previous_ecs_id entity_type position recorded_at data",
    "executions": "execution_id function_name position recorded_at duration_ms succeeded error_type error_message isolation",
    "execution_inputs": "execution_id param_name ecs_id address",
    "execution_outputs": "execution_id output_index ecs_id lineage_id semantic",
    "lineage_edges": "source_ecs_id target_ecs_id kind execution_id",
    "siblings": "execution_id ecs_id output_index",
}


def table_rows(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple]:
    return con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()


def all_tables(analytics: Analytics) -> dict[str, list[tuple]]:
    return {name: table_rows(analytics.con, name) for name in analytics.tables()}


def student(name: str = "Ada") -> WStudent:
    return WStudent(name=name, grades=[WGrade(course="math", score=3.0), WGrade(course="art", score=2.0)])


class TestTables:
    def test_api_columns_exist_on_every_backend(self, led: Ledger) -> None:
        Workload(led, 3).run(40)
        for table, columns in API_COLUMNS.items():
            have = {c[0] for c in led.sql(f"DESCRIBE {table}").fetchall()}
            assert set(columns.split()) <= have, table
        events = led.sql("select count(*), max(position) from events").fetchall()[0]
        assert events == (led.store.head(), led.store.head())
        # UUIDs in canonical text form whatever the backend stores.
        ids = led.sql("select stream_id from events").fetchall()
        assert all(len(i) == 36 and i.count("-") == 4 for (i,) in ids)

    def test_one_execution_in_every_table(self, mem: Ledger) -> None:
        ada = student()
        EntityRegistry.register_entity(ada)
        curved = CallableRegistry.execute("wl_curve", student=ada, policy=WPolicy(bonus=1.0))
        head_before_split = mem.store.head()
        kept, dropped = CallableRegistry.execute("wl_split", student=curved)
        mean = CallableRegistry.execute("wl_mean", scores=[f"@{kept.ecs_id}.grades.0.score", 1.0])

        runs = mem.sql("select function_name, succeeded, isolation from executions order by position").fetchall()
        assert runs == [("wl_curve", True, "inline"), ("wl_split", True, "inline"), ("wl_mean", True, "inline")]
        split_id = str(kept.derived_from_execution_id)
        outputs = mem.sql(
            "select output_index, ecs_id, lineage_id, semantic from execution_outputs where execution_id = ? order by 1",
            params=[split_id],
        ).fetchall()
        assert outputs == [
            (0, str(kept.ecs_id), str(kept.lineage_id), "mutation"),
            (1, str(dropped.ecs_id), str(dropped.lineage_id), "detachment"),
        ]
        assert mem.sql("select ecs_id, output_index from siblings where execution_id = ? order by 2", params=[split_id]).fetchall() == [
            (str(kept.ecs_id), 0), (str(dropped.ecs_id), 1)
        ]
        # A reference input names the entity the value was read from (the grade) and the address.
        mean_id = str(mean.derived_from_execution_id)
        inputs = mem.sql("select param_name, ecs_id, address from execution_inputs where execution_id = ?", params=[mean_id]).fetchall()
        assert inputs == [("scores", str(kept.grades[0].ecs_id), f"@{kept.ecs_id}.grades.0.score")]
        prov = mem.sql(
            "select address_ecs_id, path, source_ecs_id, output_ecs_id from field_provenance where execution_id = ?",
            params=[mean_id],
        ).fetchall()
        assert prov == [(str(kept.ecs_id), "grades.0.score", str(kept.grades[0].ecs_id), str(mean.ecs_id))]
        # The config entity is an input of the curve, and an edge to its output.
        curve_id = mem.sql("select execution_id from executions where function_name = 'wl_curve'").fetchall()[0][0]
        (config_id,) = mem.sql("select ecs_id from execution_configs where execution_id = ?", params=[curve_id]).fetchall()[0]
        edges = set(mem.sql("select source_ecs_id, target_ecs_id, kind from lineage_edges where execution_id = ?", params=[curve_id]).fetchall())
        assert edges == {(str(ada.ecs_id), str(curved.ecs_id), "execution"), (config_id, str(curved.ecs_id), "execution")}
        assert (str(ada.ecs_id), str(curved.ecs_id), "version") in set(
            mem.sql("select source_ecs_id, target_ecs_id, kind from lineage_edges").fetchall()
        )
        later = mem.sql("select count(*) from lineage_edges where position > ?", params=[head_before_split]).fetchall()[0][0]
        assert later > 0

    def test_failed_execution_row(self, mem: Ledger) -> None:
        ada = student()
        EntityRegistry.register_entity(ada)
        with pytest.raises(ValueError):
            CallableRegistry.execute("wl_reject", student=ada)
        row = mem.sql(
            "select function_name, succeeded, error_type, error_message from executions"
        ).fetchall()[0]
        assert row == ("wl_reject", False, "ValueError", "Ada cannot be processed")
        assert mem.sql("select count(*) from execution_outputs").fetchall()[0] == (0,)
        assert mem.sql("select param_name, ecs_id from execution_inputs").fetchall() == [("student", str(ada.ecs_id))]

    def test_detach_and_attach_edges(self, mem: Ledger) -> None:
        ada, bob = student("Ada"), student("Bob")
        EntityRegistry.register_entity(ada)
        EntityRegistry.register_entity(bob)
        ada_v1 = ada.ecs_id
        art = ada.grades[1]
        art_before = art.ecs_id
        art.detach()
        assert mem.sql("select source_ecs_id, target_ecs_id from lineage_edges where kind = 'detach'").fetchall() == [
            (str(ada_v1), str(art.ecs_id))
        ]
        art_root = art.ecs_id
        bob.grades.append(art)
        art.attach(bob)
        assert mem.sql("select source_ecs_id, target_ecs_id from lineage_edges where kind = 'attach'").fetchall() == [
            (str(art_root), str(bob.ecs_id))
        ]
        assert art_before != art_root

    def test_an_erased_lineage_is_a_tombstone(self, store_url: str) -> None:
        with Ledger(store_url) as led:
            work = Workload(led)
            work.step("patient")
            work.step("patient")
            gone, kept = work.patients
            led.sql("select 1")  # projected before the erasure: ciphertext, never the clear value
            rows = led.sql("select data from entity_versions where lineage_id = ?", params=[str(gone.lineage_id)]).fetchall()
            assert rows and all("patient 0" not in d and '"$enc"' in d for (d,) in rows)
            led.erase(gone.lineage_id, reason="GDPR request")
            erased = led.sql(
                "select erased, data->>'name', data->>'ward' from entity_versions where lineage_id = ? order by position",
                params=[str(gone.lineage_id)],
            ).fetchall()
            assert erased == [(True, "<erased>", "north"), (True, "<erased>", "south")]
            assert led.sql("select lineage_id, reason from erasures").fetchall() == [(str(gone.lineage_id), "GDPR request")]
            assert led.sql("select bool_or(erased) from entity_versions where lineage_id = ?", params=[str(kept.lineage_id)]).fetchall() == [(False,)]
            fresh = Analytics(led.store)
            fresh.catch_up()
            assert all_tables(fresh) == all_tables(led.analytics)
            fresh.close()
        ledger.set_default_ledger(None)

    def test_sql_refuses_writes_and_bad_sql(self, mem: Ledger) -> None:
        for query in ("delete from events", "create table x (a int)", "select 1; select 2", "insert into events values (1)"):
            with pytest.raises(ReadOnlySQLError, match="query"):
                mem.sql(query)
        with pytest.raises(duckdb.Error):
            mem.sql("select no_such_column from events")
        assert mem.sql("select 1").fetchall() == [(1,)]

    def test_parquet_export_one_file_per_table(self, mem: Ledger, tmp_path: Path) -> None:
        Workload(mem, 5).run(60)
        files = mem.analytics.export_parquet(tmp_path / "out")
        assert sorted(f.name for f in files) == sorted(f"{t}.parquet" for t in mem.analytics.tables())
        for f in files:
            table = f.stem
            exported = duckdb.sql(f"select count(*) from read_parquet('{f}')").fetchall()[0]
            assert exported == mem.sql(f"select count(*) from {table}").fetchall()[0], table


class TestCatchUp:
    def test_incremental_catch_up_applies_only_new_events(self, mem: Ledger) -> None:
        Workload(mem, 1).run(50)
        analytics = mem.analytics
        first = analytics.catch_up()
        assert first == mem.store.head() and analytics.position == mem.store.head()
        before = mem.store.head()
        Workload(mem, 2).run(5)
        assert analytics.catch_up() == mem.store.head() - before
        assert analytics.catch_up() == 0

    def test_resume_after_restart_from_a_file(self, durable_url: str, tmp_path: Path) -> None:
        duck = str(tmp_path / "analytics.duckdb")
        with Ledger(durable_url, analytics_path=duck) as led:
            Workload(led, 4).run(40)
            led.analytics.catch_up()
            seen = led.analytics.position
            Workload(led, 5).run(20)  # written, not yet projected
        with Ledger(durable_url, analytics_path=duck) as led:
            assert led.analytics.position == seen
            assert led.analytics.catch_up() == led.store.head() - seen
            resumed = all_tables(led.analytics)
        with Ledger(durable_url) as led:  # an in-memory projection built from scratch
            led.analytics.catch_up()
            assert all_tables(led.analytics) == resumed
        ledger.set_default_ledger(None)

    def test_a_projection_of_another_log_is_rebuilt(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A DuckDB file built from another log is a stale cache: rebuilt from this log, with a warning."""
        duck = str(tmp_path / "analytics.duckdb")
        for name in ("a.db", "b.db"):
            with Ledger(f"sqlite:///{tmp_path / name}", analytics_path=duck if name == "a.db" else None) as led:
                Workload(led, 1 if name == "a.db" else 2).run(10)
                led.analytics.catch_up()
        with Ledger(f"sqlite:///{tmp_path / 'b.db'}", analytics_path=duck) as led:
            assert led.sql("select count(*) from events").fetchall() == [(led.store.head(),)]
            rebuilt = all_tables(led.analytics)
        assert "another log" in caplog.text
        with Ledger(f"sqlite:///{tmp_path / 'b.db'}") as led:
            led.analytics.catch_up()
            assert all_tables(led.analytics) == rebuilt
        ledger.set_default_ledger(None)

    def test_rebuild_from_a_position_gives_the_same_tables(self, mem: Ledger) -> None:
        Workload(mem, 9).run(80)
        analytics = mem.analytics
        analytics.catch_up()
        full = all_tables(analytics)
        for start in (1, 2, mem.store.head() // 2, mem.store.head()):
            assert analytics.rebuild(from_position=start) == mem.store.head() - start + 1
            assert all_tables(analytics) == full
        with pytest.raises(ValueError, match="from_position"):
            analytics.rebuild(from_position=0)

    def test_progress_reports_totals(self, mem: Ledger) -> None:
        Workload(mem, 1).run(30)
        seen: list[tuple[int, int]] = []
        mem.analytics.catch_up(progress=lambda done, total: seen.append((done, total)), page=17)
        head = mem.store.head()
        assert seen[0] == (0, head) and seen[-1] == (head, head)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(Workload.STEPS), st.integers(0, 1000), st.one_of(st.none(), st.integers(1, 7))),
        min_size=1,
        max_size=25,
    ),
    rebuild_from=st.integers(1, 200),
)
def test_incremental_catch_up_equals_full_rebuild(steps: list[tuple[str, int, int | None]], rebuild_from: int) -> None:
    """Whatever was written, and however catch-up was split into pages, the tables equal a rebuild."""
    led = Ledger("memory://")
    try:
        work = Workload(led)
        incremental = led.analytics
        for kind, pick, page in steps:
            work.step(kind, pick)
            if page is not None:
                incremental.catch_up(page=page)
        incremental.catch_up(page=5)
        fresh = Analytics(led.store)
        fresh.catch_up()
        expected = all_tables(fresh)
        assert all_tables(incremental) == expected
        incremental.rebuild(from_position=min(rebuild_from, led.store.head()))
        assert all_tables(incremental) == expected
        fresh.close()
    finally:
        led.close()
        ledger.set_default_ledger(None)


class TestLineageGraph:
    def build(self, mem: Ledger) -> dict[str, object]:
        ada = student()
        EntityRegistry.register_entity(ada)
        v1 = ada.ecs_id
        at_v1 = mem.store.head()
        curved = CallableRegistry.execute("wl_curve", student=ada, policy=WPolicy())
        kept, dropped = CallableRegistry.execute("wl_split", student=curved)
        return {"v1": v1, "at_v1": at_v1, "curved": curved, "kept": kept, "dropped": dropped, "ada": ada}

    def test_downstream_upstream_and_depth(self, mem: Ledger) -> None:
        w = self.build(mem)
        v1, curved, kept, dropped = str(w["v1"]), w["curved"], w["kept"], w["dropped"]
        down = mem.lineage_graph(v1, direction="downstream")
        assert {str(curved.ecs_id), str(kept.ecs_id), str(dropped.ecs_id)} <= set(down.nodes)
        functions = {a["function_name"] for a in down.nodes.values() if a["kind"] == "execution"}
        assert functions == {"wl_curve", "wl_split"}
        one = mem.lineage_graph(v1, direction="downstream", depth=1)
        assert str(curved.ecs_id) in one.nodes and str(kept.ecs_id) not in one.nodes
        up = mem.lineage_graph(dropped.ecs_id, direction="up")
        assert v1 in up.nodes and str(curved.ecs_id) in up.nodes
        assert str(kept.ecs_id) not in up.nodes  # a sibling, not an ancestor
        zero = mem.lineage_graph(v1, depth=0)
        assert list(zero.nodes) == [v1] and zero.edges == []

    def test_as_of_a_past_position_hides_later_derivations(self, mem: Ledger) -> None:
        w = self.build(mem)
        then = mem.lineage_graph(w["ada"].lineage_id, position=w["at_v1"])
        assert list(then.nodes) == [str(w["v1"])] and then.edges == []
        now = mem.lineage_graph(w["ada"].lineage_id)
        assert len([n for n in now.nodes.values() if n["kind"] == "entity" and n["lineage_id"] == str(w["ada"].lineage_id)]) == 3
        with pytest.raises(UnknownEntityError, match="ref"):
            mem.lineage_graph(w["kept"].ecs_id, position=w["at_v1"])

    def test_renderings(self, mem: Ledger) -> None:
        w = self.build(mem)
        curve_id = mem.sql("select execution_id from executions where function_name = 'wl_curve'").fetchall()[0][0]
        g = mem.lineage_graph(curve_id)
        assert g.nodes[curve_id]["kind"] == "execution"
        mermaid = g.to_mermaid()
        assert mermaid.startswith("graph LR") and "wl_curve()" in mermaid and "|mutation|" in mermaid
        dot = g.to_dot()
        assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}") and "->" in dot
        doc = json.loads(json.dumps(g.to_json()))
        assert {e["kind"] for e in doc["edges"]} >= {"input", "config", "mutation"}
        assert {n["id"] for n in doc["nodes"]} == set(g.nodes)

    def test_bad_references_and_arguments(self, mem: Ledger) -> None:
        self.build(mem)
        with pytest.raises(MalformedAddressError, match="ref"):
            mem.lineage_graph("not-a-uuid")
        with pytest.raises(UnknownEntityError, match="ref"):
            mem.lineage_graph("00000000-0000-4000-8000-000000000000")
        with pytest.raises(LineageQueryError, match="direction"):
            mem.lineage_graph(next(iter(mem.index.lineage_ids)), direction="sideways")
        with pytest.raises(LineageQueryError, match="depth"):
            mem.lineage_graph(next(iter(mem.index.lineage_ids)), depth=-1)

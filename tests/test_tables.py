"""projections/tables.py: the analytics tables (every documented column, one execution in every table,
failures, detach and attach edges, erasure tombstones), read-only SQL and Parquet export over them."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import ledger
from ledger import CallableRegistry, EntityRegistry, Ledger
from projections.analytics import Analytics, ReadOnlySQLError

from tools.workload import WPolicy, Workload

from .projection_rows import all_tables, student


API_COLUMNS = {
    "events": "position stream_id stream_version event_type recorded_at payload",
    "entity_versions": "ecs_id lineage_id root_ecs_id previous_ecs_id entity_type position recorded_at data",
    "executions": "execution_id function_name position recorded_at duration_ms succeeded error_type error_message isolation",
    "execution_inputs": "execution_id param_name ecs_id address",
    "execution_outputs": "execution_id output_index ecs_id lineage_id semantic",
    "lineage_edges": "source_ecs_id target_ecs_id kind execution_id",
    "siblings": "execution_id ecs_id output_index",
}


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

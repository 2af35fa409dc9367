"""Audit reads from the store's version index equal the reads of a replayed ledger."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ledger
from ledger import Entity, Ledger, Personal, errors
from ledger.cli import app
from ledger.store import EventStore
from projections import audit
from projections.stored_reads import StoredIndex, StoredReader

from .conftest import requires_pg


class Item(Entity):
    label: str = ""
    n: int = 0


class Holder(Entity):
    owner: Personal[str] = "x"
    items: list[Item] = []
    pair: tuple[Item, ...] = ()
    by_key: dict[str, Item] = {}


def _build(led: Ledger) -> dict[str, object]:
    h = Holder(owner="ann", items=[Item(label="a"), Item(label="b")], pair=(Item(label="p"),), by_key={"k": Item(label="k")})
    led.registry.register_entity(h)
    for i in range(3):
        h.items[0].n = i + 1
        led.registry.version_entity(h)
    h.by_key["k"].label = "kk"
    led.registry.version_entity(h)
    gone = Holder(owner="bob", items=[Item()])
    led.registry.register_entity(gone)
    gone.items[0].n = 9
    led.registry.version_entity(gone)
    led.erase(gone.lineage_id, reason="request")
    led.registry.detach(h.items[1])
    return {"holder": h, "gone": gone}


def _every_read(source, made) -> list[object]:
    h, gone = made["holder"], made["gone"]
    versions = [r.ecs_id for r in source.index.lineages[h.lineage_id]]
    first_time = source.index.lineages[h.lineage_id][0].recorded_at
    return [
        audit.recent_events(source, limit=50),
        audit.recent_events(source, limit=3, event_type="entity"),
        audit.show(source, f"@{h.lineage_id}"),
        audit.show(source, f"@{h.lineage_id}.items.0.n"),
        audit.show(source, f"@{h.ecs_id}.by_key.k"),
        audit.show(source, f"@{h.lineage_id}.pair.0"),
        audit.show(source, f"@{gone.lineage_id}"),
        audit.history(source, h.lineage_id),
        audit.history(source, gone.lineage_id),
        audit.as_of(source, h.lineage_id, position=2),
        audit.as_of(source, h.lineage_id, position=10_000),
        audit.as_of(source, h.lineage_id, at=first_time - timedelta(seconds=1)),
        audit.as_of(source, h.lineage_id, at=first_time + timedelta(hours=1)),
        audit.diff(source, versions[0], versions[-1]),
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=requires_pg)])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'r.db'}"
    else:
        from .conftest import fresh_pg_url

        yield from fresh_pg_url()


def test_every_audit_read_gives_the_same_answer_from_the_index_as_from_replay(url) -> None:
    with Ledger(url) as led:
        made = _build(led)
    with Ledger(url, create=False) as replayed:
        expected = _every_read(replayed, made)
    reader = StoredReader.open(url)
    assert reader is not None
    with reader:
        assert _every_read(reader, made) == expected
        with pytest.raises(errors.UnknownEntityError):
            audit.show(reader, f"@{made['holder'].ecs_id.int ^ 1:032x}")


def test_a_store_whose_index_lags_gets_no_stored_reader(tmp_path) -> None:
    path = tmp_path / "old.db"
    with Ledger(f"sqlite:///{path}") as led:
        led.registry.register_entity(Item())
    con = sqlite3.connect(path)
    con.execute("UPDATE ledger_index_tracking SET position = 0")
    con.commit()
    con.close()
    assert StoredReader.open(f"sqlite:///{path}") is None
    with pytest.raises(errors.StoreNotFoundError):
        StoredReader.open("memory://")


def test_a_record_edited_after_it_was_written_is_refused_by_its_seal(tmp_path) -> None:
    """Replay would decode it; a stored read checks the record's seal first."""
    path = tmp_path / "edit.db"
    with Ledger(f"sqlite:///{path}") as led:
        item = Item(label="honest")
        led.registry.register_entity(item)
    con = sqlite3.connect(path)
    state = con.execute("SELECT state FROM stored_events WHERE rowid = 1").fetchone()[0]
    con.execute("UPDATE stored_events SET state = ? WHERE rowid = 1", (state.replace(b"honest", b"forged"),))
    con.commit()
    con.close()
    with StoredReader.open(f"sqlite:///{path}") as reader:
        with pytest.raises(errors.CorruptLogError, match="position 1: its seal does not match") as caught:
            audit.show(reader, f"@{item.lineage_id}")
        assert caught.value.position == 1
        with pytest.raises(errors.CorruptLogError, match="position 1"):
            audit.recent_events(reader)


def test_the_decoded_versions_kept_are_bounded(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with Ledger(url) as led:
        item = Item()
        led.registry.register_entity(item)
        for i in range(20):
            item.n = i + 1
            led.registry.version_entity(item)
    store = EventStore(url, create=False)
    try:
        index = StoredIndex(store, cache_size=5)
        versions = index.lineages[item.lineage_id]
        assert len(versions) == 21 and [v.values_data()["n"] for v in versions[1:]] == list(range(1, 21))
        assert len(index.records.cache) == 5
        assert versions[-1].lineage_index == 20 and versions[-1].position == 21
    finally:
        store.close()


def test_an_index_row_pointing_at_another_record_is_refused(tmp_path) -> None:
    """A hostile edit of the index (not the log) cannot make a read show another version."""
    path = tmp_path / "idx.db"
    with Ledger(f"sqlite:///{path}") as led:
        a, b = Item(label="a"), Item(label="b")
        led.registry.register_entity(a)
        led.registry.register_entity(b)
    con = sqlite3.connect(path)
    con.execute("UPDATE ledger_version_positions SET position = 2 WHERE ecs_id = ?", (a.ecs_id.bytes,))
    con.commit()
    con.close()
    with StoredReader.open(f"sqlite:///{path}") as reader:
        with pytest.raises(errors.CorruptLogError, match="position 2: the version index names version") as caught:
            audit.show(reader, f"@{a.ecs_id}")
        assert caught.value.position == 2
        assert audit.show(reader, f"@{b.ecs_id}").value["label"] == "b"


def test_a_dropped_index_table_is_one_store_error(tmp_path) -> None:
    path = tmp_path / "drop.db"
    with Ledger(f"sqlite:///{path}") as led:
        item = Item()
        led.registry.register_entity(item)
    con = sqlite3.connect(path)
    con.execute("DROP TABLE ledger_version_positions")
    con.commit()
    con.close()
    with StoredReader.open(f"sqlite:///{path}") as reader:
        with pytest.raises(errors.StoreError, match="read failed"):
            audit.show(reader, f"@{item.ecs_id}")


# ---------------------------------------------------------------- statements per read
class Leaf(Entity):
    n: int = 0


class Tree(Entity):
    label: str = "t"
    leaves: list[Leaf] = []


@pytest.fixture
def selects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SELECT any SQLite connection opened from here on runs, as SQLite itself reports it
    (``set_trace_callback`` on each real connection the store's pool makes)."""
    seen: list[str] = []
    real_connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(lambda statement: seen.append(statement) if statement.lstrip().upper().startswith("SELECT") else None)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    return seen


def _tree_lineage(url: str, versions: int) -> Any:
    """A lineage of ``versions`` versions of a two-leaf tree, each changing one leaf (so each
    version's tree holds a new leaf version)."""
    with Ledger(url) as led:
        tree = Tree(leaves=[Leaf(), Leaf()])
        led.registry.register_entity(tree)
        for i in range(versions - 1):
            tree.leaves[i % 2].n = i + 1
            led.registry.version_entity(tree)
    ledger.set_default_ledger(None)
    return tree.lineage_id


class TestStatementCounts:
    """Reading a lineage costs a number of queries that does not grow with its length: versions and
    their trees' children are read a few hundred per query, never one by one."""

    def test_ledger_history_runs_as_many_selects_for_120_versions_as_for_3(self, tmp_path: Path, selects: list[str]) -> None:
        """``ledger history`` (the CLI's stored reader) of a 120-version lineage vs a 3-version one."""
        counts = {}
        for versions in (3, 120):
            url = f"sqlite:///{tmp_path / f'h{versions}.db'}"
            lineage_id = _tree_lineage(url, versions)
            selects.clear()
            result = CliRunner().invoke(app, ["history", str(lineage_id), "--db", url, "--format", "json"])
            assert result.exit_code == 0, result.output
            shown = json.loads(result.output)["versions"]
            assert [v["version"]["version"] for v in shown] == list(range(1, versions + 1))
            assert shown[-1]["changes"] and shown[-1]["changes"][0]["new"] == versions - 1
            counts[versions] = len(selects)
        assert 0 < counts[120] == counts[3], counts

    def test_entity_registry_history_runs_as_many_selects_for_120_versions_as_for_3(self, tmp_path: Path, selects: list[str]) -> None:
        """``EntityRegistry.history`` on a ledger opened on the file (the writer's stored index)."""
        counts = {}
        for versions in (3, 120):
            url = f"sqlite:///{tmp_path / f'r{versions}.db'}"
            lineage_id = _tree_lineage(url, versions)
            with Ledger(url) as led:
                selects.clear()
                history = led.registry.history(lineage_id)
                counts[versions] = len(selects)
            ledger.set_default_ledger(None)
            assert len(history) == versions
            assert [leaf.n for leaf in history[-1].leaves] == ([versions - 2, versions - 1] if versions % 2 else [versions - 1, versions - 2])
        assert 0 < counts[120] == counts[3], counts

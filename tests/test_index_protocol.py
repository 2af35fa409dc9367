"""One version index: the writer and every reader hold an implementation of ``VersionIndex``,
and the CLI's reader holds the writer's own store-backed class (issue 27, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import Entity, Ledger
from ledger.model.address import parse_address
from projections import audit
from projections.addresses import resolve_address, walk_address
from projections.index_protocol import VersionIndex, VersionReads, open_payload
from projections.inline import InlineIndex
from projections.stored_inline import StoredIndex, StoredInlineIndex
from projections.stored_reads import StoredReader
from projections.stored_view import walk_stored


class Leaf(Entity):
    n: int = 0


class Tree(Entity):
    name: str = ""
    leaves: list[Leaf] = []


def _tree(url: str) -> Tree:
    with Ledger(url) as led:
        tree = Tree(name="t", leaves=[Leaf(n=1), Leaf(n=2)])
        led.registry.register_entity(tree)
        tree.leaves[1].n = 5
        led.registry.version_entity(tree)
    return tree


def test_memory_index_is_the_in_memory_implementation() -> None:
    with Ledger("memory://") as led:
        assert type(led.index) is InlineIndex
        assert isinstance(led.index, VersionIndex)


def test_reader_and_writer_hold_the_same_index_class(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'same.db'}"
    tree = _tree(url)
    with Ledger(url, create=False) as led, StoredReader.open(url) as reader:
        assert reader is not None
        assert isinstance(led.index, StoredInlineIndex) and isinstance(reader.index, StoredInlineIndex)
        assert isinstance(led.index, VersionIndex) and isinstance(reader.index, VersionReads)
        assert type(reader.index) is StoredIndex
        # the same answers through either
        assert [r.ecs_id for r in reader.index.lineages[tree.lineage_id]] == [r.ecs_id for r in led.index.lineages[tree.lineage_id]]
        assert audit.show(reader, f"@{tree.lineage_id}.leaves.1.n").value == audit.show(led, f"@{tree.lineage_id}.leaves.1.n").value == 5


def test_the_readers_index_never_applies_an_append(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ro.db'}"
    tree = _tree(url)
    with StoredReader.open(url) as reader:
        assert reader is not None
        record = reader.index.get(tree.ecs_id)
        with pytest.raises(TypeError, match="read-only"):
            reader.index.add(record, record.position + 1, "h", version=9)
        with pytest.raises(TypeError, match="read-only"):
            reader.index.apply("entity.erased", 99, tree.lineage_id, "h")


def test_one_address_walker_for_stored_and_live_reads(tmp_path: Path) -> None:
    """``walk_stored`` (no classes) and ``resolve_address`` (Python values) walk the same way."""
    url = f"sqlite:///{tmp_path / 'walk.db'}"
    tree = _tree(url)
    with Ledger(url, create=False) as led:
        for text in (f"@{tree.lineage_id}", f"@{tree.lineage_id}.leaves.1", f"@{tree.lineage_id}.leaves.1.n", f"@{tree.ecs_id}.name"):
            address = parse_address(text, argument="a")
            value, source, below = walk_stored(led.index, address, argument="a")
            resolved = resolve_address(led.index, address, argument="a")
            assert (source.ecs_id, below) == (resolved.source_ecs_id, resolved.field_path)
            start = led.index.records.get(address.uuid) or led.index.lineages[address.uuid][-1]
            assert walk_address(led.index, start, address, argument="a", read_values=lambda r: r.values_data()) == (value, source, below)


def test_open_payload_is_one_function(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'open.db'}"
    _tree(url)
    payload = {"error_message": "plain"}
    with Ledger(url, create=False) as led, StoredReader.open(url) as reader:
        assert reader is not None
        assert led.open_payload("execution.failed", payload) == reader.open_payload("execution.failed", payload) == open_payload(reader.index, "execution.failed", payload)

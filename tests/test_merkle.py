"""The log's Merkle tree in the store (ledger/store/merkle.py): heads, proofs, verify, attacks.

Run on memory, SQLite and PostgreSQL; records are appended raw (``EventStore.append``) so
that a few hundred cost little, and crossing tile boundaries (256 leaves) is what matters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from uuid import uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.errors import ConcurrencyError, ProofError
from ledger.events.seal import NewEvent
from ledger.proofs import TreeHead, leaf_hash, root_of, verify_consistency, verify_inclusion
from ledger.store.merkle import WRITE_EVERY, TileBuilder, seal_of
from tests.conftest import PG_BASE


def append(led: Ledger, count: int, batch: int = 50) -> None:
    """``count`` one-record streams, in batches of ``batch``."""
    for start in range(0, count, batch):
        led.store.append([NewEvent(uuid4(), 1, "test.note", b'{"n":%d}' % i, None) for i in range(start, min(count, start + batch))])


def leaves_of(led: Ledger) -> list[tuple[int, bytes]]:
    """(position, leaf hash) of every record up to the head, read straight from the log."""
    page = led.store.read_columns(1, 1_000_000)
    return [(p, leaf_hash(seal_of(s))) for p, s in zip(page.positions, page.states)]


@pytest.fixture
def lg(store_url: str) -> Iterator[Ledger]:
    with Ledger(store_url) as led:
        yield led


class TestHeadsAndProofs:
    def test_the_head_is_the_rfc_root_of_the_seals_and_every_proof_checks(self, lg: Ledger) -> None:
        """Root = MTH over the records' seals; inclusion at every 37th leaf and consistency between sizes verify."""
        append(lg, 600)
        head = lg.tree_head()
        leaves = leaves_of(lg)
        assert head.size == len(leaves) == 600
        assert head.root == root_of([h for _, h in leaves])
        assert head.position == leaves[-1][0] and head.origin.startswith("entity-ledger/")
        for index in list(range(0, 600, 37)) + [255, 256, 511, 512, 599]:
            position, leaf = leaves[index]
            proof = lg.prove_inclusion(position)
            assert (proof.leaf_index, proof.leaf_hash, proof.size) == (index, leaf, 600)
            verify_inclusion(proof, head)
            old = lg.prove_inclusion(position, size=index + 1)
            verify_inclusion(old, TreeHead(index + 1, root_of([h for _, h in leaves[: index + 1]]), head.origin))
        for old_size in (1, 2, 255, 256, 257, 300, 600):
            proof = lg.prove_consistency(old_size)
            old_head = TreeHead(old_size, root_of([h for _, h in leaves[:old_size]]), head.origin)
            verify_consistency(proof, old_head, head)

    def test_the_head_of_an_empty_log_is_the_empty_root(self, lg: Ledger) -> None:
        """No records: size 0, root SHA-256(''), no position."""
        head = lg.tree_head()
        assert (head.size, head.root.hex()[:8], head.position) == (0, "e3b0c442", None)

    def test_bad_arguments_name_themselves_and_change_nothing(self, lg: Ledger) -> None:
        """Position 0 or past the log, a size past the tree: ProofError naming the argument; the log is as before."""
        append(lg, 20)
        before = lg.digest()
        with pytest.raises(ProofError, match="position"):
            lg.prove_inclusion(0)
        with pytest.raises(ProofError, match="position 21"):
            lg.prove_inclusion(21)
        with pytest.raises(ProofError, match="size 21"):
            lg.prove_inclusion(3, size=21)
        with pytest.raises(ProofError, match="new_size 99"):
            lg.prove_consistency(3, 99)
        with pytest.raises(ProofError, match="old_size 30"):
            lg.prove_consistency(30)
        assert lg.digest() == before and lg.verify().ok

    def test_the_origin_is_stable_across_opens(self, durable_url: str) -> None:
        """The origin is kept in the store: a reopened ledger signs heads of the same log."""
        with Ledger(durable_url) as led:
            append(led, 3)
            origin = led.tree_head().origin
        with Ledger(durable_url, create=False) as led:
            assert led.tree_head().origin == origin


class TestStoredTiles:
    def test_writers_extend_the_stored_tree_and_a_reading_open_writes_nothing(self, durable_url: str) -> None:
        """Past WRITE_EVERY leaves a commit stores tiles; a create=False open extends in memory only."""
        with Ledger(durable_url) as led:
            append(led, WRITE_EVERY + 100, batch=100)
            state = led.store.tree.table.tree_state()
            assert state is not None and state[1] >= WRITE_EVERY  # stored after a commit, no head asked for
            append(led, 30)
            stored = led.store.tree.table.tree_state()
        with Ledger(durable_url, create=False) as reader:
            assert reader.tree_head().size == WRITE_EVERY + 130
            assert reader.store.tree.table.tree_state() == stored  # nothing written
            verify_inclusion(reader.prove_inclusion(WRITE_EVERY + 125), reader.tree_head())

    def test_a_proof_reads_its_tiles_in_one_query(self, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Inclusion (now or at an older size) and consistency proofs ask the store for their tiles once each."""
        with Ledger(store_url) as led:
            append(led, 70_000 if store_url == "memory://" else 600, batch=5000)
            head = led.tree_head()
            asked: list[list[tuple[int, int]]] = []
            real = led.store.tree.table.tree_tiles

            def counting(keys: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[bytes, int]]:
                asked.append(list(keys))
                return real(keys)

            monkeypatch.setattr(led.store.tree.table, "tree_tiles", counting)
            for position, size in ((2, None), (head.size - 3, None), (300, 555)):
                asked.clear()
                proof = led.prove_inclusion(position, size)
                assert len(asked) == 1 and proof.size == (size or head.size)
                assert (0, (position - 1) >> 8) in asked[0]  # the leaf's tile
            asked.clear()
            proof_c = led.prove_consistency(257)
            assert len(asked) == 1 and proof_c.size == head.size
            if store_url == "memory://":  # three levels: the leaf's full tiles are checked against their parents
                asked.clear()
                led.prove_inclusion(5)
                assert {(0, 0), (1, 0), (2, 0)} <= set(asked[0]) and len(asked) == 1

    def test_two_writers_racing_to_extend_agree(self, durable_url: str) -> None:
        """Two stores on one log extend the tree concurrently; the loser takes the winner's state."""
        with Ledger(durable_url) as a, Ledger(durable_url) as b:
            append(a, 300)
            ha = a.tree_head()
            append(b, 10)
            hb, ha2 = b.tree_head(), a.tree_head()
            assert hb == ha2 and hb.size == 310
            verify_consistency(a.prove_consistency(ha.size), ha, hb)
            assert a.verify().ok


def rebuilt_tiles(led: Ledger) -> list[tuple[int, int, int, bytes]]:
    """The tiles of the tree over the log's records up to the stored tree's size, built afresh from the log."""
    state = led.store.tree.table.tree_state()
    assert state is not None
    builder = TileBuilder(0, {})
    for position, leaf in leaves_of(led)[: state[1]]:
        builder.add(leaf, position)
    return [(level, index, first, bytes(hashes)) for (level, index), (hashes, first) in sorted(builder.tiles.items())]


def stored_tiles(led: Ledger) -> list[tuple[int, int, int, bytes]]:
    return list(led.store.tree.table.tree_dump())


class TestFedFromTheAppend:
    """The tree takes the seals the append computed when the batch follows on from it, and reads the log otherwise."""

    def test_a_tree_fed_by_appends_equals_the_tree_rebuilt_from_the_log(self, store_url: str) -> None:
        """Batches of odd sizes across WRITE_EVERY: stored tiles written with no head asked for, equal to a rebuild."""
        with Ledger(store_url) as led:
            for size in (1, 255, 300, 7, 1000, 3000, 97):
                append(led, size, batch=size)
            state = led.store.tree.table.tree_state()
            assert state is not None and state[1] >= WRITE_EVERY  # written after a commit, from the fed seals
            assert stored_tiles(led) == rebuilt_tiles(led)
            head = led.tree_head()
            assert head.size == 4660 and head.root == root_of([h for _, h in leaves_of(led)])
            assert stored_tiles(led) == rebuilt_tiles(led) and led.verify(head=head).ok

    def test_the_fed_tree_reads_no_record(self, durable_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Once the tree follows the log, appends (and the tile writes they make) read no record back."""
        with Ledger(durable_url) as led:
            append(led, 10)
            led.tree_head()  # the tree is stored up to the head: appends now follow on from it
            reads: list[int] = []
            real = led.store.read_columns

            def counting(start: int = 1, limit: int = 50_000, **kw: bool) -> object:
                reads.append(start)
                return real(start, limit, **kw)

            monkeypatch.setattr(led.store, "read_columns", counting)
            append(led, WRITE_EVERY + 100, batch=500)
            assert reads == []
            state = led.store.tree.table.tree_state()
            assert state is not None and state[1] >= WRITE_EVERY + 10
            monkeypatch.undo()
            assert stored_tiles(led) == rebuilt_tiles(led)

    def test_another_writer_between_appends_sends_the_tree_back_to_the_log(self, durable_url: str) -> None:
        """Two stores on one log take turns: neither's batch follows its own tree, both trees stay the log's."""
        with Ledger(durable_url) as a, Ledger(durable_url) as b:
            for _ in range(6):
                append(a, 400, batch=400)
                append(b, 300, batch=300)
            assert stored_tiles(a) == rebuilt_tiles(a)
            head = b.tree_head()
            assert head == a.tree_head() and head.size == 4200
            assert head.root == root_of([h for _, h in leaves_of(a)])
            assert stored_tiles(b) == rebuilt_tiles(b) and a.verify(head=head).ok

    def test_a_rolled_back_batch_is_no_leaf_of_the_fed_tree(self, pg_url: str) -> None:
        """PostgreSQL: a conflicting batch burns positions; the next batch does not follow on, the log is read instead."""
        with Ledger(pg_url) as led:
            append(led, 300)
            led.tree_head()
            taken = uuid4()
            led.store.append([NewEvent(taken, 1, "test.note", b'{"n":1}', None)])
            with pytest.raises(ConcurrencyError):
                led.store.append([NewEvent(uuid4(), 1, "test.note", b'{"n":2}', None), NewEvent(taken, 1, "test.note", b'{"n":3}', None)])
            append(led, WRITE_EVERY + 50, batch=500)
            head = led.tree_head()
            assert head.size == 300 + 1 + WRITE_EVERY + 50 and head.position == led.store.head() > head.size
            assert head.root == root_of([h for _, h in leaves_of(led)])
            assert stored_tiles(led) == rebuilt_tiles(led) and led.verify(head=head).ok

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=12), st.lists(st.booleans(), max_size=12))
    def test_any_batches_and_heads_give_the_log_s_tree(self, batches: list[int], heads: list[bool]) -> None:
        """memory://: any batch sizes, heads asked for in between or not: the stored tiles are the rebuild's."""
        with Ledger("memory://") as led:
            for i, size in enumerate(batches):
                append(led, size, batch=size)
                if i < len(heads) and heads[i]:
                    assert led.tree_head().root == root_of([h for _, h in leaves_of(led)])
            assert stored_tiles(led) == rebuilt_tiles(led)
            assert led.tree_head().root == root_of([h for _, h in leaves_of(led)])
            assert stored_tiles(led) == rebuilt_tiles(led) and led.verify().ok


class TestHoles:
    def test_rolled_back_positions_are_not_leaves(self, pg_url: str) -> None:
        """On PostgreSQL a conflicting batch burns positions: later records' leaf index is not position - 1."""
        with Ledger(pg_url) as led:
            append(led, 300)
            taken = uuid4()
            led.store.append([NewEvent(taken, 1, "test.note", b'{"n":1}', None)])
            with pytest.raises(ConcurrencyError):
                led.store.append([NewEvent(uuid4(), 1, "test.note", b'{"n":2}', None), NewEvent(taken, 1, "test.note", b'{"n":3}', None)])
            append(led, 10)
            head = led.tree_head()
            assert head.size == 311 and head.position == led.store.head() > 311
            proof = led.prove_inclusion(head.position)
            assert proof.leaf_index == 310
            verify_inclusion(proof, head)
            assert head.root == root_of([h for _, h in leaves_of(led)])
            assert led.verify(head=head).ok


def _sql(url: str, statements: list[str]) -> None:
    """Run SQL on the store behind the ledger's back (an insider with write access)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("sqlite:///", 1)[1])
        for s in statements:
            conn.execute(s)
        conn.commit()
        conn.close()
    else:
        schema = url.split("schema=")[1]
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            for s in statements:
                conn.execute(s)


class TestAttacks:
    def test_an_edited_tile_is_named_by_verify_and_never_serves_a_proof(self, durable_url: str) -> None:
        """One hash of a full level-0 tile changed in the database: verify names the tile, a proof there fails."""
        with Ledger(durable_url) as led:
            append(led, 600)
            head = led.tree_head()
            assert led.verify().ok
            flip = "set_byte(hashes, 40, get_byte(hashes, 40) # 1)" if durable_url.startswith("postgresql") else None
            if flip:
                _sql(durable_url, [f"UPDATE ledger_tree_tiles SET hashes = {flip} WHERE level = 0 AND idx = 0"])
            else:
                _sql(durable_url, ["UPDATE ledger_tree_tiles SET hashes = zeroblob(32) || substr(hashes, 33) WHERE level = 0 AND idx = 0"])
            report = led.verify()
            assert not report.ok
            assert any("tile level 0 index 0 differs" in p for p in report.problems), report.problems
            with pytest.raises(ProofError, match="run ledger verify"):
                led.prove_inclusion(2)
            verify_inclusion(led.prove_inclusion(400), head)  # a leaf under an intact tile still proves

    def test_an_edited_last_tile_is_not_served_as_a_head(self, durable_url: str) -> None:
        """The partial last tile is checked against the records before a head is served from it."""
        with Ledger(durable_url) as led:
            append(led, 300)
            led.tree_head()
            if durable_url.startswith("postgresql"):
                _sql(durable_url, ["UPDATE ledger_tree_tiles SET hashes = set_byte(hashes, 0, get_byte(hashes, 0) # 1) WHERE level = 0 AND idx = 1"])
            else:
                _sql(durable_url, ["UPDATE ledger_tree_tiles SET hashes = zeroblob(32) || substr(hashes, 33) WHERE level = 0 AND idx = 1"])
            with pytest.raises(ProofError, match="last tile"):
                led.tree_head()
            assert not led.verify().ok

    def test_a_dropped_tail_then_new_appends_fail_against_a_kept_head(self, tmp_path) -> None:
        """The insider's rewrite: drop the tail with sqlite3 (and the tree rows), append through the ledger.

        Plain verify passes (every seal and link holds); verify(head=old) fails, in one line.
        """
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        with Ledger(url) as led:
            append(led, 300)
            kept = led.tree_head()
        table = "stored_events"
        _sql(url, [f"DELETE FROM {table} WHERE rowid > 280", "DELETE FROM ledger_tree_tiles", "UPDATE ledger_tree_state SET size = 0, position = 0"])
        with Ledger(url) as led:
            append(led, 40)
            assert led.verify().ok
            report = led.verify(head=kept)
            assert not report.ok
            assert len(report.problems) == 1 and "differ from the head kept earlier" in report.problems[0]
            assert "\n" not in report.problems[0]

    def test_a_dropped_tail_alone_is_found_by_the_stored_tree(self, durable_url: str) -> None:
        """Records removed but the tree rows left: plain verify already sees the tree covers more than the log."""
        with Ledger(durable_url) as led:
            append(led, 300)
            led.tree_head()
            table = led.store.recorder.events_table_name  # type: ignore[attr-defined]
            column = "notification_id" if durable_url.startswith("postgresql") else "rowid"
            _sql(durable_url, [f"DELETE FROM {table} WHERE {column} > 290"])
            report = led.verify()
            assert not report.ok and any("the log holds only 290" in p for p in report.problems), report.problems
            with pytest.raises(ProofError):
                led.tree_head()

    def test_a_shorter_log_fails_against_a_kept_head(self, lg: Ledger) -> None:
        """A head larger than the log: the tail was removed."""
        append(lg, 10)
        head = lg.tree_head()
        bigger = TreeHead(head.size + 5, head.root, head.origin)
        report = lg.verify(head=bigger)
        assert not report.ok and "fewer than the 15" in report.problems[0]
        assert lg.verify(head=head).ok


class TestAnalyticsHash:
    def test_the_root_recomputed_from_the_events_table_is_the_head(self, store_url: str) -> None:
        """``select hash from events order by position`` gives the leaves: anyone with an export gets the root."""
        import ledger as ledger_module
        from tests.models import Student

        with ledger_module.connect(store_url) as led:
            for n in range(5):
                Student(name=f"s{n}").promote_to_root()
            hashes = [bytes.fromhex(h) for (h,) in led.sql("select hash from events order by position").fetchall()]
            assert len(hashes) == led.tree_head().size > 0
            assert root_of([leaf_hash(h) for h in hashes]) == led.tree_head().root
        ledger_module.set_default_ledger(None)

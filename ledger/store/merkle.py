"""The log's Merkle tree, kept in the store as tiles, so heads and proofs cost O(log n) reads.

``ledger.proofs`` defines the tree (RFC 9162: the leaves are the records' seal hashes in position
order, holes skipped); this module keeps its interior hashes where the log is, in the layout of
C2SP ``tlog-tiles``: a tile at level L, index i, holds up to 256 consecutive hashes of subtrees
of ``2**(8L)`` leaves (level 0: the leaf hashes). Any node of the tree is then at most 255
hashes away from one tile, and a proof reads a few tiles per level (three levels hold 16M leaves).
A tile row also keeps the position of its first leaf: on PostgreSQL rolled-back positions are
not leaves, so a record's leaf index is found from its tile, not computed from its position.

The tiles are derived state, written *after* the records, never inside an append. A writer
whose committed batch follows on directly from the tree it holds adds the seal hashes the
append computed (re-reading and re-deriving them cost ~15 µs a record, more than the append
itself) and stores the tiles every ``WRITE_EVERY`` leaves; otherwise the tree is extended from
the log up to the head (PostgreSQL: the high-water mark, below which every position is final)
by whoever finds it behind, once every ``EXTEND_EVERY`` positions after a commit and whenever a
head or a proof is asked for. Writers race for that with an optimistic update of one state row
(the size it extends from), so no lock is held and an append never waits for the tree. A
reading open extends in memory only (it never writes). Nothing derived is served unchecked:
a proof's leaf hash is computed from the record itself, every full tile read is checked against
its parent's entry, the tree's last partial tile against the records, and every proof against
the head it is served with before it is returned; ``Ledger.verify`` rebuilds every tile from
the seals and names the first one that differs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ledger.errors import ProofError
from ledger.events.seal import link_hash
from ledger.proofs import (
    ConsistencyProof,
    InclusionProof,
    TreeHead,
    consistency_path,
    inclusion_path,
    leaf_hash,
    node_hash,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

if TYPE_CHECKING:
    from ledger.store.base import EventStore

__all__ = ["EXTEND_EVERY", "WRITE_EVERY", "MerkleTree", "TileTable", "TileRebuild", "seal_of"]

log = logging.getLogger(__name__)

TILE = 256  # hashes per tile (C2SP tlog-tiles: height 8)
_BITS = 8
#: Positions a writer lets the tree fall behind before it extends it from the log after a commit.
EXTEND_EVERY = 1024
#: Leaves a writer adds to its in-memory tree from its own appends before it stores the tiles
#: (each write is a transaction: ~300 µs on SQLite, 0.3 µs a record at 1,024).
WRITE_EVERY = 4096
_PAGE = 20_000  # records read per page while extending
_FLUSH = 1 << 16  # leaves per write transaction while extending a long way

Key = tuple[int, int]  # (level, index)


class TileTable(Protocol):
    """Where a backend keeps the tiles: one state row (origin, size, position of the last leaf) and the tiles."""

    def tree_state(self) -> tuple[str, int, int] | None:
        """(origin, size, position) of the stored tree; None where the store has no tree tables."""
        ...

    def tree_tiles(self, keys: Sequence[Key]) -> dict[Key, tuple[bytes, int]]:
        """(hashes, position of the first leaf) of the stored tiles among ``keys``."""
        ...

    def tree_tile_at(self, position: int) -> tuple[int, int] | None:
        """(index, first position) of the level-0 tile with the greatest first position <= ``position``."""
        ...

    def tree_write(self, expect: int, size: int, position: int, tiles: list[tuple[int, int, int, bytes]]) -> bool:
        """In one transaction: move the state from size ``expect`` to ``size`` (False, nothing written, when
        it was elsewhere: another writer extended it) and upsert ``(level, index, first position, hashes)``."""
        ...

    def tree_dump(self) -> Iterator[tuple[int, int, int, bytes]]:
        """Every stored tile as (level, index, first position, hashes)."""
        ...


def seal_of(state: bytes | str | None) -> bytes:
    """A record's leaf: its 32-byte seal hash (the hash of its bytes where it states none, as links do)."""
    return bytes.fromhex(link_hash(state))


def _fold(hashes: bytes) -> bytes:
    """The root of a perfect subtree given its ``2**k`` bottom hashes, concatenated (a level at a time:
    every appended leaf passes here once a tile fills, so no per-node Python call)."""
    sha256 = hashlib.sha256
    while len(hashes) > 32:
        hashes = b"".join([sha256(b"\x01" + hashes[i : i + 64]).digest() for i in range(0, len(hashes), 64)])
    return bytes(hashes)


class TileBuilder:
    """Grows the tiles leaf by leaf from a tree of ``size`` leaves whose rightmost tiles are given.

    ``tiles`` holds the tiles being filled (the stored partial ones, loaded by the caller); a
    tile that fills up is folded into its parent's next entry. ``on_full`` hears of each tile as
    it completes (``verify`` compares it); ``dirty`` is what a writer must store.
    """

    def __init__(self, size: int, tiles: dict[Key, list[Any]], on_full: Callable[[Key, bytes, int], None] | None = None) -> None:
        self.size = size
        self.tiles = tiles  # key -> [bytearray of hashes, first position]
        self.dirty: set[Key] = set()
        self.on_full = on_full

    @staticmethod
    def edge(size: int) -> list[Key]:
        """The partial tiles of a tree of ``size`` leaves, one per level at most: what ``TileBuilder`` needs loaded."""
        keys, level, count = [], 0, size
        while count:
            if count % TILE:
                keys.append((level, count // TILE))
            count //= TILE
            level += 1
        return keys

    def add(self, leaf: bytes, position: int) -> None:
        """Append one leaf hash, the leaf at log ``position``."""
        self._put(0, self.size, leaf, position)
        self.size += 1

    def add_many(self, leaves: Sequence[bytes], positions: Sequence[int]) -> None:
        """Append leaf hashes at log ``positions``: ``add`` for each, a level-0 tile's worth at a time
        (the append path's cost: one join per tile instead of a Python loop per leaf)."""
        tiles, i, n = self.tiles, 0, len(leaves)
        while i < n:
            offset = self.size & (TILE - 1)
            take = min(TILE - offset, n - i)
            key = (0, self.size >> _BITS)
            tile = tiles.get(key)
            if tile is None:
                if offset:
                    raise ProofError(f"the stored Merkle tree lacks tile level 0 index {key[1]}; run ledger verify")
                tile = tiles[key] = [bytearray(), positions[i]]
            tile[0] += b"".join(leaves[i : i + take])
            self.dirty.add(key)
            self.size += take
            i += take
            if offset + take == TILE:
                value, first = self._filled(key, tile)
                self._put(1, key[1], value, first)

    def _put(self, level: int, entry: int, value: bytes, first: int) -> None:
        """Set entry ``entry`` of ``level`` (the next one), folding each tile that fills into its parent."""
        tiles = self.tiles
        while True:
            key = (level, entry >> _BITS)
            tile = tiles.get(key)
            if tile is None:
                if entry & (TILE - 1):
                    raise ProofError(f"the stored Merkle tree lacks tile level {level} index {entry >> _BITS}; run ledger verify")
                tile = tiles[key] = [bytearray(), first]
            tile[0] += value
            self.dirty.add(key)
            if entry & (TILE - 1) != TILE - 1:
                return
            value, first = self._filled(key, tile)
            entry >>= _BITS
            level += 1

    def _filled(self, key: Key, tile: list[Any]) -> tuple[bytes, int]:
        """A tile just filled up: its root and first position, for its parent's entry."""
        hashes = bytes(tile[0])
        if self.on_full is not None:  # the listener has it: no need to keep it (verify walks millions)
            self.on_full(key, hashes, tile[1])
            del self.tiles[key]
            self.dirty.discard(key)
        return _fold(hashes), tile[1]

    def take_dirty(self) -> list[tuple[int, int, int, bytes]]:
        """The changed tiles as rows to store; full ones are dropped from memory (they never change again)."""
        rows = [(k[0], k[1], self.tiles[k][1], bytes(self.tiles[k][0])) for k in sorted(self.dirty)]
        for level, index, _, hashes in rows:
            if len(hashes) == TILE * 32:
                del self.tiles[(level, index)]
        self.dirty.clear()
        return rows


class _Tiles:
    """Tiles for one request: the store's, under an in-memory overlay (a reading open's unwritten tail).

    Every full tile read is checked against its parent's entry, so one edited tile cannot
    lend a proof a node it would not have.
    """

    def __init__(self, table: TileTable, overlay: dict[Key, tuple[bytes, int]], size: int) -> None:
        self.table = table
        self.overlay = overlay
        self.size = size
        self.cache: dict[Key, tuple[bytes, int]] = {}
        self.fetched: dict[Key, tuple[bytes, int]] = {}  # read by ``prefetch``, not yet checked
        self.nodes: dict[Key, bytes] = {}

    def prefetch(self, nodes: Iterable[Key]) -> None:
        """Read, in one query, the tiles that the nodes ``(height, index)`` and the checks of those tiles need.

        A proof's nodes are known from its shape alone (``_shape``): reading its tiles one at a
        time cost a query each, which made proofs grow with the log far beyond their O(log n) hashes.
        """
        keys: set[Key] = set()
        for height, index in nodes:
            level, rest = divmod(height, _BITS)
            key = (level, (index << rest) >> _BITS)
            while key not in keys:
                keys.add(key)
                if (self.size >> (_BITS * (key[0] + 1))) <= key[1]:  # no parent entry: the tree's right edge
                    break
                key = (key[0] + 1, key[1] >> _BITS)  # a full tile is checked against its parent's entry
        wanted = sorted(k for k in keys if k not in self.overlay and k not in self.cache)
        if wanted:
            self.fetched.update(self.table.tree_tiles(wanted))

    def tile(self, key: Key) -> tuple[bytes, int]:
        found = self.overlay.get(key) or self.cache.get(key)
        if found is None:
            found = self.fetched.pop(key, None) or self.table.tree_tiles([key]).get(key)
            if found is None:
                raise ProofError(f"the stored Merkle tree lacks tile level {key[0]} index {key[1]}; run ledger verify")
            self.cache[key] = found
            if len(found[0]) == TILE * 32 and (self.size >> (_BITS * (key[0] + 1))) > key[1]:
                parent = self.tile((key[0] + 1, key[1] >> _BITS))[0]
                at = (key[1] & (TILE - 1)) * 32
                if parent[at : at + 32] != _fold(found[0]):
                    raise ProofError(
                        f"the stored Merkle tree's tile level {key[0]} index {key[1]} disagrees with its parent: "
                        "a tile was edited; run ledger verify"
                    )
        return found

    def node(self, height: int, index: int) -> bytes:
        """The hash of the perfect subtree of ``2**height`` leaves from leaf ``index << height``."""
        value = self.nodes.get((height, index))
        if value is None:
            level, rest = divmod(height, _BITS)
            entry = index << rest
            hashes = self.tile((level, entry >> _BITS))[0]
            at = (entry & (TILE - 1)) * 32
            part = hashes[at : at + (32 << rest)]
            if len(part) != 32 << rest:
                raise ProofError(f"the stored Merkle tree's tile level {level} index {entry >> _BITS} is short; run ledger verify")
            value = self.nodes[(height, index)] = _fold(part)
        return value


_DUMMY = bytes(32)


def _shape(*walks: Callable[[Callable[[int, int], bytes]], object]) -> list[Key]:
    """The nodes ``(height, index)`` that the given walks of the tree ask for, found by walking it with
    no hashes at all (which nodes a root, path or proof needs depends on the sizes and index only)."""
    asked: list[Key] = []

    def node(height: int, index: int) -> bytes:
        asked.append((height, index))
        return _DUMMY

    for walk in walks:
        walk(node)
    return asked


class MerkleTree:
    """The tree over one store's log: heads, proofs, and keeping the stored tiles up with the log."""

    def __init__(self, store: EventStore, table: TileTable) -> None:
        self.store = store
        self.table = table
        self._lock = threading.Lock()
        self._position = -1  # the last position this process knows the stored tree covers
        self._overlay: dict[Key, tuple[bytes, int]] = {}  # a reading open's tiles past the stored ones
        #: The stored tree continued in memory with this process's own appends (``after_append``):
        #: its right edge, the stored size it continues, and the position of its last leaf.
        self._feed: TileBuilder | None = None
        self._feed_expect = 0
        self._feed_position = 0

    # ------------------------------------------------------------ extending
    def _state(self) -> tuple[str, int, int]:
        state = self.table.tree_state()
        if state is None:
            raise ProofError(
                f"store {self.store.url!r} keeps no Merkle tree yet (written by an older library): open it once for writing"
            )
        return state

    def after_append(self, positions: Sequence[int], seals: Sequence[str] | None = None) -> None:
        """Keep the stored tree up with the log after a commit of ``positions`` (sealed ``seals``, hex).

        When the batch's positions follow on directly from the tree this process holds (its
        own last append, or the stored tree's last leaf), its seal hashes are added to the
        tree as the append computed them (the batch's records are exactly those positions:
        nothing of another writer can sit between), and the tiles are written every
        ``EXTEND_EVERY`` leaves. Otherwise (another process appended, a rolled-back batch
        left a hole, another thread of this process is extending) the tree falls behind and
        is extended from the log once it is ``EXTEND_EVERY`` positions back. Never fails the
        append that called it (it is committed): a failure is logged, and the next writer,
        head or proof extends the tree instead. A writer busy extending is not waited for.
        """
        if not positions or not self._lock.acquire(blocking=False):
            return
        last = positions[-1]
        try:
            if self._position < 0:  # first commit of this process: where the stored tree ends
                state = self.table.tree_state()
                self._position = state[2] if state is not None else last
            if seals is not None and self._follow(positions, seals):
                if self._feed is not None and self._feed.size - self._feed_expect >= WRITE_EVERY:
                    self._flush()
            elif last - self._position >= EXTEND_EVERY:
                self._extend(write=True)
        except Exception as exc:  # noqa: BLE001 - the batch is committed; the tree is derived state
            log.warning("%s: the Merkle tree stays behind the log: %s", self.store.url, exc)
            self._feed = None
            self._position = max(self._position, last)  # do not retry on every commit
        finally:
            self._lock.release()

    def _follow(self, positions: Sequence[int], seals: Sequence[str]) -> bool:
        """Add a committed batch's seals to the in-memory tree when its positions continue it; False when they do not."""
        first = positions[0]
        if positions[-1] - first != len(positions) - 1 or len(seals) != len(positions):
            self._feed = None
            return False
        feed = self._feed
        if feed is None:
            if first != self._position + 1:
                return False
            origin, size, position = self._state()
            if position != self._position:  # another writer extended it meanwhile
                self._position = position
                return False
            feed = self._continue(size, position)
            self._feed, self._feed_expect, self._feed_position = feed, size, position
        elif first != self._feed_position + 1:
            self._feed = None
            return False
        sha256, fromhex = hashlib.sha256, bytes.fromhex
        feed.add_many([sha256(b"\x00" + fromhex(seal)).digest() for seal in seals], positions)
        self._feed_position = positions[-1]
        return True

    def _flush(self) -> None:
        """Store the fed tree's changed tiles; keep them in memory while the log's head has not reached them
        (PostgreSQL: the high-water mark can lag this process's own commit), drop them if another writer moved the tree."""
        feed = self._feed
        if feed is None or feed.size == self._feed_expect or self.store.head() < self._feed_position:
            return
        if not self.table.tree_write(self._feed_expect, feed.size, self._feed_position, feed.take_dirty()):
            self._feed = None
            self._raced()
            return
        self._feed_expect, self._position = feed.size, self._feed_position

    def catch_up(self) -> tuple[str, int, int]:
        """Extend the tree up to the head: stored when the store is open for writing, else in memory."""
        with self._lock:
            if self.store.create and self._feed is not None:
                try:
                    self._flush()
                except Exception as exc:  # noqa: BLE001 - extended from the log below instead
                    log.warning("%s: the Merkle tree's appended tiles were not stored: %s", self.store.url, exc)
                    self._feed = None
            return self._extend(write=self.store.create)

    def _continue(self, size: int, position: int) -> TileBuilder:
        """A builder over the stored tree's right edge, once its last leaf is found to be the log's record there."""
        if size:  # the tree must continue the log it was built over
            last = self.store.read_columns(position, 1, past_head=True)
            tile = self.table.tree_tiles([(0, (size - 1) >> _BITS)]).get((0, (size - 1) >> _BITS))
            at = ((size - 1) & (TILE - 1)) * 32
            if not len(last) or last.positions[0] != position or tile is None or tile[0][at : at + 32] != leaf_hash(seal_of(last.states[0])):
                raise ProofError(
                    f"the stored Merkle tree's last leaf (position {position}) is not the log's record there: "
                    "the log was rewritten below the tree, or the tree was edited; run ledger verify"
                )
        loaded = self.table.tree_tiles(TileBuilder.edge(size))
        return TileBuilder(size, {k: [bytearray(v[0]), v[1]] for k, v in loaded.items()})

    def _extend(self, *, write: bool) -> tuple[str, int, int]:
        origin, size, position = self._state()
        self._overlay = {}
        head = self.store.head()
        if position >= head:
            self._position = position
            return origin, size, position
        self._feed = None
        builder = self._continue(size, position)
        expect, start = size, position + 1
        while start <= head:
            page = self.store.read_columns(start, min(_PAGE, head - start + 1))
            if not len(page):
                break
            for p, state in zip(page.positions, page.states):
                if p > head:
                    break
                builder.add(leaf_hash(seal_of(state)), p)
                position = p
            start = page.positions[-1] + 1
            if write and builder.size - expect >= _FLUSH:
                if not self.table.tree_write(expect, builder.size, position, builder.take_dirty()):
                    return self._raced()
                expect = builder.size
        if write:
            if builder.size != expect and not self.table.tree_write(expect, builder.size, position, builder.take_dirty()):
                return self._raced()
            self._position = position
            # the stored tree's right edge is in memory now: the next appends continue it
            self._feed, self._feed_expect, self._feed_position = builder, builder.size, position
        else:
            self._overlay = {k: (bytes(v[0]), v[1]) for k, v in builder.tiles.items()}
        return origin, builder.size, position

    def _raced(self) -> tuple[str, int, int]:
        """Another writer extended the tree meanwhile: take its state (it covers at least as much)."""
        origin, size, position = self._state()
        self._position = position
        return origin, size, position

    # ------------------------------------------------------------ heads and proofs
    def _tiles(self, size: int) -> _Tiles:
        return _Tiles(self.table, self._overlay, size)

    def head(self) -> TreeHead:
        """The head of the whole log, its root from the tiles, the tiles' tail checked against the records."""
        origin, size, position = self.catch_up()
        tiles = self._tiles(size)
        tiles.prefetch(_shape(lambda node: subtree_root(0, size, node)))
        return self._checked_head(origin, size, position, tiles)

    def _checked_head(self, origin: str, size: int, position: int, tiles: _Tiles) -> TreeHead:
        """The head of the ``size`` leaves up to ``position``, once the last partial level-0 tile is found
        to hold the leaves of the records (< 256 of them) and the full tiles under the root their parents' entries."""
        if size % TILE:
            hashes, first = tiles.tile((0, size >> _BITS))
            page = self.store.read_columns(first, TILE, past_head=True)
            leaves = [leaf_hash(seal_of(s)) for p, s in zip(page.positions, page.states) if p <= position]
            if b"".join(leaves) != hashes:
                raise ProofError(
                    f"the stored Merkle tree's last tile (from position {first}) disagrees with the records; run ledger verify"
                )
        return TreeHead(size, subtree_root(0, size, tiles.node), origin, position if size else None)

    def _head_at(
        self, origin: str, current: int, last: int, size: int, *walks: Callable[[Callable[[int, int], bytes]], object]
    ) -> tuple[TreeHead, _Tiles]:
        """The checked head of the whole tree, or of its first ``size`` leaves, with the tiles that it and
        ``walks`` (the proof's) need, read in one query."""
        tiles = self._tiles(current)
        tiles.prefetch(_shape(lambda node: subtree_root(0, current, node), lambda node: subtree_root(0, size, node), *walks))
        head = self._checked_head(origin, current, last, tiles)
        if size != current:
            head = TreeHead(size, subtree_root(0, size, tiles.node), origin)
        return head, tiles

    @staticmethod
    def _size(size: int | None, current: int, argument: str) -> int:
        if size is None:
            return current
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProofError(f"{argument}: expected a tree size >= 0, got {size!r}")
        if size > current:
            raise ProofError(f"{argument} {size} is larger than the log's tree ({current} leaves)")
        return size

    def leaf(self, position: int) -> tuple[int, bytes]:
        """(leaf index, leaf hash) of the record at ``position``, the hash computed from the record itself."""
        if isinstance(position, bool) or not isinstance(position, int) or position < 1:
            raise ProofError(f"position: expected a log position >= 1, got {position!r}")
        found = None
        for key, (hashes, first) in self._overlay.items():
            if key[0] == 0 and first <= position and (found is None or first > found[1]):
                found = (key[1], first)
        stored = self.table.tree_tile_at(position)
        if stored is not None and (found is None or stored[1] > found[1]):
            found = stored
        if found is None:
            raise ProofError(f"position {position}: no record of the tree's log is there")
        index, first = found
        page = self.store.read_columns(first, TILE, past_head=True)
        for offset, (p, state) in enumerate(zip(page.positions, page.states)):
            if p == position:
                return (index << _BITS) + offset, leaf_hash(seal_of(state))
        raise ProofError(f"position {position}: no record there (a rolled-back position, or past the log's tree)")

    def prove_inclusion(self, position: int, size: int | None = None) -> InclusionProof:
        """The inclusion proof of the record at ``position`` in the tree of ``size`` leaves (default: the whole log).

        Reads: the tree's state and the log's head, the record's tile and its records, every tile
        the proof and both roots need (one query), and the records of the last partial tile.
        """
        origin, current, last = self.catch_up()
        size = self._size(size, current, "size")
        index, leaf = self.leaf(position)
        if index >= size:
            raise ProofError(f"position {position} is leaf {index}, not in a tree of {size} leaves (size)")
        head, tiles = self._head_at(origin, current, last, size, lambda node: inclusion_path(index, size, node), lambda node: node(0, index))
        if tiles.node(0, index) != leaf:
            raise ProofError(f"the stored Merkle tree's leaf for position {position} is not its record's: run ledger verify")
        proof = InclusionProof(index, leaf, tuple(inclusion_path(index, size, tiles.node)), size, position)
        try:
            verify_inclusion(proof, head)
        except ProofError as exc:
            raise ProofError(f"the stored Merkle tree gives a proof that does not check ({exc}); run ledger verify") from None
        return proof

    def prove_consistency(self, old_size: int, size: int | None = None) -> tuple[ConsistencyProof, TreeHead, TreeHead]:
        """The consistency proof from the tree of ``old_size`` leaves to that of ``size`` (default: the whole log), with both heads."""
        origin, current, last = self.catch_up()
        size = self._size(size, current, "new_size")
        if isinstance(old_size, bool) or not isinstance(old_size, int) or old_size < 0:
            raise ProofError(f"old_size: expected a tree size >= 0, got {old_size!r}")
        if old_size > size:
            raise ProofError(f"old_size {old_size} is larger than the new size {size}")
        new, tiles = self._head_at(
            origin, current, last, size, lambda node: subtree_root(0, old_size, node), lambda node: consistency_path(old_size, size, node)
        )
        old = TreeHead(old_size, subtree_root(0, old_size, tiles.node), origin)
        proof = ConsistencyProof(old_size, size, tuple(consistency_path(old_size, size, tiles.node)))
        try:
            verify_consistency(proof, old, new)
        except ProofError as exc:
            raise ProofError(f"the stored Merkle tree gives a proof that does not check ({exc}); run ledger verify") from None
        return proof, old, new


class TileRebuild:
    """``verify``'s side: the tree rebuilt from the seals, compared tile by tile with the stored one.

    ``add`` every record up to the head in position order; ``finish`` reports, through
    ``problem(position, text)``, the first stored tile that differs from its rebuild, a stored
    tree that covers more leaves than the log holds, and a head (kept outside the store) that
    the log does not extend.
    """

    def __init__(self, table: TileTable, head: TreeHead | None) -> None:
        self.head = head
        self.state = table.tree_state()
        self.stored: dict[Key, tuple[str, int]] = {}
        self.leaves = 0
        self.head_root: bytes | None = None
        self.head_position = 0
        self._stack: list[tuple[int, bytes]] = []  # the right edge, for the head's root
        self.first_bad: tuple[Key, int] | None = None
        if self.state is not None:
            for level, index, first, hashes in table.tree_dump():
                self.stored[(level, index)] = (hashlib.sha256(hashes).hexdigest(), first)
        self.size = self.state[1] if self.state else 0
        self.builder = TileBuilder(0, {}, self._full)
        self.last_position = 0
        self.walked = 0

    def _full(self, key: Key, hashes: bytes, first: int) -> None:
        if self.builder.size < self.size:  # a tile completed while the stored tree still covers it
            self._compare(key, hashes, first)

    def _compare(self, key: Key, hashes: bytes, first: int) -> None:
        stored = self.stored.pop(key, None)
        if self.first_bad is None and stored != (hashlib.sha256(hashes).hexdigest(), first):
            self.first_bad = (key, first)

    def add(self, position: int, state: bytes, link: str | None = None) -> None:
        """Add the record at ``position``; ``link``: its ``link_hash`` when the caller has it already."""
        leaf = leaf_hash(seal_of(state) if link is None else bytes.fromhex(link))
        self.walked = position
        if self.leaves < self.size:
            self.builder.add(leaf, position)
            if self.leaves + 1 == self.size:
                self.last_position = position
                for key, (hashes, first) in list(self.builder.tiles.items()):
                    if len(hashes) < TILE * 32:  # the partial tiles at the stored size
                        self._compare(key, bytes(hashes), first)
        height, value = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            value = node_hash(self._stack.pop()[1], value)
            height += 1
        self._stack.append((height, value))
        self.leaves += 1
        if self.head is not None and self.leaves == self.head.size:
            self.head_root, self.head_position = self._root(), position

    def _root(self) -> bytes:
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value

    def finish(self, problem: Callable[[int, str], None]) -> None:
        if self.state is not None:
            origin, size, position = self.state
            if size > self.leaves:
                problem(
                    position,
                    f"the stored Merkle tree covers {size} records up to position {position}, the log holds only "
                    f"{self.leaves}: records were removed",
                )
            elif self.first_bad is not None:
                (level, index), first = self.first_bad
                problem(first, f"the stored Merkle tree's tile level {level} index {index} differs from the one rebuilt from the seals")
            elif size and position != self.last_position:
                problem(position, f"the stored Merkle tree says its last leaf is at position {position}, the log has it at {self.last_position}")
            elif self.stored:
                (level, index), (_, first) = min(self.stored.items())
                problem(first, f"the stored Merkle tree holds tile level {level} index {index}, beyond what the log gives it")
        head = self.head
        if head is None:
            return
        if self.state is not None and head.origin != self.state[0]:
            problem(max(1, self.last_position), f"the head is of log {head.origin!r}, this store is {self.state[0]!r}")
        if head.size > self.leaves:
            problem(
                self.walked + 1,
                f"the log holds {self.leaves} records, fewer than the {head.size} of the head kept earlier: its tail was removed",
            )
        elif head.size and self.head_root != head.root:
            problem(self.head_position, f"the log's first {head.size} records differ from the head kept earlier: the log was rewritten")

"""Integrity of the log: the seal of every record, the chains, and digests.

A pure function of the store: it needs no index and no entity classes, so it
runs on a log that cannot be replayed (that is when it is needed most).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from ledger.errors import DigestError, LedgerError, ProofError
from ledger.events.checkpoint import CheckpointHash
from ledger.events.decode import check_page
from ledger.events.digest import Digest, LogChain
from ledger.events.seal import GENESIS, SealCheck, check_seal, link_hash, unsealed, vouched_seal
from ledger.proofs import TreeHead
from ledger.store.index_check import compare_index, index_problems
from ledger.store.key_audit import key_problems, note_key_facts
from ledger.store.merkle import TileRebuild
from ledger.store.version_index import IndexRebuild

if TYPE_CHECKING:
    from ledger.store.base import EventStore, LogPage

__all__ = ["VerifyReport", "digest_store", "verify_store"]

_PAGE = 10_000


@dataclass
class VerifyReport:
    """The outcome of ``Ledger.verify()``: ``ok`` and one line per problem found."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    events_checked: int = 0
    first_bad_position: int | None = None
    #: PostgreSQL with concurrent writers (seal v3): the last position the checkpoints cover,
    #: and how many records after it only their stream chains (and a digest) vouch for.
    checkpointed_to: int | None = None
    unchecked_tail: int = 0

    def __bool__(self) -> bool:
        return self.ok


def _pages(store: EventStore) -> Iterator[LogPage]:
    """The log's pages as stored, oldest first, past the head too.

    Raw columns, not the recorder's converted rows: a damaged record must reach
    the checks below as it is, not raise inside a conversion.
    """
    start = 1
    while True:
        page = store.read_columns(start, _PAGE, past_head=True)
        yield page
        if len(page) < _PAGE:
            return
        start = page.positions[-1] + 1


def digest_store(store: EventStore) -> Digest:
    """The head position and chained hash of the log as it is now.

    Every record's seal is checked on the way (``decode.check_page``): a digest is kept
    as proof of the log as it stood, so it must never be taken over a damaged one. The
    first bad record is a ``CorruptLogError`` naming its position.
    """
    chain = LogChain()
    stop = store.head()
    start = 1
    while start <= stop:
        page = store.read_columns(start, min(_PAGE, stop - start + 1))
        if not len(page):
            break
        check_page(start, page.positions, page.stream_ids, page.versions, page.topics, page.states)
        for position, state in zip(page.positions, page.states):
            chain.add(position, state)
        start = page.positions[-1] + 1
    return chain.digest()


def verify_store(store: EventStore, digest: Digest | None = None, head: TreeHead | None = None) -> VerifyReport:
    """Check every record's seal, its stream chain and its link to the record before it.

    Problems are reported at their position, never raised: this runs exactly
    when the log may be damaged. With a ``digest``, also check that the log
    still reaches its position with the same chained hash (a truncated tail).
    The stored Merkle tree's tiles are rebuilt from the seals and compared
    (``merkle.TileRebuild``); with a ``head`` (a signed tree head kept outside the
    store), also check that the log's first ``head.size`` records have its root.
    """
    if digest is not None and not isinstance(digest, Digest):
        raise DigestError(f"digest: expected a ledger.Digest, got {type(digest).__name__}")
    if head is not None and not isinstance(head, TreeHead):
        raise ProofError(f"head: expected a ledger.proofs.TreeHead, got {type(head).__name__}")
    tree = TileRebuild(store.tree.table, head)
    tree_upto = store.head()  # the tree's leaves: records up to the head (PostgreSQL: the high-water mark)
    # The stored index is compared with a rebuild from the records up to the same head, fed the
    # pages this walk reads (one pass over the log). A record the rebuild cannot read was reported
    # by the walk: the index is then not judged.
    index: IndexRebuild | None = IndexRebuild() if store.index_state() is not None else None
    report = VerifyReport(ok=True)
    chain = LogChain()
    chain_at_digest: str | None = None
    streams: dict[str, tuple[int, str | None]] = {}  # stream (UUID.hex) -> (version, hash) of its last record
    previous_link, previous_position, sealed_with_position = GENESIS, 0, False
    sealed_v3 = sealed_v4 = False
    checkpoints = _Checkpoints(store.checkpoints())
    sessions = _Sessions()
    key_commitments: dict[UUID, tuple[int, str]] = {}  # key audit: lineage -> (position, key_check)
    erased: dict[UUID, int] = {}  # key audit: lineage -> position of entity.erased

    def problem(position: int, text: str) -> None:
        report.problems.append(f"position {position}: {text}")
        checkpoints.named_at(position)
        # Key audits and the digest report after the walk: the first bad position is the lowest.
        if report.first_bad_position is None or position < report.first_bad_position:
            report.first_bad_position = position

    for page in _pages(store):
        if index is not None:
            try:  # positions rise within a page: those up to the head are a prefix
                keep = bisect_right(page.positions, tree_upto)
                index.add_page(page.positions[:keep], page.stream_ids[:keep], page.versions[:keep], page.topics[:keep], page.states[:keep])
            except (LedgerError, TypeError):
                index = None
        # The page's seals are checked in bulk first (``unsealed``: byte comparisons and one SHA-256
        # each); a record it vouches for takes its seal's fields from its bytes (``vouched_seal``),
        # every other one is read the long way (``check_seal``). Both give the same SealCheck, so
        # every check below, and every line it reports, is the same for both.
        kinds: list[int] = []
        first = previous_position + 1 if type(previous_position) is int else 1 << 63
        unsealed(first, page.positions, page.stream_ids, page.versions, page.topics, page.states, kinds)
        for position, stream_text, version, topic, state, kind in zip(
            page.positions, page.stream_ids, page.versions, page.topics, page.states, kinds
        ):
            report.events_checked += 1
            if isinstance(state, str):
                state = state.encode("utf-8", "surrogateescape")
            own = state[-66:-2].decode() if kind else link_hash(state)  # a vouched record states its hash
            if isinstance(position, int):
                sessions.gap(previous_position, position)
                checkpoints.add(position, state, problem)
                if position <= tree_upto:
                    tree.add(position, state, own)
            if digest is not None and position <= digest.position:
                chain.add(position, state)
                if position == digest.position:
                    chain_at_digest = chain.value
            link, previous_link = previous_link, own
            after, previous_position = previous_position, position
            where = f"record of stream {str(stream_text)[:40]} v{str(version)[:20]}"
            if not state:
                problem(position, f"{where} has no payload")
                continue
            seal: SealCheck | None = None
            stream_id: UUID | None = None
            if kind:  # 32 lowercase hex digits, or the canonical text (unsealed checked): UUID.hex
                stream_key = stream_text if len(stream_text) == 32 else stream_text.replace("-", "")
                seal = vouched_seal(kind, state, position)
            else:
                try:
                    stream_id = UUID(str(stream_text))
                except ValueError:
                    problem(position, f"{where}: the stream id is not a UUID")
                    continue
                stream_key = stream_id.hex
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                problem(position, f"{where}: the stream version is not a positive integer")
                continue
            if seal is None:
                seal = check_seal(str(topic), UUID(stream_key) if stream_id is None else stream_id, version, state)
            if seal.version == 0:
                problem(position, f"{where} is not a sealed ledger event")
                continue
            if not seal.intact:
                what = "its payload, topic, stream id or stream version" if seal.version == 2 else "its payload"
                problem(position, f"{where} does not match its seal: {what} was edited")
            if seal.version == 4:
                sealed_with_position = sealed_v3 = sealed_v4 = True
                if seal.position != position:
                    problem(position, f"{where} was sealed for position {seal.position}: records were moved")
                elif store.kind != "postgresql":
                    problem(position, f"{where} carries a v4 seal, which only PostgreSQL's concurrent writers write: its link was removed")
                else:
                    sessions.add(position, seal, where, problem)
            elif seal.version == 3 and sealed_v4:
                problem(position, f"{where} carries a v3 seal after records sealed v4 (with their writer session): inserted or rewritten")
            elif seal.version == 3:
                sealed_with_position = sealed_v3 = True
                if seal.position != position:
                    problem(position, f"{where} was sealed for position {seal.position}: records were moved")
                elif store.kind != "postgresql":
                    problem(
                        position,
                        f"{where} carries a v3 seal (no link to the record before it), which only PostgreSQL's "
                        "concurrent writers write: its link was removed",
                    )
            elif seal.version == 2 and sealed_v3:
                problem(position, f"{where} carries a v2 seal after records sealed v3: inserted or rewritten")
            elif seal.version == 2:
                sealed_with_position = True
                if seal.position != position:
                    problem(position, f"{where} was sealed for position {seal.position}: records were moved, removed or inserted")
                elif seal.log_prev != link:
                    problem(
                        position,
                        f"{where} does not chain to the record before it in the log (position {after}): "
                        "a record was removed, inserted or replaced",
                    )
            elif sealed_with_position:
                problem(position, f"{where} carries an old (v1) seal after records sealed with their position: inserted or downgraded")
            try:
                payload = orjson.loads(state)
            except orjson.JSONDecodeError:
                problem(position, f"{where} is not valid JSON")
                continue
            if not isinstance(payload, dict):
                problem(position, f"{where} is not a JSON object")
                continue
            prev_hash = payload.get("prev_hash")
            note_key_facts(str(topic), payload, position, key_commitments, erased)
            last_version, last_hash = streams.get(stream_key, (0, None))
            if version != last_version + 1:
                problem(position, f"stream {UUID(stream_key)} jumps from v{last_version} to v{version} (a missing or reordered record)")
            elif prev_hash != last_hash:
                problem(
                    position,
                    f"stream {UUID(stream_key)} v{version} does not chain to the previous record of its stream "
                    "(a removed, replaced or reordered record)",
                )
            streams[stream_key] = (version, seal.stated)
    checkpoints.finish(problem)
    sessions.finish(checkpoints.rows, store.head(), problem)
    tree.finish(problem)
    if previous_position > store.head():  # the high-water mark after the walk: every writer's position is below it
        problem(
            previous_position,
            f"the log holds a record at position {previous_position}, past every position writers were given "
            f"({store.head()}): it was inserted",
        )
    if checkpoints.rows or sealed_v3:
        report.checkpointed_to = checkpoints.covered
        report.unchecked_tail = checkpoints.tail
    for position, text in key_problems(store, key_commitments, erased):
        if position:
            problem(position, text)
        else:  # a key row that belongs to no position (its lineage id is not even a UUID)
            report.problems.append(f"key row: {text}")
    for position, text in _derived_problems(store, index, tree_upto):
        problem(position, text)
    if digest is not None:
        _check_digest(digest, chain, chain_at_digest, problem)
    report.ok = not report.problems
    return report


def _derived_problems(store: EventStore, index: IndexRebuild | None, head: int) -> list[tuple[int, str]]:
    """The stored index's rows (versions, erasures, trees, memo keys) that a rebuild from the log
    would not give. Derived state is served by keyed reads (a memo row picks the execution a
    cached call reuses), so an edit of it alone must not pass ``verify``. A log the rebuild
    cannot read was already reported record by record: the index is then not judged (``index``
    is None; so it is for a store that keeps no index)."""
    if index is None:
        return []
    try:
        check = compare_index(store, index.rows, head)
    except LedgerError:
        return []
    return [] if check is None else index_problems(check)


#: How many missing positions of one gap ``verify`` names one by one before it counts the rest.
_NAMED_MISSING = 100


class _Sessions:
    """Seal v4's links, which hold whatever checkpoint rows are removed (``seal.SessionLink``).

    Each writer session (a server connection) chains its committed records: a record names its
    session's previous record by position and hash, so removing any record but a session's last
    breaks the chain at the removed record's own position. Each record also names the last
    checkpoint when its batch began: a removed checkpoint row leaves that name dangling, and the
    positions of its range that hold no record (rolled back, or removed with it: with the row
    gone nothing tells them apart) are named.
    """

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, str | None]] = {}  # session -> (position, hash) of its last record
        self.named: dict[int, int] = {}  # checkpoint hi -> first position that names it
        self.gaps: list[tuple[int, int]] = []  # empty positions [a, b] between records, in order
        self.end = 0  # the last record's position

    def gap(self, before: int, position: int) -> None:
        self.end = position
        if position > before + 1:
            self.gaps.append((before + 1, position - 1))

    def add(self, position: int, seal: SealCheck, where: str, problem: Any) -> None:
        link = seal.session
        assert link is not None
        if link.checkpoint >= position:
            problem(position, f"{where} names checkpoint ..{link.checkpoint}, which cannot precede it: it was rewritten")
        elif link.checkpoint:
            self.named.setdefault(link.checkpoint, position)
        last = self.last.get(link.session)
        if (link.after, link.prev) != ((0, None) if last is None else last):
            if link.after >= position:
                problem(position, f"{where} names a later record of its writer session ({link.after}): it was rewritten")
            elif (last is None and link.after) or (last is not None and link.after > last[0]):
                problem(
                    link.after,
                    f"the record is missing: the record at position {position}, of the same writer session, was "
                    "sealed after it (it was removed)",
                )
            else:
                problem(
                    position,
                    f"{where} does not chain to the previous record of its writer session (position "
                    f"{link.after}): a record was replaced or inserted",
                )
        self.last[link.session] = (position, seal.stated)

    def finish(self, rows: list[tuple[int, int, int, str, list[int]]], head: int, problem: Any) -> None:
        """Report checkpoints that records name and ``ledger_checkpoints`` no longer holds."""
        present = {hi for _, hi, *_ in rows}
        missing = sorted(hi for hi in self.named if hi not in present)
        if not missing:
            return
        gaps = self.gaps + ([(self.end + 1, head)] if self.end < head else [])
        known = sorted(present | set(self.named))
        for hi in missing:
            lo = max((k for k in known if k < hi), default=0)
            problem(
                self.named[hi],
                f"the record names checkpoint {lo + 1}..{hi}, which is no longer in the store: checkpoint rows were removed",
            )
            named = 0
            for a, b in gaps:
                for empty in range(max(a, lo + 1), min(b, hi) + 1):
                    if named == _NAMED_MISSING:
                        break
                    problem(
                        empty,
                        f"no record, and the checkpoint that covered it ({lo + 1}..{hi}) was removed: "
                        "a rolled-back batch, or a record removed with it",
                    )
                    named += 1


class _Checkpoints:
    """Recomputes each checkpoint row (``events.checkpoint``) from the records as the walk meets them.

    A row also lists its holes (positions rolled back before it was made), so a record removed
    from a checkpointed range is named at its position, and one inserted into a hole too.
    """

    def __init__(self, rows: list[tuple[int, int, int, str, list[int]]]) -> None:
        self.rows = rows
        self.covered = rows[-1][1] if rows else 0
        self.tail = 0  # records past the last checkpoint
        self._next = 0  # the row being recomputed
        self._hash: CheckpointHash | None = None
        self._prev: str | None = None
        self._expected = 0  # the next position the open row's range should hold
        self._holes: set[int] = set()
        self._named = False  # a problem of the open row was named at its position

    def _open(self, problem: Any) -> None:
        lo, hi, _, _, holes = self.rows[self._next]
        expected_lo = self.rows[self._next - 1][1] if self._next else 0
        if lo != expected_lo:
            problem(
                expected_lo + 1,
                f"the checkpoint of positions {lo + 1}..{hi} does not start where the one before it "
                f"ended (position {expected_lo}): a checkpoint row was removed or edited",
            )
        self._hash = CheckpointHash(self._prev, lo, hi)
        self._expected, self._holes, self._named = lo + 1, set(holes), False

    def _missing_until(self, position: int, problem: Any) -> None:
        """Positions of the open row skipped before ``position`` that were records when it was made
        (named one by one up to ``_NAMED_MISSING``, then counted: an edited row may claim any range)."""
        named = 0
        for missing in range(self._expected, position):
            if missing in self._holes:
                continue
            self._named = True
            if named == _NAMED_MISSING:
                rest = position - missing - sum(1 for h in self._holes if missing <= h < position)
                problem(missing, f"{rest} more positions up to {position - 1} are missing, or the checkpoint row was edited")
                break
            problem(missing, "the record is missing: it was in the log when its checkpoint was made, and removed since")
            named += 1
        self._expected = position + 1

    def _close(self, problem: Any) -> None:
        lo, hi, records, stated, _ = self.rows[self._next]
        assert self._hash is not None
        self._missing_until(hi + 1, problem)
        if not self._named:
            if self._hash.records != records:
                problem(
                    lo + 1,
                    f"positions {lo + 1}..{hi} hold {self._hash.records} records, their checkpoint counted {records}: "
                    "records were removed or inserted, or the checkpoint row was edited",
                )
            elif self._hash.hexdigest() != stated:
                problem(
                    lo + 1,
                    f"positions {lo + 1}..{hi} differ from their checkpoint: a record was replaced or moved, "
                    "or a checkpoint row was edited",
                )
        self._prev = stated
        self._next += 1
        self._hash = None

    def named_at(self, position: int) -> None:
        """A problem was named at ``position``: the open row's mismatch needs no line of its own."""
        if self._hash is not None and self._hash.lo < position <= self._hash.hi:
            self._named = True

    def add(self, position: int, state: bytes, problem: Any) -> None:
        while self._next < len(self.rows):
            if self._hash is None:
                self._open(problem)
            if position <= self.rows[self._next][1]:
                self._missing_until(position, problem)
                if position in self._holes:
                    problem(position, "a record fills a position that was empty when its checkpoint was made: it was inserted")
                    self._named = True
                assert self._hash is not None  # _open above made it; nothing since closes it
                self._hash.add(position, state)
                return
            self._close(problem)
        self.tail += 1

    def finish(self, problem: Any) -> None:
        """Close the rows the walk did not reach (their records were removed: a truncated log)."""
        while self._next < len(self.rows):
            if self._hash is None:
                self._open(problem)
            self._close(problem)


def _check_digest(
    digest: Digest, chain: LogChain, chain_at_digest: str | None, problem: Any
) -> None:
    """Compare the log walked so far with a digest saved earlier."""
    if digest.position == 0:
        return
    if chain_at_digest is None:
        missing = chain.position + 1 if chain.position < digest.position else digest.position
        problem(
            missing,
            f"the log no longer holds position {missing}; the digest was taken at position "
            f"{digest.position} (a truncated tail or removed record)",
        )
    elif chain_at_digest != digest.chain:
        problem(
            digest.position,
            f"the log up to position {digest.position} differs from the digest "
            "(chained hash mismatch: a record was removed, replaced or rewritten)",
        )



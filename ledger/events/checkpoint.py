"""Checkpoints: the whole-log chain of a log whose writers take positions concurrently.

Seal v2 links every record to the one before it in the log, which needs the writer to know
that record when it seals: one writer at a time. PostgreSQL's writers take positions from a
sequence and commit in any order (seal v3, ``seal.seal_at``), so the link moves out of the
records into checkpoint rows. A checkpoint covers the positions ``(lo, hi]`` up to the
high-water mark when it was made, and hashes

    "entity-ledger checkpoint v1\\n" prev "\\n" lo "\\n" hi "\\n" then "position hash\\n" per record

where ``prev`` is the previous checkpoint's hash (64 zeros for the first, whose ``lo`` is 0) and
``hash`` each record's as ``seal.link_hash`` reads it. Each checkpoint therefore commits to
every record of its range, to the holes between them (rolled-back batches, which no later
record can fill) and to every checkpoint before it: a record removed, inserted or replaced
inside a checkpointed range, a checkpoint row removed or edited, fails ``Ledger.verify``.
Records after the last checkpoint are covered by their stream chains and, like a truncated
tail, by a digest kept outside the store. ``ledger.store.pg_append`` computes the same hash
in SQL; ``tests/test_pg_concurrent.py`` holds the two to each other.
"""

from __future__ import annotations

import hashlib

from ledger.events.seal import GENESIS, link_hash

__all__ = ["CheckpointHash"]

_TAG = b"entity-ledger checkpoint v1\n"


class CheckpointHash:
    """The running hash of one checkpoint's range; ``add`` each record in position order."""

    __slots__ = ("lo", "hi", "records", "_sha")

    def __init__(self, prev: str | None, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi
        self.records = 0
        self._sha = hashlib.sha256(b"%s%s\n%d\n%d\n" % (_TAG, (prev or GENESIS).encode(), lo, hi))

    def add(self, position: int, state: bytes | None) -> None:
        self._sha.update(b"%d %s\n" % (position, link_hash(state).encode()))
        self.records += 1

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

"""Integrity of the log: the seal of every record, the chains, and digests.

A pure function of the store: it needs no index and no entity classes, so it
runs on a log that cannot be replayed (that is when it is needed most).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from .digest import Digest, LogChain
from .errors import DigestError
from .events import open_sealed
from .key_audit import key_problems, note_key_facts

if TYPE_CHECKING:
    from .store import EventStore

__all__ = ["VerifyReport", "digest_store", "verify_store"]


@dataclass
class VerifyReport:
    """The outcome of ``Ledger.verify()``: ``ok`` and one line per problem found."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    events_checked: int = 0
    first_bad_position: int | None = None

    def __bool__(self) -> bool:
        return self.ok


def digest_store(store: EventStore) -> Digest:
    """The head position and chained hash of the log as it is now."""
    chain = LogChain()
    for n in store.iter_all(stop=store.head()):
        chain.add(n.id, n.state)
    return chain.digest()


def verify_store(store: EventStore, digest: Digest | None = None) -> VerifyReport:
    """Walk the whole log: each record's own hash, its chain link, stream order."""
    if digest is not None and not isinstance(digest, Digest):
        raise DigestError(f"digest: expected a ledger.digest.Digest, got {type(digest).__name__}")
    report = VerifyReport(ok=True)
    chain = LogChain()
    chain_at_digest: str | None = None
    heads: dict[Any, tuple[int, str | None]] = {}
    key_commitments: dict[UUID, tuple[int, str]] = {}  # key audit: lineage -> (position, key_check)
    erased: dict[UUID, int] = {}  # key audit: lineage -> position of entity.erased

    def problem(position: int, text: str) -> None:
        report.problems.append(f"position {position}: {text}")
        if report.first_bad_position is None:
            report.first_bad_position = position

    for n in store.iter_all():
        report.events_checked += 1
        if digest is not None and n.id <= digest.position:
            chain.add(n.id, n.state)
            if n.id == digest.position:
                chain_at_digest = chain.value
        stated, actual = open_sealed(n.state)
        if stated is None:
            problem(n.id, f"record of stream {n.originator_id} is not a sealed ledger event")
            continue
        if stated != actual:
            problem(n.id, f"record of stream {n.originator_id} v{n.originator_version} was edited (hash mismatch)")
        try:
            body = orjson.loads(n.state)
            prev_hash = body.get("prev_hash")
        except orjson.JSONDecodeError:
            problem(n.id, f"record of stream {n.originator_id} is not valid JSON")
            continue
        note_key_facts(n.topic, body, n.id, key_commitments, erased)  # key audit (ledger/key_audit.py)
        version, last_hash = heads.get(n.originator_id, (0, None))
        if n.originator_version != version + 1:
            problem(
                n.id,
                f"stream {n.originator_id} jumps from v{version} to v{n.originator_version} "
                "(a missing or reordered record)",
            )
        elif prev_hash != last_hash:
            problem(
                n.id,
                f"stream {n.originator_id} v{n.originator_version} does not chain to the "
                "previous record (a removed, replaced or reordered record)",
            )
        heads[n.originator_id] = (n.originator_version, stated)
    for position, text in key_problems(store, key_commitments, erased):  # key audit
        problem(position, text)
    if digest is not None:
        _check_digest(digest, chain, chain_at_digest, problem)
    report.ok = not report.problems
    return report


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



"""A digest of the whole log, to be kept outside the store.

The seals (``events.seal_batch``: each record linked to its stream and to the
record before it in the log) catch an edited, removed, inserted or reordered
record, but not a *removed tail*: deleting the newest records leaves every
remaining seal and link intact. A digest saved earlier closes that gap, as ledger
databases do: it holds the head position and a hash chained over every
event's hash in position order, so a log that no longer reaches that position,
or reaches it with a different history, fails ``Ledger.verify(digest)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from ledger.errors import DigestError
from ledger.events.seal import link_hash

__all__ = ["Digest", "LogChain"]


class LogChain:
    """Folds event hashes, in position order, into one running hash.

    ``chain_n = sha256(chain_{n-1} || hash_n)``, starting from the empty
    string; the running value after position ``n`` commits to every event up
    to ``n`` and to their order.
    """

    __slots__ = ("position", "head_hash", "value")

    def __init__(self) -> None:
        self.position = 0
        self.head_hash = ""
        self.value = ""

    def add(self, position: int, state: bytes) -> None:
        own = link_hash(state)  # a record that states no hash counts by the hash of its bytes
        self.value = hashlib.sha256((self.value + own).encode("ascii", "replace")).hexdigest()
        self.position = position
        self.head_hash = own

    def digest(self) -> Digest:
        return Digest(position=self.position, head_hash=self.head_hash, chain=self.value)


@dataclass(frozen=True)
class Digest:
    """The head of a log: its position, that event's hash, and the chained hash of all events."""

    position: int
    head_hash: str
    chain: str

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Digest:
        """Read a digest written by ``to_json``; anything else raises ``DigestError``."""
        try:
            data: Any = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise DigestError(f"text: not a ledger digest, invalid JSON ({exc})") from None
        if not isinstance(data, dict) or set(data) != {"position", "head_hash", "chain"}:
            raise DigestError(
                f"text: not a ledger digest; expected keys position, head_hash, chain, got {data!r}"[:300]
            )
        position, head_hash, chain = data["position"], data["head_hash"], data["chain"]
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise DigestError(f"text: digest position must be an integer >= 0, got {position!r}")
        for key, value in (("head_hash", head_hash), ("chain", chain)):
            if not isinstance(value, str) or (value and len(value) != 64):
                raise DigestError(f"text: digest {key} must be a 64-character hex string, got {value!r}")
        return cls(position=position, head_hash=head_hash, chain=chain)

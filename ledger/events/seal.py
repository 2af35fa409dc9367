"""How events are sealed into bytes, and how a seal is checked.

An event's body (``bodies.py``) is stored as orjson bytes. Each stored event ends with its seal (v2): ``prev_hash`` (the
previous event of the same stream), ``log_prev`` (the previous event in the
whole log), ``position`` and ``hash``, the SHA-256 of its topic, stream id,
stream version and bytes. Editing any of them, or removing, inserting or
reordering a record, therefore breaks a seal or a link that
``Ledger.verify()`` walks. Records written before seal v2 end with ``prev_hash``
and ``hash`` over their bytes alone (``open_sealed``), and still verify.

Seal v3 (``seal_at``) is v2 without ``log_prev``: what PostgreSQL writers seal, since they
take positions concurrently and no writer knows which record will precede its own when the
transactions commit. The whole-log chain of a v3 log is kept by checkpoints instead
(``ledger.events.checkpoint``): each commits to the positions of a range, holes
(rolled-back positions) included, and to the previous checkpoint.

Seal v4 (``seal_at`` with a ``SessionLink``) is v3 plus what lets a removed record be found
whatever checkpoint rows were removed with it: each record names its writer *session* (one
server connection: a random id), the position and hash of the session's previous record
(``session_after``, ``session_prev``: a chain per connection, which advances only when a
transaction commits, so rolled-back batches leave holes but no break), and the last checkpoint
that existed when its batch began (``checkpoint``: a removed checkpoint row leaves that
reference dangling). Writers stay lock-free: a session's chain is its own connection's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

__all__ = [
    "GENESIS",
    "NewEvent",
    "SealCheck",
    "SessionLink",
    "check_seal",
    "link_hash",
    "open_sealed",
    "seal_at",
    "seal_batch",
    "unsealed",
    "vouched_seal",
]


class NewEvent:
    """An event on its way into the log.

    ``body`` is the event's JSON without its seal; the store fills ``state``
    (the sealed bytes) and ``hash`` inside the append transaction, once the
    event's position and its predecessor in the log are known.
    ``prev_hash`` is the hash of the stream's last event before this batch.
    ``ecs_id`` is the version an ``entity.version`` event records, when the writer
    knows it (the store's version index then need not read it back from ``body``), and
    ``members`` the versions of its tree when it is a root version (``()`` when it is
    not; None leaves the store to work it out from ``body``).
    """

    __slots__ = ("stream_id", "version", "topic", "body", "prev_hash", "state", "hash", "ecs_id", "members")

    def __init__(
        self,
        stream_id: UUID,
        version: int,
        topic: str,
        body: bytes,
        prev_hash: str | None,
        ecs_id: UUID | None = None,
        members: tuple[UUID, ...] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.version = version
        self.topic = topic
        self.body = body
        self.prev_hash = prev_hash
        self.state = b""
        self.hash = ""
        self.ecs_id = ecs_id
        self.members = members


#: ``log_prev`` of the first event of a log.
GENESIS = "0" * 64
_SEAL_TAG = b"entity-ledger seal v2\n"
_SEAL_TAG_V3 = b"entity-ledger seal v3\n"
_SEAL_TAG_V4 = b"entity-ledger seal v4\n"
_HASH_TAIL = len(b'"}') + 64  # a sealed record ends with "hash":"<64 hex>"}
_HEX = frozenset(b"0123456789abcdef")
_V2_TAIL = re.compile(rb',"log_prev":"([0-9a-f]{64})","position":(\d{1,19}),"hash":"([0-9a-f]{64})"\}\Z')
_V3_TAIL = re.compile(rb',"prev_hash":(?:null|"[0-9a-f]{64}"),"position":([1-9]\d{0,18}),"hash":"([0-9a-f]{64})"\}\Z')
_V4_TAIL = re.compile(
    rb',"prev_hash":(?:null|"[0-9a-f]{64}"),"session":"([0-9a-f]{32})","session_after":(0|[1-9]\d{0,18}),'
    rb'"session_prev":(null|"[0-9a-f]{64}"),"checkpoint":(0|[1-9]\d{0,18}),"position":([1-9]\d{0,18}),"hash":"([0-9a-f]{64})"\}\Z'
)
#: v4's session fields, between ``prev_hash`` and ``position`` (the fast path checks them in place)
_V4_LINKS = re.compile(
    rb',"session":"[0-9a-f]{32}","session_after":(?:0|[1-9]\d{0,18}),"session_prev":(?:null|"[0-9a-f]{64}"),'
    rb'"checkpoint":(?:0|[1-9]\d{0,18})'
)
_V1_SUFFIX_LEN = len(b',"hash":"') + 64 + len(b'"}')
_NO_TOPIC = object()  # seal_batch's "no topic yet": unequal to any event's topic


def _seal_header(topic: str, stream_id: UUID, version: int, tag: bytes = _SEAL_TAG) -> bytes:
    """What the record's bytes cannot say for themselves: where the store keeps it."""
    return b"%s%s\n%s\n%d\n" % (tag, topic.encode(), stream_id.hex.encode(), version)


def seal_batch(events: Sequence[NewEvent], first_position: int, log_prev: str) -> str:
    """Seal a batch at the positions the store is about to give it (seal v2).

    Each record gains ``prev_hash`` (its stream's previous record), ``log_prev``
    (the previous record in the whole log), ``position`` and ``hash``: the
    SHA-256 of a header naming its topic, stream id and stream version followed
    by its bytes. An edit of any of them, a record moved to another position,
    removed from or inserted into the log therefore breaks a seal or a link
    that ``verify`` checks. Called by the store inside its append transaction,
    while no other writer can take positions. Returns the last record's hash.

    The bytes are those of ``_seal_header`` + the record as ``check_seal`` reads
    it; the loop is written for the append path (every event of every batch passes
    here, and the hash itself is only about a third of the time): links kept as
    bytes, streams keyed by their int (``UUID.__hash__`` is Python code), the
    header's stream id as ``UUID.hex`` spells it (``%032x`` of the int), and one
    buffer hashed in a single call.
    """
    sha256 = hashlib.sha256
    stream_last: dict[int, bytes] = {}  # stream (UUID.int) -> '"<hash>"' of its last record in this batch
    link = log_prev.encode()
    digest = log_prev
    topic: object = _NO_TOPIC
    prefix = b""
    position = first_position
    for e in events:
        stream = e.stream_id.int
        if e.topic != topic:
            topic = e.topic
            prefix = b"%s%s\n" % (_SEAL_TAG, e.topic.encode())
        prev = stream_last.get(stream)
        if prev is None:
            prev = b"null" if e.prev_hash is None else b'"%s"' % e.prev_hash.encode()
        head = e.body[:-1] + b',"prev_hash":%s,"log_prev":"%s","position":%d' % (prev, link, position)
        e.hash = digest = sha256(b"%s%032x\n%d\n%s}" % (prefix, stream, e.version, head)).hexdigest()
        link = digest.encode()
        e.state = head + b',"hash":"' + link + b'"}'
        stream_last[stream] = b'"%s"' % link
        position += 1
    return digest


@dataclass(frozen=True, slots=True)
class SessionLink:
    """Where a batch joins its writer session's chain (seal v4).

    ``session``: the connection's id (32 hex digits); ``after`` and ``prev``: the position and
    hash of the session's last committed record (0 and None for its first batch);
    ``checkpoint``: the last checkpoint row's ``hi`` when the batch began (0: none yet).
    """

    session: str
    after: int
    prev: str | None
    checkpoint: int

    @classmethod
    def parse(cls, chain: str | None, checkpoint: int, new_session: str) -> SessionLink:
        """The link a batch takes from its connection's chain setting (``"<session>:<after>:<prev>"``,
        empty or None before the connection's first commit; ``new_session`` then names it)."""
        if not chain:
            return cls(new_session, 0, None, checkpoint)
        session, after, prev = chain.split(":")
        return cls(session, int(after), prev or None, checkpoint)

    def setting(self, position: int, hash_: str) -> str:
        """The connection's chain setting once a batch ending at ``position`` with ``hash_`` commits."""
        return f"{self.session}:{position}:{hash_}"


def seal_at(events: Sequence[NewEvent], positions: Sequence[int], session: SessionLink | None = None) -> None:
    """Seal a batch at the positions PostgreSQL allocated for it (seal v3: no ``log_prev``).

    Each record gains ``prev_hash`` (its stream's previous record), ``position`` and
    ``hash``, the SHA-256 of a v3 header (topic, stream id, stream version) and its bytes.
    Positions need not follow the log's last record: concurrent writers take them from a
    sequence, and a rolled-back batch leaves a hole. The whole-log chain is the
    checkpoints' job (``ledger.events.checkpoint``).

    With a ``session`` (seal v4), each record also names its writer session, the session's
    previous record (the batch's own previous record after the first) and the checkpoint the
    batch followed: ``ledger_append_v3`` seals the same bytes.
    """
    sha256 = hashlib.sha256
    stream_last: dict[int, bytes] = {}
    tag = _SEAL_TAG_V3 if session is None else _SEAL_TAG_V4
    if session is not None:
        links = b',"session":"%s","session_after":%%d,"session_prev":%%s,"checkpoint":%d' % (session.session.encode(), session.checkpoint)
        after = session.after
        sprev = b"null" if session.prev is None else b'"%s"' % session.prev.encode()
    for e, position in zip(events, positions, strict=True):
        stream = e.stream_id.int
        prev = stream_last.get(stream)
        if prev is None:
            prev = b"null" if e.prev_hash is None else b'"%s"' % e.prev_hash.encode()
        if session is None:
            head = e.body[:-1] + b',"prev_hash":%s,"position":%d' % (prev, position)
        else:
            head = e.body[:-1] + b',"prev_hash":%s%s,"position":%d' % (prev, links % (after, sprev), position)
        e.hash = sha256(b"%s%s\n%032x\n%d\n%s}" % (tag, e.topic.encode(), stream, e.version, head)).hexdigest()
        e.state = head + b',"hash":"' + e.hash.encode() + b'"}'
        stream_last[stream] = b'"%s"' % e.hash.encode()
        if session is not None:
            after, sprev = position, b'"%s"' % e.hash.encode()


def link_hash(state: bytes | str | None) -> str:
    """The hash the next record in the log chains to.

    A record's stated hash; for a record that states none (damaged, or not
    ours) the SHA-256 of its bytes, so writers and ``verify`` agree on a link
    even past a bad record.
    """
    if isinstance(state, str):
        state = state.encode("utf-8", "surrogateescape")
    state = state or b""
    tail = state[-_HASH_TAIL:-2]
    if len(tail) == 64 and state.endswith(b'"}') and _HEX.issuperset(tail):
        return tail.decode()
    return hashlib.sha256(state).hexdigest()


_HEX_DIGITS = b"0123456789abcdef"  # what bytes.translate deletes: anything left is not lowercase hex


def unsealed(
    first: int,
    positions: Sequence[int],
    stream_ids: Sequence[Any],
    versions: Sequence[Any],
    topics: Sequence[Any],
    states: Sequence[Any],
    kinds: list[int] | None = None,
) -> list[int]:
    """The indexes of a page's records this fast path cannot vouch for; ``check_seal`` must look at those.

    It vouches for a record that ``check_seal`` would find v2 and intact, that states
    its own position, and whose position follows the record before it (``first`` for
    the first one), and for an intact v3 record whose position is above the record
    before it (v3 logs have holes where a batch rolled back): the bulk readers' check (``decode.check_page``, on every page a
    projection reads). What it leaves is examined closely by the caller: a v1 record,
    a damaged one, a stream id that is not a UUID's plain text, a position written
    with leading zeros, a gap.

    The stream ids are checked once per page (each a UUID's 32 lowercase hex digits, or
    its canonical text, whose digits the header takes as they are, as ``UUID.hex``
    would give them); per record, the v2 tail is checked in place with a few byte
    comparisons (``_V2_TAIL`` matched character by character cost more than the hash),
    and the hash is computed over the same bytes as in ``check_seal``.

    ``kinds``, when given, receives each record's seal version as this path read it (2, 3 or 4;
    0 for a suspect), so ``verify`` can take the seal's other fields without a second hash
    (``vouched_seal``).
    """
    count = len(positions)
    digits = _plain_hex(stream_ids)
    if digits is None:
        if kinds is not None:
            kinds.extend([0] * count)
        return list(range(count))
    suspects = []
    prefixes: dict[Any, tuple[bytes, bytes, bytes]] = {}
    sha256 = hashlib.sha256
    expected = first
    for i, (position, version, topic, state) in enumerate(zip(positions, versions, topics, states)):
        prefix = prefixes.get(topic)
        if prefix is None and type(topic) is str and topic:
            encoded = topic.encode()
            prefix = prefixes[topic] = (
                b"%s%s\n" % (_SEAL_TAG, encoded),
                b"%s%s\n" % (_SEAL_TAG_V3, encoded),
                b"%s%s\n" % (_SEAL_TAG_V4, encoded),
            )
        if (
            prefix is None
            or type(position) is not int
            or position < expected
            or type(version) is not int
            or version < 1
            or type(state) is not bytes
            or not state.endswith(b'"}')
        ):
            suspects.append(i)
            kind = 0
        else:
            end = len(state) - 75  # where ',"hash":"' starts
            mid = b'","position":%d,"hash":"' % position
            cut = end - len(mid) + 9  # v2: just after log_prev's 64 hex digits
            if position == expected and cut >= 77 and state.startswith(mid, cut) and state.startswith(b',"log_prev":"', cut - 77):
                tag, kind = prefix[0], 2  # v2: its position follows the record before it
                ok = not state[cut - 64 : cut].translate(None, _HEX_DIGITS)
            else:  # v3 or v4: no log_prev; positions only rise (a rolled-back batch leaves a hole)
                tag, kind = prefix[1], 3
                cut += 1  # just after prev_hash's value (v3) or the checkpoint's number (v4)
                ok = position >= 1 and state.startswith(mid[1:], cut)
                if ok and 48 <= state[cut - 1] <= 57:  # a digit: v4, the session's links before it
                    tag, kind = prefix[2], 4
                    links = state.rfind(b',"session":"', max(0, cut - 260), cut)
                    ok = links > 0 and _V4_LINKS.fullmatch(state, links, cut) is not None
                    cut = links
                ok = ok and (
                    state.startswith(b',"prev_hash":null', cut - 17)
                    or (
                        state.startswith(b',"prev_hash":"', cut - 79)
                        and state[cut - 1] == 34  # '"'
                        and not state[cut - 65 : cut - 1].translate(None, _HEX_DIGITS)
                    )
                )
            if (
                not ok
                or sha256(b"%s%s\n%d\n%s}" % (tag, digits[32 * i : 32 * i + 32], version, state[:end])).hexdigest().encode()
                != state[-66:-2]
            ):
                suspects.append(i)
                kind = 0
        if kinds is not None:
            kinds.append(kind)
        expected = position + 1 if type(position) is int else 1 << 63  # after a bad position: every next one is looked at
    return suspects


def _plain_hex(stream_ids: Sequence[Any]) -> bytes | None:
    """Every id's 32 hex digits, one after the other, when each is a UUID's plain lowercase text; else None.

    Plain: 32 hex digits (how SQLite keeps them) or the canonical 8-4-4-4-12 text (PostgreSQL),
    the same form for the whole page.
    """
    count = len(stream_ids)
    try:
        size = min(map(len, stream_ids)) if count else 0
        if size not in (32, 36) or max(map(len, stream_ids)) != size:
            return None
        joined = "".join(stream_ids)
    except TypeError:  # an id that is not text
        return None
    if not joined.isascii():
        return None
    raw = joined.encode()
    if size == 36:
        dashes = b"-" * count
        if raw[8::36] != dashes or raw[13::36] != dashes or raw[18::36] != dashes or raw[23::36] != dashes:
            return None
        raw = raw.replace(b"-", b"")
        if len(raw) != 32 * count:
            return None
    return None if raw.translate(None, _HEX_DIGITS) else raw


@dataclass(frozen=True, slots=True)
class SealCheck:
    """What a stored record's seal says and whether its bytes agree.

    ``version`` is 4 for v3 records that also chain their writer session's records and name the
    checkpoint their batch followed (``SessionLink``), 3 for records sealed with their position but no link to the record
    before them (PostgreSQL's concurrent writers; checkpoints chain the log), 2 for
    records sealed with their place in the log, 1 for records written before (stream
    chain only), 0 for bytes that carry no seal.
    """

    version: int
    stated: str | None
    actual: str | None
    log_prev: str | None = None
    position: int | None = None
    #: seal v4: the writer session's chain and the checkpoint the record's batch followed
    session: SessionLink | None = None

    @property
    def intact(self) -> bool:
        return self.stated is not None and self.stated == self.actual


def check_seal(topic: str, stream_id: UUID, version: int, state: bytes) -> SealCheck:
    """Recompute a stored record's hash from its bytes and its place in the store."""
    match = _V2_TAIL.search(state, max(0, len(state) - 220))
    if match is not None:
        stated = match.group(3).decode()
        raw = state[: match.start(3) - len(b',"hash":"')] + b"}"
        actual = hashlib.sha256(_seal_header(topic, stream_id, version) + raw).hexdigest()
        return SealCheck(2, stated, actual, match.group(1).decode(), int(match.group(2)))
    match = _V4_TAIL.search(state, max(0, len(state) - 420))
    if match is not None:
        stated = match.group(6).decode()
        raw = state[: match.start(6) - len(b',"hash":"')] + b"}"
        actual = hashlib.sha256(_seal_header(topic, stream_id, version, _SEAL_TAG_V4) + raw).hexdigest()
        return SealCheck(4, stated, actual, None, int(match.group(5)), _session_link(match))
    match = _V3_TAIL.search(state, max(0, len(state) - 240))
    if match is not None:
        stated = match.group(2).decode()
        raw = state[: match.start(2) - len(b',"hash":"')] + b"}"
        actual = hashlib.sha256(_seal_header(topic, stream_id, version, _SEAL_TAG_V3) + raw).hexdigest()
        return SealCheck(3, stated, actual, None, int(match.group(1)))
    stated_v1, actual_v1 = open_sealed(state)
    return SealCheck(0 if stated_v1 is None else 1, stated_v1, actual_v1)


def _session_link(match: re.Match[bytes]) -> SessionLink:
    """The writer session's link a ``_V4_TAIL`` match states."""
    prev = match.group(3)
    return SessionLink(match.group(1).decode(), int(match.group(2)), None if prev == b"null" else prev[1:-1].decode(), int(match.group(4)))


def vouched_seal(kind: int, state: bytes, position: int) -> SealCheck | None:
    """What ``check_seal`` says of a record ``unsealed`` vouched for as seal ``kind``, without hashing it again.

    ``unsealed`` checked the tail's layout and recomputed the hash, so the stated hash is the
    actual one and the stated position is ``position``; what is left to read is the v2 link to
    the log's previous record or the v4 session link (``verify`` checks both).
    """
    stated = state[-66:-2].decode()
    if kind == 2:
        cut = len(state) - 75 - len(b'","position":%d,"hash":"' % position) + 9  # just after log_prev's digits
        return SealCheck(2, stated, stated, state[cut - 64 : cut].decode(), position)
    if kind == 4:
        match = _V4_TAIL.search(state, max(0, len(state) - 420))
        if match is None:  # unsealed read it as v4 and the tail's regex does not: the caller asks check_seal
            return None
        return SealCheck(4, stated, stated, None, position, _session_link(match))
    return SealCheck(3, stated, stated, None, position)


def open_sealed(state: bytes) -> tuple[str | None, str | None]:
    """(hash stated in a v1 record, hash recomputed from its bytes).

    Seal v1 (before positions were sealed) is the SHA-256 of the record's own
    bytes; for a v2 record the recomputed value differs, so use ``check_seal``.
    """
    if len(state) <= _V1_SUFFIX_LEN or not state.endswith(b'"}'):
        return None, None
    suffix = state[-_V1_SUFFIX_LEN:]
    if not suffix.startswith(b',"hash":"'):
        return None, None
    stated = suffix[9:73].decode("ascii", "replace")
    raw = state[:-_V1_SUFFIX_LEN] + b"}"
    return stated, hashlib.sha256(raw).hexdigest()

"""The immutable facts the ledger appends, and how they are sealed into bytes.

Every event is a Pydantic model (the schema readers validate against) stored as
orjson bytes. Each stored event ends with its seal (v2): ``prev_hash`` (the
previous event of the same stream), ``log_prev`` (the previous event in the
whole log), ``position`` and ``hash``, the SHA-256 of its topic, stream id,
stream version and bytes. Editing any of them, or removing, inserting or
reordering a record, therefore breaks a seal or a link that
``Ledger.verify()`` walks. Records written before seal v2 end with ``prev_hash``
and ``hash`` over their bytes alone (``open_sealed``), and still verify.

Streams: one per entity lineage (``stream_id = lineage_id``, one event per new
version), one per function execution (``stream_id = execution_id``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict

__all__ = [
    "ENTITY_ERASED",
    "ENTITY_VERSION",
    "EXECUTION_COMPLETED",
    "EXECUTION_FAILED",
    "EVENT_MODELS",
    "EntityErased",
    "EntityVersionRecorded",
    "ExecutionCompleted",
    "ExecutionFailed",
    "GENESIS",
    "NewEvent",
    "SealCheck",
    "check_seal",
    "link_hash",
    "open_sealed",
    "seal_batch",
]

ENTITY_VERSION = "entity.version"
ENTITY_ERASED = "entity.erased"
EXECUTION_COMPLETED = "execution.completed"
EXECUTION_FAILED = "execution.failed"

Cause = Literal["register", "version", "detach", "attach", "execution", "put"]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    recorded_at: datetime
    batch_id: UUID
    batch_size: int
    prev_hash: str | None = None
    log_prev: str | None = None  # seal v2: the previous record in the log
    position: int | None = None  # seal v2: the position the store gave this record
    hash: str | None = None


class EntityVersionRecorded(_Event):
    """One new immutable version of one entity.

    ``values`` holds the plain fields; ``children`` the tree fields with each
    child as ``{"$e": ecs_id}`` (tuples as ``{"$t": [...]}``), so a tree version
    is a small DAG of these events and unchanged subtrees are never rewritten.
    ``tree_root`` is the root version of the tree this batch recorded.
    ``personal`` names the fields of ``values`` stored encrypted with the
    lineage's key (absent when there are none; see ledger/personal.py).
    ``key_check`` (the lineage's first personal version only) commits to that
    key (``ledger.keys.key_check``), so verify can tell a deleted or swapped key
    row from an erasure; events written before it existed have none.
    """

    ecs_id: UUID
    lineage_id: UUID
    previous_ecs_id: UUID | None
    entity_type: str
    schema_version: int
    is_root: bool
    tree_root: UUID
    cause: str
    values: dict[str, Any]
    children: dict[str, Any]
    meta: dict[str, Any]
    created_at: datetime
    forked_at: datetime | None
    detached_from: UUID | None = None  # the root version of the tree this entity left
    attached_to: UUID | None = None  # the root version of the tree this entity joined
    personal: list[str] = []
    key_check: str | None = None


class EntityErased(_Event):
    """The personal data of one lineage was erased (its key destroyed).

    Appended in the lineage's own stream, after its last version, so the
    erasure is ordered, chained and verifiable like every other fact. The
    versions keep their ciphertext; without the key it reads as ``ERASED``.
    """

    lineage_id: UUID
    reason: str
    versions: int


class OutputRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    ecs_id: UUID
    lineage_id: UUID
    semantic: Literal["mutation", "creation", "detachment"]
    output_index: int | None = None


class InputRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    param_name: str
    ecs_id: UUID | None
    address: str | None = None


class ExecutionCompleted(_Event):
    execution_id: UUID
    function_name: str
    inputs: list[InputRecord]
    outputs: list[OutputRecord]
    config_ids: list[UUID]
    sibling_group: list[UUID]
    duration_ms: float
    isolation: str
    execution_ecs_id: UUID | None = None
    return_pattern: str | None = None


class ExecutionFailed(_Event):
    """A function raised (or returned what cannot be recorded).

    When an input belonged to a lineage with personal fields, ``error_message``
    and ``traceback`` hold ciphertext that opens only while every lineage in
    ``sealed_with`` still has its key (``ledger/sealed_failure.py``);
    ``error_type`` always stays readable.
    """

    execution_id: UUID
    function_name: str
    inputs: list[InputRecord]
    config_ids: list[UUID]
    error_type: str
    error_message: str
    traceback: str
    duration_ms: float
    isolation: str
    sealed_with: list[UUID] = []
    key_shares: list[str] = []


EVENT_MODELS: dict[str, type[_Event]] = {
    ENTITY_VERSION: EntityVersionRecorded,
    ENTITY_ERASED: EntityErased,
    EXECUTION_COMPLETED: ExecutionCompleted,
    EXECUTION_FAILED: ExecutionFailed,
}


class NewEvent:
    """An event on its way into the log.

    ``body`` is the event's JSON without its seal; the store fills ``state``
    (the sealed bytes) and ``hash`` inside the append transaction, once the
    event's position and its predecessor in the log are known.
    ``prev_hash`` is the hash of the stream's last event before this batch.
    """

    __slots__ = ("stream_id", "version", "topic", "body", "prev_hash", "state", "hash")

    def __init__(self, stream_id: UUID, version: int, topic: str, body: bytes, prev_hash: str | None) -> None:
        self.stream_id = stream_id
        self.version = version
        self.topic = topic
        self.body = body
        self.prev_hash = prev_hash
        self.state = b""
        self.hash = ""


#: ``log_prev`` of the first event of a log.
GENESIS = "0" * 64
_SEAL_TAG = b"entity-ledger seal v2\n"
_HASH_TAIL = len(b'"}') + 64  # a sealed record ends with "hash":"<64 hex>"}
_HEX = frozenset(b"0123456789abcdef")
_V2_TAIL = re.compile(rb',"log_prev":"([0-9a-f]{64})","position":(\d{1,19}),"hash":"([0-9a-f]{64})"\}\Z')
_V1_SUFFIX_LEN = len(b',"hash":"') + 64 + len(b'"}')


def _seal_header(topic: str, stream_id: UUID, version: int) -> bytes:
    """What the record's bytes cannot say for themselves: where the store keeps it."""
    return b"%s%s\n%s\n%d\n" % (_SEAL_TAG, topic.encode(), stream_id.hex.encode(), version)


def seal_batch(events: Sequence[NewEvent], first_position: int, log_prev: str) -> str:
    """Seal a batch at the positions the store is about to give it (seal v2).

    Each record gains ``prev_hash`` (its stream's previous record), ``log_prev``
    (the previous record in the whole log), ``position`` and ``hash``: the
    SHA-256 of a header naming its topic, stream id and stream version followed
    by its bytes. An edit of any of them, a record moved to another position,
    removed from or inserted into the log therefore breaks a seal or a link
    that ``verify`` checks. Called by the store inside its append transaction,
    while no other writer can take positions. Returns the last record's hash.
    """
    stream_last: dict[UUID, str | None] = {}
    position = first_position
    for e in events:
        prev = stream_last.get(e.stream_id, e.prev_hash)
        head = b'%s,"prev_hash":%s,"log_prev":"%s","position":%d' % (
            e.body[:-1],
            b"null" if prev is None else b'"%s"' % prev.encode(),
            log_prev.encode(),
            position,
        )
        sha = hashlib.sha256(_seal_header(e.topic, e.stream_id, e.version))
        sha.update(head)
        sha.update(b"}")
        digest = sha.hexdigest()
        e.state = b'%s,"hash":"%s"}' % (head, digest.encode())
        e.hash = digest
        stream_last[e.stream_id] = digest
        log_prev = digest
        position += 1
    return log_prev


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


@dataclass(frozen=True, slots=True)
class SealCheck:
    """What a stored record's seal says and whether its bytes agree.

    ``version`` is 2 for records sealed with their place in the log, 1 for
    records written before (stream chain only), 0 for bytes that carry no seal.
    """

    version: int
    stated: str | None
    actual: str | None
    log_prev: str | None = None
    position: int | None = None

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
    stated, actual = open_sealed(state)
    return SealCheck(0 if stated is None else 1, stated, actual)


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

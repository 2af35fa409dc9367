"""The immutable facts the ledger appends, and how they are sealed into bytes.

Every event is a Pydantic model (the schema readers validate against) stored as
orjson bytes. Each stored event ends with ``"hash"``: the SHA-256 of its own
bytes, which include ``prev_hash`` (the hash of the previous event of the same
stream). Editing, removing or reordering a record therefore breaks a chain that
``Ledger.verify()`` walks.

Streams: one per entity lineage (``stream_id = lineage_id``, one event per new
version), one per function execution (``stream_id = execution_id``).
"""

from __future__ import annotations

import hashlib
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
    "NewEvent",
    "open_sealed",
    "seal",
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
    """An event ready to append: its stream position and sealed bytes."""

    __slots__ = ("stream_id", "version", "topic", "state", "hash")

    def __init__(self, stream_id: UUID, version: int, topic: str, state: bytes, hash: str) -> None:
        self.stream_id = stream_id
        self.version = version
        self.topic = topic
        self.state = state
        self.hash = hash


_SUFFIX_LEN = len(b',"hash":"') + 64 + len(b'"}')


def seal(body: dict[str, Any], prev_hash: str | None) -> tuple[bytes, str]:
    """Serialize ``body`` chained to ``prev_hash``; returns (bytes, own hash)."""
    body["prev_hash"] = prev_hash
    raw = orjson.dumps(body)
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:-1] + b',"hash":"' + digest.encode() + b'"}', digest


def open_sealed(state: bytes) -> tuple[str | None, str | None]:
    """(hash stated in the record, hash recomputed from its bytes), for verification."""
    if len(state) <= _SUFFIX_LEN or not state.endswith(b'"}'):
        return None, None
    suffix = state[-_SUFFIX_LEN:]
    if not suffix.startswith(b',"hash":"'):
        return None, None
    stated = suffix[9:73].decode("ascii", "replace")
    raw = state[:-_SUFFIX_LEN] + b"}"
    return stated, hashlib.sha256(raw).hexdigest()

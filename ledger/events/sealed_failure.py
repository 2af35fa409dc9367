"""Failure text of executions that read personal data, sealed with the inputs' keys.

A function that fails on personal data often says so:
``raise ValueError("cannot admit " + p.name)`` puts the name in the message and
in the last line of the traceback, and an ``execution.failed`` event would keep
both in clear text for ever, out of erasure's reach. So when any input of the
call (an entity argument or everything below it, a ConfigEntity, the entity a
reference was read from) belongs to a lineage with personal fields, both texts
are encrypted before they enter the event, so that they open only while
*every* one of those lineages still has its key:

- a fresh data key ``K`` encrypts each text (AES-GCM, bound to the execution
  and the field name);
- ``K`` is split into one random share per lineage, all of them XOR-ing to
  ``K`` (n-of-n: any n-1 shares say nothing about it), and each share is
  encrypted with its lineage's key (bound to the execution and the lineage).

Erasing any one of the lineages destroys its key, so its share and ``K`` are
gone and the text reads ``ERASED``. The exception's type name stays readable:
it says what kind of failure happened without saying about whom.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.model.personal import ERASED, KEY_BYTES

if TYPE_CHECKING:
    from projections.inline import InlineIndex

__all__ = ["SEALED_TEXT", "is_sealed", "open_failure", "personal_lineages", "seal_failure"]

#: The fields of an ``execution.failed`` payload that are sealed.
SEALED_TEXT = ("error_message", "traceback")

_NONCE = 12


def personal_lineages(index: InlineIndex, ecs_ids: Iterable[UUID | None]) -> list[UUID]:
    """Lineages with personal fields among these stored versions and all versions below them."""
    records = index.records
    seen: set[UUID] = set()
    found: set[UUID] = set()
    for ecs_id in ecs_ids:
        if ecs_id is None or ecs_id in seen:
            continue
        for version in index.subtree_ids(ecs_id):
            if version in seen:
                continue
            seen.add(version)
            rec = records.get(version)
            if rec is not None and rec.personal:
                found.add(rec.lineage_id)
    return sorted(found, key=str)


def seal_failure(
    execution_id: UUID, texts: Mapping[str, str], keys: Mapping[UUID, bytes | None]
) -> dict[str, Any]:
    """The payload fields that replace ``texts``: ciphertexts, ``sealed_with``, ``key_shares``.

    A lineage without a key (erased meanwhile) makes the text unreadable from
    the start: it is not stored at all.
    """
    lineages = sorted(keys, key=str)
    out: dict[str, Any] = {"sealed_with": lineages}
    if any(keys[lineage] is None for lineage in lineages):
        out.update({name: "" for name in texts})
        out["key_shares"] = []
        return out
    data_key = os.urandom(KEY_BYTES)
    shares = [os.urandom(KEY_BYTES) for _ in lineages[1:]]
    last = data_key
    for share in shares:
        last = _xor(last, share)
    shares.insert(0, last)
    out["key_shares"] = [
        _encrypt(keys[lineage], share, _share_aad(execution_id, lineage))  # type: ignore[arg-type]
        for lineage, share in zip(lineages, shares)
    ]
    for name, text in texts.items():
        out[name] = _encrypt(data_key, text.encode("utf-8"), _text_aad(execution_id, name))
    return out


def is_sealed(payload: Mapping[str, Any]) -> bool:
    """True when a failure payload's text is sealed with personal keys."""
    return bool(payload.get("sealed_with"))


def open_failure(payload: Mapping[str, Any], key_for: Callable[[UUID], bytes | None]) -> dict[str, Any]:
    """A copy of a failure payload with its text opened, or ``ERASED`` once any key is gone.

    ``key_for`` gives a lineage's key (None when erased); a damaged key row
    raises ``KeyIntegrityError`` from it, which is passed on: that is not an
    erasure. A payload that is not sealed comes back as a plain copy.
    """
    out = dict(payload)
    if not is_sealed(payload):
        return out
    data_key = _data_key(payload, key_for)
    execution_id = payload.get("execution_id")
    for name in SEALED_TEXT:
        if name not in out:
            continue
        text: Any = ERASED
        if data_key is not None:
            raw = _decrypt(data_key, out[name], _text_aad(execution_id, name))
            if raw is not None:
                text = raw.decode("utf-8", "replace")
        out[name] = text
    return out


def _data_key(payload: Mapping[str, Any], key_for: Callable[[UUID], bytes | None]) -> bytes | None:
    lineages = payload.get("sealed_with") or []
    shares = payload.get("key_shares") or []
    if len(shares) != len(lineages):
        return None
    data_key = bytes(KEY_BYTES)
    execution_id = payload.get("execution_id")
    for text_id, sealed in zip(lineages, shares):
        try:
            lineage = text_id if isinstance(text_id, UUID) else UUID(str(text_id))
        except ValueError:
            return None
        key = key_for(lineage)
        if key is None:
            return None
        share = _decrypt(key, sealed, _share_aad(execution_id, lineage))
        if share is None or len(share) != KEY_BYTES:
            return None
        data_key = _xor(data_key, share)
    return data_key


def _share_aad(execution_id: Any, lineage: UUID) -> bytes:
    return f"execution.failed:{execution_id}:share:{lineage}".encode()


def _text_aad(execution_id: Any, name: str) -> bytes:
    return f"execution.failed:{execution_id}:{name}".encode()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def _encrypt(key: bytes, data: bytes, aad: bytes) -> str:
    nonce = os.urandom(_NONCE)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, data, aad)).decode("ascii")


def _decrypt(key: bytes, sealed: Any, aad: bytes) -> bytes | None:
    """The plaintext, or None when it does not open (wrong key, edited, not ciphertext)."""
    if not isinstance(sealed, str):
        return None
    try:
        raw = base64.b64decode(sealed, validate=True)
        return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], aad)
    except (InvalidTag, ValueError):
        return None

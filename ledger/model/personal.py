"""Personal data: which fields hold it, how they are sealed, what erasure leaves.

The event log is append-only, so erasing a person's data cannot mean editing
it. Instead every field marked ``Personal[...]`` is encrypted with a key of its
own lineage before it enters an event (*crypto-shredding*); the keys live
outside the log (``ledger/store/keys.py``) and erasure destroys the key. The
ciphertext stays where it was, so every hash still matches, but nothing the
store still holds can turn it back into the value.

A sealed field is stored as ``{"$enc": "<base64 nonce + AES-GCM ciphertext>"}``;
the event lists the sealed fields in ``"personal"``, so a reader never has to
guess whether a user's own dict is ciphertext. The authenticated data binds each
ciphertext to its lineage and field: a value cannot be moved to another record.
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar, Union

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic.fields import FieldInfo

__all__ = [
    "ERASED",
    "ErasedValue",
    "KEY_BYTES",
    "Personal",
    "PersonalData",
    "is_personal",
    "new_key",
    "open_fields",
    "seal_fields",
    "widen_for_erasure",
]

T = TypeVar("T")

_ENC = "$enc"
_NONCE = 12
#: A data key is 256 bits.
KEY_BYTES = 32


class PersonalData:
    """Marks a field as personal data: ``name: Annotated[str, PersonalData()]``.

    ``Personal[str]`` is the short form. Only plain fields (fields that cannot
    hold entities) can be personal: an entity child is protected by marking its
    own fields.
    """

    def __repr__(self) -> str:
        return "PersonalData()"


#: ``name: Personal[str]`` is ``name: Annotated[str, PersonalData()]``.
Personal = Annotated[T, PersonalData()]


class ErasedValue:
    """The value every personal field reads as once its lineage was erased.

    One instance exists (``ERASED``): it is falsy, compares equal only to itself,
    survives copies and pickling as itself, and its repr says what happened.
    """

    _instance: ErasedValue | None = None

    def __new__(cls) -> ErasedValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<erased>"

    def __bool__(self) -> bool:
        return False

    def __copy__(self) -> ErasedValue:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ErasedValue:
        return self

    def __reduce__(self) -> str:
        return "ERASED"


ERASED = ErasedValue()


def is_personal(info: FieldInfo) -> bool:
    """True when a model field carries the ``PersonalData`` marker."""
    return any(isinstance(m, PersonalData) for m in info.metadata)


def widen_for_erasure(info: FieldInfo) -> tuple[Any, FieldInfo]:
    """The (annotation, field) a personal field gets in the read model: ``ERASED`` or its type.

    Reading an erased version validates the other fields as usual and lets the
    tombstone through instead of failing on it.
    """
    inner = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    widened = copy.copy(info)
    widened.metadata = []
    union: Any = Union[ErasedValue, inner]  # noqa: UP007 - a runtime union object
    widened.annotation = union
    return union, widened


def new_key() -> bytes:
    """A fresh 256-bit data key for one lineage."""
    return AESGCM.generate_key(bit_length=256)


def _aad(lineage_id: object, name: str) -> bytes:
    return f"{lineage_id}:{name}".encode()


def seal_fields(values_json: bytes, fields: Iterable[str], key: bytes, lineage_id: object) -> bytes:
    """The plain-values JSON with each personal field replaced by its ciphertext."""
    data = orjson.loads(values_json)
    aead = AESGCM(key)
    for name in fields:
        if name in data:
            nonce = os.urandom(_NONCE)
            ct = aead.encrypt(nonce, orjson.dumps(data[name]), _aad(lineage_id, name))
            data[name] = {_ENC: base64.b64encode(nonce + ct).decode("ascii")}
    return orjson.dumps(data)


def open_fields(
    stored: dict[str, Any], fields: Iterable[str], key: bytes | None, lineage_id: object
) -> dict[str, Any]:
    """A copy of stored plain values with personal fields decrypted, or ``ERASED`` without a key.

    A ciphertext that does not open with the key (edited, or moved from another
    record) also reads as ``ERASED``: ``verify()`` reports the edit itself.
    """
    out = dict(stored)
    aead = AESGCM(key) if key is not None else None
    for name in fields:
        sealed = out.get(name)
        if type(sealed) is not dict or _ENC not in sealed:
            continue
        if aead is None:
            out[name] = ERASED
            continue
        try:
            raw = base64.b64decode(sealed[_ENC])
            out[name] = orjson.loads(aead.decrypt(raw[:_NONCE], raw[_NONCE:], _aad(lineage_id, name)))
        except (InvalidTag, ValueError, orjson.JSONDecodeError):
            out[name] = ERASED
    return out


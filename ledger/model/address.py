"""``@<uuid>.path`` references: their syntax, and ids given as text.

Only the grammar lives here (the model layer: entities parse addresses handed to
``borrow_from_address``); resolving an address against stored data is a read
(``projections/addresses.py``). Errors name the argument and are ``ValueError``
subclasses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ledger.errors import EntityNotFoundError, MalformedAddressError

__all__ = ["Address", "as_uuid", "is_reference", "parse_address"]

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


@dataclass(frozen=True, slots=True)
class Address:
    text: str
    uuid: UUID
    path: tuple[str, ...]


def is_reference(value: Any) -> bool:
    """True for strings the ledger parses as references (``@@`` escapes a literal ``@``)."""
    return type(value) is str and value.startswith("@") and not value.startswith("@@")


def parse_address(text: Any, *, argument: str) -> Address:
    if not isinstance(text, str) or not text.startswith("@"):
        raise MalformedAddressError(f"{argument}: {text!r} is not an address (expected '@<uuid>[.path]')")
    head, *path = text[1:].split(".")
    if not _UUID_RE.match(head):
        raise MalformedAddressError(
            f"{argument}: address {text!r} does not start with a uuid after '@'"
        )
    if any(seg == "" for seg in path):
        raise MalformedAddressError(f"{argument}: address {text!r} has an empty path segment")
    return Address(text, UUID(head), tuple(path))


def as_uuid(value: Any, argument: str, kind: str = "an entity id") -> UUID:
    """``value`` as a UUID (a leading ``@`` allowed), or an error naming ``argument``."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value.lstrip("@"))
        except ValueError:
            pass
    raise EntityNotFoundError(f"{argument}: {value!r:.80} is not {kind} (a UUID)")

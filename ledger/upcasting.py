"""Reading events written by an older version of an entity class.

A class that changes its fields bumps ``__ledger_version__`` and declares
``__ledger_upcasters__ = {1: fn, 2: fn, ...}``: ``fn`` takes the stored plain
values of that version (a dict in JSON form) and returns them in the shape of
the next version. Upcasting is explicit: nothing guesses a rename.
"""

from __future__ import annotations

from typing import Any

from .errors import UnknownEntityTypeError

__all__ = ["upcast_values"]


def upcast_values(cls: type, stored_version: int, data: dict[str, Any]) -> dict[str, Any]:
    current = int(getattr(cls, "__ledger_version__", 1))
    if stored_version == current:
        return data
    if stored_version > current:
        raise UnknownEntityTypeError(
            f"stored {cls.__qualname__} is schema version {stored_version}, newer than "
            f"this process's class (version {current})"
        )
    upcasters = getattr(cls, "__ledger_upcasters__", {}) or {}
    version = stored_version
    data = dict(data)
    while version < current:
        step = upcasters.get(version)
        if step is None:
            raise UnknownEntityTypeError(
                f"{cls.__qualname__}: no upcaster from schema version {version} to "
                f"{version + 1} (declare __ledger_upcasters__ = {{{version}: fn, ...}})"
            )
        data = step(data)
        version += 1
    return data

"""The process's function table: what ``CallableRegistry.register`` learned, by name.

Registered functions belong to the process, not to a ledger (``connect()``
switches the data, not the functions). This module sits below everything that
runs a call (``ledger.calls``, ``ledger.batch_map``) so they can look a
function up without importing the ``CallableRegistry`` facade above them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ledger import _process
from ledger.errors import UnknownFunctionError
from ledger.write.signatures import Signature

__all__ = ["FunctionMetadata", "Isolation", "add", "lookup", "names", "remove"]

Isolation = Literal["inline", "process"]


@dataclass(frozen=True, slots=True)
class FunctionMetadata:
    """What registration learned about one function."""

    name: str
    func: Callable[..., Any]
    signature: Signature
    is_async: bool
    isolation: str
    unpack: bool
    timeout: float | None
    #: ``register(..., cache=True)``: calls are memoized by content (``ledger/write/memo.py``).
    cache: bool = False
    #: The function's version (hash of its name and source), computed when ``cache`` is on.
    version: str | None = None

    @property
    def input_model(self) -> type[Any] | None:
        return self.signature.input_model

    @property
    def return_annotation(self) -> Any:
        return self.signature.return_annotation

    @property
    def config_params(self) -> dict[str, type[Any]]:
        return dict(self.signature.config_params)


_functions = _process.functions  # the table itself is process state (ledger/_process.py)
_functions_lock = _process.functions_lock


def add(meta: FunctionMetadata) -> None:
    """Register (or replace) the function ``meta.name``."""
    with _functions_lock:
        _functions[meta.name] = meta


def remove(name: str) -> None:
    with _functions_lock:
        _functions.pop(name, None)


def names() -> list[str]:
    with _functions_lock:
        return sorted(_functions)


def lookup(name: str) -> FunctionMetadata:
    if not isinstance(name, str):
        raise UnknownFunctionError(f"name: a function name is a str, got {type(name).__name__} {name!r:.80}")
    meta: FunctionMetadata | None = _functions.get(name)
    if meta is None:
        known = ", ".join(sorted(_functions)) or "none"
        raise UnknownFunctionError(f"name: no function registered as {name!r} (registered: {known})")
    return meta

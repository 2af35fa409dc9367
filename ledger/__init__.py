"""entity-ledger: run Python functions over versioned entities, every change an event.

The public names are listed in ``__all__``; see README.md for a tour and docs/python-api.md for the whole API.

Why the names load lazily: every ``ledger`` command runs this module first (``ledger.cli``
is inside the package), and importing the whole library — the execution pipeline, the
registries, the reactions — costs several times the interpreter's own start. A reading
command needs only the stored-read path. So the first access to any public name (``from
ledger import Entity``, ``ledger.connect``) imports the whole public surface at once,
exactly what importing this package did before: the facade installs the ledger factory
(``ledger._process``) that the model uses to reach the default ledger, so no public name
is ever usable without it. Submodules imported directly (``ledger.errors``,
``ledger.cli``) load only what they themselves import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, eagerly, for type checkers
    from ledger import errors
    from ledger._process import id_source
    from ledger.callables import CallableRegistry, FunctionMetadata, Reexecution
    from ledger.events.digest import Digest
    from ledger.functional import create_composite_entity, get, put
    from ledger.ledger import (
        Ledger,
        VerifyReport,
        connect,
        get_ledger,
        set_default_ledger,
        sql,
    )
    from ledger.model.entity import ConfigEntity, Entity
    from ledger.model.function_execution import FunctionExecution
    from ledger.model.personal import ERASED, ErasedValue, Personal, PersonalData
    from ledger.model.tree import EntityTree, build_entity_tree
    from ledger.registry import EntityRegistry
    from ledger.write.erasure import Erasure

__all__ = [
    "CallableRegistry",
    "ConfigEntity",
    "Digest",
    "ERASED",
    "Entity",
    "EntityRegistry",
    "EntityTree",
    "ErasedValue",
    "Erasure",
    "FunctionExecution",
    "FunctionMetadata",
    "Ledger",
    "Personal",
    "PersonalData",
    "Reexecution",
    "VerifyReport",
    "build_entity_tree",
    "connect",
    "create_composite_entity",
    "errors",
    "get",
    "get_ledger",
    "id_source",
    "put",
    "set_default_ledger",
    "sql",
]

__version__ = "0.1.0"


#: Where each public name lives (the TYPE_CHECKING block above imports the same names).
_HOMES: dict[str, str] = {
    "CallableRegistry": "ledger.callables",
    "FunctionMetadata": "ledger.callables",
    "Reexecution": "ledger.callables",
    "Digest": "ledger.events.digest",
    "create_composite_entity": "ledger.functional",
    "get": "ledger.functional",
    "put": "ledger.functional",
    "Ledger": "ledger.ledger",
    "VerifyReport": "ledger.ledger",
    "connect": "ledger.ledger",
    "get_ledger": "ledger.ledger",
    "set_default_ledger": "ledger.ledger",
    "sql": "ledger.ledger",
    "ConfigEntity": "ledger.model.entity",
    "Entity": "ledger.model.entity",
    "FunctionExecution": "ledger.model.function_execution",
    "ERASED": "ledger.model.personal",
    "ErasedValue": "ledger.model.personal",
    "Personal": "ledger.model.personal",
    "PersonalData": "ledger.model.personal",
    "EntityTree": "ledger.model.tree",
    "build_entity_tree": "ledger.model.tree",
    "EntityRegistry": "ledger.registry",
    "Erasure": "ledger.write.erasure",
    "id_source": "ledger._process",
}


#: Public names usable without the facade (no default ledger behind them): loaded alone.
_STANDALONE = frozenset({"ERASED", "ErasedValue"})


def _load_public_names() -> dict[str, Any]:
    """Import the whole public surface (the facade first: it installs the ledger factory)."""
    import importlib

    importlib.import_module("ledger.ledger")
    names = {name: getattr(importlib.import_module(home), name) for name, home in _HOMES.items()}
    names["errors"] = importlib.import_module("ledger.errors")
    return names


def __getattr__(name: str) -> Any:
    """PEP 562: the first public name asked for loads them all (see the module docstring)."""
    if name not in __all__:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    if name == "errors":  # a submodule: ``from ledger import errors`` inside the library must stay light
        import ledger.errors as errors

        return errors
    if name in _STANDALONE:  # values that need no ledger (the erasure tombstone): a reading command shows them
        import importlib

        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    names = _load_public_names()
    globals().update(names)
    return names[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

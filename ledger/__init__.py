"""entity-ledger: run Python functions over versioned entities, every change an event.

The public names are listed in ``__all__``; see README.md for a tour and docs/python-api.md for the whole API.
"""

from __future__ import annotations

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

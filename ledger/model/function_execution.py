"""``FunctionExecution``: the entity recorded for every successful call.

Its ``lineage_id`` is the execution id, so its version event and the
``execution.completed`` event share one stream: the execution's stream.
A failed call records only an ``execution.failed`` event on that stream.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from ledger.model.entity import Entity

__all__ = ["FunctionExecution"]


class FunctionExecution(Entity):
    """One call of a registered function: what went in, what came out, and how."""

    __ledger_topic__: ClassVar[str] = "ledger:FunctionExecution"

    function_name: str
    execution_id: UUID
    input_entity_ids: list[UUID] = []
    input_params: list[str] = []
    input_addresses: list[str | None] = []
    output_entity_ids: list[UUID] = []
    output_semantics: list[str] = []
    config_entity_ids: list[UUID] = []
    sibling_group: list[UUID] = []
    return_pattern: str = ""
    unpacked: bool = False
    duration_ms: float = 0.0
    isolation: str = "inline"
    succeeded: bool = True

"""Entities, registered functions and log readers shared by the attribution, return-hint, iterator,
schema-mismatch and interrupt tests (``test_planning``, ``test_signatures``, ``test_returns``,
``test_upcasting``, ``test_calls``), first written for issue 9, section 6.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from ledger import CallableRegistry, Entity, Ledger


# ------------------------------------------------------------------ models
class HNote(Entity):
    name: str
    score: float = 0.0


class HLeaf(Entity):
    label: str


class HBox(Entity):
    name: str
    leaves: list[HLeaf] = []


class HBag(Entity):
    stuff: Any = None


@CallableRegistry.register("holes_make_note")
def holes_make_note(name: str) -> HNote:
    return HNote(name=name)


@CallableRegistry.register("holes_bump")
def holes_bump(note: HNote) -> HNote:
    note.score += 1.0
    return note


@CallableRegistry.register("holes_bump_in_child", isolation="process")
def holes_bump_in_child(note: HNote) -> HNote:
    note.score += 1.0
    return note


@CallableRegistry.register("holes_make_box")
def holes_make_box(name: str, n: int) -> HBox:
    return HBox(name=name, leaves=[HLeaf(label=f"l{i}") for i in range(n)])


@CallableRegistry.register("holes_upper")
def holes_upper(text: str) -> str:
    return text.upper()


# ------------------------------------------------------------------ helpers
def events(lg: Ledger) -> list[tuple[int, str, dict[str, Any]]]:
    """Every stored event as (position, topic, decoded payload)."""
    return [(n.id, n.topic, orjson.loads(n.state)) for n in lg.store.iter_all(start=1)]


def version_payload(lg: Ledger, ecs_id: UUID) -> dict[str, Any]:
    """The stored ``entity.version`` payload of one version."""
    for _, topic, payload in events(lg):
        if topic == "entity.version" and payload["ecs_id"] == str(ecs_id):
            return payload
    raise AssertionError(f"no stored version {ecs_id}")


def failures(lg: Ledger) -> list[dict[str, Any]]:
    return [p for _, topic, p in events(lg) if topic == "execution.failed"]


RUNS = [("inline", False), ("inline", True), ("process", False), ("process", True)]


RUN_IDS = ["inline-sync", "inline-async", "process-sync", "process-async"]

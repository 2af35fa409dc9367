"""The event codec is the one spelling of the stored format: builders, models and readers agree."""

from __future__ import annotations

import inspect
from uuid import UUID

import orjson
import pytest

from ledger import CallableRegistry, Entity, Ledger, Personal
from ledger.events import bodies
from ledger.events.bodies import EVENT_MODELS, duckdb_struct
from ledger.reactions import Event
from ledger.reactions.recording import record_event
from ledger.write.calls import execute_on

#: builder -> (topic, {builder parameter: the model fields it fills})
BUILDERS = {
    bodies.entity_version_body: (
        bodies.ENTITY_VERSION,
        {"values_json": {"values"}, "link": {"detached_from", "attached_to"}},
    ),
    bodies.entity_erased_body: (bodies.ENTITY_ERASED, {}),
    bodies.execution_completed_body: (
        bodies.EXECUTION_COMPLETED,
        {"reused_execution_id": {"reused_execution_id", "cache_hit"}, "run": set(bodies.RUN_FIELDS)},
    ),
    bodies.execution_reexecuted_body: (bodies.EXECUTION_REEXECUTED, {"run": set(bodies.RUN_FIELDS)}),
    bodies.execution_failed_body: (
        bodies.EXECUTION_FAILED,
        {"sealed": {"sealed_with", "key_shares"}, "run": set(bodies.RUN_FIELDS)},
    ),
    bodies.reaction_emitted_body: (bodies.REACTION_EMITTED, {}),
}
#: Fields the batch (recorded_at, batch id and size) and the store (the seal) fill in.
ADDED_LATER = {"recorded_at", "batch_id", "batch_size", "prev_hash", "log_prev", "position", "hash"}


@pytest.mark.parametrize("builder", list(BUILDERS), ids=lambda b: b.__name__)
def test_each_builder_has_one_parameter_per_model_field(builder) -> None:
    topic, renamed = BUILDERS[builder]
    covered: set[str] = set()
    for name in inspect.signature(builder).parameters:
        covered |= renamed.get(name, {name})
    assert covered == set(EVENT_MODELS[topic].model_fields) - ADDED_LATER


class Patient(Entity):
    name: Personal[str]
    visits: int = 0


class Bag(Entity):
    items: list[Patient] = []


def _record_every_kind(led: Ledger) -> None:
    """One of each event: versions (register, detach), a completed, re-executed and failed execution, an erasure,
    a recorded user event."""

    def codec_visit(p: Patient) -> Patient:
        p.visits += 1
        return p

    def codec_fail(p: Patient) -> Patient:
        raise RuntimeError(f"cannot see {p.name}")

    CallableRegistry.register("codec_visit")(codec_visit)
    CallableRegistry.register("codec_fail")(codec_fail)
    try:
        bag = Bag(items=[Patient(name="ann"), Patient(name="bob")])
        led.registry.register_entity(bag)
        child = bag.items[0]
        led.registry.detach(child)
        visited = execute_on(led, "codec_visit", p=child)
        led.reexecute(visited.derived_from_execution_id)
        with pytest.raises(RuntimeError):
            execute_on(led, "codec_fail", p=child)
        led.erase(child.lineage_id, reason="request")
        record_event(Event(type="patient.seen", subject_type=Patient, subject_id=child.ecs_id), led)
    finally:
        CallableRegistry.unregister("codec_visit")
        CallableRegistry.unregister("codec_fail")


def test_every_stored_record_validates_against_its_model_with_no_unknown_keys(tmp_path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'c.db'}") as led:
        _record_every_kind(led)
        seen: set[str] = set()
        for record in led.store.read(1, 10_000):
            payload = orjson.loads(record.state)
            model = EVENT_MODELS[record.topic]
            model.model_validate(payload)
            assert set(payload) <= set(model.model_fields), (record.topic, set(payload) - set(model.model_fields))
            seen.add(record.topic)
        assert seen == set(EVENT_MODELS)


def test_duckdb_struct_types_come_from_the_models() -> None:
    struct = orjson.loads(duckdb_struct(["ecs_id", "is_root", "duration_ms", "inputs", "values", "personal"]))
    assert struct == {
        "ecs_id": "VARCHAR",
        "is_root": "BOOLEAN",
        "duration_ms": "DOUBLE",
        "inputs": [{"param_name": "VARCHAR", "ecs_id": "VARCHAR", "address": "VARCHAR"}],
        "values": "JSON",
        "personal": ["VARCHAR"],
    }
    with pytest.raises(KeyError, match="no_such_field"):
        duckdb_struct(["no_such_field"])


def test_shape_encoding_round_trips_markers() -> None:
    from ledger.events.shape import shape_from_json, shape_to_json
    from ledger.model.tree import Ref

    ref = Ref(UUID(int=7))
    shape = {"a": [ref, (ref, 1)], "b": {1: ref}, "c": {"$e": "not a ref"}}
    assert shape_from_json(orjson.loads(orjson.dumps({k: shape_to_json(v) for k, v in shape.items()}))) == shape

"""``ledger.model.construct.construct`` builds what ``model_construct`` builds (the copies every
execution makes of its inputs go through it: ``projections.live.materialize``)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ledger.model.construct import construct
from ledger.model.function_execution import FunctionExecution

from .models import Student


def same(a: BaseModel, b: BaseModel) -> None:
    assert type(a) is type(b)
    assert list(a.__dict__) == list(b.__dict__)
    assert a.__dict__ == b.__dict__
    assert a.__pydantic_fields_set__ == b.__pydantic_fields_set__
    assert a.__pydantic_extra__ == b.__pydantic_extra__
    assert a.__pydantic_private__ == b.__pydantic_private__


def test_an_entity_with_defaults_left_out_and_a_key_that_is_no_field() -> None:
    """Missing fields take their defaults (factories called, mutable defaults copied, never
    shared); a key that names no field is dropped; the set fields are those given."""
    ids = {"ecs_id": uuid4(), "live_id": uuid4(), "lineage_id": uuid4(), "created_at": None}
    values: dict[str, Any] = {"function_name": "f", "execution_id": uuid4(), "not_a_field": 1, **ids}
    a = construct(FunctionExecution, dict(values))
    b = FunctionExecution.model_construct(**values)
    same(a, b)
    assert a.model_dump_json() == b.model_dump_json()
    again = construct(FunctionExecution, dict(values))
    assert again.input_entity_ids == [] and again.input_entity_ids is not a.input_entity_ids
    assert again.old_ids is not a.old_ids
    student: dict[str, Any] = {"name": "Ann", "gpa": 3.5, "grades": [], **ids}
    same(construct(Student, student), Student.model_construct(**student))


class Aliased(BaseModel):
    value: int = Field(alias="v")


class PostInit(BaseModel):
    value: int = 0
    seen: bool = False

    def model_post_init(self, context: Any) -> None:
        self.seen = True


class Private(BaseModel):
    value: int = 0
    _note: str = PrivateAttr(default="n")


class Extra(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: int = 0


def test_classes_only_model_construct_builds_right_are_left_to_it() -> None:
    """Aliases, ``model_post_init``, private attributes and ``extra='allow'`` go to ``model_construct``."""
    same(construct(Aliased, {"v": 3}), Aliased.model_construct(v=3))
    assert construct(Aliased, {"v": 3}).value == 3
    built = construct(PostInit, {"value": 2})
    same(built, PostInit.model_construct(value=2))
    assert built.seen
    same(construct(Private, {"value": 1}), Private.model_construct(value=1))
    same(construct(Extra, {"value": 1, "more": 2}), Extra.model_construct(value=1, more=2))

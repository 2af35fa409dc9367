"""Old events read through explicit upcasters when an entity class changes."""

from __future__ import annotations

from typing import ClassVar

import pytest

from ledger import Entity, Ledger
from ledger.errors import UnknownEntityTypeError


def test_v1_events_read_with_a_v2_class(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"

    class PersonV1(Entity):
        __ledger_topic__: ClassVar[str] = "tests.Person"
        full_name: str
        nickname: str = ""

    with Ledger(url) as led:
        p = PersonV1(full_name="Ada Lovelace", nickname="ada")
        led.registry.register_entity(p)

    class PersonV2(Entity):  # renamed full_name -> name, dropped nickname, added email
        __ledger_topic__: ClassVar[str] = "tests.Person"
        __ledger_version__: ClassVar[int] = 2
        __ledger_upcasters__: ClassVar[dict] = {
            1: lambda d: {"name": d["full_name"], "email": None},
        }
        name: str
        email: str | None = None

    with Ledger(url) as led:
        got = led.registry.get_stored_tree(p.ecs_id).root
        assert isinstance(got, PersonV2) and got.name == "Ada Lovelace" and got.email is None

    class PersonV3(Entity):
        __ledger_topic__: ClassVar[str] = "tests.Person"
        __ledger_version__: ClassVar[int] = 3
        name: str

    with Ledger(url) as led, pytest.raises(UnknownEntityTypeError, match="no upcaster from schema version 1"):
        led.registry.get_stored_tree(p.ecs_id)

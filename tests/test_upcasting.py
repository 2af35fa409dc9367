"""Old events read through explicit upcasters when an entity class changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar
from uuid import uuid4

import pytest

import ledger
from ledger import CallableRegistry, Entity, EntityRegistry, Ledger, get
from ledger.errors import SchemaMismatchError, UnknownEntityTypeError

from .holes import HLeaf


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


ROOT = Path(__file__).resolve().parents[1]


# ============================================================ 3. schema mismatch
class HHolder(Entity):
    """A parent whose child's class is the one that changes (``Any``: a tree field)."""

    label: str
    item: Any = None


def v1_class(change: str, topic: str) -> type[Entity]:
    """The class as it was when the versions were stored."""
    ns: dict[str, Any] = {"__ledger_topic__": topic, "__annotations__": {"__ledger_topic__": ClassVar[str]}}
    fields: dict[str, Any] = {
        "renamed": {"name": str},
        "renamed_to_a_default": {"name": str},
        "type_changed": {"age": str},
        "new_required_field": {"name": str},
        "removed_field": {"name": str, "nick": str},
        "child_field_renamed": {"name": str, "leaves": list[HLeaf]},
        "plain_became_child": {"name": str, "other": str},
    }[change]
    ns["__annotations__"].update(fields)
    return type("Patient", (Entity,), ns)


def v2_class(change: str, topic: str) -> type[Entity]:
    """The same topic, fields changed and ``__ledger_version__`` not bumped."""
    ns: dict[str, Any] = {"__ledger_topic__": topic, "__annotations__": {"__ledger_topic__": ClassVar[str]}}
    fields: dict[str, Any] = {
        "renamed": {"full_name": str},
        "renamed_to_a_default": {"full_name": str},
        "type_changed": {"age": int},
        "new_required_field": {"name": str, "email": str},
        "removed_field": {"name": str},
        "child_field_renamed": {"name": str, "items": list[HLeaf]},
        "plain_became_child": {"name": str, "other": HLeaf},
    }[change]
    ns["__annotations__"].update(fields)
    if change == "renamed_to_a_default":
        ns["full_name"] = ""  # reading would silently drop 'name' and give ""
    return type("Patient", (Entity,), ns)


def v1_values(change: str) -> dict[str, Any]:
    return {
        "type_changed": {"age": "ten"},
        "removed_field": {"name": "Ada", "nick": "ada"},
        "child_field_renamed": {"name": "Ada", "leaves": [HLeaf(label="x")]},
        "plain_became_child": {"name": "Ada", "other": "text"},
    }.get(change, {"name": "Ada"})


CHANGES = ["renamed", "renamed_to_a_default", "type_changed", "new_required_field", "removed_field",
           "child_field_renamed", "plain_became_child"]


def read_paths(lg: Ledger, cls: type[Entity], entity: Entity, holder: HHolder) -> dict[str, Any]:
    """Every read path that builds the class, as a thunk."""
    name = f"holes_read_{uuid4().hex[:8]}"

    def takes(x: Any) -> str:
        return "read"

    takes.__annotations__ = {"x": cls, "return": str}  # a class defined at run time
    CallableRegistry.register(name)(takes)
    field = "name" if "name" in type(entity).model_fields else "age"
    reg = lg.registry
    return {
        "get_stored_entity": lambda: reg.get_stored_entity(entity.ecs_id, entity.ecs_id),
        "get_stored_tree": lambda: reg.get_stored_tree(entity.ecs_id),
        "history": lambda: reg.history(entity.lineage_id),
        "as_of": lambda: reg.as_of(entity.lineage_id, position=lg.store.head()),
        "as_of_time": lambda: reg.as_of(entity.lineage_id, at=datetime.now(timezone.utc)),
        "get_latest": lambda: reg.get_latest(entity.lineage_id),
        "get_entity": lambda: get(f"@{entity.ecs_id}", ledger=lg),
        "get_field": lambda: get(f"@{entity.ecs_id}.{field}", ledger=lg),
        "child_in_a_tree": lambda: reg.get_stored_tree(holder.ecs_id),
        "child_by_address": lambda: get(f"@{holder.ecs_id}.item", ledger=lg),
        "function_input_by_reference": lambda: CallableRegistry.execute(name, x=f"@{entity.ecs_id}"),
        "function_input_child_by_reference": lambda: CallableRegistry.execute(name, x=f"@{holder.ecs_id}.item"),
    }


def assert_mismatch_everywhere(lg: Ledger, cls: type[Entity], entity: Entity, holder: HHolder, topic: str) -> None:
    head = lg.store.head()
    for path, read in read_paths(lg, cls, entity, holder).items():
        with pytest.raises(SchemaMismatchError) as info:
            read()
        text = str(info.value)
        for needed in ("Patient", repr(topic), "schema version 1", "__ledger_version__ = 2",
                       "__ledger_upcasters__", "tests/test_upcasting.py"):
            assert needed in text, (path, needed, text)
        assert "PlainFields" not in text and "validation error" not in text, (path, text)
        assert info.value.__cause__ is None and info.value.__context__ is None, path
    assert lg.store.head() == head  # reading (and a refused call) wrote nothing


class TestSchemaMismatch:
    @pytest.mark.parametrize("change", CHANGES)
    def test_every_read_path_names_the_class_topic_version_and_remedy(self, store_url: str, change: str) -> None:
        """A class changed without a version bump gives SchemaMismatchError on every path that builds it."""
        topic = f"tests.holes:{change}:{uuid4().hex[:8]}"
        lg = ledger.connect(store_url)
        try:
            old = v1_class(change, topic)(**v1_values(change))
            old.promote_to_root()
            holder = HHolder(label="h", item=v1_class(change, topic)(**v1_values(change)))
            holder.promote_to_root()
            new = v2_class(change, topic)
            assert_mismatch_everywhere(lg, new, old, holder, topic)  # this process, cached values
            if not store_url.startswith("memory"):
                lg.close()
                lg = ledger.connect(store_url)  # a fresh index, read from the store
                assert_mismatch_everywhere(lg, new, old, holder, topic)
        finally:
            lg.close()
            ledger.set_default_ledger(None)

    @pytest.mark.parametrize("store", ["memory", "durable"])
    def test_compatible_changes_still_read(self, tmp_path: Path, store: str) -> None:
        """A new field with a default (plain or child) reads as the default: no mismatch."""
        url = "memory://" if store == "memory" else f"sqlite:///{tmp_path / 'c.db'}"
        topic = f"tests.holes:compatible:{uuid4().hex[:8]}"
        with Ledger(url) as lg:

            class Patient(Entity):
                __ledger_topic__: ClassVar[str] = topic
                name: str

            p = Patient(name="Ada")
            lg.registry.register_entity(p)

            class PatientV1b(Entity):  # noqa: F811 - the same topic, redefined
                __ledger_topic__: ClassVar[str] = topic
                name: str
                score: float = 0.5
                leaves: list[HLeaf] = []

            for reader in (lg, Ledger(url) if store == "durable" else lg):
                got = reader.registry.get_stored_entity(p.ecs_id, p.ecs_id)
                assert isinstance(got, PatientV1b) and (got.name, got.score, got.leaves) == ("Ada", 0.5, [])

    def test_upcast_values_that_still_do_not_fit(self, tmp_path: Path) -> None:
        """An upcaster that returns the wrong fields is a SchemaMismatchError pointing at the upcasters."""
        url = f"sqlite:///{tmp_path / 'u.db'}"
        topic = f"tests.holes:upcast:{uuid4().hex[:8]}"

        class Patient(Entity):
            __ledger_topic__: ClassVar[str] = topic
            name: str

        with Ledger(url) as lg:
            p = Patient(name="Ada")
            lg.registry.register_entity(p)

        class PatientV2(Entity):
            __ledger_topic__: ClassVar[str] = topic
            __ledger_version__: ClassVar[int] = 2
            __ledger_upcasters__: ClassVar[dict] = {1: lambda d: {"nmae": d["name"]}}  # a typo
            full_name: str

        with Ledger(url) as lg, pytest.raises(SchemaMismatchError) as info:
            lg.registry.get_stored_entity(p.ecs_id, p.ecs_id)
        text = str(info.value)
        assert "PatientV2" in text and "schema version 1" in text and "__ledger_upcasters__" in text
        assert "'full_name' is required" in text

    def test_personal_values_are_not_quoted(self, mem: Ledger) -> None:
        """The message names fields and types, never a stored value (it may be personal data)."""
        from ledger import Personal

        topic = f"tests.holes:personal:{uuid4().hex[:8]}"

        class Patient(Entity):
            __ledger_topic__: ClassVar[str] = topic
            name: Personal[str]

        p = Patient(name="Very Secret Name")
        p.promote_to_root()

        class PatientV2(Entity):
            __ledger_topic__: ClassVar[str] = topic
            name: Personal[int]

        with pytest.raises(SchemaMismatchError) as info:
            EntityRegistry.get_stored_entity(p.ecs_id, p.ecs_id)
        assert "Secret" not in str(info.value) and "'name'" in str(info.value)


MODULE_V1 = """
from ledger import Entity

class Patient(Entity):
    name: str
"""


MODULE_V2 = """
from ledger import Entity

class Patient(Entity):  # renamed a field, forgot __ledger_version__
    full_name: str
"""


class TestSchemaMismatchAcrossProcesses:
    def test_later_process_with_a_changed_module(self, tmp_path: Path) -> None:
        """A process importing the changed class gets SchemaMismatchError; show/history/diff still print stored data."""
        (tmp_path / "holes_models.py").write_text(MODULE_V1)
        url = f"sqlite:///{tmp_path / 'audit.db'}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "LEDGER_URL": url}
        write = textwrap.dedent(f"""
            import json
            from ledger import Ledger
            from holes_models import Patient
            with Ledger({url!r}) as lg:
                p = Patient(name="Ada")
                lg.registry.register_entity(p)
                first = p.ecs_id
                p.name = "Ada L."
                lg.registry.version_entity(p)
                print(json.dumps([str(first), str(p.ecs_id), str(p.lineage_id)]))
        """)
        out = subprocess.run([sys.executable, "-c", write], env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
        first, second, lineage = json.loads(out.stdout)

        (tmp_path / "holes_models.py").write_text(MODULE_V2)
        read = textwrap.dedent(f"""
            from ledger import Ledger
            from ledger.errors import SchemaMismatchError
            import holes_models
            with Ledger({url!r}) as lg:
                try:
                    lg.registry.history({lineage!r})
                except SchemaMismatchError as exc:
                    print("SchemaMismatchError:", exc)
        """)
        out = subprocess.run([sys.executable, "-c", read], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("SchemaMismatchError: Patient (topic 'holes_models:Patient')"), out.stdout
        assert "schema version 1" in out.stdout and "__ledger_version__ = 2" in out.stdout
        assert "PlainFields" not in out.stdout + out.stderr

        script = str(Path(sys.executable).parent / "ledger")
        for args, expected in (
            (["show", f"@{second}"], "Ada L."),
            (["history", lineage], "Ada L."),
            (["diff", first, second], "Ada L."),
        ):
            cli = subprocess.run([script, *args], env={**env, "COLUMNS": "250"}, cwd=tmp_path, capture_output=True, text=True, timeout=300)
            assert cli.returncode == 0, (args, cli.stdout, cli.stderr)
            assert expected in cli.stdout and "Traceback" not in cli.stderr, (args, cli.stdout, cli.stderr)

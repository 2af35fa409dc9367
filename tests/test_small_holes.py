"""Issue 9, section 6: smaller holes an auditor finds in the first hour.

* a version written by hand after a function ran is not attributed to that function;
* return hints that cannot be stored are refused at registration, and a
  generator returned anyway is a recorded ``ReturnTypeError``;
* a class changed without a ``__ledger_version__`` bump gives ``SchemaMismatchError``
  (never a raw pydantic error) on every read path that builds the class;
* ``KeyboardInterrupt`` / ``SystemExit`` inside a function is recorded before it propagates.
"""

from __future__ import annotations

import asyncio
import collections.abc as abc
import json
import os
import subprocess
import sys
import textwrap
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Optional
from uuid import UUID, uuid4

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger
from ledger import CallableRegistry, Entity, EntityRegistry, Ledger, get, put
from ledger.errors import FunctionRegistrationError, ReturnTypeError, SchemaMismatchError

ROOT = Path(__file__).resolve().parents[1]


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


def analytics_meta(lg: Ledger, ecs_id: UUID) -> tuple[str | None, str | None, str]:
    """(derived_from_execution_id, derived_from_function, cause) of a version, read through ``sql``."""
    row = lg.sql(
        "SELECT json_extract_string(ev.payload, '$.meta.derived_from_execution_id'), "
        "json_extract_string(ev.payload, '$.meta.derived_from_function'), v.cause "
        "FROM entity_versions v JOIN events ev USING (position) WHERE v.ecs_id = ?",
        [str(ecs_id)],
    ).fetchall()
    assert len(row) == 1, row
    return row[0]


def assert_manual(lg: Ledger, ecs_id: UUID, root_ecs_id: UUID | None = None) -> None:
    """Version ``ecs_id`` carries no execution attribution: in its event, read back, and in SQL."""
    meta = version_payload(lg, ecs_id)["meta"]
    for name in ("derived_from_execution_id", "derived_from_function", "function_input_entities",
                 "sibling_output_entities", "output_index"):
        assert name not in meta, (name, meta)
    got = lg.registry.get_stored_entity(root_ecs_id or ecs_id, ecs_id)
    assert got.derived_from_execution_id is None and got.derived_from_function is None
    assert got.function_input_entities == [] and got.output_index is None
    execution_id, function, cause = analytics_meta(lg, ecs_id)
    assert execution_id is None and function is None and cause != "execution"


# ============================================================ 1. attribution
class TestManualVersionsAreNotAttributed:
    def test_version_entity_after_execute(self, led: Ledger) -> None:
        """A manual edit versioned after an execution has no derived_from_execution_id / _function."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        made, execution_id = out.ecs_id, out.derived_from_execution_id
        assert execution_id is not None
        out.name = "x"
        assert EntityRegistry.version_entity(out) is True
        assert_manual(led, out.ecs_id)
        assert out.derived_from_execution_id is None and out.derived_from_function is None
        first, second = EntityRegistry.history(out.lineage_id)
        assert (first.ecs_id, first.derived_from_execution_id, first.derived_from_function) == (
            made, execution_id, "holes_make_note"
        )
        assert second.derived_from_execution_id is None and second.derived_from_function is None
        assert EntityRegistry.as_of(out.lineage_id, position=led.store.head()).derived_from_execution_id is None

    def test_execution_versions_keep_their_execution(self, led: Ledger) -> None:
        """The version an execution wrote names that execution, in the event and in SQL."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        meta = version_payload(led, out.ecs_id)["meta"]
        assert meta["derived_from_execution_id"] == str(out.derived_from_execution_id)
        assert meta["derived_from_function"] == "holes_make_note"
        assert analytics_meta(led, out.ecs_id) == (
            str(out.derived_from_execution_id), "holes_make_note", "execution"
        )

    @pytest.mark.parametrize("function", ["holes_bump", "holes_bump_in_child"])
    def test_mutation_by_a_later_execution_names_the_later_one(self, led: Ledger, function: str) -> None:
        """A version written by a second execution (inline or in a child) is attributed to it, not to the creator."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        bumped = CallableRegistry.execute(function, note=out)
        second = led.sql(
            "SELECT execution_id FROM executions WHERE function_name = ?", [function]
        ).fetchall()[0][0]
        stored = EntityRegistry.get_stored_entity(bumped.ecs_id, bumped.ecs_id)
        assert str(stored.derived_from_execution_id) == second
        assert stored.derived_from_function == function
        assert stored.function_input_entities == [] and stored.output_index is None
        assert analytics_meta(led, bumped.ecs_id) == (second, function, "execution")

    def test_edited_output_traced_as_an_input(self, led: Ledger) -> None:
        """An edited output passed to the next call is versioned (traced) as a manual edit."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        out.name = "edited"
        CallableRegistry.execute("holes_bump", note=out)
        traced = [
            p for _, t, p in events(led)
            if t == "entity.version" and p["lineage_id"] == str(out.lineage_id) and p["cause"] == "version"
        ]
        assert len(traced) == 1
        assert_manual(led, UUID(traced[0]["ecs_id"]))

    def test_put_after_execute(self, led: Ledger) -> None:
        """``put`` on an execution's output writes a version attributed to no execution."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        new_root = put(f"@{out.ecs_id}.name", "b")
        assert new_root.name == "b"
        assert_manual(led, new_root.ecs_id)

    def test_detach_after_execute(self, led: Ledger) -> None:
        """Detaching a child of an output: the parent's and the child's new versions are manual."""
        box = CallableRegistry.execute("holes_make_box", name="b", n=2)
        leaf = box.leaves[0]
        leaf.detach()
        assert_manual(led, box.ecs_id)
        assert_manual(led, leaf.ecs_id)

    def test_attach_after_execute(self, led: Ledger) -> None:
        """Attaching a root into an output's tree: the output's new version is manual."""
        box = CallableRegistry.execute("holes_make_box", name="b", n=1)
        loose = HLeaf(label="loose")
        loose.promote_to_root()
        box.leaves.append(loose)
        loose.attach(box)
        assert_manual(led, box.ecs_id)
        assert_manual(led, loose.ecs_id, box.ecs_id)

    def test_borrow_after_execute(self, led: Ledger) -> None:
        """A borrowed value versioned by hand keeps its attribute_source but names no execution."""
        out = CallableRegistry.execute("holes_make_note", name="a")
        source = HNote(name="source")
        source.promote_to_root()
        out.borrow_attribute_from(source, "name", "name")
        EntityRegistry.version_entity(out)
        assert_manual(led, out.ecs_id)
        assert version_payload(led, out.ecs_id)["meta"]["attribute_source"] == {"name": str(source.ecs_id)}
        other = CallableRegistry.execute("holes_make_note", name="c")
        other.borrow_from_address(f"@{source.ecs_id}.name", "name")
        EntityRegistry.version_entity(other)
        assert_manual(led, other.ecs_id)

    def test_unpacked_sibling_metadata_is_dropped_by_a_manual_edit(self, led: Ledger) -> None:
        """A manual version of an unpacked output drops output_index and sibling ids of the old execution."""

        @CallableRegistry.register("holes_pair")
        def holes_pair(a: str) -> tuple[HNote, HNote]:
            return HNote(name=a), HNote(name=a + "2")

        first, _ = CallableRegistry.execute("holes_pair", a="p")
        assert first.output_index == 0 and first.sibling_output_entities
        first.name = "manual"
        EntityRegistry.version_entity(first)
        assert_manual(led, first.ecs_id)
        assert first.output_index is None and first.sibling_output_entities == []

    def test_read_back_after_reopening(self, durable_url: str) -> None:
        """A reopened ledger reads the manual version without attribution (from the log alone)."""
        lg = ledger.connect(durable_url)
        try:
            out = CallableRegistry.execute("holes_make_note", name="a")
            out.name = "x"
            EntityRegistry.version_entity(out)
        finally:
            lg.close()
            ledger.set_default_ledger(None)
        with Ledger(durable_url) as again:
            made, manual = again.registry.history(out.lineage_id)
            assert made.derived_from_function == "holes_make_note"
            assert manual.derived_from_execution_id is None and manual.derived_from_function is None


# ============================================================ 2. iterator returns
#: Return hints whose values cannot be stored: iterators, generators, callables.
REFUSED_LEAVES: list[Any] = [
    typing.Iterator[int], typing.Generator[int, None, None], typing.Iterable[int],
    typing.AsyncIterator[int], typing.AsyncGenerator[int, None], typing.AsyncIterable[int],
    typing.Callable[[int], int], typing.Callable[..., HNote],
    abc.Iterator[int], abc.Generator[int, None, None], abc.Iterable[HNote],
    abc.AsyncIterator[int], abc.AsyncGenerator[int, None], abc.Callable[[], int],
    typing.Iterator, typing.Generator, typing.Iterable, typing.AsyncIterator,
    typing.AsyncGenerator, typing.Callable,
    abc.Iterator, abc.Generator, abc.Iterable, abc.AsyncIterator, abc.AsyncGenerator, abc.AsyncIterable,
    abc.Callable,
]


def nested_hints() -> st.SearchStrategy[Any]:
    """A refused hint, alone or inside lists, optionals, dict values, tuples and Annotated."""
    return st.recursive(
        st.sampled_from(REFUSED_LEAVES),
        lambda inner: st.one_of(
            inner.map(lambda h: list[h]),  # type: ignore[valid-type]
            inner.map(lambda h: Optional[h]),  # type: ignore[valid-type]
            inner.map(lambda h: dict[str, h]),  # type: ignore[valid-type]
            inner.map(lambda h: tuple[int, h]),  # type: ignore[valid-type]
            inner.map(lambda h: h | None),
            inner.map(lambda h: typing.Annotated[h, "doc"]),
        ),
        max_leaves=3,
    )


def function_with_return(hint: Any) -> Any:
    def fn() -> None:  # the hint is set below: a test cannot spell every hint in source
        return None

    fn.__annotations__["return"] = hint
    return fn


class TestUnstorableReturnHints:
    @pytest.mark.parametrize("hint", REFUSED_LEAVES, ids=repr)
    def test_refused_at_registration(self, hint: Any) -> None:
        """Iterator, generator, iterable and callable return hints are refused, naming the function and hint."""
        name = f"holes_refused_{uuid4().hex[:8]}"
        with pytest.raises(FunctionRegistrationError) as info:
            CallableRegistry.register(name)(function_with_return(hint))
        assert repr(name) in str(info.value) and "return type hint" in str(info.value)
        origin = typing.get_origin(hint) or hint
        assert getattr(origin, "__name__", repr(origin)) in str(info.value)
        assert name not in CallableRegistry.list_functions()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(nested_hints())
    def test_refused_anywhere_inside_the_hint(self, hint: Any) -> None:
        """A refused hint nested in containers, unions or Annotated is refused too."""
        with pytest.raises(FunctionRegistrationError, match="return type hint"):
            CallableRegistry.register("holes_refused_nested")(function_with_return(hint))

    def test_async_generator_function_refused(self) -> None:
        """An async generator function with an AsyncIterator hint is refused like a sync one."""

        async def agen() -> abc.AsyncIterator[int]:
            yield 1

        with pytest.raises(FunctionRegistrationError, match="'holes_agen'"):
            CallableRegistry.register("holes_agen")(agen)

    @pytest.mark.parametrize(
        "hint", [int, list[int], tuple[int, ...], dict[str, HNote], HNote, Optional[HNote], Any, None,
                 abc.Sequence[int], abc.Mapping[str, int]],
        ids=repr,
    )
    def test_storable_hints_still_register(self, hint: Any) -> None:
        """Hints of values the ledger can store keep registering."""
        name = f"holes_ok_{uuid4().hex[:8]}"
        CallableRegistry.register(name)(function_with_return(hint))
        try:
            assert name in CallableRegistry.list_functions()
        finally:
            CallableRegistry.unregister(name)


def make_iterator(kind: str) -> Any:
    if kind == "generator":
        return (i for i in range(3))
    if kind == "list_iterator":
        return iter([1, 2, 3])
    if kind == "map":
        return map(str, [1, 2])
    if kind == "nested":
        return [1, (i for i in range(2))]
    if kind == "entity_field":
        return HBag(stuff={"a": [1, (i for i in range(2))]})

    async def agen() -> Any:
        yield 1

    return agen()


RUNS = [("inline", False), ("inline", True), ("process", False), ("process", True)]


RUN_IDS = ["inline-sync", "inline-async", "process-sync", "process-async"]


class TestIteratorReturnedAnyway:
    @pytest.mark.parametrize("kind", ["generator", "list_iterator", "map", "nested", "entity_field", "async_generator"])
    @pytest.mark.parametrize("isolation,is_async", RUNS, ids=RUN_IDS)
    @pytest.mark.parametrize("via", ["execute", "aexecute"])
    def test_every_kind_every_way(self, mem: Ledger, kind: str, isolation: str, is_async: bool, via: str) -> None:
        """Any iterator returned for an ``Any`` hint, run any way, is a ReturnTypeError recorded as execution.failed."""
        self.check(mem, kind, isolation, is_async, via)

    @pytest.mark.parametrize("isolation,is_async", RUNS, ids=RUN_IDS)
    def test_recorded_on_every_store(self, led: Ledger, isolation: str, is_async: bool) -> None:
        """The failure of a returned generator is recorded on memory, SQLite and PostgreSQL alike."""
        self.check(led, "generator", isolation, is_async, "execute")

    @staticmethod
    def check(led: Ledger, kind: str, isolation: str, is_async: bool, via: str) -> None:
        name = f"holes_iter_{kind}_{isolation}_{is_async}"
        if is_async:
            async def fn(n: int) -> Any:
                return make_iterator(kind)
        else:
            def fn(n: int) -> Any:
                return make_iterator(kind)
        CallableRegistry.register(name, isolation=isolation)(fn)
        before = led.store.head()
        with pytest.raises(ReturnTypeError, match=f"{name!r}") as info:
            if via == "execute":
                CallableRegistry.execute(name, n=1)
            else:
                asyncio.run(CallableRegistry.aexecute(name, n=1))
        assert "iterator" in str(info.value) or "generator" in str(info.value)
        after = events(led)[before:]
        assert [t for _, t, _ in after] == ["execution.failed"]
        failed = after[0][2]
        assert failed["function_name"] == name and failed["error_type"] == "ReturnTypeError"
        assert led.verify().ok
        assert CallableRegistry.execute("holes_upper", text="ok").result == "OK"

    def test_generator_in_a_field_versioned_by_hand(self, led: Ledger) -> None:
        """A generator in an entity field is an UnstorableValueError naming the field, not a raw TypeError."""
        from ledger.errors import UnstorableValueError

        bag = HBag(stuff=[(i for i in range(2))])
        before = events(led)
        with pytest.raises(UnstorableValueError, match=r"root\.stuff\[0\]: a generator value cannot be stored"):
            bag.promote_to_root()
        assert events(led) == before

    @pytest.mark.parametrize("isolation", ["inline", "process"])
    def test_generator_for_a_list_hint(self, led: Ledger, isolation: str) -> None:
        """A generator returned for ``list[int]`` is refused inline as in a process (not silently consumed)."""
        name = f"holes_listgen_{isolation}"

        @CallableRegistry.register(name, isolation=isolation)
        def listgen(n: int) -> list[int]:
            return (i for i in range(n))  # type: ignore[return-value]

        with pytest.raises(ReturnTypeError, match=name):
            CallableRegistry.execute(name, n=3)
        assert [p["error_type"] for p in failures(led)] == ["ReturnTypeError"]
        assert not [t for _, t, _ in events(led) if t == "execution.completed"]


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


# ============================================================ 4. interrupts
def make_interrupt(kind: str) -> BaseException:
    return KeyboardInterrupt("stop") if kind == "KeyboardInterrupt" else SystemExit(3)


class TestInterruptsAreRecorded:
    @pytest.mark.parametrize("kind", ["KeyboardInterrupt", "SystemExit"])
    @pytest.mark.parametrize("isolation,is_async", RUNS, ids=RUN_IDS)
    @pytest.mark.parametrize("via", ["execute", "aexecute"])
    def test_recorded_then_reraised(self, led: Ledger, kind: str, isolation: str, is_async: bool, via: str) -> None:
        """An interrupt inside a function is recorded as execution.failed, then reaches the caller unchanged."""
        name = f"holes_interrupt_{kind}_{isolation}_{is_async}"
        raised: list[BaseException] = []

        def boom(note: HNote) -> HNote:
            exc = make_interrupt(kind)
            raised.append(exc)
            raise exc

        if is_async:
            async def fn(note: HNote) -> HNote:
                return boom(note)
        else:
            fn = boom
        CallableRegistry.register(name, isolation=isolation)(fn)
        note = HNote(name="n")
        note.promote_to_root()
        before = led.store.head()
        with pytest.raises(type(make_interrupt(kind))) as info:
            if via == "execute":
                CallableRegistry.execute(name, note=note)
            else:
                asyncio.run(CallableRegistry.aexecute(name, note=note))
        if isolation == "inline":
            assert info.value is raised[0]  # the very exception, not a copy or a wrapper
        assert info.value.args == make_interrupt(kind).args
        after = events(led)[before:]
        assert [t for _, t, _ in after] == ["execution.failed"]
        failed = after[0][2]
        assert (failed["function_name"], failed["error_type"]) == (name, kind)
        assert failed["inputs"][0]["ecs_id"] == str(note.ecs_id)
        # the ledger stays usable: reads, a new execution, a manual version, verify
        assert CallableRegistry.execute("holes_bump", note=note).score == 1.0
        note.name = "after"
        assert EntityRegistry.version_entity(note)
        assert led.verify().ok
        assert led.sql("SELECT count(*) FROM executions WHERE NOT succeeded").fetchall() == [(1,)]

    def test_ctrl_c_while_a_child_runs(self, led: Ledger, tmp_path: Path) -> None:
        """Ctrl-C reaching the parent while it waits for its child: child killed and reaped, call recorded, interrupt re-raised."""
        import signal
        import threading

        pid_file = tmp_path / "child.pid"

        # the timeout only ends a broken run (the test then fails instead of hanging)
        @CallableRegistry.register("holes_ctrl_c", isolation="process", timeout=60)
        def holes_ctrl_c(note: HNote) -> HNote:
            pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
            os.replace(pid_file.with_suffix(".tmp"), pid_file)  # whole, or not there yet
            signal.pause()  # the child waits for ever: only the parent can end it
            return note

        main = threading.main_thread().ident
        assert main == threading.get_ident()

        def press_ctrl_c() -> None:
            """Signal the whole process, as a terminal does, once the parent waits on its child.

            Sent earlier (while ``fork`` runs its at-fork hooks in the parent) the
            interrupt would be swallowed by Python itself, which is not what this tests.
            """
            for _ in range(6000):
                frame = sys._current_frames().get(main)
                if pid_file.exists() and frame is not None and frame.f_code.co_name == "_read_all":
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                threading.Event().wait(0.01)

        presser = threading.Thread(target=press_ctrl_c, daemon=True)
        note = HNote(name="n")
        note.promote_to_root()
        presser.start()
        with pytest.raises(KeyboardInterrupt):
            CallableRegistry.execute("holes_ctrl_c", note=note)
        presser.join()
        child = int(pid_file.read_text())
        with pytest.raises(ChildProcessError):
            os.waitpid(child, os.WNOHANG)  # already reaped: no zombie left behind
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
        assert [(p["function_name"], p["error_type"]) for p in failures(led)] == [("holes_ctrl_c", "KeyboardInterrupt")]
        assert CallableRegistry.execute("holes_bump", note=note).score == 1.0

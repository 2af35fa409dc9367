"""What the ledger needs to know about one entity class, computed once per class.

Fields split in two kinds. *Plain* fields hold data that can never contain an
entity (their annotation mentions no ``Entity`` subclass): they are compared and
stored as values. *Tree* fields may hold entities, alone or inside lists, tuples
and dicts: their value is walked and every entity in it becomes a child node.
Fields annotated ``Any`` / ``object`` are treated as tree fields because only the
runtime value can tell.

Classes are found again from stored events by a stable *topic* string
(``module:qualname`` unless the class sets ``__ledger_topic__``), so a renamed
module can keep reading old events.
"""

from __future__ import annotations

import types
import typing
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import orjson
from pydantic import BaseModel, ConfigDict, create_model
from pydantic_core import SchemaSerializer

from ledger import _process
from ledger.errors import (
    EntityDefinitionError,
    TreeStructureError,
    UnknownEntityTypeError,
)
from ledger.model.personal import is_personal, widen_for_erasure

if TYPE_CHECKING:
    from ledger.model.entity import Entity

#: Identity and derivation fields every entity carries; never part of the domain data.
IDENTITY_FIELDS: frozenset[str] = frozenset(
    {
        "ecs_id",
        "live_id",
        "lineage_id",
        "previous_ecs_id",
        "old_ids",
        "created_at",
        "forked_at",
        "root_ecs_id",
        "root_live_id",
        "attribute_source",
        "from_storage",
        "derived_from_function",
        "derived_from_execution_id",
        "function_input_entities",
        "sibling_output_entities",
        "output_index",
    }
)

_JSON_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})

#: Identity fields that travel in a version event's ``meta`` (only when not default).
META_FIELDS: tuple[str, ...] = (
    "attribute_source",
    "derived_from_function",
    "derived_from_execution_id",
    "function_input_entities",
    "sibling_output_entities",
    "output_index",
)


def _mentions_entity(annotation: Any, entity_base: type) -> bool:
    """True when a value of this annotation could contain an entity."""
    if annotation is Any or annotation is object:
        return True
    if isinstance(annotation, typing.TypeVar):
        return True
    if isinstance(annotation, type):
        if issubclass(annotation, entity_base):
            return True
        if annotation in (list, tuple, dict, set, frozenset):  # bare containers: Any items
            return True
        return False
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _mentions_entity(typing.get_args(annotation)[0], entity_base)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType) or origin is not None:
        if origin in (list, tuple, dict, set, frozenset) and not args:
            return True
        return any(
            _mentions_entity(a, entity_base) for a in args if a is not Ellipsis
        )
    if isinstance(annotation, (str, typing.ForwardRef)):
        return True  # unresolved forward reference: decide from the runtime value
    return False


@dataclass(frozen=True, slots=True)
class EntitySchema:
    """Per-class facts used on every write and read; built once and cached."""

    cls: type[Entity]
    topic: str
    version: int
    plain_fields: tuple[str, ...]
    tree_fields: tuple[str, ...]
    plain_include: set[str]  # never changed; a set because pydantic-core's include= is typed so
    serializer: SchemaSerializer
    plain_model: type[BaseModel] | None
    #: Plain fields marked ``Personal[...]``: stored encrypted with the lineage's key.
    personal_fields: tuple[str, ...] = ()
    #: ``tree_fields`` as a set: a stored version's child fields are compared with it on read.
    tree_include: frozenset[str] = frozenset()

    def dump_plain(self, entity: Entity, values: dict[str, Any] | None = None) -> bytes:
        """The JSON of the entity's plain fields.

        Scalars (the common case) go straight through orjson; anything else
        through Pydantic's own serializer, which knows every field type.
        """
        if not self.plain_fields:
            return b"{}"
        if values is not None:
            for v in values.values():
                if type(v) not in _JSON_SCALARS:
                    break
            else:
                return orjson.dumps(values)
        return self.serializer.to_json(entity, include=self.plain_include)

    def load_plain(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate stored plain values back into Python values of the right types."""
        if self.plain_model is None:
            return {}
        return dict(self.plain_model.model_validate(data).__dict__)


class TopicRegistry:
    """Topic string -> entity class, for reading events back into classes.

    Held weakly: a class defined in a test function disappears with it. The table
    itself is process state (``ledger/_process.py``); the eventsourcing library keeps
    the same kind of topic cache.
    """

    def __init__(self) -> None:
        self._by_topic: weakref.WeakValueDictionary[str, type[Entity]] = _process.topics

    def add(self, topic: str, cls: type[Entity]) -> None:
        self._by_topic[topic] = cls

    def resolve(self, topic: str) -> type[Entity]:
        cls = self._by_topic.get(topic)
        if cls is not None:
            return cls
        module_name, _, qualname = topic.partition(":")
        try:
            import importlib

            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError, ValueError):
            raise UnknownEntityTypeError(
                f"no entity class is known for stored type {topic!r}; import the "
                "module that defines it (or set __ledger_topic__ on the renamed class)"
            ) from None
        found: type[Entity] = obj
        self._by_topic[topic] = found
        return found


topics = TopicRegistry()


def topic_of(cls: type) -> str:
    explicit = cls.__dict__.get("__ledger_topic__")
    if explicit:
        return str(explicit)
    return f"{cls.__module__}:{cls.__qualname__}"


def build_schema(cls: type[Entity], entity_base: type) -> EntitySchema:
    """The schema of entity class ``cls``; ``entity_base`` is ``Entity`` itself, passed in by
    the class (this module sits below it) to tell tree fields from plain ones."""
    plain: list[str] = []
    tree: list[str] = []
    personal: list[str] = []
    fields: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        if name in IDENTITY_FIELDS:
            continue
        if _mentions_entity(info.annotation, entity_base):
            if is_personal(info):
                raise EntityDefinitionError(
                    f"{cls.__qualname__}.{name}: a field that holds entities cannot be Personal; "
                    "mark the personal fields of the child entity class instead"
                )
            tree.append(name)
        else:
            plain.append(name)
            if is_personal(info):
                personal.append(name)
                fields[name] = widen_for_erasure(info)  # reads back as ERASED once erased
            else:
                fields[name] = (info.annotation, info)
    plain_model: type[BaseModel] | None = None
    if plain:
        plain_model = create_model(
            f"{cls.__name__}PlainFields",
            __config__=ConfigDict(arbitrary_types_allowed=True),
            **fields,
        )
    return EntitySchema(
        cls=cls,
        topic=topic_of(cls),
        version=int(getattr(cls, "__ledger_version__", 1)),
        plain_fields=tuple(plain),
        tree_fields=tuple(tree),
        plain_include=set(plain),
        serializer=cls.__pydantic_serializer__,
        plain_model=plain_model,
        personal_fields=tuple(personal),
        tree_include=frozenset(tree),
    )


def check_dict_key(key: object, where: str) -> None:
    """Tree-field dict keys must survive a JSON round trip unchanged."""
    if type(key) is not str and type(key) is not int:
        raise TreeStructureError(
            f"{where}: dict key {key!r} of type {type(key).__name__} is not supported "
            "in a field that holds entities (use str or int keys)"
        )

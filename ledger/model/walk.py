"""One walker over the containers entity fields may hold: lists, tuples and dicts.

Field values, shapes (a version's children as ``Ref``s) and function arguments all nest
these three containers; everything else is a leaf. Copying, remapping, materializing and
summarizing are then one ``map_leaves`` call with a leaf function, and editing one element
deep inside is one ``replace_at`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["REMOVE", "iter_leaves", "map_leaves", "replace_at"]


def map_leaves(
    value: Any,
    leaf: Callable[[Any], Any],
    *,
    tuples_as_lists: bool = False,
    str_keys: bool = False,
) -> Any:
    """A rebuilt copy of ``value``'s lists, tuples and dicts with ``leaf`` applied to the rest.

    ``tuples_as_lists`` and ``str_keys`` give JSON-shaped output (for display and diffs).
    """

    def walk(v: Any) -> Any:
        t = type(v)
        if t is list:
            return [walk(x) for x in v]
        if t is tuple:
            return [walk(x) for x in v] if tuples_as_lists else tuple(walk(x) for x in v)
        if t is dict:
            if str_keys:
                return {str(k): walk(x) for k, x in v.items()}
            return {k: walk(x) for k, x in v.items()}
        return leaf(v)

    return walk(value)


def iter_leaves(value: Any) -> Iterator[Any]:
    """Every leaf inside lists, tuples and dict values, in order (iterative: no recursion)."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is list or t is tuple:
            stack.extend(reversed(v))
        elif t is dict:
            stack.extend(reversed(list(v.values())))
        else:
            yield v


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


#: Pass as ``new`` to ``replace_at`` to delete the element instead of replacing it.
REMOVE: Any = _Remove()


def replace_at(container: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``container`` with the element at ``path`` (indexes and keys) set to ``new``,
    or deleted when ``new`` is ``REMOVE``. Containers on the path keep their types; the
    original is never changed (a failed write can restore it)."""
    key, rest = path[0], path[1:]
    if isinstance(container, dict):
        out: Any = dict(container)
    elif isinstance(container, (list, tuple)):
        out = list(container)
    else:
        raise TypeError(f"cannot step into {type(container).__name__} with {key!r}")
    if rest:
        out[key] = replace_at(out[key], rest, new)
    elif new is REMOVE:
        del out[key]
    else:
        out[key] = new
    return tuple(out) if isinstance(container, tuple) else out

"""Field-level differences between two stored versions, children included.

Paths are dotted (``"record.grades.0.score"``); a child present on one side
only appears with ``None`` on the other.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import SchemaMismatchError, UnknownEntityTypeError
from ledger.model.tree import Ref
from ledger.model.walk import map_leaves
from projections.index_protocol import VersionReads
from projections.inline import VersionRecord

__all__ = ["diff_versions"]


def _values(rec: VersionRecord) -> dict[str, Any]:
    try:
        return rec.values()
    except (UnknownEntityTypeError, SchemaMismatchError):  # read without (fitting) classes: stored JSON
        return rec.values_data()


def _summary(index: VersionReads, shape: Any) -> Any:
    """A child (or structure of children) as plain data, for the added/removed side."""

    def leaf(v: Any) -> Any:
        if type(v) is not Ref:
            return v
        rec = index.records[v.ecs_id]
        out: dict[str, Any] = {"ecs_id": str(rec.ecs_id), "entity_type": rec.topic}
        out.update(_values(rec))
        for name, sub in rec.shape.items():
            out[name] = _summary(index, sub)
        return out

    return map_leaves(shape, leaf, tuples_as_lists=True)


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _diff_shapes(index: VersionReads, path: str, a: Any, b: Any, out: dict[str, tuple[Any, Any]]) -> None:
    ta, tb = type(a), type(b)
    if ta is Ref and tb is Ref:
        if a.ecs_id != b.ecs_id:
            _diff_records(index, path, index.records[a.ecs_id], index.records[b.ecs_id], out)
        return
    if ta in (list, tuple) and tb in (list, tuple):
        if _all_children(a) and _all_children(b):
            _diff_children(index, path, a, b, out)
            return
        for i in range(max(len(a), len(b))):
            _diff_shapes(
                index,
                _join(path, i),
                a[i] if i < len(a) else None,
                b[i] if i < len(b) else None,
                out,
            )
        return
    if ta is dict and tb is dict:
        for key in list(a) + [k for k in b if k not in a]:
            _diff_shapes(index, _join(path, key), a.get(key), b.get(key), out)
        return
    if a != b:
        out[path] = (_summary(index, a), _summary(index, b))


def _all_children(items: Any) -> bool:
    return all(type(v) is Ref for v in items)


def _diff_children(index: VersionReads, path: str, a: Any, b: Any, out: dict[str, tuple[Any, Any]]) -> None:
    """Two lists of children, matched by lineage (identity), not by position.

    Removing the first of ten items is then one removal (at its old index), not ten
    changed items; an item kept is compared with its own earlier version and named by
    its new index; an item added is named by its new index. A lineage listed twice on
    one side is matched in order of appearance.
    """
    records = index.records

    def lineages(items: Any) -> list[Any]:
        out_ids = []
        for ref in items:
            rec = records.get(ref.ecs_id)
            out_ids.append(rec.lineage_id if rec is not None else ref.ecs_id)
        return out_ids

    la, lb = lineages(a), lineages(b)
    unmatched: dict[Any, list[int]] = {}
    for i, lineage in enumerate(la):
        unmatched.setdefault(lineage, []).append(i)
    matched_old: set[int] = set()
    added: list[int] = []
    pairs: list[tuple[int, int]] = []
    for j, lineage in enumerate(lb):
        slots = unmatched.get(lineage)
        if slots:
            i = slots.pop(0)
            matched_old.add(i)
            pairs.append((i, j))
        else:
            added.append(j)
    for i in range(len(a)):
        if i not in matched_old:
            out[_join(path, i)] = (_summary(index, a[i]), None)
    for i, j in pairs:
        _diff_shapes(index, _join(path, j), a[i], b[j], out)
    for j in added:
        key = _join(path, j)
        if key in out:  # an old item removed at the index a new one now holds
            out[key] = (out[key][0], _summary(index, b[j]))
        else:
            out[key] = (None, _summary(index, b[j]))


def _diff_records(
    index: VersionReads, prefix: str, a: VersionRecord, b: VersionRecord, out: dict[str, tuple[Any, Any]]
) -> None:
    va, vb = _values(a), _values(b)
    for name in list(va) + [n for n in vb if n not in va]:
        old, new = va.get(name), vb.get(name)
        if old != new:
            out[_join(prefix, name)] = (old, new)
    for name in list(a.shape) + [n for n in b.shape if n not in a.shape]:
        _diff_shapes(index, _join(prefix, name), a.shape.get(name), b.shape.get(name), out)


def diff_versions(index: VersionReads, a: VersionRecord, b: VersionRecord) -> dict[str, tuple[Any, Any]]:
    out: dict[str, tuple[Any, Any]] = {}
    _diff_records(index, "", a, b, out)
    return out

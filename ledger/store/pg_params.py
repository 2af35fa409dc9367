"""Array parameters as PostgreSQL array literals, for the append's one call per batch.

psycopg adapts a Python list element by element in Python (a type lookup per element, then a
dumper per element): for ``ledger_append_v2``'s thirteen arrays that was ~220 µs of the writer's
CPU per batch, more than the rest of the append. Written here as the text of an array literal
(``{a,b,"c"}``), cast in the SQL (``%s::uuid[]``), the same values cost ~90 µs, and the server
parses them in C. ``tests/test_pg_concurrent.py`` round-trips arbitrary values through each.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

__all__ = ["bytea_array", "int_array", "text_array", "uuid_array"]


def uuid_array(values: Sequence[UUID | None]) -> str:
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def int_array(values: Sequence[int]) -> str:
    return "{" + ",".join(map(str, map(int, values))) + "}"


def text_array(values: Sequence[str | None]) -> str:
    """Each element double-quoted, with ``\\`` and ``"`` escaped (anything else is literal inside quotes)."""
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def bytea_array(values: Sequence[bytes]) -> str:
    """Each element as bytea's hex input (``\\x...``), its backslash escaped for the array literal."""
    return "{" + ",".join('"\\\\x' + v.hex() + '"' for v in values) + "}"

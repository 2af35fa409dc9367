"""DuckDB analytics over the event log: typed tables loaded in bulk through Arrow.

The tables are a projection: they follow the log from the last position they
saw (``catch_up``), so a ``sql()`` call only loads what is new. Queries are
read-only: anything but SELECT-like statements is refused.

This first cut materialises ``events`` and ``entity_versions``; the execution
tables join them as the execution pipeline lands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb
import orjson
import pyarrow as pa

from ledger.errors import LedgerError

if TYPE_CHECKING:
    from ledger.ledger import Ledger

__all__ = ["Analytics", "ReadOnlySQLError"]

_READ_ONLY = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
}

_EVENTS = pa.schema(
    [
        ("position", pa.int64()),
        ("stream_id", pa.string()),
        ("stream_version", pa.int64()),
        ("event_type", pa.string()),
        ("recorded_at", pa.string()),
        ("payload", pa.string()),
    ]
)
_VERSIONS = pa.schema(
    [
        ("ecs_id", pa.string()),
        ("lineage_id", pa.string()),
        ("root_ecs_id", pa.string()),
        ("previous_ecs_id", pa.string()),
        ("entity_type", pa.string()),
        ("position", pa.int64()),
        ("recorded_at", pa.string()),
        ("data", pa.string()),
    ]
)


class ReadOnlySQLError(LedgerError, ValueError):
    """``sql()`` was given a statement that would write."""


class Analytics:
    """An in-memory DuckDB database kept in step with one ledger's log."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.con = duckdb.connect()
        self.position = 0
        self.con.execute(
            "CREATE TABLE events (position BIGINT, stream_id VARCHAR, stream_version BIGINT, "
            "event_type VARCHAR, recorded_at TIMESTAMPTZ, payload JSON)"
        )
        self.con.execute(
            "CREATE TABLE entity_versions (ecs_id VARCHAR, lineage_id VARCHAR, root_ecs_id VARCHAR, "
            "previous_ecs_id VARCHAR, entity_type VARCHAR, position BIGINT, recorded_at TIMESTAMPTZ, data JSON)"
        )

    def catch_up(self, page: int = 50_000) -> int:
        """Load events after the last seen position; returns how many were loaded."""
        loaded = 0
        store = self._ledger.store
        while True:
            batch = store.read(self.position + 1, page)
            if not batch:
                return loaded
            ev: dict[str, list[Any]] = {n: [] for n in _EVENTS.names}
            ver: dict[str, list[Any]] = {n: [] for n in _VERSIONS.names}
            for n in batch:
                payload = orjson.loads(n.state)
                text = n.state.decode()
                ev["position"].append(n.id)
                ev["stream_id"].append(str(n.originator_id))
                ev["stream_version"].append(n.originator_version)
                ev["event_type"].append(n.topic)
                ev["recorded_at"].append(payload.get("recorded_at"))
                ev["payload"].append(text)
                if n.topic == "entity.version":
                    ver["ecs_id"].append(payload["ecs_id"])
                    ver["lineage_id"].append(payload["lineage_id"])
                    ver["root_ecs_id"].append(payload["tree_root"])
                    ver["previous_ecs_id"].append(payload["previous_ecs_id"])
                    ver["entity_type"].append(payload["entity_type"])
                    ver["position"].append(n.id)
                    ver["recorded_at"].append(payload["recorded_at"])
                    ver["data"].append(orjson.dumps(payload["values"]).decode())
            events_arrow = pa.table(ev, schema=_EVENTS)
            versions_arrow = pa.table(ver, schema=_VERSIONS)
            self.con.execute("INSERT INTO events SELECT * FROM events_arrow")
            self.con.execute("INSERT INTO entity_versions SELECT * FROM versions_arrow")
            self.position = batch[-1].id
            loaded += len(batch)

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        statements = duckdb.extract_statements(query)
        if len(statements) != 1:
            raise ReadOnlySQLError(f"query: expected one statement, got {len(statements)}")
        if statements[0].type not in _READ_ONLY:
            raise ReadOnlySQLError(
                f"query: only read-only statements are allowed, got {statements[0].type.name}"
            )
        self.catch_up()
        return self.con.sql(query)

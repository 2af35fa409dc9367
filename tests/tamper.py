"""Edits made behind the ledger's back, with the database's own driver (the attacks of the trust tests).

An attacker who can write the store's file or database does not go through ``Ledger``: these
helpers open a plain ``sqlite3`` or ``psycopg`` connection on the store's URL and run SQL.
The SQL is written with ``?`` placeholders; PostgreSQL gets ``%s`` and the URL's schema.
"""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _pg(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    schema = parse_qs(parts.query).get("schema", ["public"])[0]
    return parts._replace(query="").geturl(), schema


def behind(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the store at ``url`` directly and commit; the rows it returned."""
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(url[len("sqlite:///"):])
        try:
            cur = con.execute(statement, params)
            rows = cur.fetchall()
            con.commit()
            return rows
        finally:
            con.close()
    import psycopg

    base, schema = _pg(url)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        cur = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def events_table(url: str) -> str:
    """The name of the store's events table on its backend."""
    if url.startswith("sqlite:///"):
        return "stored_events"
    rows = behind(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE '%events'")
    return str(rows[0][0])


def _rows(url: str):
    """Direct access to the raw table, bypassing the ledger (what an attacker would do)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        return conn, "stored_events", "rowid"
    import psycopg

    base, _, query = url.partition("?")
    schema = query.split("=", 1)[1]
    conn = psycopg.connect(base, autocommit=True)
    return conn, f'"{schema}".stored_events', "notification_id"

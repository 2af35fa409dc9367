"""Shared fixtures: one recorder-agnostic suite, run on memory, SQLite files and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

import ledger
from ledger import Ledger

PG_BASE = os.environ.get("LEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_BASE.split("?")[0], connect_timeout=2):
            return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL not reachable at {PG_BASE}: {exc}".splitlines()[0]


PG_SKIP_REASON = _pg_reason()
requires_pg = pytest.mark.skipif(PG_SKIP_REASON is not None, reason=PG_SKIP_REASON or "")


def drop_pg_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def fresh_pg_url() -> Iterator[str]:
    """A URL on a throw-away schema, dropped afterwards (skips without a server)."""
    if PG_SKIP_REASON is not None:
        pytest.skip(PG_SKIP_REASON)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{PG_BASE}?schema={schema}"
    drop_pg_schema(schema)


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_pg_url()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A fresh, empty store of each kind."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield from fresh_pg_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def durable_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A fresh store that a second Ledger (or process) can reopen."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield from fresh_pg_url()


@pytest.fixture
def led(store_url: str) -> Iterator[Ledger]:
    """A ledger on each backend, installed as the process default."""
    lg = ledger.connect(store_url)
    yield lg
    lg.close()
    ledger.set_default_ledger(None)


@pytest.fixture
def mem() -> Iterator[Ledger]:
    """A memory ledger installed as the default (for semantics that do not depend on the backend)."""
    lg = ledger.connect("memory://")
    yield lg
    lg.close()
    ledger.set_default_ledger(None)

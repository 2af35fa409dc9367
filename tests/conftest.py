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
def lg(store_url: str) -> Iterator[Ledger]:
    """A ledger on each backend, not installed as the default (test_erasure, test_keys, ...)."""
    led = Ledger(store_url)
    yield led
    led.close()


@pytest.fixture
def mem() -> Iterator[Ledger]:
    """A memory ledger installed as the default (for semantics that do not depend on the backend)."""
    lg = ledger.connect("memory://")
    yield lg
    lg.close()
    ledger.set_default_ledger(None)


# ---------------------------------------------------------------- the fast subset
#: The slowest tests, marked ``slow`` so that ``pytest -m "not slow"`` leaves them out
#: (docs/testing.md): those that start processes (the console script, several writers, a
#: browser, the README's and docs' pages run end to end) or search with hypothesis for long.
#: A file marks all its tests; ``file::Class`` or ``file::test`` one class or test (each of
#: its parametrisations). Kept here rather than on the tests, so a test file need not change
#: when it becomes slow or fast; found from ``pytest --durations=60``.
SLOW = (
    "test_analytics_cache.py",
    "test_batch_map.py",
    "test_cli_demo.py",
    "test_crash.py",
    "test_docs.py",
    "test_many_writers.py",
    "test_pg_concurrent.py",
    "test_readme.py",
    "test_typing.py",
    "test_ui_browser.py",
    "test_cli.py::TestDemo",
    "test_cli_output.py::TestPiped",
    "test_cli_sql.py::TestConsoleScript",
    "test_layering.py::test_a_wheel_holds_only_the_library_packages",
    "test_reexecute.py::TestCommandLine",
    "test_open_safety.py::TestCorruptRecords",
    "test_open_safety.py::TestCreateFalsePostgres",
    "test_analytics.py::test_incremental_catch_up_equals_full_rebuild",
    "test_reactions.py::TestFollowers",
    "test_replay_property.py::test_replay_rebuilds_the_live_registry",
    "test_seal_batch.py::test_seal_batch_writes_the_same_bytes_as_the_reference",
    "test_upcasting.py::TestSchemaMismatchAcrossProcesses",
    "test_readonly.py::TestAnalyticsFile",
    "test_readonly.py::TestForAnyWrapping",
    "test_stored_inline.py::test_processes_opening_a_new_store_at_once_all_get_in",
    "test_ui.py::TestCommand",
)


def on_postgresql(item: pytest.Item) -> bool:
    """Whether a test runs on a PostgreSQL schema of its own (``pg_url``, or the ``postgresql``
    parameter of ``store_url``, ``durable_url`` or a file's own backend fixture): making and
    dropping one costs ~0.5 s."""
    if "pg_url" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    return any(isinstance(v, str) and v == "postgresql" for v in callspec.params.values()) or "postgresql" in callspec.id.split("-")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the ``SLOW`` tests, and mark ``postgresql`` (and ``slow``) those on a PostgreSQL schema
    of their own: the fast subset runs the backend-independent tests on memory and SQLite. An
    entry of ``SLOW`` naming a class or test its collected file no longer has is an error, so a
    renamed slow test cannot quietly join the fast subset."""
    matched: set[str] = set()
    files: set[str] = set()
    for item in items:
        if on_postgresql(item):
            item.add_marker(pytest.mark.postgresql)
            item.add_marker(pytest.mark.slow)
        path = item.nodeid.split("[", 1)[0].removeprefix("tests/")
        files.add(path.split("::", 1)[0])
        for entry in SLOW:
            if path == entry or path.startswith(entry + "::"):
                item.add_marker(pytest.mark.slow)
                matched.add(entry)
    lost = [entry for entry in SLOW if entry.split("::", 1)[0] in files and entry not in matched and "::" in entry]
    if lost:
        raise pytest.UsageError(f"tests/conftest.py SLOW names tests that no longer exist: {lost}")

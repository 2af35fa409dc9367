"""PostgreSQL's append function (``ledger.store.pg_append``): the seal written by the server.

The function seals each event in plpgsql, a second implementation of seal v4 beside
``ledger.events.seal.seal_at``. These tests hold it to the Python one byte for byte, for
any batch, and check the ways back to the Python path: a schema without the function, and an
index tracking row that lags (which no longer stops appends: they index themselves).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.events.seal import NewEvent, check_seal, seal_at
from ledger.store.pg_append import FUNCTION
from ledger.store.version_index import INDEX_NAME

from .conftest import PG_BASE, fresh_pg_url, requires_pg
from .models import student

pytestmark = requires_pg


@pytest.fixture(scope="module")
def pg_ledger() -> Iterator[Ledger]:
    url = next(iter(fresh_pg_url()))
    with Ledger(url) as led:
        yield led
    schema = url.split("schema=")[1]
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_body = st.dictionaries(st.sampled_from(["a", "name", "ü", "事件", "n"]), st.one_of(_text, st.integers(-(2**63), 2**63 - 1), st.none()), max_size=4)
_topic = st.sampled_from(["execution.completed", "test.event", "tëst.ünïcode", "事件.x"])


def _copy(e: NewEvent) -> NewEvent:
    return NewEvent(e.stream_id, e.version, e.topic, e.body, e.prev_hash, e.ecs_id, e.members)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(st.integers(0, 3), _topic, _body), min_size=1, max_size=8), continue_old=st.booleans())
def test_the_server_seals_every_batch_as_seal_at_does(
    pg_ledger: Ledger, batch: list[tuple[int, str, dict]], continue_old: bool, caplog: pytest.LogCaptureFixture
) -> None:
    store = pg_ledger.store
    backend = store._backend
    streams = [uuid.uuid4() for _ in range(4)]
    heads: dict[uuid.UUID, tuple[int, str | None]] = {s: (0, None) for s in streams}
    if continue_old:  # some streams already have records: their chain continues from the stored head
        first = [NewEvent(s, 1, "test.event", b'{"seed":1}', None) for s in streams[:2]]
        store.append(first)
        for e in first:
            heads[e.stream_id] = (1, e.hash)
    events = []
    for which, topic, body in batch:
        s = streams[which]
        version, prev = heads[s]
        events.append(NewEvent(s, version + 1, topic, orjson.dumps(body), prev))
        heads[s] = (version + 1, prev)  # the prev of later events in the batch comes from the batch
    reference = [_copy(e) for e in events]
    with caplog.at_level(logging.ERROR):
        positions = backend._append_in_server(events)
    assert positions is not None, "the server path declined the batch"
    assert not [r for r in caplog.records if FUNCTION in r.getMessage()]
    stored = {n.id: bytes(n.state) for n in store.read(start=positions[0], limit=len(positions))}
    # the reference: seal_at on copies, at the positions the server took, after the session's
    # last record and the checkpoint the server named in the batch's first record (seal v4)
    first = events[0]
    link = check_seal(first.topic, first.stream_id, first.version, stored[positions[0]]).session
    assert link is not None and link.checkpoint < positions[0] and link.after < positions[0]
    seal_at(reference, positions, link)
    assert [stored[p] for p in positions] == [e.state for e in reference]
    assert [e.hash for e in events] == [e.hash for e in reference]


def test_the_ledger_appends_through_the_function_and_verifies(pg_url: str) -> None:
    with Ledger(pg_url) as led:
        calls = []
        real = led.store._backend._append_from_python
        led.store._backend._append_from_python = lambda events: calls.append(1) or real(events)  # type: ignore[method-assign]
        s = student(n=3)
        led.registry.register_entity(s)
        s.grades[1].score = 7.0
        led.registry.version_entity(s)
        assert calls == []  # every batch went through the function
        assert led.verify().ok
        assert led.store.stored_index() == led.store.rebuilt_index()


def test_a_schema_without_the_function_appends_the_python_way(pg_url: str) -> None:
    with Ledger(pg_url) as led:
        led.registry.register_entity(student(n=1))
        schema = pg_url.split("schema=")[1]
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'DROP FUNCTION "{schema}".{FUNCTION}')
        led.registry.register_entity(student(n=2))
        assert led.store._backend._server_append is False
        assert led.verify().ok
        assert led.store.stored_index() == led.store.rebuilt_index()
    with Ledger(pg_url) as again:  # a writable open puts it back
        again.registry.register_entity(student(n=1))
        assert again.store._backend._server_append is True
        assert again.verify().ok


def test_a_lagging_index_tracking_row_does_not_stop_appends(pg_url: str) -> None:
    """The tracking row only says how far catch-up indexed the records written before appends
    indexed themselves: a row that lags sends no batch the Python way, and catch-up never
    indexes past where appends took over (it would put old tree rows over new ones)."""
    with Ledger(pg_url) as led:
        led.registry.register_entity(student(n=1))
        schema = pg_url.split("schema=")[1]
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'UPDATE "{schema}".ledger_index_tracking SET position = 0 WHERE name = %s', (INDEX_NAME,))
        calls = []
        real = led.store._backend._append_from_python
        led.store._backend._append_from_python = lambda *a: calls.append(1) or real(*a)  # type: ignore[method-assign]
        led.registry.register_entity(student(n=1))
        assert calls == []
        assert led.store.catch_up_index() == 0  # appends index themselves from the first record on
        assert led.store.index_caught_up()
        assert led.verify().ok
        assert led.store.stored_index() == led.store.rebuilt_index()


def test_a_server_that_seals_differently_writes_nothing(pg_url: str) -> None:
    """The library re-seals every batch before the commit: a function whose seal differs (here
    a replaced body with another seal tag) gets the batch rolled back with a StoreError."""
    from ledger.errors import StoreError
    from ledger.store import pg_append
    with Ledger(pg_url) as led:
        led.registry.register_entity(student(n=1))
        head = led.store.head()
        schema = pg_url.split("schema=")[1]
        tampered = pg_append._APPEND.replace("seal v4", "seal v9")
        assert tampered != pg_append._APPEND
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            pg_append._APPEND, original = tampered, pg_append._APPEND
            try:
                conn.execute(f'DROP FUNCTION "{schema}".{FUNCTION}')
                events_table = led.store.recorder.events_table_name  # type: ignore[attr-defined]
                pg_append.create_append_function(conn, schema, events_table, led.store.recorder.channel_name, INDEX_NAME)  # type: ignore[attr-defined]
            finally:
                pg_append._APPEND = original
        with pytest.raises(StoreError, match="differently"):
            led.registry.register_entity(student(n=1))
        assert led.store.records_between(0, led.store.head()) == head  # a hole, no record
        assert led.verify().ok

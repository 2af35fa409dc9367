"""The append path's seal and index rows are written for speed (``seal.seal_batch``,
``version_index.rows_for_batch``); these properties pin them byte for byte to the
straightforward versions they replaced, kept here as the reference: the same states, hashes
and returned link for any bodies, topics, stream ids (repeated within a batch or not),
versions, prev hashes, first positions and log links.
"""

from __future__ import annotations

import copy
import hashlib
from uuid import UUID

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.events import ENTITY_ERASED, ENTITY_VERSION, check_seal
from ledger.events.seal import GENESIS, NewEvent, seal_batch
from ledger.store.version_index import IndexRows, ecs_id_of, rows_for_batch

_SEAL_TAG = b"entity-ledger seal v2\n"


def reference_seal_batch(events: list[NewEvent], first_position: int, log_prev: str) -> str:
    """Seal v2 as first written: header of topic, stream id (UUID.hex) and version, then the record."""
    stream_last: dict[UUID, str | None] = {}
    position = first_position
    for e in events:
        prev = stream_last.get(e.stream_id, e.prev_hash)
        head = b'%s,"prev_hash":%s,"log_prev":"%s","position":%d' % (
            e.body[:-1],
            b"null" if prev is None else b'"%s"' % prev.encode(),
            log_prev.encode(),
            position,
        )
        header = b"%s%s\n%s\n%d\n" % (_SEAL_TAG, e.topic.encode(), e.stream_id.hex.encode(), e.version)
        sha = hashlib.sha256(header)
        sha.update(head)
        sha.update(b"}")
        digest = sha.hexdigest()
        e.state = b'%s,"hash":"%s"}' % (head, digest.encode())
        e.hash = digest
        stream_last[e.stream_id] = digest
        log_prev = digest
        position += 1
    return log_prev


def reference_rows_for_batch(events: list[NewEvent], first_position: int) -> IndexRows:
    rows = IndexRows()
    for offset, event in enumerate(events):
        if event.topic == ENTITY_VERSION:
            ecs_id = event.ecs_id if event.ecs_id is not None else ecs_id_of(event.body, first_position + offset)
            rows.versions.append((ecs_id, first_position + offset))
            if event.members:
                rows.roots.extend((member, ecs_id) for member in event.members)
        elif event.topic == ENTITY_ERASED:
            rows.erasures.append((event.stream_id, first_position + offset))
    return rows


_hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
_json_bodies = st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.none()), max_size=4).map(orjson.dumps)
_bodies = st.one_of(_json_bodies, st.binary(min_size=1, max_size=200))
_topics = st.one_of(st.sampled_from([ENTITY_VERSION, ENTITY_ERASED, "execution.completed"]), st.text(max_size=30))


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[NewEvent], int, str]:
    pool = draw(st.lists(st.uuids(), min_size=1, max_size=5, unique=True))  # streams recur within a batch
    events = [
        NewEvent(
            draw(st.sampled_from(pool)),
            draw(st.integers(0, 2**63 - 1)),
            draw(_topics),
            draw(_bodies),
            draw(st.one_of(st.none(), _hex64, st.text(max_size=70))),
        )
        for _ in range(draw(st.integers(0, 12)))
    ]
    first = draw(st.integers(1, 2**63 - 1))
    log_prev = draw(st.one_of(st.just(GENESIS), _hex64))
    return events, first, log_prev


@settings(max_examples=300, deadline=None)
@given(batches())
def test_seal_batch_writes_the_same_bytes_as_the_reference(batch: tuple[list[NewEvent], int, str]) -> None:
    events, first, log_prev = batch
    expected = copy.deepcopy(events)
    assert seal_batch(events, first, log_prev) == reference_seal_batch(expected, first, log_prev)
    assert [(e.state, e.hash) for e in events] == [(e.state, e.hash) for e in expected]
    assert all(type(e.state) is bytes and type(e.hash) is str for e in events)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_a_sealed_batch_checks_intact_at_its_positions_and_links(batch: tuple[list[NewEvent], int, str]) -> None:
    events, first, log_prev = batch
    if not all(e.body.endswith(b"}") for e in events):
        return  # check_seal reads a record ending in "}" (every body the ledger writes is a JSON object)
    seal_batch(events, first, log_prev)
    link = log_prev
    for position, e in enumerate(events, first):
        check = check_seal(e.topic, e.stream_id, e.version, e.state)
        assert (check.version, check.intact, check.position, check.log_prev) == (2, True, position, link)
        link = e.hash


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.uuids(), min_size=1, max_size=6, unique=True),
    st.lists(
        st.tuples(
            st.sampled_from([ENTITY_VERSION, ENTITY_ERASED, "execution.completed"]),
            st.integers(0, 5),
            st.one_of(st.none(), st.lists(st.integers(0, 5), max_size=4)),
            st.booleans(),
        ),
        max_size=12,
    ),
    st.integers(1, 2**40),
)
def test_rows_for_batch_gives_the_reference_rows(ids: list[UUID], specs: list[tuple[str, int, list[int] | None, bool]], first: int) -> None:
    events = []
    for topic, which, members, known in specs:
        ecs_id = ids[which % len(ids)]
        body = orjson.dumps({"ecs_id": str(ecs_id)})
        member_ids = None if members is None else tuple(ids[m % len(ids)] for m in members)
        events.append(NewEvent(ids[0], 1, topic, body, None, ecs_id if known else None, member_ids))
    got, want = rows_for_batch(events, first), reference_rows_for_batch(events, first)
    assert (got.versions, got.erasures, got.roots) == (want.versions, want.erasures, want.roots)

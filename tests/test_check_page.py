"""``check_page``'s fast path (``seal.unsealed``) vouches only for what the record-by-record check accepts.

The bulk readers check every record of a page before using it; the fast path checks a
v2 record's tail in place and hashes it without building a ``SealCheck``, and hands
whatever it cannot vouch for to the close look. These tests hold it to the close look
itself: for any one change to a page (a byte, a forged seal over edited bytes, a stream
id in another spelling or none, a version, a topic, a position, a payload of another
type), ``check_page`` accepts exactly when the record-by-record check does, and
otherwise raises the same ``CorruptLogError``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.errors import CorruptLogError
from ledger.events.decode import (
    check_page,
    corrupt,
    record_stream,
    record_topic,
    record_version,
)
from ledger.events.seal import check_seal, unsealed
from tools.workload import Workload

_V2_TAIL = re.compile(rb',"log_prev":"([0-9a-f]{64})","position":(\d{1,19}),"hash":"([0-9a-f]{64})"\}\Z')


def one_by_one(first: int, positions: list, stream_ids: list, versions: list, topics: list, states: list) -> None:
    """The record-by-record check that ``check_page`` did before it had a fast path."""
    uuids: dict[str, UUID] = {}
    expected = first
    for position, raw_id, raw_version, raw_topic, state in zip(positions, stream_ids, versions, topics, states):
        stream_id = record_stream(position, raw_id, uuids)
        version = record_version(position, raw_version)
        topic = record_topic(position, raw_topic)
        if not isinstance(state, (bytes, bytearray, memoryview)) or not state:
            raise corrupt(position, "the record holds no payload")
        seal = check_seal(topic, stream_id, version, bytes(state))
        if not seal.intact:
            raise corrupt(position, "its seal does not match its contents (edited after it was written); run ledger verify")
        if seal.version == 2 and seal.position != position:
            raise corrupt(position, f"its seal names position {seal.position} (records were moved); run ledger verify")
        if seal.version == 2 and position != expected:
            raise corrupt(expected, "the record is missing (the log has a gap here); run ledger verify")
        expected = position + 1


def outcome(check: Any, columns: tuple) -> str | None:
    try:
        check(*columns)
    except CorruptLogError as exc:
        return str(exc)
    return None


def reseal(topic: str, stream_id: UUID, version: int, state: bytes) -> bytes:
    """``state`` with its stated hash recomputed over its (edited) bytes: a forger's v2 seal."""
    match = _V2_TAIL.search(state)
    body = state[: match.start(3) - len(b',"hash":"')] if match else state[: -len(b',"hash":"') - 66]
    header = b"entity-ledger seal v2\n%s\n%s\n%d\n" % (topic.encode(), stream_id.hex.encode(), version)
    return b'%s,"hash":"%s"}' % (body, hashlib.sha256(header + body + b"}").hexdigest().encode())


@pytest.fixture(scope="module")
def page() -> tuple:
    led = Ledger("memory://")
    try:
        Workload(led, seed=5).run(60)
        rows = led.store.read_columns(1, 10_000)
    finally:
        led.close()
    assert len(rows) > 50
    return rows.positions, rows.stream_ids, rows.versions, rows.topics, [bytes(s) for s in rows.states]


class TestFastPath:
    def test_an_intact_page_needs_no_close_look(self, page: tuple) -> None:
        """Every record of an intact v2 log is vouched for, its ids in either plain spelling."""
        positions, ids, versions, topics, states = page
        assert unsealed(positions[0], positions, ids, versions, topics, states) == []
        hex_ids = [UUID(i).hex for i in ids]  # how SQLite keeps them
        assert unsealed(positions[0], positions, hex_ids, versions, topics, states) == []
        check_page(positions[0], positions, hex_ids, versions, topics, states)

    def test_other_spellings_of_a_stream_id_still_pass_the_close_look(self, page: tuple) -> None:
        """Upper case or braces are no damage: the fast path leaves them, the close look accepts them."""
        positions, ids, versions, topics, states = page
        odd = [i.upper() for i in ids]
        assert unsealed(positions[0], positions, odd, versions, topics, states) == list(range(len(ids)))
        check_page(positions[0], positions, odd, versions, topics, states)
        braces = list(ids)
        braces[3] = "{" + braces[3] + "}"
        check_page(positions[0], positions, braces, versions, topics, states)

    def test_a_page_read_from_later_on_needs_its_first_position(self, page: tuple) -> None:
        """A page that does not start where it was asked to has a gap before it."""
        positions, ids, versions, topics, states = page
        cut = slice(5, None)
        columns = (positions[cut], ids[cut], versions[cut], topics[cut], states[cut])
        check_page(positions[5], *columns)
        with pytest.raises(CorruptLogError, match=f"position {positions[5] - 1}: the record is missing"):
            check_page(positions[5] - 1, *columns)


CHANGES = ("byte", "tail byte", "forged", "forged tail", "stream", "version", "topic", "position", "state type", "v1")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=st.sampled_from(CHANGES), hex_ids=st.booleans(), data=st.data())
def test_the_fast_path_agrees_with_the_close_look(page: tuple, change: str, hex_ids: bool, data: st.DataObject) -> None:
    """After any one change to a page, check_page accepts exactly when the one-by-one check does, with the same error."""
    positions, ids, versions, topics, states = (list(c) for c in page)
    if hex_ids:
        ids = [UUID(i).hex for i in ids]
    i = data.draw(st.integers(0, len(positions) - 1), label="record")
    state = states[i]
    if change in ("byte", "tail byte", "forged", "forged tail"):
        # offsets drawn independently of this run's record sizes (uuids and times vary), so replays agree
        span = len(state) if change in ("byte", "forged") else 220
        at = len(state) - 1 - data.draw(st.integers(0, 2**20), label="offset") % span
        new = data.draw(st.sampled_from(b'0123456789abcdefABCDEF",:}-+ x\x00\xff'), label="byte")
        state = state[:at] + bytes([new]) + state[at + 1 :]
        if change.startswith("forged"):
            state = reseal(topics[i], UUID(ids[i]), versions[i], state)
        states[i] = state
    elif change == "stream":
        ids[i] = data.draw(
            st.sampled_from(
                [ids[i].upper(), ids[i].replace("-", ""), "{%s}" % ids[i], str(UUID(ids[i])), "not-a-uuid", "", None, 7, b"x" * 32, UUID(ids[i])]
            ),
            label="id",
        )
    elif change == "version":
        versions[i] = data.draw(st.sampled_from([0, -1, versions[i] + 1, str(versions[i]), True, float(versions[i]), None]), label="version")
    elif change == "topic":
        topics[i] = data.draw(st.sampled_from(["", None, 3, topics[i] + "x", topics[i].upper()]), label="topic")
    elif change == "position":
        positions[i] = data.draw(st.sampled_from([positions[i] + 1, positions[i] - 1, 0, -positions[i], positions[i] + 10**6]), label="position")
    elif change == "state type":
        states[i] = data.draw(st.sampled_from([None, b"", state.decode(), bytearray(state), memoryview(state), 12]), label="state")
    else:  # a v1 record (sealed over its own bytes), which the close look accepts
        body = state[: state.index(b',"log_prev":"')] + b"}"
        states[i] = body[:-1] + b',"hash":"' + hashlib.sha256(body).hexdigest().encode() + b'"}'
    first = positions[0] if i else page[0][0]
    columns = (first, positions, ids, versions, topics, states)
    assert outcome(check_page, columns) == outcome(one_by_one, columns)

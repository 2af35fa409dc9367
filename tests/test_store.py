"""ledger/store/base.py (``EventStore``) on every backend: atomic batches, concurrency, replay
(tamper evidence is test_integrity.py, URLs test_urls.py)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

import ledger
from ledger import EntityRegistry, Ledger
from ledger.write.batch import Batch
from ledger.errors import ConcurrencyError
from ledger.events import ENTITY_VERSION

from .models import student

ROOT = Path(__file__).resolve().parent.parent


def _strip_live(data):
    if isinstance(data, dict):
        return {k: _strip_live(v) for k, v in data.items() if k not in ("live_id", "root_live_id")}
    if isinstance(data, list):
        return [_strip_live(v) for v in data]
    return data


def stored_dump(led: Ledger, root_ecs_id) -> dict:
    """A stored tree as JSON data, without the per-copy live ids."""
    return _strip_live(led.registry.get_stored_tree(root_ecs_id).root.model_dump(mode="json"))


class TestAtomicBatches:
    def test_a_conflicting_batch_writes_nothing(self, led) -> None:
        """A batch whose last event collides with an existing stream version is refused whole."""
        s = student(n=1)
        s.promote_to_root()
        head = led.store.head()
        batch = Batch(led.index)
        batch.add(uuid.uuid4(), ENTITY_VERSION, {"x": 1})
        batch.add(s.lineage_id, ENTITY_VERSION, {"x": 2})
        events = batch.seal()
        events[1].version = 1  # already taken: another writer got there first
        with pytest.raises(ConcurrencyError, match=str(s.lineage_id)):
            led.store.append(events)
        # nothing was written: PostgreSQL's concurrent writers leave a hole where the refused batch's
        # positions were (the head passes it), the others give the positions to the next batch
        assert led.store.records_between(0, led.store.head()) == len(list(led.store.iter_all())) == head
        assert led.verify().ok

    def test_two_ledgers_racing_on_one_lineage(self, durable_url) -> None:
        """The second writer of the same lineage version loses with ConcurrencyError, then succeeds after refresh."""
        a = Ledger(durable_url)
        s = student(n=0)
        a.registry.register_entity(s)
        b = Ledger(durable_url)
        copy_b = b.registry.get_stored_tree(s.ecs_id).root
        s.gpa = 1.0
        a.registry.version_entity(s)
        copy_b.gpa = 2.0
        with pytest.raises(ConcurrencyError):
            b.registry.version_entity(copy_b)
        assert copy_b.ecs_id == s.previous_ecs_id  # the loser's object is untouched
        assert b.registry.version_entity(copy_b) is True  # retried on fresh state
        assert [v.gpa for v in b.registry.history(s.lineage_id)] == [0.0, 1.0, 2.0]
        assert a.refresh() == 1 and a.verify().ok
        a.close()
        b.close()


class TestReplay:
    def test_reopening_rebuilds_exactly_the_same_state(self, durable_url) -> None:
        a = ledger.connect(durable_url)
        s = student(n=3)
        s.promote_to_root()
        s.grades[0].score = 9
        EntityRegistry.version_entity(s)
        s.grades[1].detach()
        snap = a.index.snapshot()
        trees = {r: stored_dump(a, r) for r, rec in a.index.records.items() if rec.is_root}
        a.close()
        ledger.set_default_ledger(None)
        b = Ledger(durable_url)
        assert b.index.snapshot() == snap
        assert {r: stored_dump(b, r) for r in trees} == trees
        b.close()

    def test_a_new_process_replays_to_the_same_state(self, durable_url) -> None:
        """Replay in a separate interpreter gives the same index snapshot and stored values."""
        a = Ledger(durable_url)
        s = student(n=2)
        a.registry.register_entity(s)
        s.gpa = 3.5
        a.registry.version_entity(s)
        expected = orjson.dumps(a.index.snapshot())
        tree = stored_dump(a, s.ecs_id)
        a.close()
        code = (
            "import sys, orjson; from ledger import Ledger; import tests.models; from uuid import UUID\n"
            "from tests.test_store import stored_dump\n"
            f"b = Ledger({durable_url!r})\n"
            "sys.stdout.buffer.write(orjson.dumps(b.index.snapshot()) + b'\\n')\n"
            f"sys.stdout.buffer.write(orjson.dumps(stored_dump(b, UUID('{s.ecs_id}'))))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=True).stdout
        snap_line, tree_line = out.split(b"\n", 1)
        assert snap_line == expected
        assert orjson.loads(tree_line) == tree

    def test_replay_needs_no_entity_classes(self, tmp_path) -> None:
        """A process that cannot import the classes still replays (values stay as stored JSON)."""
        url = f"sqlite:///{tmp_path / 'x.db'}"
        a = Ledger(url)
        a.registry.register_entity(student(n=1))
        a.close()
        code = f"from ledger import Ledger\nb = Ledger({url!r})\nprint(len(b.index.records))\n"
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "2"

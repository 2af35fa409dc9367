"""projections/live.py: bounded state, ``old_ids`` computed when read (``OldIds``) and a linear ``history``
(the bounded values cache is ``test_inline.py``)."""

from __future__ import annotations

import copy
import json
import pickle
import threading
import tracemalloc
from uuid import UUID

import orjson
from pydantic import TypeAdapter

from ledger import Entity, EntityRegistry, Ledger
from projections.live import OldIds


class Counter(Entity):
    n: int


def versioned(n: int) -> Counter:
    """A counter registered and versioned ``n - 1`` times on the default ledger."""
    c = Counter(n=0)
    c.promote_to_root()
    for i in range(1, n):
        c.n = i
        EntityRegistry.version_entity(c)
    return c


def eager_old_ids(led: Ledger, ecs_id: UUID) -> list[UUID]:
    """``old_ids`` the way it was built before: walk ``previous_ecs_id`` back to the start."""
    chain = []
    rec = led.index.records[ecs_id]
    while rec.previous_ecs_id is not None:
        chain.append(rec.previous_ecs_id)
        rec = led.index.records[rec.previous_ecs_id]
    return chain[::-1]


class TestOldIdsComputedWhenRead:
    def test_every_version_of_a_history_has_its_earlier_ids(self, led) -> None:
        """Each version's old_ids lists every earlier version, oldest first, as before."""
        c = versioned(30)
        hist = EntityRegistry.history(c.lineage_id)
        ids = [h.ecs_id for h in hist]
        for i, h in enumerate(hist):
            assert h.old_ids == ids[:i] == eager_old_ids(led, h.ecs_id)
        assert hist[-1].old_ids == c.old_ids

    def test_a_version_forked_from_an_old_one_lists_its_own_chain(self, mem) -> None:
        """A version written from an older copy lists the chain it descends from, not the lineage."""
        c = versioned(6)
        hist = EntityRegistry.history(c.lineage_id)
        old = EntityRegistry.get_stored_tree(hist[2].ecs_id).root
        old.n = 100
        assert EntityRegistry.version_entity(old) is True
        fork = EntityRegistry.get_latest(c.lineage_id)
        assert fork.previous_ecs_id == hist[2].ecs_id
        assert fork.old_ids == [h.ecs_id for h in hist[:3]] == eager_old_ids(mem, fork.ecs_id)
        assert EntityRegistry.history(c.lineage_id)[-1].old_ids == fork.old_ids

    def test_a_copy_holds_no_ids_until_read(self, mem) -> None:
        """Reading a history fills nothing: that is what keeps it linear."""
        c = versioned(50)
        hist = EntityRegistry.history(c.lineage_id)
        raw = [h.__dict__["old_ids"] for h in hist]
        assert type(raw[0]) is list and raw[0] == []
        assert all(type(r) is OldIds and list.__len__(r) == 0 for r in raw[1:])
        assert len(raw[-1]) == 49 and list.__len__(raw[-1]) == 49

    def test_the_attribute_is_a_plain_list(self, mem) -> None:
        """entity.old_ids hands out a plain list, so C code reading list storage sees every id."""
        c = versioned(5)
        last = EntityRegistry.get_latest(c.lineage_id)
        ids = last.old_ids
        assert type(ids) is list and len(ids) == 4
        assert last.__dict__["old_ids"] is ids
        assert orjson.loads(orjson.dumps(last.old_ids)) == [str(i) for i in ids]
        assert TypeAdapter(list[UUID]).validate_python(EntityRegistry.get_latest(c.lineage_id).old_ids) == ids
        assert ",".join(map(str, EntityRegistry.get_latest(c.lineage_id).old_ids)) == ",".join(map(str, ids))

    def test_dumps_copies_and_pickles_see_every_id(self, mem) -> None:
        """model_dump, model_dump_json, deepcopy, copy, pickle and == all read the full list."""
        c = versioned(5)
        ids = c.old_ids
        latest = lambda: EntityRegistry.get_latest(c.lineage_id)  # noqa: E731 - a fresh unread copy each time
        assert latest().model_dump()["old_ids"] == ids
        assert json.loads(latest().model_dump_json())["old_ids"] == [str(i) for i in ids]
        assert latest().model_dump(mode="json")["old_ids"] == [str(i) for i in ids]
        assert copy.deepcopy(latest()).old_ids == ids
        assert latest().model_copy(deep=True).old_ids == ids
        assert latest().model_copy().old_ids == ids
        assert pickle.loads(pickle.dumps(latest())).old_ids == ids
        assert type(copy.deepcopy(latest().__dict__["old_ids"])) is list
        a, b = latest(), latest()
        b.__dict__["live_id"], b.__dict__["root_live_id"] = a.live_id, a.root_live_id
        assert a == b

    def test_the_raw_value_behaves_as_a_list(self, mem) -> None:
        """Read straight out of __dict__, every list operation fills it first."""
        c = versioned(4)
        ids = c.old_ids
        raw = lambda: EntityRegistry.get_latest(c.lineage_id).__dict__["old_ids"]  # noqa: E731
        assert len(raw()) == 3 and list(raw()) == ids and raw()[-1] == ids[-1] and raw()[:2] == ids[:2]
        assert ids[0] in raw() and raw().index(ids[1]) == 1 and raw().count(ids[2]) == 1
        assert bool(raw()) and list(reversed(raw())) == ids[::-1] and sorted(raw()) == sorted(ids)
        assert [ids[0]] + raw() == [ids[0], *ids] and raw() + [ids[0]] == [*ids, ids[0]]
        assert raw() * 2 == ids * 2 and 2 * raw() == ids * 2
        assert raw() == raw() and raw() == ids and ids == raw() and not (raw() != ids)
        assert repr(raw()) == repr(ids) and str(raw()) == str(ids)
        assert json.dumps(raw(), default=str) == json.dumps(ids, default=str)
        grown = raw()
        grown.append(ids[0])
        assert grown == [*ids, ids[0]]
        target = [ids[0]]
        target[:] = raw()
        assert target == ids
        assert dict(EntityRegistry.get_latest(c.lineage_id))["old_ids"] == ids

    def test_appending_reads_nothing_and_the_earlier_ids_go_in_front(self, led) -> None:
        """A new version appends its previous id to the live copy without filling it (a fill
        reads the whole lineage: per write, that made a chain of writes quadratic)."""
        c = versioned(6)
        raw = EntityRegistry.get_latest(c.lineage_id).__dict__["old_ids"]
        extra = c.ecs_id
        raw.append(extra)
        assert raw._record is not None and list.__len__(raw) == 1  # not filled by the append
        assert raw == [*c.old_ids, extra] == [*eager_old_ids(led, c.ecs_id), extra]

    def test_a_chain_of_mutations_keeps_every_id(self, led) -> None:
        from ledger import CallableRegistry

        @CallableRegistry.register("bounded_state_bump")
        def bump(c: Counter) -> Counter:
            c.n += 1
            return c

        cur = versioned(3)
        for _ in range(5):
            cur = CallableRegistry.execute("bounded_state_bump", c=cur)
        assert cur.old_ids == eager_old_ids(led, cur.ecs_id)
        assert len(cur.old_ids) == 7 and cur.n == 7

    def test_versioning_a_copy_extends_its_full_list(self, led) -> None:
        """A copy read from storage, edited and versioned, appends to every earlier id."""
        c = versioned(5)
        copy_ = EntityRegistry.history(c.lineage_id)[-1]
        copy_.n = 99
        EntityRegistry.version_entity(copy_)
        assert copy_.old_ids == [h.ecs_id for h in EntityRegistry.history(c.lineage_id)[:-1]]
        again = EntityRegistry.get_latest(c.lineage_id)
        again.update_ecs_ids()
        assert again.old_ids[-1] == copy_.ecs_id and len(again.old_ids) == 6

    def test_a_function_returning_its_input_old_ids_records_them_all(self, mem) -> None:
        """A registered function sees (and can return) the full list of its input copy."""
        from ledger import CallableRegistry

        @CallableRegistry.register("bounded_state_old_ids")
        def old_ids_of(c: Counter) -> list[UUID]:
            return c.old_ids

        c = versioned(4)
        out = CallableRegistry.execute("bounded_state_old_ids", c=c)
        assert out.result == c.old_ids and len(out.result) == 3
        stored = EntityRegistry.get_latest(out.lineage_id)
        assert stored.result == c.old_ids

    def test_threads_reading_one_copy_all_see_every_id(self, mem) -> None:
        c = versioned(200)
        for _ in range(20):
            raw = EntityRegistry.get_latest(c.lineage_id).__dict__["old_ids"]
            seen: list[int] = []
            threads = [threading.Thread(target=lambda: seen.append(len(raw))) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert seen == [199] * 4

    def test_history_memory_grows_linearly(self, mem) -> None:
        """3,000 versions: eager old_ids alone were 4.5M ids (36 MB); now a few MB in all."""
        c = versioned(3_000)
        tracemalloc.start()
        try:
            hist = EntityRegistry.history(c.lineage_id)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(hist) == 3_000 and hist[-1].old_ids == [h.ecs_id for h in hist[:-1]]
        assert peak < 16 * 2**20, f"history of 3,000 versions peaked at {peak / 2**20:.1f} MiB"

"""projections/inline.py: the in-memory version index's bounded values cache (decoded versions)."""

from __future__ import annotations

from ledger import Entity, EntityRegistry, Ledger, Personal
from ledger.model.personal import ERASED

from .models import Grade, Student, student


class Secret(Entity):
    name: Personal[str]
    ward: str = "north"


class TestValuesCache:
    def test_decoded_values_stay_within_the_bound(self, led) -> None:
        """Writing and reading many versions keeps only the most recently used decoded."""
        cache = led.index.values_cache
        cache.resize(20_000)
        students = [student(n=2) for _ in range(40)]
        for s in students:
            s.promote_to_root()
        for s in students:
            EntityRegistry.get_stored_tree(s.ecs_id)
        assert cache.size <= 20_000 + max(r.cache_weight() for r in led.index.records.values())
        decoded = [r for r in led.index.records.values() if r._values is not None or r._values_data is not None]
        assert 0 < len(decoded) == len(cache) < len(led.index.records)
        assert {r.ecs_id for r in decoded} >= {g.ecs_id for g in students[-1].grades}

    def test_values_read_again_after_eviction_are_the_same(self, led) -> None:
        """A version dropped from the cache decodes from its JSON to the same values."""
        s = student(n=3)
        s.tags = ["a", "b"]
        s.promote_to_root()

        def read() -> tuple:
            root = EntityRegistry.get_stored_tree(s.ecs_id).root
            return root.name, root.gpa, root.tags, [(g.ecs_id, g.course, g.score) for g in root.grades]

        before = read()
        led.index.values_cache.resize(0)
        assert sum(r._values is not None for r in led.index.records.values()) <= 1
        assert read() == before

    def test_change_detection_works_with_nothing_cached(self, led) -> None:
        """With every decoded value dropped, an unchanged tree writes nothing and a change is found."""
        s = student(n=3)
        s.promote_to_root()
        led.index.values_cache.resize(0)
        head = led.store.head()
        assert EntityRegistry.version_entity(s) is False and led.store.head() == head
        led.index.values_cache.resize(0)
        s.grades[1].score = 11.5
        assert EntityRegistry.version_entity(s) is True
        assert led.store.head() == head + 2  # the grade and its root, nothing else

    def test_erased_values_read_erased_after_eviction(self, led) -> None:
        """Erasure holds however often the decoded values are dropped and decoded again."""
        p = Secret(name="Ada")
        p.promote_to_root()
        p.ward = "south"
        EntityRegistry.version_entity(p)
        led.erase(p.lineage_id, reason="request")
        for size in (0, 1 << 20):
            led.index.values_cache.resize(size)
            for h in EntityRegistry.history(p.lineage_id):
                assert h.name is ERASED and h.ward in ("north", "south")

    def test_replay_keeps_values_as_json(self, durable_url) -> None:
        """A reopened ledger decodes nothing until asked, then only what is read."""
        with Ledger(durable_url) as lg:
            s = Student(name="x", grades=[Grade(course="c", score=1.0)])
            lg.registry.register_entity(s)
        with Ledger(durable_url) as lg:
            assert len(lg.index.values_cache) == 0
            assert all(r._values_data is None and r._values_json for r in lg.index.records.values())
            assert lg.registry.get_stored_tree(s.ecs_id).root.grades[0].score == 1.0
            assert len(lg.index.values_cache) == 2

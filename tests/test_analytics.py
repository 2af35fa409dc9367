"""projections/analytics.py: catch-up and rebuild (incremental, resumed from a file, from a position,
with progress); incremental catch-up in any page sizes equals a full rebuild."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger
from ledger import Ledger
from projections.analytics import Analytics

from tools.workload import Workload

from .projection_rows import all_tables


class TestCatchUp:
    def test_incremental_catch_up_applies_only_new_events(self, mem: Ledger) -> None:
        Workload(mem, 1).run(50)
        analytics = mem.analytics
        first = analytics.catch_up()
        assert first == mem.store.head() and analytics.position == mem.store.head()
        before = mem.store.head()
        Workload(mem, 2).run(5)
        assert analytics.catch_up() == mem.store.head() - before
        assert analytics.catch_up() == 0

    def test_resume_after_restart_from_a_file(self, durable_url: str, tmp_path: Path) -> None:
        duck = str(tmp_path / "analytics.duckdb")
        with Ledger(durable_url, analytics_path=duck) as led:
            Workload(led, 4).run(40)
            led.analytics.catch_up()
            seen = led.analytics.position
            Workload(led, 5).run(20)  # written, not yet projected
        with Ledger(durable_url, analytics_path=duck) as led:
            assert led.analytics.position == seen
            assert led.analytics.catch_up() == led.store.head() - seen
            resumed = all_tables(led.analytics)
        with Ledger(durable_url) as led:  # an in-memory projection built from scratch
            led.analytics.catch_up()
            assert all_tables(led.analytics) == resumed
        ledger.set_default_ledger(None)

    def test_a_projection_of_another_log_is_rebuilt(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A DuckDB file built from another log is a stale cache: rebuilt from this log, with a warning."""
        duck = str(tmp_path / "analytics.duckdb")
        for name in ("a.db", "b.db"):
            with Ledger(f"sqlite:///{tmp_path / name}", analytics_path=duck if name == "a.db" else None) as led:
                Workload(led, 1 if name == "a.db" else 2).run(10)
                led.analytics.catch_up()
        with Ledger(f"sqlite:///{tmp_path / 'b.db'}", analytics_path=duck) as led:
            assert led.sql("select count(*) from events").fetchall() == [(led.store.head(),)]
            rebuilt = all_tables(led.analytics)
        assert "another log" in caplog.text
        with Ledger(f"sqlite:///{tmp_path / 'b.db'}") as led:
            led.analytics.catch_up()
            assert all_tables(led.analytics) == rebuilt
        ledger.set_default_ledger(None)

    def test_rebuild_from_a_position_gives_the_same_tables(self, mem: Ledger) -> None:
        Workload(mem, 9).run(80)
        analytics = mem.analytics
        analytics.catch_up()
        full = all_tables(analytics)
        for start in (1, 2, mem.store.head() // 2, mem.store.head()):
            assert analytics.rebuild(from_position=start) == mem.store.head() - start + 1
            assert all_tables(analytics) == full
        with pytest.raises(ValueError, match="from_position"):
            analytics.rebuild(from_position=0)

    def test_progress_reports_totals(self, mem: Ledger) -> None:
        Workload(mem, 1).run(30)
        seen: list[tuple[int, int]] = []
        mem.analytics.catch_up(progress=lambda done, total: seen.append((done, total)), page=17)
        head = mem.store.head()
        assert seen[0] == (0, head) and seen[-1] == (head, head)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(Workload.STEPS), st.integers(0, 1000), st.one_of(st.none(), st.integers(1, 7))),
        min_size=1,
        max_size=25,
    ),
    rebuild_from=st.integers(1, 200),
)
def test_incremental_catch_up_equals_full_rebuild(steps: list[tuple[str, int, int | None]], rebuild_from: int) -> None:
    """Whatever was written, and however catch-up was split into pages, the tables equal a rebuild."""
    led = Ledger("memory://")
    try:
        work = Workload(led)
        incremental = led.analytics
        for kind, pick, page in steps:
            work.step(kind, pick)
            if page is not None:
                incremental.catch_up(page=page)
        incremental.catch_up(page=5)
        fresh = Analytics(led.store)
        fresh.catch_up()
        expected = all_tables(fresh)
        assert all_tables(incremental) == expected
        incremental.rebuild(from_position=min(rebuild_from, led.store.head()))
        assert all_tables(incremental) == expected
        fresh.close()
    finally:
        led.close()
        ledger.set_default_ledger(None)

"""A writer SIGKILLed mid-stream leaves only whole batches; the ledger replays and goes on."""

from __future__ import annotations

from ledger import CallableRegistry, Ledger, set_default_ledger

from .scale_worker import Tally
from .writer_procs import assert_index_whole, batches, kill_after, spawn

KILL_AFTER = 15  # finished make+bump pairs before the kill


class TestCrashSafety:
    def test_sigkill_mid_stream(self, durable_url) -> None:
        Ledger(durable_url).close()  # tables exist before the writer starts
        proc = spawn("stream", durable_url, 7)
        kill_after(proc, KILL_AFTER, timeout=300, pause=0.003)  # somewhere inside the next execution's writes
        assert_index_whole(durable_url)

        led = Ledger(durable_url)  # replays what the killed writer left
        seen, sizes = batches(led)
        assert seen and all(seen[b] == sizes[b] for b in seen), "a partial batch was stored"
        report = led.verify()
        assert report.ok, report.problems
        tallies = {r.lineage_id for r in led.index.records.values() if r.topic.endswith("Tally")}
        assert len(tallies) >= KILL_AFTER

        set_default_ledger(led)  # a new writer continues the same log
        try:
            t = CallableRegistry.execute("scale.make", worker=8, n=0)
            assert isinstance(t, Tally)
            assert CallableRegistry.execute("scale.bump", t=t).n == 1
        finally:
            set_default_ledger(None)
        seen2, sizes2 = batches(led)
        assert len(seen2) > len(seen) and all(seen2[b] == sizes2[b] for b in seen2)
        assert led.verify().ok
        assert Ledger(durable_url).verify().ok
        led.close()

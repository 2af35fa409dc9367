"""ledger/write/calls.py: ``KeyboardInterrupt`` / ``SystemExit`` inside a function (inline, async or
in a forked child) is recorded as ``execution.failed`` before it reaches the caller.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from ledger import CallableRegistry, EntityRegistry, Ledger

from .holes import RUN_IDS, RUNS, HNote, events, failures


# ============================================================ 4. interrupts
def make_interrupt(kind: str) -> BaseException:
    return KeyboardInterrupt("stop") if kind == "KeyboardInterrupt" else SystemExit(3)


class TestInterruptsAreRecorded:
    @pytest.mark.parametrize("kind", ["KeyboardInterrupt", "SystemExit"])
    @pytest.mark.parametrize("isolation,is_async", RUNS, ids=RUN_IDS)
    @pytest.mark.parametrize("via", ["execute", "aexecute"])
    def test_recorded_then_reraised(self, led: Ledger, kind: str, isolation: str, is_async: bool, via: str) -> None:
        """An interrupt inside a function is recorded as execution.failed, then reaches the caller unchanged."""
        name = f"holes_interrupt_{kind}_{isolation}_{is_async}"
        raised: list[BaseException] = []

        def boom(note: HNote) -> HNote:
            exc = make_interrupt(kind)
            raised.append(exc)
            raise exc

        if is_async:
            async def fn(note: HNote) -> HNote:
                return boom(note)
        else:
            fn = boom
        CallableRegistry.register(name, isolation=isolation)(fn)
        note = HNote(name="n")
        note.promote_to_root()
        before = led.store.head()
        with pytest.raises(type(make_interrupt(kind))) as info:
            if via == "execute":
                CallableRegistry.execute(name, note=note)
            else:
                asyncio.run(CallableRegistry.aexecute(name, note=note))
        if isolation == "inline":
            assert info.value is raised[0]  # the very exception, not a copy or a wrapper
        assert info.value.args == make_interrupt(kind).args
        after = events(led)[before:]
        assert [t for _, t, _ in after] == ["execution.failed"]
        failed = after[0][2]
        assert (failed["function_name"], failed["error_type"]) == (name, kind)
        assert failed["inputs"][0]["ecs_id"] == str(note.ecs_id)
        # the ledger stays usable: reads, a new execution, a manual version, verify
        assert CallableRegistry.execute("holes_bump", note=note).score == 1.0
        note.name = "after"
        assert EntityRegistry.version_entity(note)
        assert led.verify().ok
        assert led.sql("SELECT count(*) FROM executions WHERE NOT succeeded").fetchall() == [(1,)]

    def test_ctrl_c_while_a_child_runs(self, led: Ledger, tmp_path: Path) -> None:
        """Ctrl-C reaching the parent while it waits for its child: child killed and reaped, call recorded, interrupt re-raised."""
        import signal
        import threading

        pid_file = tmp_path / "child.pid"

        # the timeout only ends a broken run (the test then fails instead of hanging)
        @CallableRegistry.register("holes_ctrl_c", isolation="process", timeout=60)
        def holes_ctrl_c(note: HNote) -> HNote:
            pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
            os.replace(pid_file.with_suffix(".tmp"), pid_file)  # whole, or not there yet
            signal.pause()  # the child waits for ever: only the parent can end it
            return note

        main = threading.main_thread().ident
        assert main == threading.get_ident()

        def press_ctrl_c() -> None:
            """Signal the whole process, as a terminal does, once the parent waits on its child.

            Sent earlier (while ``fork`` runs its at-fork hooks in the parent) the
            interrupt would be swallowed by Python itself, which is not what this tests.
            """
            for _ in range(6000):
                frame = sys._current_frames().get(main)
                if pid_file.exists() and frame is not None and frame.f_code.co_name == "_read_all":
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                threading.Event().wait(0.01)

        presser = threading.Thread(target=press_ctrl_c, daemon=True)
        note = HNote(name="n")
        note.promote_to_root()
        presser.start()
        with pytest.raises(KeyboardInterrupt):
            CallableRegistry.execute("holes_ctrl_c", note=note)
        presser.join()
        child = int(pid_file.read_text())
        with pytest.raises(ChildProcessError):
            os.waitpid(child, os.WNOHANG)  # already reaped: no zombie left behind
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)
        assert [(p["function_name"], p["error_type"]) for p in failures(led)] == [("holes_ctrl_c", "KeyboardInterrupt")]
        assert CallableRegistry.execute("holes_bump", note=note).score == 1.0

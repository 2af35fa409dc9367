"""The analytics cache file the CLI keeps beside a SQLite store (issue 11).

``ledger sql`` / ``lineage`` / ``export`` / ``replay`` keep their DuckDB tables in
``<db>.analytics.duckdb`` and resume from it; every other command, and any command
on a store that cannot be opened, creates no file at all; the store itself keeps
every byte. The file is attacked the way a hostile neighbour or a careless user
would: replaced by something else, turned into a symbolic link, a FIFO, a
directory or a hard link, put in a directory the process cannot write, held by a
second process, opened twice at once, damaged. Each case ends in a right answer
(from the file, a rebuilt file, or tables in memory) or a one-line error, never a
traceback, and never a wrong or corrupted read model. Real SQLite files, real
DuckDB, the real ``ledger`` script where processes matter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

import ledger
import ledger.cli.commands as cli
from ledger import Ledger
from ledger.cli import app
from ledger.errors import LedgerError
from projections import cache_file
from projections.analytics import Analytics, CacheUnavailableError
from tools.workload import Workload

from .projection_rows import all_tables
from .test_readonly import data_block_offset

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "ledger"
runner = CliRunner()
COUNT = "select count(*) as n from events"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LEDGER_URL", raising=False)
    monkeypatch.delenv("LEDGER_ANALYTICS", raising=False)
    yield
    ledger.set_default_ledger(None)


class Store:
    """A small SQLite ledger in its own directory, and what a command should answer about it."""

    def __init__(self, directory: Path, seed: int = 1, steps: int = 30) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.path = directory / "ledger.db"
        self.url = f"sqlite:///{self.path}"
        with Ledger(self.url) as led:
            Workload(led, seed).run(steps)
            self.head = led.store.head()
        self.cache = Path(str(self.path) + ".analytics.duckdb")

    def grow(self, steps: int = 10, seed: int = 9) -> None:
        with Ledger(self.url) as led:
            Workload(led, seed).run(steps)
            self.head = led.store.head()

    def rollback_journal(self) -> None:
        """Switch the file out of WAL mode, so it can be read in a directory nobody may write."""
        con = sqlite3.connect(self.path)
        assert con.execute("PRAGMA journal_mode=DELETE").fetchall() == [("delete",)]
        con.close()

    def fingerprint(self) -> tuple[str, tuple[str, ...]]:
        """The store's sha256 and every name in its directory (a new file anywhere shows)."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest(), tuple(sorted(os.listdir(self.dir)))

    def sql(self, *args: str) -> Result:
        return runner.invoke(app, ["sql", COUNT, "--format", "json", "--db", self.url, *args])

    def answered(self, result: Result) -> bool:
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)[0]["n"] == self.head


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "s")


def script(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed ``ledger`` command in its own process."""
    environment = {k: v for k, v in os.environ.items() if k not in ("LEDGER_URL", "LEDGER_ANALYTICS")}
    environment.update(env or {})
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=environment, cwd=ROOT)


def script_count(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    proc = script("sql", COUNT, "--format", "json", "--db", store.url, *args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)[0]["n"] == store.head, proc.stdout
    return proc


def tracked(cache: Path) -> int:
    con = duckdb.connect(str(cache), read_only=True)
    try:
        return con.execute("SELECT position FROM _ledger.projection_tracking").fetchall()[0][0]
    finally:
        con.close()


def in_memory_tables(url: str) -> dict[str, list[tuple]]:
    with Ledger(url, create=False) as led:
        led.analytics.catch_up()
        return all_tables(led.analytics)


def file_tables(url: str, cache: Path) -> dict[str, list[tuple]]:
    with Ledger(url, create=False, analytics_path=str(cache)) as led:
        led.analytics.catch_up()
        return all_tables(led.analytics)


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make ``directory`` unwritable for this process: permissions, or for root the immutable flag."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode:
        pytest.skip("running as root on a file system without chattr +i: no directory is read-only to us")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


class TestWhereTheTablesLive:
    def test_a_sqlite_store_gets_a_file_beside_it(self) -> None:
        """The default is <file>.analytics.duckdb beside a SQLite store, in memory for every other store."""
        assert cli.analytics_file("sqlite:///data/audit.db", None) == ("data/audit.db.analytics.duckdb", True)
        assert cli.analytics_file("sqlite:////srv/a b.db", None) == ("/srv/a b.db.analytics.duckdb", True)
        assert cli.analytics_file("memory://", None) == (None, True)
        assert cli.analytics_file("postgresql://u@localhost:5432/db?schema=s", None) == (None, True)
        assert cli.analytics_file("sqlite:///:memory:", None) == (None, True)

    def test_a_named_file_or_memory_wins_and_must_be_usable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """--analytics beats $LEDGER_ANALYTICS beats the default; a named file never falls back to memory."""
        assert cli.analytics_file("sqlite:///a.db", "x.duckdb") == ("x.duckdb", False)
        assert cli.analytics_file("sqlite:///a.db", "memory") == (None, False)
        monkeypatch.setenv("LEDGER_ANALYTICS", "env.duckdb")
        assert cli.analytics_file("sqlite:///a.db", None) == ("env.duckdb", False)
        assert cli.analytics_file("memory://", None) == ("env.duckdb", False)
        assert cli.analytics_file("sqlite:///a.db", ":memory:") == (None, False)
        monkeypatch.setenv("LEDGER_ANALYTICS", "memory")
        assert cli.analytics_file("sqlite:///a.db", None) == (None, False)

    def test_sql_keeps_its_tables_beside_the_store_and_resumes(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        """The first `ledger sql` builds the file; the next applies only what was appended since, and equals a rebuild."""
        applied: list[int] = []
        apply = Analytics._apply
        monkeypatch.setattr(Analytics, "_apply", lambda self, staged: (applied.append(staged.count), apply(self, staged))[1])
        before = store.fingerprint()[0]
        assert store.answered(store.sql())
        assert store.cache.is_file() and tracked(store.cache) == store.head and sum(applied) == store.head
        assert store.fingerprint()[0] == before  # the store keeps every byte
        assert sorted(os.listdir(store.dir)) == ["ledger.db", "ledger.db.analytics.duckdb", "ledger.db.analytics.duckdb.mac"]  # no .wal left behind
        old_head = store.head
        store.grow()
        applied.clear()
        assert store.answered(store.sql())
        assert sum(applied) == store.head - old_head
        applied.clear()
        assert store.answered(store.sql()) and applied == []
        assert file_tables(store.url, store.cache) == in_memory_tables(store.url)

    def test_lineage_export_and_replay_use_the_same_file(self, store: Store, tmp_path: Path) -> None:
        """Every analytics command shares the file: replay rebuilds it, export and lineage resume from it."""
        assert runner.invoke(app, ["replay", "--db", store.url]).exit_code == 0
        assert tracked(store.cache) == store.head
        out = tmp_path / "pq"
        result = runner.invoke(app, ["export", "--parquet", str(out), "--db", store.url])
        assert result.exit_code == 0 and (out / "events.parquet").is_file(), result.output
        with Ledger(store.url) as led:
            some = led.sql("select ecs_id from entity_versions limit 1").fetchall()[0][0]
        result = runner.invoke(app, ["lineage", some, "--format", "json", "--db", store.url])
        assert result.exit_code == 0, result.output
        assert sorted(os.listdir(store.dir)) == ["ledger.db", "ledger.db.analytics.duckdb", "ledger.db.analytics.duckdb.mac"]

    def test_memory_or_a_named_file_instead(self, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--analytics memory (or $LEDGER_ANALYTICS=memory) writes no file; --analytics PATH writes only PATH."""
        assert store.answered(store.sql("--analytics", "memory"))
        monkeypatch.setenv("LEDGER_ANALYTICS", "memory")
        assert store.answered(store.sql())
        assert not store.cache.exists()
        named = tmp_path / "elsewhere.duckdb"
        assert store.answered(store.sql("--analytics", str(named)))
        assert named.is_file() and not store.cache.exists() and tracked(named) == store.head


class TestReadingWritesNothingElse:
    COMMANDS = ("log", "show", "history", "as-of", "diff", "verify", "digest")

    def test_commands_that_do_not_query_create_no_file(self, store: Store) -> None:
        """log, show, history, as-of, diff, verify and digest leave the directory exactly as it was."""
        with Ledger(store.url) as led:
            lineage = next(iter(led.index.lineages))
            versions = [str(r.ecs_id) for r in led.index.lineages[lineage]]
        before = store.fingerprint()
        for args in (
            ["log"], ["show", f"@{versions[0]}"], ["history", str(lineage)], ["as-of", str(lineage), "--position", "1"],
            ["diff", versions[0], versions[-1]], ["verify"], ["digest"],
        ):
            result = runner.invoke(app, [*args, "--db", store.url])
            assert result.exit_code in (0, 1) and "Traceback" not in result.output, (args, result.output)
            assert store.fingerprint() == before, args

    @pytest.mark.parametrize("command", ["sql", "lineage", "export", "replay"])
    @pytest.mark.parametrize("kind", ["missing", "empty", "foreign", "corrupt"])
    def test_a_store_that_cannot_be_opened_gets_no_cache(self, command: str, kind: str, tmp_path: Path) -> None:
        """On a missing, empty, foreign or undecodable store the analytics commands fail in one line and create nothing."""
        directory = tmp_path / "d"
        directory.mkdir()
        path = directory / "ledger.db"
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "foreign":
            with sqlite3.connect(path) as con:
                con.execute("CREATE TABLE notes (t TEXT)")
            con.close()
        elif kind == "corrupt":
            Store(directory, steps=5)
            with sqlite3.connect(path) as con:
                con.execute("UPDATE stored_events SET state = x'00ff' WHERE rowid = 2")
            con.close()
        before = sorted(os.listdir(directory))
        args = {
            "sql": ["sql", COUNT],
            "lineage": ["lineage", "00000000-0000-0000-0000-000000000000"],
            "export": ["export", "--parquet", str(tmp_path / "pq")],
            "replay": ["replay"],
        }[command]
        result = runner.invoke(app, [*args, "--db", f"sqlite:///{path}"])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert sorted(os.listdir(directory)) == before


class TestHostileFiles:
    def test_a_file_that_is_not_duckdb_is_set_aside(self, store: Store, caplog: pytest.LogCaptureFixture) -> None:
        """Notes saved under the cache's name are moved to .bad, byte for byte, and the tables rebuilt."""
        store.cache.write_text("my notes\n")
        assert store.answered(store.sql())
        assert (store.dir / "ledger.db.analytics.duckdb.bad").read_text() == "my notes\n"
        assert tracked(store.cache) == store.head and "moved it to" in caplog.text

    def test_a_cache_of_another_log_is_rebuilt(self, store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """The store replaced by another ledger: the cache is recognised as another log's and rebuilt."""
        assert store.answered(store.sql())
        other = Store(tmp_path / "other", seed=5, steps=12)
        shutil.copy(other.path, store.path)
        store.head = other.head
        assert store.answered(store.sql())
        assert "another log" in caplog.text
        assert file_tables(store.url, store.cache) == in_memory_tables(store.url)

    @pytest.mark.parametrize("target", ["dangling", "the-store", "a-duckdb-file"])
    def test_a_symbolic_link_is_never_followed(self, store: Store, tmp_path: Path, target: str, caplog: pytest.LogCaptureFixture) -> None:
        """A link planted at the cache's name: the command answers from memory; the link and its target are untouched."""
        victim = {"dangling": tmp_path / "victim.duckdb", "the-store": store.path, "a-duckdb-file": tmp_path / "theirs.duckdb"}[target]
        if target == "a-duckdb-file":
            con = duckdb.connect(str(victim))
            con.execute("CREATE TABLE t AS SELECT 1 AS x")
            con.close()
        before = victim.read_bytes() if victim.exists() else None
        store_before = store.fingerprint()[0] if target != "the-store" else None
        store.cache.symlink_to(victim)
        assert store.answered(store.sql())
        assert store.cache.is_symlink() and os.readlink(store.cache) == str(victim)
        assert (victim.read_bytes() if victim.exists() else None) == before
        assert store_before is None or store.fingerprint()[0] == store_before
        assert "symbolic link" in caplog.text and "in memory" in caplog.text
        named = runner.invoke(app, ["sql", COUNT, "--db", store.url, "--analytics", str(store.cache)])
        assert named.exit_code == 1 and "symbolic link" in named.output and len(named.output.strip().splitlines()) == 1

    def test_a_symbolic_link_in_place_of_the_wal(self, store: Store, tmp_path: Path) -> None:
        """A link at <cache>.wal would have DuckDB write its log through it: refused like the file itself."""
        victim = tmp_path / "victim.txt"
        victim.write_text("precious\n")
        assert store.answered(store.sql())
        wal = Path(str(store.cache) + ".wal")
        wal.symlink_to(victim)
        store.grow()
        assert store.answered(store.sql())
        assert victim.read_text() == "precious\n" and wal.is_symlink()

    @pytest.mark.parametrize("kind", ["fifo", "directory", "hard-link"])
    def test_not_a_plain_file(self, store: Store, tmp_path: Path, kind: str) -> None:
        """A FIFO (which would block a reader forever), a directory or a second hard link: answered from memory, left as is."""
        if kind == "fifo":
            os.mkfifo(store.cache)
        elif kind == "directory":
            store.cache.mkdir()
        else:
            other = tmp_path / "linked.duckdb"
            con = duckdb.connect(str(other))
            con.execute("CREATE TABLE mine AS SELECT 42 AS answer")
            con.close()
            os.link(other, store.cache)
        before = sorted(os.listdir(store.dir))
        proc = script_count(store)  # its own process, with a timeout: a FIFO must not hang it
        assert "not a regular file" in proc.stderr or "hard links" in proc.stderr, proc.stderr
        assert sorted(os.listdir(store.dir)) == before
        if kind == "hard-link":
            con = duckdb.connect(str(tmp_path / "linked.duckdb"), read_only=True)
            assert con.execute("SELECT answer FROM mine").fetchall() == [(42,)]
            assert [r[0] for r in con.execute("SHOW TABLES").fetchall()] == ["mine"]
            con.close()

    def test_a_read_only_directory(self, store: Store, tmp_path: Path) -> None:
        """Where nothing can be written the default answers from memory; a file named there is a one-line error.

        (A store in WAL mode cannot be read at all where SQLite cannot create its
        ``-shm`` file; one in rollback-journal mode, say a copy on read-only media, can.)
        """
        store.rollback_journal()
        before = store.fingerprint()
        with unwritable(store.dir):
            proc = script_count(store)
            assert "not writable" in proc.stderr and "in memory" in proc.stderr, proc.stderr
            named = script("sql", COUNT, "--db", store.url, "--analytics", str(store.dir / "named.duckdb"))
            assert named.returncode == 1 and "Traceback" not in named.stderr
            assert len(named.stderr.strip().splitlines()) == 1 and "not writable" in named.stderr
        assert store.fingerprint() == before

    def test_a_cache_in_a_read_only_directory_is_not_replaced(self, store: Store) -> None:
        """An existing cache that cannot be written stays as it is: no .bad, no rebuild, the answer from memory."""
        store.rollback_journal()
        assert store.answered(store.sql())
        store.cache.write_text("not a database, and not ours to move\n")
        before = store.fingerprint()
        with unwritable(store.dir):
            script_count(store)
        assert store.fingerprint() == before

    def test_a_damaged_block_is_set_aside_and_rebuilt(self, store: Store, caplog: pytest.LogCaptureFixture) -> None:
        """A data block that fails DuckDB's checksum: `ledger sql` sets the file aside, rebuilds it, answers right."""
        store.grow(120)
        assert store.answered(store.sql())
        good = store.cache.read_bytes()
        offset = data_block_offset(store.cache, "events", "payload")
        store.cache.write_bytes(good[: offset + 64] + bytes(b ^ 0xFF for b in good[offset + 64 : offset + 128]) + good[offset + 128 :])
        result = runner.invoke(app, ["sql", "select count(*) as n, sum(length(payload)) as b from events", "--format", "json", "--db", store.url])
        assert result.exit_code == 0, result.output
        with Ledger(store.url) as led:
            expected = led.sql("select count(*), sum(length(payload)) from events").fetchall()[0]
        assert tuple(json.loads(result.stdout)[0].values()) == expected
        # found by the file's MAC (checked on open) before DuckDB reads the damaged block
        assert (store.dir / "ledger.db.analytics.duckdb.bad").is_file() and "its MAC does not match" in caplog.text
        assert file_tables(store.url, store.cache) == in_memory_tables(store.url)


HOLDER = textwrap.dedent(
    """
    import sys
    from ledger import Ledger
    with Ledger(sys.argv[1], create=False, analytics_path=sys.argv[2]) as led:
        led.sql("select 1").fetchall()
        print("held", flush=True)
        sys.stdin.read()
    """
)


class TestTwoProcesses:
    def test_a_file_another_process_holds(self, store: Store) -> None:
        """While another process holds the file, the default answers from memory; a named file is a one-line error; the file is untouched."""
        assert store.answered(store.sql())
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, store.url, str(store.cache)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            before = store.cache.read_bytes()
            proc = script_count(store)
            assert "in memory" in proc.stderr and f"another process holds it (PID {holder.pid})" in proc.stderr, proc.stderr
            named = script("sql", COUNT, "--db", store.url, "--analytics", str(store.cache))
            assert named.returncode == 1 and len(named.stderr.strip().splitlines()) == 1, named.stderr
            assert "cannot open the analytics database" in named.stderr
            assert store.cache.read_bytes() == before
            assert not (store.dir / "ledger.db.analytics.duckdb.bad").exists()
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=300)

    @pytest.mark.parametrize("start", ["none", "garbage", "stale"])
    def test_commands_started_together(self, store: Store, tmp_path: Path, start: str) -> None:
        """Four `ledger sql` at once, on no cache, a garbage one or another log's: each answers right, the file ends trusted."""
        if start == "garbage":
            store.cache.write_bytes(b"\x00" * 5000)
        elif start == "stale":
            other = Store(tmp_path / "other", seed=3, steps=8)
            assert script("sql", COUNT, "--db", other.url, "--analytics", str(store.cache)).returncode == 0
        environment = {k: v for k, v in os.environ.items() if k not in ("LEDGER_URL", "LEDGER_ANALYTICS")}
        procs = [
            subprocess.Popen(
                [str(SCRIPT), "sql", COUNT, "--format", "json", "--db", store.url],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, cwd=ROOT,
            )
            for _ in range(4)
        ]
        for proc in procs:
            out, errors = proc.communicate(timeout=180)
            assert proc.returncode == 0 and "Traceback" not in errors, errors
            assert json.loads(out)[0]["n"] == store.head
        assert tracked(store.cache) == store.head
        assert file_tables(store.url, store.cache) == in_memory_tables(store.url)


class TestInOneProcess:
    def test_a_second_ledger_on_the_same_file(self, store: Store) -> None:
        """DuckDB would hand a second connection the same instance: refused, and the first ledger's file is not moved."""
        with Ledger(store.url, analytics_path=str(store.cache)) as first:
            assert first.sql(COUNT).fetchall() == [(store.head,)]
            with Ledger(store.url, analytics_path=str(store.cache)) as second:
                with pytest.raises(CacheUnavailableError, match="already open in this process"):
                    second.sql(COUNT)
            with Ledger(store.url, analytics_path=str(store.cache), analytics_fallback=True) as third:
                assert third.sql(COUNT).fetchall() == [(store.head,)] and third.analytics.path is None
            assert first.sql(COUNT).fetchall() == [(store.head,)]
        assert not (store.dir / "ledger.db.analytics.duckdb.bad").exists()
        assert issubclass(CacheUnavailableError, LedgerError)
        assert file_tables(store.url, store.cache) == in_memory_tables(store.url)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    rounds=st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from(Workload.STEPS), st.integers(0, 1000)), min_size=1, max_size=8),
            st.integers(1, 9),  # page size
            st.booleans(),  # close and reopen the file after this round
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_resumed_file_equals_a_rebuild(tmp_path_factory: pytest.TempPathFactory, rounds: list) -> None:
    """Whatever was written between catch-ups, in whatever pages, across reopened files: the file equals a rebuild from zero, row for row."""
    directory = tmp_path_factory.mktemp("prop")
    url = f"sqlite:///{directory / 'ledger.db'}"
    cache = directory / "ledger.db.analytics.duckdb"
    led = Ledger(url)
    try:
        work = Workload(led)
        analytics = Analytics(led.store, cache)
        for steps, page, reopen in rounds:
            for kind, pick in steps:
                work.step(kind, pick)
            analytics.catch_up(page=page)
            if reopen:
                analytics.close()
                analytics = Analytics(led.store, cache)
        analytics.catch_up(page=3)
        fresh = Analytics(led.store)
        fresh.catch_up()
        assert all_tables(analytics) == all_tables(fresh)
        analytics.close()
        fresh.close()
    finally:
        led.close()
        ledger.set_default_ledger(None)


class TestDamagedRecords:
    def test_a_payload_that_is_not_utf8_is_named(self, store: Store) -> None:
        """Catch-up meets a record whose bytes are not UTF-8: CorruptLogError naming its position, nothing applied from its page."""
        from ledger.errors import CorruptLogError
        from ledger.store import EventStore

        with sqlite3.connect(store.path) as con:
            con.execute("UPDATE stored_events SET state = x'7b22ff22' WHERE rowid = 3")
        con.close()
        events = EventStore(store.url, create=False)
        try:
            analytics = Analytics(events)
            with pytest.raises(CorruptLogError, match="position 3") as raised:
                analytics.catch_up()
            assert raised.value.position == 3 and analytics.position == 0
            assert analytics.con.execute("SELECT count(*) FROM events").fetchall() == [(0,)]
            analytics.close()
        finally:
            events.close()


class TestErasureLeavesNoOpenedText:
    def test_the_file_is_rebuilt_when_an_erasure_seals_text_it_held(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """A failure's message, opened with personal keys, sits in the cache; after the erasure the file holds it nowhere, free blocks included."""
        from tests.clinic import SECRET, _fail, _patient

        store = Store(tmp_path / "s", steps=5)
        with Ledger(store.url) as led:
            patient = _patient(led)
            _fail(led, "trust_admit", patient=patient)
        query = "select error_message as m from executions where not succeeded and error_type = 'ValueError' and sealed_with is not null"
        first = runner.invoke(app, ["sql", query, "--format", "json", "--db", store.url])
        assert first.exit_code == 0 and json.loads(first.stdout) == [{"m": "cannot admit " + SECRET}], first.output
        assert SECRET.encode() in store.cache.read_bytes()  # the opened text really is in the file
        with Ledger(store.url) as led:
            led.erase(patient.lineage_id, reason="request")
        second = runner.invoke(app, ["sql", query, "--format", "json", "--db", store.url])
        assert second.exit_code == 0 and json.loads(second.stdout) == [{"m": "<erased>"}], second.output
        for name in os.listdir(store.dir):
            if name != "ledger.db":
                assert SECRET.encode() not in (store.dir / name).read_bytes(), name
        assert not (store.dir / "ledger.db.analytics.duckdb.bad").exists()
        assert "made unreadable" in caplog.text
        assert file_tables(store.url, store.cache) == in_memory_tables(store.url)


class TestTransactions:
    def test_a_failure_mid_transaction_loses_and_repeats_nothing(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        """Pages far behind commit a few at a time: a failure rolls back to the last commit, and catching up again equals a rebuild."""
        import projections.analytics as analytics_module

        monkeypatch.setattr(analytics_module, "_COMMIT_EVERY", 10)
        calls = 0
        apply = Analytics._apply

        def failing(self: Analytics, staged: object) -> bool:
            nonlocal calls
            calls += 1
            if calls == 6:
                raise RuntimeError("the disk is full")
            return apply(self, staged)  # type: ignore[arg-type]

        with Ledger(store.url, analytics_path=str(store.cache)) as led:
            analytics = led.analytics
            monkeypatch.setattr(Analytics, "_apply", failing)
            with pytest.raises(RuntimeError, match="disk is full"):
                analytics.catch_up(page=3)
            # pages 1-4 (12 events) committed as one transaction; page 5 rolled back with the failure
            assert analytics.position == 12 and tracked_in(analytics) == 12
            assert analytics.con.execute("SELECT max(position) FROM events").fetchall() == [(12,)]
            monkeypatch.setattr(Analytics, "_apply", apply)
            assert analytics.catch_up(page=3) == store.head - 12
            assert all_tables(analytics) == in_memory_tables(store.url)


def tracked_in(analytics: Analytics) -> int:
    return analytics.con.execute("SELECT position FROM _ledger.projection_tracking").fetchall()[0][0]


@pytest.fixture
def page_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each page ``Analytics`` applies, in order (pages of at most 4 events for a file)."""
    import projections.analytics as analytics_module

    monkeypatch.setattr(analytics_module, "_FILE_PAGE", 4)
    sizes: list[int] = []
    apply = Analytics._apply

    def counting(self: Analytics, staged: object) -> None:
        sizes.append(staged.count)  # type: ignore[attr-defined]
        apply(self, staged)  # type: ignore[arg-type]

    monkeypatch.setattr(Analytics, "_apply", counting)
    return sizes


class TestBoundedFirstBuild:
    def test_a_file_caps_its_pages_and_duckdb_memory_and_equals_a_rebuild(
        self, store: Store, monkeypatch: pytest.MonkeyPatch, page_sizes: list[int]
    ) -> None:
        """A file is built in pages of at most ``_FILE_PAGE`` events under DuckDB's capped buffer pool; the tables are those of a rebuild in memory."""
        import projections.analytics as analytics_module

        monkeypatch.setattr(analytics_module, "_COMMIT_EVERY", 8)
        with Ledger(store.url, analytics_path=str(store.cache)) as led:
            analytics = led.analytics
            assert analytics.catch_up(page=50_000) == store.head
            # every page but the last holds the cap; the pages cover the log once
            assert page_sizes[:-1] == [4] * (len(page_sizes) - 1) and 1 <= page_sizes[-1] <= 4
            assert sum(page_sizes) == store.head
            assert analytics.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] == "122.0 MiB"
            assert tracked_in(analytics) == store.head
            assert all_tables(analytics) == in_memory_tables(store.url)

    def test_tables_in_memory_keep_their_pages_and_duckdb_default(self, store: Store, page_sizes: list[int]) -> None:
        """The cap is the file's: in memory the caller's page size holds, and DuckDB's memory is not limited (the tables are the memory)."""
        with Ledger(store.url) as led:
            analytics = Analytics(led.store)
            assert analytics.catch_up(page=50_000) == store.head
            assert page_sizes == [store.head]
            assert analytics.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] != "122.0 MiB"
            analytics.close()

"""Blame (``Ledger.blame``, ``ledger blame``) and the field paths on lineage graph input edges."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import ledger
from ledger import ERASED, CallableRegistry, EntityRegistry, Ledger, errors
from ledger.cli import app, render
from ledger.cli.blame_tree import BlameTree
from projections.provenance import BlameQueryError, Provenance
from tests.models import Grade, Patient, Student, student

runner = CliRunner()
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@CallableRegistry.register("prov_mean")
def prov_mean(scores: list[float]) -> float:
    return sum(scores) / len(scores)


@CallableRegistry.register("prov_curve")
def prov_curve(st: Student, bonus: float) -> Student:
    st.grades[0].score += bonus
    return st


@CallableRegistry.register("prov_twice")
def prov_twice(a: float, b: float) -> float:
    return a + b


@pytest.fixture
def lg(store_url: str) -> Iterator[Ledger]:
    """A ledger on memory, SQLite and PostgreSQL, installed as the default."""
    led = ledger.connect(store_url)
    yield led
    led.close()
    ledger.set_default_ledger(None)


def _registered(name: str = "Alice") -> Student:
    s = student(name)
    s.promote_to_root()
    return s


def _log(led: Ledger) -> list[tuple[int, str]]:
    page = led.store.read_columns(1, 100_000)
    return list(zip(page.positions, page.topics))


class TestBlame:
    def test_an_execution_result_names_the_execution_and_the_addresses_it_read(self, lg: Ledger) -> None:
        """A mean of two referenced scores is blamed on the mean, whose sources are the scores, each blamed."""
        s = _registered()
        curved = CallableRegistry.execute("prov_curve", st=s, bonus=0.5)
        mean = CallableRegistry.execute("prov_mean", scores=[f"@{curved.ecs_id}.grades.0.score", f"@{s.ecs_id}.grades.1.score"])
        found = lg.blame(f"@{mean.ecs_id}.result")
        assert found.value == mean.result == 0.5 * (0.5 + 1.0)
        assert found.origin == "execution" and found.function == "prov_mean"
        assert found.execution_id == mean.derived_from_execution_id and found.version == mean.ecs_id
        first, second = found.sources
        assert first.param == second.param == "scores"
        assert (first.address, first.value, first.field) == (f"@{curved.ecs_id}.grades.0.score", 0.5, "score")
        assert first.current == first.version == curved.grades[0].ecs_id
        assert first.origin == "execution" and first.function == "prov_curve"
        assert first.sources[0].param == "st" and first.sources[0].address == f"@{s.ecs_id}"
        assert first.sources[0].origin == "registered" and first.sources[0].execution_id is None
        assert second.origin == "registered" and second.version == s.grades[1].ecs_id and second.sources == []

    def test_the_first_version_of_the_current_run_of_equal_values(self, lg: Ledger) -> None:
        """Versions that changed another field, or set the value back, count only from the last change."""
        s = _registered()
        v1 = s.ecs_id
        s.gpa = 3.0
        EntityRegistry.version_entity(s)
        v2 = s.ecs_id
        s.tags = ["x"]
        EntityRegistry.version_entity(s)
        name, gpa = lg.blame(f"@{s.ecs_id}.name"), lg.blame(f"@{s.lineage_id}.gpa")
        assert (name.version, name.origin, name.current) == (v1, "registered", s.ecs_id)
        assert (gpa.version, gpa.origin) == (v2, "edited by hand")
        s.gpa = 0.0  # back to the registered value: the current run starts here, not at v1
        EntityRegistry.version_entity(s)
        assert lg.blame(f"@{s.ecs_id}.gpa").version == s.ecs_id

    def test_a_reference_by_lineage_is_blamed_as_the_version_it_read(self, lg: Ledger) -> None:
        """'@<lineage>.score' read the grade as it was then; a later hand edit does not rewrite the answer."""
        s = _registered()
        g = s.grades[1]
        mean = CallableRegistry.execute("prov_mean", scores=[f"@{g.lineage_id}.score"])
        read_version = g.ecs_id
        s.grades[1].score = 9.0
        EntityRegistry.version_entity(s)
        (source,) = lg.blame(f"@{mean.ecs_id}.result").sources
        assert source.address == f"@{read_version}.score" and source.value == 1.0
        assert source.version == read_version

    def test_a_whole_entity_input_and_a_child_value(self, lg: Ledger) -> None:
        """An entity argument is blamed as the whole entity; an address ending at a child gives its data."""
        s = _registered()
        curved = CallableRegistry.execute("prov_curve", st=s, bonus=1.0)
        found = lg.blame(f"@{curved.ecs_id}.grades.0")
        assert found.field == "" and found.value["score"] == 1.0 and found.value["ecs_id"] == str(curved.grades[0].ecs_id)
        assert found.function == "prov_curve"
        (whole,) = found.sources
        assert whole.address == f"@{s.ecs_id}" and whole.value["name"] == "Alice" and whole.origin == "registered"

    def test_depth_bounds_the_tree_and_says_where_it_stopped(self, lg: Ledger) -> None:
        """depth=0 answers for the address alone (truncated, as its execution read inputs); each level adds one."""
        s = _registered()
        curved = CallableRegistry.execute("prov_curve", st=s, bonus=0.5)
        mean = CallableRegistry.execute("prov_mean", scores=[f"@{curved.ecs_id}.grades.0.score"])
        zero = lg.blame(f"@{mean.ecs_id}.result", depth=0)
        assert zero.sources == [] and zero.truncated
        one = lg.blame(f"@{mean.ecs_id}.result", depth=1)
        assert len(one.sources) == 1 and one.sources[0].truncated and one.sources[0].sources == []
        full = lg.blame(f"@{mean.ecs_id}.result")
        assert [n.truncated for n in full.walk()] == [False, False, False]
        assert len(full.walk()) == 3

    def test_a_value_read_twice_is_expanded_once(self, lg: Ledger) -> None:
        """A diamond: the second path to the same (version, field) is marked repeated, not walked again."""
        s = _registered()
        curved = CallableRegistry.execute("prov_curve", st=s, bonus=0.5)
        ref = f"@{curved.ecs_id}.grades.0.score"
        once = CallableRegistry.execute("prov_mean", scores=[ref])
        total = CallableRegistry.execute("prov_twice", a=f"@{once.ecs_id}.result", b=ref)
        found = lg.blame(f"@{total.ecs_id}.result")
        nodes = found.walk()
        curve_nodes = [n for n in nodes if n.function == "prov_curve"]
        assert len(curve_nodes) == 2
        assert sorted(n.repeated for n in curve_nodes) == [False, True]
        assert [n.sources == [] for n in curve_nodes if n.repeated] == [True]

    def test_bad_queries_raise_specific_errors_and_write_nothing(self, lg: Ledger) -> None:
        """Malformed, unknown, a missing field, a negative depth: one error each, the log unchanged."""
        s = _registered()
        before = _log(lg)
        with pytest.raises(errors.MalformedAddressError, match="address"):
            lg.blame("not-an-address")
        with pytest.raises(errors.UnknownEntityError, match="address"):
            lg.blame("@00000000-0000-4000-8000-000000000000.name")
        with pytest.raises(errors.BadPathError, match="nope"):
            lg.blame(f"@{s.ecs_id}.nope")
        with pytest.raises(BlameQueryError, match="depth"):
            lg.blame(f"@{s.ecs_id}.name", depth=-1)
        assert _log(lg) == before

    def test_an_erased_personal_value_is_not_compared_and_reads_erased(self, lg: Ledger) -> None:
        """After erasure the name cannot be compared with older versions: the holder is the answer, '<erased>' in JSON."""
        p = Patient(name="Zed Private", ward="north")
        lg.registry.register_entity(p)
        p.ward = "south"
        EntityRegistry.version_entity(p)
        before = lg.blame(f"@{p.ecs_id}.name")
        assert before.version != p.ecs_id and before.origin == "registered"  # unchanged since registration
        lg.erase(p.lineage_id, reason="request")
        after = lg.blame(f"@{p.ecs_id}.name")
        assert after.value is ERASED and after.version == after.current == p.ecs_id
        doc = json.loads(json.dumps(after.to_dict()))
        assert doc["value"] == "<erased>" and "Zed Private" not in json.dumps(doc)
        whole = json.loads(json.dumps(lg.blame(f"@{p.ecs_id}").to_dict()))
        assert whole["value"]["name"] == "<erased>" and whole["value"]["ward"] == "south"

    def test_to_dict_is_plain_json(self, lg: Ledger) -> None:
        """to_dict() survives json.dumps and mirrors the object, sources included."""
        s = _registered()
        mean = CallableRegistry.execute("prov_mean", scores=[f"@{s.ecs_id}.grades.0.score"])
        found = lg.blame(f"@{mean.ecs_id}.result")
        doc = json.loads(json.dumps(found.to_dict()))
        assert doc["version"] == str(found.version) and doc["execution_id"] == str(found.execution_id)
        assert doc["sources"][0]["address"] == found.sources[0].address and doc["sources"][0]["param"] == "scores"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.sampled_from([0.0, 1.0, 2.0]), min_size=1, max_size=8), other=st.lists(st.booleans(), min_size=8, max_size=8))
def test_blame_finds_where_the_current_run_of_values_began(mem: Ledger, values: list[float], other: list[bool]) -> None:
    """For any sequence of hand edits (some touching only another field), blame names the version
    where the current value's last run began: a model of the history says which one that is."""
    g = Grade(course="c", score=-1.0)
    g.promote_to_root()
    history = [(g.ecs_id, g.score)]
    for value, touch_other in zip(values, other):
        if touch_other:
            g.course += "x"
        g.score = value
        if EntityRegistry.version_entity(g):
            history.append((g.ecs_id, g.score))
    start = len(history) - 1
    while start > 0 and history[start - 1][1] == history[-1][1]:
        start -= 1
    found = mem.blame(f"@{g.ecs_id}.score")
    assert found.version == history[start][0] and found.value == history[-1][1]
    assert found.origin == ("registered" if start == 0 else "edited by hand")


class TestLineageEdgeFields:
    def test_input_edges_read_by_reference_carry_their_path(self, lg: Ledger) -> None:
        """JSON edges have the field; DOT and Mermaid label the input edge with it; entity inputs stay 'input'."""
        s = _registered()
        curved = CallableRegistry.execute("prov_curve", st=s, bonus=0.5)
        mean = CallableRegistry.execute("prov_mean", scores=[f"@{curved.ecs_id}.grades.0.score"])
        graph = lg.lineage_graph(str(mean.ecs_id), direction="up")
        edges = graph.to_json()["edges"]
        by_field = {(e["source"], e["kind"]): e["field"] for e in edges}
        assert by_field[(str(curved.grades[0].ecs_id), "input")] == "grades.0.score"
        assert 'label="input grades.0.score"' in graph.to_dot()
        assert '|"input grades.0.score"|' in graph.to_mermaid()
        down = lg.lineage_graph(str(s.ecs_id), direction="down", depth=1)
        assert [e["field"] for e in down.to_json()["edges"] if e["kind"] == "input"] == [None]
        assert "-->|input|" in down.to_mermaid() and 'label="input"' in down.to_dot()


# ------------------------------------------------------------------ command line
@pytest.fixture(autouse=False)
def cli_console(monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.cli.commands as cli

    for name in ("COLUMNS", "TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR", "LEDGER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "console", render.OutputConsole())
    monkeypatch.setattr(cli, "err", render.OutputConsole(stderr=True))
    import ledger.cli.provenance as prov

    monkeypatch.setattr(prov, "console", cli.console)


class TestBlameCommand:
    @pytest.fixture
    def filled(self, durable_url: str) -> Iterator[tuple[str, Provenance, str]]:
        led = ledger.connect(durable_url)
        s = _registered()
        curved = CallableRegistry.execute("prov_curve", st=s, bonus=0.5)
        mean = CallableRegistry.execute("prov_mean", scores=[f"@{curved.ecs_id}.grades.0.score", f"@{s.ecs_id}.grades.1.score"])
        address = f"@{mean.ecs_id}.result"
        found = led.blame(address)
        led.close()
        ledger.set_default_ledger(None)
        yield durable_url, found, address

    def test_piped_output_is_the_whole_tree_one_line_per_value(self, filled, cli_console) -> None:
        """Piped: every node on its own line with its ids whole, guides showing the nesting."""
        url, found, address = filled
        result = runner.invoke(app, ["blame", address[:9] + address[37:], "--db", url])  # a short id works too
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert len(lines) == len(found.walk()) == 4
        assert lines[0].startswith(f"@{found.version}.result = 0.75  <- written by prov_mean() execution {found.execution_id}")
        assert lines[1].startswith("├── scores: ") and lines[2].startswith("│   └── st: ") and lines[3].startswith("└── scores: ")
        for node in found.walk():
            assert any(str(node.version) in line and node.address in line for line in lines)

    def test_json_is_the_library_answer(self, filled, cli_console) -> None:
        """--format json prints only to_dict() of the same query."""
        url, found, address = filled
        result = runner.invoke(app, ["blame", address, "--format", "json", "--db", url])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == json.loads(json.dumps(found.to_dict()))
        shallow = json.loads(runner.invoke(app, ["blame", address, "--depth", "0", "-f", "json", "--db", url]).stdout)
        assert shallow["sources"] == [] and shallow["truncated"] is True

    def test_bad_addresses_are_one_line_and_exit_1(self, filled, cli_console) -> None:
        """A missing field or an unknown id: one line on stderr, exit status 1, no traceback."""
        url, found, _ = filled
        for bad in (f"@{found.version}.nope", "@00000000-0000-4000-8000-000000000000.x", "@zz"):
            result = runner.invoke(app, ["blame", bad, "--db", url])
            assert result.exit_code == 1, result.output
            assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
            assert "Traceback" not in result.output

    def test_in_a_terminal_it_is_a_tree_and_nothing_is_cut(self, filled) -> None:
        """A rich tree in a narrow terminal: every id whole on a line, no ellipsis."""
        _, found, _ = filled
        from rich.console import Console

        console = Console(force_terminal=True, width=100, record=True)
        console.print(BlameTree(found))
        text = console.export_text()
        assert "…" not in text and "└── " in text
        ids = {str(n.version) for n in found.walk()} | {str(n.execution_id) for n in found.walk() if n.execution_id}
        assert ids <= set(UUID.findall(text))


class TestLineagePositionOption:
    def test_the_graph_as_of_a_position(self, durable_url: str, cli_console) -> None:
        """`ledger lineage --position P` prints the library's graph as of P: later executions are absent."""
        led = ledger.connect(durable_url)
        s = _registered()
        before = led.store.head()
        mean = CallableRegistry.execute("prov_mean", scores=[f"@{s.ecs_id}.grades.0.score"])
        expected = led.lineage_graph(str(s.grades[0].ecs_id), position=before).to_json()
        now = led.lineage_graph(str(s.grades[0].ecs_id)).to_json()
        led.close()
        ledger.set_default_ledger(None)
        args = ["lineage", str(s.grades[0].ecs_id), "--format", "json", "--db", durable_url, "--analytics", "memory"]
        then = runner.invoke(app, [*args, "--position", str(before)])
        assert then.exit_code == 0, then.output
        assert json.loads(then.stdout) == json.loads(json.dumps(expected))
        ids = {n["id"] for n in json.loads(then.stdout)["nodes"]}
        assert str(mean.derived_from_execution_id) not in ids
        assert str(mean.derived_from_execution_id) in {n["id"] for n in now["nodes"]}

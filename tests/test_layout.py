"""The lineage picture's geometry, read from ``/lineage/<id>/layout.json`` (what the page draws).

For every lineage of the demo and for a 300-version lineage, at several depths: no edge's
polyline passes through a node other than its two ends (segment–rectangle intersection,
with a small tolerance for a spline grazing a corner), no two nodes overlap, every label
fits its box, and the lineage's own versions are all accounted for (shown, or inside a
collapsed run) and chained, depth 0 included. The SVG of the page is checked to be drawn
from the same coordinates. Graphviz's ``dot`` is required (CI installs it).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from starlette.testclient import TestClient

from ledger.cli.commands import open_reader
from ledger.cli.ui import create_app
from ledger.cli.ui.layout import COLLAPSE_MIN, FONT_PX, MAX_CHAIN, SUB_FONT_PX, CHAR_EM, PAD_X
from tests.test_ui import build_demo_store
from tools.long_lineage import build_long_lineage

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is missing (apt-get install graphviz)")

TOLERANCE = 2.0  # SVG units a spline may graze a box by (dot's own rounding, our sampling)
LONG = 300
Rect = tuple[float, float, float, float]


class Site:
    def __init__(self, url: str) -> None:
        self.reader = open_reader(url, analytics="memory", with_analytics=True)
        self.client = TestClient(create_app(self.reader))

    def layout(self, lineage: Any, **params: Any) -> dict[str, Any]:
        answer = self.client.get(f"/lineage/{lineage}/layout.json", params=params)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.reader.analytics.page(query, None, None).rows
        return rows

    def close(self) -> None:
        self.client.close()
        self.reader.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path_factory.mktemp('layout') / 'demo.db'}"
    build_demo_store(url).ledger.close()
    site = Site(url)
    yield site
    site.close()


@pytest.fixture(scope="module")
def long(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, UUID]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('layout') / 'long.db'}"
    lineage = build_long_lineage(url, LONG)
    site = Site(url)
    yield site, lineage
    site.close()


# ---------------------------------------------------------------- geometry
def rect(node: dict[str, Any], shrink: float = 0.0) -> Rect:
    return (node["x"] + shrink, node["y"] + shrink, node["x"] + node["width"] - shrink, node["y"] + node["height"] - shrink)


def segment_hits(p: tuple[float, float], q: tuple[float, float], r: Rect) -> bool:
    """Whether the segment p→q meets the rectangle r (Liang–Barsky clipping)."""
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for edge_p, edge_q in ((-dx, p[0] - r[0]), (dx, r[2] - p[0]), (-dy, p[1] - r[1]), (dy, r[3] - p[1])):
        if edge_p == 0:
            if edge_q < 0:
                return False
            continue
        t = edge_q / edge_p
        if edge_p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def near(point: list[float], r: Rect, slack: float) -> bool:
    return r[0] - slack <= point[0] <= r[2] + slack and r[1] - slack <= point[1] <= r[3] + slack


def check_geometry(layout: dict[str, Any]) -> None:
    """The four promises of the picture, on the JSON the page is drawn from."""
    nodes = {n["id"]: n for n in layout["nodes"]}
    assert len(nodes) == len(layout["nodes"]), "node ids are unique"
    boxes = list(nodes.values())
    for i, a in enumerate(boxes):  # inside the drawing, and no two overlap
        assert 0 <= a["x"] and a["x"] + a["width"] <= layout["width"] and 0 <= a["y"] and a["y"] + a["height"] <= layout["height"]
        for b in boxes[i + 1 :]:
            ra, rb = rect(a), rect(b)
            apart = ra[2] <= rb[0] or rb[2] <= ra[0] or ra[3] <= rb[1] or rb[3] <= ra[1]
            assert apart, f"{a['label']} overlaps {b['label']}"
    for n in boxes:  # labels fit (the page's font sizes, 0.62 em a character)
        assert len(n["label"]) * FONT_PX * CHAR_EM + 2 * PAD_X <= n["width"] + 0.5, n["label"]
        assert len(n["sublabel"]) * SUB_FONT_PX * CHAR_EM + 2 * PAD_X <= n["width"] + 0.5, n["sublabel"]
        assert n["height"] >= 2 * FONT_PX + 8
    for e in layout["edges"]:
        points = e["points"]
        assert len(points) >= 2 and e["from"] in nodes and e["to"] in nodes
        assert near(points[0], rect(nodes[e["from"]]), 3) and near(points[-1], rect(nodes[e["to"]]), 3), e
        for other_id, other in nodes.items():
            if other_id in (e["from"], e["to"]):
                continue
            inner = rect(other, TOLERANCE)
            crossing = [(p, q) for p, q in zip(points, points[1:]) if segment_hits(tuple(p), tuple(q), inner)]
            assert not crossing, f"edge {e['kind']} {nodes[e['from']]['label']} -> {nodes[e['to']]['label']} crosses {other['label']}"


def check_chain(layout: dict[str, Any], versions: int) -> None:
    """Every version of the lineage is drawn, alone or in a run, and the chain links them all."""
    own = [n for n in layout["nodes"] if n["own"] and n["kind"] in ("entity", "run")]
    assert sum(n["collapsed"] or 1 for n in own) == versions
    chain = {(e["from"], e["to"]) for e in layout["edges"] if e["kind"] == "version"}
    ids = {n["id"] for n in own}
    linked = {a for a, b in chain if a in ids} | {b for a, b in chain if b in ids}
    assert len(own) == 1 or linked == ids


# ---------------------------------------------------------------- the demo
def test_every_demo_lineage_is_drawn_true(demo: Site) -> None:
    """Each lineage of the demo, at depth 0, 1 and 2: geometry holds and the chain is whole."""
    lineages = demo.sql("select lineage_id, count(*) from entity_versions group by 1 order by min(position)")
    assert len(lineages) >= 10
    for lineage, versions in lineages:
        for depth in (0, 1, 2):
            layout = demo.layout(lineage, depth=depth)
            check_geometry(layout)
            check_chain(layout, versions)
            if depth == 0:
                assert {n["kind"] for n in layout["nodes"]} <= {"entity", "run", "erasure"}


def test_the_class_mean_edge_no_longer_lands_on_the_wrong_version(demo: Site) -> None:
    """The issue's false edge: on ``class_mean``'s page, an input Grade's edge ended on another
    Grade. Every edge now ends on its own target's box and touches no other box."""
    (lineage,) = demo.sql(
        "select o.lineage_id from executions x join execution_outputs o using (execution_id) "
        "where x.function_name = 'school.class_mean'"
    )[0]
    layout = demo.layout(lineage)
    check_geometry(layout)
    executions = [n for n in layout["nodes"] if n["kind"] == "execution"]
    assert any(n["label"] == "school.class_mean()" for n in executions)
    inputs = [e for e in layout["edges"] if e["kind"] == "input"]
    assert inputs and all(any(n["id"] == e["to"] and n["kind"] == "execution" for n in layout["nodes"]) for e in inputs)


def test_the_page_draws_the_json(demo: Site) -> None:
    """The page's SVG has one box per JSON node at its coordinates, and one polyline per edge with its points."""
    lineage = demo.sql("select lineage_id from entity_versions group by 1 order by count(*) desc, 1 limit 1")[0][0]
    layout = demo.layout(lineage)
    page = demo.client.get(f"/lineage/{lineage}").text
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count('<a href="') == len(layout["nodes"])
    assert svg.count("<polyline") == len(layout["edges"])
    for n in layout["nodes"]:
        assert f'data-id="{n["id"]}"' in svg
        if n["kind"] == "entity":
            assert f'<rect x="{n["x"]}" y="{n["y"]}" width="{n["width"]}" height="{n["height"]}"' in svg
    drawn = re.findall(r'<polyline points="([^"]+)"', svg)
    assert [[[float(v) for v in p.split(",")] for p in d.split()] for d in drawn] == [e["points"] for e in layout["edges"]]


def test_failed_executions_and_the_as_of_position(demo: Site) -> None:
    """A failed execution is marked failed; a position draws only what the log held then."""
    (lineage,) = demo.sql(
        "select distinct v.lineage_id from executions x join execution_inputs i using (execution_id) "
        "join entity_versions v on v.ecs_id = i.ecs_id where not x.succeeded"
    )[0]
    layout = demo.layout(lineage, depth=1)
    failed = [n for n in layout["nodes"] if n["kind"] == "execution" and n["failed"]]
    assert failed and all(n["details"]["status"] == "failed" for n in failed)
    # the side panel's run record: the demo's failed enroll read a student and a course, by entity
    args = {n["details"]["function"]: n["details"]["arguments"] for n in failed}["school.enroll"]
    assert set(args) == {"student", "course"} and all(a.startswith("@") for a in args.values())
    assert all(n["details"]["actor"] != "unknown" for n in failed)
    first = demo.sql(f"select min(position) from entity_versions where lineage_id = '{lineage}'")[0][0]
    then = demo.layout(lineage, position=first)
    assert all((n["details"].get("position") or 0) <= first for n in then["nodes"])
    assert len(then["nodes"]) < len(layout["nodes"])


def test_bad_parameters_are_one_line_4xx(demo: Site) -> None:
    lineage = demo.sql("select lineage_id from entity_versions limit 1")[0][0]
    cases = {
        f"/lineage/{lineage}/layout.json?depth=-1": 400,
        f"/lineage/{lineage}/layout.json?depth=x": 400,
        f"/lineage/{lineage}/layout.json?position=abc": 400,
        f"/lineage/{lineage}/layout.json?expand=run-1-99": 400,
        f"/lineage/{lineage}/layout.json?expand=%3Cscript%3E": 400,
        f"/lineage/{lineage}?expand=run-x": 400,
        "/lineage/ffffffff-ffff-ffff-ffff-ffffffffffff/layout.json": 404,
        "/lineage/nothex/layout.json": 404,
    }
    for path, status in cases.items():
        answer = demo.client.get(path)
        assert answer.status_code == status, (path, answer.text)
        assert "Traceback" not in answer.text
        if path.endswith(".json") or ".json?" in path:
            assert list(answer.json()) == ["error"] and "\n" not in answer.json()["error"]


# ---------------------------------------------------------------- a long lineage
def test_a_300_version_lineage_collapses_and_stays_true(long: tuple[Site, UUID]) -> None:
    """Runs of one function collapse; at most ``MAX_CHAIN`` chain items; the latest version is its own node."""
    site, lineage = long
    for depth in (0, 1, 2):
        layout = site.layout(lineage, depth=depth)
        check_geometry(layout)
        check_chain(layout, LONG)
        own = [n for n in layout["nodes"] if n["own"]]
        assert len(own) <= MAX_CHAIN
        runs = [n for n in own if n["kind"] == "run"]
        assert runs and all(n["collapsed"] >= COLLAPSE_MIN for n in runs)
        assert any(n["label"].startswith("v") and n["sublabel"].endswith("versions by apply_discount") for n in runs)
        latest = next(n for n in layout["nodes"] if n["id"] == layout["latest"])
        assert latest["label"] == f"Account v{LONG}" and latest["collapsed"] is None


def test_expanding_a_run_shows_its_versions(long: tuple[Site, UUID]) -> None:
    """``?expand=<run id>`` draws that run's versions (and their executions) in its place."""
    site, lineage = long
    before = site.layout(lineage, depth=1)
    run = next(n for n in before["nodes"] if n["kind"] == "run" and "apply_discount" in n["sublabel"])
    after = site.layout(lineage, depth=1, expand=run["id"])
    check_geometry(after)
    check_chain(after, LONG)
    assert run["id"] not in {n["id"] for n in after["nodes"]}
    first, last = (int(v) for v in run["id"].split("-")[1:])
    shown = {n["label"] for n in after["nodes"] if n["kind"] == "entity" and n["own"]}
    assert {f"Account v{v}" for v in range(first, last + 1)} <= shown
    assert after["expand"] == [run["id"]]


def test_200_versions_at_every_depth(tmp_path: Path) -> None:
    """A 200-version lineage (the issue's size) holds the same promises."""
    url = f"sqlite:///{tmp_path / 'two_hundred.db'}"
    lineage = build_long_lineage(url, 200)
    site = Site(url)
    try:
        for depth in (0, 2):
            layout = site.layout(lineage, depth=depth)
            check_geometry(layout)
            check_chain(layout, 200)
    finally:
        site.close()


# ---------------------------------------------------------------- ways in
def test_functions_runs_entities_and_tables(demo: Site) -> None:
    """``/functions`` counts what ``executions`` holds; ``/executions`` filters and pages;
    ``/entities`` leads to lineages; ``/sql`` with no query lists every table with its columns."""
    functions = demo.client.get("/functions").text
    for name, runs, failures in demo.sql("select function_name, count(*), count(*) filter (where not succeeded) from executions group by 1"):
        assert f'<a href="/executions?function={name}">{name}</a></td><td>{runs}</td><td>{failures}</td>' in functions
    failed = demo.client.get("/executions", params={"status": "failed"}).text
    (expected,) = demo.sql("select count(*) from executions where not succeeded")[0]
    assert failed.count('<tr class="failed">') == expected >= 1
    total = demo.sql("select count(*) from executions")[0][0]
    first = demo.client.get("/executions").text
    assert f"of {total:,}, newest first" in first
    assert demo.client.get("/executions", params={"actor": "nobody"}).status_code == 200
    assert demo.client.get("/executions", params={"status": "maybe"}).status_code == 400
    entities = demo.client.get("/entities").text
    types = demo.sql("select entity_type, count(distinct lineage_id) from entity_versions group by 1")
    assert all(f"<td>{n}</td>" in entities for _, n in types)
    kind, lineages = types[0]
    listed = demo.client.get("/entities", params={"type": kind}).text
    assert len(set(re.findall(r'href="/lineage/([0-9a-f-]{36})"', listed))) == lineages
    assert demo.client.get("/entities", params={"type": "no.such:Type"}).status_code == 404
    sql = demo.client.get("/sql").text
    for table in ("executions", "entity_versions", "lineage_edges"):
        assert f"<strong>{table}</strong>" in sql
    assert '<span class="col">function_name</span>' in sql

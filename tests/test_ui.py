"""``ledger ui``: every page over HTTP, on SQLite and PostgreSQL, and the refusals.

The pages are read through Starlette's TestClient over the same reader the command
opens (``open_reader``, ``create=False``); the store is checked byte for byte (SQLite)
or by its event count (PostgreSQL) after every refused request. A second ledger holds
hostile text (markup in a field and in a function name) and an erasure. The drawing
itself is tested without a store: any DAG gets a layout whose boxes never overlap and
whose edges run left to right. The real browser is in ``tests/test_ui_browser.py``.
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import ledger
from ledger import CallableRegistry, Ledger
from ledger.cli.commands import open_reader
from ledger.cli.demo import build_demo
from ledger.cli.ui import create_app
from ledger.cli.ui.pages import tree_html
from ledger.cli.ui.layout import Edge, Layout, Node
from ledger.cli.ui.svg import to_svg
from tests.conftest import fresh_pg_url
from tests.models import Grade, Patient
from tools.ui_server import running_ui

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
HOSTILE_FUNCTION = "ui_test.<b>bold</b>&amp;"
AMBIGUOUS = "abcdef12"


def hostile_function(patient: Patient) -> Patient:
    patient.visits += 1
    return patient


def failing(patient: Patient) -> Patient:
    raise ValueError(f"cannot visit {HOSTILE}")


def build_demo_store(url: str) -> Any:
    """``build_demo(url)``; also after ``tests/test_process_state.py`` reset the process state
    (the demo classes' pinned topics survive a reset: ``ledger._process.reset``)."""
    return build_demo(url)


class Demo:
    """The demo's store, a reader on it, and the ids the tests follow."""

    def __init__(self, url: str, featured: UUID) -> None:
        self.url = url
        self.featured = featured
        self.reader = open_reader(url, analytics="memory", with_analytics=True)
        self.client = TestClient(create_app(self.reader))

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        return self.reader.analytics.page(query, None, None).rows


def fingerprint(url: str) -> str:
    """The store's content: the SQLite file's bytes, or PostgreSQL's events table (count and rows)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return hashlib.sha256(path.read_bytes()).hexdigest()
    with Ledger(url, create=False) as led:
        rows = [(n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state)) for n in led.store.iter_all()]
    return hashlib.sha256(repr(rows).encode()).hexdigest() + f":{len(rows)}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path_factory.mktemp('ui') / 'demo.db'}"])
    else:
        urls = fresh_pg_url()
    url = next(urls)
    result = build_demo_store(url)
    result.ledger.close()
    found = Demo(url, result.featured_lineage)
    yield found
    found.client.close()
    found.reader.close()
    for _ in urls:  # drops the PostgreSQL schema
        pass


def ids(html: str, prefix: str) -> list[str]:
    return re.findall(rf'href="/{prefix}/([0-9a-f-]{{36}})"', html)


class TestLogPage:
    def test_newest_first_with_the_commands_rows(self, demo: Demo) -> None:
        """``/`` lists events newest first, positions falling, as ``ledger log`` reads them."""
        page = demo.client.get("/")
        assert page.status_code == 200
        positions = [int(p) for p in re.findall(r"<tr[^>]*><td>(\d+)</td>", page.text)]
        head = demo.sql("select max(position) from events")[0][0]
        assert positions[0] == head
        assert positions == sorted(positions, reverse=True) and len(positions) == 50

    def test_filters_are_those_of_ledger_log(self, demo: Demo) -> None:
        """type, function, entity and since/until narrow the rows the way the command's options do."""
        failed = demo.client.get("/", params={"type": "execution.failed"}).text
        assert set(re.findall(r"<td>(execution\.\w+|entity\.\w+)</td>", failed)) == {"execution.failed"}
        gpa = demo.client.get("/", params={"function": "school.compute_*", "type": "execution"}).text
        assert "school.compute_gpa" in gpa and "school.apply_curve" not in gpa
        window = demo.client.get("/", params={"since": "10", "until": "12"}).text
        assert [int(p) for p in re.findall(r"<tr[^>]*><td>(\d+)</td>", window)] == [12, 11, 10]
        mine = demo.client.get("/", params={"entity": demo.featured.hex[:8], "type": "entity.version"}).text
        assert mine.count("<td>entity.version</td>") == demo.sql(
            f"select count(*) from entity_versions where lineage_id = '{demo.featured}'"
        )[0][0]

    def test_older_events_page_on(self, demo: Demo) -> None:
        """The pager link continues right below the oldest row shown."""
        first = demo.client.get("/", params={"limit": "5"}).text
        link = re.search(r'href="(/\?[^"]+)">older events', first)
        assert link is not None
        second = demo.client.get(link.group(1).replace("&amp;", "&")).text
        shown = [int(p) for p in re.findall(r"<tr[^>]*><td>(\d+)</td>", first)]
        after = [int(p) for p in re.findall(r"<tr[^>]*><td>(\d+)</td>", second)]
        assert after == [shown[-1] - i for i in range(1, 6)]

    def test_bad_filters_say_which(self, demo: Demo) -> None:
        """A since that is neither a position nor a time, or an unknown entity, is one message, not a traceback."""
        bad = demo.client.get("/", params={"since": "yesterday"})
        assert bad.status_code == 400 and "since: &#x27;yesterday&#x27; is neither a log position" in bad.text
        unknown = demo.client.get("/", params={"entity": "ffffffffffff"})
        assert unknown.status_code == 404 and "no stored id starts with ffffffffffff" in unknown.text


class TestLineagePage:
    def test_graph_drawn_with_links_and_the_history(self, demo: Demo) -> None:
        """The lineage page draws the graph as SVG (executions and versions are links) above every version."""
        page = demo.client.get(f"/lineage/{demo.featured.hex[:8]}")
        assert page.status_code == 200
        svg = page.text[page.text.index("<svg") : page.text.index("</svg>")]
        graph = demo.reader.lineage_graph(str(demo.featured), depth=2).to_json()
        executions = {n["id"] for n in graph["nodes"] if n["kind"] == "execution"}
        versions = {n["id"] for n in graph["nodes"] if n["kind"] == "entity"}
        assert set(ids(svg, "execution")) == executions and set(ids(svg, "entity")) == versions
        drawn = demo.client.get(f"/lineage/{demo.featured}/layout.json").json()
        assert svg.count("marker-end=") == len(drawn["edges"]) >= len({(e["source"], e["target"], e["kind"]) for e in graph["edges"]})
        history = demo.sql(f"select ecs_id from entity_versions where lineage_id = '{demo.featured}' order by position")
        table = page.text[page.text.index("<h2>versions") :]
        assert re.findall(r'<td><a href="/id/([0-9a-f-]{36})"', table) == [str(r[0]) for r in history]
        assert "school.apply_curve (execution" in table and "gpa: 2.5 -&gt; 2.75" in table

    def test_position_redraws_the_graph_as_of_then(self, demo: Demo) -> None:
        """``?position=`` draws only what the log held then, and greys the later versions."""
        versions = demo.sql(f"select position from entity_versions where lineage_id = '{demo.featured}' order by position")
        second = versions[1][0]
        now = demo.client.get(f"/lineage/{demo.featured}").text
        then = demo.client.get(f"/lineage/{demo.featured}", params={"position": second}).text
        graph = demo.reader.lineage_graph(str(demo.featured), depth=2, position=second).to_json()
        assert set(ids(then[: then.index("</svg>")], "entity")) == {n["id"] for n in graph["nodes"] if n["kind"] == "entity"}
        assert len(ids(then, "execution")) < len(ids(now, "execution"))
        assert then.count('<tr class="later">') == len(versions) - 2
        before = demo.client.get(f"/lineage/{demo.featured}", params={"position": versions[0][0] - 1})
        assert before.status_code == 200 and "did not exist yet" in before.text and "<svg" not in before.text

    def test_unknown_short_or_bad_ids_are_404_with_the_reason(self, demo: Demo) -> None:
        """Unknown, too short or malformed ids (and bad numbers) answer with the reason, never a traceback."""
        for path, reason in [
            ("/lineage/0000000000000000", "no stored id starts with 0000000000000000"),
            ("/lineage/12ab", "too short"),
            ("/lineage/not-an-id", "is not an id"),
            ("/execution/00000000-0000-4000-8000-000000000000", "names no execution"),
            ("/entity/00000000", "no stored id starts with"),
            ("/nowhere", "no page at /nowhere"),
        ]:
            page = demo.client.get(path)
            assert page.status_code == 404, path
            assert reason in page.text, (path, page.text)
        bad = demo.client.get(f"/lineage/{demo.featured}", params={"position": "x"})
        assert bad.status_code == 400 and "position: &#x27;x&#x27; is not a whole number" in bad.text


class TestExecutionAndEntityPages:
    def test_failed_execution_shows_error_and_traceback(self, demo: Demo) -> None:
        """A failure's page names the function, its inputs with versions, the error and the traceback."""
        execution_id, function, message = demo.sql(
            "select execution_id, function_name, error_message from executions where not succeeded"
        )[0]
        page = demo.client.get(f"/execution/{str(execution_id)[:8]}")
        assert page.status_code == 200
        assert f"{function}() failed" in page.text and "<pre>Traceback" in page.text
        assert message.replace("'", "&#x27;") in page.text
        for (ecs_id,) in demo.sql(f"select ecs_id from execution_inputs where execution_id = '{execution_id}' and ecs_id is not null"):
            assert f'href="/id/{ecs_id}"' in page.text

    def test_execution_with_config_and_siblings(self, demo: Demo) -> None:
        """Outputs with their semantic, the config entity, siblings, duration and isolation are shown."""
        edges = demo.reader.lineage_graph(str(demo.featured), depth=1).to_json()["edges"]
        config, execution_id = next((e["source"], e["target"]) for e in edges if e["kind"] == "config")
        page = demo.client.get(f"/execution/{execution_id}").text
        for (ecs_id, semantic) in demo.sql(f"select ecs_id, semantic from execution_outputs where execution_id = '{execution_id}'"):
            assert f"{semantic}: <a href=\"/id/{ecs_id}\"" in page
        assert f'<td>config</td><td><a href="/id/{config}"' in page
        assert "<td>isolation</td><td>inline</td>" in page and "<td>duration</td>" in page
        (several,) = demo.sql("select execution_id from execution_outputs group by 1 having count(*) > 1 limit 1")[0]
        siblings = demo.client.get(f"/execution/{several}").text
        row = siblings[siblings.index("<td>siblings</td>") :]
        row = row[: row.index("</tr>")]
        assert set(ids(row, "id")) == {str(s[0]) for s in demo.sql(f"select ecs_id from siblings where execution_id = '{several}'")}

    def test_entity_page_is_a_tree_with_as_of_navigation(self, demo: Demo) -> None:
        """A version's page shows its fields and children, links the versions either side, and
        ``?position=`` goes to the version current then."""
        rows = demo.sql(f"select ecs_id, position from entity_versions where lineage_id = '{demo.featured}' order by position")
        page = demo.client.get(f"/entity/{rows[1][0]}").text
        assert f'rel="prev" href="/entity/{rows[0][0]}"' in page and f'rel="next" href="/entity/{rows[2][0]}"' in page
        assert '<span class="key">transcript</span>' in page and "Transcript</span>" in page
        latest = demo.client.get(f"/entity/{demo.featured}").text  # a lineage id shows its latest version
        assert f"version {len(rows)} of {len(rows)}" in latest and 'rel="next"' not in latest
        moved = demo.client.get(f"/entity/{rows[0][0]}", params={"position": rows[2][1]}, follow_redirects=False)
        assert moved.status_code == 303 and moved.headers["location"] == f"/entity/{rows[2][0]}"
        early = demo.client.get(f"/entity/{rows[0][0]}", params={"position": 1})
        assert early.status_code == 404 and "did not exist yet" in early.text

    def test_id_route_sends_each_kind_to_its_page(self, demo: Demo) -> None:
        """``/id/<id>``: an execution, a lineage and a version each go to their own page."""
        (execution_id,) = demo.sql("select execution_id from executions limit 1")[0]
        (ecs_id,) = demo.sql(f"select ecs_id from entity_versions where lineage_id = '{demo.featured}' order by position limit 1")[0]
        for ref, target in [
            (str(execution_id)[:8], f"/execution/{execution_id}"),
            (demo.featured.hex[:10], f"/lineage/{demo.featured}"),
            (str(ecs_id), f"/entity/{ecs_id}"),
        ]:
            answer = demo.client.get(f"/id/{ref}", follow_redirects=False)
            assert (answer.status_code, answer.headers["location"]) == (303, target)
        assert demo.client.get("/id", params={"ref": str(ecs_id)}, follow_redirects=False).headers["location"] == f"/entity/{ecs_id}"


class TestSqlPage:
    def test_rows_with_a_limit_and_json(self, demo: Demo) -> None:
        """The SQL page shows at most ``limit`` rows and says how many there are; ``format=json`` gives row objects."""
        total = demo.sql("select count(*) from events")[0][0]
        page = demo.client.get("/sql", params={"q": "select position from events order by position", "limit": "7"})
        assert page.status_code == 200
        assert re.findall(r"<tr><td>(\d+)</td></tr>", page.text) == [str(i) for i in range(1, 8)]
        assert f"7 of {total:,} rows shown" in page.text
        answer = demo.client.get("/sql", params={"q": "select function_name, count(*) as n from executions group by 1 order by 1", "format": "json"})
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == [{"function_name": f, "n": n} for f, n in demo.sql(
            "select function_name, count(*) as n from executions group by 1 order by 1"
        )]

    @pytest.mark.parametrize(
        "query",
        [
            "delete from events",
            "create table t as select 1",
            "COPY events TO '/tmp/ui-leak.csv'",
            "attach 'x.db' as x",
            "select * from read_text('/etc/passwd')",
            "with gone as (delete from events returning *) select * from gone",
        ],
    )
    def test_a_refused_statement_shows_the_error_and_changes_nothing(self, demo: Demo, query: str) -> None:
        """A statement ``ledger sql`` refuses is refused here too: an error on the page, the store unchanged."""
        before = fingerprint(demo.url)
        count = demo.sql("select count(*) from events")[0][0]
        page = demo.client.get("/sql", params={"q": query})
        assert page.status_code == 400 and '<p class="error">' in page.text
        as_json = demo.client.get("/sql", params={"q": query, "format": "json"})
        assert as_json.status_code == 400 and as_json.json()["error"]
        assert demo.sql("select count(*) from events")[0][0] == count
        assert fingerprint(demo.url) == before


class TestHeavyQuery:
    def test_a_heavy_query_is_stopped_and_pages_answer_meanwhile(self, demo: Demo) -> None:
        """A query that would run for minutes gets a one-line time-limit error; the log page answers while it runs."""
        import threading
        import time

        client = TestClient(create_app(demo.reader, sql_time_limit=8.0))
        heavy: dict[str, Any] = {}

        def run_heavy() -> None:
            heavy["answer"] = client.get("/sql", params={"q": "select count(*) from range(1000000000000)", "format": "json"})

        started = time.monotonic()
        worker = threading.Thread(target=run_heavy)
        worker.start()
        time.sleep(1.0)  # let the query start (not an assertion: the page must answer whenever it asks)
        page = client.get("/")
        assert page.status_code == 200 and "<table" in page.text
        assert worker.is_alive()  # the log page answered while the query was still running
        worker.join(120)
        answer = heavy["answer"]
        assert answer.status_code == 400
        assert answer.json() == {"error": "query: stopped after 8 s, the time limit of a query on this page"}
        assert time.monotonic() - started < 60  # the query alone would take about 80 s
        assert client.get("/sql", params={"q": "select 42 as n", "format": "json"}).json() == [{"n": 42}]


class TestOnlyReads:
    @pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    def test_every_other_method_is_405_and_writes_nothing(self, demo: Demo, method: str) -> None:
        """Only GET and HEAD are served: any other method on any page is 405 with ``Allow``, the store unchanged."""
        before = fingerprint(demo.url)
        for path in ["/", f"/lineage/{demo.featured}", "/sql?q=delete+from+events", "/static/ui.css", "/nowhere"]:
            answer = demo.client.request(method, path)
            assert answer.status_code == 405, (method, path)
            assert answer.headers["allow"] == "GET, HEAD"
        assert demo.client.head("/").status_code == 200
        assert fingerprint(demo.url) == before

    def test_pages_carry_a_strict_content_security_policy(self, demo: Demo) -> None:
        """No inline script, nothing from another origin: the page works offline and injected markup cannot run."""
        page = demo.client.get("/")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'self'" in policy
        assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "no asset from the network"
        assert demo.client.get("/static/ui.js").status_code == 200

    def test_loopback_serving_refuses_foreign_host_names(self, demo: Demo) -> None:
        """Served on 127.0.0.1, a request naming another host (DNS rebinding) is refused."""
        from ledger.cli.ui.app import LOCAL_HOSTS

        client = TestClient(create_app(demo.reader, allowed_hosts=list(LOCAL_HOSTS)), base_url="http://127.0.0.1:8765")
        assert client.get("/").status_code == 200
        assert client.get("/", headers={"host": "evil.example:8765"}).status_code == 400


# ------------------------------------------------------------------ hostile text and erasure
@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'hostile.db'}"
    with Ledger(url) as led:
        ledger.set_default_ledger(led)
        try:
            # registered here, not at import: other tests reset the process's function table
            CallableRegistry.register(HOSTILE_FUNCTION)(hostile_function)
            CallableRegistry.register("ui_test.fails")(failing)
            p = Patient(name="Zelda", ward=HOSTILE, notes=[Grade(course=HOSTILE, score=1.0)])
            led.registry.register_entity(p)
            out = CallableRegistry.execute(HOSTILE_FUNCTION, patient=p)
            with pytest.raises(ValueError):
                CallableRegistry.execute("ui_test.fails", patient=out)
            # every id of this one starts with the same 8 hex digits: an ambiguous prefix
            previous = ledger.id_source(lambda: UUID(AMBIGUOUS + uuid4().hex[8:]))
            try:
                gone = Patient(name="Yann", ward="east")
                led.registry.register_entity(gone)
            finally:
                ledger.id_source(previous)
            erasure = led.erase(gone.lineage_id, reason=HOSTILE)
        finally:
            ledger.set_default_ledger(None)
    known = {
        "lineage": p.lineage_id, "ecs_id": out.ecs_id, "execution": out.derived_from_execution_id,
        "erased": gone, "erasure": erasure,
    }
    reader = open_reader(url, analytics="memory", with_analytics=True)
    client = TestClient(create_app(reader))
    yield client, known
    client.close()
    reader.close()


def no_raw_markup(html: str) -> None:
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold</b>" not in html


class TestHostileText:
    def test_markup_in_fields_and_function_names_is_shown_as_text(self, hostile: tuple[TestClient, dict[str, Any]]) -> None:
        """A field, a function name, an error message and an erasure reason holding markup are escaped on every page."""
        client, known = hostile
        failed_id = client.get("/sql", params={"q": "select execution_id from executions where not succeeded", "format": "json"}).json()[0]["execution_id"]
        pages = {
            "log": client.get("/", params={"limit": "100"}).text,
            "lineage": client.get(f"/lineage/{known['lineage']}").text,
            "entity": client.get(f"/entity/{known['ecs_id']}").text,
            "execution": client.get(f"/execution/{known['execution']}").text,
            "failed": client.get(f"/execution/{failed_id}").text,
            "sql": client.get("/sql", params={"q": "select function_name from executions"}).text,
        }
        for name, html in pages.items():
            no_raw_markup(html)
        assert "ui_test.&lt;b&gt;bold&lt;/b&gt;&amp;amp;" in pages["execution"]
        assert "ui_test.&lt;b&gt;bold&lt;/b&gt;&amp;amp;()" in pages["lineage"]  # the graph node's label
        assert r"&lt;script&gt;alert(\&quot;x\&quot;)&lt;/script&gt;" in pages["entity"]  # JSON text, escaped
        assert "cannot visit &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in pages["failed"]
        erased = client.get(f"/lineage/{known['erased'].lineage_id}").text
        no_raw_markup(erased)
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in erased  # the erasure's reason

    def test_erasure_is_a_tombstone(self, hostile: tuple[TestClient, dict[str, Any]]) -> None:
        """An erased lineage's page says so, with the position and reason, and its personal fields read ``<erased>`` (as ``ledger show`` prints them)."""
        client, known = hostile
        page = client.get(f"/lineage/{known['erased'].lineage_id}").text
        assert '<div class="tombstone"><strong>erased</strong> at position' in page
        assert f"at position {known['erasure'].position}" in page and '<tr class="tombstone">' in page
        assert "tombstone" not in client.get(f"/lineage/{known['lineage']}").text
        entity = client.get(f"/entity/{known['erased'].ecs_id}").text
        assert '<span class="key">name</span><span class="value">&quot;&lt;erased&gt;&quot;</span>' in entity.replace("\n", "")

    def test_an_ambiguous_prefix_is_404_listing_the_candidates(self, hostile: tuple[TestClient, dict[str, Any]]) -> None:
        """A prefix several ids share answers 404 naming them, on every page that takes an id."""
        client, known = hostile
        gone = known["erased"]
        for path in (f"/entity/{AMBIGUOUS}", f"/lineage/{AMBIGUOUS}", f"/execution/{AMBIGUOUS}", f"/id/{AMBIGUOUS}"):
            page = client.get(path)
            assert page.status_code == 404, path
            assert f"{AMBIGUOUS} is ambiguous" in page.text and str(gone.ecs_id) in page.text and str(gone.lineage_id) in page.text

    @settings(max_examples=200, deadline=None)
    @given(st.recursive(st.text() | st.integers(-(2**63), 2**63 - 1) | st.none(), lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(), kids, max_size=3), max_leaves=12))
    def test_any_stored_value_renders_without_markup(self, value: Any) -> None:
        """Whatever text a stored value holds, its tree has no tag but the tree's own."""
        html = tree_html(value)
        tags = set(re.findall(r"</?([a-zA-Z]+)", html))
        assert tags <= {"ul", "li", "span", "details", "summary", "a"}

    @settings(max_examples=200, deadline=None)
    @given(st.text(), st.text())
    def test_any_label_or_id_in_the_graph_is_text(self, label: str, kind: str) -> None:
        """Hostile labels, kinds and ids in a layout leave the SVG with only its own tags."""
        nodes = [Node("a", "entity", label, kind), Node(label or "b", "execution", kind, label), Node("r", "run", label, kind, collapsed=3)]
        edges = [Edge("a", label or "b", kind, [(0.0, 0.0), (1.0, 1.0)], note=label)]
        svg = to_svg(Layout(label, 2, None, (label,), nodes, edges, 10.0, 10.0, label))
        assert set(re.findall(r"</?([a-zA-Z]+)", svg)) <= {"svg", "defs", "marker", "path", "g", "text", "a", "title", "rect", "polygon", "polyline"}


class TestLongLivedServer:
    def test_what_is_appended_while_it_serves_is_shown(self, tmp_path: Path) -> None:
        """One reader serves for as long as the command runs: a version, an execution and an
        erasure appended by another writer meanwhile appear on the next request."""
        url = f"sqlite:///{tmp_path / 'live.db'}"
        with Ledger(url) as led:
            p = Patient(name="Xavier", ward="west")
            led.registry.register_entity(p)
        reader = open_reader(url, analytics="memory", with_analytics=True)
        client = TestClient(create_app(reader))
        try:
            before = client.get(f"/lineage/{p.lineage_id}").text
            assert "tombstone" not in before and "&quot;Xavier&quot;" in client.get(f"/entity/{p.ecs_id}").text
            with Ledger(url) as led:
                p.ward = "south"
                led.registry.version_entity(p)
                led.erase(p.lineage_id, reason="asked")
            after = client.get(f"/lineage/{p.lineage_id}").text
            assert '<div class="tombstone"><strong>erased</strong>' in after
            assert "ward: &#x27;west&#x27; -&gt; &#x27;south&#x27;" in after
            assert "Xavier" not in client.get(f"/entity/{p.lineage_id}").text
            assert "<td>entity.erased</td>" in client.get("/").text
        finally:
            client.close()
            reader.close()


class TestCommand:
    @pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_the_served_store_is_left_as_it_was(self, tmp_path: Path, stop: int) -> None:
        """``ledger ui`` serving pages of a WAL-mode SQLite store, then stopped by Ctrl-C or SIGTERM,
        leaves the store's bytes as they were and no ``-wal``, ``-shm`` or journal beside it."""
        url = f"sqlite:///{tmp_path / 'demo.db'}"
        build_demo_store(url).ledger.close()
        before = fingerprint(url)
        with running_ui(url, analytics="memory", stop=stop) as base, httpx2.Client(base_url=base) as client:
            for path in ["/", "/lineage/12f034c1", "/entity/12f034c1", "/sql?q=select+count(*)+from+events"]:
                assert client.get(path).status_code == 200, path
            assert (tmp_path / "demo.db-wal").exists()  # while it serves, SQLite reads a WAL store this way
        assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.db"]
        assert fingerprint(url) == before

    def test_ui_on_a_missing_store_is_one_line_and_creates_nothing(self, tmp_path: Path) -> None:
        """``ledger ui`` on a store that does not exist exits 1 with one line and writes no file."""
        script = Path(sys.executable).parent / "ledger"
        done = subprocess.run(
            [str(script), "ui", "--db", f"sqlite:///{tmp_path / 'missing.db'}", "--port", "0"],
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 1 and done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1
        assert list(tmp_path.iterdir()) == []


def test_a_wrapped_outputs_page_is_titled_by_its_field(demo: Demo) -> None:
    """The demo's class_mean result: ``output(result) lineage …``, not the topic's type hash."""
    (lineage_id,) = demo.sql("select lineage_id from entity_versions where entity_type like 'ledger.outputs:result:%' limit 1")[0]
    page = demo.client.get(f"/lineage/{lineage_id}")
    assert page.status_code == 200
    title = page.text[page.text.index("<title>") : page.text.index("</title>")]
    assert f"output(result) lineage {lineage_id}" in title
    assert not re.search(r"\b[0-9a-f]{16}\b", title)

"""``ledger ui`` in a real browser: Debian's chromium, headless, against the real command.

The server is ``ledger ui`` itself (uvicorn, in a child process, on a free localhost
port) over the demo's SQLite store. Chromium's ``--dump-dom`` gives the DOM after the
page ran: the lineage graph must be there as SVG, with nodes. Playwright's Python
package drives the same ``/usr/bin/chromium`` (it never downloads one) to click a
function node and to move the position slider. Where chromium (or Playwright) is
missing the tests skip and say why; CI installs chromium (``.ci/run``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_ui import build_demo_store
from tools.long_lineage import build_long_lineage
from tools.ui_server import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    chromium,
    missing_chromium,
    running_ui,
)

pytestmark = pytest.mark.skipif(missing_chromium() is not None, reason=missing_chromium() or "")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL of a running ``ledger ui``, the demo's featured lineage id)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'demo.db'}"
    result = build_demo_store(url)
    result.ledger.close()
    with running_ui(url, analytics="memory") as base:
        yield base, str(result.featured_lineage)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=[f for f in CHROMIUM_FLAGS if f != "--headless"])
        yield launched
        launched.close()


def test_lineage_page_dom_holds_the_graph_as_svg(site: tuple[str, str]) -> None:
    """After chromium ran the lineage page, its DOM holds the <svg> graph: version boxes and
    execution hexagons, each a link, and the edges between them."""
    base, lineage = site
    dom = chromium("--virtual-time-budget=3000", "--dump-dom", f"{base}/lineage/{lineage[:8]}").stdout
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="lineage"' in dom
    svg = dom[dom.index("<svg") : dom.index("</svg>")]
    executions = re.findall(r'<a href="/execution/[0-9a-f-]{36}" class="node execution', svg)
    versions = re.findall(r'<a href="/entity/[0-9a-f-]{36}" class="node entity', svg)
    assert len(executions) >= 2 and len(versions) >= 4
    assert svg.count("<polygon") == len(executions) and svg.count('marker-end="url(#arrow)"') >= len(executions)


def test_clicking_a_function_node_fills_the_side_panel_which_opens_its_execution(site: tuple[str, str], browser: Any) -> None:
    """A click on an execution node selects it: the side panel shows its function and status,
    and the panel's link leads to that execution's page."""
    base, lineage = site
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/lineage/{lineage}")
    node = page.locator("svg.lineage a.node.execution").first
    target = node.get_attribute("href")
    label = node.locator("text.label").text_content() or ""
    node.click()
    panel = page.locator("aside.panel")
    assert panel.locator("h3").inner_text().startswith(label)
    row = lambda name: panel.locator("th", has_text=re.compile(f"^{name}$"))  # noqa: E731 - exact header text
    assert row("function").count() == 1 and row("status").count() == 1
    assert row("actor").count() == 1 and row("arguments").count() == 1  # the run record, as the log holds it
    assert page.url.startswith(f"{base}/lineage/")
    panel.locator("a.open").click()
    page.wait_for_url(f"**{target}")
    heading = page.locator("h1").inner_text()
    assert heading.startswith(label.removesuffix("()")) and heading.endswith(("succeeded", "failed"))
    page.close()


def test_a_version_node_shows_what_changed(site: tuple[str, str], browser: Any) -> None:
    """A click on one of the lineage's versions shows its version number and what changed."""
    base, lineage = site
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/lineage/{lineage}")
    page.locator("svg.lineage a.node.entity.own").nth(1).click()
    panel = page.locator("aside.panel")
    assert panel.locator("th", has_text="what changed").count() == 1
    assert "gpa" in panel.inner_text()
    page.close()


def test_labels_are_readable_on_the_first_screen(site: tuple[str, str], browser: Any) -> None:
    """At 1400x1000 every label visible in the graph's viewport is drawn at 10 px or more."""
    base, lineage = site
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/lineage/{lineage}")
    view = page.locator(".graph-view").bounding_box()
    assert view is not None
    heights = []
    for text in page.locator("svg.lineage a.node text.label").all():
        box = text.bounding_box()
        if box and box["x"] >= view["x"] and box["x"] + box["width"] <= view["x"] + view["width"] and view["y"] <= box["y"] <= view["y"] + view["height"]:
            heights.append(box["height"])
    assert len(heights) >= 4 and min(heights) >= 10
    page.close()


def test_a_wheel_over_the_graph_zooms_it(site: tuple[str, str], browser: Any) -> None:
    """A wheel turn over the graph zooms in (the viewBox's scale), the fit button shows it all, "-" zooms out."""
    base, lineage = site
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/lineage/{lineage}")
    svg = page.locator("svg.lineage")
    before = float(svg.get_attribute("data-scale") or "0")
    box = page.locator(".graph-view").bounding_box()
    assert box is not None and before > 0
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function("(b) => parseFloat(document.querySelector('svg.lineage').getAttribute('data-scale')) > b", arg=before)
    zoomed = float(svg.get_attribute("data-scale") or "0")
    assert zoomed > before
    page.locator("[data-zoom=fit]").click()
    fitted = float(svg.get_attribute("data-scale") or "0")
    assert fitted < zoomed
    page.locator(".graph-view").focus()
    page.keyboard.press("-")
    assert float(svg.get_attribute("data-scale") or "0") == pytest.approx(fitted * 0.8, rel=1e-3)
    page.close()


def test_a_click_on_a_collapsed_run_expands_it(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> None:
    """On a 200-version lineage the page opens on the latest version; a click on a collapsed run
    draws the page again with that run's versions in its place."""
    url = f"sqlite:///{tmp_path_factory.mktemp('long') / 'long.db'}"
    lineage = build_long_lineage(url, 200)
    with running_ui(url, analytics="memory") as base:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/lineage/{lineage}")
        latest = page.locator("svg.lineage a.node.start")
        assert (latest.locator("text.label").text_content() or "") == "Account v200"
        box, view = latest.bounding_box(), page.locator(".graph-view").bounding_box()
        assert box and view and view["x"] <= box["x"] and box["x"] + box["width"] <= view["x"] + view["width"]
        run = page.locator('svg.lineage a.node.run[data-collapsed]').last
        run_id = run.get_attribute("data-id") or ""
        count = int(run.get_attribute("data-collapsed") or "0")
        run.scroll_into_view_if_needed()
        page.locator("[data-zoom=fit]").click()
        run.dispatch_event("click")
        page.wait_for_url(re.compile(rf".*expand={run_id}.*"))
        first, last = (int(v) for v in run_id.split("-")[1:])
        labels = set(page.locator("svg.lineage a.node.entity text.label").all_text_contents())
        assert {f"Account v{v}" for v in range(first, last + 1)} <= labels and last - first + 1 == count
        page.close()


def test_the_history_table_scrolls_at_800_px(site: tuple[str, str], browser: Any) -> None:
    """At 800 px wide the page does not overflow: the versions table scrolls inside its box."""
    base, lineage = site
    page = browser.new_page(viewport={"width": 800, "height": 900})
    page.goto(f"{base}/lineage/{lineage}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    scroller = page.locator("section .hscroll").first
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth")
    page.close()


def test_the_position_slider_redraws_the_graph_as_of_then(site: tuple[str, str], browser: Any) -> None:
    """Moving the slider (its only JavaScript) submits the position; the graph drawn then has fewer nodes."""
    base, lineage = site
    page = browser.new_page()
    page.goto(f"{base}/lineage/{lineage}")
    now = page.locator("svg.lineage a.node").count()
    slider = page.locator("form.slider input[type=range]")
    low = int(slider.get_attribute("min") or "0")
    slider.evaluate("(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); el.dispatchEvent(new Event('change')); }", str(low))
    page.wait_for_url(re.compile(rf".*position={low}\b.*"))
    then = page.locator("svg.lineage a.node").count()
    assert 0 < then < now
    assert page.locator("form.slider input[name=position]").input_value() == str(low)
    page.close()

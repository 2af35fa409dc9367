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


def test_clicking_a_function_node_opens_its_execution(site: tuple[str, str], browser: Any) -> None:
    """A click on an execution node in the drawn graph leads to that execution's page."""
    base, lineage = site
    page = browser.new_page()
    page.goto(f"{base}/lineage/{lineage}")
    node = page.locator("svg.lineage a.node.execution").first
    target = node.get_attribute("href")
    label = node.locator("text.label").text_content() or ""
    node.click()
    page.wait_for_url(f"**{target}")
    assert page.url == f"{base}{target}"
    heading = page.locator("h1").inner_text()
    assert heading.startswith(label.rstrip("…").removesuffix("()")) and heading.endswith(("succeeded", "failed"))
    assert page.locator("table.detail td", has_text="function").count() == 1
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

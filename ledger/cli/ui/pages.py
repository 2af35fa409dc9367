"""HTML for the web page: the audit records ``projections.audit`` reads, as the command shows them.

The tables are the command's own (``ledger.cli.render``: ``log_table``, ``history_table``,
``execution_detail``, ``rows_table``) turned into HTML by ``rows_html``, so the page and
the terminal show the same rows and cannot drift apart. Every value that came from
the store is escaped (``html.escape``) before it is placed in markup: an entity
field or a function name holding ``<script>`` is shown as text. Ids in cells become
links to ``/id/<uuid>``, which sends the reader to the page for that kind of id.

Each function returns a whole page or a fragment as ``str``; none reads the store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

import ledger.cli.render as render
from ledger.cli.ui.layout import Layout
from ledger.cli.ui.svg import node_href, to_svg
from projections.audit import (
    Erasure,
    ExecutionDetail,
    HistoryRow,
    LogEntry,
    Neighbours,
    Shown,
    VersionInfo,
)

__all__ = [
    "entities_page",
    "entity_page",
    "error_page",
    "executions_page",
    "functions_page",
    "execution_page",
    "lineage_page",
    "log_page",
    "page",
    "rows_html",
    "sql_page",
    "tables_html",
    "tree_html",
]

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d)?")


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def linked(text: str) -> str:
    """``text`` escaped, each UUID in it a link to the page for that id."""
    return _UUID.sub(lambda m: f'<a href="/id/{m.group(0)}" class="id">{m.group(0)}</a>', _e(text))


def page(title: str, body: str, *, heading: str | None = None) -> str:
    """A whole page: the navigation, then ``body`` (already HTML)."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · entity-ledger</title>"
        '<link rel="stylesheet" href="/static/ui.css">'
        '<script src="/static/ui.js" defer></script></head><body>'
        '<header><a class="brand" href="/">entity-ledger</a>'
        '<nav><a href="/">log</a><a href="/functions">functions</a><a href="/executions">runs</a>'
        '<a href="/entities">entities</a><a href="/sql">sql</a></nav>'
        '<form class="jump" action="/id" method="get"><input name="ref" placeholder="id or 8+ hex digits" '
        'aria-label="go to id"><button>go</button></form></header>'
        f"<main><h1>{_e(heading if heading is not None else title)}</h1>{body}</main></body></html>\n"
    )


def _cell(value: Any, pre: bool = False) -> str:
    if isinstance(value, render.Lines):
        if pre:
            return f"<pre>{linked(chr(10).join(render.cell(v) for v in value))}</pre>"
        return "".join(f"<div>{linked(render.cell(v))}</div>" for v in value)
    text = render.cell(value)
    if _TIME.fullmatch(text):
        return f'<span class="time">{_e(text)}</span>'
    return linked(text)


def rows_html(
    table: render.Rows, *, css: str = "", row_classes: Sequence[str] | None = None, pre_rows: Sequence[str] = ()
) -> str:
    """A ``render.Rows`` table as an HTML table: every cell whole, escaped, ids linked.

    A row whose first cell is in ``pre_rows`` (a traceback) keeps its lines preformatted.
    """
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = []
    for i, row in enumerate(table.rows):
        cls = f' class="{_e(row_classes[i])}"' if row_classes and row_classes[i] else ""
        pre = bool(row) and row[0] in pre_rows
        body.append(f"<tr{cls}>" + "".join(f"<td>{_cell(v, pre)}</td>" for v in row) + "</tr>")
    caption = f"<caption>{_e(table.title)}</caption>" if table.title else ""
    return f'<table class="{_e(css)}">{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def error_page(status: int, message: str) -> str:
    reason = {400: "bad request", 404: "not found", 405: "method not allowed", 503: "unavailable"}.get(status, "error")
    return page(f"{status} {reason}", f'<p class="error">{_e(message)}</p>')


# ---------------------------------------------------------------- the log
LOG_FILTERS = ("type", "function", "entity", "since", "until")


def _filter_form(filters: dict[str, str], limit: int) -> str:
    hints = {
        "type": "entity.version, execution, execution.failed",
        "function": "glob, e.g. school.*",
        "entity": "lineage id or prefix",
        "since": "position or ISO time",
        "until": "position or ISO time",
    }
    fields = "".join(
        f'<label>{name} <input name="{name}" value="{_e(filters.get(name, ""))}" placeholder="{_e(hints[name])}"></label>'
        for name in LOG_FILTERS
    )
    return (
        f'<form class="filters" action="/" method="get">{fields}'
        f'<label>rows <input name="limit" type="number" min="1" max="1000" value="{limit}"></label>'
        '<button>filter</button> <a href="/">clear</a></form>'
    )


def log_page(entries: list[LogEntry], filters: dict[str, str], limit: int) -> str:
    """The log, newest first, with the filters of ``ledger log`` and a link to the page of older events."""
    newest_first = list(reversed(entries))
    table = render.log_table(newest_first, title="events, newest first")
    classes = ["failed" if e.topic == "execution.failed" else "" for e in newest_first]
    body = [_filter_form(filters, limit)]
    if not entries:
        body.append('<p class="empty">no events match</p>')
    else:
        body.append(rows_html(table, css="log", row_classes=classes))
        oldest = entries[0].position
        if oldest > 1 and len(entries) == limit:
            older = {k: v for k, v in filters.items() if v and k != "until"} | {"until": str(oldest - 1), "limit": str(limit)}
            body.append(f'<p class="pager"><a rel="next" href="/?{_e(urlencode(older))}">older events →</a></p>')
    return page("log", "".join(body))


# ---------------------------------------------------------------- lineage
def _version_line(v: VersionInfo) -> str:
    return (
        f"{_e(render.short_type(v.entity_type))} version {v.version} · ecs_id {linked(str(v.ecs_id))} · "
        f"position {v.position} · {_e(v.recorded_at.isoformat(timespec='milliseconds'))}"
    )


def _slider(lineage_id: Any, position: int | None, first: int, head: int, depth: int) -> str:
    shown = head if position is None else position
    return (
        f'<form class="slider" action="/lineage/{_e(lineage_id)}" method="get">'
        f'<label>graph as of position <input type="range" min="{first}" max="{head}" '
        f'value="{shown}" data-slider aria-label="log position slider"></label>'
        f'<input type="number" name="position" min="0" max="{head}" value="{shown}" aria-label="log position">'
        f'<input type="hidden" name="depth" value="{depth}">'
        f'<button>draw</button> <a href="/lineage/{_e(lineage_id)}?depth={depth}">now</a></form>'
    )


def lineage_page(
    rows: list[HistoryRow],
    erasure: Erasure | None,
    layout: Layout | None,
    *,
    position: int | None,
    head: int,
    depth: int,
    missing: str | None = None,
) -> str:
    """One lineage: its graph (as of ``position``), then every version with its diff and what wrote it.

    Versions recorded after ``position`` are greyed out in the table; an erasure
    ends the table with a tombstone.
    """
    first = rows[0].version
    lineage_id = first.lineage_id
    body = [_slider(lineage_id, position, first.position, head, depth)]
    if erasure is not None:
        when = erasure.recorded_at.isoformat(timespec="seconds") if erasure.recorded_at else "?"
        body.append(
            f'<div class="tombstone"><strong>erased</strong> at position {erasure.position} ({_e(when)})'
            f"{': ' + _e(erasure.reason) if erasure.reason else ''}. Personal fields read as ERASED.</div>"
        )
    if layout is None:
        body.append(f'<p class="empty error-line">{_e(missing or "no graph")}</p>')
    else:
        body.append(graph_section(layout))
    table = render.history_table(rows, erasure)
    classes = ["later" if position is not None and r.version.position > position else "" for r in rows]
    if erasure is not None:
        classes.append("tombstone")
    body.append('<section><h2>versions</h2><div class="hscroll">' + rows_html(table, css="history", row_classes=classes) + "</div></section>")
    title = f"{render.short_type(first.entity_type)} lineage {lineage_id}"
    return page(title, "".join(body))


def graph_section(layout: Layout) -> str:
    """The drawn graph in a pan-and-zoom viewport, its tools and legend, and the side panel.

    The panel's content comes from the nodes' ``details`` (the same ``Layout``), given to the
    script as JSON in a non-executing ``<script type="application/json">`` (allowed by the
    page's content security policy; ``<`` is escaped so no value can close the element).
    """
    runs = sum(1 for n in layout.nodes if n.collapsed)
    counts = f"{len(layout.nodes)} nodes, {len(layout.edges)} edges, depth {layout.depth}"
    if runs:
        counts += f", {runs} collapsed run{'s' if runs > 1 else ''} (click one to open it)"
    details = {
        n.id: {"kind": n.kind, "label": n.label, "sublabel": n.sublabel, "href": node_href(n, layout),
               "details": n.details, "collapsed": n.collapsed}
        for n in layout.nodes
    }
    data = render.to_json(details, indent=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    tools = (
        '<div class="graph-tools" role="toolbar" aria-label="graph view">'
        '<button type="button" data-zoom="fit" title="fit the whole graph (0)">fit</button>'
        '<button type="button" data-zoom="in" title="zoom in (+)">+</button>'
        '<button type="button" data-zoom="out" title="zoom out (−)">−</button>'
        '<button type="button" data-zoom="latest" title="back to the latest versions">latest</button>'
        '<span class="hint">wheel or +/− zoom, drag or arrows pan</span>'
        '<span class="legend"><span class="sw entity"></span>version <span class="sw run"></span>collapsed run '
        '<span class="sw execution"></span>execution <span class="sw failed"></span>failed '
        '<span class="sw version"></span>version chain</span></div>'
    )
    panel = '<aside class="panel" aria-live="polite"><p class="hint">Click a node to see its details here.</p></aside>'
    return (
        f'<section class="graph"><h2>lineage graph <small>{_e(counts)}</small></h2>{tools}'
        f'<div class="graph-body"><div class="graph-view" tabindex="0" aria-label="lineage graph, pan and zoom">'
        f'{to_svg(layout)}</div>{panel}</div>'
        f'<script type="application/json" id="graph-details">{data}</script></section>'
    )


# ---------------------------------------------------------------- executions
def execution_page(detail: ExecutionDetail, configs: list[VersionInfo | None]) -> str:
    """One execution: the command's ``show <execution_id>`` rows, then its configs and sibling outputs."""
    table = render.execution_detail(detail)
    for config_id, info in zip(detail.config_ids, configs):
        where = f"  {render.short_type(info.entity_type)} lineage {info.lineage_id} version {info.version}" if info else ""
        table.rows.append(("config", f"{config_id}{where}"))
    if detail.sibling_group:
        table.rows.append(("siblings", render.Lines(str(s) for s in detail.sibling_group)))
    outcome = "succeeded" if detail.succeeded else "failed"
    body = rows_html(table, css="detail " + outcome, pre_rows=("traceback",))
    return page(f"execution {detail.execution_id}", body, heading=f"{detail.function}() {outcome}")


# ---------------------------------------------------------------- entities
def tree_html(value: Any) -> str:
    """Stored data as a tree: a child entity (a dict with ``entity_type`` and ``ecs_id``) is a
    collapsible node linked to its own page; lists and dicts nest; scalars are shown as JSON."""
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if key in ("entity_type", "ecs_id") and "ecs_id" in value and "entity_type" in value:
                continue
            items.append(f'<li><span class="key">{_e(key)}</span>{_branch(item)}</li>')
        return f'<ul class="tree">{"".join(items)}</ul>'
    if isinstance(value, list):
        items = [f'<li><span class="key">{i}</span>{_branch(item)}</li>' for i, item in enumerate(value)]
        return f'<ul class="tree">{"".join(items) or "<li>(empty)</li>"}</ul>'
    return f'<span class="value">{_e(render.to_json(value, indent=False))}</span>'


def _branch(item: Any) -> str:
    if isinstance(item, dict) and "entity_type" in item and "ecs_id" in item:
        head = (
            f'<span class="type">{_e(render.short_type(str(item["entity_type"])))}</span> '
            f'<a href="/entity/{_e(item["ecs_id"])}" class="id">{_e(item["ecs_id"])}</a>'
        )
        return f"<details open><summary>{head}</summary>{tree_html(item)}</details>"
    if isinstance(item, (dict, list)):
        size = len(item)
        return f"<details open><summary>{'{' if isinstance(item, dict) else '['}{size}{'}' if isinstance(item, dict) else ']'}</summary>{tree_html(item)}</details>"
    return tree_html(item)


def entity_page(shown: Shown, around: Neighbours, head: int, erasure: Erasure | None = None) -> str:
    """One stored version as a tree, with the versions before and after it and an as-of box;
    a banner when its lineage was erased, so ``<erased>`` is never read as stored text."""
    v = shown.version
    nav = []
    if around.previous is not None:
        nav.append(f'<a rel="prev" href="/entity/{around.previous.ecs_id}">← version {around.previous.version}</a>')
    nav.append(f"<span>version {v.version} of {around.versions}</span>")
    if around.next is not None:
        nav.append(f'<a rel="next" href="/entity/{around.next.ecs_id}">version {around.next.version} →</a>')
    nav.append(f'<a href="/lineage/{v.lineage_id}">lineage and graph</a>')
    as_of = (
        f'<form class="asof" action="/entity/{v.lineage_id}" method="get"><label>as of position '
        f'<input type="number" name="position" min="0" max="{head}" value="{v.position}"></label><button>go</button></form>'
    )
    banner = ""
    if erasure is not None:
        when = render.when_text(erasure.recorded_at)
        banner = (
            f'<p class="erased banner" role="alert">The personal data of this lineage was erased at position '
            f"{erasure.position} ({_e(when)}; reason: {_e(erasure.reason or 'not recorded')}): "
            "fields shown as &lt;erased&gt; are gone for good, not stored text.</p>"
        )
    body = (
        banner + f'<p class="meta">{_version_line(v)} · lineage {linked(str(v.lineage_id))}</p>'
        f'<nav class="versions">{"".join(nav)}</nav>{as_of}'
        f'<section class="entity">{tree_html(shown.value)}</section>'
    )
    return page(f"{render.short_type(v.entity_type)} {v.ecs_id}", body)


# ---------------------------------------------------------------- sql
def sql_page(
    query: str,
    limit: int,
    columns: Sequence[str] | None = None,
    rows: Sequence[Sequence[Any]] | None = None,
    total: int | None = None,
    error: str | None = None,
) -> str:
    """The query box, then the first ``limit`` rows of the result, or the error that refused it."""
    form = (
        '<form class="sql" action="/sql" method="get">'
        f'<textarea name="q" rows="4" spellcheck="false" aria-label="query">{_e(query)}</textarea>'
        f'<label>rows <input type="number" name="limit" min="1" max="10000" value="{limit}"></label>'
        '<button>run</button> <span class="hint">read-only DuckDB SQL; SHOW TABLES lists the tables; '
        'add &amp;format=json to the address for JSON</span></form>'
    )
    out = [form]
    if error is not None:
        out.append(f'<p class="error">{_e(error)}</p>')
    elif columns is not None and rows is not None:
        out.append(rows_html(render.rows_table(columns, rows), css="sql"))
        if total is not None and total > len(rows):
            out.append(f'<p class="note">{len(rows):,} of {total:,} rows shown</p>')
    return page("sql", "".join(out))


# ---------------------------------------------------------------- ways in
def _link_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], links: dict[str, str], css: str = "browse") -> str:
    """Rows as a table whose cells in ``links``'s columns link to ``links[column].format(value)``;
    every other cell as ``rows_html`` shows it (ids linked, times in a span)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column, value in zip(columns, row):
            if column in links and value is not None:
                href = links[column].format(quote(str(value), safe=""))
                cells.append(f'<td><a href="{_e(href)}">{_e(render.cell(value))}</a></td>')
            else:
                cells.append(f"<td>{_cell(value)}</td>")
        cls = ' class="failed"' if "failed" in row else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (f'<div class="hscroll"><table class="{_e(css)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def functions_page(found: Any) -> str:
    """Every function in the log, each linking to its runs."""
    note = f'<p class="note">{_e(found.note)}</p>' if found.note else ""
    table = _link_table(found.columns, found.rows, {"function": "/executions?function={}"}) if found.rows else '<p class="empty">no executions in this log</p>'
    return page("functions", note + table)


def executions_page(found: Any, filters: dict[str, str], page_no: int, per_page: int) -> str:
    """One page of runs, newest first, with the filters and links to the pages before and after."""
    fields = "".join(
        f'<label>{name} <input name="{name}" value="{_e(filters.get(name, ""))}" placeholder="{_e(hint)}"></label>'
        for name, hint in (("function", "glob, e.g. school.*"), ("status", "succeeded or failed"), ("actor", "who ran it"))
    )
    form = f'<form class="filters" action="/executions" method="get">{fields}<button>filter</button> <a href="/executions">clear</a></form>'
    out = [form]
    if found.note:
        out.append(f'<p class="note">{_e(found.note)}</p>')
    if not found.rows:
        out.append('<p class="empty">no executions match</p>')
    else:
        first = (page_no - 1) * per_page + 1
        out.append(f'<p class="meta">runs {first:,}–{first + len(found.rows) - 1:,} of {found.total:,}, newest first</p>')
        out.append(_link_table(found.columns, found.rows, {"function_name": "/executions?function={}", "execution_id": "/execution/{}"},
                               css="runs"))
    keep = {k: v for k, v in filters.items() if v}
    pager = []
    if page_no > 1:
        pager.append(f'<a rel="prev" href="/executions?{_e(urlencode(keep | {"page": page_no - 1}))}">← newer</a>')
    if page_no * per_page < found.total:
        pager.append(f'<a rel="next" href="/executions?{_e(urlencode(keep | {"page": page_no + 1}))}">older →</a>')
    if pager:
        out.append(f'<p class="pager">{" · ".join(pager)}</p>')
    return page("runs", "".join(out))


def entities_page(types: Any, entity_type: str | None = None, lineages: Any = None) -> str:
    """Entity types with their counts; with a type, its lineages, each linking to its page."""
    out = [_link_table(types.columns, types.rows, {"entity_type": "/entities?type={}"})]
    if entity_type is not None and lineages is not None:
        shown = f"{len(lineages.rows):,} of {lineages.total:,}" if lineages.total > len(lineages.rows) else f"{lineages.total:,}"
        out.append(f"<h2>lineages of {_e(render.short_type(entity_type))} <small>{shown}, latest change first</small></h2>")
        out.append(_link_table(lineages.columns, lineages.rows, {"lineage_id": "/lineage/{}"}))
    return page("entities", "".join(out))


def tables_html(listing: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """The analytics tables and their columns (what a query can read), each a click away from its first rows."""
    items = []
    for table, columns in listing:
        cols = ", ".join(f'<span class="col">{_e(c)}</span> <small>{_e(t.lower())}</small>' for c, t in columns)
        href = "/sql?" + urlencode({"q": f"SELECT * FROM {table} LIMIT 50"})
        items.append(f'<li><a href="{_e(href)}"><strong>{_e(table)}</strong></a>: {cols}</li>')
    return f'<section class="tables"><h2>tables <small>{len(listing)}</small></h2><ul>{"".join(items)}</ul></section>'

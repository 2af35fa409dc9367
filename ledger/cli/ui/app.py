"""The web page's server: a Starlette app over one read-only ledger reader.

``create_app(reader)`` serves the pages of ``ledger.cli.ui.pages`` from a reader the
command opened with ``create=False`` (a ``StoredReader``, or a ``Ledger`` that
replayed the log): the same reads as ``ledger log``, ``show``, ``history``,
``lineage`` and ``sql``, through ``projections.audit`` and ``Ledger.sql``'s
read-only analytics. Nothing here can write: only ``GET`` and ``HEAD`` are served
(anything else answers 405 before a route runs), the SQL page goes through the
same read-only check as ``ledger sql``, and the reader never opens the store for
writing.

One reader serves every request, one request at a time (a lock): the reader's
caches and DuckDB connection are not shared across threads, and a local page for
one auditor gains nothing from running two reads at once. The SQL page's query is
the exception: it is bound under the lock but runs outside it, on a DuckDB cursor of
its own, and is interrupted after ``sql_time_limit`` seconds, so a heavy query
neither blocks the other pages nor runs for hours.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import ledger.cli.render as render
from ledger.cli.parsing import log_bound
from ledger.cli.ui import browse, pages
from ledger.cli.ui.layout import LayoutCache, LayoutUnavailable, lineage_layout, parse_expand
from ledger.errors import AddressError, EntityNotFoundError, LedgerError
from projections import audit
from projections.readonly import one_line

__all__ = ["DEFAULT_SQL_LIMIT", "LOCAL_HOSTS", "SQL_TIME_LIMIT_S", "OnlyGet", "create_app"]

STATIC = Path(__file__).resolve().parent / "static"
#: Rows the SQL page shows unless asked for fewer (at most ``MAX_SQL_LIMIT``).
DEFAULT_SQL_LIMIT = 200
MAX_SQL_LIMIT = 10_000
#: Seconds a query of the SQL page may run before it is interrupted (a cross join would run for hours).
SQL_TIME_LIMIT_S = 30.0
DEFAULT_LOG_LIMIT = 50
DEFAULT_DEPTH = 2
#: Host headers accepted when serving on the loopback address: a page of another site
#: that points its own name at 127.0.0.1 (DNS rebinding) is refused.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_SECURITY_HEADERS = [
    # no inline script or style, nothing from elsewhere: markup that slipped through escaping still cannot run
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class PageError(LedgerError):
    """A query parameter of a page was wrong (a position that is not a number, a negative depth)."""


class OnlyGet:
    """ASGI middleware: ``GET`` and ``HEAD`` go on; any other method answers 405 before routing.

    Also adds the security headers to every response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + _SECURITY_HEADERS
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            text = pages.error_page(405, f"{scope['method']} is not served: this page only reads (GET).")
            response = HTMLResponse(text, status_code=405, headers={"Allow": "GET, HEAD"})
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _status(exc: Exception) -> int:
    return 404 if isinstance(exc, (EntityNotFoundError, AddressError, LookupError)) else 400


def _int(request: Request, name: str, default: int | None, *, low: int = 0, high: int | None = None) -> int | None:
    text = request.query_params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise PageError(f"{name}: {text!r:.40} is not a whole number") from None
    if value < low or (high is not None and value > high):
        raise PageError(f"{name}: {value} is out of range ({low}..{high if high is not None else ''})")
    return value


def create_app(
    reader: Any, *, allowed_hosts: list[str] | None = None, sql_time_limit: float = SQL_TIME_LIMIT_S
) -> Starlette:
    """The app over ``reader`` (``StoredReader`` or ``Ledger``, opened read-only by the caller, who closes it).

    ``allowed_hosts`` are the Host headers served (default: any; ``serve`` passes
    ``LOCAL_HOSTS`` when it listens on the loopback address). A query of the SQL page is
    interrupted after ``sql_time_limit`` seconds.
    """
    lock = threading.Lock()
    # a StoredReader caches "not erased" answers; a server lives long enough for them to go stale
    forget = getattr(reader, "forget_changeable", lambda: None)

    def view(render_page: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """A route: one read at a time; a ``LedgerError`` is a 404 page (unknown or ambiguous id) or 400."""

        def endpoint(request: Request) -> Response:
            try:
                with lock:
                    forget()
                    return render_page(request)
            except (LedgerError, ValueError) as exc:
                status = _status(exc)
                return HTMLResponse(pages.error_page(status, one_line(exc)), status_code=status)

        return endpoint

    def log(request: Request) -> Response:
        q = request.query_params
        filters = {name: q.get(name, "").strip() for name in pages.LOG_FILTERS}
        limit = _int(request, "limit", DEFAULT_LOG_LIMIT, low=1, high=1000) or DEFAULT_LOG_LIMIT
        lineage = audit.lineage_of(reader, filters["entity"], "entity") if filters["entity"] else None
        entries = audit.recent_events(
            reader,
            limit=limit,
            event_type=filters["type"] or None,
            function=filters["function"] or None,
            since=log_bound(filters["since"] or None, "since"),
            until=log_bound(filters["until"] or None, "until"),
            lineage=lineage,
        )
        return HTMLResponse(pages.log_page(entries, filters, limit))

    layouts = LayoutCache()

    def lineage_view(request: Request) -> tuple[Any, ...]:
        """What a lineage page and its ``layout.json`` share: the versions, the erasure, and the
        layout (or why there is none: not recorded yet, or no ``dot`` to lay it out)."""
        lineage_id = audit.lineage_of(reader, request.path_params["ref"], "lineage_id")
        head = audit.head(reader)
        position = _int(request, "position", None)
        depth = _int(request, "depth", DEFAULT_DEPTH, high=50) or 0
        rows = audit.history(reader, lineage_id)
        expand = parse_expand(request.query_params.getlist("expand"), len(rows))
        erased = audit.erasure(reader, lineage_id)
        if position is not None and position < rows[0].version.position:
            missing = f"lineage {lineage_id} did not exist yet at position {position} (first recorded at {rows[0].version.position})"
            return lineage_id, head, position, depth, rows, erased, None, missing
        key = (str(lineage_id), depth, position, expand, head)
        try:
            made = layouts.get(key, lambda: lineage_layout(
                reader, str(lineage_id), rows, depth=depth, position=position, expand=expand, erasure=erased))
        except LayoutUnavailable as exc:
            return lineage_id, head, position, depth, rows, erased, None, one_line(exc)
        return lineage_id, head, position, depth, rows, erased, made, None

    def lineage(request: Request) -> Response:
        _, head, position, depth, rows, erased, made, missing = lineage_view(request)
        html = pages.lineage_page(rows, erased, made, position=position, head=head, depth=depth, missing=missing)
        return HTMLResponse(html)

    def lineage_json(request: Request) -> Response:
        try:
            _, _, _, _, _, _, made, missing = lineage_view(request)
        except (LedgerError, ValueError) as exc:
            return _json({"error": one_line(exc)}, _status(exc))
        if made is None:
            return _json({"error": missing}, 503 if "graphviz" in (missing or "") else 404)
        return _json(made.to_json(), 200)

    def execution(request: Request) -> Response:
        detail = audit.execution(reader, request.path_params["ref"])
        if detail is None:
            ref = request.path_params["ref"]
            raise EntityNotFoundError(f"execution_id: {ref!r:.80} names no execution (try /id/{quote(ref)})")
        configs = [_version_or_none(reader, c) for c in detail.config_ids]
        return HTMLResponse(pages.execution_page(detail, configs))

    def entity(request: Request) -> Response:
        ref = request.path_params["ref"]
        position = _int(request, "position", None)
        if position is not None:  # as-of navigation: the version current then, on its own page
            found = audit.as_of(reader, audit.lineage_of(reader, ref, "ecs_id"), position=position, argument="ecs_id")
            if found.version is None:
                raise EntityNotFoundError(
                    f"position: lineage {found.lineage_id} did not exist yet at position {position} "
                    f"(first recorded at {found.first_position})"
                )
            return RedirectResponse(f"/entity/{found.version.ecs_id}", status_code=303)
        shown = audit.show(reader, "@" + ref.lstrip("@"), argument="ecs_id")
        around = audit.neighbours(reader, shown.version.ecs_id)
        erased = audit.erasure(reader, shown.version.lineage_id)
        return HTMLResponse(pages.entity_page(shown, around, audit.head(reader), erased))

    def by_id(request: Request) -> Response:
        """Any id (or prefix) to the page for its kind: an execution, a lineage, or one version."""
        ref = request.path_params.get("ref") or request.query_params.get("ref", "")
        uuid = audit.resolve_id(reader, ref, "id")
        if audit.execution(reader, uuid) is not None:
            return RedirectResponse(f"/execution/{uuid}", status_code=303)
        lineage_id = audit.lineage_of(reader, uuid, "id")
        return RedirectResponse(f"/lineage/{uuid}" if lineage_id == uuid else f"/entity/{uuid}", status_code=303)

    def sql(request: Request) -> Response:
        """Not one of the ``view`` routes: the query runs outside the lock, so pages keep answering."""
        query = request.query_params.get("q", "").strip()
        try:
            limit = _int(request, "limit", DEFAULT_SQL_LIMIT, low=1, high=MAX_SQL_LIMIT) or DEFAULT_SQL_LIMIT
        except PageError as exc:
            return HTMLResponse(pages.error_page(400, one_line(exc)), status_code=400)
        as_json = request.query_params.get("format", "html") == "json"
        if not query:
            if as_json:
                return _json({"error": "q: give a query"}, 400)
            with lock:  # the listing reads the analytics tables: with the other reads
                forget()
                listing = pages.tables_html(browse.tables(reader))
            return HTMLResponse(pages.sql_page("SHOW TABLES", limit).replace("</main>", listing + "</main>"))
        try:
            with lock:  # checked, caught up and bound with the other reads ...
                forget()
                fetch = reader.analytics.start_page(query, None, limit, time_limit=sql_time_limit)
            result = fetch()  # ... and run beside them, on its own cursor, interrupted at the time limit
        except (LedgerError, duckdb.Error) as exc:  # ReadOnlyError included: shown, nothing changed
            if as_json:
                return _json({"error": one_line(exc)}, 400)
            return HTMLResponse(pages.sql_page(query, limit, error=one_line(exc)), status_code=400)
        if as_json:
            return Response(render.rows_as_json(result.columns, result.rows), media_type="application/json")
        return HTMLResponse(pages.sql_page(query, limit, result.columns, result.rows, result.total))

    def functions(request: Request) -> Response:
        return HTMLResponse(pages.functions_page(browse.functions(reader)))

    def executions(request: Request) -> Response:
        q = request.query_params
        filters = {name: q.get(name, "").strip() for name in ("function", "status", "actor")}
        page_no = _int(request, "page", 1, low=1, high=1_000_000) or 1
        found = browse.executions(reader, page=page_no, **filters)
        return HTMLResponse(pages.executions_page(found, filters, page_no, browse.EXECUTION_PAGE))

    def entities(request: Request) -> Response:
        entity_type = request.query_params.get("type", "").strip() or None
        types = browse.entity_types(reader)
        lineages = None
        if entity_type is not None:
            if entity_type not in {str(r[0]) for r in types.rows}:
                raise EntityNotFoundError(f"type: {entity_type!r:.80} is no entity type in this log")
            lineages = browse.lineages_of_type(reader, entity_type)
        return HTMLResponse(pages.entities_page(types, entity_type, lineages))

    async def not_found(request: Request, exc: Exception) -> Response:
        return HTMLResponse(pages.error_page(404, f"no page at {request.url.path}"), status_code=404)

    routes = [
        Route("/", view(log), methods=["GET"]),
        Route("/lineage/{ref}/layout.json", view(lineage_json), methods=["GET"]),
        Route("/lineage/{ref}", view(lineage), methods=["GET"]),
        Route("/execution/{ref}", view(execution), methods=["GET"]),
        Route("/entity/{ref}", view(entity), methods=["GET"]),
        Route("/id", view(by_id), methods=["GET"]),
        Route("/id/{ref}", view(by_id), methods=["GET"]),
        Route("/sql", sql, methods=["GET"]),
        Route("/functions", view(functions), methods=["GET"]),
        Route("/executions", view(executions), methods=["GET"]),
        Route("/entities", view(entities), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(OnlyGet)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found})


def _version_or_none(reader: Any, ecs_id: Any) -> Any:
    try:
        return audit.show(reader, f"@{ecs_id}", argument="config").version
    except LedgerError:
        return None


def _json(value: Any, status: int) -> Response:
    return Response(render.to_json(value), status_code=status, media_type="application/json")

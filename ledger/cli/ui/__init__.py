"""``ledger ui``: a read-only local web page over a store (log, lineages, executions, entities, SQL).

``create_app`` builds the Starlette app over a reader opened with ``create=False``;
``serve`` runs it on uvicorn until interrupted. Every asset (CSS, the few lines of
JavaScript for the position slider) ships in ``static/``: the page needs no network.
"""

from __future__ import annotations

import signal
from typing import Any

from ledger.cli.ui.app import LOCAL_HOSTS, create_app

__all__ = ["create_app", "serve"]


def serve(reader: Any, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve ``reader``'s pages on ``host:port`` until interrupted (Ctrl-C).

    On the loopback address only ``localhost``-style Host headers are answered, so a
    web page elsewhere cannot read the ledger through a name it points at 127.0.0.1.

    Stopped by SIGINT or SIGTERM, it returns normally, so the caller closes the
    reader: uvicorn re-raises the signal it caught once it has shut down, and a
    SIGTERM left to its default action would end the process before the store's
    connections are closed (leaving a WAL store's ``-wal`` and ``-shm`` files behind).
    """
    import uvicorn

    loopback = host in ("127.0.0.1", "localhost", "::1")
    app = create_app(reader, allowed_hosts=list(LOCAL_HOSTS) if loopback else None)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, re-raised by uvicorn after its shutdown
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt

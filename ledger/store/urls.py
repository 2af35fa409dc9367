"""Store URLs: ``memory://``, ``sqlite:///path.db`` and ``postgresql://user@host:port/db``,
parsed and checked before anything is opened.

A bad URL is refused here with ``StoreURLError`` naming it, so no backend ever sees one; the
backends read their settings (path, ``synchronous``, host, schema) from the ``StoreURL``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from ledger.errors import StoreURLError

__all__ = ["StoreURL", "parse_store_url"]

_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}
# A schema name goes unquoted into SQL the eventsourcing library builds as text
# (its type lookup), where PostgreSQL folds it to lower case: only names that
# need no quoting at all are safe everywhere.
_PLAIN_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class StoreURL:
    kind: str  # "memory" | "sqlite" | "postgresql"
    url: str
    path: str = ""
    options: dict[str, str] = field(default_factory=dict)
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""


def parse_store_url(url: str) -> StoreURL:
    """Parse and check a store URL; a bad one raises ``StoreURLError`` naming it."""
    if not isinstance(url, str) or "://" not in url:
        raise StoreURLError(
            f"url {url!r} is not a store URL; use memory://, sqlite:///file.db "
            "or postgresql://user@host:5432/dbname"
        )
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest not in ("", "/"):
            raise StoreURLError(f"url {url!r}: memory:// takes no path")
        return StoreURL("memory", url)
    if scheme == "sqlite":
        path, _, query = rest.partition("?")
        if not path.startswith("/") or len(path) < 2:
            raise StoreURLError(
                f"url {url!r}: expected sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = unquote(path[1:])
        options = {k.lower(): v[-1] for k, v in parse_qs(query).items()}
        sync = options.get("synchronous", "NORMAL").upper()
        if sync not in _SYNCHRONOUS:
            raise StoreURLError(f"url {url!r}: synchronous must be one of {sorted(_SYNCHRONOUS)}")
        options["synchronous"] = sync
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise StoreURLError(f"url {url!r}: unknown option(s) {sorted(unknown)}")
        return StoreURL("sqlite", url, path=path, options=options)
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(url)
        dbname = parts.path.lstrip("/")
        if not parts.hostname or not dbname:
            raise StoreURLError(
                f"url {url!r}: expected postgresql://user@host:port/dbname"
            )
        try:
            port = parts.port or 5432
        except ValueError:
            raise StoreURLError(f"url {url!r}: the port is not a number") from None
        options = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"schema"}
        if unknown:
            raise StoreURLError(f"url {url!r}: unknown option(s) {sorted(unknown)}")
        schema = options.get("schema")
        if schema is not None and not _PLAIN_SCHEMA.fullmatch(schema):
            raise StoreURLError(
                f"url {url!r}: schema {schema!r} is not a plain identifier "
                "(lower-case letters, digits and _, not starting with a digit, at most 63 characters)"
            )
        return StoreURL(
            "postgresql",
            url,
            options=options,
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or os.environ.get("PGUSER", "postgres")),
            password=unquote(parts.password or os.environ.get("PGPASSWORD", "")),
            dbname=dbname,
        )
    raise StoreURLError(
        f"url {url!r}: unknown scheme {scheme!r}; use memory://, sqlite:/// or postgresql://"
    )

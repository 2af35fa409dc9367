"""ledger/store/urls.py: store URLs are parsed and refused with a ``StoreURLError`` naming the URL (bad
schemes, options, paths, ports), an unreachable server is a ``StoreError``, and a closed ledger refuses work."""

from __future__ import annotations

import pytest

from ledger import Ledger
from ledger.errors import StoreError, StoreURLError

from .models import Grade


class TestURLs:
    @pytest.mark.parametrize(
        "url, fragment",
        [
            ("nope", "not a store URL"),
            ("mysql://x/y", "unknown scheme 'mysql'"),
            ("sqlite://relative.db", "expected sqlite:///"),
            ("sqlite:///x.db?synchronous=SOMETIMES", "synchronous must be"),
            ("sqlite:///x.db?journal=1", "unknown option"),
            ("postgresql://localhost", "expected postgresql://user@host:port/dbname"),
            ("postgresql://u@h:notaport/db", "port is not a number"),
            ("sqlite:////no/such/dir/x.db", "does not exist"),
        ],
    )
    def test_bad_urls_raise_store_url_error_naming_the_url(self, url, fragment) -> None:
        with pytest.raises(StoreURLError, match=fragment) as info:
            Ledger(url)
        assert repr(url) in str(info.value) and isinstance(info.value, ValueError)

    def test_unreachable_postgres_is_a_store_error(self) -> None:
        with pytest.raises(StoreError, match="cannot connect"):
            Ledger("postgresql://postgres@127.0.0.1:1/test")

    def test_closed_ledger_refuses_work(self, tmp_path) -> None:
        from ledger.errors import LedgerClosedError

        lg = Ledger(f"sqlite:///{tmp_path / 'c.db'}")
        lg.close()
        with pytest.raises(LedgerClosedError):
            lg.registry.register_entity(Grade(course="x", score=1))

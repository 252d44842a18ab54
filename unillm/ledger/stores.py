"""`open_store(url)`: the store a ledger URL names.

Apart from `store` (the protocol both backends implement) so that the backends can import
the protocol and this module can import the backends, without a circle.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import errors
from .store import LedgerStore, NullStore
from .urls import redact, sqlite_url


def default_path() -> Path:
    """``$UNILLM_HOME/ledger.db``, else ``ledger.db`` in the platform's user data dir."""
    home = os.environ.get("UNILLM_HOME")
    if home:
        return Path(home) / "ledger.db"
    import platformdirs
    return Path(platformdirs.user_data_dir("unillm")) / "ledger.db"


def open_store(url: str | None = None, *, create: bool = True) -> LedgerStore:
    """The store a ledger URL names.

    ``None`` → the default SQLite file (see `default_path`); ``"off"`` → `NullStore`;
    ``sqlite:///ABSOLUTE/PATH.db`` (``sqlite:///:memory:`` for a private in-memory
    ledger); query options ``?synchronous=full`` and ``?timeout=SECONDS``;
    ``postgresql://USER@HOST:PORT/DB`` for a ledger shared by many hosts (see `postgres`).
    ``create=False`` (readers: summaries, exports) refuses an SQLite file that does not
    exist, so a mistyped path is an error rather than a new, empty ledger.
    """
    if url is None:
        from .sqlite import SQLiteStore
        if not create and not default_path().exists():
            raise errors.ConfigError(f"no ledger yet at {default_path()} (nothing has been recorded)",
                                     key="ledger")
        return SQLiteStore(default_path())
    if not isinstance(url, str) or not url.strip():
        raise errors.ConfigError("ledger must be a URL such as sqlite:///path/ledger.db or \"off\"",
                                 key="ledger")
    if url.strip().lower() == "off":
        return NullStore()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from .sqlite import SQLiteStore
        url = sqlite_url(url, create=create)
        if not create:
            path = SQLiteStore.path_of(url)
            if path != ":memory:" and not Path(path).exists():
                raise errors.ConfigError(f"no ledger at {path}", key="ledger", value=redact(url))
        return SQLiteStore.from_url(url)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        from .postgres import PostgresStore
        return PostgresStore.from_url(url.strip())
    raise errors.ConfigError(
        f"unknown ledger URL scheme {scheme!r}: use sqlite:///PATH.db, postgresql://USER@HOST/DB, "
        f"\"off\", or omit it for the default file", key="ledger", value=redact(url))

"""The store protocol, the SQL dialect seam, and `open_store(url)`.

A store keeps `CallRecord` rows durably and answers queries over them. SQL is
written once, portably (``?`` placeholders, standard aggregates and window
functions); what differs between SQLite and PostgreSQL lives in a `Dialect`
subclass, one per backend: the serial key type, date bucketing and tag lookup.

Budgets (a later issue) keep their tables in the same database, added by
migrations, and settle a call as one transaction with its ledger row::

    with store.transaction() as tx:
        tx.execute("UPDATE budget_counters SET spent_nano = spent_nano + ? ...", (...))
        tx.record(rec)
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from .. import errors
from ..offload import Offload, Offloaded
from .records import CallRecord

Where = Mapping[str, Any]
T = TypeVar("T")


class Dialect:
    """Portable SQL pieces; a backend overrides what its SQL spells differently.

    Statements use ``?`` placeholders throughout; a driver with another
    paramstyle (psycopg's ``%s``) translates them in its store's ``execute``.
    """

    name = "sql"
    serial_pk = "BIGSERIAL PRIMARY KEY"     # the insertion-order cursor used by `tail`
    float_type = "DOUBLE PRECISION"
    for_update = ""                         # row lock suffix; SQLite's BEGIN IMMEDIATE already serialises

    def bucket(self, unit: str, column: str) -> str:
        """SQL for the ``day``/``hour``/``week``/``month`` label of an ISO-text timestamp.

        Labels: ``2025-01-31``, ``2025-01-31T14``, ``2025-01-27`` (the Monday), ``2025-01``.
        """
        widths = {"hour": 13, "day": 10, "month": 7}
        if unit in widths:
            return f"substr({column}, 1, {widths[unit]})"
        raise NotImplementedError(unit)

    def collect(self, column: str) -> str:
        """SQL aggregate: the group's non-null values of a numeric column, comma-separated."""
        return f"string_agg(CAST({column} AS TEXT), ',')"

    def tag(self, column: str) -> str:
        """SQL taking one bound parameter (the tag's name) and giving the tag's value."""
        raise NotImplementedError

    def tag_param(self, name: str) -> str:
        return name


@runtime_checkable
class Transaction(Protocol):
    """One open transaction: ledger rows and any other statement commit together."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def record(self, rec: CallRecord) -> None: ...


@runtime_checkable
class LedgerStore(Protocol):
    """Where records live. ``record`` is durable when it returns."""

    url: str
    dialect: Dialect

    def record(self, rec: CallRecord) -> None: ...

    def record_many(self, recs: Sequence[CallRecord]) -> None: ...

    def records(self, since: datetime | None = None, until: datetime | None = None,
                where: Where | None = None, limit: int | None = None) -> Iterator[CallRecord]: ...

    def ranked(self, order: Literal["cost", "recent"], since: datetime | None = None,
               until: datetime | None = None, where: Where | None = None,
               limit: int = 10) -> list[CallRecord]: ...

    def by_ids(self, ids: Sequence[str]) -> dict[str, CallRecord]: ...

    def copy_in(self, recs: Sequence[CallRecord]) -> int: ...

    def tail(self, after: int | None = None, limit: int = 1000) -> tuple[list[CallRecord], int]: ...

    def last_cursor(self) -> int: ...

    def summary(self, by: Sequence[str] = (), since: datetime | None = None,
                until: datetime | None = None,
                where: Where | None = None, retries: bool = True) -> list[dict[str, Any]]: ...

    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def arun(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """``await store.arun(fn, *args)``: ``fn(*args)`` (this store's blocking work, a
        transaction say) on one of the store's threads, off the caller's event loop."""

    def close(self) -> None:
        """Close the database (and its pool) and stop the store's threads."""


class NullStore(Offloaded):
    """``ledger = "off"``: records nothing, answers every query with nothing (its threads
    still serve an async caller's other blocking steps, a cache store say)."""

    url = "off"
    dialect = Dialect()

    def __init__(self) -> None:
        self.io = Offload("unillm-io")

    def record(self, rec: CallRecord) -> None:
        return None

    def record_many(self, recs: Sequence[CallRecord]) -> None:
        return None

    def records(self, since: datetime | None = None, until: datetime | None = None,
                where: Where | None = None, limit: int | None = None) -> Iterator[CallRecord]:
        return iter(())

    def ranked(self, order: Literal["cost", "recent"], since: datetime | None = None,
               until: datetime | None = None, where: Where | None = None,
               limit: int = 10) -> list[CallRecord]:
        return []

    def by_ids(self, ids: Sequence[str]) -> dict[str, CallRecord]:
        return {}

    def copy_in(self, recs: Sequence[CallRecord]) -> int:
        raise errors.ConfigError("the ledger is off (ledger = \"off\"): there is nowhere to copy "
                                 "records to", key="ledger")

    def tail(self, after: int | None = None, limit: int = 1000) -> tuple[list[CallRecord], int]:
        return [], after or 0

    def last_cursor(self) -> int:
        return 0

    def summary(self, by: Sequence[str] = (), since: datetime | None = None,
                until: datetime | None = None, where: Where | None = None,
                retries: bool = True) -> list[dict[str, Any]]:
        return []

    def transaction(self) -> AbstractContextManager[Transaction]:
        raise errors.ConfigError("the ledger is off (ledger = \"off\"): there is no store to "
                                 "write budgets to", key="ledger")

    def close(self) -> None:
        self.io.close()


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


def sqlite_url(url: str, *, base: str | Path | None = None, create: bool = False, check: bool = False) -> str:
    """``url`` as ``sqlite:///ABSOLUTE/PATH``: ``sqlite:relative/path`` is relative to ``base``
    (the config file's directory; else the cwd). ``create`` makes missing directories and
    ``check`` (at config load) only looks: a directory that cannot hold the file is a
    `ConfigError` naming ``ledger``.

    ``sqlite:/x`` (one slash) is refused rather than guessed: RFC 8089 reads it as the
    absolute ``/x``, a newcomer as relative ``x``.
    """
    if "\x00" in url:
        raise errors.ConfigError("the ledger URL contains a NUL byte", key="ledger", value=redact(url))
    head, _, query = url.partition("?")
    rest = head.split(":", 1)[1]
    if rest.startswith("/") and not rest.startswith("//"):
        raise errors.ConfigError(
            f"ambiguous SQLite URL: write 'sqlite:///{rest.lstrip('/')}' for the absolute path "
            f"{rest} or 'sqlite:{rest.lstrip('/')}' for a path relative to the config file",
            key="ledger", value=redact(url))
    if rest in (":memory:", "///:memory:"):
        return "sqlite:///:memory:" + (f"?{query}" if query else "")
    if rest.startswith("///") and rest.strip("/"):
        path = "/" + rest.lstrip("/")            # absolute (a fourth slash tolerated)
    elif rest.startswith("/") or not rest:
        return url                               # a host, or no path: the store says what is wrong
    else:
        path = str(Path(base or ".").joinpath(rest).resolve())
    target = Path(path).parent
    try:
        if create:
            target.mkdir(parents=True, exist_ok=True)
            _writable_dir(target)
        elif check:
            _writable_dir(target)
    except OSError as exc:
        raise errors.ConfigError(f"cannot use {target} for the ledger: "
                                 f"{exc.strerror or exc}", key="ledger", value=redact(url)) from None
    return "sqlite:///" + path.lstrip("/") + (f"?{query}" if query else "")


def _writable_dir(path: Path) -> None:
    """``path``, or its nearest existing parent, is a directory this process may write in."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(probe))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(13, f"{probe} is not writable", str(probe))


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = f"{parts.username}:***" if parts.username else "***"
    return parts._replace(netloc=f"{userinfo}@{netloc[-1]}").geturl()

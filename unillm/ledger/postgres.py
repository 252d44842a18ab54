"""The shared store: a PostgreSQL database, for many processes on many hosts.

``ledger = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?pool_max=10&pool_timeout=30]"``;
any other query option (``sslmode``, ``application_name``, ``connect_timeout``...) goes
to libpq as is. psycopg 3 and psycopg_pool are imported on first use
(``pip install 'unillm[postgres]'``).

Same schema, same migrations, same rows as SQLite (`rows`): money is exact decimal
text plus ``(nano, atto)`` BIGINT pairs, so a summary here equals the SQLite
summary of the same records to the last digit. What PostgreSQL spells differently
is in `PostgresDialect`; statements are written with ``?`` and translated to
psycopg's ``%s`` here (`pyformat`).

Concurrency: a connection pool (autocommit connections) shared by the threads of
a process; a forked child builds its own pool on first use and never touches the
parent's connections. `transaction` holds one pooled connection in one database
transaction, and nested use on the same thread joins it. Migrations take
``pg_advisory_xact_lock`` first, so processes opening a fresh database at once
apply each migration exactly once.

``tail`` follows ``seq`` (a sequence): under concurrent writers a row may commit
after a row with a higher ``seq``, so a follower polling at that instant can miss
it; summaries and exports are exact regardless.

Passwords never appear in errors or reprs: URLs are redacted and driver messages
scrubbed before they leave this module.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from .. import errors
from ..offload import Offload, Offloaded
from . import summary as summary_sql
from .migrations import MIGRATIONS, MIGRATIONS_TABLE, Migration, migrate
from .reads import SQLReads
from .records import CallRecord
from .rows import INSERT_SQL, to_row
from .store import Dialect
from .urls import redact

#: key of the advisory lock serialising migrations (any fixed 64-bit number)
MIGRATION_LOCK = 0x756E696C6C6D  # "unillm"
_OPTIONS = {"pool_min": 1, "pool_max": 10, "pool_timeout": 30.0}
#: pooled connections idle longer than this are checked before use
IDLE_CHECK_SECONDS = 2.0


def _require(module: str) -> Any:
    """Import psycopg (or psycopg_pool), or fail with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise errors.MissingDependencyError(module, "postgres") from exc


class PostgresDialect(Dialect):
    name = "postgresql"
    serial_pk = "BIGSERIAL PRIMARY KEY"
    float_type = "DOUBLE PRECISION"
    for_update = " FOR UPDATE"

    def bucket(self, unit: str, column: str) -> str:
        if unit == "week":  # the Monday on or before the day, as YYYY-MM-DD text
            return (f"to_char(date_trunc('week', CAST(substr({column}, 1, 10) AS date)), "
                    f"'YYYY-MM-DD')")
        return super().bucket(unit, column)

    def tag(self, column: str) -> str:
        return f"(CAST({column} AS jsonb) ->> CAST(? AS TEXT))"


@functools.lru_cache(maxsize=512)
def pyformat(sql: str) -> str:
    """``?`` placeholders -> ``%s`` (and literal ``%`` -> ``%%``), quoted text left alone."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append("%%" if ch == "%" else ch)
    return "".join(out)


def _secrets(url: str) -> list[str]:
    """The password(s) a URL carries, in the forms they may be echoed in."""
    parts = urlsplit(url)
    found = [parts.password or ""]
    found += [v for k, v in parse_qsl(parts.query) if k == "password"]
    out = {s for p in found if p for s in (p, unquote(p))}
    return sorted(out, key=len, reverse=True)


def _integral(row: Sequence[Any]) -> tuple[Any, ...]:
    """PostgreSQL's SUM(bigint) is NUMERIC: back to int, as SQLite gives it."""
    return tuple(int(v) if isinstance(v, Decimal) else v for v in row)


_last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _mark_used(conn: Any) -> None:
    """Pool ``reset`` hook: remember when a connection was last handed back."""
    _last_used[conn] = time.monotonic()


def _check_if_idle(conn: Any) -> None:
    """Pool ``check`` hook: a connection idle for a while (the server may have restarted
    since) is pinged before use; a busy one costs nothing extra. A dead one is replaced."""
    if time.monotonic() - _last_used.get(conn, 0.0) > IDLE_CHECK_SECONDS:
        conn.execute("")


class _Tx:
    """A `unillm.ledger.store.Transaction` over one pooled psycopg connection."""

    dialect = PostgresDialect()

    def __init__(self, conn: Any) -> None:
        self.connection = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.connection.execute(pyformat(sql), tuple(params))

    def record(self, rec: CallRecord) -> None:
        self.connection.execute(pyformat(INSERT_SQL), to_row(rec))


class PostgresStore(SQLReads, Offloaded):
    """`unillm.ledger.store.LedgerStore` on a PostgreSQL database."""

    dialect = PostgresDialect()

    def __init__(self, url: str, *, pool_min: int = 1, pool_max: int = 10,
                 pool_timeout: float = 30.0,
                 migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self._psycopg = _require("psycopg")
        self._conninfo = url
        self._secrets = _secrets(url)
        self.url = self._scrub(redact(url))
        self.pool_min, self.pool_max, self.pool_timeout = pool_min, pool_max, pool_timeout
        self._pool_obj: Any = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        self.io = Offload("unillm-ledger", max(pool_max, 1))  # async callers: a thread per connection
        self._local = threading.local()
        self._migrate(migrations)

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """``postgresql://USER@HOST:PORT/DB?pool_max=10&pool_timeout=30&sslmode=...``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower().split("+", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise errors.ConfigError("a PostgreSQL ledger URL is postgresql://USER@HOST:PORT/DB",
                                     key="ledger", value=redact(url))
        ours: dict[str, Any] = {}
        passed: list[tuple[str, str]] = []
        for name, raw in parse_qsl(parts.query, keep_blank_values=True):
            if name not in _OPTIONS:
                passed.append((name, raw))
                continue
            try:
                ours[name] = type(_OPTIONS[name])(raw)
            except ValueError:
                raise errors.ConfigError(f"{name} must be a number, got {raw!r}",
                                         key="ledger", value=redact(url)) from None
            if ours[name] <= 0:
                raise errors.ConfigError(f"{name} must be more than 0, got {raw!r}",
                                         key="ledger", value=redact(url))
        conninfo = parts._replace(scheme="postgresql", query=urlencode(passed)).geturl()
        return cls(conninfo, **ours)

    # ── errors ───────────────────────────────────────────────────────────────

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(self, exc: Exception, doing: str) -> errors.UnillmError:
        """A driver error as ours, its message scrubbed of the password."""
        message = f"{doing} the ledger database {self.url}: {self._scrub(str(exc).strip())}"
        return errors.LedgerError(message, reading=doing == "cannot read")

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        try:
            yield
        except self._psycopg.Error as exc:
            clean = self._scrub(str(exc)) == str(exc)  # chain the driver's error if it is safe
            raise self._fail(exc, doing) from (exc if clean else None)

    # ── connections ──────────────────────────────────────────────────────────

    def _pool(self) -> Any:
        """This process's pool, built on first use (and anew in a forked child)."""
        pool, pid = self._pool_obj, os.getpid()
        if pool is not None and self._pool_pid == pid:
            return pool
        with self._pool_lock:
            if self._pool_obj is None or self._pool_pid != pid:
                # a parent's pool is abandoned, never closed: its sockets are the parent's
                pool_mod = _require("psycopg_pool")
                self._pool_obj = pool_mod.ConnectionPool(
                    self._conninfo, min_size=self.pool_min,
                    max_size=max(self.pool_max, self.pool_min), timeout=self.pool_timeout,
                    kwargs={"autocommit": True}, open=True, name="unillm-ledger",
                    check=_check_if_idle, reset=_mark_used)
                self._pool_pid = pid
                self._local = threading.local()
            return self._pool_obj

    def pool_stats(self) -> dict[str, int]:
        """This process's connections: open, idle, the most allowed, and requests waiting for one
        (``/admin/health``); all 0 before the first use."""
        pool = self._pool_obj if self._pool_pid == os.getpid() else None
        stats: dict[str, int] = {} if pool is None else pool.get_stats()
        return {"connections": stats.get("pool_size", 0), "idle": stats.get("pool_available", 0),
                "max_connections": self.pool_max, "waiting": stats.get("requests_waiting", 0)}

    def _current(self) -> _Tx | None:
        """The transaction this thread has open, if any."""
        if self._pool_pid != os.getpid():
            return None
        return getattr(self._local, "tx", None)

    @contextmanager
    def _connection(self, doing: str) -> Iterator[Any]:
        with self._translated(doing), self._pool().connection() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        """One database transaction on one connection; nested use joins the outer one."""
        current = self._current()
        if current is not None:
            yield current
            return
        with self._connection("cannot write to") as conn, conn.transaction():
            tx = self._local.tx = _Tx(conn)
            try:
                yield tx
            finally:
                self._local.tx = None

    @contextmanager
    def _locked(self) -> Iterator[_Tx]:
        """A transaction holding the migration lock (released at commit or rollback)."""
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            yield tx

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        names = {m.name for m in migrations}
        psycopg = self._psycopg
        try:
            with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10) as conn:
                if conn.execute("SELECT to_regclass(%s)", (MIGRATIONS_TABLE,)).fetchone()[0]:
                    rows = conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}").fetchall()
                    if names <= {r[0] for r in rows}:
                        return
        except psycopg.Error as exc:
            raise errors.ConfigError(str(self._fail(exc, "cannot open")), key="ledger") from None
        migrate(self._locked, self.dialect, migrations)

    # ── writing ──────────────────────────────────────────────────────────────

    def record(self, rec: CallRecord) -> None:
        """Insert one record; committed when this returns (or with the open transaction)."""
        row = to_row(rec)
        current = self._current()
        if current is not None:
            current.connection.execute(pyformat(INSERT_SQL), row)
            return
        with self._connection("cannot record in") as conn:
            conn.execute(pyformat(INSERT_SQL), row)

    def record_many(self, recs: Sequence[CallRecord]) -> None:
        """Insert many records in one transaction (imports, generators)."""
        rows = [to_row(r) for r in recs]
        with self.transaction() as tx, tx.connection.cursor() as cur:
            cur.executemany(pyformat(INSERT_SQL), rows)

    # ── reading ──────────────────────────────────────────────────────────────

    def _in_transaction(self) -> bool:
        return self._current() is not None

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._commit_hits()
        current = self._current()
        rows: list[tuple[Any, ...]]
        if current is not None:
            rows = current.execute(sql, params).fetchall()
            return rows
        with self._connection("cannot read") as conn:
            rows = conn.execute(pyformat(sql), tuple(params)).fetchall()
            return rows

    def summary(self, by: Sequence[str] | str | None = (), since: datetime | None = None,
                until: datetime | None = None,
                where: Mapping[str, Any] | None = None, retries: bool = True) -> list[dict[str, Any]]:
        """Grouped totals, computed by the server in one query."""
        sql, params, keys = summary_sql.build(self.dialect, by, since, until, where, retries=retries)
        rows = [_integral(r) for r in self._query(sql, params)]
        return summary_sql.to_rows(keys, rows)

    # ── lifetime ─────────────────────────────────────────────────────────────

    def close(self) -> None:
        """Finish async callers' work, stop their threads, close this process's pool (a
        parent's pool, seen after fork, is left alone); waiting cache-hit rows are committed first."""
        if self.hits is not None:
            self.hits.close()
        self.io.close()
        with self._pool_lock:
            if self._pool_obj is not None and self._pool_pid == os.getpid():
                self._pool_obj.close()
            self._pool_obj = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

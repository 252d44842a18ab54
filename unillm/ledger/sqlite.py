"""The default store: one SQLite file in WAL mode, shared by any number of processes.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL`` (the default here).
A record is committed before `record` returns, so the commit is in the WAL file
in the operating system's hands: killing the process (even SIGKILL) loses
nothing acknowledged. A power cut or OS crash may lose the last few commits;
``sqlite:///PATH?synchronous=full`` fsyncs every commit to survive that too, at
a cost of a disk flush per call.

Concurrency: one connection per store (per process), serialised by a lock, so
threads share it safely; async callers ``await store.arun(fn)``, which runs ``fn`` on
the store's own few threads (`unillm.offload`), never on their event loop. Processes wait for
each other through SQLite's busy timeout; writes that still meet
``SQLITE_BUSY`` are retried until the timeout has passed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from .. import errors
from ..offload import Offload, Offloaded
from . import summary as summary_sql
from .migrations import MIGRATIONS, MIGRATIONS_TABLE, Migration, migrate
from .reads import SQLReads
from .records import CallRecord
from .rows import INSERT_SQL, TABLE, to_row
from .store import Dialect

T = TypeVar("T")


class SQLiteDialect(Dialect):
    name = "sqlite"
    serial_pk = "INTEGER PRIMARY KEY"   # an alias of the rowid: insertion order
    float_type = "REAL"

    def bucket(self, unit: str, column: str) -> str:
        if unit == "week":  # the Monday on or before the day
            return f"date(substr({column}, 1, 10), '-6 days', 'weekday 1')"
        return super().bucket(unit, column)

    def collect(self, column: str) -> str:
        return f"group_concat({column}, ',')"

    def tag(self, column: str) -> str:
        return f"json_extract({column}, ?)"

    def tag_param(self, name: str) -> str:
        return f'$."{name}"'


class _Tx:
    """A `unillm.ledger.store.Transaction` over an SQLite connection."""

    dialect = SQLiteDialect()

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.connection = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.connection.execute(sql, params)

    def record(self, rec: CallRecord) -> None:
        try:
            self.connection.execute(INSERT_SQL, to_row(rec))
        except OverflowError as exc:
            raise _out_of_range(rec, exc) from None


class SQLiteStore(SQLReads, Offloaded):
    """`unillm.ledger.store.LedgerStore` on an SQLite file (or ``:memory:``)."""

    dialect = SQLiteDialect()
    #: ledgers with fewer rows are summarized in one query; bigger ones in parallel shards
    shard_min = 200_000

    def __init__(self, path: str | Path, *, synchronous: str = "normal", timeout: float = 30.0,
                 migrations: Sequence[Migration] = MIGRATIONS) -> None:
        if synchronous.lower() not in ("normal", "full", "extra"):
            raise errors.ConfigError(f"synchronous must be normal, full or extra, got "
                                     f"{synchronous!r}", key="ledger")
        self.path = str(path)
        self.url = f"sqlite:///{self.path.lstrip('/')}" if self.path != ":memory:" else \
            "sqlite:///:memory:"
        self.synchronous = synchronous.upper()
        self.timeout = timeout
        self._lock = threading.RLock()
        self._tx_owner: int | None = None
        self.io = Offload("unillm-ledger")  # async callers' commits run here, off their loop
        self._conn = self._connect()
        try:
            self._migrate(migrations)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise self._unusable(exc) from exc

    @staticmethod
    def path_of(url: str) -> str:
        """The file an ``sqlite:///ABSOLUTE/PATH.db`` URL names (or ``:memory:``).

        A fourth slash is tolerated (``sqlite:////abs/path.db``, SQLAlchemy's spelling).
        """
        parts = urlsplit(url)
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise errors.ConfigError("an SQLite ledger URL is sqlite:///ABSOLUTE/PATH.db "
                                     "(three slashes, then the path)", key="ledger", value=url)
        return ":memory:" if parts.path == "/:memory:" else "/" + parts.path.lstrip("/")

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """``sqlite:///ABSOLUTE/PATH.db[?synchronous=full&timeout=30]``, or ``sqlite:///:memory:``."""
        parts = urlsplit(url)
        path = cls.path_of(url)
        opts = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(opts) - {"synchronous", "timeout"}
        if unknown:
            raise errors.ConfigError(f"unknown SQLite ledger option(s) {sorted(unknown)}; "
                                     "known: synchronous, timeout", key="ledger")
        try:
            timeout = float(opts.get("timeout", 30.0))
        except ValueError:
            raise errors.ConfigError(f"timeout must be a number of seconds, got "
                                     f"{opts['timeout']!r}", key="ledger") from None
        return cls(path, synchronous=opts.get("synchronous", "normal"), timeout=timeout)

    # ── connection and transactions ──────────────────────────────────────────

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise errors.ConfigError(f"cannot open the ledger database {self.path}: {exc}",
                                     key="ledger") from exc
        self._pid = os.getpid()
        try:
            if self.path != ":memory:":
                self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            _tune_sorter(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._unusable(exc) from exc
        return conn

    def _unusable(self, exc: sqlite3.DatabaseError) -> errors.LedgerError:
        """Not a database, a corrupt one, or a failing disk: one error naming the file."""
        return errors.LedgerError(f"cannot use the ledger database {self.path}: {exc}")

    def _retry(self, fn: Callable[[], T], since: float | None = None) -> T:
        """Run ``fn``, retrying on SQLITE_BUSY/locked until the timeout has passed (counted
        from ``since``, a `time.monotonic` reading, when a first attempt was made already)."""
        deadline = (time.monotonic() if since is None else since) + self.timeout
        delay = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: never share a connection with the parent
            self._conn = self._connect()
        return self._conn

    def transaction(self) -> _Transaction:
        """One write transaction (``BEGIN IMMEDIATE``); nested use joins the outer one."""
        return _Transaction(self)

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        names = {m.name for m in migrations}
        try:
            rows = self._conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}").fetchall()
            if names <= {r[0] for r in rows}:
                return
        except sqlite3.OperationalError:
            pass  # a fresh database: no bookkeeping table yet
        migrate(self.transaction, self.dialect, migrations)

    # ── writing ──────────────────────────────────────────────────────────────

    def record(self, rec: CallRecord) -> None:
        """Insert and commit one record (a single autocommitted statement)."""
        row = to_row(rec)
        with self._lock:
            conn = self._connection()
            try:
                try:
                    conn.execute(INSERT_SQL, row)
                except sqlite3.OperationalError as exc:
                    if not _busy(exc) or self._tx_owner == threading.get_ident():
                        raise  # not another connection's lock, or inside our own transaction
                    self._retry(lambda: conn.execute(INSERT_SQL, row))  # wait for that lock
            except OverflowError as exc:
                raise _out_of_range(rec, exc) from None

    def record_many(self, recs: Sequence[CallRecord]) -> None:
        """Insert many records in one transaction (imports, generators)."""
        rows = [to_row(r) for r in recs]
        with self.transaction() as tx, _in_range(None):
            tx.connection.executemany(INSERT_SQL, rows)

    # ── reading ──────────────────────────────────────────────────────────────

    def _in_transaction(self) -> bool:
        return self._tx_owner == threading.get_ident()

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._commit_hits()
        with self._lock:
            return self._fetch(self._connection(), sql, params)

    def _fetch(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one read; a failure is a LedgerError naming the ledger.

        A read writes nothing but the sort's temp files. When their directory is full or
        failing (SQLITE_FULL, or an I/O error), the read is run again sorting in memory:
        slower on a big ledger, but it answers.
        """
        try:
            try:
                return self._retry(lambda: conn.execute(sql, params).fetchall())
            except sqlite3.OperationalError as exc:
                if _busy(exc):  # _retry waited its whole timeout already
                    raise
                conn.execute("PRAGMA temp_store=MEMORY")
                try:
                    return self._retry(lambda: conn.execute(sql, params).fetchall())
                finally:
                    conn.execute("PRAGMA temp_store=FILE")
        except sqlite3.Error as exc:
            raise errors.LedgerError(f"could not read the ledger {self.path}: {exc}", reading=True) from exc

    def summary(self, by: Sequence[str] | str | None = (), since: datetime | None = None,
                until: datetime | None = None,
                where: Mapping[str, Any] | None = None, retries: bool = True) -> list[dict[str, Any]]:
        """Grouped totals; a big file ledger is scanned in parallel shards (one per core)."""
        lo, hi = self._query(f"SELECT MIN(seq), MAX(seq) FROM {TABLE}", ())[0]
        shards = min(os.cpu_count() or 1, 4)
        if self.path == ":memory:" or lo is None or hi - lo < self.shard_min or shards < 2:
            sql, params, keys = summary_sql.build(self.dialect, by, since, until, where, retries=retries)
            return summary_sql.to_rows(keys, self._query(sql, params))
        sql, params, keys = summary_sql.build(self.dialect, by, since, until, where, shard=True, retries=retries)
        step = (hi - lo) // shards + 1
        bounds = [(lo + i * step, lo + (i + 1) * step) for i in range(shards)]
        with ThreadPoolExecutor(shards) as pool:  # sqlite3 releases the GIL while it works
            parts = pool.map(lambda b: self._read_only(sql, [*params, *b]), bounds)
            rows = [row for part in parts for row in part]
        return summary_sql.to_rows(keys, rows)

    def _read_only(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a query on a fresh read-only connection (WAL readers run side by side)."""
        conn = sqlite3.connect(Path(self.path).resolve().as_uri() + "?mode=ro", uri=True,
                               timeout=self.timeout, check_same_thread=False)
        try:
            _tune_sorter(conn)
            return self._fetch(conn, sql, params)
        finally:
            conn.close()

    def close(self) -> None:
        """Commit waiting cache-hit rows, finish the work of async callers, stop their
        threads, close the file."""
        if self.hits is not None:
            self.hits.close()
        self.io.close()
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


@contextmanager
def _in_range(rec: CallRecord | None) -> Iterator[None]:
    """A count or amount past SQLite's 64-bit integers is a LedgerError, not an OverflowError."""
    try:
        yield
    except OverflowError as exc:
        raise _out_of_range(rec, exc) from None


def _out_of_range(rec: CallRecord | None, exc: OverflowError) -> errors.LedgerError:
    what = f"the record of {rec.provider}/{rec.model}" if rec is not None else "a record"
    return errors.LedgerError(f"cannot record {what}: a token count or amount is beyond the "
                              f"ledger's 64-bit range ({exc})")


class _Transaction:
    """`SQLiteStore.transaction`: the store's lock held throughout, ``BEGIN IMMEDIATE`` ...
    ``COMMIT`` (``ROLLBACK`` on any exception), each retried while another connection holds
    the lock; inside another transaction of this thread, it joins that one. A class rather than
    a ``@contextmanager`` generator: a budgeted call opens two, and the generator and its
    retry closures cost about half of what the two statements themselves cost."""

    __slots__ = ("_store", "_conn", "_joined")

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def __enter__(self) -> _Tx:
        store = self._store
        store._lock.acquire()
        try:
            self._conn = conn = store._connection()
            me = threading.get_ident()
            self._joined = store._tx_owner == me
            if not self._joined:
                _run(store, conn, "BEGIN IMMEDIATE")
                store._tx_owner = me
        except BaseException:
            store._lock.release()
            raise
        return _Tx(conn)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        store = self._store
        try:
            if self._joined:
                return
            try:
                if kind is not None:
                    self._conn.execute("ROLLBACK")
                else:
                    _run(store, self._conn, "COMMIT")
            finally:
                store._tx_owner = None
        finally:
            store._lock.release()


def _run(store: SQLiteStore, conn: sqlite3.Connection, sql: str) -> None:
    """``sql`` once, and again through `SQLiteStore._retry` if the database was busy (within
    the same timeout as a first attempt made by `_retry` itself)."""
    since = time.monotonic()
    try:
        conn.execute(sql)
    except sqlite3.OperationalError as exc:
        if not _busy(exc):
            raise
        store._retry(lambda: conn.execute(sql), since)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock (worth waiting for)."""
    msg = str(exc)
    return "locked" in msg or "busy" in msg


def _tune_sorter(conn: sqlite3.Connection) -> None:
    """Summaries are GROUP BYs over up to millions of rows, and their cost is SQLite's sort.

    Measured on 1M rows: the sorter spilling to a (deleted-on-close) temp file merges
    about twice as fast as ``temp_store=MEMORY``, and worker threads (one per core)
    halve it again when a query runs unsharded.
    """
    conn.execute("PRAGMA temp_store=FILE")
    conn.execute(f"PRAGMA threads={min(os.cpu_count() or 1, 4)}")

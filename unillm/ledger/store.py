"""The store protocol and the SQL dialect seam (`open_store(url)` lives in `stores`).

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

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

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

    @property
    def dialect(self) -> Dialect: ...  # read-only: a backend's is its own `Dialect` subclass

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def record(self, rec: CallRecord) -> None: ...


@runtime_checkable
class LedgerStore(Protocol):
    """Where records live. ``record`` is durable when it returns."""

    @property
    def url(self) -> str: ...

    @property
    def dialect(self) -> Dialect: ...  # read-only: a backend's is its own `Dialect` subclass

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

"""Reading records back, in portable SQL: shared by every SQL store.

A store provides ``_query(sql, params) -> rows`` (``?`` placeholders) and ``transaction()``,
and gets paged `records`, `ranked`, `by_ids`, `tail` and `last_cursor` from `SQLReads`,
and `copy_in` (a migration's writes), so no caller above the store writes SQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal

from .query import where_clause
from .records import CallRecord
from .rows import INSERT_SQL, SELECT_SQL, STARTED_AT, TABLE, from_row, to_row

#: rows per page: a reader never holds a writer up for long
PAGE = 1000
#: what `SQLReads.ranked` orders by, newest row first among equals
ORDERS = {"cost": "total_nano DESC, total_atto DESC, seq DESC", "recent": "started_at DESC, seq DESC"}
INSERT_NEW = INSERT_SQL + " ON CONFLICT (id) DO NOTHING"  # ids are unique: re-runs copy nothing


class SQLReads:
    dialect: Any
    #: the group-commit writer of this store's cache-hit rows (`batch`), opened by the first
    #: hit; every read (``_query``) commits what it holds first (`_commit_hits`), and
    #: ``close`` closes it
    hits: Any = None

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _in_transaction(self) -> bool:
        """Whether the calling thread has a `transaction` of this store open."""
        raise NotImplementedError

    def _commit_hits(self) -> None:
        """Before a read: commit the cache-hit rows waiting for their batch, so the read sees
        them. Not from inside a transaction the reader has open: they would join it and go
        if it rolled back; they stay with the writer, whose thread commits them after it."""
        if self.hits is not None and not self._in_transaction():
            self.hits.flush()

    def records(self, since: datetime | None = None, until: datetime | None = None,
                where: Mapping[str, Any] | None = None,
                limit: int | None = None) -> Iterator[CallRecord]:
        """Records oldest first, read in pages (keyset pagination on ``started_at, seq``)."""
        filters, params = where_clause(self.dialect, since, until, where)
        joiner = " AND " if filters else " WHERE "
        cursor: tuple[str, int] | None = None
        left = limit
        while left is None or left > 0:
            page = PAGE if left is None else min(PAGE, left)
            sql, args = SELECT_SQL + filters, list(params)
            if cursor is not None:
                sql += joiner + "(started_at > ? OR (started_at = ? AND seq > ?))"
                args += [cursor[0], cursor[0], cursor[1]]
            rows = self._query(sql + f" ORDER BY started_at, seq LIMIT {int(page)}", args)
            for row in rows:
                yield from_row(row)
            if len(rows) < page:
                return
            cursor = (rows[-1][STARTED_AT], rows[-1][0])
            if left is not None:
                left -= len(rows)

    def ranked(self, order: Literal["cost", "recent"], since: datetime | None = None,
               until: datetime | None = None, where: Mapping[str, Any] | None = None,
               limit: int = 10) -> list[CallRecord]:
        """The ``limit`` dearest (``cost``) or newest (``recent``) records matching the filters."""
        filters, params = where_clause(self.dialect, since, until, where)
        rows = self._query(f"{SELECT_SQL}{filters} ORDER BY {ORDERS[order]} LIMIT {int(limit)}", params)
        return [from_row(r) for r in rows]

    def by_ids(self, ids: Sequence[str]) -> dict[str, CallRecord]:
        """The records with these ids (an id not stored is absent)."""
        if not ids:
            return {}
        rows = self._query(f"{SELECT_SQL} WHERE id IN ({', '.join('?' for _ in ids)})", list(ids))
        return {r.id: r for r in map(from_row, rows)}

    def copy_in(self, recs: Sequence[CallRecord]) -> int:
        """Store the records whose id is not stored yet, in one transaction; how many were new."""
        with self.transaction() as tx:
            return sum(max(tx.execute(INSERT_NEW, to_row(r)).rowcount, 0) for r in recs)

    def tail(self, after: int | None = None, limit: int = 1000) -> tuple[list[CallRecord], int]:
        """Records committed after cursor ``after`` (None: from the start), and the new cursor."""
        start = -1 if after is None else int(after)
        rows = self._query(SELECT_SQL + " WHERE seq > ? ORDER BY seq LIMIT ?", (start, int(limit)))
        return [from_row(r) for r in rows], (rows[-1][0] if rows else max(start, 0))

    def last_cursor(self) -> int:
        """The cursor of the newest record (to follow only what comes next)."""
        return int(self._query(f"SELECT COALESCE(MAX(seq), 0) FROM {TABLE}", ())[0][0])

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

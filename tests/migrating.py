"""Helpers for migration tests: a store stopped at an earlier migration, and a table's indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from unillm.ledger.migrations import MIGRATIONS
from unillm.ledger.postgres import PostgresStore
from unillm.ledger.sqlite import SQLiteStore


def store_until(last: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, Any]:
    """``(url, store)``: a fresh ledger migrated up to ``last`` (a migration's name) and no
    further, on ``backend`` ("sqlite", or "postgresql" through the test's ``pg_url`` fixture)."""
    names = [m.name for m in MIGRATIONS]
    first = MIGRATIONS[:names.index(last) + 1]
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'l.db'}", SQLiteStore(tmp_path / "l.db", migrations=first)
    url = request.getfixturevalue("pg_url")
    return url, PostgresStore(url, migrations=first)


def indexes(store: Any, table: str) -> list[str]:
    """The indexes made on ``table``, by name: not its primary key's or a UNIQUE column's."""
    with store.transaction() as tx:  # (``table`` is a test's constant: no placeholders)
        if tx.dialect.name == "sqlite":
            rows = tx.execute(f"SELECT name FROM sqlite_master WHERE tbl_name = '{table}' AND type = 'index' "
                              "AND sql IS NOT NULL").fetchall()
        else:  # PostgreSQL names a primary key's index ..._pkey and a UNIQUE column's ..._key
            rows = tx.execute(f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}' "
                              "AND indexname NOT LIKE '%key'").fetchall()
    return sorted(r[0] for r in rows)

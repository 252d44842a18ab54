"""``0017_budget_flights_unindexed``: the flight rows lose their index on ``expires_at`` (each
budgeted call inserted and deleted an entry in it, one page more in each of its two commits);
a flight left by a 0016 process carries over and still lapses at its worst case, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from unillm import Client
from unillm.ledger.migrations import MIGRATIONS
from unillm.ledger.postgres import PostgresStore
from unillm.ledger.sqlite import SQLiteStore
from unillm.testing import FakeProvider, Reply

from .servers import pg_url, postgres_server, postgres_url  # noqa: F401
from .test_budgets_flights_migrate import dead_flight, lapses_at_its_worst_case

HI = [{"role": "user", "content": "hi"}]


def _indexes(store: Any) -> list[str]:
    """The indexes on the flights table other than its primary key's."""
    with store.transaction() as tx:
        if tx.dialect.name == "sqlite":
            rows = tx.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'unillm_budget_flights' "
                              "AND type = 'index'").fetchall()
        else:
            rows = tx.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'unillm_budget_flights' "
                              "AND indexname NOT LIKE '%pkey'").fetchall()
    return sorted(r[0] for r in rows)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_flights_lose_their_expiry_index_and_a_0016_flight_still_lapses(
        backend: str, fake: FakeProvider, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    first16 = MIGRATIONS[:16]
    assert first16[-1].name == "0016_budget_flights"
    old: Any
    if backend == "sqlite":
        url, old = f"sqlite:///{tmp_path / 'l.db'}", SQLiteStore(tmp_path / "l.db", migrations=first16)
    else:
        url = request.getfixturevalue("pg_url")
        old = PostgresStore(url, migrations=first16)
    assert _indexes(old) == ["unillm_budget_flights_expiry"]
    dead_flight(old)
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    client = Client(providers=fake.providers(), ledger=url,
                    budgets=[{"name": "b", "limit_usd": 1, "period": "total"}])
    assert _indexes(client.ledger.store) == []
    lapses_at_its_worst_case(client)

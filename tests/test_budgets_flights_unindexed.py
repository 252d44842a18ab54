"""``0017_budget_flights_unindexed``: the flight rows lose their index on ``expires_at`` (each
budgeted call inserted and deleted an entry in it, one page more in each of its two commits);
a flight left by a 0016 process carries over and still lapses at its worst case, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from unillm import Client
from unillm.testing import FakeProvider, Reply

from .migrating import indexes, store_until
from .servers import pg_url, postgres_server, postgres_url  # noqa: F401
from .test_budgets_flights_migrate import dead_flight, lapses_at_its_worst_case

FLIGHTS = "unillm_budget_flights"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_flights_lose_their_expiry_index_and_a_0016_flight_still_lapses(
        backend: str, fake: FakeProvider, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url, old = store_until("0016_budget_flights", backend, tmp_path, request)
    assert indexes(old, FLIGHTS) == ["unillm_budget_flights_expiry"]
    dead_flight(old)
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    client = Client(providers=fake.providers(), ledger=url,
                    budgets=[{"name": "b", "limit_usd": 1, "period": "total"}])
    assert indexes(client.ledger.store, FLIGHTS) == []
    lapses_at_its_worst_case(client)

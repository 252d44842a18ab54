"""Upgrading a ledger from 0014 to ``0015_budget_totals``: per-budget spend carries over (a budget
neither resets nor doubles), and a hold left in the old table is counted at its worst case with
its ``in_flight`` row turned ``unknown`` (never refunded). SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.ledger.migrations import MIGRATIONS
from unillm.ledger.stores import open_store
from unillm.testing import FakeProvider, Reply

from .servers import pg_url, postgres_server, postgres_url  # noqa: F401

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'l.db'}"
    return request.getfixturevalue("pg_url")


def old_ledger(url: str, period: str) -> None:
    """A 0014 ledger: budget ``b`` spent $0.0007 over 3 calls this month; one call in flight."""
    from unillm.ledger.postgres import PostgresStore
    from unillm.ledger.sqlite import SQLiteStore
    first14 = MIGRATIONS[:14]
    assert first14[-1].name == "0014_route_state"
    store = SQLiteStore(SQLiteStore.path_of(url), migrations=first14) if url.startswith("sqlite") \
        else PostgresStore(url, migrations=first14)
    with store.transaction() as tx:
        tx.execute("INSERT INTO unillm_budget_spend (budget, scope, period, spent_usd, tokens, requests) "
                   "VALUES ('b', '', ?, '0.0007', 300, 3)", (period,))
        tx.execute("INSERT INTO unillm_budget_holds (id, budget, scope, period, amount_usd, tokens, expires_at) "
                   "VALUES ('h1', 'b', '', ?, '0.0001', 50, '2030-01-01T00:00:00.000000Z')", (period,))
        tx.execute("INSERT INTO ledger_calls (id, started_at, provider, model, status) "
                   "VALUES ('h1', '2026-01-01T00:00:00.000000Z', 'openai', 'gpt-4o-mini', 'in_flight')")
    store.close()


def test_an_upgrade_keeps_each_budgets_spend_and_counts_old_holds(fake: FakeProvider, url: str) -> None:
    period = datetime.now(timezone.utc).strftime("%Y-%m")
    old_ledger(url, period)
    open_store(url).close()                                   # migrates
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    budgets = [{"name": "b", "limit_usd": "0.001", "limit_requests": 5},
               {"name": "fresh", "limit_usd": 1}]                       # new: starts at zero
    client = Client(providers=fake.providers(), ledger=url, budgets=budgets)
    before = {r["budget"]: r for r in client.budgets.status()}
    assert before["b"]["spent_usd"] == Decimal("0.0008") and before["b"]["requests"] == 4
    assert before["b"]["tokens"] == 350 and before["b"]["in_flight"] == 0
    assert before["fresh"]["spent_usd"] == 0 and before["fresh"]["requests"] == 0
    (row,) = client.ledger.records()
    assert (row.id, row.status, row.total_usd, row.error_class) == ("h1", "unknown", Decimal("0.0001"), "LeaseExpired")
    r = client.chat(model="gpt-4o-mini", messages=HI, max_tokens=10)
    after = {s["budget"]: s for s in client.budgets.status()}
    assert after["b"]["spent_usd"] == Decimal("0.0008") + r.cost.total_usd and after["b"]["requests"] == 5
    assert after["fresh"]["spent_usd"] == r.cost.total_usd and after["fresh"]["requests"] == 1
    with pytest.raises(errors.BudgetExceededError):           # b's 5 requests: the old ones count
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=10)
    client.close()

"""``0016_budget_flights``: on SQLite the flight rows live in one b-tree (``WITHOUT ROWID``), so a
budgeted call's two commits write fewer pages; a flight left by a 0015 process carries over and
still lapses at its worst case (never refunded)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from unillm import Client
from unillm.ledger.migrations import MIGRATIONS
from unillm.ledger.sqlite import SQLiteStore
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]


def dead_flight(old: Any) -> None:
    """In ``old`` (a store at an older schema): a call in flight under budget "b" ($0.0001
    held) whose process died; then ``old`` is closed."""
    with old.transaction() as tx:
        tx.execute("INSERT INTO unillm_budget_totals (scope, period, held_nano, held_tokens, held_requests) "
                   "VALUES ('', 'total', 100000, 50, 1)")
        tx.execute("INSERT INTO unillm_budget_bases (budget, scope, period) VALUES ('b', '', 'total')")
        tx.execute("INSERT INTO unillm_budget_flights (id, counters, amount_usd, tokens, expires_at, call) "
                   "VALUES ('f1', '[[\"\",\"total\"]]', '0.0001', 50, 1.0, NULL)")
    old.close()


def lapses_at_its_worst_case(client: Client) -> None:
    """`dead_flight`'s flight carried over into ``client``'s upgraded ledger, and counted at its
    worst case (never refunded) once the next call's admission finds it lapsed."""
    assert [f["id"] for f in client.budgets.in_flight()] == ["f1"]
    r = client.chat(model="gpt-4o-mini", messages=HI, max_tokens=10)
    (status,) = client.budgets.status()
    assert status["spent_usd"] == Decimal("0.0001") + r.cost.total_usd
    assert status["in_flight"] == 0 and status["requests"] == 2 and client.budgets.in_flight() == []
    client.close()


def test_the_flights_table_is_one_btree_and_a_0015_flight_still_lapses(fake: FakeProvider, tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    first15 = MIGRATIONS[:15]
    assert first15[-1].name == "0015_budget_totals"
    old = SQLiteStore(path, migrations=first15)
    dead_flight(old)
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{path}",
                    budgets=[{"name": "b", "limit_usd": 1, "period": "total"}])
    conn = client.ledger.store._connection()
    (ddl,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'unillm_budget_flights'").fetchone()
    assert "WITHOUT ROWID" in ddl
    assert conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'unillm_budget_flights' "
                        "AND type = 'index'").fetchall() == []        # (and no expiry index since 0017)
    lapses_at_its_worst_case(client)

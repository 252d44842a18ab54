"""Budgets cost a fixed number of SQL statements per call, whatever the number that match.

Statements are counted on the ledger's own SQLite connection (``set_trace_callback``) while a
real call goes through the OpenAI SDK to FakeProvider; the spend each budget sees is checked
too, so batching the statements cannot drop a budget.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from unillm import Client
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]
TAGS = {"project": "p", "user": "u1"}


def statements(fake: FakeProvider, tmp_path: Path, n: int, max_tokens: int | None = 20,
               limit: str = "1") -> tuple[int, Client]:
    scopes: list[dict[str, str]] = [{"project": "p"}, {"user": "*"}, {}]
    budgets = [{"name": f"b{i}", "limit_usd": limit, "scope": scopes[i % 3], "alert_at": [0.5]} for i in range(n)]
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path / f'l{n}.db'}", budgets=budgets)
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=max_tokens, tags=TAGS)   # creates the rows
    seen: list[str] = []
    conn = client.ledger.store._connection()
    conn.set_trace_callback(seen.append)
    try:
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=max_tokens, tags=TAGS)
    finally:
        conn.set_trace_callback(None)
    return len(seen), client


def sent_cap(fake: FakeProvider) -> int:
    body = fake.requests[-1].json
    return int(body.get("max_tokens") or body["max_completion_tokens"])


def test_a_call_without_max_tokens_is_admitted_in_as_few_statements(fake: FakeProvider, tmp_path: Path) -> None:
    """The injected cap is the model's maximum when every budget can pay for it: held at that
    cap in the one UPDATE, checked against what the cap rule would have chosen."""
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    one, client = statements(fake, tmp_path, 3, max_tokens=None)
    assert one == 9
    assert sent_cap(fake) == 16_384                                   # gpt-4o-mini's maximum output
    assert all(row["in_flight"] == 0 and row["reserved_usd"] == 0 for row in client.budgets.status())


def test_near_the_limit_the_cap_shrinks_and_the_counters_are_left_as_they_were(fake: FakeProvider,
                                                                              tmp_path: Path) -> None:
    """$0.005 cannot hold 16,384 output tokens of gpt-4o-mini ($0.0098): the quick path gives its
    hold back and the full one picks the cap the budget can pay for."""
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    many, client = statements(fake, tmp_path, 3, max_tokens=None, limit="0.005")
    assert many > 9
    assert 256 <= sent_cap(fake) < 16_384
    status = client.budgets.status()
    assert all(row["in_flight"] == 0 and row["reserved_usd"] == 0 and row["requests"] == 2 for row in status)
    (total,) = {row["spent_usd"] for row in status}
    assert total == sum((r.total_usd for r in client.ledger.records()), Decimal(0))


def test_a_hundred_budgets_take_as_many_statements_as_one(fake: FakeProvider, tmp_path: Path) -> None:
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    one, _ = statements(fake, tmp_path, 1)
    many, client = statements(fake, tmp_path, 100)
    assert many == one
    # begin, held raised (one UPDATE ... RETURNING the counters, compared with the limits), flight
    # row, commit; then begin, flight row gone, counters moved, ledger row, commit: 8 beyond the
    # plain call's one INSERT (was 14, then 9)
    assert one == 9
    status = client.budgets.status()
    assert len(status) == 100
    spent = {row["spent_usd"] for row in status}
    assert len(spent) == 1 and spent.pop() > Decimal(0)             # every budget charged, equally
    assert all(row["requests"] == 2 and row["in_flight"] == 0 for row in status)


def test_the_prompt_is_counted_once_per_call_for_rules_and_budget(fake: FakeProvider, tmp_path: Path) -> None:
    """A rule reading the prompt's size and a budget holding its worst case share one count."""
    from unillm.tokens import count_cache_clear, count_cache_info
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path / 'l.db'}",
                    budgets=[{"name": "b", "limit_usd": 1}],
                    rules=[{"name": "huge", "when": {"prompt_tokens_above": 10**6}, "use": "gpt-4o-mini"}])
    count_cache_clear()
    client.chat(model="gpt-4o", messages=[{"role": "user", "content": "a message never counted before " * 40}],
                max_tokens=20)
    info = count_cache_info()
    assert (info.misses, info.hits) == (1, 0)   # counted by the rule; the budget reused it


def test_with_calls_in_flight_lapsed_leases_are_looked_for_once_a_second(fake: FakeProvider, tmp_path: Path) -> None:
    """Flights are not indexed by expiry (0017): while other calls hold money, the quick admission
    looks for lapsed leases (a scan of the calls in flight) at most once a second of the client's
    clock, not on every call; a lease that lapsed is still found and counted at its worst case."""
    from datetime import datetime, timedelta, timezone

    from unillm.budgets import Worst
    now = [datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)]
    fake.default = Reply(usage={"input_tokens": 5, "output_tokens": 10})
    url = f"sqlite:///{tmp_path / 'l.db'}"
    client = Client(providers=fake.providers(), ledger=url, budgets=[{"name": "b", "limit_usd": 1}],
                    clock=lambda: now[0])
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=20)
    other = Client(providers=fake.providers(), ledger=url,   # another process: one call in flight, then it dies
                   budgets=[{"name": "b", "limit_usd": 1, "lease_seconds": 10}], clock=lambda: now[0])
    assert other.budgets.admit({}, Worst(Decimal("0.001"), Decimal(0), 10, 10, 10)).hold is not None
    other.close()
    seen: list[str] = []
    client.ledger.store._connection().set_trace_callback(seen.append)

    def probes() -> int:
        return sum("expires_at <" in s for s in seen)
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=20)
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=20)
    assert probes() == 1                                  # (was one per call)
    now[0] += timedelta(seconds=1)
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=20)
    assert probes() == 2 and len(client.budgets.in_flight()) == 1   # not lapsed yet: still held
    now[0] += timedelta(seconds=10)                       # past the dead call's lease
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=20)
    (status,) = client.budgets.status()
    paid = sum((r.total_usd for r in client.ledger.records() if r.status == "ok"), Decimal(0))
    assert status["in_flight"] == 0 and status["spent_usd"] == paid + Decimal("0.001")
    client.close()

"""Budget holds that do not starve and that live as long as their call (issue 13, findings 7
and 10), and injected output caps that say so (issue 14, finding 5)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.testing import FakeProvider, Reply

from .servers import pg_url, postgres_server, postgres_url  # noqa: F401

HI = [{"role": "user", "content": "hi"}]
# gpt-4o-mini at $0.15 / $0.60 per 1M: 5 in + 100 out = $0.00006075, a hold at max_tokens=100 a bit more
USAGE = {"input_tokens": 5, "output_tokens": 100}


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def make(fake: FakeProvider, ledger: Path | str, budgets: list, **kw) -> Client:
    url = ledger if isinstance(ledger, str) else f"sqlite:///{ledger}"
    return Client(providers=fake.providers(), ledger=url, budgets=budgets, sleep=lambda s: None, **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'l.db'}"
    return request.getfixturevalue("pg_url")


def sent_cap(fake: FakeProvider) -> int:
    body = fake.requests[-1].json
    return body.get("max_tokens") or body["max_completion_tokens"]


def spent_ok(client: Client) -> Decimal:
    return sum((r.total_usd for r in client.ledger.records() if r.status == "ok"), Decimal(0))


def in_background(fn) -> tuple[threading.Thread, list]:
    out: list = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test
            out.append(exc)
    t = threading.Thread(target=run)
    t.start()
    return t, out


def wait_for(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


# ── finding 7: holds that do not starve ─────────────────────────────────────

def test_twenty_concurrent_calls_without_max_tokens_share_a_small_budget(fake: FakeProvider,
                                                                         tmp_path: Path) -> None:
    """$1 budget, gpt-4o (16,384 output tokens at $10/1M = $0.164 a hold): the first calls used to
    hold it all (7 admitted, 13 refused as if the budget were spent for the month)."""
    fake.default = Reply(usage={"input_tokens": 8, "output_tokens": 12}, delay=1.5)
    client = make(fake, tmp_path / "l.db", [{"name": "key", "limit_usd": 1}])
    start = threading.Barrier(20)

    def one():
        start.wait()
        return client.chat(model="gpt-4o", messages=HI)
    threads = [in_background(one) for _ in range(20)]
    for t, _ in threads:
        t.join(30)
    results = [out[0] for _, out in threads]
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, errors.BudgetExceededError) for e in refused), refused
    assert len(admitted) > 7
    assert refused and all(e.reason == "held" and 0 < e.retry_after <= 5 for e in refused)
    assert "held by calls in flight" in str(refused[0])
    caps = [req.json["max_tokens"] for req in fake.requests]
    assert min(caps) >= 256 and max(caps) == 16384        # never below the minimum
    assert spent_ok(client) <= 1
    (status,) = client.budgets.status()
    assert status["in_flight"] == 0 and status["reserved_usd"] == 0


def test_a_refusal_by_spend_says_spent_and_when_the_period_resets(fake: FakeProvider, tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 3, 31, 23, 0, tzinfo=timezone.utc))
    fake.default = Reply(usage=USAGE)
    client = make(fake, tmp_path / "l.db", [{"name": "b", "limit_usd": "0.0001"}], clock=clock)
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100)
    with pytest.raises(errors.BudgetExceededError) as info:
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100)
    assert info.value.reason == "spent" and info.value.retry_after == 3600.0   # the month ends at midnight
    with pytest.raises(errors.BudgetExceededError) as info:    # without max_tokens: $0.00004 pays < 256
        client.chat(model="gpt-4o-mini", messages=HI)
    assert info.value.reason == "spent" and len(fake.requests) == 1


def test_the_minimum_injected_cap_is_configurable(fake: FakeProvider, tmp_path: Path) -> None:
    fake.default = Reply(usage=USAGE)
    client = make(fake, tmp_path / "l.db", [{"name": "b", "limit_usd": "0.0001", "min_output_tokens": 50}])
    r = client.chat(model="gpt-4o-mini", messages=HI)        # (0.0001 - prompt) / 0.0000006 = 164 tokens
    assert sent_cap(fake) == r.capped and 150 < r.capped < 167


# ── finding 10: holds that live as long as their call ───────────────────────

def test_a_call_longer_than_the_lease_keeps_its_hold_injected_clock(fake: FakeProvider, tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc))
    budget = [{"name": "tiny", "limit_usd": "0.0001", "lease_seconds": 2}]
    fake.queue(Reply(usage=USAGE, delay=2.0))
    client = make(fake, tmp_path / "l.db", budget, clock=clock)
    other = make(fake, tmp_path / "l.db", budget, clock=clock)      # another process, same ledger
    t, out = in_background(lambda: client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100))
    wait_for(lambda: other.budgets.status()[0]["in_flight"] == 1)
    (row,) = other.budgets.in_flight()               # written ahead: the hold and its call, one row
    clock.advance(1.5)
    assert client.budgets.renew() == 1               # what the heartbeat does every lease / 3
    clock.advance(1.5)                               # 3 s: past the first lease, not the renewed one
    with pytest.raises(errors.BudgetExceededError) as info:
        other.chat(model="gpt-4o-mini", messages=HI, max_tokens=100)
    assert info.value.reason == "held"
    t.join(10)
    assert not isinstance(out[0], BaseException)
    statuses = sorted(r.status for r in client.ledger.records())
    assert statuses == ["budget_denied", "ok"]       # the in_flight row was replaced by the outcome
    assert spent_ok(client) <= Decimal("0.0001") and len(fake.requests) == 1
    assert row["id"] not in {r.id for r in client.ledger.records()} and other.budgets.in_flight() == []


def test_a_call_longer_than_the_lease_keeps_its_hold_real_time(fake: FakeProvider, tmp_path: Path) -> None:
    """Limit $0.0001, lease 2 s, one 3 s call: while it runs, other calls are refused."""
    budget = [{"name": "tiny", "limit_usd": "0.0001", "lease_seconds": 2}]
    fake.queue(Reply(usage=USAGE, delay=3.0))
    fake.default = Reply(usage=USAGE)
    client = make(fake, tmp_path / "l.db", budget)
    other = make(fake, tmp_path / "l.db", budget)
    t, out = in_background(lambda: client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100))
    wait_for(lambda: other.budgets.status()[0]["in_flight"] == 1)
    time.sleep(2.5)                                  # past the lease: only the heartbeat keeps the hold
    refused = 0
    while t.is_alive():
        try:
            other.chat(model="gpt-4o-mini", messages=HI, max_tokens=100)
        except errors.BudgetExceededError as exc:
            refused += 1
            assert exc.reason == "held"
        time.sleep(0.1)
    t.join()
    assert not isinstance(out[0], BaseException) and refused > 0
    assert spent_ok(client) <= Decimal("0.0001")     # no overshoot
    assert Client(ledger=f"sqlite:///{tmp_path / 'l.db'}", budgets=budget).budgets.status()[0]["spent_usd"] \
        <= Decimal("0.0001")


def test_a_call_past_its_deadline_is_counted_at_worst_case_then_corrected(fake: FakeProvider,
                                                                          ledger_url: str) -> None:
    clock = Clock(datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc))
    budget = [{"name": "b", "limit_usd": "0.001", "lease_seconds": 2}]
    fake.queue(Reply(usage=USAGE, delay=1.5))
    client = make(fake, ledger_url, budget, clock=clock, call_deadline=5)
    other = make(fake, ledger_url, budget, clock=clock)
    t, out = in_background(lambda: client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100))
    wait_for(lambda: other.budgets.status()[0]["in_flight"] == 1)
    held = other.budgets.status()[0]["reserved_usd"]
    clock.advance(6)
    assert client.budgets.renew() == 0               # past its deadline: not renewed
    clock.advance(3)
    (status,) = other.budgets.status()               # the next reader counts the lapsed hold
    assert status["in_flight"] == 0 and status["spent_usd"] == held and status["requests"] == 1
    (row,) = list(other.ledger.records())
    assert row.status == "unknown" and row.total_usd == held and row.error_class == "LeaseExpired"
    t.join(10)                                       # the call ends after all: its real cost replaces it
    (row,) = list(other.ledger.records())
    assert row.status == "ok" and row.total_usd < held
    (status,) = other.budgets.status()
    assert status["spent_usd"] == row.total_usd and status["requests"] == 1 and status["tokens"] == 105


def test_the_heartbeat_thread_renews_and_then_stops(fake: FakeProvider, tmp_path: Path) -> None:
    budget = [{"name": "b", "limit_usd": 1, "lease_seconds": 1.0}]
    client = make(fake, tmp_path / "l.db", budget)
    other = make(fake, tmp_path / "l.db", budget)   # its reads would count a lapsed hold at worst case
    fake.queue(Reply(usage=USAGE, delay=2.5))
    t, out = in_background(lambda: client.chat(model="gpt-4o-mini", messages=HI, max_tokens=10))
    wait_for(lambda: other.budgets.status()[0]["in_flight"] == 1)
    seen = set()
    while t.is_alive():
        other.budgets.status()
        seen |= {r.status for r in other.ledger.records()} | {"in_flight" for _ in other.budgets.in_flight()}
        time.sleep(0.05)
    assert "unknown" not in seen and "in_flight" in seen and not isinstance(out[0], BaseException)
    (row,) = list(client.ledger.records())
    assert row.status == "ok"                        # never taken for dead though 2.5 leases passed
    (status,) = other.budgets.status()
    assert status["requests"] == 1 and status["spent_usd"] == row.total_usd
    wait_for(lambda: client.budgets._heartbeat._thread is None)   # no call in flight: no thread


def test_a_stream_open_past_its_deadline_is_cut_and_settled(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(text="x" * 200, chunk_size=5, chunk_delay=0.1, usage=USAGE))   # 4 s of chunks
    client = make(fake, tmp_path / "l.db", [{"name": "b", "limit_usd": 1}], stream_deadline=2)
    stream = client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100, stream=True)
    got = []
    with pytest.raises(errors.TimeoutError, match="stream_deadline"):
        for chunk in stream:
            got.append(chunk)
    assert len(got) < 40                             # cut before the vendor finished
    (row,) = list(client.ledger.records())
    assert row.status == "partial" and row.total_usd > 0
    (status,) = client.budgets.status()
    assert status["in_flight"] == 0 and status["spent_usd"] == row.total_usd


async def test_an_async_call_past_its_deadline_is_cancelled_and_settled(fake: FakeProvider,
                                                                          tmp_path: Path) -> None:
    fake.queue(Reply(usage=USAGE, delay=5))
    client = make(fake, tmp_path / "l.db", [{"name": "b", "limit_usd": 1}], call_deadline=0.5)
    with pytest.raises(errors.TimeoutError, match="call_deadline"):   # the vendor would answer after 5 s
        await client.achat(model="gpt-4o-mini", messages=HI, max_tokens=10)
    (row,) = list(client.ledger.records())
    assert row.status == "unknown"      # sent, then cut off: the vendor may still bill it
    (status,) = client.budgets.status()
    assert status["in_flight"] == 0 and status["reserved_usd"] == 0
    assert status["spent_usd"] > 0      # so its hold is counted at worst case, never refunded


def test_no_budget_no_write_ahead_row(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(usage=USAGE, delay=0.5))
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path / 'l.db'}")
    t, _ = in_background(lambda: client.chat(model="gpt-4o-mini", messages=HI))
    wait_for(lambda: len(fake.requests) == 1)
    assert list(client.ledger.records()) == []
    t.join()


# ── issue 14, finding 5: injected caps never starve reasoning models ──────────

def test_an_injected_cap_is_the_models_maximum_unless_the_budget_cannot_pay(fake: FakeProvider,
                                                                           tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[openai."o-think"]\ninput = 1.0\noutput = 10.0\nsince = 2025-01-01\n'
                      'max_output_tokens = 100000\n\n'
                      '[openai."o-mystery"]\ninput = 1.0\noutput = 10.0\nsince = 2025-01-01\n')
    rich = make(fake, tmp_path / "a.db", [{"name": "b", "limit_usd": 100}], pricing=str(prices))
    r = rich.chat(model="openai/o-think", messages=HI)
    assert sent_cap(fake) == 100000 and r.capped is None
    poor = make(fake, tmp_path / "b.db", [{"name": "b", "limit_usd": "0.05"}], pricing=str(prices))
    r = poor.chat(model="openai/o-think", messages=HI)       # $0.05 pays for ~5,000 output tokens
    sent = sent_cap(fake)
    assert 4900 < sent < 5000 and r.capped == sent
    r = rich.chat(model="openai/o-mystery", messages=HI)     # maximum unknown: a cap every vendor takes, said
    assert sent_cap(fake) == 4096 and r.capped == 4096
    r = rich.chat(model="openai/o-think", messages=HI, max_tokens=50)
    assert r.capped is None                                  # the caller's own cap is not an injected one


async def test_an_async_call_already_past_its_deadline_is_settled_not_left_held(fake: FakeProvider,
                                                                                 tmp_path: Path) -> None:
    client = make(fake, tmp_path / "l.db", [{"name": "b", "limit_usd": 1}], call_deadline=1e-9)
    with pytest.raises(errors.TimeoutError, match="call_deadline"):
        await client.achat(model="gpt-4o-mini", messages=HI, max_tokens=10)
    assert [r.status for r in client.ledger.records()] == ["error"]
    (status,) = client.budgets.status()
    assert status["in_flight"] == 0 and status["reserved_usd"] == 0

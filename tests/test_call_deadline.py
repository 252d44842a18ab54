"""A sync call is bounded by ``call_deadline`` like an async one (issue 13, the last "holds that
live as long as their call" deliverable): each attempt's timeout is the provider's or the time
left, whichever is less, handed to each official SDK its own way; no attempt or retry starts
past the deadline. And a retried ``unknown`` attempt (the vendor may bill it) is charged to
the budget at its worst case before the retry is admitted again. Real SDKs against FakeProvider."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.testing import FakeProvider, Reply

from .test_budgets_holds import in_background, wait_for

HI = [{"role": "user", "content": "hi"}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
          "cohere": "command-r7b"}
USAGE = {"input_tokens": 5, "output_tokens": 100}


def make(fake: FakeProvider, ledger: Path, provider: str = "openai", budgets: list | None = None,
         **kw) -> Client:
    settings = {"base_url": fake.base_url(provider), "api_key": "sk-test-key-123456"}
    settings |= kw.pop("provider_settings", {})
    return Client(providers={provider: settings}, ledger=f"sqlite:///{ledger}",
                  budgets=budgets or [], sleep=lambda s: None, **kw)


@pytest.mark.parametrize("provider", list(MODELS))
def test_a_sync_call_is_cut_at_its_deadline(fake: FakeProvider, tmp_path: Path, provider: str) -> None:
    model, budget = f"{provider}/{MODELS[provider]}", [{"name": "b", "limit_usd": 1}]
    make(fake, tmp_path / "warm.db", provider).chat(model=model, messages=HI)   # first-use set-up done
    client = make(fake, tmp_path / "l.db", provider, budget, call_deadline=5)
    client.budgets.status()                             # the ledger opened (and migrated) before
    fake.queue(Reply(usage=USAGE, delay=40))            # far past the deadline; the provider waits 600 s
    begun = time.monotonic()
    with pytest.raises(errors.TimeoutError, match="call_deadline") as info:
        client.chat(model=model, messages=HI, max_tokens=10)
    assert time.monotonic() - begun < 25                # well before the vendor would have answered
    assert not info.value.retryable and len(fake.requests) == 2   # no retry after the deadline
    (row,) = list(client.ledger.records())
    assert row.status == "unknown" and row.error_class == "TimeoutError"   # the vendor may bill it
    (status,) = client.budgets.status()
    assert status["in_flight"] == 0 and status["reserved_usd"] == 0
    assert status["spent_usd"] > 0 and status["requests"] == 1   # counted at its worst case


@pytest.mark.parametrize("provider", list(MODELS))
def test_a_stream_that_does_not_open_is_cut_at_its_deadline(fake: FakeProvider, tmp_path: Path,
                                                            provider: str) -> None:
    model = f"{provider}/{MODELS[provider]}"
    make(fake, tmp_path / "warm.db", provider).chat(model=model, messages=HI)   # first-use set-up done
    client = make(fake, tmp_path / "l.db", provider, stream_deadline=5)
    client.ledger.records()
    fake.queue(Reply(usage=USAGE, delay=40))            # no first byte before 40 s
    begun = time.monotonic()
    with pytest.raises(errors.TimeoutError, match="stream_deadline"):
        client.chat(model=model, messages=HI, max_tokens=10, stream=True)
    assert time.monotonic() - begun < 25 and len(fake.requests) == 2
    assert [r.status for r in client.ledger.records()] == ["unknown"]


def test_no_retry_starts_when_its_wait_would_pass_the_deadline(fake: FakeProvider, tmp_path: Path) -> None:
    fake.queue(Reply(status=429, error="slow down", headers={"retry-after": "5"}), Reply(usage=USAGE))
    client = make(fake, tmp_path / "l.db", call_deadline=2)
    with pytest.raises(errors.RateLimitError):
        client.chat(model="gpt-4o-mini", messages=HI)
    assert len(fake.requests) == 1
    assert [r.status for r in client.ledger.records()] == ["error"]
    fake.queue(Reply(status=429, error="slow down", headers={"retry-after": "1"}), Reply(usage=USAGE))
    client = make(fake, tmp_path / "m.db", call_deadline=30)   # the wait fits: retried as before
    assert client.chat(model="gpt-4o-mini", messages=HI).content


def test_an_attempt_already_past_the_deadline_is_not_sent(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path / "l.db", budgets=[{"name": "b", "limit_usd": 1}], call_deadline=1e-9)
    with pytest.raises(errors.TimeoutError, match="call_deadline"):
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=10)
    assert fake.requests == []
    assert [r.status for r in client.ledger.records()] == ["error"]   # nothing sent, nothing billed
    (status,) = client.budgets.status()
    assert status["in_flight"] == 0 and status["spent_usd"] == 0


# ── a retried unknown attempt is charged before its retry is admitted ─────────

def test_a_timed_out_attempt_counts_at_worst_case_and_its_retry_at_cost(fake: FakeProvider,
                                                                        tmp_path: Path) -> None:
    budget = [{"name": "b", "limit_usd": 1}]
    fake.queue(Reply(usage=USAGE, delay=2), Reply(usage=USAGE))   # attempt 1 outlives its 0.5 s timeout
    client = make(fake, tmp_path / "l.db", budgets=budget, provider_settings={"timeout": 0.5})
    other = make(fake, tmp_path / "l.db", budgets=budget)
    t, out = in_background(lambda: client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100))
    wait_for(lambda: other.budgets.status()[0]["in_flight"] == 1)
    held = other.budgets.status()[0]["reserved_usd"]          # attempt 1's worst case
    t.join(15)
    assert not isinstance(out[0], BaseException)
    first, second = sorted(client.ledger.records(), key=lambda r: r.attempt)
    assert (first.status, first.retried, second.status) == ("unknown", True, "ok")
    (status,) = client.budgets.status()
    assert status["spent_usd"] == held + second.total_usd     # the timed-out attempt may be billed too
    assert status["requests"] == 2 and status["in_flight"] == 0 and status["reserved_usd"] == 0


def test_a_retry_the_budget_cannot_pay_for_is_refused(fake: FakeProvider, tmp_path: Path) -> None:
    # one worst case (~$0.0000612) fits in $0.0001, two do not
    budget = [{"name": "b", "limit_usd": "0.0001"}]
    fake.queue(Reply(usage=USAGE, delay=2), Reply(usage=USAGE))
    client = make(fake, tmp_path / "l.db", budgets=budget, provider_settings={"timeout": 0.5})
    with pytest.raises(errors.BudgetExceededError):
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100)
    assert len(fake.requests) == 1                            # the retry was never sent
    rows = sorted((r.status, r.retried) for r in client.ledger.records())
    assert rows == [("budget_denied", False), ("unknown", True)]
    (status,) = client.budgets.status()
    assert Decimal(0) < status["spent_usd"] <= Decimal("0.0001")   # zero overshoot
    assert status["in_flight"] == 0 and status["reserved_usd"] == 0

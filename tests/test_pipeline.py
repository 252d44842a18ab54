"""The whole pipeline as a user sees it: rules, fallbacks, ledger rows, sections, savings."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]
CLASSIC = {"name": "short prompts go to mini",
           "when": {"model": "gpt-4o", "prompt_tokens_below": 100, "keywords_none": ["code", "analysis"]},
           "use": "gpt-4o-mini"}


def make(fake: FakeProvider, tmp_path: Path, **kw) -> Client:
    kw.setdefault("ledger", f"sqlite:///{tmp_path / 'ledger.db'}")
    kw.setdefault("providers", fake.providers())
    return Client(sleep=lambda s: None, **kw)


def rows(client: Client) -> list:
    return list(client.ledger.records())


# ── the ledger sees every outcome ────────────────────────────────────────────

def test_mixed_workload_summary_equals_sum_of_responses(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, tags={"service": "bot"})
    costs: list[Decimal] = []
    fake.queue(Reply(usage={"input_tokens": 1200, "cache_read_tokens": 800, "output_tokens": 300,
                            "reasoning_tokens": 100}),
               Reply(usage={"input_tokens": 40, "cache_write_tokens": 2000, "cache_read_tokens": 5000,
                            "output_tokens": 77}),
               Reply(usage={"input_tokens": 333, "cache_read_tokens": 111, "output_tokens": 999,
                            "reasoning_tokens": 500}),
               Reply(usage={"input_tokens": 17, "output_tokens": 23}),
               Reply(status=401, error="bad key"),
               Reply(usage=None, text="counted by tiktoken"))
    with client.section("agent:research"):
        for model in ("gpt-4o", "claude-sonnet-4-5", "gemini-2.5-pro"):
            costs.append(client.chat(model=model, messages=HI, tags={"user": "u1"}).cost.total_usd)
        with client.section("llm:query"):
            costs.append(client.chat(model="command-r-plus", messages=HI, tags={"user": "u2"}).cost.total_usd)
    with pytest.raises(errors.AuthenticationError):
        client.chat(model="gpt-4o-mini", messages=HI)
    r = client.chat(model="gpt-4o-mini", messages=HI)
    assert r.usage.source == "tiktoken"
    costs.append(r.cost.total_usd)

    summary = client.ledger.summary(by=["status"])
    by_status = {row["status"]: row for row in summary}
    assert by_status["ok"]["calls"] == 5 and by_status["error"]["calls"] == 1
    assert sum(row["cost_usd"] for row in summary) == sum(costs)   # exact, Decimal
    sections = {row["section"]: row["calls"] for row in client.ledger.summary(by=["section"])}
    assert sections["agent:research"] == 3 and sections["agent:research/llm:query"] == 1
    users = {row["user"]: row["cost_usd"] for row in client.ledger.summary(by=["user"])}
    assert users["u2"] == costs[3]
    recs = rows(client)
    assert all(rec.tags.get("service") == "bot" for rec in recs)
    assert {rec.id for rec in recs} >= {r.ledger_id}


def test_api_key_never_reaches_the_ledger(fake: FakeProvider, tmp_path: Path) -> None:
    secret = "sk-test-ledger-secret-9f8e7d6c"
    providers = {n: {**p, "api_key": secret} for n, p in fake.providers().items()}
    client = Client(providers=providers, ledger=f"sqlite:///{tmp_path / 'l.db'}", log_content=True)
    fake.queue(Reply(), Reply(status=401, error=f"Incorrect API key provided: {secret}"))
    client.chat(model="gpt-4o-mini", messages=HI)
    with pytest.raises(errors.AuthenticationError):
        client.chat(model="claude-haiku-4-5", messages=HI)
    client.close()
    for f in tmp_path.glob("l.db*"):
        assert secret.encode() not in f.read_bytes(), f.name


def test_stream_closed_early_is_recorded_partial(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path)
    fake.queue(Reply(text="a" * 400, chunk_size=10, usage=None))
    stream = client.chat(model="gpt-4o-mini", messages=HI, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    (rec,) = rows(client)
    assert rec.status == "partial" and rec.stream and 0 < rec.output_tokens < 100
    assert rec.usage_source == "tiktoken" and rec.total_usd > 0 and rec.ttft_ms is not None


def test_sections_are_per_thread_and_per_task(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path)

    def work(name: str) -> None:
        with client.section(name):
            client.chat(model="gpt-4o-mini", messages=HI, tags={"who": name})

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]

    async def task(name: str) -> None:
        async with client.section(name):
            await asyncio.sleep(0)
            await client.achat(model="gpt-4o-mini", messages=HI, tags={"who": name})

    async def main() -> None:
        await asyncio.gather(*(task(f"a{i}") for i in range(4)))
    asyncio.run(main())
    assert all(rec.section == rec.tags["who"] for rec in rows(client))
    assert len(rows(client)) == 8


# ── rules ────────────────────────────────────────────────────────────────────

def test_classic_rule_routes_records_and_saves(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, rules=[CLASSIC])
    fake.queue(Reply(usage={"input_tokens": 20, "output_tokens": 200}), Reply())
    r = client.chat(model="gpt-4o", messages=[{"role": "user", "content": "what's the capital of France?"}])
    assert r.model == "gpt-4o-mini" and r.rule == "short prompts go to mini"
    assert fake.requests[0].json["model"] == "gpt-4o-mini"
    # saving = the same usage at gpt-4o's prices minus what gpt-4o-mini cost
    book = client.pricebook
    at_4o = book.price("openai", "gpt-4o").cost(r.usage).total_usd
    (rec,) = rows(client)
    assert rec.saved_usd == at_4o - r.cost.total_usd > 0 and rec.saved_reason == "rule"
    assert rec.rule == "short prompts go to mini" and rec.requested_model == "gpt-4o"
    # a prompt about code is not routed
    client.chat(model="gpt-4o", messages=[{"role": "user", "content": "review this code please"}])
    assert fake.requests[1].json["model"] == "gpt-4o"
    per_rule = {row["rule"]: row for row in client.ledger.summary(by=["rule"])}
    assert per_rule["short prompts go to mini"]["saved_usd"] == rec.saved_usd


def test_shadow_rule_is_recorded_not_applied(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, rules=[{**CLASSIC, "mode": "shadow"}])
    r = client.chat(model="gpt-4o", messages=HI)
    assert r.model == "gpt-4o" and r.rule is None
    (rec,) = rows(client)
    assert rec.shadow_rule == "short prompts go to mini" and rec.rule is None


def test_deny_rule_raises_before_network_and_is_recorded(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, rules=[{"name": "no o1 at night", "when": {"model": "o1*",
                                          "time": "22:00-06:00"}, "deny": "o1 is for office hours"}],
                  clock=lambda: datetime(2026, 11, 22, 23, 30, tzinfo=timezone.utc))
    with pytest.raises(errors.RuleDeniedError, match="office hours"):
        client.chat(model="o1", messages=HI)
    assert fake.requests == []
    (rec,) = rows(client)
    assert rec.status == "rule_denied" and rec.rule == "no o1 at night"


def test_rule_max_tokens_cap_and_set(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, rules=[{"name": "cap", "when": {"provider": "openai"}, "max_tokens": 64,
                                          "set": {"temperature": 0}}])
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=1000, temperature=0.9)
    sent = fake.requests[-1].json
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 64 and sent["temperature"] == 0


# ── fallbacks ────────────────────────────────────────────────────────────────

FALLBACKS = [{"model": "gpt-4o", "then": ["anthropic/claude-sonnet-4-5", "gemini-2.5-flash"]}]


def test_fallback_survives_a_provider_outage(fake: FakeProvider, tmp_path: Path) -> None:
    retries = {"openai": 1, "anthropic": 0, "google": 0}
    client = make(fake, tmp_path, fallbacks=FALLBACKS, providers={
        n: {**p, "max_retries": retries.get(n, 0)} for n, p in fake.providers().items()})
    fake.queue(Reply(status=503, error="down"), Reply(status=503, error="down"),
               Reply(status=500, error="also down"), Reply(text="from gemini"))
    r = client.chat(model="gpt-4o", messages=HI)
    assert r.provider == "google" and r.content == "from gemini"
    assert [q.protocol for q in fake.requests] == ["openai", "openai", "anthropic", "google"]
    recs = sorted(rows(client), key=lambda rec: rec.started_at)
    assert [(rec.provider, rec.status, rec.retried) for rec in recs] == [  # every HTTP attempt a row
        ("openai", "error", True), ("openai", "error", False), ("anthropic", "error", False),
        ("google", "ok", False)]
    assert recs[-1].fallback_from == "openai/gpt-4o"


def test_fallback_on_context_window(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, fallbacks=FALLBACKS)
    fake.queue(Reply(status=400, error="This model's maximum context length is 128000 tokens"),
               Reply(text="bigger window"))
    assert client.chat(model="gpt-4o", messages=HI).provider == "anthropic"


def test_no_fallback_on_auth_error(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, fallbacks=FALLBACKS)
    fake.queue(Reply(status=401, error="bad key"))
    with pytest.raises(errors.AuthenticationError):
        client.chat(model="gpt-4o", messages=HI)
    assert len(fake.requests) == 1


async def test_async_stream_fallback(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, fallbacks=FALLBACKS, asleep=_nosleep)
    fake.queue(*[Reply(status=429, error="slow")] * 3, Reply(text="claude streams"))
    stream = await client.achat(model="gpt-4o", messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "claude streams" and stream.response.provider == "anthropic"


async def _nosleep(_: float) -> None:
    return None


# ── money edge cases ─────────────────────────────────────────────────────────

def test_unpriced_model_is_refused_before_sending_and_recorded(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path)
    with pytest.raises(errors.MissingPriceError):
        client.chat(model="openai/gpt-unpriced-9", messages=HI)
    assert fake.requests == []
    (rec,) = rows(client)
    assert rec.status == "error" and rec.error_class == "MissingPriceError"


def test_unpriced_model_recorded_as_unpriced_never_zero(fake: FakeProvider, tmp_path: Path) -> None:
    client = make(fake, tmp_path, on_missing_price="record")
    r = client.chat(model="openai/gpt-unpriced-9", messages=HI)
    assert r.cost is None
    (rec,) = rows(client)
    assert rec.status == "unpriced" and rec.total_usd is None


def test_fallback_on_timeout(fake: FakeProvider, tmp_path: Path) -> None:
    providers = {n: {**p, "max_retries": 0} for n, p in fake.providers().items()}
    providers["openai"]["timeout"] = 0.3
    client = make(fake, tmp_path, fallbacks=FALLBACKS, providers=providers)
    fake.queue(Reply(delay=1.0, text="too late"), Reply(text="claude in time"))
    r = client.chat(model="gpt-4o", messages=HI)
    assert r.provider == "anthropic" and r.content == "claude in time"
    failed = [rec for rec in rows(client) if rec.status != "ok"]  # timed out: the bill is unknown
    assert [(rec.status, rec.error_class) for rec in failed] == [("unknown", "TimeoutError")]

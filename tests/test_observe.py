"""`unillm.observe()`: raw vendor SDK calls and non-LLM APIs metered at the HTTP libraries'
transport seams, priced exactly as `chat()` prices the same payload, under budgets and
sections; unillm's own calls are never counted twice; `.stop()` undoes it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import unillm
from unillm import Client, errors
from unillm.testing import FakeApi, FakeProvider, Reply

USAGE = {"input_tokens": 1200, "cache_read_tokens": 800, "output_tokens": 300, "reasoning_tokens": 100}
MESSAGES = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as f:
        yield f


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi() as a:
        yield a


@pytest.fixture
def client(tmp_path: Path, fake: FakeProvider) -> Iterator[Client]:
    c = Client(ledger=f"sqlite:///{tmp_path / 'l.db'}", providers=fake.providers("openai", "anthropic", "google",
                                                                                 "cohere"))
    yield c
    c.close()


@pytest.fixture
def observed(client: Client, api: FakeApi) -> Iterator[Any]:
    handle = unillm.observe(client, apis=[
        {"name": "search:query", "match": {"host": f"127.0.0.1:{api.port}", "path": "/search"}, "per_call": 0.003},
        {"name": "voice:tts", "match": {"host": f"127.0.0.1:{api.port}", "method": "POST", "path": "/tts/*"},
         "per_1k_chars": 0.30, "units": {"chars": "request.json:text"}},
        {"name": "audio:transcribe", "match": {"host": f"127.0.0.1:{api.port}", "path": "/stt"},
         "per_minute": 0.006, "units": {"seconds": "response.json:duration"}},
    ])
    yield handle
    handle.stop()


def rows(client: Client) -> list[Any]:
    return list(client.ledger.records())


# ── raw vendor SDKs ─────────────────────────────────────────────────────────

def expected(client: Client, fake: FakeProvider, model: str, stream: bool = False) -> Any:
    """What chat() records for the same payload (priced by the same book)."""
    unillm.observe  # noqa: B018 - chat() is recorded once, by the client, while observing
    fake.queue(Reply(usage=USAGE))
    if stream:
        s = client.chat(model=model, messages=MESSAGES, stream=True)
        for _ in s:
            pass
        return s.cost
    return client.chat(model=model, messages=MESSAGES).cost


def test_a_raw_openai_sdk_call_is_priced_exactly_as_chat_prices_it(client, fake, observed):
    import openai
    sdk = openai.OpenAI(base_url=fake.base_url("openai"), api_key="sk-test", max_retries=0)
    fake.queue(Reply(usage=USAGE))
    sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (row,) = rows(client)
    cost = expected(client, fake, "gpt-4o-mini")
    assert len(rows(client)) == 2  # chat() wrote its own row, once; the hook left it alone
    assert (row.provider, row.model, row.input_tokens, row.cache_read_tokens, row.output_tokens,
            row.reasoning_tokens) == ("openai", "gpt-4o-mini", 1200, 800, 300, 100)
    assert row.total_usd == cost.total_usd and row.total_usd > 0
    assert row.usage_source == "provider" and row.status == "ok"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("vendor", ["openai", "anthropic", "google", "cohere"])
def test_every_vendor_sdk_is_priced_as_chat_prices_the_same_payload(client, fake, observed, vendor, stream):
    """Streams are read lazily by the application: priced when they end."""
    model = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022", "google": "gemini-2.5-flash",
             "cohere": "command-a-03-2025"}[vendor]
    fake.queue(Reply(usage=USAGE, text="a long enough answer to arrive in several chunks"))
    if vendor == "openai":
        import openai
        sdk = openai.OpenAI(base_url=fake.base_url("openai"), api_key="k", max_retries=0)
        if stream:
            s = sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True})
            assert rows(client) == []  # nothing priced before the application reads it
            for _ in s:
                pass
        else:
            sdk.chat.completions.create(model=model, messages=MESSAGES)
    elif vendor == "anthropic":
        import anthropic
        sdk = anthropic.Anthropic(base_url=fake.base_url("anthropic"), api_key="k", max_retries=0)
        if stream:
            with sdk.messages.stream(model=model, max_tokens=500, messages=MESSAGES) as s:
                for _ in s.text_stream:
                    pass
        else:
            sdk.messages.create(model=model, max_tokens=500, messages=MESSAGES)
    elif vendor == "google":
        from google import genai
        g = genai.Client(api_key="k", http_options={"base_url": fake.base_url("google")})
        if stream:
            for _ in g.models.generate_content_stream(model=model, contents="Say hi"):
                pass
        else:
            g.models.generate_content(model=model, contents="Say hi")
    else:
        import cohere
        sdk = cohere.ClientV2(api_key="k", base_url=fake.base_url("cohere"))
        if stream:
            for _ in sdk.chat_stream(model=model, messages=MESSAGES):
                pass
        else:
            sdk.chat(model=model, messages=MESSAGES)
    (row,) = rows(client)
    cost = expected(client, fake, model, stream=stream)
    assert row.model.startswith(model) and row.stream is stream
    chat_row = next(r for r in rows(client) if r.id != row.id)
    buckets = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
    assert [getattr(row, b) for b in buckets] == [getattr(chat_row, b) for b in buckets]
    assert row.output_tokens == 300
    assert row.total_usd == cost.total_usd and row.total_usd > 0


async def test_the_async_openai_sdk_is_metered_too(client, fake, observed):
    import openai
    sdk = openai.AsyncOpenAI(base_url=fake.base_url("openai"), api_key="k", max_retries=0)
    fake.queue(Reply(usage=USAGE))
    await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    await sdk.close()
    (row,) = rows(client)
    assert row.input_tokens == 1200 and row.total_usd > 0


# ── non-LLM APIs ────────────────────────────────────────────────────────────

def test_httpx_requests_and_aiohttp_calls_to_a_per_call_api_are_rows(client, api, observed):
    import aiohttp
    import requests
    httpx.get(api.url + "/search?q=a")
    with httpx.Client() as h:
        h.get(api.url + "/search?q=b")
    requests.get(api.url + "/search?q=c")

    async def both() -> None:
        async with httpx.AsyncClient() as h:
            await h.get(api.url + "/search?q=d")
        async with aiohttp.ClientSession() as s, s.get(api.url + "/search?q=e") as r:
            await r.json()
    asyncio.run(both())
    got = rows(client)
    assert len(got) == 5 == len(api.received)
    assert {(r.provider, r.model) for r in got} == {("search", "query")}
    assert all(r.total_usd == Decimal("0.003") == r.other_usd for r in got)
    assert sum(r.total_usd for r in got) == Decimal("0.015")


def test_a_per_character_api_reads_its_units_from_the_request(client, api, observed):
    import requests
    text = "é" * 1234  # characters, not bytes
    requests.post(api.url + "/tts/voice-1", json={"text": text})
    httpx.post(api.url + "/tts/voice-1", json={"text": "hello"})
    a, b = sorted(rows(client), key=lambda r: r.units["chars"])
    assert b.units["chars"] == 1234 and b.total_usd == Decimal("0.3702")
    assert a.units["chars"] == 5 and a.total_usd == Decimal("0.0015")


def test_a_unit_read_from_the_response_is_priced_after_it(client, api, observed):
    api.reply = {"duration": 90}
    httpx.post(api.url + "/stt", content=b"audio")
    (row,) = rows(client)
    assert row.total_usd == Decimal("0.009")  # 1.5 minutes at $0.006


def test_a_unit_that_cannot_be_read_is_unpriced_with_the_reason_never_zero(client, api, observed):
    api.reply = {"no_duration": True}
    httpx.post(api.url + "/stt", content=b"audio")
    httpx.post(api.url + "/tts/x", json={"words": "no text field"})
    got = rows(client)
    assert [r.status for r in got] == ["unpriced", "unpriced"]
    assert all(r.total_usd is None for r in got)
    assert {r.error_class for r in got} == {"unpriced: response.json:duration: no 'duration' in the response JSON",
                                            "unpriced: request.json:text: no 'text' in the request JSON"}


def test_hosts_with_no_entry_are_left_alone(client, api, observed):
    httpx.get(api.url + "/elsewhere")
    assert rows(client) == [] and len(api.received) == 1


def test_sections_and_tags_label_the_rows(client, api, observed):
    with client.section("agent:research"), client.section("tool:search"):
        httpx.get(api.url + "/search")
    (row,) = rows(client)
    assert row.section == "agent:research/tool:search"


# ── budgets ─────────────────────────────────────────────────────────────────

def test_a_budget_refuses_a_metered_call_before_it_leaves(tmp_path, api):
    client = Client(ledger=f"sqlite:///{tmp_path / 'l.db'}",
                    budgets=[{"name": "all", "limit_usd": "0.007", "period": "total"}])
    with unillm.observe(client, apis=[{"name": "search:query", "match": {"host": f"127.0.0.1:{api.port}"},
                                       "per_call": "0.003"}]):
        httpx.get(api.url + "/a")
        httpx.get(api.url + "/b")
        with pytest.raises(errors.BudgetExceededError):
            httpx.get(api.url + "/c")
    assert len(api.received) == 2  # the third never left
    spent = sum(r.total_usd for r in client.ledger.records() if r.status == "ok")
    assert spent == Decimal("0.006")
    assert [r.status for r in client.ledger.records()].count("budget_denied") == 1
    client.close()


def test_the_openai_sdk_gets_its_own_error_once_not_a_retried_connection_error(tmp_path, fake):
    import openai
    client = Client(ledger=f"sqlite:///{tmp_path / 'l.db'}", providers=fake.providers("openai"),
                    budgets=[{"name": "all", "limit_usd": "0.000001", "period": "total"}])
    sdk = openai.OpenAI(base_url=fake.base_url("openai"), api_key="k")  # the SDK's own retries on
    with unillm.observe(client), pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert info.value.status_code == 402 and "budget" in str(info.value)
    assert fake.requests == []
    assert [r.status for r in client.ledger.records()] == ["budget_denied"]
    client.close()


# ── the handle ──────────────────────────────────────────────────────────────

def test_observe_is_idempotent_and_stop_puts_everything_back(client, api):
    import requests.adapters
    before = (httpx.HTTPTransport.handle_request, requests.adapters.HTTPAdapter.send)
    spec = [{"name": "search:query", "match": {"host": f"127.0.0.1:{api.port}"}, "per_call": 1}]
    a = unillm.observe(client, apis=spec)
    b = unillm.observe(client, apis=spec)
    assert a is b and httpx.HTTPTransport.handle_request is not before[0]
    httpx.get(api.url + "/x")
    a.stop()
    assert (httpx.HTTPTransport.handle_request, requests.adapters.HTTPAdapter.send) == before
    httpx.get(api.url + "/y")
    assert len(rows(client)) == 1


def test_a_bad_apis_entry_is_one_error_naming_the_key(client):
    with pytest.raises(errors.ConfigError) as info:
        unillm.observe(client, apis=[{"name": "tts", "match": {"host": "x.io"}, "per_1k_chars": 1}])
    text = str(info.value)
    assert "apis[0].name" in text and "provider:endpoint" in text
    with pytest.raises(errors.ConfigError) as info:
        unillm.observe(client, apis=[{"name": "voice:tts", "match": {"host": "x.io"}, "per_1k_chars": 1}])
    assert "per_1k_chars needs units.chars" in str(info.value)


def test_apis_in_the_config_file_are_checked_at_load(tmp_path):
    (tmp_path / "unillm.toml").write_text('[[apis]]\nname = "stripe:charges"\nmatch = { host = "api.stripe.com" }\n'
                                          'per_cal = 0.003\n')
    with pytest.raises(errors.ConfigError) as info:
        Client.from_config(tmp_path / "unillm.toml")
    assert "apis[0]" in str(info.value) and "per_call" in str(info.value)


def test_an_openai_stream_without_usage_is_counted_with_tiktoken_and_marked(client, fake, observed):
    import openai
    sdk = openai.OpenAI(base_url=fake.base_url("openai"), api_key="k", max_retries=0)
    fake.queue(Reply(usage=None, text="Hello there, friend"))
    for _ in sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    (row,) = rows(client)
    assert row.usage_source == "tiktoken" and row.output_tokens == 4 and row.input_tokens > 0
    assert row.total_usd > 0


async def test_async_calls_under_a_budget_are_admitted_and_settled_off_the_loop(tmp_path, api):
    import aiohttp
    client = Client(ledger=f"sqlite:///{tmp_path / 'l.db'}",
                    budgets=[{"name": "all", "limit_usd": "0.005", "period": "total"}])
    with unillm.observe(client, apis=[{"name": "search:query", "match": {"host": f"127.0.0.1:{api.port}"},
                                       "per_call": "0.002"}]):
        async with httpx.AsyncClient() as h:
            await h.get(api.url + "/a")
        async with aiohttp.ClientSession() as s:
            async with s.get(api.url + "/b") as r:
                await r.read()
            with pytest.raises(errors.BudgetExceededError):
                await s.get(api.url + "/c")
    assert len(api.received) == 2
    assert sorted(r.status for r in client.ledger.records()) == ["budget_denied", "ok", "ok"]
    await client.aclose()


def test_a_registered_extractor_prices_a_shape_unillm_does_not_know(client, api, observed, tmp_path):
    from unillm.metering.extractors import Extracted, unregister_extractor

    def search(ex):
        if ex.path != "/v2/answer":
            return None
        return Extracted(provider="openai", model="gpt-4o-mini", input_tokens=json.loads(ex.response_body)["in"])
    unillm.register_extractor("answers", search)
    try:
        api.reply = {"in": 2000}
        httpx.post(api.url + "/v2/answer", json={})
        httpx.post(api.url + "/other", json={})  # the extractor says no: nothing recorded
    finally:
        unregister_extractor("answers")
    (row,) = rows(client)
    assert row.input_tokens == 2000 and row.total_usd == Decimal("0.0003")  # $0.15 / 1M


def test_the_example_runs_offline_and_prints_the_section_tree():
    import subprocess
    import sys
    example = Path(__file__).parent.parent / "examples" / "track_any_api.py"
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[1:]}
    assert lines["agent:research"][0] == "3" and lines["tool:search"] == ["2", "0.01"]
    assert lines["agent:narrate"] == ["1", "0.168"]


def test_record_unknown_records_every_other_host_unpriced(client, api):
    with unillm.observe(client, record_unknown=True):
        httpx.post(api.url + "/anything/here?secret=1", json={})
    (row,) = rows(client)
    assert (row.provider, row.model, row.status) == (f"127.0.0.1:{api.port}", "/anything/here", "unpriced")
    assert row.total_usd is None and "no [[apis]] entry" in row.error_class


def test_a_requests_stream_is_metered_when_the_application_reads_it_to_the_end(client, api, observed):
    import requests
    api.reply = {"duration": 30}
    r = requests.post(api.url + "/stt", data=b"audio", stream=True)
    assert rows(client) == []  # not read yet
    body = b"".join(r.iter_content(chunk_size=4))
    assert json.loads(body) == {"duration": 30}
    (row,) = rows(client)
    assert row.total_usd == Decimal("0.003")  # half a minute at $0.006

"""The real ``anthropic`` SDK against FakeProvider, through AnthropicAdapter."""

from __future__ import annotations

import warnings

import json
import subprocess
import sys
import time

import pytest

from unillm import errors
from unillm.adapters.anthropic.adapter import AnthropicAdapter
from unillm.adapters.anthropic.convert import DEFAULT_MAX_TOKENS
from unillm.profiles import build_settings
from unillm.testing import FakeProvider, Reply
from unillm.types import ChatRequest

MODEL = "claude-haiku-4-5"
HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
USAGE = {"input_tokens": 12, "cache_read_tokens": 30, "cache_write_tokens": 4, "output_tokens": 9,
         "reasoning_tokens": 2}


@pytest.fixture
async def make_adapter():
    """Build adapters the way the Client does; their SDK clients are closed after the test."""
    made: list[AnthropicAdapter] = []

    def make(fake: FakeProvider, **update) -> AnthropicAdapter:
        settings = build_settings(fake.providers("anthropic"))["anthropic"]
        made.append(AnthropicAdapter(settings.model_copy(update={"timeout": 5, **update})))
        return made[-1]

    yield make
    for a in made:
        a.close()
        await a.aclose()


@pytest.fixture
def adapter(fake: FakeProvider, make_adapter) -> AnthropicAdapter:
    return make_adapter(fake)


def request(**params) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=params.pop("messages", HI), **params)


async def call(adapter: AnthropicAdapter, req: ChatRequest, *, mode: str = "sync", stream: bool = False):
    """One attempt, with SDK errors translated at the Client's boundary.

    Returns (content, tool calls as {name, arguments}, finish_reason, usage, chunks).
    """
    try:
        if not stream:
            r = adapter.complete(req, MODEL) if mode == "sync" else await adapter.acomplete(req, MODEL)
            calls = [{"id": tc.id, "name": tc.function.name, "arguments": json.loads(tc.function.arguments)}
                     for tc in r.choices[0].message.tool_calls or []]
            return r.content, calls, r.choices[0].finish_reason, r.usage, None
        if mode == "sync":
            chunks = list(adapter.stream(req, MODEL))
        else:
            chunks = [c async for c in adapter.astream(req, MODEL)]
    except Exception as exc:
        err = adapter.translate_error(exc, MODEL)
        if err is None:
            raise
        raise err from exc
    return (*fold(chunks), chunks)


def fold(chunks):
    text, calls = "", {}
    for c in chunks:
        delta = c.choices[0].delta
        text += delta.content or ""
        for d in delta.tool_calls or []:
            entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = d.id or entry["id"]
            entry["name"] += (d.function or {}).get("name", "")
            entry["arguments"] += (d.function or {}).get("arguments", "")
    tool_calls = [{**v, "arguments": json.loads(v["arguments"])} for _, v in sorted(calls.items())]
    return text or None, tool_calls, chunks[-1].choices[0].finish_reason, chunks[-1].usage


MODES = pytest.mark.parametrize("mode", ["sync", "async"])
STREAM = pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])


# ── the happy paths ──────────────────────────────────────────────────────────

@MODES
@STREAM
async def test_text(fake, adapter, mode, stream) -> None:
    fake.queue(Reply(text="Bonjour, le monde!", usage=USAGE, chunk_size=5))
    content, calls, finish, usage, chunks = await call(adapter, request(), mode=mode, stream=stream)
    assert (content, calls, finish) == ("Bonjour, le monde!", [], "stop")
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (12, 30, 4)
    assert (usage.output_tokens, usage.reasoning_tokens, usage.prompt_tokens) == (9, 2, 46)
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.json["model"] == MODEL and sent.json["max_tokens"] == DEFAULT_MAX_TOKENS
    assert sent.json["messages"] == HI
    assert sent.json.get("stream", False) is stream
    if stream:
        assert len([c for c in chunks if c.choices[0].delta.content]) == 4  # real deltas, not one blob
        assert all(c.usage is None for c in chunks[:-1])


@MODES
@STREAM
async def test_tool_call(fake, adapter, mode, stream) -> None:
    fake.queue(Reply(text="", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "toolu_1"},
                                          {"name": "get_weather", "arguments": {"city": "Rome"}, "id": "toolu_2"}],
                     usage=USAGE, chunk_size=4))
    req = request(tools=TOOLS, tool_choice="required")
    content, calls, finish, usage, _ = await call(adapter, req, mode=mode, stream=stream)
    assert content is None and finish == "tool_calls"
    assert calls == [{"id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}},
                     {"id": "toolu_2", "name": "get_weather", "arguments": {"city": "Rome"}}]
    assert usage.output_tokens == 9
    sent = fake.requests[-1].json
    assert sent["tools"][0]["name"] == "get_weather" and sent["tool_choice"] == {"type": "any"}


@MODES
@STREAM
async def test_usage_absent_is_none(fake, adapter, mode, stream) -> None:
    fake.queue(Reply(usage=None))
    content, _, finish, usage, chunks = await call(adapter, request(), mode=mode, stream=stream)
    assert content == "Hello from FakeProvider." and finish == "stop"
    assert usage is None
    assert chunks is None or all(c.usage is None for c in chunks)


@MODES
async def test_stream_output_usage_is_not_summed(fake, adapter, mode) -> None:
    """message_start says output 1, message_delta says the cumulative 9: the answer is 9."""
    fake.queue(Reply(usage=USAGE))
    *_, usage, _ = await call(adapter, request(), mode=mode, stream=True)
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (12, 9, 55)


async def test_request_carries_key_headers_and_params(fake, make_adapter) -> None:
    adapter = make_adapter(fake, headers={"x-team": "support"})
    fake.queue(Reply(model="claude-haiku-4-5-20251001"))
    req = request(messages=[{"role": "system", "content": "Be brief."}, *HI], max_tokens=64, stop=["END"],
                  user="u-1")
    r = adapter.complete(req, MODEL)
    sent = fake.requests[-1]
    assert sent.headers["authorization"] == "Bearer fake-key"  # SDK 2.x sends the key as a bearer token
    assert sent.headers["anthropic-version"]
    assert sent.headers["x-team"] == "support"
    assert sent.headers["x-stainless-retry-count"] == "0"
    assert sent.json["system"] == "Be brief." and sent.json["max_tokens"] == 64
    assert sent.json["stop_sequences"] == ["END"] and sent.json["metadata"] == {"user_id": "u-1"}
    assert r.model == "claude-haiku-4-5-20251001" and r.provider == "anthropic"
    assert r.id.startswith("msg_")


async def test_sdk_retries_are_off(fake, adapter) -> None:
    fake.queue(Reply(status=529), Reply(text="second"))
    with pytest.raises(errors.ServerError):
        await call(adapter, request())
    assert len(fake.requests) == 1  # the Client retries, never the SDK


# ── errors ───────────────────────────────────────────────────────────────────

ERRORS = [
    (Reply(status=400, error="messages: field required"), errors.BadRequestError),
    (Reply(status=400, error="prompt is too long: 210000 tokens > 200000 maximum"),
     errors.ContextWindowExceededError),
    (Reply(status=401, error="invalid x-api-key"), errors.AuthenticationError),
    (Reply(status=403, error="model not allowed"), errors.PermissionDeniedError),
    (Reply(status=404, error="model: claude-nope"), errors.NotFoundError),
    (Reply(status=429, error="rate limited", headers={"retry-after": "7"}), errors.RateLimitError),
    (Reply(status=500, error="internal"), errors.ServerError),
    (Reply(status=503, error="unavailable"), errors.ServerError),
    (Reply(status=529, error="Overloaded"), errors.ServerError),
]


@MODES
@STREAM
@pytest.mark.parametrize("reply,cls", ERRORS, ids=[f"{r.status}-{c.__name__}" for r, c in ERRORS])
async def test_status_errors(fake, adapter, mode, stream, reply, cls) -> None:
    fake.queue(reply)
    with pytest.raises(cls) as info:
        await call(adapter, request(), mode=mode, stream=stream)
    err = info.value
    assert type(err) is cls
    assert (err.status_code, err.provider, err.model) == (reply.status, "anthropic", MODEL)
    assert reply.error in str(err)
    assert "fake-key" not in str(err)
    assert isinstance(err.__cause__, Exception)  # chained to the SDK exception
    if reply.status == 429:
        assert err.retry_after == 7.0 and err.retryable
    if cls is errors.ContextWindowExceededError:
        assert isinstance(err, errors.BadRequestError)


@MODES
@STREAM
async def test_timeout(fake, make_adapter, mode, stream) -> None:
    adapter = make_adapter(fake, timeout=0.3)
    fake.queue(Reply(delay=1.5))
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError) as info:
        await call(adapter, request(), mode=mode, stream=stream)
    assert time.monotonic() - started < 1.4
    assert info.value.retryable and info.value.provider == "anthropic"


@MODES
async def test_timeout_while_reading_a_stream(fake, make_adapter, mode) -> None:
    adapter = make_adapter(fake, timeout=0.3)
    fake.queue(Reply(text="slow words", chunk_size=2, chunk_delay=0.6))
    with pytest.raises(errors.TimeoutError):
        await call(adapter, request(), mode=mode, stream=True)


@MODES
async def test_malformed_json_is_a_response_error(fake, adapter, mode) -> None:
    fake.queue(Reply(malformed=True))
    with pytest.raises(errors.ResponseError):
        await call(adapter, request(), mode=mode)


@MODES
@pytest.mark.parametrize("cut_after", [1, 4])
async def test_stream_cut_midway(fake, adapter, mode, cut_after) -> None:
    fake.queue(Reply(text="a fairly long answer that streams in many pieces", cut_after=cut_after))
    with pytest.raises((errors.ResponseError, errors.ConnectionError)):
        await call(adapter, request(), mode=mode, stream=True)


def _events(reply: Reply, ctx_model: str = MODEL) -> list:
    from unillm.testing.fake import Ctx
    from unillm.testing.protocols.anthropic import AnthropicProtocol
    ctx = Ctx("anthropic", "/v1/messages", {"messages": HI}, ctx_model, True, 1)
    return list(AnthropicProtocol().render_stream(reply, ctx))


@MODES
async def test_stream_that_ends_before_message_stop(fake, adapter, mode) -> None:
    """A well-formed HTTP stream whose events stop early is still an incomplete answer."""
    events = _events(Reply())
    fake.queue(Reply(events=[e for e in events if e[0] not in ("message_delta", "message_stop")]))
    with pytest.raises(errors.ResponseError, match="before the vendor sent a stop reason"):
        await call(adapter, request(), mode=mode, stream=True)


@MODES
async def test_error_event_inside_a_stream(fake, adapter, mode) -> None:
    events = _events(Reply())[:3]
    events.append(("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    fake.queue(Reply(events=events))
    with pytest.raises(errors.ServerError, match="Overloaded") as info:
        await call(adapter, request(), mode=mode, stream=True)
    assert info.value.retryable


def test_translate_error_leaves_foreign_errors_alone(adapter) -> None:
    assert adapter.translate_error(KeyError("x"), MODEL) is None
    ours = errors.ResponseError("bad", provider="anthropic")
    assert adapter.translate_error(ours, MODEL) is ours


# ── closing a stream early ───────────────────────────────────────────────────

def _one_connection_client(fake: FakeProvider, async_: bool):
    """An SDK client whose pool holds ONE connection: a leaked stream blocks the next call."""
    import anthropic
    import httpx2
    limits, timeout = httpx2.Limits(max_connections=1), httpx2.Timeout(5, pool=1)
    if async_:
        return anthropic.AsyncAnthropic(api_key="fake-key", base_url=fake.url, max_retries=0,
                                        http_client=httpx2.AsyncClient(limits=limits, timeout=timeout))
    return anthropic.Anthropic(api_key="fake-key", base_url=fake.url, max_retries=0,
                               http_client=httpx2.Client(limits=limits, timeout=timeout))


def test_closing_a_stream_early_releases_the_connection(fake, adapter) -> None:
    adapter._sync_client = _one_connection_client(fake, async_=False)
    fake.queue(Reply(text="x" * 400, chunk_size=1, chunk_delay=0.01), Reply(text="next"))
    gen = adapter.stream(request(), MODEL)
    first = [next(gen), next(gen)]
    gen.close()
    assert first[1].choices[0].delta.content == "x"
    assert adapter.complete(request(), MODEL).content == "next"  # would time out on the pool if leaked


async def test_closing_an_async_stream_early_releases_the_connection(fake, adapter) -> None:
    adapter._async_client = _one_connection_client(fake, async_=True)
    fake.queue(Reply(text="x" * 400, chunk_size=1, chunk_delay=0.01), Reply(text="next"))
    agen = adapter.astream(request(), MODEL)
    await agen.__anext__()
    await agen.__anext__()
    await agen.aclose()
    assert (await adapter.acomplete(request(), MODEL)).content == "next"


def test_importing_the_adapter_loads_no_sdk() -> None:
    code = ("import sys, unillm.adapters.anthropic.adapter, unillm.testing.protocols.anthropic; "
            "assert 'anthropic' not in sys.modules, 'SDK imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ── end to end through the Client ────────────────────────────────────────────

@pytest.fixture
async def client(fake: FakeProvider):
    from unillm import Client
    c = Client(providers=fake.providers(), ledger="off", cache="off", sleep=lambda s: None)
    yield c
    c.close()
    await c.aclose()


CACHED = {"input_tokens": 100, "cache_read_tokens": 1000, "cache_write_tokens": 50, "output_tokens": 20}


def test_client_prices_anthropic_cache_buckets(fake, client) -> None:
    from decimal import Decimal
    fake.queue(Reply(usage=CACHED))
    r = client.chat(model=MODEL, messages=HI)
    assert r.content == "Hello from FakeProvider." and r.provider == "anthropic"
    assert (r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens) == (1150, 1000)
    # pricing.toml claude-haiku-4-5: input 1.00, cache read 0.10, cache write 1.25, output 5.00 per Mtok
    assert r.cost.input_usd == Decimal("0.0001") and r.cost.cache_read_usd == Decimal("0.0001")
    assert r.cost.cache_write_usd == Decimal("0.0000625") and r.cost.output_usd == Decimal("0.0001")
    assert r.cost.total_usd == Decimal("0.0003625")
    assert fake.requests[-1].path == "/v1/messages"


ONE_HOUR = {"input_tokens": 10, "cache_write_tokens": 3000, "cache_write_1h_tokens": 1000, "output_tokens": 5}


@MODES
@STREAM
async def test_client_prices_1h_cache_writes_at_the_1h_rate(fake, client, mode, stream) -> None:
    from decimal import Decimal
    fake.queue(Reply(usage=ONE_HOUR))
    if not stream:
        if mode == "sync":
            r = client.chat(model=MODEL, messages=HI)
        else:
            r = await client.achat(model=MODEL, messages=HI)
        usage, cost = r.usage, r.cost
    elif mode == "sync":
        s = client.chat(model=MODEL, messages=HI, stream=True)
        list(s)
        usage, cost = s.usage, s.cost
    else:
        s = await client.achat(model=MODEL, messages=HI, stream=True)
        _ = [c async for c in s]
        usage, cost = s.usage, s.cost
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens, usage.prompt_tokens) == (3000, 1000, 3010)
    # claude-haiku-4-5 per Mtok: input 1.00, 5-minute write 1.25, 1-hour write 2.00, output 5.00
    assert cost.cache_write_usd == Decimal("0.0045")    # 2000 x 1.25 + 1000 x 2.00 = 2500 + 2000
    assert cost.total_usd == Decimal("0.004535")        # 10 x 1 + 4500 + 5 x 5 = 10 + 4500 + 25
    sent = fake.requests[-1]
    assert sent.path == "/v1/messages" and sent.json.get("stream", False) is stream


def test_fake_renders_1h_writes_in_the_ttl_breakdown(fake) -> None:
    import anthropic
    fake.queue(Reply(usage=ONE_HOUR))
    with anthropic.Anthropic(api_key=fake.api_key, base_url=fake.base_url("anthropic"), max_retries=0) as sdk:
        usage = sdk.messages.create(model=MODEL, max_tokens=8, messages=HI).usage
    assert usage.cache_creation_input_tokens == 3000
    by_ttl = usage.cache_creation
    assert (by_ttl.ephemeral_5m_input_tokens, by_ttl.ephemeral_1h_input_tokens) == (2000, 1000)


async def test_client_async_tool_call(fake, client) -> None:
    fake.queue(Reply(text="", tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    r = await client.achat(model=MODEL, messages=HI, tools=TOOLS)
    assert r.choices[0].finish_reason == "tool_calls"
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"city": "Oslo"}
    assert r.usage.source == "provider"


def test_client_stream_usage_from_the_vendor(fake, client) -> None:
    fake.queue(Reply(text="streamed words", usage=CACHED))
    stream = client.chat(model=MODEL, messages=HI, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "streamed words"
    assert stream.usage.output_tokens == 20 and stream.usage.cache_write_tokens == 50
    assert fake.requests[-1].json["stream"] is True


async def test_client_async_stream(fake, client) -> None:
    fake.queue(Reply(text="async words", usage=CACHED))
    stream = await client.achat(model=MODEL, messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "async words" and stream.usage.input_tokens == 100


def test_client_unsupported_param_is_refused_before_sending_when_drop_params_is_false(fake, client) -> None:
    with pytest.raises(errors.UnsupportedParamError, match="temperature"):
        client.chat(model=MODEL, messages=HI, temperature=0.2, drop_params=False)
    assert fake.requests == []
    quiet = client.chat(model=MODEL, messages=HI, temperature=0.2, drop_params=True)
    assert quiet.content and quiet.dropped_params == ("temperature",)
    assert "temperature" not in fake.requests[-1].json


def test_code_migrated_from_litellm_passing_temperature_works_with_one_warning(fake, tmp_path) -> None:
    from unillm import Client
    from unillm.types import _WARNED_DROPS, DroppedParamWarning
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path / 'l.db'}")
    _WARNED_DROPS.discard(("anthropic", "temperature"))
    with pytest.warns(DroppedParamWarning, match="anthropic does not support the parameter 'temperature'"):
        first = client.chat(model=MODEL, messages=HI, temperature=0.7)   # drop_params = "warn", the default
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # once per parameter and provider
        again = client.chat(model=MODEL, messages=HI, temperature=0.2)
    assert first.content and first.dropped_params == again.dropped_params == ("temperature",)
    assert all("temperature" not in r.json for r in fake.requests)
    rows = list(client.ledger.records())
    assert [r.dropped_params for r in rows] == [("temperature",), ("temperature",)]


def test_sampling_is_a_profile_capability(fake) -> None:
    from unillm import Client
    providers = fake.providers()
    providers["anthropic"] = {**providers["anthropic"], "capabilities": {"temperature": True}}
    client = Client(providers=providers, ledger="off")
    r = client.chat(model=MODEL, messages=HI, temperature=0.2, drop_params=False)
    assert r.dropped_params == () and fake.requests[-1].json["temperature"] == 0.2


def test_client_maps_auth_errors(fake, client) -> None:
    fake.queue(Reply(status=401, error="invalid x-api-key"))
    with pytest.raises(errors.AuthenticationError) as info:
        client.chat(model=MODEL, messages=HI)
    assert "fake-key" not in str(info.value) and len(fake.requests) == 1


def test_missing_key_names_the_env_var(fake, make_adapter, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no SDK profile on disk either
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    providers = fake.providers("anthropic")
    del providers["anthropic"]["api_key"]
    adapter = AnthropicAdapter(build_settings(providers)["anthropic"])
    with pytest.raises(errors.AuthenticationError, match="ANTHROPIC_API_KEY"):
        adapter.complete(request(), MODEL)
    assert fake.requests == []
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    assert make_adapter(fake, api_key=None).complete(request(), MODEL).content
    assert fake.requests[-1].headers["authorization"] == "Bearer env-key"


@STREAM
async def test_json_schema_is_sent_the_way_the_api_accepts_it(fake, adapter, stream) -> None:
    schema = {"type": "object", "properties": {"total": {"type": "number", "minimum": 0}}, "required": ["total"]}
    fake.queue(Reply(text='{"total": 14.0}'))
    req = request(response_format={"type": "json_schema", "json_schema": {"name": "order", "schema": schema}})
    content, *_ = await call(adapter, req, stream=stream)
    assert json.loads(content) == {"total": 14.0}
    sent = fake.requests[-1].json["output_config"]["format"]
    assert sent["type"] == "json_schema"
    assert sent["schema"]["additionalProperties"] is False  # closed, as structured outputs require
    assert sent["schema"]["required"] == ["total"]
    assert "minimum" in sent["schema"]["properties"]["total"]["description"]  # unsupported -> described


async def test_unusable_json_schema_is_an_invalid_request(fake, adapter) -> None:
    req = request(response_format={"type": "json_schema", "json_schema": {"schema": {"title": "no type"}}})
    with pytest.raises(errors.InvalidRequestError, match="response_format|JSON schema"):
        await call(adapter, req)
    assert fake.requests == []


async def test_client_parses_a_pydantic_response_format(fake, client) -> None:
    from pydantic import BaseModel

    class Order(BaseModel):
        item: str
        quantity: int

    fake.queue(Reply(text='{"item": "Green Tea", "quantity": 2}'))
    r = await client.achat(model=MODEL, messages=HI, response_format=Order)
    assert r.choices[0].message.parsed == Order(item="Green Tea", quantity=2)
    assert fake.requests[-1].json["output_config"]["format"]["schema"]["additionalProperties"] is False


def test_fake_stream_has_the_vendors_event_sequence() -> None:
    from tests.conftest import ref
    recorded = [e["event"] for e in ref("anthropic_stream_basic")]
    rendered = [name for name, _ in _events(Reply(text="Hello there!", chunk_size=6))]
    assert rendered == ["message_start", "content_block_start", "ping", "content_block_delta",
                        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert sorted(set(rendered)) == sorted(set(recorded))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_stream_events_are_read_raw_not_parsed_into_sdk_models(fake, adapter, monkeypatch, mode) -> None:
    """A stream's events reach our converter as the vendor's JSON: the SDK builds none of its
    event models (it did, one per chunk, before our converter built ours: ~35 µs a chunk), yet
    the answer, its finish and the exact usage are the same."""
    import anthropic._base_client as sdk_base
    built: list[object] = []
    real = sdk_base.construct_type
    monkeypatch.setattr(sdk_base, "construct_type", lambda **kw: built.append(kw["type_"]) or real(**kw))
    fake.queue(Reply(text="one two three four", chunk_size=4, usage=USAGE))
    content, _, finish, usage, chunks = await call(adapter, request(), mode=mode, stream=True)
    assert content == "one two three four" and finish == "stop" and len(chunks) > 4
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (12, 30, 4)
    assert (usage.output_tokens, usage.reasoning_tokens) == (9, 2)
    assert built == []

"""The real openai SDK, through OpenAIAdapter, against FakeProvider on loopback."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from unillm import errors
from unillm.adapters.openai.adapter import OpenAIAdapter
from unillm.profiles import build_settings
from unillm.testing import Reply
from unillm.types import ChatRequest

MODEL = "gpt-4o-mini"
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
USAGE = {"input_tokens": 50, "cache_read_tokens": 30, "output_tokens": 20, "reasoning_tokens": 5}


def make_adapter(fake, provider: str = "openai", **update) -> OpenAIAdapter:
    settings = build_settings(fake.providers(provider))[provider]
    return OpenAIAdapter(settings.model_copy(update={"timeout": 5, **update}))


@pytest.fixture
def adapter(fake):
    a = make_adapter(fake)
    yield a
    a.close()


def request(**kw) -> ChatRequest:
    kw.setdefault("messages", [{"role": "user", "content": "What's the weather in Paris?"}])
    return ChatRequest(model=MODEL, **kw)


# ── one way to run every mode, and read back what the user would see ─────────

async def run(adapter, req, sync: bool, stream: bool) -> dict:
    """text, tool calls, finish reason and usage, whichever mode produced them."""
    if not stream:
        r = adapter.complete(req, MODEL) if sync else await adapter.acomplete(req, MODEL)
        msg = r.choices[0].message
        calls = [(tc.id, tc.function.name, tc.function.parsed_arguments()) for tc in msg.tool_calls or []]
        return {"text": msg.content, "calls": calls, "finish": r.choices[0].finish_reason,
                "usage": r.usage, "usage_chunks": None, "model": r.model, "provider": r.provider}
    if sync:
        chunks = list(adapter.stream(req, MODEL))
    else:
        chunks = [c async for c in adapter.astream(req, MODEL)]
    return assemble(chunks)


def assemble(chunks) -> dict:
    import json
    text, calls, finish = "", {}, None
    for c in chunks:
        for ch in c.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
            for d in ch.delta.tool_calls or []:
                slot = calls.setdefault(d.index, {"id": None, "name": "", "args": ""})
                slot["id"] = d.id or slot["id"]
                slot["name"] += (d.function or {}).get("name", "")
                slot["args"] += (d.function or {}).get("arguments", "")
    with_usage = [c for c in chunks if c.usage is not None]
    return {"text": text or None, "finish": finish,
            "calls": [(s["id"], s["name"], json.loads(s["args"])) for s in calls.values()],
            "usage": chunks[-1].usage if chunks else None, "usage_chunks": len(with_usage),
            "model": chunks[0].model, "provider": chunks[0].provider}


MODES = [pytest.param(s, st, id=f"{'sync' if s else 'async'}-{'stream' if st else 'plain'}")
         for s in (True, False) for st in (False, True)]


# ── the matrix: {sync, async} x {plain, stream} x {text, tool call} ──────────

@pytest.mark.parametrize("sync, stream", MODES)
async def test_text(fake, adapter, sync, stream):
    fake.queue(Reply(text="It is sunny in Paris today.", usage=USAGE, chunk_size=5))
    out = await run(adapter, request(), sync, stream)
    assert out["text"] == "It is sunny in Paris today."
    assert out["finish"] == "stop" and out["calls"] == []
    assert out["model"] == MODEL and out["provider"] == "openai"
    u = out["usage"]
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (50, 30, 20, 5)
    assert u.prompt_tokens == 80 and u.source == "provider"
    if stream:
        assert out["usage_chunks"] == 1  # taken once, on the last chunk


@pytest.mark.parametrize("sync, stream", MODES)
async def test_tool_call(fake, adapter, sync, stream):
    fake.queue(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_w1"}],
                     chunk_size=4))
    out = await run(adapter, request(tools=[TOOL], tool_choice="required"), sync, stream)
    assert out["calls"] == [("call_w1", "get_weather", {"city": "Paris"})]
    assert out["finish"] == "tool_calls" and out["text"] is None
    sent = fake.requests[-1].json
    assert sent["tools"] == [TOOL] and sent["tool_choice"] == "required"


@pytest.mark.parametrize("sync, stream", MODES)
async def test_no_usage_reported(fake, adapter, sync, stream):
    fake.queue(Reply(text="ok", usage=None))
    out = await run(adapter, request(), sync, stream)
    assert out["text"] == "ok" and out["usage"] is None
    if stream:
        assert out["usage_chunks"] == 0


# ── what the SDK actually sent ───────────────────────────────────────────────

def test_request_on_the_wire(fake, adapter):
    adapter.complete(request(temperature=0.3, max_tokens=40, stop=["END"], seed=3), MODEL)
    rec = fake.requests[-1]
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == "Bearer fake-key"
    assert rec.json == {"model": MODEL,
                        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
                        "temperature": 0.3, "max_tokens": 40, "stop": ["END"], "seed": 3}
    assert not rec.stream


def test_stream_request_asks_for_usage(fake, adapter):
    list(adapter.stream(request(), MODEL))
    assert fake.requests[-1].json["stream"] is True
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}


def test_profile_headers_and_sdk_retries_off(fake):
    a = make_adapter(fake, headers={"X-Title": "unillm-tests"})
    fake.queue(Reply(status=500))
    with pytest.raises(Exception) as info:
        a.complete(request(), MODEL)
    assert isinstance(a.translate_error(info.value, MODEL), errors.ServerError)
    assert len(fake.requests) == 1  # the SDK did not retry: the Client does that
    assert fake.requests[-1].headers["x-title"] == "unillm-tests"


def test_reasoning_model_gets_max_completion_tokens(fake, adapter):
    adapter.complete(request(max_tokens=99), "o3-mini")
    assert fake.requests[-1].json["max_completion_tokens"] == 99
    assert "max_tokens" not in fake.requests[-1].json


def test_extra_params_reach_the_wire(fake, adapter):
    adapter.complete(request(extra={"logprobs": True, "safe_prompt": True}), MODEL)
    sent = fake.requests[-1].json
    assert sent["logprobs"] is True and sent["safe_prompt"] is True


# ── OpenAI-compatible vendors through the same adapter ───────────────────────

def test_compatible_vendor_profile(fake):
    a = make_adapter(fake, "groq")
    r = a.complete(request(), "llama-3.3-70b-versatile")
    assert r.provider == "groq" and r.content == "Hello from FakeProvider."
    assert fake.requests[-1].json["model"] == "llama-3.3-70b-versatile"


def test_vendor_that_puts_usage_on_the_last_content_chunk(fake):
    a = make_adapter(fake, "mistral")  # stream_usage = false: no stream_options sent
    base = {"id": "m1", "object": "chat.completion.chunk", "created": 1, "model": "mistral-small"}
    fake.queue(Reply(events=[
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Bon"}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "jour"}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}},
        "[DONE]"]))
    out = assemble(list(a.stream(request(), "mistral-small")))
    assert "stream_options" not in fake.requests[-1].json
    assert out["text"] == "Bonjour" and out["usage_chunks"] == 1
    assert (out["usage"].input_tokens, out["usage"].output_tokens) == (12, 2)


def test_openai_key_never_goes_to_another_vendor(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    a = make_adapter(fake, "groq", api_key=None)  # loopback server: a placeholder key
    a.complete(request(), "llama-3.3-70b-versatile")
    assert "sk-openai-secret" not in fake.requests[-1].headers["authorization"]


def test_openai_org_and_project_stay_with_openai(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-456")
    make_adapter(fake, "openai").complete(request(), MODEL)
    assert fake.requests[-1].headers["openai-organization"] == "org-123"
    assert fake.requests[-1].headers["openai-project"] == "proj-456"
    make_adapter(fake, "groq").complete(request(), "llama-3.3-70b-versatile")
    assert "openai-organization" not in fake.requests[-1].headers
    assert "openai-project" not in fake.requests[-1].headers


def test_missing_key_for_a_remote_vendor(fake):
    a = make_adapter(fake, "groq", api_key=None, base_url="https://api.groq.com/openai/v1")
    with pytest.raises(errors.AuthenticationError, match="GROQ_API_KEY"):
        a.complete(request(), "llama-3.3-70b-versatile")
    assert fake.requests == []


# ── errors: every class from a scripted status ───────────────────────────────

STATUS_CASES = [
    (400, "Invalid value for 'temperature'.", errors.BadRequestError),
    (400, "This model's maximum context length is 128000 tokens. However, your messages resulted in "
          "130000 tokens.", errors.ContextWindowExceededError),
    (401, None, errors.AuthenticationError),
    (403, None, errors.PermissionDeniedError),
    (404, "The model `gpt-9` does not exist or you do not have access to it.", errors.NotFoundError),
    (422, None, errors.BadRequestError),
    (429, None, errors.RateLimitError),
    (500, None, errors.ServerError),
    (503, None, errors.ServerError),
]


def translated(adapter, call):
    with pytest.raises(Exception) as info:
        call()
    err = adapter.translate_error(info.value, MODEL)
    assert err is not None, f"untranslated {info.value!r}"
    return err


@pytest.mark.parametrize("status, message, cls", STATUS_CASES)
def test_status_errors(fake, adapter, status, message, cls):
    fake.queue(Reply(status=status, error=message))
    err = translated(adapter, lambda: adapter.complete(request(), MODEL))
    assert type(err) is cls
    assert (err.status_code, err.provider, err.model) == (status, "openai", MODEL)
    if message:
        assert message in str(err)
    assert err.body["type"]  # the vendor's error object is kept


@pytest.mark.parametrize("status, message, cls", STATUS_CASES[:3] + STATUS_CASES[-2:])
async def test_status_errors_async_and_streaming(fake, adapter, status, message, cls):
    async def astream():
        return [c async for c in adapter.astream(request(), MODEL)]

    for call in (lambda: adapter.acomplete(request(), MODEL), astream):
        fake.queue(Reply(status=status, error=message))
        with pytest.raises(Exception) as info:
            await call()
        assert type(adapter.translate_error(info.value, MODEL)) is cls
    fake.queue(Reply(status=status, error=message))
    assert type(translated(adapter, lambda: list(adapter.stream(request(), MODEL)))) is cls


@pytest.mark.parametrize("headers, expected", [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5),
                                                ({}, None)])
def test_rate_limit_retry_after(fake, adapter, headers, expected):
    fake.queue(Reply(status=429, error="Rate limit reached for gpt-4o-mini.", headers=headers))
    err = translated(adapter, lambda: adapter.complete(request(), MODEL))
    assert isinstance(err, errors.RateLimitError) and err.retryable
    assert err.retry_after == expected


def test_api_key_is_scrubbed_from_error_messages(fake, adapter):
    fake.queue(Reply(status=401, error="Incorrect API key provided: fake-key. Find your key at ..."))
    err = translated(adapter, lambda: adapter.complete(request(), MODEL))
    assert isinstance(err, errors.AuthenticationError)
    assert "fake-key" not in str(err) and "Incorrect API key provided" in str(err)


def test_timeout(fake):
    a = make_adapter(fake, timeout=0.3)
    fake.queue(Reply(delay=1.5))
    t0 = time.monotonic()
    err = translated(a, lambda: a.complete(request(), MODEL))
    assert isinstance(err, errors.TimeoutError) and err.retryable
    assert time.monotonic() - t0 < 1.4  # one attempt, no SDK retries


async def test_timeout_async(fake):
    a = make_adapter(fake, timeout=0.3)
    fake.queue(Reply(delay=1.5))
    with pytest.raises(Exception) as info:
        await a.acomplete(request(), MODEL)
    assert isinstance(a.translate_error(info.value, MODEL), errors.TimeoutError)


def test_malformed_json(fake, adapter):
    fake.queue(Reply(malformed=True))
    err = translated(adapter, lambda: adapter.complete(request(), MODEL))
    assert isinstance(err, errors.ResponseError) and err.provider == "openai"


async def test_malformed_json_async(fake, adapter):
    fake.queue(Reply(malformed=True))
    with pytest.raises(Exception) as info:
        await adapter.acomplete(request(), MODEL)
    assert isinstance(adapter.translate_error(info.value, MODEL), errors.ResponseError)


def test_stream_cut_midway(fake, adapter):
    fake.queue(Reply(text="a long answer that will not arrive in full", chunk_size=3, cut_after=4))
    got = []
    with pytest.raises(Exception) as info:
        for chunk in adapter.stream(request(), MODEL):
            got.append(chunk)
    err = adapter.translate_error(info.value, MODEL)
    assert isinstance(err, (errors.ResponseError, errors.ConnectionError))
    assert got and all(c.usage is None for c in got)


async def test_stream_cut_midway_async(fake, adapter):
    fake.queue(Reply(text="a long answer that will not arrive in full", chunk_size=3, cut_after=4))
    with pytest.raises(Exception) as info:
        async for _ in adapter.astream(request(), MODEL):
            pass
    err = adapter.translate_error(info.value, MODEL)
    assert isinstance(err, (errors.ResponseError, errors.ConnectionError))


def test_stream_ending_without_finish_reason_is_an_error(fake, adapter):
    base = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    fake.queue(Reply(events=[{**base, "choices": [{"index": 0, "delta": {"content": "Hel"}}]}, "[DONE]"]))
    with pytest.raises(errors.ResponseError, match="finish reason"):
        list(adapter.stream(request(), MODEL))


def test_error_event_inside_a_stream(fake, adapter):
    fake.queue(Reply(events=[{"error": {"message": "The server had an error", "type": "server_error"}}]))
    err = translated(adapter, lambda: list(adapter.stream(request(), MODEL)))
    assert isinstance(err, errors.ProviderError) and "The server had an error" in str(err)


def test_non_sdk_error_is_not_translated(adapter):
    assert adapter.translate_error(KeyError("x"), MODEL) is None


# ── closing a stream early releases the connection ───────────────────────────

def _busy_connections(adapter) -> int:
    pool = adapter.sync_client()._client._transport._pool  # httpx2 -> httpcore pool
    return sum(1 for c in pool.connections if not (c.is_idle() or c.is_closed()))


def test_close_stream_early(fake, adapter):
    fake.queue(Reply(text="x" * 400, chunk_size=1, chunk_delay=0.01))  # ~4 s if read to the end
    t0 = time.monotonic()
    gen = adapter.stream(request(), MODEL)
    first = next(gen)
    assert first.choices[0].delta.role == "assistant"
    assert _busy_connections(adapter) == 1
    gen.close()
    assert _busy_connections(adapter) == 0
    assert adapter.complete(request(), MODEL).content == "Hello from FakeProvider."
    assert time.monotonic() - t0 < 3


async def test_close_async_stream_early(fake, adapter):
    fake.queue(Reply(text="x" * 400, chunk_size=1, chunk_delay=0.01))
    t0 = time.monotonic()
    agen = adapter.astream(request(), MODEL)
    await agen.__anext__()
    await agen.aclose()
    assert (await adapter.acomplete(request(), MODEL)).content == "Hello from FakeProvider."
    assert time.monotonic() - t0 < 3
    await adapter.aclose()


# ── end to end through the Client ────────────────────────────────────────────

def _client(fake):
    from unillm.profiles import data_dir
    if not (data_dir() / "pricing.toml").is_file():  # written concurrently by another engineer
        pytest.skip("the bundled price book is not there yet")
    from unillm import Client
    return Client(providers=fake.providers())


def test_client_chat(fake):
    client = _client(fake)
    fake.queue(Reply(text="Hi there", usage=USAGE))
    r = client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert r.content == "Hi there" and r.provider == "openai"
    assert r.usage.cache_read_tokens == 30 and r.usage.source == "provider"
    # 50 uncached x $0.15/M + 30 cache reads x $0.075/M + 20 output x $0.60/M: cached counted once
    assert r.cost.total_usd == Decimal("0.00002175")
    assert fake.requests[-1].path == "/v1/chat/completions"


async def test_client_achat_and_stream(fake):
    client = _client(fake)
    fake.queue(Reply(text="async hi", usage=USAGE), Reply(text="streamed hi", usage=USAGE))
    r = await client.achat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert r.content == "async hi" and r.usage.output_tokens == 20
    stream = client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "streamed hi"
    assert stream.response.usage.input_tokens == 50


def test_client_error_is_translated(fake):
    client = _client(fake)
    fake.queue(Reply(status=404, error="The model `gpt-4o-mini` does not exist."))
    with pytest.raises(errors.NotFoundError) as info:
        client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert info.value.__cause__ is not None  # chained to the SDK's exception

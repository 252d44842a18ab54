"""The real google-genai SDK against FakeProvider, through GoogleAdapter."""

from __future__ import annotations

import json

import pytest

from unillm import errors
from unillm.adapters.google.adapter import GoogleAdapter
from unillm.profiles import build_settings
from unillm.testing import Reply
from unillm.types import ChatRequest

MODEL = "gemini-2.5-flash"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
USAGE = {"input_tokens": 12, "cache_read_tokens": 4, "output_tokens": 30, "reasoning_tokens": 10}


@pytest.fixture
def adapter(fake):
    settings = build_settings(fake.providers("google"))["google"]
    a = GoogleAdapter(settings.model_copy(update={"timeout": 5}))
    yield a
    a.close()


def request(**params) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[{"role": "system", "content": "be brief"},
                                              {"role": "user", "content": "hi"}], **params)


def run(adapter, mode, req):
    """One sync call as ('complete'|'stream'): the response, or the chunks."""
    if mode == "complete":
        return adapter.complete(req, MODEL)
    return list(adapter.stream(req, MODEL))


async def arun(adapter, mode, req):
    if mode == "complete":
        return await adapter.acomplete(req, MODEL)
    return [c async for c in adapter.astream(req, MODEL)]


def text_of(result):
    if isinstance(result, list):
        return "".join(c.choices[0].delta.content or "" for c in result)
    return result.content


def usage_of(result):
    if isinstance(result, list):
        assert all(c.usage is None for c in result[:-1])
        return result[-1].usage
    return result.usage


def tool_calls_of(result):
    if isinstance(result, list):
        return [(tc.function["name"], json.loads(tc.function["arguments"]))
                for c in result for tc in c.choices[0].delta.tool_calls or []]
    return [(tc.function.name, tc.function.parsed_arguments())
            for tc in result.choices[0].message.tool_calls or []]


def finish_of(result):
    return (result[-1] if isinstance(result, list) else result).choices[0].finish_reason


# ── {sync, async} × {plain, stream} × {text, tool call} ─────────────────────

@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_sync_text(fake, adapter, mode):
    fake.queue(Reply(text="Bonjour tout le monde", usage=USAGE))
    result = run(adapter, mode, request(temperature=0.1, max_tokens=50))
    assert text_of(result) == "Bonjour tout le monde"
    assert finish_of(result) == "stop"
    u = usage_of(result)
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (12, 4, 30, 10)
    sent = fake.requests[-1]
    method = "generateContent" if mode == "complete" else "streamGenerateContent"
    # the SDK's default API version: v1 from google-genai 3.x, v1beta before (Python 3.10)
    assert sent.path in (f"/v1/models/{MODEL}:{method}", f"/v1beta/models/{MODEL}:{method}")
    assert sent.stream is (mode == "stream")
    assert sent.json["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent.json["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert sent.json["generationConfig"] == {"temperature": 0.1, "maxOutputTokens": 50}
    assert sent.headers["x-goog-api-key"] == "fake-key"


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_async_text(fake, adapter, mode):
    fake.queue(Reply(text="Bonjour tout le monde", usage=USAGE))
    result = await arun(adapter, mode, request())
    assert text_of(result) == "Bonjour tout le monde"
    assert usage_of(result).total_tokens == 46
    assert fake.requests[-1].headers["x-goog-api-key"] == "fake-key"
    await adapter.aclose()


@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_sync_tool_call(fake, adapter, mode):
    fake.queue(Reply(text="", tool_calls=[CALL, {"name": "get_time", "arguments": {}}]))
    result = run(adapter, mode, request(tools=[WEATHER], tool_choice="required"))
    assert tool_calls_of(result) == [("get_weather", {"city": "Paris"}), ("get_time", {})]
    assert finish_of(result) == "tool_calls"
    sent = fake.requests[-1].json
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_async_tool_call(fake, adapter, mode):
    fake.queue(Reply(text="checking", tool_calls=[CALL]))
    result = await arun(adapter, mode, request(tools=[WEATHER]))
    assert tool_calls_of(result) == [("get_weather", {"city": "Paris"})]
    assert text_of(result) == "checking"
    assert finish_of(result) == "tool_calls"
    await adapter.aclose()


def test_tool_result_round_trip_over_the_wire(fake, adapter):
    fake.queue(Reply(text="", tool_calls=[CALL]), Reply(text="21C in Paris"))
    first = adapter.complete(request(tools=[WEATHER]), MODEL)
    call = first.choices[0].message.tool_calls[0]
    messages = [{"role": "user", "content": "weather?"},
                {"role": "assistant", "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'}]
    second = adapter.complete(ChatRequest(model=MODEL, messages=messages, tools=[WEATHER]), MODEL)
    assert second.content == "21C in Paris"
    contents = fake.requests[-1].json["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}]}


# ── usage ────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_usage_absent(fake, adapter, mode):
    fake.queue(Reply(text="no counts here", usage=None))
    result = run(adapter, mode, request())
    assert text_of(result) == "no counts here"
    if isinstance(result, list):
        assert all(c.usage is None for c in result)
    else:
        assert result.usage is None


def test_stream_usage_is_last_cumulative_not_summed(fake, adapter):
    fake.queue(Reply(text="x" * 80, chunk_size=8, usage=USAGE))
    chunks = list(adapter.stream(request(), MODEL))
    assert len(chunks) > 5  # many vendor events, each repeating running usage
    assert chunks[-1].usage.output_tokens == 30 and chunks[-1].usage.prompt_tokens == 16


def test_recorded_stream_payload_served_verbatim(fake, adapter):
    from tests.conftest import ref
    fake.queue(Reply(events=ref("gemini_stream_generate_content")))
    chunks = list(adapter.stream(request(), MODEL))
    assert chunks[-1].usage.output_tokens == 253 + 260  # candidates + thoughts of the LAST chunk
    assert chunks[-1].usage.input_tokens == 20


# ── errors ───────────────────────────────────────────────────────────────────

def failure(adapter, mode, req=None):
    with pytest.raises(Exception) as info:
        run(adapter, mode, req or request())
    err = adapter.translate_error(info.value, MODEL)
    assert err is not None, f"untranslated {type(info.value)}"
    return err


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(("status", "cls"), [
    (400, errors.BadRequestError), (401, errors.AuthenticationError),
    (403, errors.PermissionDeniedError), (404, errors.NotFoundError),
    (500, errors.ServerError), (503, errors.ServerError)])
def test_error_status(fake, adapter, mode, status, cls):
    fake.queue(Reply(status=status))
    err = failure(adapter, mode)
    assert type(err) is cls
    assert err.status_code == status and err.provider == "google" and err.model == MODEL
    assert "fake-key" not in str(err)
    assert len(fake.requests) == 1  # no SDK-side retry


@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_context_window(fake, adapter, mode):
    fake.queue(Reply(status=400, error="The input token count (1200000) exceeds the maximum "
                                       "number of tokens allowed (1048576)."))
    err = failure(adapter, mode)
    assert isinstance(err, errors.ContextWindowExceededError) and err.status_code == 400


@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_rate_limit_retry_after(fake, adapter, mode):
    fake.queue(Reply(status=429, headers={"retry-after": "7"}))
    err = failure(adapter, mode)
    assert isinstance(err, errors.RateLimitError) and err.retry_after == 7.0
    assert len(fake.requests) == 1


def test_rate_limit_retry_info_in_body(fake, adapter):
    body = {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}
    fake.queue(Reply(status=429, error=body))
    err = failure(adapter, "complete")
    assert isinstance(err, errors.RateLimitError) and err.retry_after == 37.0


@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_timeout(fake, adapter, mode):
    adapter = GoogleAdapter(adapter.settings.model_copy(update={"timeout": 0.3}))
    fake.queue(Reply(delay=1.5))
    assert isinstance(failure(adapter, mode), errors.TimeoutError)


@pytest.mark.parametrize("mode", ["complete", "stream"])
def test_malformed_json(fake, adapter, mode):
    fake.queue(Reply(malformed=True))
    assert isinstance(failure(adapter, mode), errors.ResponseError)


def test_stream_cut_midway(fake, adapter):
    fake.queue(Reply(text="x" * 64, chunk_size=8, cut_after=3))
    received = []
    with pytest.raises(Exception) as info:
        for chunk in adapter.stream(request(), MODEL):
            received.append(chunk)
    err = adapter.translate_error(info.value, MODEL)
    assert isinstance(err, (errors.ResponseError, errors.ConnectionError))
    assert text_of(received) == "x" * 24  # what arrived before the cut
    assert len(fake.requests) == 1  # the SDK did not silently resume the stream


async def test_async_stream_cut_and_error(fake, adapter):
    fake.queue(Reply(text="x" * 64, chunk_size=8, cut_after=2), Reply(status=429))
    with pytest.raises(Exception) as info:
        await arun(adapter, "stream", request())
    assert isinstance(adapter.translate_error(info.value, MODEL),
                      (errors.ResponseError, errors.ConnectionError))
    with pytest.raises(Exception) as info:
        await arun(adapter, "complete", request())
    assert isinstance(adapter.translate_error(info.value, MODEL), errors.RateLimitError)
    await adapter.aclose()


def test_non_sdk_error_is_not_translated(adapter):
    assert adapter.translate_error(KeyError("x"), MODEL) is None


def test_missing_api_key(fake):
    settings = build_settings({"google": {"base_url": fake.url}})["google"]
    with pytest.raises(errors.AuthenticationError, match="GEMINI_API_KEY"):
        GoogleAdapter(settings).complete(request(), MODEL)


# ── closing streams early releases the connection ────────────────────────────

def _pool(client):
    return client._api_client._httpx_client._transport._pool


def test_close_stream_early(fake, adapter):
    fake.queue(Reply(text="y" * 400, chunk_size=4, chunk_delay=0.01), Reply(text="next"))
    stream = adapter.stream(request(), MODEL)
    assert next(stream).choices[0].delta.content == "yyyy"
    pool = _pool(adapter.sync_client())
    assert len(pool._requests) == 1
    stream.close()
    assert pool._requests == []  # the response was closed, the connection released
    assert adapter.complete(request(), MODEL).content == "next"


async def test_close_async_stream_early(fake, adapter):
    fake.queue(Reply(text="y" * 400, chunk_size=4, chunk_delay=0.01), Reply(text="next"))
    stream = adapter.astream(request(), MODEL)
    assert (await stream.__anext__()).choices[0].delta.content == "yyyy"
    outer = adapter.async_client()._api_client._async_httpx_client
    if not hasattr(outer, "_loop_clients"):  # the pool is looked at through google-genai 3.x internals
        await stream.aclose()
        pytest.skip("this google-genai keeps its connection pool elsewhere (pre-3.x)")
    # unillm gives the SDK its transport (so aiohttp, when installed, is not used): the pool is its
    inner = next(iter(outer._loop_clients.values()), outer)
    assert len(inner._transport._pool._requests) == 1
    await stream.aclose()
    assert inner._transport._pool._requests == []
    assert (await adapter.acomplete(request(), MODEL)).content == "next"
    await adapter.aclose()


# ── end to end through Client ────────────────────────────────────────────────

BILLED = {"input_tokens": 1000, "cache_read_tokens": 1000, "output_tokens": 1000,
          "reasoning_tokens": 400}


@pytest.fixture
def client(fake):
    from unillm import Client
    c = Client(providers=fake.providers(), cache="off", sleep=lambda s: None)
    yield c
    c.close()


def test_client_chat_prices_gemini_usage(fake, client):
    from decimal import Decimal
    fake.queue(Reply(text="hi there", usage=BILLED))
    r = client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert r.content == "hi there" and r.provider == "google"
    assert r.usage.prompt_tokens == 2000 and r.usage.completion_tokens == 1000
    # bundled price book: input 0.30, cached 0.03, output 2.50 per million tokens
    assert r.cost.total_usd == Decimal("0.0003") + Decimal("0.00003") + Decimal("0.0025")


def test_client_retries_a_rate_limit_once(fake, client):
    fake.queue(Reply(status=429, headers={"retry-after": "0"}), Reply(text="after retry"))
    r = client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert r.content == "after retry" and len(fake.requests) == 2


def test_client_translates_auth_error(fake, client):
    fake.queue(Reply(status=401))
    with pytest.raises(errors.AuthenticationError) as info:
        client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert info.value.provider == "google" and "fake-key" not in str(info.value)


def test_client_stream(fake, client):
    fake.queue(Reply(text="streamed words", usage=BILLED))
    stream = client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "streamed words"
    assert stream.response.usage.output_tokens == 1000 and stream.response.cost.total_usd > 0


async def test_client_achat_and_astream(fake, client):
    fake.queue(Reply(text="async answer", usage=BILLED), Reply(text="async stream"))
    r = await client.achat(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert r.content == "async answer" and r.usage.reasoning_tokens == 400
    stream = await client.achat(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "async stream" and stream.response.usage is not None
    await client.aclose()

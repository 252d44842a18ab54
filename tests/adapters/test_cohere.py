"""The cohere SDK against FakeProvider through CohereAdapter: calls, streams, usage, errors."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from unillm import errors
from unillm.adapters.cohere.adapter import CohereAdapter
from unillm.profiles import build_settings
from unillm.testing import Reply
from unillm.types import ChatRequest

MODEL = "command-r-plus"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
PARIS = Reply(text="Let me check.", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"},
                                                  "id": "get_weather_p4r1s"}])


def make_adapter(fake, **update) -> CohereAdapter:
    settings = build_settings(fake.providers("cohere"))["cohere"]
    return CohereAdapter(settings.model_copy(update={"timeout": 5, **update}))


@pytest.fixture
def adapter(fake):
    a = make_adapter(fake)
    yield a
    a.close()


def request(**params) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}], **params)


def call(adapter, mode: str, req: ChatRequest):
    """One attempt in the given mode, SDK errors translated as the Client does."""
    import asyncio

    async def collect_async():
        return [c async for c in adapter.astream(req, MODEL)]

    try:
        if mode == "sync":
            return adapter.complete(req, MODEL)
        if mode == "async":
            return asyncio.run(adapter.acomplete(req, MODEL))
        if mode == "stream":
            return list(adapter.stream(req, MODEL))
        return asyncio.run(collect_async())
    except errors.UnillmError:
        raise
    except Exception as exc:
        translated = adapter.translate_error(exc, MODEL)
        if translated is None:
            raise
        raise translated from exc


def joined_tool_args(chunks) -> dict[int, str]:
    out: dict[int, str] = {}
    for c in chunks:
        for d in c.choices[0].delta.tool_calls or []:
            out[d.index] = out.get(d.index, "") + (d.function or {}).get("arguments", "")
    return out


MODES = ["sync", "async", "stream", "astream"]


# ── {sync, async} × {plain, stream} × {text, tool call} ──────────────────────

@pytest.mark.parametrize("mode", MODES)
def test_text(fake, mode):
    adapter = make_adapter(fake)
    fake.queue(Reply(text="Sunny in Paris.", usage={"input_tokens": 11, "output_tokens": 4}))
    out = call(adapter, mode, request())
    if mode in ("sync", "async"):
        assert out.content == "Sunny in Paris." and out.choices[0].finish_reason == "stop"
        usage, provider = out.usage, out.provider
    else:
        assert "".join(c.choices[0].delta.content or "" for c in out) == "Sunny in Paris."
        assert out[-1].choices[0].finish_reason == "stop"
        assert all(c.usage is None for c in out[:-1])
        usage, provider = out[-1].usage, out[-1].provider
    assert (usage.input_tokens, usage.output_tokens, usage.prompt_tokens) == (11, 4, 11)
    assert provider == "cohere"
    sent = fake.requests[-1]
    assert sent.path == "/v2/chat" and sent.stream == mode.endswith("stream")
    assert sent.json["messages"] == [{"role": "user", "content": "Weather in Paris?"}]
    assert sent.json["model"] == MODEL


@pytest.mark.parametrize("mode", MODES)
def test_tool_call(fake, mode):
    adapter = make_adapter(fake)
    fake.queue(PARIS)
    out = call(adapter, mode, request(tools=[WEATHER], tool_choice="required"))
    if mode in ("sync", "async"):
        (tc,) = out.choices[0].message.tool_calls
        assert (tc.id, tc.function.name, tc.function.parsed_arguments()) == (
            "get_weather_p4r1s", "get_weather", {"city": "Paris"})
        assert out.content == "Let me check." and out.choices[0].finish_reason == "tool_calls"
    else:
        starts = [d for c in out for d in c.choices[0].delta.tool_calls or [] if d.id]
        assert [(d.index, d.id, d.function["name"]) for d in starts] == [(0, "get_weather_p4r1s", "get_weather")]
        assert json.loads(joined_tool_args(out)[0]) == {"city": "Paris"}
        assert out[-1].choices[0].finish_reason == "tool_calls" and out[-1].usage is not None
    sent = fake.requests[-1].json
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "REQUIRED"


@pytest.mark.parametrize("mode", MODES)
def test_no_usage_reported(fake, mode):
    adapter = make_adapter(fake)
    fake.queue(Reply(text="ok", usage=None))
    out = call(adapter, mode, request())
    if mode in ("sync", "async"):
        assert out.usage is None and out.content == "ok"
    else:
        assert all(c.usage is None for c in out) and out[-1].choices[0].finish_reason == "stop"


def test_usage_is_billed_units_from_the_wire(fake, adapter):
    # FakeProvider renders tokens = billed + Cohere's prompt template; only billed counts
    fake.queue(Reply(usage={"input_tokens": 9, "cache_read_tokens": 3, "output_tokens": 5}))
    r = adapter.complete(request(), MODEL)
    assert (r.usage.input_tokens, r.usage.cache_read_tokens, r.usage.output_tokens) == (12, 0, 5)


def test_reference_payloads_served_verbatim(fake, adapter):
    from tests.conftest import ref
    fake.queue(Reply(body=ref("cohere_v2_chat_api_reference")),
               Reply(events=ref("cohere_v2_chat_stream_api_reference")))
    r = adapter.complete(request(), MODEL)
    assert (r.usage.input_tokens, r.usage.output_tokens) == (5, 418)
    chunks = list(adapter.stream(request(), MODEL))
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (5, 26)
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("LLMs stand for")


# ── what the SDK actually sent ───────────────────────────────────────────────

def test_request_on_the_wire(fake, adapter):
    req = ChatRequest(model=MODEL, temperature=0.3, top_p=0.8, max_tokens=50, stop=["\n\n"], seed=3,
                      messages=[{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}],
                      response_format={"type": "json_schema",
                                       "json_schema": {"name": "x", "schema": {"type": "object"}}})
    adapter.complete(req, MODEL)
    sent = fake.requests[-1]
    assert sent.method == "POST" and sent.path == "/v2/chat"
    assert sent.headers["authorization"] == "Bearer fake-key"
    body = sent.json
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["temperature"], body["p"], body["max_tokens"], body["stop_sequences"], body["seed"]) == (
        0.3, 0.8, 50, ["\n\n"], 3)
    assert body["response_format"] == {"type": "json_object", "json_schema": {"type": "object"}}
    assert body["stream"] is False


def test_profile_headers_and_env_key(fake, monkeypatch):
    monkeypatch.setenv("CO_API_KEY", "env-key-123")
    settings = build_settings({"cohere": {"base_url": fake.base_url("cohere"),
                                          "headers": {"X-Client-Name": "unillm-tests"}}})["cohere"]
    adapter = CohereAdapter(settings)
    adapter.complete(request(), MODEL)
    adapter.close()
    sent = fake.requests[-1].headers
    assert sent["authorization"] == "Bearer env-key-123" and sent["x-client-name"] == "unillm-tests"


def test_missing_key_is_an_authentication_error_without_a_request(fake):
    settings = build_settings({"cohere": {"base_url": fake.base_url("cohere")}})["cohere"]
    with pytest.raises(errors.AuthenticationError, match="CO_API_KEY"):
        CohereAdapter(settings).complete(request(), MODEL)
    assert fake.requests == []


def test_unsupported_param_fails_before_the_network(fake, adapter):
    with pytest.raises(errors.UnsupportedParamError, match="cohere"):
        adapter.complete(request(tools=[WEATHER], drop_params=False, tool_choice={
            "type": "function", "function": {"name": "get_weather"}}), MODEL)
    assert fake.requests == []


# ── errors ───────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("status, message, cls", [
    (400, "invalid request: temperature must be between 0 and 5", errors.BadRequestError),
    (400, "too many tokens: size limit exceeded by 11326 tokens. Try using shorter or fewer inputs",
     errors.ContextWindowExceededError),
    (401, "invalid api token", errors.AuthenticationError),
    (498, "invalid api token", errors.AuthenticationError),
    (403, "forbidden", errors.PermissionDeniedError),
    (404, "model 'command-x' not found", errors.NotFoundError),
    (422, "unprocessable", errors.BadRequestError),
    (500, "internal server error", errors.ServerError),
    (503, "service unavailable", errors.ServerError),
])
@pytest.mark.parametrize("mode", ["sync", "stream"])
def test_error_statuses(fake, adapter, status, message, cls, mode):
    fake.queue(Reply(status=status, error=message))
    with pytest.raises(cls) as info:
        call(adapter, mode, request())
    err = info.value
    assert type(err) is cls
    assert err.status_code == status and err.provider == "cohere" and err.model == MODEL
    assert message in str(err) and "fake-key" not in str(err)
    assert len(fake.requests) == 1  # the SDK did not retry on its own


@pytest.mark.parametrize("mode", MODES)
def test_rate_limit_carries_retry_after(fake, mode):
    adapter = make_adapter(fake)
    fake.queue(Reply(status=429, error="You are using a Trial key", headers={"retry-after": "7"}))
    with pytest.raises(errors.RateLimitError) as info:
        call(adapter, mode, request())
    assert info.value.retry_after == 7.0 and info.value.retryable
    assert len(fake.requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_timeout(fake, mode):
    adapter = make_adapter(fake, timeout=0.3)
    fake.queue(Reply(delay=1.0))
    with pytest.raises(errors.TimeoutError) as info:
        call(adapter, mode, request())
    assert info.value.retryable and info.value.provider == "cohere"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_malformed_json_is_a_response_error(fake, mode):
    adapter = make_adapter(fake)
    fake.queue(Reply(malformed=True))
    with pytest.raises(errors.ResponseError):
        call(adapter, mode, request())


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_stream_cut_midway(fake, mode):
    adapter = make_adapter(fake)
    fake.queue(Reply(text="a long answer that will not arrive whole", chunk_size=4, cut_after=3))
    with pytest.raises((errors.ResponseError, errors.ConnectionError)) as info:
        call(adapter, mode, request())
    assert isinstance(info.value, errors.ProviderError) and info.value.provider == "cohere"


def test_stream_ending_without_message_end_is_a_response_error(fake, adapter):
    from tests.conftest import ref
    fake.queue(Reply(events=ref("cohere_v2_chat_stream_api_reference")[:-1]))
    with pytest.raises(errors.ResponseError, match="message-end"):
        list(adapter.stream(request(), MODEL))


def test_connection_refused_is_a_connection_error(fake):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = make_adapter(fake, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(errors.ConnectionError):
        call(adapter, "sync", request())


def test_translate_error_ignores_foreign_exceptions(adapter):
    assert adapter.translate_error(ValueError("not ours"), MODEL) is None


# ── closing a stream early releases the connection ───────────────────────────

def test_closing_stream_early(fake, adapter):
    fake.queue(Reply(text="x" * 400, chunk_size=4, chunk_delay=0.005))
    gen = adapter.stream(request(), MODEL)
    first = [next(gen), next(gen)]
    pool = adapter._http_sync._transport._pool  # httpcore's pool
    assert any(not c.is_idle() for c in pool.connections)  # mid-response
    gen.close()
    assert first[1].choices[0].delta.content == "xxxx"
    assert all(c.is_idle() or c.is_closed() for c in pool.connections)
    # the adapter stays usable: the next call goes through
    assert adapter.complete(request(), MODEL).content == "Hello from FakeProvider."


async def test_closing_async_stream_early(fake):
    adapter = make_adapter(fake)
    fake.queue(Reply(text="y" * 400, chunk_size=4, chunk_delay=0.005))
    gen = adapter.astream(request(), MODEL)
    assert (await gen.__anext__()).choices[0].delta.role == "assistant"
    await gen.__anext__()
    await gen.aclose()
    assert (await adapter.acomplete(request(), MODEL)).content == "Hello from FakeProvider."
    await adapter.aclose()


# ── import hygiene ───────────────────────────────────────────────────────────

def test_module_import_loads_no_sdk():
    import subprocess
    code = ("import sys; import unillm.adapters.cohere.adapter, unillm.adapters.cohere.convert; "
            "sys.exit('cohere' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# ── end to end through Client ────────────────────────────────────────────────

def _bundled_prices() -> bool:
    try:
        from unillm.pricing import bundled_path
        return bundled_path().is_file()
    except ImportError:
        return False


needs_prices = pytest.mark.skipif(not _bundled_prices(), reason="bundled pricing.toml not present yet")


@pytest.fixture
def client(fake, tmp_path):
    from unillm import Client
    prices = tmp_path / "prices.toml"
    prices.write_text('[cohere."command-r-plus"]\ninput = 2.50\noutput = 10.00\n')
    c = Client(providers=fake.providers(), pricing=str(prices), ledger="off", sleep=lambda s: None)
    yield c
    c.close()


HI = [{"role": "user", "content": "Tell me about LLMs"}]


@needs_prices
def test_client_chat_bills_billed_units(fake, client):
    from decimal import Decimal

    from tests.conftest import ref
    fake.queue(Reply(body=ref("cohere_v2_chat_api_reference")))
    r = client.chat(model=MODEL, messages=HI)
    assert r.provider == "cohere" and r.content.startswith("LLMs stand for")
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 418)  # not tokens' 71
    assert r.cost.total_usd == Decimal("0.0041925")  # 5 * 2.50/1M + 418 * 10/1M, exact


@needs_prices
async def test_client_achat_tool_call(fake, client):
    fake.queue(PARIS)
    r = await client.achat(model=MODEL, messages=HI, tools=[WEATHER])
    assert r.choices[0].message.tool_calls[0].function.parsed_arguments() == {"city": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls"
    await client.aclose()


@needs_prices
def test_client_stream_usage_from_message_end(fake, client):
    from tests.conftest import ref
    fake.queue(Reply(events=ref("cohere_v2_chat_stream_api_reference")))
    stream = client.chat(model=MODEL, messages=HI, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.endswith("generating human language.")
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (5, 26)
    assert stream.usage.source == "provider"


@needs_prices
async def test_client_async_stream(fake, client):
    fake.queue(Reply(text="streamed from cohere", usage={"input_tokens": 8, "output_tokens": 4}))
    stream = await client.achat(model=MODEL, messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "streamed from cohere" and stream.usage.completion_tokens == 4
    await client.aclose()


@needs_prices
def test_client_retries_a_server_error_then_succeeds(fake, client):
    fake.queue(Reply(status=503, error="overloaded"), Reply(text="second time lucky"))
    assert client.chat(model=MODEL, messages=HI).content == "second time lucky"
    assert len(fake.requests) == 2  # one retry by the Client, none by the SDK


@needs_prices
def test_client_does_not_retry_a_bad_request(fake, client):
    fake.queue(Reply(status=400, error="invalid request: message must not be empty"))
    with pytest.raises(errors.BadRequestError) as info:
        client.chat(model=MODEL, messages=HI)
    assert type(info.value.__cause__).__module__.startswith("cohere.")  # chained to the SDK error
    assert len(fake.requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_answer_is_read_from_the_raw_json_not_dumped_from_sdk_models(fake, monkeypatch, mode):
    """The answer comes from the HTTP body the SDK's raw client hands back: no SDK model is
    dumped back to JSON (a dump per call made Cohere calls dearer than the SDK's own)."""
    import pydantic
    dumped: list[str] = []
    real = pydantic.BaseModel.model_dump

    def counting(self, *args, **kwargs):
        if type(self).__module__.startswith("cohere."):
            dumped.append(type(self).__name__)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pydantic.BaseModel, "model_dump", counting)
    adapter = make_adapter(fake)
    fake.queue(Reply(text="Sunny in Paris.", usage={"input_tokens": 11, "output_tokens": 4}))
    out = call(adapter, mode, request())
    assert out.content == "Sunny in Paris." and out.choices[0].finish_reason == "stop"
    assert (out.usage.input_tokens, out.usage.output_tokens) == (11, 4)
    assert dumped == []

"""Gemini calls through google-genai's own API client (unillm/adapters/google/wire.py): the
guarded private seam, that it sends byte for byte what the SDK sends, and raises its errors."""

from __future__ import annotations

import asyncio
import base64

import pytest

from unillm.adapters.google import wire
from unillm.adapters.google.adapter import GoogleAdapter
from unillm.profiles import build_settings
from unillm.testing import Reply
from unillm.types import ChatRequest

from .reading import read_stream
from .test_google import MODEL, USAGE, WEATHER

genai = pytest.importorskip("google.genai")

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
SIGNATURE = base64.b64encode(b"thought-bytes").decode()


def make(fake, **capabilities) -> GoogleAdapter:
    settings = build_settings(fake.providers("google"))["google"]
    caps = settings.capabilities.model_copy(update=capabilities)
    return GoogleAdapter(settings.model_copy(update={"timeout": 5, "capabilities": caps}))


@pytest.fixture
def sdk_conversions(monkeypatch):
    """How often the SDK converted a generateContent request from its models to the wire."""
    from google.genai import models
    made: list[int] = []
    real = models._GenerateContentParameters_to_mldev
    monkeypatch.setattr(models, "_GenerateContentParameters_to_mldev",
                        lambda *a, **k: (made.append(1), real(*a, **k))[1])
    return made


def chat(*messages, **params) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=list(messages), **params)


USER = {"role": "user", "content": "Weather in Paris?"}
REQUESTS = {
    "plain": chat(USER),
    "params": chat({"role": "system", "content": "Be brief."}, USER, temperature=0.2, top_p=0.9, top_k=5,
                   max_tokens=40, stop=["END"], seed=7, presence_penalty=0.1, frequency_penalty=0.2),
    "json_schema": chat(USER, response_format={"type": "json_schema", "json_schema": {
        "name": "w", "schema": {"type": "object", "properties": {"camelCase": {"type": "string"}}}}}),
    "json_object": chat(USER, response_format={"type": "json_object"}),
    "tools": chat(USER, tools=[WEATHER], tool_choice="required"),
    "named_tool": chat(USER, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}),
    "reasoning": chat(USER, reasoning_effort="low"),
    "tool_round_trip": chat(USER, {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": f"c1__thought__{SIGNATURE}", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": f"c1__thought__{SIGNATURE}", "content": '{"sky": "clear"}'},
        tools=[WEATHER]),
    "images": chat({"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}),
    "extra_config": chat(USER, extra={"safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}),
}


def test_the_installed_google_genai_offers_the_seam(fake):
    """Fails loudly when a google-genai upgrade moves or reshapes ``_api_client.request``
    (calls would silently take the slower public path): re-read the SDK, then widen `wire.TESTED`."""
    adapter = make(fake)
    assert wire.seam(adapter.sync_client()) is not None, f"google-genai {genai.__version__}: no seam"
    adapter.close()


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_the_request_on_the_wire_is_the_sdks(fake, monkeypatch, sdk_conversions, name):
    """The same request through the seam and through ``generate_content``: the same path,
    query, headers and JSON body."""
    req = REQUESTS[name]
    make(fake, images=True).complete(req, MODEL)
    assert sdk_conversions == ([1] if name == "extra_config" else [])  # the seam sent it
    monkeypatch.setattr(genai, "__version__", "99.0.0")  # an untested SDK: the public path
    make(fake, images=True).complete(req, MODEL)
    ours, sdks = fake.requests[-2], fake.requests[-1]
    assert (ours.path, ours.query, ours.json) == (sdks.path, sdks.query, sdks.json)
    skip = {"content-length"}
    assert {k: v for k, v in ours.headers.items() if k not in skip} == {
        k: v for k, v in sdks.headers.items() if k not in skip}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_mapped_calls_skip_the_sdks_request_models(fake, sdk_conversions, mode):
    fake.queue(Reply(text="Sunny.", usage=USAGE))
    adapter = make(fake)
    req = REQUESTS["params"]
    out = adapter.complete(req, MODEL) if mode == "sync" else asyncio.run(adapter.acomplete(req, MODEL))
    assert out.content == "Sunny." and sdk_conversions == []
    # Gemini's promptTokenCount includes the cached; candidates exclude the thoughts
    assert (out.usage.input_tokens, out.usage.cache_read_tokens, out.usage.output_tokens,
            out.usage.reasoning_tokens) == (12, 4, 30, 10)


def test_an_unmapped_request_takes_the_public_path(fake, sdk_conversions):
    fake.queue(Reply(text="Sunny.", usage=USAGE))
    assert make(fake).complete(REQUESTS["extra_config"], MODEL).content == "Sunny."
    assert sdk_conversions == [1]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("status, sdk_error", [(401, "ClientError"), (429, "ClientError"),
                                               (500, "ServerError")])
def test_statuses_raise_the_sdks_own_exceptions(fake, mode, status, sdk_error):
    fake.queue(Reply(status=status, error="nope"))
    adapter = make(fake)
    req = REQUESTS["plain"]
    with pytest.raises(genai.errors.APIError) as info:
        adapter.complete(req, MODEL) if mode == "sync" else asyncio.run(adapter.acomplete(req, MODEL))
    assert type(info.value).__name__ == sdk_error and info.value.code == status
    assert len(fake.requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_per_request_timeout_reaches_the_sdk(fake, sdk_conversions, mode):
    fake.queue(Reply(text="late", delay=1.0))
    adapter = make(fake)
    req = REQUESTS["plain"]
    with pytest.raises(Exception) as info:
        adapter.complete(req, MODEL, timeout=0.2) if mode == "sync" else asyncio.run(
            adapter.acomplete(req, MODEL, timeout=0.2))
    assert adapter.translate_error(info.value, MODEL).__class__.__name__ == "TimeoutError"
    assert sdk_conversions == []  # it went through the seam


# ── streams: streamGenerateContent through the same seam ─────────────────────

def _seen(chunks):
    """What a caller reads from a stream, ids (made from each response's) and timestamps aside."""
    seen = [c.model_dump(exclude={"id", "created"}) for c in chunks]
    for chunk in seen:
        for call in (chunk["choices"][0]["delta"]["tool_calls"] or []) if chunk["choices"] else []:
            call.pop("id")
    return seen


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_a_stream_on_the_wire_is_the_sdks(fake, monkeypatch, sdk_conversions, name, mode):
    """The same stream through the seam and through ``generate_content_stream``: the same
    request (path, ``alt=sse``, headers, body) and the same chunks read back."""
    req = REQUESTS[name]
    reply = Reply(text="Sunny and mild.", chunk_size=4, usage=USAGE,
                  tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}] if "tool" in name else None)
    fake.queue(reply, reply)
    ours = read_stream(make(fake, images=True), req, MODEL, mode)
    assert sdk_conversions == ([1] if name == "extra_config" else [])  # the seam sent it
    monkeypatch.setattr(genai, "__version__", "99.0.0")  # an untested SDK: the public path
    sdks = read_stream(make(fake, images=True), req, MODEL, mode)
    assert _seen(ours) == _seen(sdks) and ours[-1].usage.output_tokens == 30
    sent, public = fake.requests[-2], fake.requests[-1]
    assert sent.stream and (sent.path, sent.query, sent.json) == (public.path, public.query, public.json)
    skip = {"content-length"}
    assert {k: v for k, v in sent.headers.items() if k not in skip} == {
        k: v for k, v in public.headers.items() if k not in skip}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_error_event_inside_a_seam_stream_raises_the_sdks_error(fake, sdk_conversions, mode):
    """Gemini reports a failure after a 200 as an ``{"error": ...}`` event: the seam raises it
    as the SDK's APIError, with the vendor's code, after the text that came before it."""
    first = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Sun"}]}}]}
    fake.queue(Reply(events=[first, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}]))
    adapter = make(fake)
    received = []

    async def read():
        async for chunk in adapter.astream(REQUESTS["plain"], MODEL):
            received.append(chunk)
    with pytest.raises(genai.errors.APIError) as info:
        if mode == "sync":
            received.extend(adapter.stream(REQUESTS["plain"], MODEL))
        else:
            asyncio.run(read())
    assert info.value.code == 503 and sdk_conversions == []
    assert adapter.translate_error(info.value, MODEL).__class__.__name__ == "ServerError"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_status_raises_the_sdks_exception(fake, mode):
    fake.queue(Reply(status=429, error="slow down"))
    with pytest.raises(genai.errors.APIError) as info:
        read_stream(make(fake), REQUESTS["plain"], MODEL, mode)
    assert info.value.code == 429 and len(fake.requests) == 1


def test_vertex_ai_takes_the_public_path():
    client = genai.Client(vertexai=True, project="p", location="us-central1", credentials=_NoCredentials())
    assert wire.seam(client) is None


class _NoCredentials:
    """Enough of google.auth credentials for a client that is never used to send."""
    token, expired, valid, quota_project_id = "t", False, True, None

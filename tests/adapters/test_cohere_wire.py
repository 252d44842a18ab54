"""Cohere calls through the SDK's own HTTP client (unillm/adapters/cohere/wire.py): the guarded
private seam, what it skips, and that it sends and raises exactly what the SDK's raw client does."""

from __future__ import annotations

import asyncio

import pytest

from unillm.adapters.cohere import wire
from unillm.testing import Reply
from unillm.types import ChatRequest

from .reading import read_stream
from .test_cohere import MODEL, WEATHER, make_adapter, request

cohere = pytest.importorskip("cohere")


@pytest.fixture
def sdk_model_calls(monkeypatch):
    """Names of the SDK's model walks its raw chat client made (answer models, request annotations)."""
    from cohere.v2 import raw_client
    made: list[str] = []
    for name in ("construct_type", "convert_and_respect_annotation_metadata"):
        real = getattr(raw_client, name)
        monkeypatch.setattr(raw_client, name, lambda *a, _real=real, _name=name, **k: (made.append(_name), _real(*a, **k))[1])
    return made


def run(adapter, mode: str, req: ChatRequest):
    """One call ("sync", "async") or stream ("stream", "astream") of ``req``."""
    if mode.endswith("stream"):
        return read_stream(adapter, req, MODEL, "sync" if mode == "stream" else "async")
    return adapter.complete(req, MODEL) if mode == "sync" else asyncio.run(adapter.acomplete(req, MODEL))


def test_the_installed_cohere_offers_the_seam(fake):
    """Fails loudly when a cohere upgrade moves or reshapes ``_client_wrapper.httpx_client``
    (calls would silently take the slower public path): re-read the SDK, then widen `wire.TESTED`."""
    adapter = make_adapter(fake)
    assert wire.usable(cohere), f"cohere {cohere.__version__} is not in wire.TESTED {sorted(wire.TESTED)}"
    assert wire.seam(adapter.sync_client()) is not None

    async def async_seam():
        return wire.seam(adapter.async_client())
    assert asyncio.run(async_seam()) is not None
    assert set(wire._error_classes()) >= {400, 401, 403, 404, 422, 429, 498, 500, 503}
    adapter.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_calls_build_no_sdk_models(fake, sdk_model_calls, mode):
    fake.queue(Reply(text="Sunny in Paris.", usage={"input_tokens": 11, "output_tokens": 4}))
    out = run(make_adapter(fake), mode, request())
    assert out.content == "Sunny in Paris." and (out.usage.input_tokens, out.usage.output_tokens) == (11, 4)
    assert sdk_model_calls == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_untested_cohere_takes_the_public_path(fake, monkeypatch, sdk_model_calls, mode):
    monkeypatch.setattr(cohere, "__version__", "99.0.0")
    fake.queue(Reply(text="Sunny in Paris.", usage={"input_tokens": 11, "output_tokens": 4}))
    out = run(make_adapter(fake), mode, request())
    assert out.content == "Sunny in Paris." and (out.usage.input_tokens, out.usage.output_tokens) == (11, 4)
    assert "construct_type" in sdk_model_calls  # the SDK's raw client did the call


def test_the_body_on_the_wire_is_the_sdks(fake, monkeypatch):
    """The same request through the seam and through the SDK's raw client: identical bodies and headers."""
    req = ChatRequest(model=MODEL, temperature=0.3, top_p=0.8, max_tokens=50, stop=["\n\n"], seed=3,
                      tools=[WEATHER], tool_choice="required",
                      extra={"safety_mode": "OFF", "custom_field": {"a": 1}},
                      messages=[{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": [
                                    {"type": "text", "text": "Weather"}, {"type": "text", "text": " in Paris?"}]},
                                {"role": "assistant", "content": "Checking.", "tool_calls": [
                                    {"id": "c1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}])
    make_adapter(fake).complete(req, MODEL)
    monkeypatch.setattr(cohere, "__version__", "99.0.0")
    make_adapter(fake).complete(req, MODEL)
    ours, sdks = fake.requests[-2], fake.requests[-1]
    assert ours.json == sdks.json and ours.json["custom_field"] == {"a": 1}
    skip = {"content-length"}
    assert {k: v for k, v in ours.headers.items() if k not in skip} == {
        k: v for k, v in sdks.headers.items() if k not in skip}


@pytest.mark.parametrize("mode", ["sync", "async", "stream", "astream"])
@pytest.mark.parametrize("status, sdk_error", [
    (401, "UnauthorizedError"), (429, "TooManyRequestsError"), (500, "InternalServerError"),
    (502, "ApiError"),
])
def test_statuses_raise_the_sdks_own_exceptions(fake, mode, status, sdk_error):
    fake.queue(Reply(status=status, error="nope", headers={"retry-after": "3"}))
    with pytest.raises(cohere.core.api_error.ApiError) as info:
        run(make_adapter(fake), mode, request())
    assert type(info.value).__name__ == sdk_error and info.value.status_code == status
    assert info.value.body["message"] == "nope" and info.value.headers["retry-after"] == "3"


def test_a_body_that_is_not_json_is_the_sdks_api_error(fake):
    fake.queue(Reply(malformed=True))
    with pytest.raises(cohere.core.api_error.ApiError) as info:
        make_adapter(fake).complete(request(), MODEL)
    assert type(info.value) is cohere.core.api_error.ApiError and info.value.status_code == 200


# ── streams: the same seam, the events read as JSON ──────────────────────────

def _seen(chunks):
    return [c.model_dump(exclude={"id", "created"}) for c in chunks]  # ids: one per response


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("tools", [False, True])
def test_a_stream_through_the_seam_is_the_sdks(fake, monkeypatch, sdk_model_calls, mode, tools):
    """The same stream through the seam and through ``chat_stream``: the same request and the
    same chunks read back, and no SDK model built on the seam's side."""
    req = request(tools=[WEATHER]) if tools else request()
    reply = Reply(text="Sunny in Paris.", chunk_size=4, usage={"input_tokens": 11, "output_tokens": 4},
                  tool_calls=[{"id": "c1", "name": "get_weather", "arguments": {"city": "Paris"}}] if tools else None)
    fake.queue(reply, reply)
    ours = read_stream(make_adapter(fake), req, MODEL, mode)
    assert sdk_model_calls == []
    monkeypatch.setattr(cohere, "__version__", "99.0.0")  # an untested cohere: the public path
    sdks = read_stream(make_adapter(fake), req, MODEL, mode)
    assert sdk_model_calls  # the SDK's raw client did that one
    assert _seen(ours) == _seen(sdks) and ours[-1].usage.completion_tokens == 4
    sent, public = fake.requests[-2], fake.requests[-1]
    assert sent.stream and sent.json == public.json and sent.json["stream"] is True
    skip = {"content-length"}
    assert {k: v for k, v in sent.headers.items() if k not in skip} == {
        k: v for k, v in public.headers.items() if k not in skip}

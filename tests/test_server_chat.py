"""An unmodified OpenAI SDK (sync, async, streaming) against `unillm serve`, upstream FakeProvider."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from tests.test_server_support import PROVIDER_SECRET, make_served, served, upstream  # noqa: F401
from unillm.testing import Reply

openai = pytest.importorskip("openai")

MSG = [{"role": "user", "content": "What is 2+2?"}]
VENDORS = [("gpt-4o-mini", "openai"), ("claude-sonnet-4-5", "anthropic"),
           ("gemini-2.5-flash", "google"), ("command-r", "cohere")]


@pytest.mark.parametrize(("model", "provider"), VENDORS)
def test_sync_sdk_reaches_every_vendor_with_cost_headers(served, upstream, model, provider):
    upstream.queue(Reply(text="Four.", usage={"input_tokens": 1000, "output_tokens": 200}))
    raw = served.openai().chat.completions.with_raw_response.create(model=model, messages=MSG)
    resp = raw.parse()
    assert resp.choices[0].message.content == "Four."
    assert upstream.requests[-1].protocol == provider
    assert raw.headers["x-unillm-model"].startswith(f"{provider}/")
    assert raw.headers["x-unillm-cached"] == "false"
    assert raw.headers["x-unillm-tokens"] == str(resp.usage.total_tokens) == "1200"
    expected = served.client.pricebook.cost(provider, model, _usage(1000, 200)).total_usd
    assert Decimal(raw.headers["x-unillm-cost"]) == expected > 0
    rec = list(served.client.ledger.records())[-1]
    assert rec.id == raw.headers["x-unillm-ledger-id"] and rec.total_usd == expected
    assert rec.tags["user"] == "root" and rec.tags["project"] == "ops" and rec.tags["key_id"].startswith("key_")


def _usage(i: int, o: int):
    from unillm.types import Usage
    return Usage(input_tokens=i, output_tokens=o)


async def test_async_sdk_and_metadata_tags(upstream, tmp_path):
    for served in make_served(upstream, tmp_path, server={"allow_tags": ["feature"]}):
        client = served.aopenai()
        resp = await client.chat.completions.create(model="claude-sonnet-4-5", messages=MSG,
                                                    metadata={"feature": "faq"})
        assert resp.choices[0].message.content == "Hello from FakeProvider."
        rec = list(served.client.ledger.records())[-1]
        assert rec.tags["feature"] == "faq" and rec.tags["user"] == "root"
        # the key's tenancy is not the caller's to claim: refused, naming the tag
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="claude-sonnet-4-5", messages=MSG,
                                                 metadata={"feature": "faq", "user": "mallory"})
        assert info.value.body["param"] == "metadata.user"
        await client.close()


def test_streaming_sync_with_usage_and_done(served, upstream):
    upstream.queue(Reply(text="streamed answer here", usage={"input_tokens": 30, "output_tokens": 5}))
    chunks = list(served.openai().chat.completions.create(
        model="gemini-2.5-flash", messages=MSG, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed answer here"
    last = chunks[-1]
    assert last.choices == [] and last.usage.prompt_tokens == 30 and last.usage.completion_tokens == 5
    rec = list(served.client.ledger.records())[-1]
    assert rec.stream and Decimal(last.model_extra["unillm"]["cost_usd"]) == rec.total_usd
    assert last.model_extra["unillm"]["ledger_id"] == rec.id


def test_stream_wire_ends_with_done_and_no_usage_unless_asked(served):
    with httpx.stream("POST", served.url + "/v1/chat/completions",
                      headers={"authorization": f"Bearer {served.admin}"},
                      json={"model": "command-r", "messages": MSG, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-unillm-model"] == "cohere/command-r"
        frames = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    bodies = [json.loads(f[6:]) for f in frames[:-1]]
    assert all(b["object"] == "chat.completion.chunk" and b["choices"] for b in bodies)
    assert not any("usage" in b for b in bodies)


async def test_streaming_async_with_tools(served, upstream):
    upstream.queue(Reply(text="", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    client = served.aopenai()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    stream = await client.chat.completions.create(model="claude-sonnet-4-5", messages=MSG, tools=tools,
                                                  stream=True)
    args, names, finish = [], [], None
    async for chunk in stream:
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                names.append(tc.function.name or "")
                args.append(tc.function.arguments or "")
            finish = c.finish_reason or finish
    assert "".join(names) == "get_weather" and json.loads("".join(args)) == {"city": "Paris"}
    assert finish == "tool_calls"
    sent = upstream.requests[-1].json
    assert sent["tools"][0]["name"] == "get_weather"  # anthropic's shape: the tool reached the vendor
    await client.close()


def test_tools_and_response_format_non_stream(served, upstream):
    upstream.queue(Reply(text='{"answer": 4}'))
    resp = served.openai().chat.completions.create(
        model="gpt-4o-mini", messages=MSG,
        response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": {
            "type": "object", "properties": {"answer": {"type": "integer"}}}}})
    assert json.loads(resp.choices[0].message.content) == {"answer": 4}
    assert upstream.requests[-1].json["response_format"]["type"] == "json_schema"
    upstream.queue(Reply(text="", tool_calls=[{"name": "add", "arguments": {"a": 2}}]))
    resp = served.openai().chat.completions.create(
        model="gpt-4o-mini", messages=MSG, tools=[{"type": "function", "function": {"name": "add"}}])
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "add" and json.loads(call.function.arguments) == {"a": 2}
    assert resp.choices[0].finish_reason == "tool_calls"
    # the SDK's own message object sent back in the next turn is accepted
    follow = served.openai().chat.completions.create(model="gpt-4o-mini", messages=[
        *MSG, resp.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "4"}])
    assert follow.choices[0].message.content


def test_models_lists_vendors_and_aliases(upstream, tmp_path):
    for s in make_served(upstream, tmp_path, aliases={"fast": "google/gemini-2.5-flash"}):
        ids = {m.id for m in s.openai().models.list().data}
        assert {"openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "fast"} <= ids
        assert any(i.startswith("cohere/") for i in ids) and any(i.startswith("google/") for i in ids)
        assert s.openai().chat.completions.create(model="fast", messages=MSG).model


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"model": "nosuch-model", "messages": MSG}, 404, "model"),
    ({"model": "gpt-9-ultra", "messages": MSG}, 404, "model"),  # resolves to openai, has no price
    ({"model": "gpt-4o-mini", "messages": [{"role": "user"}]}, 400, "messages.0"),
    ({"model": "gpt-4o-mini", "messages": MSG, "temperature": 9}, 400, "temperature"),
    ({"model": "gpt-4o-mini", "messages": MSG, "n": 3}, 400, "n"),
    ({"model": "gpt-4o-mini", "messages": MSG, "bogus": 1}, 400, "bogus"),
    ({"messages": MSG}, 400, "model"),
])
def test_bad_requests_keep_openai_error_shape(served, body, status, param):
    r = httpx.post(served.url + "/v1/chat/completions", json=body,
                   headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == status
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["message"]
    assert (err["param"] or "").startswith(param)


def test_sdk_raises_its_own_exceptions(served):
    with pytest.raises(openai.NotFoundError) as info:
        served.openai().chat.completions.create(model="nosuch-model", messages=MSG)
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        served.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG, top_p=5)


def test_upstream_errors_map_to_gateway_statuses(served, upstream):
    upstream.queue(Reply(status=429, error="slow down", headers={"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as info:
        served.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert info.value.response.headers["retry-after"] == "7"
    upstream.queue(Reply(status=500, error="boom"))
    with pytest.raises(openai.InternalServerError) as info:
        served.openai().chat.completions.create(model="claude-sonnet-4-5", messages=MSG)
    assert info.value.status_code == 502
    # the gateway's provider key is rejected upstream: the caller sees 502, never the key
    upstream.queue(Reply(status=401, error=f"Incorrect API key provided: {PROVIDER_SECRET}"))
    r = httpx.post(served.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                   headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == 502 and "Incorrect API key" in r.text
    assert PROVIDER_SECRET not in r.text and PROVIDER_SECRET[:12] not in r.text


def test_upstream_timeout_is_504(upstream, tmp_path):
    for s in make_served(upstream, tmp_path, provider_settings={"timeout": 0.3}):
        upstream.queue(Reply(delay=1.5))
        r = httpx.post(s.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                       headers={"authorization": f"Bearer {s.admin}"}, timeout=10)
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"


def test_stream_broken_upstream_sends_error_event_and_records_partial(served, upstream):
    upstream.queue(Reply(text="a long answer that will be cut", chunk_size=4, cut_after=3))
    with pytest.raises(openai.APIError):
        for _ in served.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
            pass
    rec = list(served.client.ledger.records())[-1]
    assert rec.status in ("partial", "error") and rec.stream


def test_provider_key_never_in_ledger_or_responses(served, upstream):
    served.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
    db = (served.client.ledger.store.path)
    from pathlib import Path
    blob = b"".join(p.read_bytes() for p in Path(db).parent.glob("l.db*"))
    assert PROVIDER_SECRET.encode() not in blob
    assert served.admin.encode() not in blob  # gateway keys are stored as hashes only

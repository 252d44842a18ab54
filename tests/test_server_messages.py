"""The real ``anthropic`` SDK and the real ``openai`` SDK's Responses API against `unillm serve`
(``/v1/messages``, ``/v1/responses``, ``/v1/models/{id}``), upstream FakeProvider."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.test_server_support import served, upstream  # noqa: F401
from unillm.testing import Reply
from unillm.types import Usage

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")

VENDORS = [("gpt-4o-mini", "openai"), ("gemini-2.5-flash", "google"), ("claude-sonnet-4-5", "anthropic")]
MSG = [{"role": "user", "content": "What is 2+2?"}]


def _claude(served, **kw):
    return anthropic.Anthropic(base_url=served.url, api_key=served.admin, max_retries=0, **kw)


def _last(served):
    return list(served.client.ledger.records())[-1]


@pytest.mark.parametrize(("model", "provider"), VENDORS)
def test_messages_create_reaches_every_vendor_priced(served, upstream, model, provider):
    upstream.queue(Reply(text="Four.", usage={"input_tokens": 1000, "output_tokens": 200}))
    raw = _claude(served).messages.with_raw_response.create(model=model, max_tokens=64, messages=MSG,
                                                            system="Be brief.")
    msg = raw.parse()
    assert msg.content[0].text == "Four." and msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 1000 and msg.usage.output_tokens == 200
    assert upstream.requests[-1].protocol == provider
    expected = served.client.pricebook.cost(provider, model, Usage(input_tokens=1000, output_tokens=200)).total_usd
    assert Decimal(raw.headers["x-unillm-cost"]) == expected > 0
    rec = _last(served)
    assert rec.id == raw.headers["x-unillm-ledger-id"] and rec.total_usd == expected
    assert rec.tags["user"] == "root" and rec.tags["key_id"].startswith("key_")


@pytest.mark.parametrize(("model", "provider"), VENDORS)
def test_messages_stream_reaches_every_vendor_cost_in_final_event(served, upstream, model, provider):
    upstream.queue(Reply(text="streamed answer here", usage={"input_tokens": 30, "output_tokens": 5}))
    with _claude(served).messages.stream(model=model, max_tokens=64, messages=MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streamed answer here" and final.content[0].text == text
    assert final.usage.input_tokens == 30 and final.usage.output_tokens == 5
    assert upstream.requests[-1].protocol == provider
    rec = _last(served)
    assert rec.stream and rec.total_usd > 0


def test_messages_stream_event_carries_unillm_cost(served, upstream):
    upstream.queue(Reply(text="hi", usage={"input_tokens": 30, "output_tokens": 5}))
    events = list(_claude(served).messages.create(model="gpt-4o-mini", max_tokens=64, messages=MSG,
                                                  stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    delta = events[-2]
    rec = _last(served)
    assert Decimal(delta.model_extra["unillm"]["cost_usd"]) == rec.total_usd > 0
    assert delta.model_extra["unillm"]["ledger_id"] == rec.id


def test_cache_control_on_system_block_reaches_anthropic_and_is_priced(served, upstream):
    system = [{"type": "text", "text": "You are a long, cacheable system prompt. " * 40,
               "cache_control": {"type": "ephemeral"}}]
    client = _claude(served)
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, system=system, messages=MSG)
    sent = upstream.requests[-1].json
    assert sent["system"] == system  # the marker reaches the vendor as sent
    written = first.usage.cache_creation_input_tokens
    assert written > 0 and first.usage.cache_read_input_tokens == 0
    rec = _last(served)
    price = served.client.pricebook.cost("anthropic", "claude-sonnet-4-5", Usage(
        input_tokens=first.usage.input_tokens, cache_write_tokens=written,
        output_tokens=first.usage.output_tokens))
    assert rec.total_usd == price.total_usd and price.cache_write_usd > 0
    second = client.messages.create(model="claude-sonnet-4-5", max_tokens=64, system=system, messages=MSG)
    assert second.usage.cache_read_input_tokens == written and second.usage.cache_creation_input_tokens == 0
    read_price = served.client.pricebook.cost("anthropic", "claude-sonnet-4-5", Usage(
        input_tokens=second.usage.input_tokens, cache_read_tokens=written,
        output_tokens=second.usage.output_tokens))
    assert _last(served).total_usd == read_price.total_usd
    assert read_price.cache_read_usd < price.cache_write_usd  # reads are billed at the lower rate


def test_cache_control_on_tools_and_blocks_reaches_anthropic_but_not_openai(served, upstream):
    tools = [{"name": "lookup", "description": "Look up", "input_schema": {"type": "object", "properties": {}},
              "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    messages = [{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]}]
    client = _claude(served)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=64, tools=tools, messages=messages)
    body = upstream.requests[-1].json
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    client.messages.create(model="gpt-4o-mini", max_tokens=64, tools=tools, messages=messages)
    assert "cache_control" not in str(upstream.requests[-1].json)  # implicit caching: marker dropped


def test_messages_tool_use_round_trip(served, upstream):
    upstream.queue(Reply(text="", tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}]),
                   Reply(text="done"))
    client = _claude(served)
    tools = [{"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    msg = client.messages.create(model="gpt-4o-mini", max_tokens=64, tools=tools, messages=MSG)
    assert msg.stop_reason == "tool_use" and msg.content[0].type == "tool_use"
    assert msg.content[0].input == {"q": "x"}
    follow = [*MSG, {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": msg.content[0].id,
                                             "content": "42"}]}]
    out = client.messages.create(model="gpt-4o-mini", max_tokens=64, tools=tools, messages=follow)
    assert out.content[0].text == "done"
    sent = upstream.requests[-1].json["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": msg.content[0].id, "content": [{"type": "text", "text": "42"}]}


def test_messages_errors_are_anthropic_shaped(served, upstream):
    client = _claude(served)
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="gpt-4o-mini", max_tokens=64, messages=MSG,
                               thinking={"type": "enabled", "budget_tokens": 1024})
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "thinking" in info.value.body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=served.url, api_key="nope", max_retries=0).messages.create(
            model="gpt-4o-mini", max_tokens=8, messages=MSG)
    with pytest.raises(anthropic.BadRequestError) as info:  # refused before anything is sent
        client.messages.create(model="command-r", max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]}])
    assert "cohere" in info.value.body["error"]["message"] and "'file'" in info.value.body["error"]["message"]
    assert upstream.requests == []


def test_responses_create_plain_and_stream(served, upstream):
    client = served.openai()
    upstream.queue(Reply(text="Four.", usage={"input_tokens": 100, "output_tokens": 20}))
    raw = client.responses.with_raw_response.create(model="claude-sonnet-4-5", input="What is 2+2?",
                                                    instructions="Be brief.", max_output_tokens=32)
    resp = raw.parse()
    assert resp.output_text == "Four." and resp.usage.input_tokens == 100 and resp.usage.output_tokens == 20
    sent = upstream.requests[-1].json
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 32
    rec = _last(served)
    assert Decimal(raw.headers["x-unillm-cost"]) == rec.total_usd > 0
    upstream.queue(Reply(text="streamed answer", usage={"input_tokens": 10, "output_tokens": 3}))
    events = list(client.responses.create(model="gemini-2.5-flash", input="hi", stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "streamed answer"
    done = events[-1]
    assert done.type == "response.completed" and done.response.output_text == "streamed answer"
    rec = _last(served)
    assert done.response.usage.total_tokens == 13
    assert Decimal(done.response.model_extra["unillm"]["cost_usd"]) == rec.total_usd > 0


def test_responses_function_tools_and_unsupported_fields(served, upstream):
    client = served.openai()
    upstream.queue(Reply(text="", tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}]))
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]
    resp = client.responses.create(model="gpt-4o-mini", input="find x", tools=tools)
    call = resp.output[0]
    assert call.type == "function_call" and call.name == "lookup" and call.arguments == '{"q": "x"}'
    upstream.queue(Reply(text="found"))
    resp = client.responses.create(model="gpt-4o-mini", tools=tools, input=[
        {"role": "user", "content": "find x"},
        {"type": "function_call", "call_id": call.call_id, "name": "lookup", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "x=1"}])
    assert resp.output_text == "found"
    assert upstream.requests[-1].json["messages"][-1] == {"role": "tool", "tool_call_id": call.call_id,
                                                          "content": "x=1"}
    for field, value in (("previous_response_id", "resp_1"), ("background", True)):
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="gpt-4o-mini", input="hi", **{field: value})
        assert info.value.body["param"] == field
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-4o-mini", input="hi", tools=[{"type": "web_search"}])
    assert info.value.body["param"] == "tools.0"


def test_model_detail(served):
    client = served.openai()
    listed = {m.id for m in client.models.list()}
    one = sorted(listed)[0]
    assert client.models.retrieve(one).id == one
    r = httpx.get(served.url + "/v1/models/openai/not-a-model", headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_messages_and_responses_share_the_keys_limits(served, upstream):
    key = served.key(user="ann", project="bot", rpm=1)
    claude = _claude(served, ).with_options(api_key=key)
    claude.messages.create(model="gpt-4o-mini", max_tokens=8, messages=MSG)
    assert _last(served).tags["user"] == "ann"
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="gpt-4o-mini", max_tokens=8, messages=MSG)
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert info.value.response.headers["retry-after"]
    with pytest.raises(openai.RateLimitError):
        served.openai(key).responses.create(model="gpt-4o-mini", input="hi")


def test_stream_helpers_accumulate_tool_calls(served, upstream):
    """The SDKs' own stream helpers (anthropic messages.stream, openai responses.stream)
    rebuild tool calls from the gateway's events."""
    call = Reply(text="let me look", tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}],
                 usage={"input_tokens": 12, "output_tokens": 7})
    upstream.queue(call, call)
    tools = [{"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    with _claude(served).messages.stream(model="gemini-2.5-flash", max_tokens=64, tools=tools,
                                         messages=MSG) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"q": "x"} and final.stop_reason == "tool_use"
    fn = [{"type": "function", "name": "lookup", "parameters": tools[0]["input_schema"]}]
    with served.openai().responses.stream(model="gpt-4o-mini", input="find x", tools=fn) as stream:
        done = stream.get_final_response()
    assert done.output_text == "let me look"
    assert [(o.type, getattr(o, "arguments", None)) for o in done.output] == [
        ("message", None), ("function_call", '{"q": "x"}')]


def test_document_and_image_blocks_convert_per_vendor(served, upstream):
    pdf = "JVBERi0xLjQKJSVFT0YK"  # %PDF-1.4 %%EOF
    png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
    content = [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
                "title": "t.pdf", "cache_control": {"type": "ephemeral"}},
               {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
               {"type": "text", "text": "what is this?"}]
    client = _claude(served)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": content}])
    sent = upstream.requests[-1].json["messages"][0]["content"]
    assert sent[0] == {"type": "document", "title": "t.pdf", "cache_control": {"type": "ephemeral"},
                       "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}}
    assert sent[1]["source"]["data"] == png
    client.messages.create(model="gemini-2.5-flash", max_tokens=8, messages=[{"role": "user", "content": content}])
    parts = upstream.requests[-1].json["contents"][0]["parts"]
    assert "inlineData" in parts[0] and "inlineData" in parts[1] and parts[2] == {"text": "what is this?"}
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="gpt-4o-mini", max_tokens=8, messages=MSG, extra_body={"route_to": "x"})
    assert "route_to" in info.value.body["error"]["message"]


def test_a_keys_allowed_models_hold_on_messages_and_responses(served, upstream):
    key = served.key(user="ann", models=["gpt-4o-mini"])
    claude = _claude(served).with_options(api_key=key)
    claude.messages.create(model="gpt-4o-mini", max_tokens=8, messages=MSG)
    with pytest.raises(anthropic.PermissionDeniedError):
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=MSG)
    with pytest.raises(openai.PermissionDeniedError):
        served.openai(key).responses.create(model="claude-sonnet-4-5", input="hi")
    assert len(upstream.requests) == 1

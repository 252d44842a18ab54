"""Pure tests of the Anthropic converters, against the vendor's recorded payloads."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ref
from unillm.adapters.anthropic.convert import (
    DEFAULT_MAX_TOKENS,
    StreamState,
    finish_reason,
    from_response,
    to_request,
    usage_from,
)
from unillm.errors import InvalidRequestError, UnsupportedParamError
from unillm.profiles import build_settings
from unillm.types import ChatRequest

MODEL = "claude-sonnet-4-5"


@pytest.fixture(scope="module")
def settings():
    return build_settings()["anthropic"]


def req(messages=None, **params) -> ChatRequest:
    return ChatRequest(model=MODEL, messages=messages or [{"role": "user", "content": "hi"}], **params)


def sdk_message(body: dict):
    from anthropic.types import Message
    return Message.model_validate(body)


def sdk_events(events: list[dict]) -> list:
    """The SDK's own event objects, parsed the way its Stream parses them."""
    from anthropic._models import construct_type
    from anthropic.types import RawMessageStreamEvent
    return [construct_type(type_=RawMessageStreamEvent, value=e["data"]) for e in events]


def run_stream(events, provider="anthropic"):
    state = StreamState(provider, created=1)
    chunks = [c for e in events for c in state.feed(e)]
    return state, chunks


def text_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks)


# ── responses ────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("as_sdk", [False, True], ids=["dict", "sdk-object"])
def test_captured_message_maps_text_finish_and_usage(as_sdk: bool) -> None:
    body = ref("anthropic_message_captured")
    raw = sdk_message(body) if as_sdk else body
    r = from_response(raw, "anthropic", created=7)
    assert r.id == "msg_01T4jd6NyD9xGGtTPDC4ogy5"
    assert r.model == "claude-sonnet-4-5-20250929"
    assert r.created == 7 and r.provider == "anthropic" and r.cost is None
    assert json.loads(r.content)["total"] == 14.0
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.tool_calls is None
    u = r.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (406, 50, 0, 0)
    assert (u.prompt_tokens, u.total_tokens, u.source) == (406, 456, "provider")


@pytest.mark.parametrize("turn", ref("anthropic_usage_prompt_caching_cookbook"), ids=lambda t: f"turn{t['turn']}")
def test_cache_reads_and_writes_are_separate_from_input(turn: dict) -> None:
    raw = turn["usage"]
    u = usage_from(raw)
    # Anthropic's input_tokens excludes both cache buckets: it is our uncached bucket as is
    assert u.input_tokens == raw["input_tokens"] == 4
    assert u.cache_read_tokens == raw["cache_read_input_tokens"]
    assert u.cache_write_tokens == raw["cache_creation_input_tokens"]
    assert u.prompt_tokens == 4 + raw["cache_read_input_tokens"] + raw["cache_creation_input_tokens"]
    assert u.prompt_tokens_details.cached_tokens == raw["cache_read_input_tokens"]
    assert u.completion_tokens == raw["output_tokens"]


def test_thinking_tokens_are_reasoning_inside_output() -> None:
    u = usage_from({"input_tokens": 10, "output_tokens": 300,
                    "output_tokens_details": {"thinking_tokens": 250}})
    assert (u.output_tokens, u.reasoning_tokens, u.completion_tokens) == (300, 250, 300)


def test_missing_usage_is_none_not_zero() -> None:
    body = dict(ref("anthropic_message_captured"))
    del body["usage"]
    assert from_response(body, "anthropic").usage is None
    assert usage_from(None) is None


def test_null_cache_fields_count_as_zero() -> None:
    u = usage_from({"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": None,
                    "cache_creation_input_tokens": None})
    assert (u.cache_read_tokens, u.cache_write_tokens, u.total_tokens) == (0, 0, 5)


ONE_HOUR_USAGE = {"input_tokens": 10, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 3000,
                  "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 1000},
                  "output_tokens": 5}


@pytest.mark.parametrize("as_sdk", [False, True], ids=["dict", "sdk-object"])
def test_1h_cache_writes_are_kept_apart_within_cache_writes(as_sdk: bool) -> None:
    body = {**ref("anthropic_message_captured"), "usage": ONE_HOUR_USAGE}
    u = from_response(sdk_message(body) if as_sdk else body, "anthropic").usage
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (3000, 1000)
    assert (u.prompt_tokens, u.total_tokens) == (3010, 3015)  # the 1h part is not added again


def test_captured_ttl_breakdown_of_zeros_and_absent_breakdown() -> None:
    captured = ref("anthropic_message_captured")["usage"]
    assert captured["cache_creation"]["ephemeral_1h_input_tokens"] == 0
    assert usage_from(captured).cache_write_1h_tokens == 0
    assert usage_from({"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 7,
                       "cache_creation": None}).cache_write_1h_tokens == 0


def test_ttl_breakdown_alone_gives_the_write_total() -> None:
    u = usage_from({"input_tokens": 1, "output_tokens": 1,
                    "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30}})
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (50, 30)


def test_1h_writes_above_the_reported_total_are_a_problem_not_clamped() -> None:
    # the same rule for every vendor: a part larger than its whole is kept as reported and flagged
    u = usage_from({**ONE_HOUR_USAGE, "cache_creation_input_tokens": 600})
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (600, 1000)
    assert "1-hour cache writes (1000) exceed all cache writes (600)" in u.problem


@pytest.mark.parametrize("as_sdk", [False, True], ids=["dict", "sdk-object"])
def test_stream_keeps_the_ttl_breakdown_of_message_start(as_sdk: bool) -> None:
    events = [e["data"] for e in ref("anthropic_stream_captured")]
    start, delta = events[0], events[-2]
    assert delta["type"] == "message_delta" and "cache_creation" not in delta["usage"]
    events[0] = {**start, "message": {**start["message"], "usage": {**ONE_HOUR_USAGE, "output_tokens": 1}}}
    # message_delta repeats the cumulative counts but carries no TTL breakdown
    events[-2] = {**delta, "usage": {**delta["usage"], "input_tokens": 10,
                                     "cache_creation_input_tokens": 3000}}
    state, chunks = run_stream(sdk_events([{"data": e} for e in events]) if as_sdk else events)
    u = chunks[-1].usage
    assert (u.cache_write_tokens, u.cache_write_1h_tokens, u.output_tokens) == (3000, 1000, 10)


@pytest.mark.parametrize("stop,expected", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    (None, None),
])
def test_stop_reasons(stop, expected) -> None:
    assert finish_reason(stop) == expected
    body = {**ref("anthropic_message_captured"), "stop_reason": stop}
    assert from_response(body, "anthropic").choices[0].finish_reason == expected


@pytest.mark.parametrize("as_sdk", [False, True], ids=["dict", "sdk-object"])
def test_tool_use_blocks_become_tool_calls(as_sdk: bool) -> None:
    body = {**ref("anthropic_message_captured"), "stop_reason": "tool_use", "content": [
        {"type": "thinking", "thinking": "let me look", "signature": "sig"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "days": 2}},
        {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
    ]}
    r = from_response(sdk_message(body) if as_sdk else body, "anthropic")
    msg = r.choices[0].message
    assert msg.content == "Checking."  # thinking is not part of the answer
    assert [tc.id for tc in msg.tool_calls] == ["toolu_01", "toolu_02"]
    assert msg.tool_calls[0].function.name == "get_weather"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "Paris", "days": 2}
    assert json.loads(msg.tool_calls[1].function.arguments) == {}
    assert r.choices[0].finish_reason == "tool_calls"


def test_tool_only_answer_has_no_content() -> None:
    body = {**ref("anthropic_message_captured"), "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"x": 1}}]}
    assert from_response(body, "anthropic").choices[0].message.content is None


# ── streams ──────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("as_sdk", [False, True], ids=["dict", "sdk-object"])
@pytest.mark.parametrize("name,text,usage", [
    ("anthropic_stream_basic", "Hello there!", (11, 6)),
    ("anthropic_stream_captured", "[12345,67890]", (135, 10)),
])
def test_stream_takes_cumulative_usage_once(name, text, usage, as_sdk) -> None:
    events = ref(name)
    state, chunks = run_stream(sdk_events(events) if as_sdk else [e["data"] for e in events])
    assert text_of(chunks) == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert state.done
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    # message_start said output 1, message_delta said 6 (cumulative): 6, never 7;
    # the captured stream repeats input_tokens in message_delta: counted once
    assert (last.usage.input_tokens, last.usage.output_tokens) == usage
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {events[0]["data"]["message"]["id"]}
    assert {c.model for c in chunks} == {events[0]["data"]["message"]["model"]}


def _tool_stream(with_usage: bool = True) -> list[dict]:
    start_usage = {"input_tokens": 40, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5,
                   "output_tokens": 1}
    message = {"id": "msg_t", "type": "message", "role": "assistant", "model": MODEL, "content": [],
               "stop_reason": None, "stop_sequence": None}
    if with_usage:
        message["usage"] = start_usage
    delta = {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}}
    if with_usage:
        delta["usage"] = {"output_tokens": 33}
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Let me check."}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2,
         "content_block": {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 2,
         "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": 'ris"}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "content_block_start", "index": 3,
         "content_block": {"type": "tool_use", "id": "toolu_10", "name": "get_time", "input": {}}},
        {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_stop", "index": 3},
        delta,
        {"type": "message_stop"},
    ]


def test_stream_tool_calls_are_openai_shaped_deltas() -> None:
    state, chunks = run_stream(_tool_stream())
    assert text_of(chunks) == "Let me check."  # thinking deltas are not content
    calls: dict[int, dict] = {}
    for c in chunks:
        for d in c.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = d.id or entry["id"]
            entry["name"] += (d.function or {}).get("name", "")
            entry["arguments"] += (d.function or {}).get("arguments", "")
    assert calls == {0: {"id": "toolu_9", "name": "get_weather", "arguments": '{"city": "Paris"}'},
                     1: {"id": "toolu_10", "name": "get_time", "arguments": "{}"}}
    last = chunks[-1]
    assert last.choices[0].finish_reason == "tool_calls"
    u = last.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (40, 100, 5, 33)


def test_stream_without_usage_reports_none() -> None:
    state, chunks = run_stream(_tool_stream(with_usage=False))
    assert state.done and state.usage is None
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_not_done_until_message_stop() -> None:
    events = [e["data"] for e in ref("anthropic_stream_basic")]
    state, chunks = run_stream(events[:-2])  # cut before message_delta
    assert not state.done and state.stop_reason is None
    assert all(c.choices[0].finish_reason is None for c in chunks)
    assert state.usage.output_tokens == 1  # only the provisional count so far


# ── requests ─────────────────────────────────────────────────────────────────

def test_minimal_request_gets_default_max_tokens(settings) -> None:
    kw = to_request(req(), MODEL, settings)
    assert kw == {"model": MODEL, "max_tokens": DEFAULT_MAX_TOKENS,
                  "messages": [{"role": "user", "content": "hi"}]}
    assert to_request(req(max_tokens=99), MODEL, settings)["max_tokens"] == 99


def test_system_and_developer_go_top_level(settings) -> None:
    kw = to_request(req([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
    ]), MODEL, settings)
    assert kw["system"] == "Be brief.\n\nAnswer in French."
    assert kw["messages"] == [{"role": "user", "content": "hi"}]


def test_multi_turn_and_consecutive_roles_merged(settings) -> None:
    kw = to_request(req([
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "three"},
    ]), MODEL, settings)
    assert kw["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "three"},
    ]


def test_tool_calls_and_results_round_trip(settings) -> None:
    kw = to_request(req([
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "toolu_2", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "25C"},
        {"role": "user", "content": "thanks"},
    ]), MODEL, settings)
    assert kw["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]}
    # both results and the follow-up question form one user turn, results first
    assert kw["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "25C"},
        {"type": "text", "text": "thanks"},
    ]}
    assert len(kw["messages"]) == 3


def test_assistant_tool_call_without_text(settings) -> None:
    kw = to_request(req([
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "t1", "function": {"name": "now", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "noon"},
    ]), MODEL, settings)
    assert kw["messages"][1]["content"] == [{"type": "tool_use", "id": "t1", "name": "now", "input": {}}]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_bad_tool_call_arguments_are_a_clear_error(settings, arguments) -> None:
    r = req([{"role": "user", "content": "x"},
             {"role": "assistant", "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": arguments}}]},
             {"role": "tool", "tool_call_id": "t1", "content": "y"}])
    with pytest.raises(InvalidRequestError, match="t1"):
        to_request(r, MODEL, settings)


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.mark.parametrize("choice,expected", [
    (None, None),
    ("auto", {"type": "auto"}),
    ("none", {"type": "none"}),
    ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
def test_tools_and_tool_choice(settings, choice, expected) -> None:
    kw = to_request(req(tools=TOOLS, tool_choice=choice), MODEL, settings)
    assert kw["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                            "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert kw.get("tool_choice") == expected


def test_parallel_tool_calls_off(settings) -> None:
    kw = to_request(req(tools=TOOLS, parallel_tool_calls=False), MODEL, settings)
    assert kw["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    kw = to_request(req(tools=TOOLS, tool_choice="required", parallel_tool_calls=False), MODEL, settings)
    assert kw["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_images_as_base64_and_url(settings) -> None:
    kw = to_request(req([{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]), MODEL, settings)
    assert kw["messages"][0]["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_malformed_data_url_is_a_clear_error(settings) -> None:
    r = req([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}])
    with pytest.raises(InvalidRequestError, match="base64"):
        to_request(r, MODEL, settings)


def test_json_schema_uses_native_structured_output(settings) -> None:
    schema = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"],
              "additionalProperties": False}
    kw = to_request(req(response_format={"type": "json_schema", "json_schema": {"name": "order", "schema": schema}}),
                    MODEL, settings)
    assert kw["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "tools" not in kw


def test_json_object_is_unsupported(settings) -> None:
    with pytest.raises(UnsupportedParamError, match="anthropic.*json_object"):
        to_request(req(response_format={"type": "json_object"}), MODEL, settings)
    assert "output_config" not in to_request(req(response_format={"type": "json_object"}, drop_params=True),
                                             MODEL, settings)


def test_common_params(settings) -> None:
    kw = to_request(req(stop="END", max_tokens=50, user="u-42", reasoning_effort="high"), MODEL, settings)
    assert kw["stop_sequences"] == ["END"]
    assert kw["max_tokens"] == 50
    assert kw["metadata"] == {"user_id": "u-42"}
    assert kw["output_config"] == {"effort": "high"}


@pytest.mark.parametrize("param,value", [
    ("temperature", 0.2), ("top_p", 0.9), ("top_k", 40), ("seed", 7),
    ("frequency_penalty", 0.5), ("presence_penalty", 0.5),
])
def test_params_the_vendor_cannot_honour(settings, param, value) -> None:
    with pytest.raises(UnsupportedParamError) as info:
        to_request(req(**{param: value}), MODEL, settings)
    assert info.value.param == param and info.value.provider == "anthropic"
    assert "anthropic" in str(info.value) and repr(param) in str(info.value)
    kw = to_request(req(drop_params=True, **{param: value}), MODEL, settings)
    assert param not in kw and value not in kw.values()


def test_extra_kwargs_pass_straight_through(settings) -> None:
    kw = to_request(req(extra={"thinking": {"type": "adaptive"}, "service_tier": "auto"}), MODEL, settings)
    assert kw["thinking"] == {"type": "adaptive"} and kw["service_tier"] == "auto"

"""Pure tests of unillm.adapters.cohere.convert against Cohere's documented payloads."""

from __future__ import annotations

import inspect
import json

import pytest

from tests.conftest import ref
from unillm import errors
from unillm.adapters.cohere import convert
from unillm.profiles import build_settings
from unillm.types import ChatRequest, Message

MODEL = "command-r-plus"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture
def settings():
    return build_settings()["cohere"]


def req(*messages: dict, **params) -> ChatRequest:
    msgs = list(messages) or [{"role": "user", "content": "hi"}]
    return ChatRequest(model=MODEL, messages=msgs, **params)


def sdk_object(type_path: str, body):
    """The SDK's own parsing of a payload, to prove convert takes objects as well as dicts."""
    import importlib

    from cohere.core.unchecked_base_model import construct_type
    module, _, name = type_path.rpartition(".")
    return construct_type(type_=getattr(importlib.import_module(module), name), object_=body)


# ── usage: billed_units, never tokens ────────────────────────────────────────

def test_reference_response_bills_billed_units_not_tokens():
    body = ref("cohere_v2_chat_api_reference")
    r = convert.from_response(body, "cohere", model="command-r")
    # the API reference: billed_units 5 in / 418 out, tokens 71 in (prompt template included)
    assert (r.usage.input_tokens, r.usage.output_tokens) == (5, 418)
    assert r.usage.prompt_tokens == 5 and r.usage.total_tokens == 423
    assert r.usage.cache_read_tokens == r.usage.cache_write_tokens == r.usage.reasoning_tokens == 0
    assert r.usage.source == "provider"
    assert r.content.startswith("LLMs stand for Large Language Models")
    assert r.choices[0].finish_reason == "stop"
    assert r.id == body["id"] and r.model == "command-r" and r.provider == "cohere"
    assert r.cost is None


def test_sdk_object_and_plain_dict_convert_identically():
    body = ref("cohere_v2_chat_api_reference")
    obj = sdk_object("cohere.v2.types.v2chat_response.V2ChatResponse", body)
    a = convert.from_response(obj, "cohere", model=MODEL, created=1)
    b = convert.from_response(body, "cohere", model=MODEL, created=1)
    assert a == b
    assert convert.usage_from(obj.usage) == convert.usage_from(body["usage"])


def test_no_usage_reported_is_none_not_zero():
    body = dict(ref("cohere_v2_chat_api_reference"))
    del body["usage"]
    assert convert.from_response(body, "cohere").usage is None
    assert convert.usage_from(None) is None
    # only the processed count, nothing billed: we do not guess billing from it
    assert convert.usage_from({"tokens": {"input_tokens": 71, "output_tokens": 3}}) is None


def test_float_counts_from_the_sdk_become_ints():
    u = convert.usage_from({"billed_units": {"input_tokens": 12.0, "output_tokens": 7.0}})
    assert (u.input_tokens, u.output_tokens) == (12, 7)
    assert isinstance(u.input_tokens, int)


@pytest.mark.parametrize("vendor, ours", [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"),
                                          ("MAX_TOKENS", "length"), ("TOOL_CALL", "tool_calls"),
                                          ("ERROR", "error"), ("TIMEOUT", "error")])
def test_finish_reasons(vendor, ours):
    body = {**ref("cohere_v2_chat_api_reference"), "finish_reason": vendor}
    assert convert.from_response(body, "cohere").choices[0].finish_reason == ours


def tool_call_response() -> dict:
    """A v2 tool-call response in the documented shape (Cohere's tool-use guide)."""
    return {
        "id": "5dc4f2f9-4d6a-4d2a-9b0c-7f4c8f2a1b11",
        "message": {
            "role": "assistant",
            "tool_plan": "I will look up the weather in Toronto and Paris.",
            "tool_calls": [
                {"id": "get_weather_1byjy32y4hvq", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Toronto\"}"}},
                {"id": "get_weather_2c0a9b1x2k7d", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            ],
        },
        "finish_reason": "TOOL_CALL",
        "usage": {"billed_units": {"input_tokens": 37, "output_tokens": 28},
                  "tokens": {"input_tokens": 913, "output_tokens": 81}},
    }


def test_tool_calls_response():
    r = convert.from_response(tool_call_response(), "cohere", model=MODEL)
    calls = r.choices[0].message.tool_calls
    assert [c.id for c in calls] == ["get_weather_1byjy32y4hvq", "get_weather_2c0a9b1x2k7d"]
    assert [c.function.parsed_arguments() for c in calls] == [{"city": "Toronto"}, {"city": "Paris"}]
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.content == "I will look up the weather in Toronto and Paris."  # the tool plan
    assert (r.usage.input_tokens, r.usage.output_tokens) == (37, 28)


def test_thinking_content_is_not_answer_text():
    body = {"id": "x", "finish_reason": "COMPLETE", "message": {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "let me think"}, {"type": "text", "text": "42"}]}}
    assert convert.from_response(body, "cohere").content == "42"


# ── stream ───────────────────────────────────────────────────────────────────

def feed_all(events, *, as_sdk: bool = False):
    state = convert.StreamState("cohere", MODEL, created=1)
    chunks = []
    for ev in events:
        data = ev["data"] if "data" in ev else ev
        if as_sdk:
            data = sdk_object("cohere.v2.types.v2chat_stream_response.V2ChatStreamResponse", data)
        chunks.extend(state.feed(data))
    return state, chunks


@pytest.mark.parametrize("as_sdk", [False, True], ids=["dict", "sdk-object"])
def test_reference_stream(as_sdk):
    state, chunks = feed_all(ref("cohere_v2_chat_stream_api_reference"), as_sdk=as_sdk)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == ("LLMs stand for Large Language Models, which are a type of neural network model "
                    "specialized in processing and generating human language.")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {"29f14a5a-11de-4cae-9800-25e4747408ea"}
    # usage once, on the last chunk, from billed_units (5), not tokens (71)
    assert [c.usage is not None for c in chunks].count(True) == 1
    last = chunks[-1]
    assert (last.usage.input_tokens, last.usage.output_tokens) == (5, 26)
    assert last.choices[0].finish_reason == "stop"
    assert state.finished and state.usage == last.usage


def test_stream_without_usage_has_none():
    events = ref("cohere_v2_chat_stream_api_reference")
    end = events[-1]["data"]
    events[-1] = {"type": "message-end", "delta": {"finish_reason": end["delta"]["finish_reason"]}}
    state, chunks = feed_all(events)
    assert all(c.usage is None for c in chunks) and state.usage is None and state.finished


def test_repeated_usage_is_taken_once_never_summed():
    state = convert.StreamState("cohere", MODEL)
    end = ref("cohere_v2_chat_stream_api_reference")[-1]["data"]
    state.feed(end)
    state.feed(end)
    assert (state.usage.input_tokens, state.usage.output_tokens) == (5, 26)


def test_cut_stream_is_not_finished():
    state, _ = feed_all(ref("cohere_v2_chat_stream_api_reference")[:5])
    assert not state.finished


def test_stream_tool_calls():
    def ev(kind, **kw):
        return {"type": kind, **kw}

    def start(i, cid):
        return ev("tool-call-start", index=i, delta={"message": {"tool_calls": {
            "id": cid, "type": "function", "function": {"name": "get_weather", "arguments": ""}}}})

    def args(i, piece):
        return ev("tool-call-delta", index=i,
                  delta={"message": {"tool_calls": {"function": {"arguments": piece}}}})

    events = [ev("message-start", id="m1", delta={"message": {"role": "assistant"}}),
              ev("tool-plan-delta", delta={"message": {"tool_plan": "I will check"}}),
              start(0, "c0"), args(0, '{"city":'), args(0, ' "Paris"}'), ev("tool-call-end", index=0),
              start(1, "c1"), args(1, '{"city": "Rome"}'), ev("tool-call-end", index=1),
              ev("message-end", delta={"finish_reason": "TOOL_CALL", "usage": {
                  "billed_units": {"input_tokens": 20, "output_tokens": 30}}})]
    state, chunks = feed_all(events)
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(d.index, d.id) for d in deltas if d.id] == [(0, "c0"), (1, "c1")]
    joined = {i: "".join(d.function.get("arguments", "") for d in deltas if d.index == i) for i in (0, 1)}
    assert json.loads(joined[0]) == {"city": "Paris"} and json.loads(joined[1]) == {"city": "Rome"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "I will check"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage.output_tokens == 30


# ── request mapping ──────────────────────────────────────────────────────────

def test_system_and_multi_turn(settings):
    r = req({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "How "}, {"type": "text", "text": "are you?"}]})
    kw = convert.to_request(r, MODEL, settings)
    assert kw["model"] == MODEL
    assert kw["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello!"},
                              {"role": "user", "content": "How are you?"}]


def test_developer_role_becomes_system(settings):
    kw = convert.to_request(req({"role": "developer", "content": "rules"}, {"role": "user", "content": "x"}),
                            MODEL, settings)
    assert kw["messages"][0] == {"role": "system", "content": "rules"}


def test_tools_in_v2_function_format(settings):
    kw = convert.to_request(req(tools=[WEATHER]), MODEL, settings)
    assert kw["tools"] == [WEATHER]
    assert "tool_choice" not in kw and "strict_tools" not in kw


def test_strict_tool_sets_strict_tools(settings):
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    kw = convert.to_request(req(tools=[strict]), MODEL, settings)
    assert kw["strict_tools"] is True and "strict" not in kw["tools"][0]["function"]


@pytest.mark.parametrize("choice, sent", [("auto", None), ("required", "REQUIRED"), ("none", "NONE")])
def test_tool_choice(settings, choice, sent):
    kw = convert.to_request(req(tools=[WEATHER], tool_choice=choice), MODEL, settings)
    assert kw.get("tool_choice") == sent


def test_specific_function_tool_choice_is_unsupported(settings):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(errors.UnsupportedParamError) as info:
        convert.to_request(req(tools=[WEATHER], tool_choice=choice), MODEL, settings)
    assert info.value.provider == "cohere" and info.value.param == "tool_choice"
    assert "cohere" in str(info.value) and "tool_choice" in str(info.value)
    kw = convert.to_request(req(tools=[WEATHER], tool_choice=choice, drop_params=True), MODEL, settings)
    assert "tool_choice" not in kw and kw["tools"] == [WEATHER]


def test_tool_calls_and_results_round_trip(settings):
    resp = convert.from_response(tool_call_response(), "cohere", model=MODEL)
    assistant = Message(role="assistant", content=resp.content, tool_calls=resp.choices[0].message.tool_calls)
    r = ChatRequest(model=MODEL, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Toronto and Paris?"}, assistant,
        {"role": "tool", "tool_call_id": "get_weather_1byjy32y4hvq", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "get_weather_2c0a9b1x2k7d", "content": '{"temp": 25}'}])
    msgs = convert.to_request(r, MODEL, settings)["messages"]
    # the assistant turn goes back exactly as Cohere sent it
    assert msgs[1] == {k: v for k, v in tool_call_response()["message"].items()}
    assert msgs[2:] == [{"role": "tool", "tool_call_id": "get_weather_1byjy32y4hvq", "content": '{"temp": 21}'},
                        {"role": "tool", "tool_call_id": "get_weather_2c0a9b1x2k7d", "content": '{"temp": 25}'}]


IMAGE_MSG = {"role": "user", "content": [
    {"type": "text", "text": "What is in these?"},
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]}


def test_images_refused_when_the_profile_says_so(settings):
    assert settings.capabilities.images is False
    with pytest.raises(errors.UnsupportedParamError) as info:
        convert.to_request(req(IMAGE_MSG), MODEL, settings)
    assert info.value.provider == "cohere" and info.value.param == "images"
    kw = convert.to_request(req(IMAGE_MSG, drop_params=True), MODEL, settings)
    assert kw["messages"] == [{"role": "user", "content": "What is in these?"}]


def test_images_as_url_and_base64_when_the_profile_allows(settings):
    vision = settings.model_copy(update={"capabilities": settings.capabilities.model_copy(
        update={"images": True})})
    kw = convert.to_request(req(IMAGE_MSG), MODEL, vision)
    assert kw["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}]


def test_response_format(settings):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    assert convert.to_request(req(response_format=fmt), MODEL, settings)["response_format"] == {
        "type": "json_object", "json_schema": schema}
    assert convert.to_request(req(response_format={"type": "json_object"}), MODEL, settings)[
        "response_format"] == {"type": "json_object"}
    assert "response_format" not in convert.to_request(req(response_format={"type": "text"}), MODEL, settings)


def test_common_params(settings):
    kw = convert.to_request(req(temperature=0.2, top_p=0.9, top_k=40, max_tokens=100, stop="END", seed=7,
                                frequency_penalty=0.1, presence_penalty=0.3), MODEL, settings)
    assert {k: v for k, v in kw.items() if k not in ("model", "messages")} == {
        "temperature": 0.2, "p": 0.9, "k": 40, "max_tokens": 100, "stop_sequences": ["END"], "seed": 7,
        "frequency_penalty": 0.1, "presence_penalty": 0.3}


def test_unset_params_are_not_sent(settings):
    assert set(convert.to_request(req(), MODEL, settings)) == {"model", "messages"}


@pytest.mark.parametrize("param, value", [("reasoning_effort", "high"), ("user", "u42"),
                                          ("parallel_tool_calls", False)])
def test_params_cohere_cannot_honour(settings, param, value):
    with pytest.raises(errors.UnsupportedParamError) as info:
        convert.to_request(req(tools=[WEATHER], **{param: value}), MODEL, settings)
    assert info.value.param == param and "cohere" in str(info.value)
    kw = convert.to_request(req(tools=[WEATHER], drop_params=True, **{param: value}), MODEL, settings)
    assert set(kw) == {"model", "messages", "tools"}


def test_capability_off_in_profile_refuses_param(settings):
    no_seed = settings.model_copy(update={"capabilities": settings.capabilities.model_copy(
        update={"seed": False})})
    with pytest.raises(errors.UnsupportedParamError, match="seed"):
        convert.to_request(req(seed=1), MODEL, no_seed)


def test_extra_goes_to_sdk_kwargs_or_body(settings):
    kw = convert.to_request(req(extra={"safety_mode": "STRICT", "new_field": 1}), MODEL, settings)
    assert kw["safety_mode"] == "STRICT"
    assert kw["request_options"] == {"additional_body_parameters": {"new_field": 1}}


def test_every_kwarg_is_one_the_sdk_accepts(settings):
    cohere = pytest.importorskip("cohere")
    r = req({"role": "system", "content": "s"}, {"role": "user", "content": "u"}, tools=[WEATHER],
            tool_choice="required", response_format={"type": "json_object"}, temperature=0.1, top_p=0.5,
            top_k=3, max_tokens=9, stop=["x"], seed=1, frequency_penalty=0.1, presence_penalty=0.1,
            extra={"thinking": {"type": "disabled"}, "other": True})
    kw = convert.to_request(r, MODEL, settings)
    for method in (cohere.ClientV2.chat, cohere.ClientV2.chat_stream):
        inspect.signature(method).bind(None, **kw)  # raises TypeError on a misnamed kwarg
